//! Client identification: source address → group (and, for a configured `[[device]]`, its
//! name). Clients outside every group are REFUSED, which is what keeps Hedgerow from ever
//! being an open resolver.
//!
//! This is the one group lookup: the DNS path, `hedgerow lists lookup --client` and the tests
//! all ask [`Identify::client`].

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use hickory_proto::op::ResponseCode;
use ipnet::IpNet;

use crate::{
    neighbours::{Mac, Neighbours},
    pipeline::{group::Group, Answer, Disposition, Next, Query, Stage, StageFuture},
};

/// A group and the networks (and pinned device addresses) that belong to it.
pub type GroupNetworks = (Arc<Group>, Vec<IpNet>);

/// Configured devices: by address and by hardware address, each with its group and name.
#[derive(Default)]
pub struct Devices {
    /// Devices pinned by address (their address is also one of their group's networks).
    pub by_ip: HashMap<IpAddr, Arc<str>>,
    /// Devices pinned by MAC address, resolved through the neighbour table.
    pub by_mac: HashMap<Mac, (Arc<Group>, Arc<str>)>,
}

/// Who a client is: its group, and the configured device it is, if any.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The client's group.
    pub group: &'a Arc<Group>,
    /// The `[[device]]` name, when the address or MAC is pinned.
    pub device: Option<&'a Arc<str>>,
}

/// Maps client addresses to groups: a device pinned by MAC address first, then the most
/// specific network.
pub struct Identify {
    /// Sorted most specific first, so the first match is the answer.
    networks: Vec<(IpNet, Arc<Group>)>,
    devices: Devices,
    /// Read only when a device is pinned by MAC (usually none: then no neighbour lookup).
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
            devices: Devices::default(),
            neighbours: None,
        }
    }

    /// Adds configured devices; those pinned by MAC address are resolved through
    /// `neighbours`.
    pub fn with_devices(mut self, devices: Devices, neighbours: Neighbours) -> Identify {
        if !devices.by_mac.is_empty() {
            self.neighbours = Some(neighbours);
        }
        self.devices = devices;
        self
    }

    /// Who `ip` is, if it belongs to any group.
    pub fn client(&self, ip: IpAddr) -> Option<Client<'_>> {
        let ip = match ip {
            // Dual-stack sockets report IPv4 clients as ::ffff:a.b.c.d.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if let Some(neighbours) = &self.neighbours {
            let by_mac = neighbours
                .load()
                .get(&ip)
                .and_then(|mac| self.devices.by_mac.get(mac));
            if let Some((group, name)) = by_mac {
                return Some(Client {
                    group,
                    device: Some(name),
                });
            }
        }
        let group = self
            .networks
            .iter()
            .find(|(n, _)| n.contains(&ip))
            .map(|(_, g)| g)?;
        Some(Client {
            group,
            device: self.devices.by_ip.get(&ip),
        })
    }
}

impl Stage for Identify {
    fn name(&self) -> &'static str {
        "identify"
    }

    fn handle<'a>(&'a self, query: &'a mut Query, next: Next<'a>) -> StageFuture<'a> {
        match self.client(query.client) {
            Some(client) => {
                query.group = Some(client.group.clone());
                query.device = client.device.cloned();
                next.run(query)
            }
            None => Box::pin(async {
                Answer::empty(ResponseCode::Refused, Disposition::Refused)
                    .with_note("client is outside every configured group")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::group::GroupPolicy;

    fn group(index: usize, name: &str) -> Arc<Group> {
        Arc::new(Group {
            index,
            name: name.into(),
            policy: GroupPolicy::default(),
            safesearch: Default::default(),
            metrics: crate::metrics::Metrics::new().unwrap().group(name),
        })
    }

    #[test]
    fn most_specific_network_wins() {
        let (pupils, staff) = (group(0, "pupils"), group(1, "staff"));
        let identify = Identify::new(&[
            (pupils, vec!["10.0.0.0/8".parse().unwrap()]),
            (staff, vec!["10.1.0.0/16".parse().unwrap()]),
        ]);
        let name = |ip: &str| identify.client(ip.parse().unwrap()).map(|c| &*c.group.name);
        assert_eq!(name("10.1.2.3"), Some("staff"));
        assert_eq!(name("10.2.2.3"), Some("pupils"));
        assert_eq!(name("::ffff:10.1.2.3"), Some("staff"));
        assert_eq!(name("192.0.2.1"), None);
    }

    #[test]
    fn mac_pinned_device_beats_its_network() {
        let (pupils, staff) = (group(0, "pupils"), group(1, "staff"));
        let neighbours: Neighbours = Default::default();
        let laptop = [2, 0, 0, 0, 0, 7];
        let devices = Devices {
            by_mac: HashMap::from([(laptop, (staff.clone(), Arc::from("head-laptop")))]),
            ..Devices::default()
        };
        let identify = Identify::new(&[
            (pupils, vec!["10.0.0.0/8".parse().unwrap()]),
            (staff, vec![]),
        ])
        .with_devices(devices, neighbours.clone());
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let c = identify.client(ip).unwrap();
        assert_eq!((&*c.group.name, c.device), ("pupils", None));
        neighbours.store(Arc::new(HashMap::from([(ip, laptop)])));
        let c = identify.client(ip).unwrap();
        assert_eq!(&*c.group.name, "staff");
        assert_eq!(c.device.map(|d| &**d), Some("head-laptop"));
        // A MAC device elsewhere does not make an outsider an insider.
        assert!(identify.client("192.0.2.1".parse().unwrap()).is_none());
    }
}
