//! The query log end to end: real DNS queries through a running Hedgerow end up in its SQLite
//! store with the identity valid at the time (a configured `[[device]]`, a DHCP lease followed
//! live), a high-severity attempt opens a breach and alerts the DSL's webhook, and the start-up
//! is in the audit trail.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hedgerow::{
    clock::Clock,
    event::{Disposition, Severity},
    store::{open_offline, BreachFilter, QueryFilter},
};
use hickory_proto::{op::ResponseCode, rr::RecordType};

use crate::common::{
    dns::{scratch_dir, start_hedgerow, udp_query, Ask, Upstream},
    webhook::webhook,
};

async fn blocked(dns: std::net::SocketAddr, from: Ipv4Addr, name: &str) {
    let ask = Ask {
        from: IpAddr::V4(from),
        ..Ask::default()
    };
    let m = udp_query(dns, name, RecordType::A, ask).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_queries_are_stored_with_who_asked_and_open_an_alerted_breach() {
    let up = Upstream::start().await;
    let dir = scratch_dir("querylog");
    let leases = dir.join("dnsmasq.leases");
    let expiry = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    std::fs::write(
        &leases,
        format!("{expiry} 02:00:00:00:00:05 127.0.0.5 pupil-tablet-5 01:02:00:00:00:00:05\n"),
    )
    .unwrap();
    let (port, hooks) = webhook();
    let config = format!(
        "[[group]]\nname = \"pupils\"\nnetworks = [\"127.0.0.0/24\"]\n\
         block_categories = [\"pornography\", \"games\"]\n\
         [[device]]\nname = \"pc-12\"\nip = \"127.0.0.12\"\ngroup = \"pupils\"\n\
         [[identity.dhcp]]\npath = \"{}\"\nformat = \"dnsmasq\"\n\
         [alerts.webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\n",
        leases.display()
    );
    let (app, path) = start_hedgerow(&config, up.addr).await;
    let dns = app.dns_addrs()[0];
    let data = path.parent().unwrap().join("data");

    blocked(dns, Ipv4Addr::new(127, 0, 0, 12), "www.pornhub.com.").await;
    blocked(dns, Ipv4Addr::new(127, 0, 0, 12), "cdn.pornhub.com.").await;
    blocked(dns, Ipv4Addr::new(127, 0, 0, 12), "roblox.com.").await;
    // The lease file is read when Hedgerow starts; give the follower's first read a moment.
    let (reader, _) = open_offline(&data, Clock::system()).unwrap();
    for _ in 0..100 {
        blocked(dns, Ipv4Addr::new(127, 0, 0, 5), "www.pornhub.com.").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let filter = QueryFilter {
            device: Some("pupil-tablet-5".into()),
            ..QueryFilter::default()
        };
        if !reader.search(&filter, None, 10).unwrap().rows.is_empty() {
            break;
        }
    }
    udp_query(dns, "www.example.test.", RecordType::A, Ask::default())
        .await
        .unwrap();

    // The alert reached the webhook at once (one per device per 10 minutes).
    let alert = hooks
        .recv_timeout(Duration::from_secs(10))
        .expect("webhook alert");
    assert!(alert.contains("pornography"), "{alert}");
    assert!(
        alert.contains("pc-12") || alert.contains("pupil-tablet-5"),
        "{alert}"
    );
    app.shutdown().await;

    let page = reader
        .search(
            &QueryFilter {
                blocked_only: true,
                ..QueryFilter::default()
            },
            None,
            100,
        )
        .unwrap();
    let pc12: Vec<_> = page.rows.iter().filter(|r| r.device == "pc-12").collect();
    assert_eq!(pc12.len(), 3, "{:?}", page.rows);
    assert!(pc12
        .iter()
        .all(|r| r.ip == "127.0.0.12" && r.group.as_deref() == Some("pupils")));
    let porn = pc12.iter().find(|r| r.name == "www.pornhub.com").unwrap();
    assert_eq!(porn.disposition, Disposition::Blocked);
    assert_eq!(porn.severity, Some(Severity::High));
    assert_eq!(porn.category.as_deref(), Some("pornography"));
    let tablet: Vec<_> = page
        .rows
        .iter()
        .filter(|r| r.device == "pupil-tablet-5")
        .collect();
    assert!(!tablet.is_empty(), "lease identity: {:?}", page.rows);
    assert!(tablet.iter().all(|r| r.ip == "127.0.0.5"));
    // Allowed queries are logged too (the default).
    let all = reader.search(&QueryFilter::default(), None, 500).unwrap();
    assert!(all
        .rows
        .iter()
        .any(|r| r.name == "www.example.test" && r.disposition == Disposition::Forwarded));

    // One page load (two names of one site) is one breach; another site is another.
    let breaches = reader
        .breaches(
            &BreachFilter {
                device: Some("pc-12".into()),
                ..BreachFilter::default()
            },
            None,
            10,
        )
        .unwrap();
    let sites: Vec<_> = breaches
        .iter()
        .map(|b| (b.domain.as_str(), b.count, b.severity))
        .collect();
    assert_eq!(
        sites,
        [
            ("roblox.com", 1, Severity::Low),
            ("pornhub.com", 2, Severity::High)
        ]
    );

    // The start-up is on the audit trail, and the chain verifies.
    let audit = reader.audit(None, 50).unwrap();
    assert!(audit
        .iter()
        .any(|e| e.change.contains("policy in force at start-up")));
    assert_eq!(reader.verify_audit().unwrap().first_broken, None);
}
