//! The real `hedgerow` binary, driven by clients nobody here wrote (`dig`) and by signals.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::common::dns::{scratch_dir, Upstream};

/// A running `hedgerow serve`; killed on drop.
struct Running {
    child: Child,
    dns: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Waits until a log line contains `needle`.
    fn wait_for_log(&self, needle: &str) -> String {
        loop {
            match self.log.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(_) => panic!("no log line containing {needle:?} within 30 s"),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

fn serve(config: &std::path::Path, upstream: SocketAddr) -> Running {
    serve_with(config, upstream, &[])
}

/// [`serve`] with more command-line arguments.
fn serve_with(config: &std::path::Path, upstream: SocketAddr, extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hedgerow"))
        .args(["serve", "--config"])
        .arg(config)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.to_string(),
        ])
        .args(extra)
        .env("HEDGEROW_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[hedgerow] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut running = Running {
        child,
        dns: "0.0.0.0:0".parse().unwrap(),
        log: rx,
    };
    let line = running.wait_for_log("DNS listening");
    let addr = line
        .rsplit("addr=")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    running.dns = addr.parse().unwrap();
    running
}

fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `body` with a data folder under `dir` and the shipped sample lists compiled on start.
fn with_lists(dir: &std::path::Path, body: &str) -> String {
    format!(
        "[server]\ndata_dir = \"{}\"\n[lists]\nmanifest = \"{}/lists/lists.toml\"\ncompile_if_missing = true\n{body}",
        dir.display(),
        env!("CARGO_MANIFEST_DIR")
    )
}

const CONFIG: &str =
    "[[group]]\nname = \"pupils\"\nnetworks = [\"127.0.0.1/32\"]\ndeny = [\"games.test\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_answers_blocks_and_truncation() {
    if !crate::common::tools::dig() {
        return;
    }
    let up = Upstream::start().await;
    let dir = scratch_dir("dig");
    let config = dir.join("h.toml");
    std::fs::write(&config, with_lists(&dir, CONFIG)).unwrap();
    let h = serve(&config, up.addr);
    let dns = h.dns;
    tokio::task::spawn_blocking(move || {
        assert_eq!(
            dig(dns, &["+short", "www.example.test", "A"]).trim(),
            "192.0.2.10"
        );
        assert_eq!(
            dig(dns, &["+short", "www.example.test", "AAAA"]).trim(),
            "2001:db8::10"
        );
        assert_eq!(
            dig(dns, &["+short", "example.test", "MX"]).trim(),
            "10 mail.example.test."
        );
        let blocked = dig(dns, &["play.games.test", "A"]);
        assert!(blocked.contains("status: NXDOMAIN"), "{blocked}");
        assert!(
            blocked.contains("hedgerow.invalid."),
            "block answers carry our SOA: {blocked}"
        );
        let https = dig(dns, &["games.test", "HTTPS"]);
        assert!(https.contains("status: NXDOMAIN"), "{https}");
        // Big answer: dig retries over TCP by itself after TC and gets all 30 records.
        let big = dig(dns, &["+short", "big.example.test", "TXT"]);
        assert_eq!(big.lines().count(), 30, "{big}");
        let tc = dig(dns, &["+ignore", "big.example.test", "TXT"]);
        assert!(tc.contains(" tc"), "{tc}");
        // EDNS version 1 is answered BADVERS; dig falls back to version 0 by itself.
        let v1 = dig(dns, &["+edns=1", "www.example.test"]);
        assert!(v1.contains("BADVERS") && v1.contains("192.0.2.10"), "{v1}");
        let tcp = dig(dns, &["+tcp", "+short", "www.example.test"]);
        assert_eq!(tcp.trim(), "192.0.2.10");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_config_keeps_serving_and_sigterm_exits_cleanly() {
    let up = Upstream::start().await;
    let dir = scratch_dir("hup");
    let config = dir.join("h.toml");
    std::fs::write(&config, with_lists(&dir, CONFIG)).unwrap();
    let mut h = serve(&config, up.addr);
    let dns = h.dns;
    let blocked = |name: &'static str| async move {
        let m = crate::common::dns::ask(dns, name, hickory_proto::rr::RecordType::A).await;
        m.metadata.response_code == hickory_proto::op::ResponseCode::NXDomain
    };
    assert!(blocked("play.games.test.").await);

    // A broken file: the old configuration stays in force and the log says why.
    std::fs::write(
        &config,
        "[[group]]\nname = \"pupils\"\nnetworks = [\"not-a-network\"]\n",
    )
    .unwrap();
    h.signal("-HUP");
    let line = h.wait_for_log("reload failed");
    assert!(line.contains("h.toml") && line.contains("line 3"), "{line}");
    assert!(
        blocked("play.games.test.").await,
        "old policy still in force"
    );

    // A good file takes effect without a restart.
    std::fs::write(&config, with_lists(&dir, "[[group]]\nname = \"pupils\"\nnetworks = [\"127.0.0.1/32\"]\ndeny = [\"school.test\"]\n")).unwrap();
    h.signal("-HUP");
    h.wait_for_log("configuration reloaded");
    assert!(!blocked("play.games.test.").await);
    assert!(blocked("school.test.").await);
    h.signal("-TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = h.child.wait().unwrap();
        drop(h);
        status
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}");

    // Both changes are in the store's audit trail, with what triggered them, and SIGTERM
    // drained every answered query into the query log before the process exited.
    let (reader, _) =
        hedgerow::store::open_offline(&dir, hedgerow::clock::Clock::system()).unwrap();
    let audit: Vec<String> = reader
        .audit(None, 100)
        .unwrap()
        .into_iter()
        .map(|e| format!("{} | {}", e.change, e.reason))
        .collect();
    let has = |text: &str| audit.iter().any(|line| line.contains(text));
    assert!(
        has("group `pupils` deny: added school.test | reload requested (SIGHUP)"),
        "{audit:?}"
    );
    assert!(has("group `pupils` deny: removed games.test"), "{audit:?}");
    assert!(has("policy in force at start-up"), "{audit:?}");
    assert_eq!(reader.verify_audit().unwrap().first_broken, None);
    let logged = reader
        .search(&hedgerow::store::QueryFilter::default(), None, 100)
        .unwrap()
        .rows;
    let names: Vec<&str> = logged.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "play.games.test").count(),
        3,
        "{names:?}"
    );
    assert!(names.contains(&"school.test"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_upstream_port_under_repeated_names_gets_servfail_and_sigterm_exits() {
    // Nothing listens on the upstream's port: every datagram draws an ICMP error at once.
    // Devices ask for the same names at once (hickory then shares one lookup between them).
    // The forwarder once sent again at once after a round reported as timed out; a round
    // that joined a shared lookup already timed out came back at once, again and again,
    // without yielding, so the lookup's owner never ran to retire it: the one worker spun at
    // 100 % CPU, answered nothing more and ignored SIGTERM.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = scratch_dir("closed-upstream");
    let config = dir.join("h.toml");
    let body = format!("{CONFIG}[upstream]\nattempt_timeout_ms = 300\ndeadline_ms = 900\n");
    std::fs::write(&config, with_lists(&dir, &body)).unwrap();
    let mut h = serve_with(&config, closed, &["--threads", "1"]);
    let dns = h.dns;
    for round in 0..5 {
        let asked: Vec<_> = (0..120)
            .map(|i| {
                tokio::spawn(async move {
                    let name = format!("n{}.example.test.", i % 3);
                    let m = crate::common::dns::udp_query(
                        dns,
                        &name,
                        hickory_proto::rr::RecordType::A,
                        Default::default(),
                    )
                    .await;
                    m.map(|m| m.metadata.response_code)
                })
            })
            .collect();
        for task in asked {
            let rcode = task.await.unwrap();
            assert_eq!(
                rcode,
                Some(hickory_proto::op::ResponseCode::ServFail),
                "round {round}"
            );
        }
    }
    h.signal("-TERM");
    let status = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Some(status) = h.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    })
    .await
    .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?} 10 s after SIGTERM"
    );
}

#[test]
fn check_config_explains_groups_and_rejects_bad_files() {
    let dir = scratch_dir("check");
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        format!("[upstream]\nservers = [\"192.0.2.53\"]\n{CONFIG}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hedgerow"))
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("group `pupils`: clients in 127.0.0.1/32"),
        "{text}"
    );
    assert!(
        text.contains("always blocks (with subdomains): games.test"),
        "{text}"
    );
    assert!(text.contains("REFUSED"), "{text}");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[cache]\nsize = \"lots\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hedgerow"))
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 2") && err.contains("size"),
        "{err}"
    );
}

#[test]
fn lists_lookup_explains_which_file_and_line() {
    let dir = scratch_dir("lookup");
    let config = dir.join("h.toml");
    std::fs::write(
        &config,
        with_lists(
            &dir,
            "[[group]]\nname = \"pupils\"\nnetworks = [\"10.0.0.0/8\"]\nblock_categories = [\"games\"]\n\
             [[group]]\nname = \"staff\"\nnetworks = [\"10.1.0.0/16\"]\n",
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hedgerow"))
            .args(["lists", "lookup"])
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let all = run(&["www.roblox.com"]);
    assert!(
        all.contains("pupils: BLOCKED") && all.contains("category games"),
        "{all}"
    );
    assert!(all.contains("staff: allowed"), "{all}");
    assert!(
        all.contains("samples/games.txt:"),
        "names the source file and line: {all}"
    );
    let one = run(&["www.roblox.com", "--client", "10.1.2.3"]);
    assert!(
        one.contains("staff: allowed") && !one.contains("pupils"),
        "{one}"
    );
}

/// Two worker threads, in each way of spreading UDP queries over them: with `per-worker` the
/// server reads two UDP sockets in one `SO_REUSEPORT` group (the kernel spreads clients over
/// them by source port), with `shared` one socket; either way every client is answered from
/// one cache and one policy. 64 clients on 64 source ports: with a socket of the group left
/// unread, about half would time out; with a cache per worker, the upstream would be asked
/// more than once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_answer_every_client_from_one_cache_with_either_udp_socket_layout() {
    use crate::common::dns::{a_records, udp_query, udp_sockets_on, Ask};
    use hickory_proto::{op::ResponseCode, rr::RecordType};

    for (layout, sockets) in [("per-worker", 2), ("shared", 1)] {
        let up = Upstream::start().await;
        let dir = scratch_dir("workers");
        let config = dir.join("h.toml");
        let text = with_lists(&dir, CONFIG).replacen(
            "[server]\n",
            &format!("[server]\nudp_sockets = \"{layout}\"\n"),
            1,
        );
        std::fs::write(&config, text).unwrap();
        let h = serve_with(&config, up.addr, &["--threads", "2"]);
        let dns = h.dns;
        assert_eq!(udp_sockets_on(dns.port()), sockets, "{layout}");

        for client in 0..64 {
            let m = udp_query(dns, "www.example.test.", RecordType::A, Ask::default())
                .await
                .unwrap_or_else(|| panic!("{layout}: client {client} got no answer"));
            assert_eq!(
                a_records(&m),
                ["192.0.2.10".parse::<std::net::Ipv4Addr>().unwrap()]
            );
            let blocked = udp_query(dns, "play.games.test.", RecordType::A, Ask::default())
                .await
                .unwrap_or_else(|| panic!("{layout}: client {client}: no answer when blocked"));
            assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
        }
        assert_eq!(
            up.seen.count("www.example.test", RecordType::A),
            1,
            "{layout}: every client after the first was answered from the one cache"
        );
        assert!(!up.seen.asked_for("play.games.test"));
    }
}
