//! Client identification: source address → group (and, for a configured `[[device]]`, its
//! name). Clients outside every group are REFUSED, which is what keeps Hedgerow from ever
//! being an open resolver.
//!
//! This is the one group lookup: the DNS path, `hedgerow lists lookup --client` and the tests
//! all ask [`Identify::client`].

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    net::IpAddr,
    sync::Arc,
};

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

/// A multiplicative hash for addresses: the keys are network addresses from the
/// configuration, so no one can choose them to collide.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// One prefix length's networks: network address → group.
type Level<A> = (u8, HashMap<A, Arc<Group>, BuildHasherDefault<AddrHasher>>);

/// Networks by prefix length, longest first: a lookup tries at most one hash probe per
/// distinct length (≤ 33 for IPv4, ≤ 129 for IPv6; a school uses a handful), whatever the
/// number of networks. The most specific network wins; on the same network in two groups,
/// the earlier group.
#[derive(Default)]
struct PrefixTable {
    v4: Vec<Level<u32>>,
    v6: Vec<Level<u128>>,
}

fn mask4(addr: u32, len: u8) -> u32 {
    addr & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask6(addr: u128, len: u8) -> u128 {
    addr & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

fn insert<A: std::hash::Hash + Eq>(
    levels: &mut Vec<Level<A>>,
    len: u8,
    key: A,
    group: &Arc<Group>,
) {
    let at = match levels.iter().position(|(l, _)| *l <= len) {
        Some(i) if levels[i].0 == len => i,
        Some(i) => {
            levels.insert(i, (len, HashMap::default()));
            i
        }
        None => {
            levels.push((len, HashMap::default()));
            levels.len() - 1
        }
    };
    // First writer wins: groups are inserted in file order.
    levels[at].1.entry(key).or_insert_with(|| group.clone());
}

impl PrefixTable {
    fn new(groups: &[GroupNetworks]) -> PrefixTable {
        let mut table = PrefixTable::default();
        for (group, nets) in groups {
            for net in nets {
                match net {
                    IpNet::V4(n) => {
                        let len = n.prefix_len();
                        insert(&mut table.v4, len, mask4(n.network().into(), len), group);
                    }
                    IpNet::V6(n) => {
                        let len = n.prefix_len();
                        insert(&mut table.v6, len, mask6(n.network().into(), len), group);
                    }
                }
            }
        }
        table
    }

    fn get(&self, ip: IpAddr) -> Option<&Arc<Group>> {
        match ip {
            IpAddr::V4(v4) => {
                let addr = u32::from(v4);
                self.v4
                    .iter()
                    .find_map(|(len, map)| map.get(&mask4(addr, *len)))
            }
            IpAddr::V6(v6) => {
                let addr = u128::from(v6);
                self.v6
                    .iter()
                    .find_map(|(len, map)| map.get(&mask6(addr, *len)))
            }
        }
    }
}

/// Maps client addresses to groups: a device pinned by MAC address first, then the most
/// specific network.
pub struct Identify {
    networks: PrefixTable,
    devices: Devices,
    /// Read only when a device is pinned by MAC (usually none: then no neighbour lookup).
    neighbours: Option<Neighbours>,
}

impl Identify {
    /// Builds the lookup from each group's networks.
    pub fn new(groups: &[GroupNetworks]) -> Identify {
        Identify {
            networks: PrefixTable::new(groups),
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
        let group = self.networks.get(ip)?;
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

    fn group(index: usize, name: &str) -> Arc<Group> {
        Group::plain(index, name, &crate::metrics::Metrics::new().unwrap())
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
    fn prefix_table_matches_a_linear_scan() {
        let groups: Vec<Arc<Group>> = (0..4).map(|i| group(i, &format!("g{i}"))).collect();
        let nets =
            |list: &[&str]| -> Vec<IpNet> { list.iter().map(|n| n.parse().unwrap()).collect() };
        let config = vec![
            (
                groups[0].clone(),
                nets(&["10.0.0.0/8", "0.0.0.0/0", "fd00::/8"]),
            ),
            (
                groups[1].clone(),
                nets(&["10.1.0.0/16", "10.1.2.3/32", "fd00:1::/64"]),
            ),
            // The same network as an earlier group: the earlier group keeps it.
            (
                groups[2].clone(),
                nets(&["10.1.0.0/16", "192.168.0.0/23", "::1/128"]),
            ),
            (
                groups[3].clone(),
                nets(&["10.1.2.0/24", "192.168.1.0/24", "::/0"]),
            ),
        ];
        let identify = Identify::new(&config);
        // The old rule, spelled out: longest prefix, then file order.
        let linear = |ip: IpAddr| {
            let mut best: Option<(u8, &str)> = None;
            for (g, ns) in &config {
                for n in ns {
                    if n.contains(&ip) && best.is_none_or(|(l, _)| n.prefix_len() > l) {
                        best = Some((n.prefix_len(), &g.name));
                    }
                }
            }
            best.map(|(_, n)| n.to_string())
        };
        for ip in [
            "10.1.2.3",
            "10.1.2.4",
            "10.1.3.1",
            "10.2.0.1",
            "192.168.1.9",
            "192.168.0.9",
            "8.8.8.8",
            "fd00:1::5",
            "fd00:2::5",
            "::1",
            "2001:db8::1",
            "::ffff:10.1.2.3",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let got = identify.client(ip).map(|c| c.group.name.to_string());
            let mapped = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
                v4 => v4,
            };
            assert_eq!(got, linear(mapped), "{ip}");
        }
        assert_eq!(
            identify
                .client("10.1.5.5".parse().unwrap())
                .map(|c| c.group.name.to_string()),
            Some("g1".to_string()),
            "the earlier group keeps a network two groups name"
        );
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
