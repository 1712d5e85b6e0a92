//! The replay memo end to end: repeats of a question, over real UDP sockets, get the bytes
//! the chain sent (TTLs lowered by their age), and are counted and logged as the chain counts
//! and logs them; the rate limit, a schedule's minute and a reload still apply to them.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, UNIX_EPOCH},
};

use hedgerow::{
    app::{Hedgerow, Overrides},
    clock::Clock,
    event::Disposition,
    store::{open_offline, QueryFilter},
    wire::ttl_offsets,
};
use hickory_proto::{
    op::{Edns, Message, ResponseCode},
    rr::{Name, RecordType},
};
use tokio::net::UdpSocket;

use crate::common::{
    dns::{scratch_dir, start_hedgerow_with, Upstream},
    games,
};

/// `games.test` in the games category, compiled from `dir`: the `[lists]` section.
fn lists_section(dir: &Path) -> String {
    games::write_lists(dir, "games.test\n");
    games::lists_section(dir)
}

/// One query's bytes: `name` as written (its letter case kept), with the header bits and
/// EDNS `shape` asks for.
#[derive(Debug, Clone, Copy)]
struct Shape {
    qtype: RecordType,
    rd: bool,
    cd: bool,
    /// EDNS payload size and DO bit; `None`: no OPT record.
    edns: Option<(u16, bool)>,
}

fn query_bytes(id: u16, name: &str, shape: Shape) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = shape.rd;
    m.metadata.checking_disabled = shape.cd;
    m.add_query(hickory_proto::op::Query::query(
        Name::from_ascii(name).unwrap(),
        shape.qtype,
    ));
    if let Some((payload, dnssec_ok)) = shape.edns {
        let mut e = Edns::new();
        e.set_max_payload(payload).set_dnssec_ok(dnssec_ok);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// Sends `bytes` from `from` and returns the reply's bytes, unparsed.
async fn exchange(server: SocketAddr, from: Ipv4Addr, bytes: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(from), 0))
        .await
        .unwrap();
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let reply = async {
        loop {
            let (n, peer) = sock.recv_from(&mut buf).await.unwrap();
            // Only the server's reply to this ID (see `udp_query`).
            if peer.port() == server.port() && buf[..2] == bytes[..2] {
                return buf[..n].to_vec();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), reply)
        .await
        .expect("a reply")
}

/// The counter's value in the server's metrics (0 when absent).
fn counter(app: &Hedgerow, line_start: &str) -> u64 {
    app.metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0)
}

fn replayed(app: &Hedgerow) -> u64 {
    counter(app, "hedgerow_answers_replayed_total ")
}

/// `later` is `earlier` sent again: the same bytes but for the TTLs, each the same or lower
/// by at most `by` (never to zero).
fn same_but_older(earlier: &[u8], later: &[u8], by: u32) {
    assert_eq!(earlier.len(), later.len());
    let ttls = ttl_offsets(earlier).expect("a response that parses");
    let mut masked = (earlier.to_vec(), later.to_vec());
    for at in ttls {
        let at = usize::from(at);
        let ttl = |b: &[u8]| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        let (before, after) = (ttl(earlier), ttl(later));
        assert!(
            after <= before && after + by >= before && after >= 1,
            "TTL {before} then {after}"
        );
        masked.0[at..at + 4].fill(0);
        masked.1[at..at + 4].fill(0);
    }
    assert_eq!(masked.0, masked.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_get_the_chains_bytes_and_are_counted_and_logged_alike() {
    let up = Upstream::start().await;
    let dir = scratch_dir("replay");
    games::write_lists(&dir, "games.test\n");
    let config = games::config_text(&dir);
    let (app, path) = start_hedgerow_with(&config, up.addr, Overrides::default()).await;
    let dns = app.dns_addrs()[0];
    let pupil = Ipv4Addr::LOCALHOST;
    let plain = Shape {
        qtype: RecordType::A,
        rd: true,
        cd: false,
        edns: Some((1232, false)),
    };
    // Everything the response is written from varies at least once.
    let shapes = [
        plain,
        Shape {
            edns: None,
            ..plain
        },
        Shape {
            edns: Some((4096, true)),
            ..plain
        },
        Shape { cd: true, ..plain },
        Shape { rd: false, ..plain },
        Shape {
            qtype: RecordType::AAAA,
            ..plain
        },
    ];
    let names = [
        "play.games.test.",
        "PLAY.Games.test.",
        "www.example.test.",
        "WWW.example.TEST.",
    ];
    let mut id = 0x4000u16;
    let mut sent = 0;
    // The cache's keys asked so far: the first ask of a new one is forwarded.
    let mut cached_keys = std::collections::HashSet::new();
    for name in names {
        for shape in shapes {
            id += 1;
            let bytes = query_bytes(id, name, shape);
            let before = replayed(&app);
            let first = exchange(dns, pupil, &bytes).await;
            let second = exchange(dns, pupil, &bytes).await;
            let third = exchange(dns, pupil, &bytes).await;
            sent += 3;
            let what = format!("{name} {shape:?}");
            if name.to_ascii_lowercase().contains("games") {
                // Blocked: the chain's answer is kept at once and repeated byte for byte.
                assert_eq!(first[3] & 0xF, 3, "{what}: NXDOMAIN");
                assert_eq!(second, first, "{what}");
                assert_eq!(third, first, "{what}");
                assert_eq!(replayed(&app), before + 2, "{what}");
            } else {
                // Forwarded or a cache hit from the chain (kept), then the repeats.
                assert_eq!(first[3] & 0xF, 0, "{what}: NOERROR");
                same_but_older(&first, &second, 1);
                same_but_older(&second, &third, 1);
                let key = (shape.qtype, shape.edns.is_some_and(|e| e.1), shape.cd);
                let forwarded = cached_keys.insert(key);
                let repeats = if forwarded { 1 } else { 2 };
                assert_eq!(replayed(&app), before + repeats, "{what}");
            }
        }
    }
    // A cache hit too big for the client's size is sent truncated, and never kept: nothing in
    // it says how long the cache will hold the answer.
    let big = query_bytes(
        0x6000,
        "big.example.test.",
        Shape {
            qtype: RecordType::TXT,
            ..plain
        },
    );
    let before = replayed(&app);
    for _ in 0..3 {
        let reply = exchange(dns, pupil, &big).await;
        assert_eq!(reply[2] & 0x02, 0x02, "TC set");
    }
    assert_eq!(
        replayed(&app),
        before,
        "a truncated answer is not repeated from the memo"
    );

    // Another ID gets the same answer under its own ID.
    let bytes = query_bytes(0x7777, "play.games.test.", plain);
    let reply = exchange(dns, pupil, &bytes).await;
    assert_eq!(reply[..2], [0x77, 0x77]);
    sent += 1;

    // Counted as the chain counts: every blocked query under its group, type and reason.
    let blocked = (names.len() / 2 * shapes.len() * 3 + 1) as u64;
    let count = |qtype: &str| {
        counter(
            &app,
            &format!(
                "hedgerow_queries_total{{disposition=\"blocked\",group=\"pupils\",qtype=\"{qtype}\"}} "
            ),
        )
    };
    assert_eq!(count("A") + count("AAAA"), blocked);
    assert_eq!(
        counter(
            &app,
            "hedgerow_blocked_total{group=\"pupils\",reason=\"category\"} "
        ),
        blocked
    );
    let total = |disposition: &str| {
        ["A", "AAAA"]
            .iter()
            .map(|qtype| {
                counter(
                    &app,
                    &format!(
                        "hedgerow_queries_total{{disposition=\"{disposition}\",group=\"pupils\",qtype=\"{qtype}\"}} "
                    ),
                )
            })
            .sum::<u64>()
    };
    // Forwarded once per cache key (type, DO, CD: four of the six shapes differ in them),
    // every other ask a cache hit, from the chain or repeated.
    assert_eq!(total("forwarded"), 4);
    assert_eq!(total("forwarded") + total("cached") + blocked, sent);

    // Logged as the chain logs: one row per blocked query, every field but the time alike.
    let data = path.parent().unwrap().join("data");
    let (reader, _) = open_offline(&data, Clock::system()).unwrap();
    let filter = QueryFilter {
        name: Some("play.games.test".into()),
        ..QueryFilter::default()
    };
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = reader.search(&filter, None, 1000).unwrap().rows;
        if rows.len() as u64 >= blocked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows.len() as u64, blocked);
    let shape_of = |r: &hedgerow::store::QueryRow| {
        (
            r.group.clone(),
            r.name.clone(),
            r.disposition,
            r.reason,
            r.category.clone(),
            r.rule.clone(),
            r.severity,
            r.rcode,
            r.ip.clone(),
        )
    };
    let first = shape_of(&rows[0]);
    assert_eq!(first.2, Disposition::Blocked);
    assert_eq!(first.4.as_deref(), Some("games"));
    assert!(rows.iter().all(|r| shape_of(r) == first), "{rows:#?}");
    let aaaa = rows.iter().filter(|r| r.qtype == 28).count();
    assert_eq!(aaaa, names.len() / 2 * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_still_spends_the_clients_rate_limit() {
    let up = Upstream::start().await;
    let dir = scratch_dir("replay-rate");
    let config = format!(
        "{}[rate_limit]\nqps = 1\nburst = 3\n[[group]]\nname = \"pupils\"\n\
         networks = [\"127.0.0.1/32\"]\nblock_categories = [\"games\"]\n",
        lists_section(&dir)
    );
    let (app, _) = start_hedgerow_with(&config, up.addr, Overrides::default()).await;
    let dns = app.dns_addrs()[0];
    let bytes = query_bytes(
        0x1234,
        "play.games.test.",
        Shape {
            qtype: RecordType::A,
            rd: true,
            cd: false,
            edns: None,
        },
    );
    let mut rcodes = Vec::new();
    for _ in 0..6 {
        let reply = exchange(dns, Ipv4Addr::LOCALHOST, &bytes).await;
        rcodes.push(ResponseCode::from(0, reply[3] & 0xF));
    }
    // The burst (one from the chain, two repeats), then refusals.
    assert_eq!(&rcodes[..3], [ResponseCode::NXDomain; 3]);
    assert_eq!(&rcodes[3..], [ResponseCode::Refused; 3], "{rcodes:?}");
    assert_eq!(replayed(&app), 2);
    assert_eq!(
        counter(
            &app,
            "hedgerow_queries_total{disposition=\"rate_limited\",group=\"pupils\",qtype=\"A\"} "
        ),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_block_ends_with_its_minute_when_a_schedule_can_lift_it_and_with_a_reload() {
    let up = Upstream::start().await;
    let dir = scratch_dir("replay-schedule");
    let config = format!(
        "{}[rate_limit]\nqps = 0\n[[group]]\nname = \"staff\"\nnetworks = [\"127.0.0.4/32\"]\n\
         block_categories = [\"games\"]\n\
         [[group.schedule]]\ndays = [\"weekdays\"]\nfrom = \"12:00\"\nto = \"13:00\"\n\
         allow_categories = [\"games\"]\n",
        lists_section(&dir)
    );
    // Monday 2026-11-23, 11:59:50 in London (GMT): ten seconds before games are allowed.
    let lunch = 1_795_435_200;
    let now = Arc::new(AtomicU64::new(lunch - 10));
    let read = now.clone();
    let overrides = Overrides {
        clock: Some(Clock::from_fn(move || {
            UNIX_EPOCH + Duration::from_secs(read.load(Ordering::SeqCst))
        })),
        ..Default::default()
    };
    let (app, path) = start_hedgerow_with(&config, up.addr, overrides).await;
    let dns = app.dns_addrs()[0];
    let staff = Ipv4Addr::new(127, 0, 0, 4);
    let shape = Shape {
        qtype: RecordType::A,
        rd: true,
        cd: false,
        edns: Some((1232, false)),
    };
    let bytes = query_bytes(0x2222, "play.games.test.", shape);
    let rcode = |reply: &[u8]| reply[3] & 0xF;
    assert_eq!(rcode(&exchange(dns, staff, &bytes).await), 3);
    assert_eq!(rcode(&exchange(dns, staff, &bytes).await), 3);
    assert_eq!(replayed(&app), 1, "the block is repeated within its minute");
    // 12:00:05: the kept block is no longer valid; the chain allows the name.
    now.store(lunch + 5, Ordering::SeqCst);
    let reply = exchange(dns, staff, &bytes).await;
    assert_eq!(rcode(&reply), 0, "allowed at lunch");
    assert_eq!(replayed(&app), 1);

    // A kept cache hit does not outlive a reload that denies the name.
    for _ in 0..2 {
        assert_eq!(rcode(&exchange(dns, staff, &bytes).await), 0);
    }
    assert_eq!(replayed(&app), 2, "the cache hit was kept and repeated");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "name = \"staff\"\n",
            "name = \"staff\"\ndeny = [\"play.games.test\"]\n",
        ),
    )
    .unwrap();
    app.reload().await.unwrap();
    assert_eq!(rcode(&exchange(dns, staff, &bytes).await), 3, "denied");
}
