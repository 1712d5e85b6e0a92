//! Real DNS on loopback: an in-process authoritative upstream (hickory-server), a client,
//! and a way to start Hedgerow on 127.0.0.1 port 0 with a given configuration.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use hedgerow::app::{Hedgerow, Overrides};
use hickory_proto::{
    op::{Edns, Message, Metadata, ResponseCode},
    rr::{
        rdata::{
            null::NULL,
            svcb::{Alpn, EchConfigList, SvcParamKey, SvcParamValue},
            A, AAAA, CNAME, HTTPS, MX, NS, SOA, SVCB, TXT,
        },
        Name, RData, Record, RecordType,
    },
};
use hickory_server::{
    net::runtime::Time,
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
    Server,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

/// Records by lower-case owner name (no trailing dot) and type.
pub type Zone = HashMap<(String, RecordType), Vec<Record>>;

/// What the upstream saw, and names it must fail.
#[derive(Default)]
pub struct Seen {
    /// Queries per lower-case name and type.
    pub counts: Mutex<HashMap<(String, RecordType), usize>>,
    /// Whether the last query had the DO bit.
    pub last_do: AtomicBool,
    /// Names answered SERVFAIL.
    pub servfail: Mutex<std::collections::HashSet<String>>,
}

impl Seen {
    pub fn count(&self, name: &str, qtype: RecordType) -> usize {
        let key = (name.trim_end_matches('.').to_lowercase(), qtype);
        self.counts.lock().unwrap().get(&key).copied().unwrap_or(0)
    }

    /// Whether `name` was asked with any type.
    pub fn asked_for(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_lowercase();
        self.counts.lock().unwrap().keys().any(|(n, _)| *n == name)
    }
}

/// An authoritative test upstream for `example.test` and a few other names.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    /// Added delay before every answer, in milliseconds.
    pub delay_ms: Arc<AtomicU64>,
    _server: Server<UpstreamHandler>,
}

#[derive(Clone)]
pub struct UpstreamHandler {
    zone: Arc<Zone>,
    seen: Arc<Seen>,
    delay_ms: Arc<AtomicU64>,
}

fn name(s: &str) -> Name {
    // from_ascii keeps the case as written (FromStr lower-cases).
    Name::from_ascii(s).unwrap()
}

/// The records the test upstream serves.
pub fn zone() -> Zone {
    let mut z = Zone::new();
    let mut add = |owner: &str, ttl: u32, data: RData| {
        let key = (owner.trim_end_matches('.').to_string(), data.record_type());
        z.entry(key)
            .or_default()
            .push(Record::from_rdata(name(owner), ttl, data));
    };
    add(
        "www.example.test.",
        300,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 10))),
    );
    add(
        "www.example.test.",
        300,
        RData::AAAA(AAAA(Ipv6Addr::from_str("2001:db8::10").unwrap())),
    );
    add(
        "example.test.",
        300,
        RData::MX(MX::new(10, name("mail.example.test."))),
    );
    add(
        "example.test.",
        300,
        RData::TXT(TXT::new(vec!["v=spf1 -all".into()])),
    );
    add(
        "example.test.",
        300,
        RData::HTTPS(HTTPS(SVCB::new(1, Name::root(), vec![]))),
    );
    add(
        "short.example.test.",
        1,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 20))),
    );
    for i in 0..40u8 {
        add(
            "ads.example.test.",
            300,
            RData::A(A(Ipv4Addr::new(192, 0, 2, i))),
        );
    }
    // ~3 KB of TXT: too big for a 1232-byte UDP answer.
    for i in 0..30 {
        add(
            "big.example.test.",
            300,
            RData::TXT(TXT::new(vec![format!("{i:02}-{}", "x".repeat(90))])),
        );
    }
    add(
        "signed.example.test.",
        300,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 30))),
    );
    // A stand-in RRSIG (type 46), passed through as opaque data.
    add(
        "signed.example.test.",
        300,
        RData::Unknown {
            code: RecordType::RRSIG,
            rdata: NULL::with(vec![
                0, 1, 8, 3, 0, 0, 1, 44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
            ]),
        },
    );
    for (host, ip) in [
        ("games.test.", 50),
        ("play.games.test.", 51),
        ("school.test.", 52),
        ("forcesafesearch.google.com.", 60),
        ("restrict.youtube.com.", 61),
        ("restrictmoderate.youtube.com.", 62),
        ("strict.bing.com.", 63),
        ("safe.duckduckgo.com.", 64),
    ] {
        add(host, 300, RData::A(A(Ipv4Addr::new(192, 0, 2, ip))));
    }
    add(
        "cname.example.test.",
        300,
        RData::CNAME(CNAME(name("www.example.test."))),
    );
    // An allowed name that leads into a blocked one (CNAME cloaking).
    add(
        "cloak.example.test.",
        300,
        RData::CNAME(CNAME(name("play.games.test."))),
    );
    add(
        "ech.example.test.",
        300,
        RData::HTTPS(HTTPS(SVCB::new(
            1,
            Name::root(),
            vec![
                (
                    SvcParamKey::Alpn,
                    SvcParamValue::Alpn(Alpn(vec!["h2".into()])),
                ),
                (
                    SvcParamKey::EchConfigList,
                    SvcParamValue::EchConfigList(EchConfigList(vec![0, 4, 1, 2, 3, 4])),
                ),
            ],
        ))),
    );
    z
}

#[async_trait::async_trait]
impl RequestHandler for UpstreamHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let q = &request.queries.queries()[0];
        let qname = q.name().to_string().trim_end_matches('.').to_lowercase();
        let qtype = q.query_type();
        *self
            .seen
            .counts
            .lock()
            .unwrap()
            .entry((qname.clone(), qtype))
            .or_default() += 1;
        self.seen.last_do.store(
            request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            Ordering::SeqCst,
        );
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let mut answers: Vec<Record> = self
            .zone
            .get(&(qname.clone(), qtype))
            .cloned()
            .unwrap_or_default();
        if qtype == RecordType::A || qtype == RecordType::AAAA {
            if let Some(c) = self.zone.get(&(qname.clone(), RecordType::CNAME)) {
                answers = c.clone();
                if let RData::CNAME(target) = &c[0].data {
                    let t = target.0.to_string().trim_end_matches('.').to_string();
                    answers.extend(self.zone.get(&(t, qtype)).cloned().unwrap_or_default());
                }
            }
        }
        if qtype == RecordType::A {
            if let Some(sig) = self.zone.get(&(qname.clone(), RecordType::RRSIG)) {
                answers.extend(sig.iter().cloned());
            }
        }
        if self.seen.servfail.lock().unwrap().contains(&qname) {
            metadata.response_code = ResponseCode::ServFail;
            answers.clear();
        }
        let exists = self
            .zone
            .keys()
            .any(|(n, _)| n == &qname || n.ends_with(&format!(".{qname}")));
        let soa = Record::from_rdata(
            name("example.test."),
            60,
            RData::SOA(SOA::new(
                name("ns.example.test."),
                name("admin.example.test."),
                1,
                3600,
                600,
                86400,
                60,
            )),
        );
        let soa: Vec<Record> = if answers.is_empty() {
            vec![soa]
        } else {
            vec![]
        };
        // Like a real authoritative server: positive answers carry the zone's NS and glue.
        let (ns, glue) = if answers.is_empty() {
            (vec![], vec![])
        } else {
            (
                vec![Record::from_rdata(
                    name("example.test."),
                    300,
                    RData::NS(NS(name("ns.example.test."))),
                )],
                vec![Record::from_rdata(
                    name("ns.example.test."),
                    300,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 53))),
                )],
            )
        };
        if !exists && metadata.response_code == ResponseCode::NoError {
            metadata.response_code = ResponseCode::NXDomain;
        }
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if request.edns.is_some() {
            builder.edns(&edns);
        }
        let msg = builder.build(metadata, answers.iter(), ns.iter(), soa.iter(), glue.iter());
        response.send_response(msg).await.unwrap()
    }
}

impl Upstream {
    /// Starts the upstream on 127.0.0.1 port 0 (UDP and TCP on the same port).
    pub async fn start() -> Upstream {
        Upstream::with_zone(zone()).await
    }

    /// As [`Upstream::start`], serving `zone` instead.
    pub async fn with_zone(zone: Zone) -> Upstream {
        let seen = Arc::new(Seen::default());
        let delay_ms = Arc::new(AtomicU64::new(0));
        let handler = UpstreamHandler {
            zone: Arc::new(zone),
            seen: seen.clone(),
            delay_ms: delay_ms.clone(),
        };
        let (udp, tcp) = udp_and_tcp_on_one_port().await;
        let addr = udp.local_addr().unwrap();
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 16);
        Upstream {
            addr,
            seen,
            delay_ms,
            _server: server,
        }
    }
}

/// A UDP socket on 127.0.0.1, any port, and a TCP listener on the same port. The kernel picks
/// the UDP port without looking at TCP, so the port may be busy for TCP (a client connection's
/// ephemeral port, when many tests run at once): then try another.
pub async fn udp_and_tcp_on_one_port() -> (UdpSocket, tokio::net::TcpListener) {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        match tokio::net::TcpListener::bind(udp.local_addr().unwrap()).await {
            Ok(tcp) => return (udp, tcp),
            Err(e) => last = Some(e),
        }
    }
    panic!("no port free for both UDP and TCP: {last:?}");
}

pub use super::tempdir::scratch_dir;

/// UDP sockets bound to `port` on this host, from `/proc/net/udp` (IPv4).
pub fn udp_sockets_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/udp").expect("Linux: /proc/net/udp");
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|local| local.ends_with(&port))
        })
        .count()
}

/// Starts Hedgerow in-process on 127.0.0.1:0 with `config` (TOML), forwarding to `upstream`.
pub async fn start_hedgerow(config: &str, upstream: SocketAddr) -> (Hedgerow, PathBuf) {
    start_hedgerow_with(config, upstream, Overrides::default()).await
}

/// As [`start_hedgerow`], with more overrides (an injected clock, say); with `upstream`
/// `None`, the configuration's own upstreams are used.
pub async fn start_hedgerow_with(
    config: &str,
    upstream: impl Into<Option<SocketAddr>>,
    overrides: Overrides,
) -> (Hedgerow, PathBuf) {
    let dir = scratch_dir("cfg");
    let path = dir.join("hedgerow.toml");
    let data_dir = format!("data_dir = \"{}\"\n", dir.join("data").display());
    // A test may bring its own `[server]` section (other listeners); it gets the scratch data
    // folder too. Otherwise: UDP/TCP on 127.0.0.1, any port.
    let text = match config.strip_prefix("[server]\n") {
        Some(rest) => format!("[server]\n{data_dir}{rest}"),
        None => format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{data_dir}{config}"),
    };
    // Unless a test brings its own lists, compile the shipped samples on start.
    let text = if config.contains("[lists]") {
        text
    } else {
        format!(
            "{text}\n[lists]\nmanifest = \"{}/lists/lists.toml\"\ncompile_if_missing = true\n",
            env!("CARGO_MANIFEST_DIR")
        )
    };
    std::fs::write(&path, text).unwrap();
    let overrides = Overrides {
        upstreams: upstream.into().into_iter().collect(),
        ..overrides
    };
    let app = Hedgerow::start(Some(path.clone()), overrides)
        .await
        .unwrap();
    (app, path)
}

/// Options for a test query.
#[derive(Clone, Copy)]
pub struct Ask {
    pub from: IpAddr,
    pub edns: bool,
    pub dnssec_ok: bool,
}

impl Default for Ask {
    fn default() -> Self {
        Ask {
            from: IpAddr::V4(Ipv4Addr::LOCALHOST),
            edns: true,
            dnssec_ok: false,
        }
    }
}

fn query_message(qname: &str, qtype: RecordType, ask: Ask) -> Message {
    let mut m = Message::query();
    m.metadata.id = rand_id();
    m.metadata.recursion_desired = true;
    m.add_query(hickory_proto::op::Query::query(name(qname), qtype));
    if ask.edns {
        let mut e = Edns::new();
        e.set_max_payload(1232).set_dnssec_ok(ask.dnssec_ok);
        m.set_edns(e);
    }
    m
}

fn rand_id() -> u16 {
    static N: AtomicU64 = AtomicU64::new(7);
    (N.fetch_add(7919, Ordering::Relaxed) & 0xffff) as u16
}

/// One query over UDP; `None` on a 3-second timeout.
pub async fn udp_query(
    server: SocketAddr,
    qname: &str,
    qtype: RecordType,
    ask: Ask,
) -> Option<Message> {
    let sock = UdpSocket::bind(SocketAddr::new(ask.from, 0)).await.unwrap();
    let m = query_message(qname, qtype, ask);
    sock.send_to(&m.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    // Only a datagram from the server's port is its reply, and it must parse and carry the
    // query's ID. Anything else is ignored, as a stub resolver does (RFC 5452): with the
    // whole suite on loopback an ephemeral port is soon reused, and a late reply of another
    // test's server to that port's last owner can arrive first (seen once in CI).
    let reply = async {
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.ok()?;
            if from.port() != server.port() {
                continue;
            }
            let reply = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(reply.metadata.id, m.metadata.id);
            return Some(reply);
        }
    };
    tokio::time::timeout(Duration::from_secs(3), reply)
        .await
        .ok()?
}

/// Convenience: A/AAAA/... from 127.0.0.1 with EDNS.
pub async fn ask(server: SocketAddr, qname: &str, qtype: RecordType) -> Message {
    udp_query(server, qname, qtype, Ask::default())
        .await
        .expect("no answer within 3 s")
}

/// One query over TCP.
pub async fn tcp_query(server: SocketAddr, qname: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let m = query_message(qname, qtype, Ask::default());
    let bytes = m.to_vec().unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

/// Asserts that `/metrics` has a line containing `text` (a name, labels and value).
pub fn assert_metric(app: &Hedgerow, text: &str) {
    let metrics = app.metrics().encode();
    assert!(metrics.contains(text), "no `{text}` in:\n{metrics}");
}

/// The A addresses in an answer.
pub fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}
