//! The kernel's neighbour (ARP) table: client address → hardware (MAC) address, so a device
//! can be pinned to a group by its MAC address even when DHCP moves its IP address.
//!
//! Only IPv4 neighbours are read (`/proc/net/arp`); IPv6 devices are pinned by address.
//! The table is refreshed off the DNS path and swapped in whole.

use std::{collections::HashMap, net::IpAddr, path::Path, sync::Arc};

use arc_swap::ArcSwap;

/// A MAC address.
pub type Mac = [u8; 6];

/// The shared, swappable neighbour table.
pub type Neighbours = Arc<ArcSwap<HashMap<IpAddr, Mac>>>;

/// Where Linux publishes the IPv4 neighbour table.
pub const PROC_ARP: &str = "/proc/net/arp";

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`), any case.
///
/// ```
/// assert_eq!(hedgerow::neighbours::parse_mac("02:FC:00:00:00:05"), Some([2, 0xfc, 0, 0, 0, 5]));
/// assert_eq!(hedgerow::neighbours::parse_mac("02:fc:00"), None);
/// ```
pub fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Parses the text of `/proc/net/arp`, skipping incomplete entries (flags 0x0).
pub fn parse_arp(text: &str) -> HashMap<IpAddr, Mac> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (ip, flags, mac) = (f.first()?, f.get(2)?, f.get(3)?);
            if *flags == "0x0" {
                return None;
            }
            Some((ip.parse().ok()?, parse_mac(mac)?))
        })
        .collect()
}

/// Reads the table from `path` (empty when it cannot be read).
pub fn read(path: &Path) -> HashMap<IpAddr, Mac> {
    std::fs::read_to_string(path)
        .map(|t| parse_arp(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_complete_entries_only() {
        let text =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
                    192.0.2.1        0x1         0x2         02:fc:00:00:00:05     *        eth0\n\
                    192.0.2.9        0x1         0x0         00:00:00:00:00:00     *        eth0\n\
                    junk\n";
        let t = parse_arp(text);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[&"192.0.2.1".parse::<IpAddr>().unwrap()],
            [2, 0xfc, 0, 0, 0, 5]
        );
    }
}
