//! `update` against a tiny scripted HTTP server on 127.0.0.1 (never any other address):
//! 200 with an ETag, 304 on If-None-Match, a 500, a suspiciously shrunk copy, a good copy,
//! then a compile from the cache; and the record of the last run (`last-update.toml`) that
//! `hedgerow lists update` leaves for the dashboard.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use hedgerow::lists::update::UpdateOutcome;
use hedgerow::lists::{compile, update, Blocklists, CompileOptions, Manifest, UpdateOptions};

/// One scripted response: status, extra headers, body.
type Reply = (u16, Vec<(&'static str, String)>, String);

/// Serves `replies` in order, one per connection, recording each request's head. Stops after
/// the script (bounded: no loop runs forever).
fn serve(replies: Vec<Reply>) -> (String, Arc<Mutex<Vec<String>>>, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let handle = thread::spawn(move || {
        for (status, headers, body) in replies {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            log.lock().unwrap().push(head);
            let reason = match status {
                200 => "OK",
                304 => "Not Modified",
                404 => "Not Found",
                _ => "Internal Server Error",
            };
            let mut resp = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
            for (k, v) in headers {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
            if status == 304 {
                resp.push_str("\r\n");
            } else {
                resp.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
            }
            stream.write_all(resp.as_bytes()).unwrap();
        }
    });
    (base, seen, handle)
}

fn list(n: usize, tag: &str) -> String {
    (0..n).map(|i| format!("{tag}-{i}.example.com\n")).collect()
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hedgerow-update-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn manifest(dir: &Path, urls: &[String]) -> Manifest {
    let mut toml = String::from(
        "[[category]]\nid = \"gambling\"\ntitle = \"Gambling\"\nuk_definition = \"Enables gambling\"\nseverity = \"medium\"\n",
    );
    for u in urls {
        toml.push_str(&format!(
            "[[category.source]]\nurl = \"{u}\"\nformat = \"domains\"\n"
        ));
    }
    let path = dir.join("lists.toml");
    fs::write(&path, toml).unwrap();
    Manifest::load(&path)
        .unwrap()
        .with_cache_dir(dir.join("cache"))
}

fn outcome(opts: &UpdateOptions) -> UpdateOutcome {
    let report = update(opts).unwrap();
    assert_eq!(report.sources.len(), 1);
    report.sources[0].outcome.clone()
}

#[test]
fn conditional_download_keeps_last_good_copy() {
    let dir = temp("cond");
    let etag = |v: &str| {
        vec![
            ("ETag", format!("\"{v}\"")),
            ("Last-Modified", "Mon, 20 Jul 2026 10:00:00 GMT".to_string()),
        ]
    };
    let (base, seen, server) = serve(vec![
        (200, etag("v1"), list(100, "a")),
        (304, vec![], String::new()),
        (500, vec![], "oops".into()),
        (200, etag("v2"), list(10, "b")),
        (200, etag("v3"), format!("# header\n\n{}", list(120, "c"))),
    ]);
    let url = format!("{base}/gambling.txt");
    let m = manifest(&dir, std::slice::from_ref(&url));
    let opts = UpdateOptions::new(m.clone());
    let cached = m.source_file(&m.categories[0], &m.categories[0].sources[0]);

    assert_eq!(
        outcome(&opts),
        UpdateOutcome::Downloaded {
            bytes: list(100, "a").len() as u64,
            lines: 100,
            previous_lines: None
        }
    );
    assert_eq!(fs::read_to_string(&cached).unwrap(), list(100, "a"));

    // Second run: validators sent back, 304, nothing changes.
    assert_eq!(outcome(&opts), UpdateOutcome::NotModified);
    let second = seen.lock().unwrap()[1].to_ascii_lowercase();
    assert!(second.contains("if-none-match: \"v1\""), "{second}");
    assert!(
        second.contains("if-modified-since: mon, 20 jul 2026 10:00:00 gmt"),
        "{second}"
    );

    // A server error keeps the last good copy.
    match outcome(&opts) {
        UpdateOutcome::KeptPrevious { reason } => assert!(reason.contains("500"), "{reason}"),
        o => panic!("{o:?}"),
    }
    assert_eq!(fs::read_to_string(&cached).unwrap(), list(100, "a"));

    // A copy with 10 lines instead of 100 is refused (threshold 0.5).
    match outcome(&opts) {
        UpdateOutcome::KeptPrevious { reason } => assert!(
            reason.contains("10 lines") && reason.contains("100"),
            "{reason}"
        ),
        o => panic!("{o:?}"),
    }
    assert_eq!(fs::read_to_string(&cached).unwrap(), list(100, "a"));

    // A good new copy replaces it.
    let report = update(&opts).unwrap();
    assert!(report.changed());
    assert!(matches!(
        report.sources[0].outcome,
        UpdateOutcome::Downloaded {
            lines: 121,
            previous_lines: Some(100),
            ..
        }
    ));
    assert!(report.to_string().contains("updated"));
    server.join().unwrap();
    assert_eq!(seen.lock().unwrap().len(), 5);

    // The caller compiles from the cache.
    let out = dir.join("compiled");
    compile(&CompileOptions {
        manifest: m,
        out_dir: out.clone(),
        illegal: None,
    })
    .unwrap();
    let lists = Blocklists::open(&out, None).unwrap();
    assert!(lists.lookup("www.c-7.example.com", 1).is_some());
    assert!(lists.lookup("a-7.example.com", 1).is_none());
    // No partial files left behind.
    let leftovers: Vec<_> = fs::read_dir(dir.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn first_download_failure_is_reported_and_compile_says_what_to_do() {
    let dir = temp("fail");
    let (base, _, server) = serve(vec![(404, vec![], "no".into())]);
    let m = manifest(&dir, &[format!("{base}/missing.txt")]);
    let report = update(&UpdateOptions::new(m.clone())).unwrap();
    assert_eq!(report.failed(), 1);
    assert!(!report.changed());
    assert!(report.to_string().contains("FAILED"), "{report}");
    server.join().unwrap();
    let err = compile(&CompileOptions {
        manifest: m,
        out_dir: dir.join("out"),
        illegal: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("hedgerow lists update"), "{err}");

    // A closed port (nothing listening) is a failure too, not a hang or a panic.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x.txt", closed.local_addr().unwrap());
    drop(closed);
    let m = manifest(&dir, &[url]);
    let mut opts = UpdateOptions::new(m);
    opts.timeout = Duration::from_secs(5);
    assert!(matches!(outcome(&opts), UpdateOutcome::Failed { .. }));
    fs::remove_dir_all(&dir).unwrap();
}

/// `hedgerow lists update` records how each run went, and a running server's dashboard
/// services show it per source, with the overall result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_update_is_recorded_and_shown_by_the_server() {
    use hedgerow::lists::update::{LastUpdate, SourceResult};
    let dir = temp("recorded");
    let (base, _, server) = serve(vec![
        (200, vec![], list(100, "a")),
        (500, vec![], "oops".into()),
    ]);
    let url = format!("{base}/gambling.txt");
    manifest(&dir, std::slice::from_ref(&url));
    let lists = format!(
        "[lists]\nmanifest = \"{}\"\nartifact_dir = \"{}\"\ndownload_dir = \"{}\"\n",
        dir.join("lists.toml").display(),
        dir.join("compiled").display(),
        dir.join("cache").display()
    );
    let group = "[[group]]\nname = \"pupils\"\nnetworks = [\"127.0.0.0/24\"]\nblock_categories = [\"gambling\"]\n";
    let config = dir.join("hedgerow.toml");
    fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\n{lists}{group}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let update = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hedgerow"))
            .args(["lists", "update", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        LastUpdate::read(&dir.join("cache")).expect("a record of the run")
    };
    let first = update();
    assert!(first.ok(), "{first:?}");
    assert_eq!(first.sources.len(), 1);
    assert_eq!(first.sources[0].url, url);
    assert_eq!(first.sources[0].result, SourceResult::Downloaded);
    // The server fails: the last good copy stays, and the record says so.
    let second = update();
    server.join().unwrap();
    assert!(!second.ok());
    assert_eq!(second.sources[0].result, SourceResult::KeptPrevious);
    assert!(second.sources[0].detail.contains("HTTP 500"), "{second:?}");
    assert!(second.finished_unix >= first.finished_unix);

    let (app, _) = crate::common::dns::start_hedgerow(
        &format!("{lists}{group}"),
        "127.0.0.1:9".parse().unwrap(),
    )
    .await;
    let view = app.services().lists();
    assert_eq!(view.names, 100);
    assert_eq!(view.sources.len(), 1);
    let source = &view.sources[0];
    assert_eq!((source.name.as_str(), source.entries), (url.as_str(), 100));
    assert!(!source.update_ok);
    assert!(
        source
            .last_update
            .as_deref()
            .is_some_and(|u| u.contains("HTTP 500") && u.contains("last good copy")),
        "{source:?}"
    );
    assert!(!view.update_ok);
    assert_eq!(view.updated, Some(second.finished()));
    assert!(
        view.last_update
            .as_deref()
            .is_some_and(|u| u.contains("1 failed (last good copy kept)")),
        "{view:?}"
    );
    assert_eq!(view.categories[0].title, "Gambling");
    let verdicts = app.services().test_name("www.a-7.example.com").unwrap();
    assert!(verdicts[0].blocked && verdicts[0].summary == "blocked: gambling");
    app.shutdown().await;
    fs::remove_dir_all(&dir).unwrap();
}
