//! Group policy over real sockets: client addresses 127.0.0.x map to different groups.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::common::dns::{
    a_records, scratch_dir, start_hedgerow, start_hedgerow_with, udp_query, Ask, Upstream,
};
use hedgerow::app::Overrides;
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{rdata::svcb::SvcParamKey, RData, RecordType},
};

const PUPIL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const STAFF: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
const GUEST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

/// A manifest with two small categories, written under `dir`.
fn lists_section(dir: &Path, extra: &str) -> String {
    std::fs::write(dir.join("games.txt"), "games.test\n").unwrap();
    std::fs::write(
        dir.join("adult.txt"),
        "0.0.0.0 adult.test\n0.0.0.0 bad.example.test\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("lists.toml"),
        "[[category]]\nid = \"games\"\ntitle = \"Games\"\nuk_definition = \"Online games\"\nseverity = \"low\"\n\
         [[category.source]]\npath = \"games.txt\"\nformat = \"domains\"\n\
         [[category]]\nid = \"pornography\"\ntitle = \"Pornography\"\nuk_definition = \"Sexual acts\"\nseverity = \"high\"\n\
         [[category.source]]\npath = \"adult.txt\"\nformat = \"hosts\"\n",
    )
    .unwrap();
    format!(
        "[lists]\nmanifest = \"{}\"\ncompile_if_missing = true\n{extra}\n",
        dir.join("lists.toml").display()
    )
}

async fn q(dns: std::net::SocketAddr, from: Ipv4Addr, name: &str, qtype: RecordType) -> Message {
    let ask = Ask {
        from: IpAddr::V4(from),
        ..Ask::default()
    };
    udp_query(dns, name, qtype, ask).await.expect("answer")
}

fn rcode(m: &Message) -> ResponseCode {
    m.metadata.response_code
}

const GROUPS: &str = "\
[[group]]
name = \"pupils\"
networks = [\"127.0.0.1/32\"]
block_categories = [\"games\", \"pornography\"]
deny = [\"school.test\"]
allow = [\"www.school.test\", \"adult.test\"]

[[group]]
name = \"staff\"
networks = [\"127.0.0.4/32\"]
block_categories = [\"pornography\"]
block_answer = \"null\"

[[group]]
name = \"guests\"
networks = [\"127.0.0.5/32\"]
block_categories = [\"games\", \"pornography\"]
block_answer = \"192.0.2.99\"
anti_circumvention = false
strip_ech = true

[[device]]
name = \"library-pc-6\"
ip = \"127.0.0.6\"
group = \"staff\"
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_name_blocked_for_pupils_and_allowed_for_staff() {
    let up = Upstream::start().await;
    let dir = scratch_dir("policy");
    let (app, _) = start_hedgerow(&format!("{}{GROUPS}", lists_section(&dir, "")), up.addr).await;
    let dns = app.dns_addrs()[0];
    for qtype in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::HTTPS,
        RecordType::TXT,
    ] {
        let m = q(dns, PUPIL, "play.games.test.", qtype).await;
        assert_eq!(rcode(&m), ResponseCode::NXDomain, "{qtype}");
    }
    let m = q(dns, STAFF, "play.games.test.", RecordType::A).await;
    assert_eq!(a_records(&m), [Ipv4Addr::new(192, 0, 2, 51)]);
    // A device pinned to staff by its address.
    let m = q(
        dns,
        Ipv4Addr::new(127, 0, 0, 6),
        "play.games.test.",
        RecordType::A,
    )
    .await;
    assert_eq!(a_records(&m), [Ipv4Addr::new(192, 0, 2, 51)]);
    crate::common::dns::assert_metric(
        &app,
        "hedgerow_blocked_total{group=\"pupils\",reason=\"category\"} 4",
    );
    crate::common::dns::assert_metric(&app, "hedgerow_list_entries{category=\"games\"} 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_answers_per_group() {
    let up = Upstream::start().await;
    let dir = scratch_dir("answers");
    let (app, _) = start_hedgerow(&format!("{}{GROUPS}", lists_section(&dir, "")), up.addr).await;
    let dns = app.dns_addrs()[0];
    // Pupils: NXDOMAIN with an SOA carrying the block TTL.
    let m = q(dns, PUPIL, "www.bad.example.test.", RecordType::A).await;
    assert_eq!(rcode(&m), ResponseCode::NXDomain);
    let soa = m.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.minimum),
        _ => None,
    });
    assert_eq!(soa, Some(300));
    // Staff: null addresses; NODATA for other types.
    let m = q(dns, STAFF, "bad.example.test.", RecordType::A).await;
    assert_eq!(a_records(&m), [Ipv4Addr::UNSPECIFIED]);
    let m = q(dns, STAFF, "bad.example.test.", RecordType::AAAA).await;
    assert!(matches!(&m.answers[0].data, RData::AAAA(v6) if v6.0 == Ipv6Addr::UNSPECIFIED));
    let m = q(dns, STAFF, "bad.example.test.", RecordType::TXT).await;
    assert_eq!((rcode(&m), m.answers.len()), (ResponseCode::NoError, 0));
    // Guests: the block page.
    let m = q(dns, GUEST, "play.games.test.", RecordType::A).await;
    assert_eq!(a_records(&m), [Ipv4Addr::new(192, 0, 2, 99)]);
    let m = q(dns, GUEST, "play.games.test.", RecordType::AAAA).await;
    assert_eq!((rcode(&m), m.answers.len()), (ResponseCode::NoError, 0));
    assert_eq!(
        up.seen.count("play.games.test", RecordType::A),
        0,
        "blocked names never leave"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_most_specific_wins() {
    let up = Upstream::start().await;
    let dir = scratch_dir("specific");
    let (app, _) = start_hedgerow(&format!("{}{GROUPS}", lists_section(&dir, "")), up.addr).await;
    let dns = app.dns_addrs()[0];
    assert_eq!(
        rcode(&q(dns, PUPIL, "school.test.", RecordType::A).await),
        ResponseCode::NXDomain
    );
    assert_eq!(
        rcode(&q(dns, PUPIL, "x.school.test.", RecordType::A).await),
        ResponseCode::NXDomain
    );
    q(dns, PUPIL, "www.school.test.", RecordType::A).await;
    assert_eq!(
        up.seen.count("www.school.test", RecordType::A),
        1,
        "allow is more specific than deny"
    );
    // A group allow overrides a category entry at the same depth...
    q(dns, PUPIL, "adult.test.", RecordType::A).await;
    assert_eq!(up.seen.count("adult.test", RecordType::A), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_into_a_blocked_name_is_blocked() {
    let up = Upstream::start().await;
    let dir = scratch_dir("cloak");
    let (app, _) = start_hedgerow(&format!("{}{GROUPS}", lists_section(&dir, "")), up.addr).await;
    let dns = app.dns_addrs()[0];
    let m = q(dns, PUPIL, "cloak.example.test.", RecordType::A).await;
    assert_eq!(rcode(&m), ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    let m = q(dns, STAFF, "cloak.example.test.", RecordType::A).await;
    assert_eq!(a_records(&m), [Ipv4Addr::new(192, 0, 2, 51)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circumvention_canaries_are_answered_locally() {
    let up = Upstream::start().await;
    let dir = scratch_dir("canary");
    let (app, _) = start_hedgerow(&format!("{}{GROUPS}", lists_section(&dir, "")), up.addr).await;
    let dns = app.dns_addrs()[0];
    for name in [
        "use-application-dns.net.",
        "mask.icloud.com.",
        "mask-h2.icloud.com.",
        "mask-canary.icloud.com.",
    ] {
        for qtype in [RecordType::A, RecordType::AAAA, RecordType::HTTPS] {
            let m = q(dns, PUPIL, name, qtype).await;
            assert_eq!(rcode(&m), ResponseCode::NXDomain, "{name} {qtype}");
        }
    }
    let m = q(dns, PUPIL, "_dns.resolver.arpa.", RecordType::SVCB).await;
    assert_eq!(
        (rcode(&m), m.answers.len()),
        (ResponseCode::NoError, 0),
        "DDR gets NODATA"
    );
    assert_eq!(up.seen.count("use-application-dns.net", RecordType::A), 0);
    // A group with the rules off is forwarded as usual.
    q(dns, GUEST, "use-application-dns.net.", RecordType::A).await;
    assert_eq!(up.seen.count("use-application-dns.net", RecordType::A), 1);
    // DDR discovery is answered locally, not counted as a block: operating systems ask it
    // on their own.
    crate::common::dns::assert_metric(
        &app,
        "hedgerow_blocked_total{group=\"pupils\",reason=\"circumvention\"} 12",
    );
    crate::common::dns::assert_metric(
        &app,
        "hedgerow_queries_total{disposition=\"local\",group=\"pupils\",qtype=\"SVCB\"} 1",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ech_is_stripped_only_for_groups_that_ask() {
    let up = Upstream::start().await;
    let dir = scratch_dir("ech");
    let (app, _) = start_hedgerow(&format!("{}{GROUPS}", lists_section(&dir, "")), up.addr).await;
    let dns = app.dns_addrs()[0];
    let keys = |m: &Message| -> Vec<SvcParamKey> {
        match &m.answers[0].data {
            RData::HTTPS(h) => h.0.svc_params.iter().map(|(k, _)| *k).collect(),
            other => panic!("{other:?}"),
        }
    };
    let guest = q(dns, GUEST, "ech.example.test.", RecordType::HTTPS).await;
    assert_eq!(keys(&guest), [SvcParamKey::Alpn]);
    let staff = q(dns, STAFF, "ech.example.test.", RecordType::HTTPS).await;
    assert_eq!(
        keys(&staff),
        [SvcParamKey::Alpn, SvcParamKey::EchConfigList]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_follow_the_school_clock() {
    let up = Upstream::start().await;
    let dir = scratch_dir("schedule");
    let config = format!(
        "{}[[group]]\nname = \"staff\"\nnetworks = [\"127.0.0.4/32\"]\nblock_categories = [\"games\"]\n\
         [[group.schedule]]\ndays = [\"weekdays\"]\nfrom = \"12:00\"\nto = \"13:00\"\nallow_categories = [\"games\"]\n",
        lists_section(&dir, "")
    );
    // Monday 2026-11-23, 12:30 in London (GMT) — lunch time.
    let now = Arc::new(std::sync::atomic::AtomicU64::new(1_795_437_000));
    let clock_now = now.clone();
    let overrides = Overrides {
        clock: Some(hedgerow::clock::Clock::from_fn(move || {
            UNIX_EPOCH + Duration::from_secs(clock_now.load(std::sync::atomic::Ordering::SeqCst))
        })),
        ..Default::default()
    };
    let (app, _) = start_hedgerow_with(&config, up.addr, overrides).await;
    let dns = app.dns_addrs()[0];
    let m = q(dns, STAFF, "play.games.test.", RecordType::A).await;
    assert_eq!(
        a_records(&m),
        [Ipv4Addr::new(192, 0, 2, 51)],
        "allowed at lunch"
    );
    now.store(1_795_437_000 + 3600, std::sync::atomic::Ordering::SeqCst);
    let m = q(dns, STAFF, "play.games.test.", RecordType::A).await;
    assert_eq!(rcode(&m), ResponseCode::NXDomain, "blocked at 13:30");
    // Saturday lunch time: blocked.
    now.store(
        1_795_437_000 + 5 * 86_400,
        std::sync::atomic::Ordering::SeqCst,
    );
    let m = q(dns, STAFF, "play.games.test.", RecordType::A).await;
    assert_eq!(rcode(&m), ResponseCode::NXDomain);
    let _ = SystemTime::now();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn illegal_tier_beats_every_allow_and_is_never_shown() {
    let up = Upstream::start().await;
    let dir = scratch_dir("illegal");
    let key = dir.join("illegal.key");
    hedgerow::lists::generate_key_file(&key).unwrap();
    std::fs::write(
        dir.join("iwf.txt"),
        "# synthetic stand-in for a licensed list\nhttp://school.test/\nwww.example.test\nhttps://games.test/some/page.html\n",
    )
    .unwrap();
    let extra = format!(
        "illegal_list = \"{}\"\nillegal_key_file = \"{}\"\nillegal_proxy = \"192.0.2.200\"\n",
        dir.join("iwf.txt").display(),
        key.display()
    );
    let groups = "[[group]]\nname = \"staff\"\nnetworks = [\"127.0.0.4/32\"]\nallow = [\"school.test\", \"example.test\"]\n";
    let (app, cfg) =
        start_hedgerow(&format!("{}{groups}", lists_section(&dir, &extra)), up.addr).await;
    let dns = app.dns_addrs()[0];
    for name in ["school.test.", "www.school.test.", "www.example.test."] {
        let m = q(dns, STAFF, name, RecordType::A).await;
        assert_eq!(
            rcode(&m),
            ResponseCode::NXDomain,
            "{name}: illegal tier beats allow"
        );
    }
    assert_eq!(up.seen.count("www.example.test", RecordType::A), 0);
    // A host with only path entries goes to the URL-filtering proxy.
    let m = q(dns, STAFF, "games.test.", RecordType::A).await;
    assert_eq!(a_records(&m), [Ipv4Addr::new(192, 0, 2, 200)]);
    crate::common::dns::assert_metric(&app, "reason=\"illegal\"} 3");
    // Nothing readable in the compiled artifact.
    let data = cfg.parent().unwrap().join("data/lists");
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("school.test") && !text.contains("www.example.test"));
    }
}
