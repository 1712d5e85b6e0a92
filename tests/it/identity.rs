//! Identity readers on lease files as the real servers write them (`tests/data/leases/`), the
//! lease follower on a real folder, and a spreadsheet-saved sessions CSV.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, SystemTime},
};

use hedgerow::{
    civil::{format_rfc3339, parse_datetime},
    identity::{
        leases::{self, never, Lease, LeaseError, LeaseFormat},
        sessions, LeaseWatcher, WatchEvent,
    },
};

use crate::common::tempdir::TempDir;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn at(text: &str) -> SystemTime {
    parse_datetime(text).unwrap()
}

fn find<'a>(leases: &'a [Lease], addr: &str) -> &'a Lease {
    leases
        .iter()
        .find(|l| l.ip == ip(addr))
        .unwrap_or_else(|| panic!("no lease for {addr} in {leases:#?}"))
}

#[test]
fn dnsmasq_sample() {
    let l = leases::read(&data("leases/dnsmasq.leases"), LeaseFormat::Dnsmasq).unwrap();
    assert_eq!(l.len(), 7, "{l:#?}");
    let pc = find(&l, "10.20.0.112");
    assert_eq!(pc.mac.as_deref(), Some("52:54:00:1a:2b:3c"));
    assert_eq!(pc.hostname.as_deref(), Some("PC-12"));
    assert_eq!(pc.starts, None);
    assert_eq!(pc.ends, at("2026-11-26T20:01:02Z"));
    assert_eq!(pc.source, LeaseFormat::Dnsmasq);
    // Upper-case MAC from a hand-edited file, and `*` for no host name.
    let anon = find(&l, "10.20.0.200");
    assert_eq!(anon.mac.as_deref(), Some("dc:a6:32:aa:bb:cc"));
    assert_eq!(anon.hostname, None);
    // Expiry 0: the lease never ends.
    assert!(find(&l, "10.20.0.5").is_infinite());
    // InfiniBand hardware (type 32) is not a MAC address.
    assert_eq!(find(&l, "10.20.0.88").mac, None);
    // DHCPv6 lines: the IAID is not a MAC address, the `duid` line is not a lease.
    let v6 = find(&l, "fd00:20::1a2b");
    assert_eq!(
        (v6.mac.as_deref(), v6.hostname.as_deref()),
        (None, Some("PC-12"))
    );
    assert_eq!(find(&l, "fd00:20::9").hostname, None);
}

#[test]
fn isc_sample() {
    let l = leases::read(&data("leases/dhcpd.leases"), LeaseFormat::Isc).unwrap();
    let ips: Vec<String> = l.iter().map(|l| l.ip.to_string()).collect();
    // .40 was freed by a later block, .41 is abandoned; .21 was renewed.
    assert_eq!(ips, ["10.30.1.21", "10.30.1.50", "10.30.1.60"]);
    let pc = find(&l, "10.30.1.21");
    assert_eq!(pc.starts, Some(at("2026-11-26T12:00:00Z")));
    assert_eq!(pc.ends, at("2026-11-27T00:00:00Z"));
    assert_eq!(pc.mac.as_deref(), Some("52:54:00:1a:2b:3c"));
    assert_eq!(pc.hostname.as_deref(), Some("PC-12"));
    let printer = find(&l, "10.30.1.50");
    assert_eq!(printer.ends, never());
    // dhcpd writes bytes below 0x10 without a leading zero.
    assert_eq!(printer.mac.as_deref(), Some("00:1b:21:3a:4f:5e"));
    // A quote inside the uid string and a nested `on expiry { … }` block.
    assert_eq!(
        find(&l, "10.30.1.60").hostname.as_deref(),
        Some("Jo's iPad")
    );
}

#[test]
fn kea_sample() {
    let l = leases::read(&data("leases/kea-leases4.csv"), LeaseFormat::Kea).unwrap();
    let ips: Vec<String> = l.iter().map(|l| l.ip.to_string()).collect();
    // .12 released (lifetime 0), .13 declined, .14 expired-reclaimed.
    assert_eq!(ips, ["10.40.0.10", "10.40.0.11", "10.40.0.15"]);
    let pc = find(&l, "10.40.0.10");
    assert_eq!(pc.starts, Some(at("2026-11-26T12:00:00Z")));
    assert_eq!(pc.ends, at("2026-11-27T00:00:00Z"));
    assert_eq!(pc.hostname.as_deref(), Some("pc-12.school.lan"));
    assert_eq!(find(&l, "10.40.0.11").hostname, None);
    assert!(find(&l, "10.40.0.15").is_infinite());
}

#[test]
fn bad_lines_are_named_and_good_lines_kept() {
    let dir = TempDir::new("leases-bad");
    let path = dir.path().join("dnsmasq.leases");
    let mut text = std::fs::read_to_string(data("leases/dnsmasq.leases")).unwrap();
    text.push_str("1795723262 52:54:00:00:00:01 10.20.0.300 pc-99 *\n");
    std::fs::write(&path, text).unwrap();
    let err = leases::read(&path, LeaseFormat::Dnsmasq).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:9: `10.20.0.300` is not an IP address",
            path.display()
        )),
        "{msg}"
    );
    let LeaseError::Partial { leases, errors } = err else {
        panic!("{msg}")
    };
    assert_eq!((leases.len(), errors.len(), errors[0].line), (7, 1, 9));

    let missing = leases::read(&dir.path().join("nope"), LeaseFormat::Kea).unwrap_err();
    assert!(matches!(missing, LeaseError::Read { .. }), "{missing}");
}

#[test]
fn sessions_csv_sample() {
    let s = sessions::read_csv(&data("sessions/sessions.csv")).unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(s[0].ends, Some(at("2026-11-26T09:00:00Z")));
    assert_eq!(s[1].username, "o'brien, k");
    assert_eq!(s[1].ends, None);
    assert_eq!(s[2].device, None);
    assert_eq!(format_rfc3339(s[2].starts), "2026-11-26T08:06:30Z");
    assert_eq!(s[3].ip, ip("fd00:20::1a2b"));
    assert_eq!(s[3].starts, at("2026-11-26T08:01:02Z"));
}

/// Waits for the next event from the watcher.
fn next(rx: &mpsc::Receiver<WatchEvent>) -> WatchEvent {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("no event from the lease watcher within 10 s")
}

fn dnsmasq_line(expiry: u64, mac: &str, addr: &str, host: &str) -> String {
    format!("{expiry} {mac} {addr} {host} *\n")
}

#[test]
fn watcher_reports_changes_rotation_and_a_missing_file_once() {
    let dir = TempDir::new("lease-watch");
    let path = dir.path().join("dnsmasq.leases");
    let a = dnsmasq_line(1795723262, "52:54:00:00:00:01", "10.0.0.1", "pc-1");
    let b = dnsmasq_line(1795723262, "52:54:00:00:00:02", "10.0.0.2", "pc-2");
    std::fs::write(&path, format!("{a}{b}")).unwrap();

    let (tx, rx) = mpsc::channel();
    let watcher = LeaseWatcher::spawn(
        path.clone(),
        LeaseFormat::Dnsmasq,
        Duration::from_millis(100),
        move |e| {
            let _ = tx.send(e);
        },
    )
    .unwrap();

    // First poll: every lease.
    let WatchEvent::Changed(c) = next(&rx) else {
        panic!("expected the initial leases")
    };
    assert_eq!((c.changed.len(), c.removed.len()), (2, 0));

    // In-place rewrite (as dnsmasq does): pc-2 renewed, pc-1 gone, pc-3 new.
    let b2 = dnsmasq_line(1795730000, "52:54:00:00:00:02", "10.0.0.2", "pc-2");
    let c3 = dnsmasq_line(1795730000, "52:54:00:00:00:03", "10.0.0.3", "pc-3");
    std::fs::write(&path, format!("{b2}{c3}")).unwrap();
    let WatchEvent::Changed(c) = next(&rx) else {
        panic!("expected changes")
    };
    let changed: Vec<IpAddr> = c.changed.iter().map(|l| l.ip).collect();
    assert_eq!(changed, [ip("10.0.0.2"), ip("10.0.0.3")]);
    assert_eq!(c.removed, [ip("10.0.0.1")]);

    // A new file renamed over the old one (as ISC dhcpd does), same length as before.
    let b3 = dnsmasq_line(1795737599, "52:54:00:00:00:02", "10.0.0.2", "pc-2");
    let tmp = dir.path().join("dnsmasq.leases.new");
    std::fs::write(&tmp, format!("{b3}{c3}")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let WatchEvent::Changed(c) = next(&rx) else {
        panic!("expected the rotated file's change")
    };
    assert_eq!(c.changed.len(), 1);
    assert_eq!(c.changed[0].ends, at("2026-11-26T23:59:59Z"));

    // Gone: reported once, however many polls see it missing.
    std::fs::remove_file(&path).unwrap();
    let WatchEvent::Unavailable { file, .. } = next(&rx) else {
        panic!("expected the missing file to be reported")
    };
    assert_eq!(file, path);
    assert!(
        rx.recv_timeout(Duration::from_millis(600)).is_err(),
        "a missing file must be reported once"
    );

    // Back, with a bad line: the good lease is reported and the bad line named (written whole
    // by a rename; a rewrite caught part-way is `watch`'s unit test).
    std::fs::write(&tmp, format!("{b3}junk\n")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let mut saw_bad = false;
    let mut saw_change = false;
    while !(saw_bad && saw_change) {
        match next(&rx) {
            WatchEvent::BadLines(errors) => {
                assert_eq!(errors[0].line, 2);
                saw_bad = true;
            }
            WatchEvent::Changed(c) => {
                assert_eq!(c.removed, [ip("10.0.0.3")]);
                saw_change = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    watcher.stop();
}

#[test]
fn kea_lease_file_cleanup_loses_no_lease() {
    let dir = TempDir::new("kea-lfc");
    let path = dir.path().join("kea-leases4.csv");
    let sample = std::fs::read_to_string(data("leases/kea-leases4.csv")).unwrap();
    let header = sample.lines().next().unwrap().to_string() + "\n";
    std::fs::write(&path, &sample).unwrap();
    let ips = |l: Vec<Lease>| l.iter().map(|l| l.ip.to_string()).collect::<Vec<_>>();
    let all = ["10.40.0.10", "10.40.0.11", "10.40.0.15"];
    assert_eq!(ips(leases::read(&path, LeaseFormat::Kea).unwrap()), all);

    let (tx, rx) = mpsc::channel();
    let _watcher = LeaseWatcher::spawn(
        path.clone(),
        LeaseFormat::Kea,
        Duration::from_millis(100),
        move |e| {
            let _ = tx.send(e);
        },
    )
    .unwrap();
    let WatchEvent::Changed(c) = next(&rx) else {
        panic!("expected the initial leases")
    };
    assert_eq!(c.changed.len(), 3);

    // A cleanup starts: Kea moves the lease file to `.1` and starts a new one.
    let companion = |suffix: &str| PathBuf::from(format!("{}{suffix}", path.display()));
    std::fs::rename(&path, companion(".1")).unwrap();
    std::fs::write(&path, &header).unwrap();
    assert_eq!(ips(leases::read(&path, LeaseFormat::Kea).unwrap()), all);
    // Let the follower poll the half-way state: no lease may vanish there.
    std::thread::sleep(Duration::from_millis(400));

    // It finishes: the compacted leases in `.completed`, `.1` gone; meanwhile .11 released.
    // What a cleanup keeps: the header and the last row of each address still leased.
    let rows: Vec<&str> = sample.lines().collect();
    let compacted: String = [rows[0], rows[2], rows[7], rows[8]]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(companion(".completed"), compacted).unwrap();
    std::fs::remove_file(companion(".1")).unwrap();
    std::fs::write(
        &path,
        format!(
            "{header}10.40.0.11,a4:83:e7:11:22:33,01:a4:83:e7:11:22:33,0,1795690000,1,0,0,,0,,0\n"
        ),
    )
    .unwrap();
    assert_eq!(
        ips(leases::read(&path, LeaseFormat::Kea).unwrap()),
        ["10.40.0.10", "10.40.0.15"]
    );
    // The follower saw no lease vanish during the cleanup, only the release.
    loop {
        match next(&rx) {
            WatchEvent::Changed(c) => {
                assert_eq!(c.removed, [ip("10.40.0.11")], "{c:?}");
                assert!(c.changed.is_empty(), "{c:?}");
                break;
            }
            // The lease file is briefly missing while Kea moves it aside.
            WatchEvent::Unavailable { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
