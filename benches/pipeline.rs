//! One query through the whole pipeline (record → identify → ratelimit → policy → safesearch →
//! cache → forward) with a warm cache, and the policy decision alone on real category lists.
//!
//! `cargo bench --bench pipeline`. The upstream is a tiny responder on 127.0.0.1:0.

use std::{net::UdpSocket, sync::Arc, time::SystemTime};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use hedgerow::{
    clock::Clock,
    config::Config,
    lists::{Blocklists, BlocklistsBuilder, EntryKind, Severity},
    metrics::Metrics,
    pipeline::{
        cache::CacheStore,
        chain::{self, ChainParts},
        grants::{Grant, Grants},
        group::GroupPolicy,
        policy::{decide, Context},
        Query, Transport,
    },
    server,
    wire::WireQuery,
};
use hickory_proto::{
    op::{Edns, Message},
    rr::{rdata::A, Name, RData, Record, RecordType},
};

#[path = "../tests/it/common/shared_data.rs"]
mod shared_data;

/// Answers every query with one A record (TTL 1 h), forever, on a background thread.
fn responder() -> std::net::SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind responder");
    let addr = sock.local_addr().expect("responder address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = q.clone().into_response();
            if let Some(query) = q.queries.first() {
                r.add_answer(Record::from_rdata(
                    query.name().clone(),
                    3600,
                    RData::A(A::new(192, 0, 2, 1)),
                ));
            }
            if let Ok(bytes) = r.to_vec() {
                let _ = sock.send_to(&bytes, from);
            }
        }
    });
    addr
}

fn pipeline_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let upstream = responder();
    let config = Config::from_toml_str(
        &format!(
            "[upstream]\nservers = [\"{upstream}\"]\n[rate_limit]\nqps = 0\n\
             [[group]]\nname = \"pupils\"\nnetworks = [\"127.0.0.1/32\"]\ndeny = [\"tiktok.com\"]\n"
        ),
        "bench.toml",
    )
    .unwrap();
    let parts = ChainParts {
        metrics: Arc::new(Metrics::new().unwrap()),
        sink: None,
        lists: Arc::new(Blocklists::empty()),
        grants: Default::default(),
        cache: Arc::new(CacheStore::new()),
        buckets: Default::default(),
        clock: Clock::system(),
        neighbours: Default::default(),
    };
    let pipeline = rt
        .block_on(async { chain::build(&config, &parts) })
        .unwrap();
    let query = Query::new(
        "127.0.0.1".parse().unwrap(),
        Transport::Udp,
        Name::from_ascii("www.example.com.").unwrap(),
        RecordType::A,
    );
    // Warm the cache.
    let warm = rt.block_on(pipeline.resolve(&mut query.clone()));
    assert_eq!(warm.answers().len(), 1);
    c.bench_function("pipeline/cached_answer", |b| {
        b.iter(|| {
            let mut q = query.clone();
            black_box(rt.block_on(pipeline.resolve(&mut q)))
        })
    });
    // Everything the UDP listener does for a cached answer but the system calls: read the
    // datagram, run the pipeline, write the response.
    let mut datagram = Message::query();
    datagram.metadata.id = 0x1234;
    datagram.metadata.recursion_desired = true;
    datagram.add_query(hickory_proto::op::Query::query(
        Name::from_ascii("www.example.com.").unwrap(),
        RecordType::A,
    ));
    datagram.set_edns(Edns::new());
    let datagram = datagram.to_vec().unwrap();
    let mut out = Vec::with_capacity(512);
    c.bench_function("udp/cached_datagram_to_datagram", |b| {
        b.iter(|| {
            let mut wire_query = WireQuery::read(black_box(&datagram)).unwrap();
            let mut q = server::query_from_wire(&mut wire_query, query.client);
            let answer = rt.block_on(pipeline.resolve(&mut q));
            server::write_answer(&wire_query, &q, &answer, 1232, &mut out);
            black_box(&out);
        })
    });
    let blocked = Query::new(
        "127.0.0.1".parse().unwrap(),
        Transport::Udp,
        Name::from_ascii("www.tiktok.com.").unwrap(),
        RecordType::A,
    );
    c.bench_function("pipeline/blocked_by_deny", |b| {
        b.iter(|| {
            let mut q = blocked.clone();
            black_box(rt.block_on(pipeline.resolve(&mut q)))
        })
    });
}

/// Ten groups, each blocking a different mix of categories, over real lists when present.
fn decision_bench(c: &mut Criterion) {
    let mut b = BlocklistsBuilder::new();
    let mut names = Vec::new();
    let mut masks = Vec::new();
    if let Some(data) = shared_data::shared_data() {
        for (cat, file) in [
            ("gambling", "blocklists/ut1/gambling/domains"),
            ("games", "blocklists/ut1/games/domains"),
            ("vpn", "blocklists/ut1/vpn/domains"),
            ("dating", "blocklists/ut1/dating/domains"),
            ("hacking", "blocklists/ut1/hacking/domains"),
            ("drugs", "blocklists/ut1/drogue/domains"),
            ("hate", "blocklists/ut1/agressif/domains"),
            ("piracy", "blocklists/ut1/warez/domains"),
            ("phishing", "blocklists/ut1/phishing/domains"),
            ("social", "blocklists/ut1/social_networks/domains"),
        ] {
            let mask = b.category(cat, cat, Severity::Medium).unwrap();
            masks.push(mask);
            let text = std::fs::read_to_string(data.join(file)).unwrap_or_default();
            for line in text.lines() {
                if b.add(mask, line.trim(), EntryKind::Subtree).is_ok() && names.len() < 50_000 {
                    names.push(format!("www.{}", line.trim()));
                }
            }
        }
    } else {
        let mask = b.category("games", "Games", Severity::Low).unwrap();
        masks.push(mask);
        for i in 0..100_000 {
            let n = format!("game{i}.example");
            b.add(mask, &n, EntryKind::Subtree).unwrap();
            names.push(format!("www.{n}"));
        }
    }
    let lists = b.build().unwrap();
    let policies: Vec<GroupPolicy> = (0..10)
        .map(|g| GroupPolicy {
            categories: masks
                .iter()
                .enumerate()
                .filter(|(i, _)| (i + g) % 3 != 0)
                .fold(0, |a, (_, m)| a | m),
            anti_circumvention: true,
            ..Default::default()
        })
        .collect();
    let misses: Vec<String> = (0..1000)
        .map(|i| format!("cdn{i}.allowed-site.co.uk"))
        .collect();
    let now = SystemTime::now();
    // A busy term's worth of live grants for the group (none matching the names asked), to
    // see what the grant lookup adds when a group has some.
    let grants = Grants::new((0..100).map(|n| Grant {
        group: "g".into(),
        name: format!("granted{n}.example"),
        expires: now + std::time::Duration::from_secs(3600),
    }));
    let mut i = 0usize;
    for (bench, queries, grants) in [
        ("policy/decide_listed_name_10_groups", &names, None),
        ("policy/decide_unlisted_name_10_groups", &misses, None),
        (
            "policy/decide_listed_name_10_groups_100_grants",
            &names,
            grants.group("g"),
        ),
    ] {
        c.bench_function(bench, |bch| {
            bch.iter(|| {
                i = i.wrapping_add(1);
                let cx = Context {
                    group: "g",
                    policy: &policies[i % 10],
                    grants,
                    lists: &lists,
                    now,
                    illegal_proxy: None,
                };
                black_box(decide(&cx, &queries[i % queries.len()]))
            })
        });
    }
}

/// Client → group with 3 networks and with 10,000 (a trust's worth of /24s and /64s): the
/// prefix table should cost the same for both.
fn identify_bench(c: &mut Criterion) {
    use hedgerow::pipeline::{
        group::Group,
        identify::{GroupNetworks, Identify},
    };
    let metrics = Metrics::new().unwrap();
    let group = |i: usize| {
        Arc::new(Group {
            index: i,
            name: format!("g{i}").into(),
            policy: GroupPolicy::default(),
            safesearch: Default::default(),
            metrics: metrics.group(&format!("g{i}")),
        })
    };
    let small: Vec<GroupNetworks> = vec![
        (group(0), vec!["10.0.0.0/8".parse().unwrap()]),
        (group(1), vec!["10.1.0.0/16".parse().unwrap()]),
        (group(2), vec!["fd00::/8".parse().unwrap()]),
    ];
    // 50 groups; 9,000 IPv4 /24s under 10.0.0.0/8 and 1,000 IPv6 /64s.
    let large: Vec<GroupNetworks> = (0..50)
        .map(|g| {
            let mut nets = Vec::new();
            for i in (g..9000).step_by(50) {
                nets.push(format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap());
            }
            for i in (g..1000).step_by(50) {
                nets.push(format!("fd00:0:0:{i:x}::/64").parse().unwrap());
            }
            (group(g), nets)
        })
        .collect();
    let clients: Vec<std::net::IpAddr> = (0..1000u32)
        .map(|i| {
            if i % 5 == 0 {
                format!("fd00:0:0:{:x}::{:x}", i % 1000, i + 1)
                    .parse()
                    .unwrap()
            } else {
                let n = (i * 7) % 9000;
                format!("10.{}.{}.{}", n / 256, n % 256, i % 250 + 1)
                    .parse()
                    .unwrap()
            }
        })
        .collect();
    for (bench, groups) in [
        ("identify/3_networks", &small),
        ("identify/10000_networks", &large),
    ] {
        let identify = Identify::new(groups);
        let mut i = 0usize;
        c.bench_function(bench, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                black_box(
                    identify
                        .client(clients[i % clients.len()])
                        .map(|c| c.group.index),
                )
            })
        });
    }
}

criterion_group!(benches, pipeline_bench, decision_bench, identify_bench);
criterion_main!(benches);
