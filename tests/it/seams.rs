//! The technician's tools tell the truth about what the DNS path does: `lists lookup` gives
//! the same verdict as a real DNS answer (SafeSearch included), `check-config` describes
//! SafeSearch and devices, the audit trail records every change that alters what a device
//! gets, reloads are counted by what triggered them, and the query log sees one complete
//! event per query (illegal-tier names withheld).

use std::{
    net::{IpAddr, Ipv4Addr},
    process::Command,
    sync::{Arc, Mutex},
};

use hedgerow::{
    config::Config,
    event::{BlockReason, Disposition, EventName, QueryEvent, QuerySink, Severity},
    lists,
};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};

use crate::common::dns::{scratch_dir, start_hedgerow, udp_query, Ask, Upstream};

const PUPIL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const STAFF: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
/// Inside the pupils' network, but pinned to staff as a `[[device]]`.
const HEAD_LAPTOP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

const GROUPS: &str = "\
[[group]]
name = \"pupils\"
networks = [\"127.0.0.0/24\"]
block_categories = [\"games\", \"pornography\"]
deny = [\"tiktok.com\"]
allow = [\"kagi.com\"]
[group.safesearch]
google = true
bing = true
youtube = \"strict\"
block_unenforceable = true

[[group]]
name = \"staff\"
networks = [\"127.0.0.4/32\"]
[group.safesearch]
google = true

[[device]]
name = \"head-laptop\"
ip = \"127.0.0.9\"
group = \"staff\"
";

/// What the DNS path did, as a client sees it.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Blocked,
    Rewritten,
    Local,
    Allowed,
}

fn from_dns(m: &Message) -> Verdict {
    let ours = m.authorities.iter().any(|r| match &r.data {
        RData::SOA(soa) => soa.mname.to_ascii().contains("hedgerow.invalid"),
        _ => false,
    });
    match (m.metadata.response_code, m.answers.first().map(|r| &r.data)) {
        (ResponseCode::NXDomain, _) if ours => Verdict::Blocked,
        (ResponseCode::NoError, None) if ours => Verdict::Local,
        (_, Some(RData::CNAME(_))) => Verdict::Rewritten,
        _ => Verdict::Allowed,
    }
}

fn from_lookup(report: &str) -> Verdict {
    let line = report.lines().nth(1).expect("one group line");
    if line.contains(": BLOCKED") {
        Verdict::Blocked
    } else if line.contains(": REWRITTEN") {
        Verdict::Rewritten
    } else if line.contains(": ANSWERED LOCALLY") {
        Verdict::Local
    } else {
        assert!(line.contains(": allowed"), "{report}");
        Verdict::Allowed
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_reports_exactly_what_dns_answers() {
    let up = Upstream::start().await;
    let (app, path) = start_hedgerow(GROUPS, up.addr).await;
    let dns = app.dns_addrs()[0];
    let config = Config::from_file(&path).unwrap();
    let blocklists = lists::configured::open(&config).unwrap();
    let names = [
        "www.example.test",
        "roblox.com",
        "www.roblox.com",
        "education.minecraft.net",
        "www.tiktok.com",
        "www.google.com",
        "www.google.co.uk",
        "www.bing.com",
        "www.youtube.com",
        "www.startpage.com",
        "startpage.com",
        "kagi.com",
        "use-application-dns.net",
        "mask.icloud.com",
        "_dns.resolver.arpa",
    ];
    let mut seen = std::collections::HashSet::new();
    for client in [PUPIL, STAFF, HEAD_LAPTOP] {
        for name in names {
            let report = hedgerow::lookup::report(
                &config,
                &blocklists,
                None,
                name,
                Some(IpAddr::V4(client)),
                std::time::SystemTime::now(),
            )
            .unwrap();
            let qtype = if name.starts_with("_dns") {
                RecordType::SVCB
            } else {
                RecordType::A
            };
            let ask = Ask {
                from: IpAddr::V4(client),
                ..Ask::default()
            };
            let m = udp_query(dns, &format!("{name}."), qtype, ask)
                .await
                .expect("answer");
            let (said, did) = (from_lookup(&report), from_dns(&m));
            assert_eq!(
                said, did,
                "{client} {name}: lookup said\n{report}DNS: {m:?}"
            );
            seen.insert(did_name(&said));
        }
    }
    // The set covers every kind of verdict, so the comparison means something.
    assert_eq!(seen.len(), 4, "{seen:?}");
}

fn did_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Blocked => "blocked",
        Verdict::Rewritten => "rewritten",
        Verdict::Local => "local",
        Verdict::Allowed => "allowed",
    }
}

#[test]
fn lookup_names_the_safesearch_rewrite_and_the_unenforceable_engine() {
    let dir = scratch_dir("lookup-ss");
    let config = dir.join("h.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\n[lists]\nmanifest = \"{}/lists/lists.toml\"\ncompile_if_missing = true\n{GROUPS}",
            dir.join("data").display(),
            env!("CARGO_MANIFEST_DIR")
        ),
    )
    .unwrap();
    let run = |name: &str, client: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_hedgerow"))
            .args(["lists", "lookup", name, "--client", client, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run("startpage.com", "127.0.0.1");
    assert!(
        text.contains("pupils: BLOCKED — group `pupils`: Startpage cannot lock SafeSearch"),
        "{text}"
    );
    let text = run("www.google.com", "127.0.0.1");
    assert!(
        text.contains(
            "pupils: REWRITTEN — group `pupils`: google SafeSearch → forcesafesearch.google.com"
        ),
        "{text}"
    );
    // The head's laptop sits in the pupils' network but is pinned to staff.
    let text = run("startpage.com", "127.0.0.9");
    assert!(text.contains("staff: allowed"), "{text}");
}

#[test]
fn check_config_describes_safesearch_and_devices() {
    let dir = scratch_dir("check-ss");
    let config = dir.join("h.toml");
    std::fs::write(&config, GROUPS).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hedgerow"))
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("SafeSearch: locked on for Google and Bing; not enforced for DuckDuckGo"),
        "{text}"
    );
    assert!(text.contains("YouTube Restricted Mode strict"), "{text}");
    assert!(
        text.contains("SafeSearch: locked on for Google; not enforced for Bing"),
        "{text}"
    );
    assert!(
        text.contains("device `head-laptop` (address 127.0.0.9) is always in group `staff`"),
        "{text}"
    );
}

/// Every setting that changes what a device gets leaves an audit record when it changes.
#[test]
fn every_policy_setting_is_audited() {
    let base = "[rate_limit]\nqps = 50\nburst = 100\n[lists]\nillegal_proxy = \"192.0.2.1\"\n";
    let group = "[[group]]\nname = \"pupils\"\nnetworks = [\"10.0.0.0/8\"]\n";
    let device = "[[device]]\nname = \"pc\"\nip = \"10.0.0.7\"\ngroup = \"pupils\"\n";
    let parse = |text: &str| Config::from_toml_str(text, "t.toml").unwrap();
    let old = parse(&format!("{base}{group}{device}"));
    // (what changes, the new file, words the record must contain)
    let cases: Vec<(&str, String, &str)> = vec![
        ("rate limit", format!("[rate_limit]\nqps = 5\nburst = 100\n[lists]\nillegal_proxy = \"192.0.2.1\"\n{group}{device}"), "rate limit"),
        ("burst", format!("[rate_limit]\nqps = 50\nburst = 7\n[lists]\nillegal_proxy = \"192.0.2.1\"\n{group}{device}"), "burst"),
        ("illegal proxy", format!("[rate_limit]\nqps = 50\nburst = 100\n{group}{device}"), "URL-filtering proxy"),
        ("device group", format!("{base}{group}[[group]]\nname = \"staff\"\nnetworks = [\"10.1.0.0/16\"]\n[[device]]\nname = \"pc\"\nip = \"10.0.0.7\"\ngroup = \"staff\"\n"), "device `pc`: address 10.0.0.7 in group `pupils` → address 10.0.0.7 in group `staff`"),
        ("device address", format!("{base}{group}[[device]]\nname = \"pc\"\nip = \"10.0.0.8\"\ngroup = \"pupils\"\n"), "device `pc`"),
        ("device removed", format!("{base}{group}"), "device `pc` removed"),
        ("device added", format!("{base}{group}{device}[[device]]\nname = \"tab\"\nmac = \"02:00:00:00:00:01\"\ngroup = \"pupils\"\n"), "device `tab` added (MAC 02:00:00:00:00:01"),
        ("timezone", format!("[server]\ntimezone = \"UTC\"\n{base}{group}{device}"), "time zone"),
        ("safesearch", format!("{base}{group}[group.safesearch]\ngoogle = true\n{device}"), "SafeSearch: locked on for Google"),
        ("block answer", format!("{base}{group}block_answer = \"null\"\n{device}"), "block answer"),
        ("ech", format!("{base}{group}strip_ech = true\n{device}"), "ECH"),
        ("upstreams", format!("[upstream]\nservers = [\"192.0.2.9\"]\n{base}{group}{device}"), "upstreams"),
        ("networks", format!("{base}[[group]]\nname = \"pupils\"\nnetworks = [\"10.0.0.0/9\"]\n{device}"), "networks"),
    ];
    for (what, text, expect) in cases {
        let records = hedgerow::audit::diff(&old, &parse(&text));
        assert!(
            records.iter().any(|r| r.contains(expect)),
            "{what}: no record containing `{expect}` in {records:?}"
        );
    }
    assert!(hedgerow::audit::diff(&old, &old).is_empty());
}

/// Collects events as the store's sink would receive them.
#[derive(Default)]
struct Collect(Mutex<Vec<QueryEvent>>);

impl QuerySink for Collect {
    fn record(&self, event: QueryEvent) {
        self.0.lock().unwrap().push(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_stage_builds_one_complete_event_per_query() {
    use hedgerow::{
        clock::Clock,
        lists::{BlocklistsBuilder, EntryKind},
        metrics::Metrics,
        pipeline::{
            cache::CacheStore,
            chain::{self, ChainParts},
            Query, Transport,
        },
    };
    let up = Upstream::start().await;
    let mut b = BlocklistsBuilder::new();
    let porn = b
        .category("pornography", "Pornography", Severity::High)
        .unwrap();
    b.add(porn, "bad.test", EntryKind::Subtree).unwrap();
    let sink = Arc::new(Collect::default());
    let parts = ChainParts {
        metrics: Arc::new(Metrics::new().unwrap()),
        sink: Some(sink.clone()),
        lists: Arc::new(b.build().unwrap()),
        grants: Default::default(),
        cache: Arc::new(CacheStore::new()),
        buckets: Default::default(),
        clock: Clock::system(),
        neighbours: Default::default(),
    };
    let config = Config::from_toml_str(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[[group]]\nname = \"pupils\"\nnetworks = [\"127.0.0.0/24\"]\nblock_categories = [\"pornography\"]\n[[device]]\nname = \"pc-12\"\nip = \"127.0.0.12\"\ngroup = \"pupils\"\n",
            up.addr
        ),
        "t.toml",
    )
    .unwrap();
    let pipeline = chain::build(&config, &parts).unwrap();
    let ask = |from: [u8; 4], name: &str| {
        Query::new(
            IpAddr::from(from),
            Transport::Tcp,
            hickory_proto::rr::Name::from_ascii(name).unwrap(),
            RecordType::AAAA,
        )
    };
    pipeline
        .resolve(&mut ask([127, 0, 0, 12], "WWW.Bad.test."))
        .await;
    pipeline
        .resolve(&mut ask([127, 0, 0, 3], "www.example.test."))
        .await;
    pipeline
        .resolve(&mut ask([192, 0, 2, 1], "www.example.test."))
        .await;
    let events = sink.0.lock().unwrap().clone();
    assert_eq!(events.len(), 3);
    let blocked = &events[0];
    assert_eq!(blocked.device.as_deref(), Some("pc-12"));
    assert_eq!(blocked.group.as_deref(), Some("pupils"));
    assert_eq!(blocked.name, EventName::Clear("www.bad.test".into()));
    assert_eq!(blocked.qtype, u16::from(RecordType::AAAA));
    assert_eq!(blocked.transport, Transport::Tcp);
    assert_eq!(blocked.disposition, Disposition::Blocked);
    assert_eq!(blocked.reason, Some(BlockReason::Category));
    assert_eq!(blocked.category.as_deref(), Some("pornography"));
    assert_eq!(blocked.severity, Some(Severity::High));
    assert_eq!(blocked.rcode, u16::from(ResponseCode::NXDomain));
    assert!(blocked
        .rule
        .as_deref()
        .unwrap()
        .contains("list entry `bad.test`"));
    let allowed = &events[1];
    assert_eq!(allowed.device, None);
    assert_eq!(allowed.disposition, Disposition::Forwarded);
    assert_eq!((allowed.reason, allowed.severity), (None, None));
    let outsider = &events[2];
    assert_eq!(outsider.group, None);
    assert_eq!(outsider.disposition, Disposition::Refused);
}

/// The dashboard's "test a name" ([`hedgerow::dashboard::Services::test_name`] of a running
/// server) gives each group the verdict, rule and source line that `hedgerow lists lookup`
/// prints for the same configuration, and says nothing more than "on the child-abuse (IWF)
/// list" about a name on that list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_name_gives_what_lists_lookup_prints() {
    let up = Upstream::start().await;
    let dir = scratch_dir("test-a-name");
    std::fs::write(dir.join("games.txt"), "# games\ngames.test\n").unwrap();
    std::fs::write(dir.join("adult.txt"), "0.0.0.0 adult.test\n").unwrap();
    let key = dir.join("illegal.key");
    lists::generate_key_file(&key).unwrap();
    std::fs::write(
        dir.join("iwf.txt"),
        "# synthetic stand-in for a licensed list\nwww.withheld.test\nhttps://partly.test/one/page.html\n",
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
    let config = format!(
        "[lists]\nmanifest = \"{}\"\ncompile_if_missing = true\nillegal_list = \"{}\"\nillegal_key_file = \"{}\"\n{GROUPS}",
        dir.join("lists.toml").display(),
        dir.join("iwf.txt").display(),
        key.display()
    );
    let (app, path) = start_hedgerow(&config, up.addr).await;
    let services = app.services();
    assert_eq!(services.groups(), ["pupils", "staff"]);
    let names = [
        "www.bbc.co.uk",
        "games.test",
        "play.games.test",
        "adult.test",
        "www.tiktok.com",
        "kagi.com",
        "www.google.com",
        "www.youtube.com",
        "startpage.com",
        "mask.icloud.com",
        "_dns.resolver.arpa",
        "www.withheld.test",
        "partly.test",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        let verdicts = tokio::task::spawn_blocking({
            let services = services.clone();
            move || services.test_name(name)
        })
        .await
        .unwrap()
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hedgerow"))
            .args(["lists", "lookup", name, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        // Each group's line, with the explanation lines under it.
        let mut printed: Vec<(String, Vec<String>)> = Vec::new();
        for line in text.lines().skip(1) {
            match line.strip_prefix("      ") {
                Some(more) => printed.last_mut().unwrap().1.push(more.to_string()),
                None => printed.push((line.trim().to_string(), Vec::new())),
            }
        }
        assert_eq!(verdicts.len(), printed.len(), "{name}: {text}");
        for (v, (line, explained)) in verdicts.iter().zip(&printed) {
            seen.insert(v.summary.clone());
            let said = |what: &str| line.starts_with(&format!("{}: {what}", v.group));
            assert_eq!(v.blocked, said("BLOCKED"), "{name}: {v:?} vs {line}");
            if v.summary.contains("child-abuse (IWF)") {
                assert_eq!(v.summary, "blocked: on the child-abuse (IWF) list");
                assert!(v.detail.is_empty(), "nothing more about the illegal tier");
                assert!(
                    line.contains("illegal-content list (entry withheld)"),
                    "{line}"
                );
                continue;
            }
            let mut detail = v.detail.lines();
            let first = detail.next().unwrap_or_default();
            assert!(
                !first.is_empty() && line.contains(first),
                "{name}: {v:?} vs {line}"
            );
            let rest: Vec<&str> = detail.collect();
            assert_eq!(rest, *explained, "{name}: the source lines behind a block");
            if said("REWRITTEN") {
                assert!(v.summary.starts_with("allowed with"), "{v:?}");
            }
        }
    }
    // The names cover every kind of verdict, so the comparison means something.
    let kinds = [
        "allowed",
        "allowed by the school's allow list",
        "allowed with SafeSearch",
        "allowed with YouTube Restricted Mode",
        "answered by Hedgerow (nothing to block)",
        "blocked by the school's own list",
        "blocked: a search engine that cannot lock SafeSearch",
        "blocked: a way round the filter",
        "blocked: games",
        "blocked: on the child-abuse (IWF) list",
        "blocked: pornography",
    ];
    assert_eq!(seen, kinds.map(String::from).into(), "{seen:?}");
    // Category blocks name the category and quote the list line.
    let games = services.test_name("play.games.test").unwrap();
    assert_eq!(games[0].summary, "blocked: games");
    assert!(
        games[0].detail.contains("games.txt:2: games.test"),
        "{games:?}"
    );
    assert!(services.test_name("not a name").is_err());
    app.shutdown().await;
}
