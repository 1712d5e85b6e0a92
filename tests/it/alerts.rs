//! Safeguarding alerts against real receivers on loopback: a small HTTP server here for the
//! webhook (it answers with the statuses a test scripts), and Python's aiosmtpd for email.
//! Time is injected through `Clock`, so the throttle window passes without waiting.

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use hedgerow::{
    alerts::{Alerter, BreachAlert, WITHHELD},
    clock::Clock,
    config::alerts::{AlertsConfig, EmailConfig, WebhookConfig},
    event::Severity,
    metrics::Metrics,
    schedule::TimeZone,
};

use crate::common::{tempdir::TempDir, tools};

/// One request the webhook receiver got.
#[derive(Debug)]
struct Request {
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver: answers each request with the next scripted status (200 when the
/// script is used up) and passes the request on.
struct Receiver {
    addr: SocketAddr,
    requests: mpsc::Receiver<Request>,
}

impl Receiver {
    fn start(statuses: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(
            statuses.iter().copied().collect::<VecDeque<_>>(),
        ));
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                assert!(line.starts_with("POST /hook "), "{line}");
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (n, v) = h.split_once(':').unwrap();
                    headers.push((n.trim().to_string(), v.trim().to_string()));
                }
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let status = script.lock().unwrap().pop_front().unwrap_or(200);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = tx.send(Request {
                    headers,
                    body: serde_json::from_slice(&body).unwrap(),
                });
            }
        });
        Receiver { addr, requests }
    }

    fn next(&self) -> Request {
        self.requests
            .recv_timeout(Duration::from_secs(10))
            .expect("no webhook request within 10 s")
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

/// A clock the test moves by hand.
fn stepped_clock(start: SystemTime) -> (Clock, Arc<AtomicU64>) {
    let secs = Arc::new(AtomicU64::new(
        start.duration_since(UNIX_EPOCH).unwrap().as_secs(),
    ));
    let read = Arc::clone(&secs);
    let clock =
        Clock::from_fn(move || UNIX_EPOCH + Duration::from_secs(read.load(Ordering::SeqCst)));
    (clock, secs)
}

fn t0() -> SystemTime {
    // Thursday 26 November 2026, 10:01:00 UTC (GMT).
    UNIX_EPOCH + Duration::from_secs(1_795_687_260)
}

fn alert(id: i64, device: &str, at: SystemTime) -> BreachAlert {
    BreachAlert {
        breach_id: id,
        device: device.into(),
        group: Some("pupils".into()),
        category: Some("self-harm".into()),
        severity: Severity::High,
        domain: "selfharm.example".into(),
        count: 1,
        first: at,
        last: at,
        dashboard_url: Some(format!("http://hedgerow.school.lan/breaches/{id}")),
    }
}

fn config() -> AlertsConfig {
    AlertsConfig {
        throttle: Duration::from_secs(600),
        tries: 3,
        retry_backoff: Duration::from_millis(50),
        timezone: TimeZone::EuropeLondon,
        ..AlertsConfig::default()
    }
}

/// The value of `hedgerow_store_alerts_total{channel, outcome}` (0 when absent).
fn count(metrics: &Metrics, channel: &str, outcome: &str) -> u64 {
    let line =
        format!("hedgerow_store_alerts_total{{channel=\"{channel}\",outcome=\"{outcome}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&line).map(|v| v.parse().unwrap()))
        .unwrap_or(0)
}

#[test]
fn webhook_throttles_per_device_retries_and_carries_the_held_back_count() {
    let dir = TempDir::new("alerts-webhook");
    let secret = dir.path().join("webhook.secret");
    std::fs::write(&secret, "s3cret-value\n").unwrap();
    // The first delivery meets an HTTP 500, then the receiver recovers.
    let receiver = Receiver::start(&[500]);
    let (clock, now) = stepped_clock(t0());
    let metrics = Metrics::new().unwrap();
    let alerter = Alerter::new(
        &AlertsConfig {
            webhook: Some(WebhookConfig {
                url: receiver.url(),
                secret: Some(("X-Hedgerow-Secret".into(), secret)),
            }),
            ..config()
        },
        clock,
        metrics.registry(),
    )
    .unwrap();

    // A burst from one device: one alert (delivered on the second try).
    for id in 1..=5 {
        assert!(alerter.submit(alert(
            id,
            "PC-12",
            t0() + Duration::from_secs(id as u64 * 10)
        )));
    }
    for _ in 0..2 {
        let r = receiver.next();
        assert_eq!(r.body["breach_id"], 1, "{r:?}");
        assert_eq!(r.header("X-Hedgerow-Secret"), Some("s3cret-value"));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.body["suppressed"], serde_json::Value::Null);
    }

    // Another device is not held back by the first one's window; nothing else from PC-12
    // arrived before it.
    assert!(alerter.submit(alert(6, "PC-14", t0() + Duration::from_secs(60))));
    let r = receiver.next();
    assert_eq!(
        (r.body["breach_id"].as_i64(), r.body["device"].as_str()),
        (Some(6), Some("PC-14"))
    );

    // After the window: the next PC-12 alert carries the four held back.
    now.fetch_add(11 * 60, Ordering::SeqCst);
    assert!(alerter.submit(alert(7, "PC-12", t0() + Duration::from_secs(11 * 60))));
    let r = receiver.next();
    assert_eq!(r.body["breach_id"], 7);
    assert_eq!(r.body["suppressed"]["attempts"], 4);
    assert_eq!(r.body["suppressed"]["since"], "2026-11-26T10:01:20Z");
    let text = r.body["text"].as_str().unwrap();
    assert!(text.contains("(and 4 more attempts since 10:01)"), "{text}");
    assert_eq!(r.header("X-Hedgerow-Secret"), Some("s3cret-value"));

    alerter.close();
    assert!(receiver.requests.try_recv().is_err(), "no other request");
    assert_eq!(count(&metrics, "webhook", "sent"), 3);
    assert_eq!(count(&metrics, "webhook", "retried"), 1);
    assert_eq!(count(&metrics, "webhook", "suppressed"), 4);
    assert_eq!(count(&metrics, "webhook", "failed"), 0);
}

#[test]
fn webhook_gives_up_after_its_tries_and_at_once_on_a_client_error() {
    let receiver = Receiver::start(&[503, 503, 503, 400]);
    let (clock, _) = stepped_clock(t0());
    let metrics = Metrics::new().unwrap();
    let alerter = Alerter::new(
        &AlertsConfig {
            webhook: Some(WebhookConfig {
                url: receiver.url(),
                secret: None,
            }),
            ..config()
        },
        clock,
        metrics.registry(),
    )
    .unwrap();
    assert!(alerter.submit(alert(1, "PC-1", t0())));
    assert!(alerter.submit(alert(2, "PC-2", t0())));
    for id in [1, 1, 1, 2] {
        assert_eq!(receiver.next().body["breach_id"], id);
    }
    alerter.close();
    assert!(
        receiver.requests.try_recv().is_err(),
        "a 400 is not retried"
    );
    assert_eq!(count(&metrics, "webhook", "failed"), 2);
    assert_eq!(count(&metrics, "webhook", "retried"), 2);
    assert_eq!(count(&metrics, "webhook", "sent"), 0);
}

#[test]
fn email_to_an_unreachable_server_is_retried_then_counted_as_failed() {
    // A port nobody listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (clock, _) = stepped_clock(t0());
    let metrics = Metrics::new().unwrap();
    let alerter = Alerter::new(
        &AlertsConfig {
            email: Some(EmailConfig {
                server: "127.0.0.1".into(),
                port,
                starttls: false,
                tls_ca: None,
                credentials: None,
                from: "Hedgerow <hedgerow@school.example>".parse().unwrap(),
                to: vec!["dsl@school.example".parse().unwrap()],
            }),
            tries: 2,
            ..config()
        },
        clock,
        metrics.registry(),
    )
    .unwrap();
    assert!(alerter.submit(alert(1, "PC-1", t0())));
    alerter.close();
    assert_eq!(count(&metrics, "email", "retried"), 1);
    assert_eq!(count(&metrics, "email", "failed"), 1);
}

/// An aiosmtpd server on 127.0.0.1 (port chosen by the system, printed on its first line)
/// that wants `AUTH` with the given login and password, and writes each message it accepts
/// to a file in the folder: the envelope recipients, the subject, then the decoded body.
/// Given a certificate and key, it requires STARTTLS.
const SMTP_SINK: &str = r#"
import asyncio, email, email.policy, logging, os, ssl, sys, warnings
# Plain-text AUTH is what this test wants; keep aiosmtpd's warnings about it out of the output.
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
folder, user, password = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
# With a certificate and key: STARTTLS offered and required before anything else.
tls = None
if len(sys.argv) > 5:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(sys.argv[4], sys.argv[5])

class Sink:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        n = len([f for f in os.listdir(folder) if f.endswith(".txt")])
        tmp = os.path.join(folder, "%04d.tmp" % n)
        with open(tmp, "w") as f:
            f.write("RCPT " + " ".join(envelope.rcpt_tos) + "\n")
            f.write("FROM " + str(msg["From"]) + "\n")
            f.write("SUBJECT " + str(msg["Subject"]) + "\n\n")
            f.write(msg.get_content())
        os.rename(tmp, tmp[:-4] + ".txt")
        return "250 OK"

def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user and data.password == password
    return AuthResult(success=ok)

async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: SMTP(Sink(), authenticator=check, auth_required=True, auth_require_tls=False,
                     tls_context=tls, require_starttls=tls is not None),
        "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()

asyncio.run(main())
"#;

/// The aiosmtpd child process, ended on drop.
struct SmtpSink {
    child: Child,
    port: u16,
    folder: PathBuf,
}

impl SmtpSink {
    fn start(folder: &Path, user: &str, password: &str, tls: Option<(&Path, &Path)>) -> SmtpSink {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", SMTP_SINK])
            .arg(folder)
            .args([user, password]);
        if let Some((cert, key)) = tls {
            cmd.args([cert, key]);
        }
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("aiosmtpd did not print its port: {line:?}"));
        SmtpSink {
            child,
            port,
            folder: folder.to_path_buf(),
        }
    }

    /// The `n`th message (0-based), waiting for it.
    fn message(&self, n: usize) -> String {
        let path = self.folder.join(format!("{n:04}.txt"));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("aiosmtpd received no message {n} within 15 s");
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn email_through_aiosmtpd_with_authentication() {
    if !tools::aiosmtpd() {
        return;
    }
    let dir = TempDir::new("alerts-email");
    let mail = dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    let password = dir.path().join("smtp.password");
    std::fs::write(&password, "correct horse\n").unwrap();
    let sink = SmtpSink::start(&mail, "hedgerow", "correct horse", None);

    let (clock, now) = stepped_clock(t0());
    let metrics = Metrics::new().unwrap();
    let alerter = Alerter::new(
        &AlertsConfig {
            email: Some(EmailConfig {
                server: "127.0.0.1".into(),
                port: sink.port,
                starttls: false,
                tls_ca: None,
                credentials: Some(("hedgerow".into(), password)),
                from: "Hedgerow <hedgerow@school.example>".parse().unwrap(),
                to: vec![
                    "dsl@school.example".parse().unwrap(),
                    "Deputy DSL <ddsl@school.example>".parse().unwrap(),
                ],
            }),
            ..config()
        },
        clock,
        metrics.registry(),
    )
    .unwrap();

    let mut first = alert(42, "PC-12", t0());
    first.count = 3;
    first.last = t0() + Duration::from_secs(60);
    assert!(alerter.submit(first));
    let m = sink.message(0);
    assert!(
        m.starts_with("RCPT dsl@school.example ddsl@school.example\nFROM Hedgerow <hedgerow@school.example>\nSUBJECT Hedgerow safeguarding alert: high-risk site blocked on PC-12\n\n"),
        "{m}"
    );
    assert!(m.contains("Hedgerow blocked a high-risk site on device PC-12 (pupils): category self-harm, site selfharm.example, 3 attempts."), "{m}");
    assert!(
        m.contains("When: between 10:01 and 10:02 on Thursday 26 November 2026 (school time)."),
        "{m}"
    );
    assert!(m.contains("Breach reference: 42"), "{m}");
    assert!(m.contains("http://hedgerow.school.lan/breaches/42"), "{m}");

    // An illegal-tier breach: the entry is withheld, in the email as everywhere.
    let mut illegal = alert(43, "PC-30", t0());
    illegal.category = None;
    illegal.domain = WITHHELD.into();
    assert!(alerter.submit(illegal));
    let m = sink.message(1);
    assert!(
        m.contains("SUBJECT Hedgerow safeguarding alert: high-risk site blocked on PC-30"),
        "{m}"
    );
    assert!(
        m.contains("on device PC-30 (pupils): site withheld (illegal-content list), 1 attempt."),
        "{m}"
    );

    // Held back within the window, then carried into the next email.
    assert!(alerter.submit(alert(44, "PC-12", t0() + Duration::from_secs(120))));
    now.fetch_add(10 * 60, Ordering::SeqCst);
    assert!(alerter.submit(alert(45, "PC-12", t0() + Duration::from_secs(600))));
    let m = sink.message(2);
    assert!(m.contains("Breach reference: 45"), "{m}");
    assert!(m.contains("(and 1 more attempt since 10:03)."), "{m}");
    assert!(
        m.contains("Earlier attempts: 1 more on this device since 10:03 were held back"),
        "{m}"
    );

    alerter.close();
    assert_eq!(count(&metrics, "email", "sent"), 3);
    assert_eq!(count(&metrics, "email", "suppressed"), 1);
    assert_eq!(count(&metrics, "email", "failed"), 0);

    // `starttls = true` against a server that offers no STARTTLS: nothing is sent in clear.
    let (clock, _) = stepped_clock(t0());
    let metrics = Metrics::new().unwrap();
    let alerter = Alerter::new(
        &AlertsConfig {
            email: Some(EmailConfig {
                server: "127.0.0.1".into(),
                port: sink.port,
                starttls: true,
                tls_ca: None,
                credentials: Some(("hedgerow".into(), dir.path().join("smtp.password"))),
                from: "hedgerow@school.example".parse().unwrap(),
                to: vec!["dsl@school.example".parse().unwrap()],
            }),
            tries: 1,
            ..config()
        },
        clock,
        metrics.registry(),
    )
    .unwrap();
    assert!(alerter.submit(alert(46, "PC-12", t0())));
    alerter.close();
    assert_eq!(count(&metrics, "email", "failed"), 1);
    assert_eq!(count(&metrics, "email", "sent"), 0);
    assert!(
        !mail.join("0003.txt").exists(),
        "an alert was sent without TLS"
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, in `dir` (`ca.pem`, `smtp.pem`,
/// `smtp.key`). `false` when `openssl` fails.
fn make_certificates(dir: &Path) -> bool {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let split = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ca = [
        split("req -x509"),
        split(ec),
        split("-keyout ca.key -out ca.pem -days 2 -subj"),
        vec!["/CN=Hedgerow test mail CA".into()],
    ]
    .concat();
    let csr = [
        split("req"),
        split(ec),
        split("-keyout smtp.key -out smtp.csr -subj /CN=127.0.0.1"),
    ]
    .concat();
    let sign = split(
        "x509 -req -in smtp.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out smtp.pem -days 2 -extfile ext.cnf",
    );
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    run(&refs(&ca)) && run(&refs(&csr)) && run(&refs(&sign))
}

#[test]
fn email_over_required_starttls_with_a_private_ca() {
    if !tools::aiosmtpd() || !tools::openssl() {
        return;
    }
    let dir = TempDir::new("alerts-starttls");
    assert!(
        make_certificates(dir.path()),
        "openssl could not make test certificates"
    );
    let mail = dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    let password = dir.path().join("smtp.password");
    std::fs::write(&password, "correct horse\n").unwrap();
    let (cert, key) = (dir.path().join("smtp.pem"), dir.path().join("smtp.key"));
    let sink = SmtpSink::start(&mail, "hedgerow", "correct horse", Some((&cert, &key)));

    let email = |tls_ca: Option<PathBuf>| EmailConfig {
        server: "127.0.0.1".into(),
        port: sink.port,
        starttls: true,
        tls_ca,
        credentials: Some(("hedgerow".into(), password.clone())),
        from: "hedgerow@school.example".parse().unwrap(),
        to: vec!["dsl@school.example".parse().unwrap()],
    };
    let send = |tls_ca: Option<PathBuf>, id: i64| {
        let (clock, _) = stepped_clock(t0());
        let metrics = Metrics::new().unwrap();
        let alerter = Alerter::new(
            &AlertsConfig {
                email: Some(email(tls_ca)),
                tries: 1,
                ..config()
            },
            clock,
            metrics.registry(),
        )
        .unwrap();
        assert!(alerter.submit(alert(id, "PC-12", t0())));
        alerter.close();
        (
            count(&metrics, "email", "sent"),
            count(&metrics, "email", "failed"),
        )
    };

    // The school's CA: the alert goes over TLS.
    assert_eq!(send(Some(dir.path().join("ca.pem")), 50), (1, 0));
    let m = sink.message(0);
    assert!(m.contains("Breach reference: 50"), "{m}");
    // The web roots do not trust a private CA: refused, nothing sent.
    assert_eq!(send(None, 51), (0, 1));
    assert!(!mail.join("0001.txt").exists());
}
