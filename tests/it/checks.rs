//! Filtering checks end to end: a running Hedgerow (and the `hedgerow check-filtering`
//! binary) asks each group's names through the real pipeline, with groups on 127.0.0.x, the
//! shipped sample lists, an illegal-content tier from a synthetic list, and a loopback
//! upstream (alive, or dead). Runs are read back from the store; alerts reach a webhook
//! receiver on loopback.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use hedgerow::{
    clock::Clock,
    store::{open_offline, AuditKind, BreachFilter, CheckKind, CheckTrigger, WITHHELD},
};
use hickory_proto::{op::ResponseCode, rr::RecordType};

use crate::common::{
    dns::{scratch_dir, start_hedgerow, udp_query, Ask, Upstream},
    webhook::webhook,
};

/// The illegal-content test entry: it must never appear in clear anywhere it could be read.
const PROBE_HOST: &str = "iwf-probe-target.test";

/// A loopback address nobody answers on (bound, then closed).
fn dead_upstream() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `[lists]` with the shipped sample lists and an illegal-content tier (a synthetic list whose
/// only entry is the test entry), plus the groups and `[checks]` every test here uses; the
/// upstream is given here (`servers`) or by the in-process harness.
fn config(dir: &Path, servers: Option<SocketAddr>, extra: &str) -> String {
    let key = dir.join("illegal.key");
    hedgerow::lists::generate_key_file(&key).unwrap();
    std::fs::write(
        dir.join("iwf.txt"),
        format!("# synthetic stand-in for a licensed list\n{PROBE_HOST}\n"),
    )
    .unwrap();
    format!(
        "[upstream]\n{servers}attempt_timeout_ms = 300\ndeadline_ms = 600\n\
         [lists]\nmanifest = \"{manifest}/lists/lists.toml\"\ncompile_if_missing = true\n\
         illegal_list = \"{list}\"\nillegal_key_file = \"{key}\"\n\
         [[group]]\nname = \"pupils\"\nnetworks = [\"127.0.0.16/28\"]\n\
         block_categories = [\"pornography\", \"gambling\", \"games\"]\n\
         [group.safesearch]\ngoogle = true\nbing = true\nyoutube = \"strict\"\n\
         [[group]]\nname = \"staff\"\nnetworks = [\"127.0.0.32/28\"]\n\
         block_categories = [\"pornography\"]\nblock_answer = \"null\"\nanti_circumvention = false\n\
         [checks]\nallowed = [\"www.example.test\", \"school.test\"]\n\
         illegal_probe = \"https://{PROBE_HOST}/test/page.html\"\n{extra}",
        servers = servers.map_or(String::new(), |s| format!("servers = [\"{s}\"]\n")),
        manifest = env!("CARGO_MANIFEST_DIR"),
        list = dir.join("iwf.txt").display(),
        key = key.display(),
    )
}

/// Whether any file under `dir` (the database, its WAL, the journal) holds `needle`.
fn any_file_contains(dir: &Path, needle: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return Some(path);
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_passes_is_recorded_and_leaves_no_query_or_breach() {
    let up = Upstream::start().await;
    let dir = scratch_dir("checks-pass");
    let (app, path) = start_hedgerow(&config(&dir, None, ""), up.addr).await;
    let data = path.parent().unwrap().join("data");

    let run = app
        .run_checks(CheckTrigger::Dashboard, "dsl@school")
        .await
        .unwrap();
    let failed: Vec<_> = run.items.iter().filter(|i| i.failed()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(run.failed, 0);
    assert_eq!(run.passed as usize, run.items.len());
    assert!(run.items.iter().all(|i| i.tested));

    let of = |group: &str, kind: CheckKind| {
        run.items
            .iter()
            .filter(|i| i.group == group && i.kind == kind)
            .collect::<Vec<_>>()
    };
    // Three names from each blocked category, each one listed in it and blocked.
    let blocked = of("pupils", CheckKind::Blocked);
    for category in ["pornography", "gambling", "games"] {
        let names: Vec<_> = blocked
            .iter()
            .filter(|i| i.category.as_deref() == Some(category))
            .collect();
        assert_eq!(names.len(), 3, "{category}: {blocked:#?}");
        assert!(names.iter().all(|i| i.observed == "blocked (NXDOMAIN)"));
    }
    // The staff's block answer is 0.0.0.0, and that is what they were checked against.
    let staff = of("staff", CheckKind::Blocked);
    assert_eq!(staff.len(), 3);
    assert!(
        staff
            .iter()
            .all(|i| i.expected == "blocked (answered 0.0.0.0)" && i.observed == i.expected),
        "{staff:#?}"
    );
    // The allowed names resolved through the upstream, for both groups.
    for group in ["pupils", "staff"] {
        let allowed = of(group, CheckKind::Allowed);
        let probes: Vec<&str> = allowed.iter().map(|i| i.probe.as_str()).collect();
        assert_eq!(probes, ["www.example.test", "school.test"]);
    }
    assert_eq!(
        of("pupils", CheckKind::Allowed)[0].observed,
        "resolved (192.0.2.10)"
    );
    assert!(up.seen.count("www.example.test", RecordType::A) >= 1);
    // SafeSearch per the group's settings: pupils have three engines locked, staff none.
    let rewrites: Vec<(&str, &str)> = of("pupils", CheckKind::SafeSearch)
        .iter()
        .map(|i| (i.probe.as_str(), i.observed.as_str()))
        .collect();
    assert_eq!(
        rewrites,
        [
            (
                "www.google.com",
                "rewritten to forcesafesearch.google.com (192.0.2.60)"
            ),
            (
                "www.youtube.com",
                "rewritten to restrict.youtube.com (192.0.2.61)"
            ),
            ("www.bing.com", "rewritten to strict.bing.com (192.0.2.63)"),
        ]
    );
    assert!(of("staff", CheckKind::SafeSearch).is_empty());
    // Canaries only where anti-circumvention is on.
    let canaries = of("pupils", CheckKind::Canary);
    assert!(canaries.iter().any(
        |i| i.probe == "use-application-dns.net" && i.observed == "answered locally (NXDOMAIN)"
    ));
    assert!(canaries
        .iter()
        .any(|i| i.probe == "_dns.resolver.arpa" && i.observed == "answered locally (no data)"));
    assert!(of("staff", CheckKind::Canary).is_empty());
    // The illegal-content test entry was blocked for both groups, and is never named.
    for group in ["pupils", "staff"] {
        let illegal = of(group, CheckKind::Illegal);
        assert_eq!(illegal.len(), 1);
        assert_eq!(illegal[0].probe, WITHHELD);
        assert_eq!(illegal[0].observed, "blocked (NXDOMAIN)");
    }
    assert!(!format!("{run:?}").contains(PROBE_HOST));
    assert_eq!(up.seen.count(PROBE_HOST, RecordType::A), 0);

    // Stored as run, read back the same.
    let (reader, _) = open_offline(&data, Clock::system()).unwrap();
    let stored = reader.check_run(run.id).unwrap().unwrap();
    assert_eq!(stored, run);
    assert_eq!(stored.trigger, CheckTrigger::Dashboard);
    assert_eq!(stored.by, "dsl@school");
    assert_eq!(reader.last_check().unwrap().unwrap().id, run.id);
    let listed = reader.check_runs(None, 10).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].items.is_empty());
    let audit = reader.audit(None, 50).unwrap();
    let record = audit.iter().find(|a| a.kind == AuditKind::Check).unwrap();
    assert_eq!(
        record.change,
        format!(
            "filtering check {}: {} passed, 0 failed (from the dashboard)",
            run.id, run.passed
        )
    );
    assert_eq!(record.actor, "dsl@school");

    // The checks were not counted as anyone's queries: one real blocked query is the only
    // one the metrics and the query log get.
    let ask = Ask {
        from: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 17)),
        ..Ask::default()
    };
    let real = udp_query(app.dns_addrs()[0], "www.pornhub.com.", RecordType::A, ask)
        .await
        .unwrap();
    assert_eq!(real.metadata.response_code, ResponseCode::NXDomain);
    crate::common::dns::assert_metric(
        &app,
        "hedgerow_blocked_total{group=\"pupils\",reason=\"category\"} 1",
    );
    crate::common::dns::assert_metric(
        &app,
        "hedgerow_blocked_total{group=\"pupils\",reason=\"illegal\"} 0",
    );
    app.shutdown().await;
    // Closing the store wrote everything that was queued.
    assert_eq!(reader.query_count().unwrap(), 1);
    let breaches = reader
        .breaches(&BreachFilter::default(), None, 100)
        .unwrap();
    let sites: Vec<&str> = breaches.iter().map(|b| b.domain.as_str()).collect();
    assert_eq!(sites, ["pornhub.com"], "only the real query's breach");
    assert_eq!(
        any_file_contains(&data, PROBE_HOST),
        None,
        "the illegal-content test entry is stored nowhere in clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_fails_the_run_records_it_and_alerts_the_dsl() {
    let dir = scratch_dir("checks-dead");
    let (port, hooks) = webhook();
    let extra = format!("[alerts.webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\n");
    let (app, path) = start_hedgerow(&config(&dir, None, &extra), dead_upstream()).await;
    let data = path.parent().unwrap().join("data");

    let run = app
        .run_checks(CheckTrigger::Schedule, "the schedule")
        .await
        .unwrap();
    let failed: Vec<_> = run.items.iter().filter(|i| i.failed()).collect();
    // Names that need the upstream fail: the allowed names and the SafeSearch targets.
    assert!(!failed.is_empty());
    assert!(
        failed
            .iter()
            .all(|i| matches!(i.kind, CheckKind::Allowed | CheckKind::SafeSearch)),
        "{failed:#?}"
    );
    let allowed: Vec<_> = failed
        .iter()
        .filter(|i| i.kind == CheckKind::Allowed)
        .collect();
    assert_eq!(allowed.len(), 4, "two names, two groups");
    assert!(
        allowed
            .iter()
            .all(|i| i.observed.starts_with("no answer:") && i.observed.ends_with("(SERVFAIL)")),
        "{allowed:#?}"
    );
    // Blocking needs no upstream: it still works, and says so.
    assert!(run
        .items
        .iter()
        .filter(|i| i.kind == CheckKind::Blocked)
        .all(|i| i.passed));
    assert_eq!(run.failed as usize, failed.len());

    let (reader, _) = open_offline(&data, Clock::system()).unwrap();
    let stored = reader.last_check().unwrap().unwrap();
    assert_eq!((stored.id, stored.failed), (run.id, run.failed));
    assert_eq!(stored.trigger, CheckTrigger::Schedule);

    let alert = hooks
        .recv_timeout(Duration::from_secs(20))
        .expect("the failed check reached the webhook");
    let json: serde_json::Value = serde_json::from_str(&alert).unwrap();
    assert_eq!(json["event"], "hedgerow.filtering_check_failed");
    assert_eq!(json["run_id"], run.id);
    assert_eq!(json["failed"], run.failed);
    let probes: Vec<&str> = json["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["probe"].as_str().unwrap())
        .collect();
    assert!(probes.contains(&"www.example.test"), "{alert}");
    assert!(!alert.contains(PROBE_HOST));
    app.shutdown().await;
    assert_eq!(reader.query_count().unwrap(), 0, "checks are never logged");
}

#[test]
fn the_command_line_check_exits_non_zero_records_and_alerts_without_naming_the_probe() {
    let dir = scratch_dir("checks-cli");
    let (port, hooks) = webhook();
    let text = format!(
        "[server]\ndata_dir = \"{}\"\n{}",
        dir.join("data").display(),
        config(
            &dir,
            Some(dead_upstream()),
            &format!("[alerts.webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\n"),
        ),
    );
    let path = dir.join("hedgerow.toml");
    std::fs::write(&path, &text).unwrap();
    let bin = env!("CARGO_BIN_EXE_hedgerow");
    let compile = Command::new(bin)
        .args(["lists", "compile", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        compile.status.success(),
        "{}",
        String::from_utf8_lossy(&compile.stderr)
    );

    let out = Command::new(bin)
        .args(["check-filtering", "--config"])
        .arg(&path)
        .env("USER", "technician")
        .env_remove("SUDO_USER")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("check(s) failed"), "{stderr}");
    assert!(
        stdout.contains("group `pupils`") && stdout.contains("group `staff`"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("FAILED") && l.contains("www.example.test")),
        "{stdout}"
    );
    assert!(stdout.contains("alert sent by webhook"), "{stdout}");
    assert!(
        !stdout.contains(PROBE_HOST) && !stderr.contains(PROBE_HOST),
        "{stdout}\n{stderr}"
    );

    let alert = hooks
        .recv_timeout(Duration::from_secs(5))
        .expect("webhook alert");
    assert!(alert.contains("filtering_check_failed"), "{alert}");

    let (reader, _) = open_offline(&dir.join("data"), Clock::system()).unwrap();
    let run = reader.last_check().unwrap().unwrap();
    assert_eq!(run.trigger, CheckTrigger::CommandLine);
    assert_eq!(run.by, "command line (technician)");
    assert!(run.failed > 0);
    let run = reader.check_run(run.id).unwrap().unwrap();
    let illegal: Vec<_> = run
        .items
        .iter()
        .filter(|i| i.kind == CheckKind::Illegal)
        .collect();
    assert_eq!(illegal.len(), 2);
    assert!(illegal.iter().all(|i| i.passed && i.probe == WITHHELD));
    assert_eq!(any_file_contains(&dir.join("data"), PROBE_HOST), None);
}

/// Measures [`hedgerow::lists::Blocklists::sample`] (the figures in `src/lists/sample.rs`):
/// an artifact compiled from the real lists in `../shared/data` (every list of
/// `derived/list-category-map.derived.tsv` in its proposed category), or the compiled artifact
/// in `$HEDGEROW_SAMPLE_ARTIFACT` (say, the 5 M-name list of `../shared/bench/gen_lists.py`).
/// Prints times; asserts only that names come back listed in their category.
///
/// ```text
/// cargo test --test it measure_category_sampling -- --ignored --nocapture
/// ```
#[test]
#[ignore = "measurement: prints how long sampling takes on real lists"]
fn measure_category_sampling() {
    use hedgerow::lists::{compile, Blocklists, CompileOptions, Manifest};
    use std::time::Instant;

    let tmp = crate::common::tempdir::TempDir::new("sample-measure");
    let artifact = match std::env::var_os("HEDGEROW_SAMPLE_ARTIFACT") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let Some(data) = crate::common::shared_data::shared_data() else {
                return;
            };
            let map = std::fs::read_to_string(data.join("derived/list-category-map.derived.tsv"))
                .unwrap();
            let mut manifest = String::new();
            let mut categories: Vec<(String, Vec<PathBuf>)> = Vec::new();
            for row in map.lines().skip(1) {
                let f: Vec<&str> = row.split('\t').collect();
                let (id, path, category) = (f[0], f[1], f[3]);
                if category == "allowlist" || id.starts_with("adguard-services/") {
                    continue;
                }
                let source = data.join(path);
                let local = if path.ends_with(".zst") {
                    let out = tmp.path().join(format!("src-{}.txt", id.replace('/', "-")));
                    let bytes = zstd::decode_all(std::fs::File::open(&source).unwrap()).unwrap();
                    std::fs::write(&out, bytes).unwrap();
                    out
                } else {
                    source
                };
                match categories.iter_mut().find(|(c, _)| c == category) {
                    Some((_, files)) => files.push(local),
                    None => categories.push((category.to_string(), vec![local])),
                }
            }
            for (id, files) in &categories {
                manifest.push_str(&format!(
                    "[[category]]\nid = \"{id}\"\ntitle = \"{id}\"\nuk_definition = \"-\"\nseverity = \"medium\"\n"
                ));
                for f in files {
                    manifest.push_str(&format!(
                        "[[category.source]]\npath = \"{}\"\nformat = \"auto\"\n",
                        f.display()
                    ));
                }
            }
            let path = tmp.path().join("lists.toml");
            std::fs::write(&path, manifest).unwrap();
            let out = tmp.path().join("compiled");
            let report = compile(&CompileOptions {
                manifest: Manifest::load(&path).unwrap(),
                out_dir: out.clone(),
                illegal: None,
            })
            .unwrap();
            eprintln!("compiled {} names", report.names);
            out
        }
    };
    let lists = Blocklists::open(&artifact, None).unwrap();
    eprintln!(
        "{} names in {} categories",
        lists.meta().names,
        lists.categories().len()
    );
    let t = Instant::now();
    let mut keys = 0u64;
    lists.sample(u32::MAX, 1, 0, |_| {
        keys += 1;
        false
    });
    eprintln!(
        "a full pass (nothing accepted): {:.3} s over {keys} names",
        t.elapsed().as_secs_f64()
    );
    for c in lists.categories() {
        let mut times = Vec::new();
        for seed in 0..5u64 {
            let t = Instant::now();
            let names = lists.sample(c.mask(), 3, seed * 7919, |_| true);
            times.push(t.elapsed().as_secs_f64());
            for n in &names {
                assert!(lists.lookup(n, c.mask()).is_some(), "{n} not in {}", c.id);
            }
            if seed == 0 {
                eprintln!("{:>24}: {names:?}", c.id);
            }
        }
        times.sort_by(f64::total_cmp);
        eprintln!(
            "{:>24}  {:>9} names  3 names in {:.4}–{:.4} s (median {:.4})",
            c.id,
            lists
                .meta()
                .categories
                .iter()
                .find(|m| m.id == c.id)
                .map_or(0, |m| m.entries),
            times[0],
            times[4],
            times[2]
        );
    }
}
