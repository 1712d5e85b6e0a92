//! The resolver core over real sockets: Hedgerow on 127.0.0.1:0 in front of an in-process
//! authoritative upstream, both on loopback.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use crate::common::dns::{a_records, ask, start_hedgerow, tcp_query, udp_query, Ask, Upstream};
use hickory_proto::{
    op::{Edns, Message, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use tokio::{io::AsyncWriteExt, net::UdpSocket};

const LOCAL: &str = "[[group]]\nname = \"local\"\nnetworks = [\"127.0.0.1/32\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_every_record_type_unchanged() {
    let up = Upstream::start().await;
    let (app, _) = start_hedgerow(LOCAL, up.addr).await;
    let dns = app.dns_addrs()[0];

    let a = ask(dns, "www.example.test.", RecordType::A).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&a), [Ipv4Addr::new(192, 0, 2, 10)]);
    assert!(a.metadata.recursion_available);

    let aaaa = ask(dns, "www.example.test.", RecordType::AAAA).await;
    assert!(matches!(&aaaa.answers[0].data, RData::AAAA(v6) if v6.0.to_string() == "2001:db8::10"));

    let mx = ask(dns, "example.test.", RecordType::MX).await;
    assert!(
        matches!(&mx.answers[0].data, RData::MX(m) if m.exchange.to_string() == "mail.example.test.")
    );

    let txt = ask(dns, "example.test.", RecordType::TXT).await;
    assert!(matches!(&txt.answers[0].data, RData::TXT(t) if t.to_string() == "v=spf1 -all"));

    let https = ask(dns, "example.test.", RecordType::HTTPS).await;
    assert_eq!(https.answers.len(), 1);
    assert_eq!(https.answers[0].record_type(), RecordType::HTTPS);

    let cname = ask(dns, "cname.example.test.", RecordType::A).await;
    assert_eq!(cname.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(a_records(&cname), [Ipv4Addr::new(192, 0, 2, 10)]);

    let nx = ask(dns, "nothing.example.test.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA));

    // The same over TCP.
    let tcp = tcp_query(dns, "www.example.test.", RecordType::A).await;
    assert_eq!(a_records(&tcp), [Ipv4Addr::new(192, 0, 2, 10)]);

    // Minimal responses: the upstream's referral NS and glue are not passed on (fresh and
    // cached), but kept for a client that asked for DNSSEC.
    for _ in 0..2 {
        let m = ask(dns, "www.example.test.", RecordType::A).await;
        assert!(m.authorities.is_empty(), "{:?}", m.authorities);
        assert!(m.additionals.is_empty(), "{:?}", m.additionals);
    }
    let with_do = Ask {
        dnssec_ok: true,
        ..Ask::default()
    };
    let m = udp_query(dns, "www.example.test.", RecordType::A, with_do)
        .await
        .unwrap();
    assert_eq!(m.authorities[0].record_type(), RecordType::NS);
}

/// A burst of queries from one socket, read and answered in batches: every query gets exactly
/// one answer, under its own ID, with its question echoed in the client's letter case (DNS
/// 0x20), and the right outcome whether forwarded, cached, blocked or nonexistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_gets_one_right_answer_per_query() {
    let up = Upstream::start().await;
    let config = format!("{LOCAL}deny = [\"games.test\"]\n");
    let (app, _) = start_hedgerow(&config, up.addr).await;
    let dns = app.dns_addrs()[0];
    let names = [
        ("WwW.ExAmple.TEST.", ResponseCode::NoError, 1),
        ("www.example.test.", ResponseCode::NoError, 1),
        ("PLAY.Games.test.", ResponseCode::NXDomain, 0),
        ("nothing.example.TEST.", ResponseCode::NXDomain, 0),
        ("cname.example.test.", ResponseCode::NoError, 2),
    ];
    // Each name once first, so the burst is answered from the cache and from policy.
    for (name, ..) in names {
        ask(dns, name, RecordType::A).await;
    }
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Waves of 40 (more than one receive batch), read before the next, so that neither
    // socket's receive buffer overflows on a busy test machine.
    const WAVE: u16 = 40;
    let mut answered = [false; 400];
    let mut buf = vec![0u8; 4096];
    for wave in 0..10 {
        for id in wave * WAVE..(wave + 1) * WAVE {
            let (name, ..) = names[usize::from(id) % names.len()];
            let mut m = Message::query();
            m.metadata.id = id;
            m.metadata.recursion_desired = true;
            m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
            if id.is_multiple_of(2) {
                m.set_edns(Edns::new());
            }
            sock.send_to(&m.to_vec().unwrap(), dns).await.unwrap();
        }
        for _ in 0..WAVE {
            let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
                .await
                .expect("every query is answered")
                .unwrap();
            let m = Message::from_vec(&buf[..n]).unwrap();
            let id = m.metadata.id;
            assert!(!answered[usize::from(id)], "query {id} answered twice");
            answered[usize::from(id)] = true;
            let (name, rcode, count) = names[usize::from(id) % names.len()];
            assert_eq!(m.queries[0].name().to_ascii(), name, "query {id}");
            assert_eq!(m.metadata.response_code, rcode, "{name}");
            assert_eq!(m.answers.len(), count, "{name}");
            assert_eq!(
                m.edns.is_some(),
                id.is_multiple_of(2),
                "OPT only when asked with one"
            );
        }
    }
    assert_eq!(
        up.seen.count("www.example.test", RecordType::A),
        1,
        "the rest were cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnssec_records_pass_through_only_with_do() {
    let up = Upstream::start().await;
    let (app, _) = start_hedgerow(LOCAL, up.addr).await;
    let dns = app.dns_addrs()[0];
    let with_do = Ask {
        dnssec_ok: true,
        ..Ask::default()
    };
    let m = udp_query(dns, "signed.example.test.", RecordType::A, with_do)
        .await
        .unwrap();
    assert!(
        up.seen.last_do.load(Ordering::SeqCst),
        "DO bit forwarded upstream"
    );
    assert!(m
        .answers
        .iter()
        .any(|r| r.record_type() == RecordType::RRSIG));
    assert!(m.edns.as_ref().unwrap().flags().dnssec_ok);
    let m = ask(dns, "signed.example.test.", RecordType::A).await;
    assert!(!m
        .answers
        .iter()
        .any(|r| r.record_type() == RecordType::RRSIG));
    assert_eq!(a_records(&m).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_answers_repeats_with_decreasing_ttl() {
    let up = Upstream::start().await;
    let (app, _) = start_hedgerow(LOCAL, up.addr).await;
    let dns = app.dns_addrs()[0];
    let first = ask(dns, "www.example.test.", RecordType::A).await;
    let second = ask(dns, "WWW.Example.TEST.", RecordType::A).await;
    assert_eq!(
        up.seen.count("www.example.test", RecordType::A),
        1,
        "second answer came from the cache"
    );
    assert_eq!(a_records(&first), a_records(&second));
    // 0x20 case is preserved in the answer's question.
    assert_eq!(second.queries[0].name().to_string(), "WWW.Example.TEST.");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = ask(dns, "www.example.test.", RecordType::A).await;
    assert_eq!(first.answers[0].ttl, 300);
    assert!(
        third.answers[0].ttl < 300,
        "TTL decreases: {}",
        third.answers[0].ttl
    );
    assert_eq!(up.seen.count("www.example.test", RecordType::A), 1);

    // Negative answers are cached too (SOA minimum 60 s).
    ask(dns, "nothing.example.test.", RecordType::A).await;
    let nx = ask(dns, "nothing.example.test.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(up.seen.count("nothing.example.test", RecordType::A), 1);

    crate::common::dns::assert_metric(
        &app,
        "hedgerow_queries_total{disposition=\"cached\",group=\"local\",qtype=\"A\"} 3",
    );
}

/// Identical misses while the upstream is still answering the first one share its answer
/// (hickory's name-server pool joins identical requests in flight): one upstream exchange,
/// every client answered, and a different type asked separately.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_misses_in_flight_share_one_upstream_exchange() {
    let up = Upstream::start().await;
    let (app, _) = start_hedgerow(LOCAL, up.addr).await;
    let dns = app.dns_addrs()[0];
    up.delay_ms.store(300, Ordering::SeqCst);
    let asks = (0..20).map(|i| {
        let qtype = if i == 0 {
            RecordType::AAAA
        } else {
            RecordType::A
        };
        ask(dns, "www.example.test.", qtype)
    });
    let answers = futures_util::future::join_all(asks).await;
    assert_eq!(up.seen.count("www.example.test", RecordType::A), 1);
    assert_eq!(up.seen.count("www.example.test", RecordType::AAAA), 1);
    for m in &answers[1..] {
        assert_eq!(a_records(m), [Ipv4Addr::new(192, 0, 2, 10)]);
    }
    assert_eq!(answers[0].answers[0].record_type(), RecordType::AAAA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outside_every_group_are_refused() {
    let up = Upstream::start().await;
    let (app, _) = start_hedgerow(LOCAL, up.addr).await;
    let dns = app.dns_addrs()[0];
    let outsider = Ask {
        from: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        ..Ask::default()
    };
    let m = udp_query(dns, "www.example.test.", RecordType::A, outsider)
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    assert_eq!(
        up.seen.count("www.example.test", RecordType::A),
        0,
        "nothing forwarded for outsiders"
    );
    crate::common::dns::assert_metric(
        &app,
        "hedgerow_queries_total{disposition=\"refused\",group=\"none\",qtype=\"A\"} 1",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_truncate_on_udp_and_complete_on_tcp() {
    let up = Upstream::start().await;
    let (app, _) = start_hedgerow(LOCAL, up.addr).await;
    let dns = app.dns_addrs()[0];
    let udp = ask(dns, "big.example.test.", RecordType::TXT).await;
    assert!(
        udp.metadata.truncation,
        "TC set when the answer exceeds the UDP payload"
    );
    let tcp = tcp_query(dns, "big.example.test.", RecordType::TXT).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 30);
    // A client without EDNS gets at most 512 bytes.
    let plain = udp_query(
        dns,
        "ads.example.test.",
        RecordType::A,
        Ask {
            edns: false,
            ..Ask::default()
        },
    )
    .await
    .unwrap();
    assert!(plain.metadata.truncation);
    assert!(plain.to_vec().unwrap().len() <= 512);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_gives_servfail_within_the_deadline() {
    // A bound socket that never answers: the upstream is "down" without ICMP errors.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = format!("{LOCAL}[upstream]\nattempt_timeout_ms = 300\ndeadline_ms = 600\n");
    let (app, _) = start_hedgerow(&config, silent.local_addr().unwrap()).await;
    let dns = app.dns_addrs()[0];
    let start = Instant::now();
    let m = ask(dns, "www.example.test.", RecordType::A).await;
    let took = start.elapsed();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(
        took < Duration::from_millis(1500),
        "SERVFAIL after {took:?}"
    );
    // And the server keeps answering.
    let m = ask(dns, "www.example.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    crate::common::dns::assert_metric(
        &app,
        "hedgerow_upstream_responses_total{outcome=\"timeout\"",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_port_closed_gives_servfail_within_the_deadline() {
    // A port nothing listens on: each datagram draws an ICMP "port unreachable" at once, so
    // the upstream fails at once instead of timing out; each question still gets its
    // SERVFAIL within the deadline. (The same with repeated names on one worker, which once
    // made the forwarder spin: `binary::a_closed_upstream_port_under_repeated_names_…`.)
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!("{LOCAL}[upstream]\nattempt_timeout_ms = 300\ndeadline_ms = 600\n");
    let (app, _) = start_hedgerow(&config, closed).await;
    let dns = app.dns_addrs()[0];
    // Many at once, as a school's devices ask while the upstream is down.
    let asked: Vec<_> = (0..200)
        .map(|i| {
            tokio::spawn(async move {
                let start = Instant::now();
                let name = format!("n{i}.example.test.");
                let m =
                    crate::common::dns::udp_query(dns, &name, RecordType::A, Default::default())
                        .await;
                (m.map(|m| m.metadata.response_code), start.elapsed())
            })
        })
        .collect();
    for task in asked {
        let (rcode, took) = task.await.unwrap();
        assert_eq!(rcode, Some(ResponseCode::ServFail), "after {took:?}");
        assert!(
            took < Duration::from_millis(1500),
            "SERVFAIL after {took:?}"
        );
    }
    // Names answered locally still are, at once.
    let m = ask(dns, "use-application-dns.net.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

/// A UDP relay in front of `to` that drops the first datagram of every question it sees (a
/// busy upstream's lost packets) and passes the others; returns its address and the count of
/// datagrams dropped.
async fn lossy_relay(to: SocketAddr) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::{atomic::AtomicU64, Arc};
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, client)) = front.recv_from(&mut buf).await else {
                return;
            };
            let packet = buf[..n].to_vec();
            let Ok(message) = Message::from_vec(&packet) else {
                continue;
            };
            let question = message
                .queries
                .first()
                .map(|q| (q.name().to_string(), q.query_type()));
            if seen.insert(question) {
                counter.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let front = front.clone();
            tokio::spawn(async move {
                let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                back.send_to(&packet, to).await.unwrap();
                let mut reply = vec![0u8; 4096];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(2), back.recv(&mut reply)).await
                {
                    let _ = front.send_to(&reply[..n], client).await;
                }
            });
        }
    });
    (addr, dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_upstream_datagram_is_sent_again_within_the_deadline() {
    let up = Upstream::start().await;
    let (relay, dropped) = lossy_relay(up.addr).await;
    let config = format!("{LOCAL}[upstream]\nattempt_timeout_ms = 300\ndeadline_ms = 1500\n");
    let (app, _) = start_hedgerow(&config, relay).await;
    let dns = app.dns_addrs()[0];
    let m = ask(dns, "www.example.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(a_records(&m), [Ipv4Addr::new(192, 0, 2, 10)]);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the first datagram was lost"
    );
    crate::common::dns::assert_metric(
        &app,
        "hedgerow_upstream_responses_total{outcome=\"timeout\"",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_gets_a_stale_answer_when_enabled() {
    let up = Upstream::start().await;
    let config = format!("{LOCAL}[cache]\nserve_stale = true\nstale_answer_timeout_ms = 200\n");
    let (app, _) = start_hedgerow(&config, up.addr).await;
    let dns = app.dns_addrs()[0];
    let fresh = ask(dns, "short.example.test.", RecordType::A).await;
    assert_eq!(fresh.answers[0].ttl, 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    up.delay_ms.store(1500, Ordering::SeqCst);
    let start = Instant::now();
    let stale = ask(dns, "short.example.test.", RecordType::A).await;
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "stale answer came after {:?}",
        start.elapsed()
    );
    assert_eq!(a_records(&stale), [Ipv4Addr::new(192, 0, 2, 20)]);
    assert_eq!(
        stale.answers[0].ttl, 30,
        "stale answers carry a 30 s TTL (RFC 8767)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_serve_stale_a_slow_upstream_means_servfail() {
    let up = Upstream::start().await;
    let config = format!("{LOCAL}[cache]\nserve_stale = false\n[upstream]\nattempt_timeout_ms = 300\ndeadline_ms = 400\n");
    let (app, _) = start_hedgerow(&config, up.addr).await;
    let dns = app.dns_addrs()[0];
    ask(dns, "short.example.test.", RecordType::A).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    up.delay_ms.store(1500, Ordering::SeqCst);
    let m = ask(dns, "short.example.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_a_flooding_client_only() {
    let up = Upstream::start().await;
    let config = "[[group]]\nname = \"local\"\nnetworks = [\"127.0.0.0/8\"]\n[rate_limit]\nqps = 2\nburst = 5\n";
    let (app, _) = start_hedgerow(config, up.addr).await;
    let dns = app.dns_addrs()[0];
    let mut refused = 0;
    let mut answered = 0;
    for _ in 0..12 {
        let m = ask(dns, "www.example.test.", RecordType::A).await;
        match m.metadata.response_code {
            ResponseCode::Refused => refused += 1,
            ResponseCode::NoError => answered += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!((5..=7).contains(&answered), "answered {answered}");
    assert_eq!(answered + refused, 12);
    // Another device is unaffected.
    let other = Ask {
        from: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
        ..Ask::default()
    };
    let m = udp_query(dns, "www.example.test.", RecordType::A, other)
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    crate::common::dns::assert_metric(&app, "disposition=\"rate_limited\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_deny_blocks_subdomains_and_allow_wins_when_more_specific() {
    let up = Upstream::start().await;
    let config = "[[group]]\nname = \"pupils\"\nnetworks = [\"127.0.0.1/32\"]\ndeny = [\"games.test\"]\nallow = [\"ok.games.test\"]\n\
                  [[group]]\nname = \"staff\"\nnetworks = [\"127.0.0.4/32\"]\n";
    let (app, _) = start_hedgerow(config, up.addr).await;
    let dns = app.dns_addrs()[0];
    for n in ["games.test.", "play.games.test.", "a.b.play.games.test."] {
        let m = ask(dns, n, RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{n}");
        let soa = m
            .authorities
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
            .expect("SOA with the block");
        assert_eq!(soa.ttl, 300);
    }
    // HTTPS queries for a blocked name are blocked too.
    let m = ask(dns, "games.test.", RecordType::HTTPS).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(up.seen.count("games.test", RecordType::A), 0);
    ask(dns, "ok.games.test.", RecordType::A).await;
    assert_eq!(
        up.seen.count("ok.games.test", RecordType::A),
        1,
        "allow is more specific: forwarded"
    );
    // Staff are not blocked.
    let staff = Ask {
        from: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)),
        ..Ask::default()
    };
    let m = udp_query(dns, "play.games.test.", RecordType::A, staff)
        .await
        .unwrap();
    assert_eq!(a_records(&m), [Ipv4Addr::new(192, 0, 2, 51)]);
    crate::common::dns::assert_metric(
        &app,
        "hedgerow_blocked_total{group=\"pupils\",reason=\"deny\"} 4",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_neither_crashes_nor_wedges_the_server() {
    let up = Upstream::start().await;
    let (app, _) = start_hedgerow(LOCAL, up.addr).await;
    let dns = app.dns_addrs()[0];
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let garbage: [&[u8]; 5] = [
        b"",
        b"\x00",
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff",
        // A label pointing at itself.
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
        &[0xffu8; 600],
    ];
    for g in garbage {
        sock.send_to(g, dns).await.unwrap();
    }
    // A truncated TCP frame: length says 100, 10 bytes follow, then the client goes away.
    let mut t = tokio::net::TcpStream::connect(dns).await.unwrap();
    t.write_all(&[0, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        .await
        .unwrap();
    drop(t);
    // A TCP client that connects and says nothing holds nothing up.
    let _idle = tokio::net::TcpStream::connect(dns).await.unwrap();
    let m = ask(dns, "www.example.test.", RecordType::A).await;
    assert_eq!(a_records(&m), [Ipv4Addr::new(192, 0, 2, 10)]);
    let m = tcp_query(dns, "www.example.test.", RecordType::A).await;
    assert_eq!(a_records(&m), [Ipv4Addr::new(192, 0, 2, 10)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connection_carries_pipelined_queries() {
    use tokio::io::AsyncReadExt;
    let up = Upstream::start().await;
    let (app, _) = start_hedgerow(LOCAL, up.addr).await;
    let dns = app.dns_addrs()[0];
    let mut stream = tokio::net::TcpStream::connect(dns).await.unwrap();
    let mut ids = Vec::new();
    for (i, n) in ["www.example.test.", "example.test.", "games.test."]
        .iter()
        .enumerate()
    {
        let mut m = hickory_proto::op::Message::query();
        m.metadata.id = 100 + i as u16;
        m.add_query(hickory_proto::op::Query::query(
            n.parse().unwrap(),
            RecordType::A,
        ));
        let b = m.to_vec().unwrap();
        stream
            .write_all(&(b.len() as u16).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&b).await.unwrap();
        ids.push(m.metadata.id);
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut buf).await.unwrap();
        got.push(
            hickory_proto::op::Message::from_vec(&buf)
                .unwrap()
                .metadata
                .id,
        );
    }
    got.sort();
    assert_eq!(got, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_prometheus_text() {
    let up = Upstream::start().await;
    let (app, _) = start_hedgerow(
        &format!("[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n{LOCAL}"),
        up.addr,
    )
    .await;
    ask(app.dns_addrs()[0], "www.example.test.", RecordType::A).await;
    let http: SocketAddr = app.http_addr().unwrap();
    let body = http_get(http, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains(
        "hedgerow_queries_total{disposition=\"forwarded\",group=\"local\",qtype=\"A\"} 1"
    ));
    assert!(body.contains("hedgerow_query_duration_seconds_bucket"));
    assert!(body.contains("hedgerow_cache_hit_ratio"));
    app.shutdown().await;
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener_and_clients() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but ::1 cannot be bound"
        );
        eprintln!("skipped: IPv6 loopback is not available on this machine");
        return;
    }
    let up = Upstream::start().await;
    let config =
        "[server]\nlisten = [\"[::1]:0\"]\n[[group]]\nname = \"v6\"\nnetworks = [\"::1/128\"]\n";
    let (app, _) = start_hedgerow(config, up.addr).await;
    let dns = app.dns_addrs()[0];
    assert!(dns.is_ipv6());
    let from_v6 = Ask {
        from: "::1".parse().unwrap(),
        ..Ask::default()
    };
    let m = udp_query(dns, "www.example.test.", RecordType::A, from_v6)
        .await
        .unwrap();
    assert_eq!(a_records(&m), [Ipv4Addr::new(192, 0, 2, 10)]);
    let m = tcp_query(dns, "www.example.test.", RecordType::AAAA).await;
    assert_eq!(m.answers.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_queries_in_flight_finish() {
    let up = Upstream::start().await;
    let (app, _) = start_hedgerow(LOCAL, up.addr).await;
    let dns = app.dns_addrs()[0];
    up.delay_ms.store(400, Ordering::SeqCst);
    let pending = tokio::spawn(async move { ask(dns, "www.example.test.", RecordType::A).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    app.shutdown().await;
    let m = pending.await.unwrap();
    assert_eq!(
        a_records(&m),
        [Ipv4Addr::new(192, 0, 2, 10)],
        "the query in flight was answered"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "drained in {:?}",
        start.elapsed()
    );
    // And the listener is gone afterwards.
    let after = udp_query(dns, "www.example.test.", RecordType::A, Ask::default()).await;
    assert!(after.is_none());
}
