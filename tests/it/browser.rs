//! The dashboard in a real browser: the real `hedgerow serve` (DNS, HTTP and the block page on
//! loopback, a small compiled list, the store on), a real upstream, accounts made with
//! `hedgerow user add`, a person's session with `hedgerow sessions import`, a blocked query
//! sent by `dig` from the pupil's address; then `tests/e2e/dashboard.py` drives headless
//! Chromium through selenium (the scenarios are listed there, among them an unblock asked for
//! on the block page, approved, and checked with `dig`) and this test fails when it does.
//! Screenshots of every page go to `target/screenshots/`.
//!
//! Needs `chromium`, `chromium-driver`, Python's selenium and axe-core (`.ci/run` installs
//! them): without them the test says so and skips, except under `CI=true`, where it fails.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use hickory_proto::rr::{rdata::A, Name, RData, Record, RecordType};

use crate::common::{
    dns::{zone, Upstream},
    tempdir::TempDir,
    tools,
};

const PASSWORD: &str = "correct horse battery staple 42";
const PUPIL_IP: &str = "127.0.0.21";
const STAFF_IP: &str = "127.0.0.22";
/// Where the browser runs: a staff laptop too (the block page names the category for the
/// group of the address that asks for it).
const BROWSER_IP: &str = "127.0.0.1";
const PUPIL_DEVICE: &str = "pupil-laptop-7";
const PUPIL_PERSON: &str = "jsmith";
/// Listed in the test's high-severity category, and answered by the upstream with
/// [`BLOCKED_ADDRESS`] (so a scenario can see an unblock work).
const BLOCKED: &str = "www.harmful.test";
const BLOCKED_ADDRESS: &str = "192.0.2.80";
/// What the pupil looks up that is not blocked.
const FINE: &str = "www.example.test";
/// The longest the browser scenarios may take before the run is stopped.
const BROWSER_LIMIT: Duration = Duration::from_secs(300);

/// A running `hedgerow serve`; killed on drop.
struct Serve {
    child: Child,
    dns: SocketAddr,
    http: SocketAddr,
    block_page: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `hedgerow serve --config CONFIG` and reads the DNS, HTTP and block page addresses
/// it bound from its log.
fn serve(config: &Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hedgerow"))
        .args(["serve", "--config"])
        .arg(config)
        .env("HEDGEROW_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[hedgerow] {line}");
            let _ = tx.send(line);
        }
    });
    let mut serve = Serve {
        child,
        dns: "0.0.0.0:0".parse().unwrap(),
        http: "0.0.0.0:0".parse().unwrap(),
        block_page: "0.0.0.0:0".parse().unwrap(),
    };
    let addr_in = |line: &str| -> SocketAddr {
        let addr = line.rsplit("addr=").next().unwrap_or_default();
        let addr = addr.split_whitespace().next().unwrap_or_default();
        addr.parse()
            .unwrap_or_else(|e| panic!("no address in {line:?}: {e}"))
    };
    let (mut dns, mut http, mut page) = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while dns.is_none() || http.is_none() || page.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("DNS listening") => dns = Some(addr_in(&line)),
            Ok(line) if line.contains("HTTP listening") => http = Some(addr_in(&line)),
            Ok(line) if line.contains("block page listening") => page = Some(addr_in(&line)),
            Ok(_) => {}
            Err(_) => {
                panic!("hedgerow did not log its DNS, HTTP and block page addresses within 30 s")
            }
        }
    }
    serve.dns = dns.unwrap();
    serve.http = http.unwrap();
    serve.block_page = page.unwrap();
    serve
}

/// Runs `hedgerow ARGS --config CONFIG` with `stdin` piped in; panics unless it succeeds.
fn hedgerow(config: &Path, args: &[&str], stdin: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hedgerow"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("USER", "e2e-admin")
        .env("HEDGEROW_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "hedgerow {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dig` from `from` to Hedgerow; the whole answer as text.
fn dig(server: SocketAddr, from: &str, name: &str) -> String {
    let out = Command::new("dig")
        .args(["-b", from, &format!("@{}", server.ip())])
        .args([
            "-p",
            &server.port().to_string(),
            "+time=3",
            "+tries=1",
            name,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The configuration: pupils and staff on their own loopback addresses (the browser's is a
/// staff one too), both blocking the test's high-severity category and answering a blocked
/// name with the block page's address; the block page on a free loopback port; the pupil's
/// device named; the store on.
fn config(dir: &Path, upstream: SocketAddr) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
http = "127.0.0.1:0"
data_dir = "{data}"

[upstream]
servers = ["{upstream}"]

[lists]
manifest = "{lists}"
compile_if_missing = true

[store]
enabled = true
batch_interval_ms = 50

[dashboard]
school_name = "Oakfield Primary"
block_page = "{BROWSER_IP}:0"

[[group]]
name = "pupils"
networks = ["{PUPIL_IP}/32"]
block_categories = ["self_harm"]
block_answer = "{BROWSER_IP}"

[[group]]
name = "staff"
networks = ["{STAFF_IP}/32", "{BROWSER_IP}/32"]
block_categories = ["self_harm"]
block_answer = "{BROWSER_IP}"

[[device]]
name = "{PUPIL_DEVICE}"
ip = "{PUPIL_IP}"
group = "pupils"
"#,
        data = dir.join("data").display(),
        lists = dir.join("lists/lists.toml").display(),
    )
}

/// A one-category manifest: self-harm, high severity, listing [`BLOCKED`]'s site.
fn lists(dir: &Path) {
    let lists = dir.join("lists");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::write(lists.join("self-harm.txt"), "harmful.test\n").unwrap();
    std::fs::write(
        lists.join("lists.toml"),
        r#"[[category]]
id = "self_harm"
title = "Self-harm and suicide"
uk_definition = "Promotes or displays deliberate self-harm"
severity = "high"

[[category.source]]
path = "self-harm.txt"
format = "domains"
"#,
    )
    .unwrap();
}

/// Runs `python3 tests/e2e/dashboard.py SETUP`, stopped after [`BROWSER_LIMIT`].
fn run_browser(setup: &Path) -> (Option<i32>, String) {
    let mut child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/dashboard.py"))
        .arg(setup)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > BROWSER_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    if !tools::dig() {
        return;
    }
    let Some((chromium, chromedriver)) = tools::browser() else {
        return;
    };
    let mut zone = zone();
    zone.insert(
        (BLOCKED.to_string(), RecordType::A),
        vec![Record::from_rdata(
            Name::from_ascii(format!("{BLOCKED}.")).unwrap(),
            300,
            RData::A(A(BLOCKED_ADDRESS.parse().unwrap())),
        )],
    );
    let upstream = Upstream::with_zone(zone).await;
    let upstream_addr = upstream.addr;
    tokio::task::spawn_blocking(move || browse(upstream_addr, &chromium, &chromedriver))
        .await
        .unwrap();
    drop(upstream);
}

fn browse(upstream: SocketAddr, chromium: &Path, chromedriver: &Path) {
    let dir = TempDir::new("browser");
    lists(dir.path());
    let config = dir.path().join("hedgerow.toml");
    std::fs::write(&config, self::config(dir.path(), upstream)).unwrap();
    // One account per role.
    let accounts = [
        ("dana", "dsl"),
        ("tom", "technician"),
        ("alex", "approver"),
        ("gill", "governor"),
    ];
    for (name, role) in accounts {
        hedgerow(
            &config,
            &["user", "add", name, "--role", role],
            &format!("{PASSWORD}\n"),
        );
    }
    let sessions = dir.path().join("sessions.csv");
    std::fs::write(
        &sessions,
        format!(
            "ip,username,device,start,end\n\
             {PUPIL_IP},{PUPIL_PERSON},,2020-01-01T00:00:00Z,2099-01-01T00:00:00Z\n"
        ),
    )
    .unwrap();
    hedgerow(
        &config,
        &["sessions", "import", sessions.to_str().unwrap()],
        "",
    );

    let server = serve(&config);
    // The pupil looks up an ordinary site, then the listed one: the block page's address, and
    // a breach.
    let fine = dig(server.dns, PUPIL_IP, FINE);
    assert!(
        fine.contains("status: NOERROR") && fine.contains("192.0.2.10"),
        "{fine}"
    );
    let blocked = dig(server.dns, PUPIL_IP, BLOCKED);
    assert!(
        blocked.contains("status: NOERROR")
            && blocked.contains(&format!("\t{}", server.block_page.ip()))
            && !blocked.contains(BLOCKED_ADDRESS),
        "{blocked}"
    );
    let staff = dig(server.dns, STAFF_IP, FINE);
    assert!(staff.contains("status: NOERROR"), "{staff}");

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    if let Ok(old) = std::fs::read_dir(&shots) {
        for f in old.flatten() {
            if f.path().extension().is_some_and(|e| e == "png") {
                let _ = std::fs::remove_file(f.path());
            }
        }
    }
    let accounts: serde_json::Map<String, serde_json::Value> = accounts
        .iter()
        .map(|(name, role)| {
            let account = serde_json::json!({"name": name, "password": PASSWORD});
            (role.to_string(), account)
        })
        .collect();
    let setup = serde_json::json!({
        "base": format!("http://{}", server.http),
        "dns": [server.dns.ip().to_string(), server.dns.port()],
        "accounts": accounts,
        "pupil": {"ip": PUPIL_IP, "device": PUPIL_DEVICE, "person": PUPIL_PERSON},
        "staff": {"ip": STAFF_IP},
        "block_page": [server.block_page.ip().to_string(), server.block_page.port()],
        "blocked_site": BLOCKED,
        "blocked_site_address": BLOCKED_ADDRESS,
        "visited": [FINE, BLOCKED],
        "axe": tools::axe_core_path(),
        "screenshots": shots,
        "chromium": chromium,
        "chromedriver": chromedriver,
    });
    let setup_file = dir.path().join("setup.json");
    std::fs::write(&setup_file, setup.to_string()).unwrap();

    let started = Instant::now();
    let (status, output) = run_browser(&setup_file);
    eprintln!(
        "{output}\nbrowser scenarios: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        status,
        Some(0),
        "the browser scenarios failed (None: stopped after {BROWSER_LIMIT:?}):\n{output}"
    );
    drop(server);
}
