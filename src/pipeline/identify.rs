//! Client identification: source address → group. Clients outside every group are REFUSED,
//! which is what keeps Hedgerow from ever being an open resolver.

use std::{net::IpAddr, sync::Arc};

use hickory_proto::op::ResponseCode;
use ipnet::IpNet;

use crate::pipeline::{policy::GroupPolicy, Answer, Disposition, Next, Query, Stage, StageFuture};

/// A group of clients and the policy that applies to them.
#[derive(Debug)]
pub struct Group {
    /// Position in the configuration (metrics index).
    pub index: usize,
    /// The group's name.
    pub name: String,
    /// What the group may and may not reach.
    pub policy: GroupPolicy,
}

/// A group and the networks (and pinned device addresses) that belong to it.
pub type GroupNetworks = (Arc<Group>, Vec<IpNet>);

/// Maps client addresses to groups; the most specific network wins.
pub struct Identify {
    /// Sorted most specific first, so the first match is the answer.
    networks: Vec<(IpNet, Arc<Group>)>,
}

impl Identify {
    /// Builds the lookup from each group's networks.
    pub fn new(groups: &[GroupNetworks]) -> Identify {
        let mut networks: Vec<(IpNet, Arc<Group>)> = groups
            .iter()
            .flat_map(|(g, nets)| nets.iter().map(move |n| (*n, g.clone())))
            .collect();
        networks.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Identify { networks }
    }

    /// The group for `ip`, if any.
    pub fn group_for(&self, ip: IpAddr) -> Option<&Arc<Group>> {
        let ip = match ip {
            // Dual-stack sockets report IPv4 clients as ::ffff:a.b.c.d.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
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
