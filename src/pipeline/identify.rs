//! Client identification: source address → group. Clients outside every group are REFUSED,
//! which is what keeps Hedgerow from ever being an open resolver.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use hickory_proto::op::ResponseCode;
use ipnet::IpNet;

use crate::{
    neighbours::{Mac, Neighbours},
    pipeline::{policy::GroupPolicy, Answer, Disposition, Next, Query, Stage, StageFuture},
};

/// A group of clients and the policy that applies to them.
#[derive(Debug)]
pub struct Group {
    /// Position in the configuration (metrics index).
    pub index: usize,
    /// The group's name.
    pub name: String,
    /// What the group may and may not reach.
    pub policy: GroupPolicy,
    /// Its counters.
    pub metrics: crate::metrics::GroupMetrics,
}

/// A group and the networks (and pinned device addresses) that belong to it.
pub type GroupNetworks = (Arc<Group>, Vec<IpNet>);

/// Maps client addresses to groups: a device pinned by MAC address first, then the most
/// specific network.
pub struct Identify {
    /// Sorted most specific first, so the first match is the answer.
    networks: Vec<(IpNet, Arc<Group>)>,
    /// Devices pinned by MAC address (usually none: then no neighbour lookup at all).
    macs: HashMap<Mac, Arc<Group>>,
    neighbours: Option<Neighbours>,
}

impl Identify {
    /// Builds the lookup from each group's networks.
    pub fn new(groups: &[GroupNetworks]) -> Identify {
        let mut networks: Vec<(IpNet, Arc<Group>)> = groups
            .iter()
            .flat_map(|(g, nets)| nets.iter().map(move |n| (*n, g.clone())))
            .collect();
        networks.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Identify {
            networks,
            macs: HashMap::new(),
            neighbours: None,
        }
    }

    /// Adds devices pinned by MAC address, resolved through `neighbours`.
    pub fn with_macs(mut self, macs: HashMap<Mac, Arc<Group>>, neighbours: Neighbours) -> Identify {
        if !macs.is_empty() {
            self.macs = macs;
            self.neighbours = Some(neighbours);
        }
        self
    }

    /// The group for `ip`, if any.
    pub fn group_for(&self, ip: IpAddr) -> Option<&Arc<Group>> {
        let ip = match ip {
            // Dual-stack sockets report IPv4 clients as ::ffff:a.b.c.d.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if let Some(neighbours) = &self.neighbours {
            let by_mac = neighbours
                .load()
                .get(&ip)
                .and_then(|mac| self.macs.get(mac));
            if by_mac.is_some() {
                return by_mac;
            }
        }
        self.networks
            .iter()
            .find(|(n, _)| n.contains(&ip))
            .map(|(_, g)| g)
    }
}

impl Stage for Identify {
    fn name(&self) -> &'static str {
        "identify"
    }

    fn handle<'a>(&'a self, query: &'a mut Query, next: Next<'a>) -> StageFuture<'a> {
        match self.group_for(query.client) {
            Some(group) => {
                query.group = Some(group.clone());
                next.run(query)
            }
            None => Box::pin(async {
                Answer::empty(ResponseCode::Refused, Disposition::Refused)
                    .with_reason("no_group", "client is outside every configured group")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(index: usize, name: &str) -> Arc<Group> {
        Arc::new(Group {
            index,
            name: name.into(),
            policy: GroupPolicy::default(),
            metrics: crate::metrics::Metrics::new().unwrap().group(name),
        })
    }

    #[test]
    fn mac_pinned_device_beats_its_network() {
        let (pupils, staff) = (group(0, "pupils"), group(1, "staff"));
        let neighbours: Neighbours = Default::default();
        let laptop = [2, 0, 0, 0, 0, 7];
        let identify = Identify::new(&[
            (pupils, vec!["10.0.0.0/8".parse().unwrap()]),
            (staff.clone(), vec![]),
        ])
        .with_macs(HashMap::from([(laptop, staff)]), neighbours.clone());
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(identify.group_for(ip).unwrap().name, "pupils");
        neighbours.store(Arc::new(HashMap::from([(ip, laptop)])));
        assert_eq!(identify.group_for(ip).unwrap().name, "staff");
        // A MAC device elsewhere does not make an outsider an insider.
        assert!(identify.group_for("192.0.2.1".parse().unwrap()).is_none());
    }
}
