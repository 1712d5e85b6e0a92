//! Unblock requests and live grants: a running server (in-process, real sockets, real
//! SQLite) and the real `hedgerow` binary making and deciding requests beside it, as a
//! technician would.
//!
//! While the server runs, the test reads and writes the store only through the binary:
//! opening the database in the server's own process (`store::open_offline`) closes a
//! descriptor of the file there, which drops the server's SQLite locks (POSIX record locks
//! belong to the process), and another process could then checkpoint the WAL under it.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use crate::common::dns::{a_records, scratch_dir, start_hedgerow_with, udp_query, Ask, Upstream};
use hedgerow::{
    app::Overrides,
    clock::Clock,
    store::{self, NewUnblockRequest, RequestStatus},
};
use hickory_proto::{op::ResponseCode, rr::RecordType};

const PUPIL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const STAFF: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

/// `games.test` is blocked for both groups.
fn config_text(dir: &Path, lists_extra: &str) -> String {
    std::fs::write(dir.join("games.txt"), "games.test\n").unwrap();
    std::fs::write(
        dir.join("lists.toml"),
        "[[category]]\nid = \"games\"\ntitle = \"Games\"\nuk_definition = \"Online games\"\nseverity = \"low\"\n\
         [[category.source]]\npath = \"games.txt\"\nformat = \"domains\"\n",
    )
    .unwrap();
    format!(
        "[rate_limit]\nqps = 0\n[lists]\nmanifest = \"{}\"\ncompile_if_missing = true\n{lists_extra}\n\
         [[group]]\nname = \"pupils\"\nnetworks = [\"127.0.0.1/32\"]\nblock_categories = [\"games\"]\n\
         [[group]]\nname = \"staff\"\nnetworks = [\"127.0.0.4/32\"]\nblock_categories = [\"games\"]\n",
        dir.join("lists.toml").display()
    )
}

/// The system clock plus an offset the test can move forward (to make a grant lapse without
/// waiting for it).
fn offset_clock() -> (Clock, Arc<AtomicU64>) {
    let offset = Arc::new(AtomicU64::new(0));
    let read = offset.clone();
    let clock = Clock::from_fn(move || {
        SystemTime::now() + Duration::from_secs(read.load(Ordering::SeqCst))
    });
    (clock, offset)
}

/// Runs `hedgerow ARGS --config CONFIG`: (success, stdout, stderr).
fn hedgerow(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hedgerow"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("HEDGEROW_LOG", "warn")
        .env("USER", "head")
        .env_remove("SUDO_USER")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The same, on the blocking pool (the server runs on this test's runtime).
async fn run(config: &Path, args: &[&str]) -> (bool, String, String) {
    let (config, args): (PathBuf, Vec<String>) = (
        config.to_path_buf(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        hedgerow(&config, &args)
    })
    .await
    .unwrap()
}

/// What the server answers `from` for `name` (A): the addresses, or `None` for NXDOMAIN.
async fn resolve(dns: SocketAddr, from: Ipv4Addr, name: &str) -> Option<Vec<Ipv4Addr>> {
    let ask = Ask {
        from: IpAddr::V4(from),
        ..Ask::default()
    };
    let m = udp_query(dns, name, RecordType::A, ask)
        .await
        .expect("an answer");
    match m.metadata.response_code {
        ResponseCode::NXDomain => None,
        ResponseCode::NoError => Some(a_records(&m)),
        other => panic!("{name}: {other}"),
    }
}

/// A request for staff, for an hour, made on the command line; returns its number.
async fn request(config: &Path, name: &str, reason: &str) -> i64 {
    let (ok, out, err) = run(
        config,
        &[
            "unblock", "request", name, "--group", "staff", "--for", "1h", "--reason", reason,
        ],
    )
    .await;
    assert!(ok, "{err}");
    let id = out
        .strip_prefix("unblock request ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok());
    id.unwrap_or_else(|| panic!("no request number in {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_on_the_command_line_reaches_the_running_server_and_lapses() {
    let up = Upstream::start().await;
    let dir = scratch_dir("grants");
    let (clock, offset) = offset_clock();
    let overrides = Overrides {
        clock: Some(clock),
        ..Default::default()
    };
    let (app, config) = start_hedgerow_with(&config_text(&dir, ""), up.addr, overrides).await;
    let data = config.parent().unwrap().join("data");
    let dns = app.dns_addrs()[0];
    assert_eq!(resolve(dns, STAFF, "play.games.test.").await, None);
    assert_eq!(resolve(dns, PUPIL, "play.games.test.").await, None);

    let id = request(&config, "Games.Test.", "a lesson on game design").await;
    let (ok, out, err) = run(&config, &["unblock", "list", "--status", "pending"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "#{id} [pending] games.test for staff (1 hour) asked by command line (head)"
        )) && out.contains("a lesson on game design"),
        "{out}"
    );
    // Approved for staff only, for a minute, on the command line.
    let (ok, out, err) = run(
        &config,
        &[
            "unblock",
            "approve",
            &id.to_string(),
            "--group",
            "staff",
            "--for",
            "1m",
            "--note",
            "for Year 9's lesson",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("games.test for staff until"), "{out}");

    // Nobody tells the server: it notices the change in the store by itself (every 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if resolve(dns, STAFF, "play.games.test.").await.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the grant never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        resolve(dns, STAFF, "play.games.test.").await,
        Some(vec![Ipv4Addr::new(192, 0, 2, 51)])
    );
    // An allowed name that CNAMEs into the granted one is allowed too.
    assert!(resolve(dns, STAFF, "cloak.example.test.").await.is_some());
    assert_eq!(
        resolve(dns, PUPIL, "play.games.test.").await,
        None,
        "pupils were not granted it"
    );
    assert_eq!(resolve(dns, PUPIL, "cloak.example.test.").await, None);

    // A configuration reload (here with a real change) keeps the grant.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "name = \"staff\"\n",
            "name = \"staff\"\ndeny = [\"www.example.test\"]\n",
        ),
    )
    .unwrap();
    app.reload().await.unwrap();
    assert_eq!(
        resolve(dns, STAFF, "www.example.test.").await,
        None,
        "the new configuration is in force"
    );
    assert!(resolve(dns, STAFF, "play.games.test.").await.is_some());
    let (ok, out, _) = run(&config, &["grants", "list"]).await;
    assert!(
        ok && out.contains("games.test for staff: in force until")
            && out.contains(&format!("unblock request {id}")),
        "{out}"
    );

    // A minute and a bit later (the server's clock) the grant has lapsed, with no refresh.
    offset.store(70, Ordering::SeqCst);
    assert_eq!(resolve(dns, STAFF, "play.games.test.").await, None);

    // A refusal records its reason.
    let refused = request(&config, "www.games.test", "more games").await;
    let (ok, _, err) = run(&config, &["unblock", "refuse", &refused.to_string()]).await;
    assert!(
        !ok && err.contains("--reason"),
        "a reason is required: {err}"
    );
    let (ok, out, err) = run(
        &config,
        &[
            "unblock",
            "refuse",
            &refused.to_string(),
            "--reason",
            "not needed for lessons",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("refused unblock request {refused}")),
        "{out}"
    );
    let (ok, out, _) = run(&config, &["unblock", "list", "--status", "refused"]).await;
    assert!(
        ok && out.contains(&format!("#{refused} [refused] www.games.test"))
            && out.contains("refused by command line (head) on ")
            && out.contains(": not needed for lessons"),
        "{out}"
    );
    // Decided requests cannot be decided again.
    let (ok, _, err) = run(
        &config,
        &["unblock", "approve", &refused.to_string(), "--for", "1h"],
    )
    .await;
    assert!(
        !ok && err.contains("already refused by command line (head)"),
        "{err}"
    );

    let (ok, out, _) = run(&config, &["audit", "list"]).await;
    assert!(ok, "{out}");
    for line in [
        format!("command line (head) [grant] unblock request {id} for games.test for staff (1 hour) made by command line (head) (why: a lesson on game design)"),
        format!("command line (head) [grant] unblock request {id} for games.test approved for staff until"),
        "(why: for Year 9's lesson)".to_string(),
        format!("command line (head) [grant] unblock request {refused} for www.games.test refused by command line (head) (why: not needed for lessons)"),
    ] {
        assert!(out.contains(&line), "no `{line}` in:\n{out}");
    }
    let (ok, out, _) = run(&config, &["audit", "verify"]).await;
    assert!(ok, "{out}");
    app.shutdown().await;

    // With the server stopped, the store itself says the same.
    let (reader, _) = store::open_offline(&data, Clock::system()).unwrap();
    let stored = reader.unblock_request(refused).unwrap().unwrap();
    assert_eq!(stored.status, RequestStatus::Refused);
    assert_eq!(
        stored.decision_note.as_deref(),
        Some("not needed for lessons")
    );
    let approved = reader.unblock_request(id).unwrap().unwrap();
    assert_eq!(approved.status, RequestStatus::Approved);
    assert_eq!(
        approved.decision_note.as_deref(),
        Some("for Year 9's lesson")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_made_directly_are_revoked_at_once_for_the_dashboard() {
    let up = Upstream::start().await;
    let dir = scratch_dir("grants-direct");
    let (app, config) =
        start_hedgerow_with(&config_text(&dir, ""), up.addr, Overrides::default()).await;
    let dns = app.dns_addrs()[0];
    let (ok, _, err) = run(
        &config,
        &[
            "grants",
            "add",
            "games.test",
            "--group",
            "guests",
            "--for",
            "1h",
            "--note",
            "x",
        ],
    )
    .await;
    assert!(
        !ok && err.contains("there is no group `guests`") && err.contains("pupils, staff"),
        "{err}"
    );
    let (ok, _, err) = run(
        &config,
        &[
            "grants",
            "add",
            "games.test",
            "--group",
            "staff",
            "--for",
            "400d",
            "--note",
            "x",
        ],
    )
    .await;
    assert!(!ok && err.contains("at most 365 days"), "{err}");
    let (ok, out, err) = run(
        &config,
        &[
            "grants",
            "add",
            "Games.Test.",
            "--group",
            "staff",
            "--group",
            "pupils",
            "--for",
            "2h",
            "--note",
            "sports day results page",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("games.test for staff") && out.contains("games.test for pupils"));
    // What the dashboard does after a change: refresh, and the change is in force at once.
    let grants = app.grants();
    grants.refresh().await;
    assert!(grants.in_force().group("pupils").is_some());
    assert!(resolve(dns, PUPIL, "play.games.test.").await.is_some());
    assert!(resolve(dns, STAFF, "play.games.test.").await.is_some());

    let (ok, out, _) = run(&config, &["grants", "list"]).await;
    assert!(ok, "{out}");
    let pupils = out
        .lines()
        .find(|l| l.contains("games.test for pupils: in force"))
        .and_then(|l| l.strip_prefix('#'))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no pupils' grant in {out}"))
        .to_string();
    let (ok, _, err) = run(
        &config,
        &[
            "grants",
            "revoke",
            &pupils,
            "--reason",
            "results are in the newsletter",
        ],
    )
    .await;
    assert!(ok, "{err}");
    grants.refresh().await;
    assert_eq!(resolve(dns, PUPIL, "play.games.test.").await, None);
    assert!(resolve(dns, STAFF, "play.games.test.").await.is_some());
    let (ok, out, _) = run(&config, &["grants", "list"]).await;
    assert!(
        ok && out.contains("games.test for pupils: revoked by command line (head)"),
        "{out}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_illegal_tier_name_cannot_be_unblocked() {
    let up = Upstream::start().await;
    let dir = scratch_dir("grants-illegal");
    let key = dir.join("illegal.key");
    hedgerow::lists::generate_key_file(&key).unwrap();
    std::fs::write(
        dir.join("iwf.txt"),
        "# synthetic stand-in for a licensed list\nschool.test\n",
    )
    .unwrap();
    let extra = format!(
        "illegal_list = \"{}\"\nillegal_key_file = \"{}\"\n",
        dir.join("iwf.txt").display(),
        key.display()
    );
    let (app, config) =
        start_hedgerow_with(&config_text(&dir, &extra), up.addr, Overrides::default()).await;
    let data = config.parent().unwrap().join("data");
    assert!(app.is_illegal("school.test"));
    assert!(
        app.is_illegal("WWW.School.Test."),
        "names below, any spelling"
    );
    assert!(!app.is_illegal("games.test"));
    assert!(!app.is_illegal("not a name"));

    // Neither a request nor a grant (nor, below, an approval): the same neutral words.
    let (ok, _, err) = run(
        &config,
        &[
            "unblock",
            "request",
            "www.school.test",
            "--group",
            "staff",
            "--for",
            "1h",
            "--reason",
            "our own site",
        ],
    )
    .await;
    assert!(
        !ok && err.contains("this name cannot be unblocked"),
        "{err}"
    );
    assert!(
        !err.contains("illegal") && !err.contains("IWF"),
        "neutral wording: {err}"
    );
    let (ok, _, err) = run(
        &config,
        &[
            "grants",
            "add",
            "school.test",
            "--group",
            "staff",
            "--for",
            "1h",
            "--note",
            "x",
        ],
    )
    .await;
    assert!(
        !ok && err.contains("this name cannot be unblocked"),
        "{err}"
    );
    let (ok, out, _) = run(&config, &["grants", "list"]).await;
    assert!(ok && out.contains("no grants"), "{out}");
    // A name beside it can be granted as usual.
    let (ok, _, err) = run(
        &config,
        &[
            "grants",
            "add",
            "games.test",
            "--group",
            "staff",
            "--for",
            "1h",
            "--note",
            "x",
        ],
    )
    .await;
    assert!(ok, "{err}");
    app.shutdown().await;

    // A request stored before the name was listed (the dashboard stores what staff ask
    // for) cannot be approved either; nothing is granted or decided.
    let (reader, commands) = store::open_offline(&data, Clock::system()).unwrap();
    let id = commands
        .request_unblock(&NewUnblockRequest {
            name: "www.school.test".into(),
            groups: vec!["staff".into()],
            reason: "our own site".into(),
            duration: Duration::from_secs(3600),
            requested_by: "teacher".into(),
            client: Some(IpAddr::V4(STAFF)),
        })
        .unwrap();
    let (ok, out, err) = run(&config, &["unblock", "approve", &id.to_string()]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("this name cannot be unblocked"), "{err}");
    assert!(!err.contains("illegal"), "neutral wording: {err}");
    assert_eq!(
        reader.unblock_request(id).unwrap().unwrap().status,
        RequestStatus::Pending
    );
    let granted: Vec<String> = reader
        .active_grants(SystemTime::now())
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(granted, ["games.test"]);
}
