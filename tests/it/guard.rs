//! "A pupil must not be able to blow memory up or switch filtering off": the cache's memory
//! budget, lists that never fail open, configurations that cannot open the resolver, and the
//! smaller guards (hostile upstream records, CHAOS queries, IPv6 rate limits).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
};

use crate::common::dns::{ask, assert_metric, scratch_dir, start_hedgerow, Upstream, Zone};
use hedgerow::{
    app::{Hedgerow, Overrides},
    config::Config,
    lists::{self, configured::compile_options, Blocklists},
};
use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{rdata::TXT, Name, RData, Record, RecordType},
};

const LOCAL: &str =
    "[rate_limit]\nqps = 0\n[[group]]\nname = \"local\"\nnetworks = [\"127.0.0.1/32\"]\n";

/// The value of an unlabelled metric in `/metrics`.
fn metric(app: &Hedgerow, name: &str) -> f64 {
    let text = app.metrics().encode();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no `{name}` in:\n{text}"))
}

/// Starts Hedgerow from `cfg`, retrying when port 0's UDP port is taken for TCP (loopback
/// ports churn when many tests run at once).
async fn start_retrying(cfg: &Path, upstream: SocketAddr) -> Result<Hedgerow, String> {
    let mut last = String::new();
    for _ in 0..5 {
        let overrides = Overrides {
            upstreams: vec![upstream],
            ..Overrides::default()
        };
        match Hedgerow::start(Some(cfg.to_path_buf()), overrides).await {
            Ok(app) => return Ok(app),
            Err(hedgerow::app::AppError::Listen(e)) => last = e.to_string(),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(last)
}

/// One TCP connection for many queries (fewer loopback ports in use than one per query).
struct TcpClient(tokio::net::TcpStream);

impl TcpClient {
    async fn connect(server: SocketAddr) -> TcpClient {
        TcpClient(tokio::net::TcpStream::connect(server).await.unwrap())
    }

    async fn query(&mut self, qname: &str, qtype: RecordType) -> Message {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut m = Message::query();
        m.metadata.id = 0x4242;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
        let bytes = m.to_vec().unwrap();
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        self.0.write_all(&framed).await.unwrap();
        let mut len = [0u8; 2];
        self.0.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        self.0.read_exact(&mut buf).await.unwrap();
        Message::from_vec(&buf).unwrap()
    }
}

/// `count` TXT records of `len` bytes each for `owner`: too big for UDP, so over TCP.
fn big_txt(zone: &mut Zone, owner: &str, count: usize, len: usize) {
    let name = Name::from_ascii(owner).unwrap();
    let records = (0..count)
        .map(|i| {
            let text = format!("{i:04}{}", "t".repeat(len - 4));
            Record::from_rdata(name.clone(), 300, RData::TXT(TXT::new(vec![text])))
        })
        .collect();
    zone.insert(
        (owner.trim_end_matches('.').to_string(), RecordType::TXT),
        records,
    );
}

fn txt_strings(m: &hickory_proto::op::Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.to_string()),
            _ => None,
        })
        .collect()
}

const NAMES: usize = 300;
const BUDGET: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_stays_inside_its_memory_budget_with_large_answers() {
    let mut zone = crate::common::dns::zone();
    for i in 0..NAMES {
        big_txt(&mut zone, &format!("big{i}.example.test."), 10, 200);
    }
    // ~75 KiB of records once held: served, never cached.
    big_txt(&mut zone, "huge.example.test.", 60, 250);
    let up = Upstream::with_zone(zone).await;
    let config = format!("{LOCAL}[cache]\nmax_bytes = {BUDGET}\nmax_entry_bytes = 32768\n");
    let (app, _) = start_hedgerow(&config, up.addr).await;
    let dns: SocketAddr = app.dns_addrs()[0];
    let mut tcp = TcpClient::connect(dns).await;

    for i in 0..NAMES {
        let m = tcp
            .query(&format!("big{i}.example.test."), RecordType::TXT)
            .await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let texts = txt_strings(&m);
        assert_eq!(texts.len(), 10, "big{i}: every record served");
        assert!(texts.iter().all(|t| t.len() == 200), "big{i}: {texts:?}");
        let bytes = metric(&app, "hedgerow_cache_bytes");
        assert!(
            bytes <= BUDGET as f64,
            "after {} names the cache holds {bytes} bytes",
            i + 1
        );
    }
    let entries = metric(&app, "hedgerow_cache_entries");
    let bytes = metric(&app, "hedgerow_cache_bytes");
    assert!(entries > 10.0, "the budget still caches: {entries} entries");
    // Eviction frees what the new entry needs (and a tenth of its shard), not whole shards.
    assert!(
        bytes > BUDGET as f64 * 0.6,
        "the budget is used: {bytes} bytes of {BUDGET}"
    );
    assert!(
        entries < NAMES as f64,
        "the budget evicted: {entries} entries, {bytes} bytes"
    );
    // The most recent name is still answered from the cache, and correctly.
    // (The upstream counts a UDP try and the TCP retry per resolution.)
    let last = format!("big{}.example.test.", NAMES - 1);
    let asked = up.seen.count(&last, RecordType::TXT);
    let again = tcp.query(&last, RecordType::TXT).await;
    assert_eq!(txt_strings(&again).len(), 10);
    assert_eq!(up.seen.count(&last, RecordType::TXT), asked, "a cache hit");

    // Above max_entry_bytes: answered in full every time, never cached.
    let mut asked = Vec::new();
    for _ in 0..2 {
        let m = tcp.query("huge.example.test.", RecordType::TXT).await;
        assert_eq!(txt_strings(&m).len(), 60);
        asked.push(up.seen.count("huge.example.test.", RecordType::TXT));
    }
    assert!(asked[1] > asked[0], "asked upstream each time: {asked:?}");
    assert!(metric(&app, "hedgerow_cache_uncached_large_total") >= 2.0);
}

// ---- Never fail open --------------------------------------------------------------------

use crate::common::games::{config_text as lists_config, write_lists};

const GAMES: &str = "games.test\nroblox.test\nminecraft.test\nfortnite.test\n";

async fn rcode(dns: SocketAddr, name: &str) -> ResponseCode {
    ask(dns, name, RecordType::A).await.metadata.response_code
}

#[test]
fn lists_compile_refuses_an_emptied_category_unless_forced() {
    let dir = scratch_dir("shrink-cli");
    write_lists(&dir, GAMES);
    let cfg = dir.join("h.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\ndata_dir = \"{}\"\n{}",
            dir.join("data").display(),
            lists_config(&dir)
        ),
    )
    .unwrap();
    let compile = |force: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hedgerow"));
        cmd.args(["lists", "compile", "--config"]).arg(&cfg);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let meta = || std::fs::read_to_string(dir.join("data/lists/meta.toml")).unwrap();
    assert!(compile(false).status.success());
    assert!(meta().contains("names = 4"), "{}", meta());

    // The source is emptied (a broken sync): refused, naming the category; the build in
    // force stays.
    write_lists(&dir, "# nothing\n");
    let out = compile(false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an empty build replaced the lists");
    assert!(err.contains("category `games`: 4 → 0 names"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(meta().contains("names = 4"), "{}", meta());

    // Shrinking below the threshold (0.5) is refused too; down to half is not.
    write_lists(&dir, "games.test\n");
    assert!(!compile(false).status.success());
    write_lists(&dir, "games.test\nroblox.test\n");
    assert!(compile(false).status.success());

    // Forced: replaced, and marked so a running server takes it.
    write_lists(&dir, "# nothing\n");
    let out = compile(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(meta().contains("forced = true"), "{}", meta());
}

/// The artifact folder of a Hedgerow started by `start_hedgerow` with config file `cfg`.
fn artifact_of(cfg: &Path) -> PathBuf {
    cfg.parent().unwrap().join("data/lists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_refuses_to_swap_to_an_emptied_artifact_unless_forced() {
    let up = Upstream::start().await;
    let dir = scratch_dir("shrink-serve");
    write_lists(&dir, GAMES);
    let (app, cfg) = start_hedgerow(&lists_config(&dir), up.addr).await;
    let dns = app.dns_addrs()[0];
    assert_eq!(rcode(dns, "games.test.").await, ResponseCode::NXDomain);

    // An emptied build lands in the artifact folder without the guard (an older Hedgerow,
    // a copy from another machine, the library called directly).
    write_lists(&dir, "# nothing\n");
    let config = Config::from_file(&cfg).unwrap();
    let unguarded = tokio::task::spawn_blocking(move || {
        lists::compile(&compile_options(&config).unwrap()).unwrap()
    });
    assert_eq!(unguarded.await.unwrap().names, 0);
    app.reload_lists_if_changed().await;
    assert_eq!(
        rcode(dns, "games.test.").await,
        ResponseCode::NXDomain,
        "the emptied lists were put in force"
    );
    assert_metric(&app, "hedgerow_list_reloads_total{outcome=\"refused\"} 1");
    // A SIGHUP does not sneak it in either (the refused artifact is not retried).
    let _ = app.reload().await;
    assert_eq!(rcode(dns, "games.test.").await, ResponseCode::NXDomain);

    // Forced: taken.
    let config = Config::from_file(&cfg).unwrap();
    tokio::task::spawn_blocking(move || lists::configured::compile_guarded(&config, true).unwrap())
        .await
        .unwrap();
    app.reload_lists_if_changed().await;
    assert_eq!(rcode(dns, "games.test.").await, ResponseCode::NoError);
}

/// Rewrites `file`'s checksum and size in the artifact's meta.toml (as a writer that got it
/// wrong would have), so only a structural check can notice the damage.
fn rehash(artifact: &Path, file: &str) {
    use sha2::Digest;
    let bytes = std::fs::read(artifact.join(file)).unwrap();
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let meta_path = artifact.join("meta.toml");
    let mut meta: toml::Table = std::fs::read_to_string(&meta_path)
        .unwrap()
        .parse()
        .unwrap();
    let sum = meta["files"][file].as_table().unwrap().clone();
    let mut sum = sum;
    sum.insert("sha256".into(), sha.into());
    sum.insert("bytes".into(), (bytes.len() as i64).into());
    meta["files"]
        .as_table_mut()
        .unwrap()
        .insert(file.into(), sum.into());
    std::fs::write(&meta_path, toml::to_string(&meta).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_but_checksummed_artifacts_are_refused_and_a_restart_keeps_the_last_good() {
    let up = Upstream::start().await;
    let dir = scratch_dir("damaged");
    write_lists(&dir, GAMES);
    let (app, cfg) = start_hedgerow(&lists_config(&dir), up.addr).await;
    let dns = app.dns_addrs()[0];
    assert_eq!(rcode(dns, "games.test.").await, ResponseCode::NXDomain);
    let artifact = artifact_of(&cfg);
    assert!(artifact.with_extension("good").join("meta.toml").exists());
    let key: Option<&Path> = None;

    // meta.toml miscounts the names: the full walk notices.
    let meta_path = artifact.join("meta.toml");
    let good_meta = std::fs::read_to_string(&meta_path).unwrap();
    std::fs::write(&meta_path, good_meta.replace("names = 4", "names = 40")).unwrap();
    let err = Blocklists::open(&artifact, key).unwrap_err().to_string();
    assert!(err.contains("4 names, meta.toml says 40"), "{err}");
    std::fs::write(&meta_path, &good_meta).unwrap();

    // Flipped bytes with a matching SHA-256: the transducer's own checksum notices.
    let fst = artifact.join("categories.fst");
    let mut bytes = std::fs::read(&fst).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&fst, &bytes).unwrap();
    rehash(&artifact, "categories.fst");
    let err = Blocklists::open(&artifact, key).unwrap_err().to_string();
    assert!(err.contains("categories.fst"), "{err}");

    // A restart on the damaged artifact starts on the last good copy and keeps filtering.
    app.shutdown().await;
    let again = start_retrying(&cfg, up.addr)
        .await
        .expect("a damaged artifact stopped the restart");
    let dns = again.dns_addrs()[0];
    assert_eq!(rcode(dns, "games.test.").await, ResponseCode::NXDomain);
    assert_eq!(rcode(dns, "www.example.test.").await, ResponseCode::NoError);
}

// ---- Configurations that cannot open the resolver by accident ---------------------------

/// Runs `hedgerow check-config` on `body` (with the shipped manifest and a scratch data
/// folder); returns success, stdout and stderr.
fn check_config(tag: &str, body: &str) -> (bool, String, String) {
    let dir = scratch_dir(tag);
    let path = dir.join("h.toml");
    let text = if body.is_empty() {
        String::new()
    } else {
        format!(
            "[lists]\nmanifest = \"{}/lists/lists.toml\"\ncompile_if_missing = true\n{body}",
            env!("CARGO_MANIFEST_DIR")
        )
    };
    let text = match text.find("[server]\n") {
        Some(_) => text.replace(
            "[server]\n",
            &format!("[server]\ndata_dir = \"{}\"\n", dir.join("data").display()),
        ),
        None if text.is_empty() => text,
        None => format!(
            "[server]\ndata_dir = \"{}\"\n{text}",
            dir.join("data").display()
        ),
    };
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hedgerow"))
        .arg("check-config")
        .arg(&path)
        .current_dir(&dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const UPSTREAM: &str = "[upstream]\nservers = [\"127.0.0.1:5300\"]\n";

#[test]
fn check_config_refuses_public_client_networks_unless_allowed() {
    let everyone = format!("{UPSTREAM}[[group]]\nname = \"all\"\nnetworks = [\"0.0.0.0/0\"]\n");
    let (ok, _, err) = check_config("public", &everyone);
    assert!(!ok, "0.0.0.0/0 accepted");
    assert!(
        err.contains("`group.networks`")
            && err.contains("0.0.0.0/0")
            && err.contains("open resolver"),
        "{err}"
    );
    let v6 = format!("{UPSTREAM}[[group]]\nname = \"all\"\nnetworks = [\"fd00::/8\", \"::/0\"]\n");
    let (ok, _, err) = check_config("public6", &v6);
    assert!(!ok && err.contains("::/0"), "{err}");
    // `serve` reads the same validation: it refuses too.
    let dir = scratch_dir("public-serve");
    std::fs::write(dir.join("h.toml"), &everyone).unwrap();
    assert!(Config::from_file(&dir.join("h.toml")).is_err());

    // Allowed on purpose: accepted, and the summary no longer claims "never an open resolver".
    let allowed = format!("[server]\nallow_public_clients = true\n{everyone}");
    let (ok, out, err) = check_config("public-ok", &allowed);
    assert!(ok, "{err}");
    assert!(!out.contains("never an open resolver"), "{out}");
    assert!(
        out.contains("OPEN RESOLVER") && out.contains("0.0.0.0/0"),
        "{out}"
    );
    // Private networks keep the promise.
    let school = format!("{UPSTREAM}[[group]]\nname = \"pupils\"\nnetworks = [\"10.0.0.0/8\"]\n");
    let (ok, out, err) = check_config("private", &school);
    assert!(ok, "{err}");
    assert!(out.contains("never an open resolver"), "{out}");
}

#[test]
fn check_config_says_which_group_wins_an_overlap() {
    let body = format!(
        "{UPSTREAM}[[group]]\nname = \"pupils\"\nnetworks = [\"10.0.0.0/8\"]\n\
         [[group]]\nname = \"staff\"\nnetworks = [\"10.1.0.0/16\"]\n\
         [[group]]\nname = \"guests\"\nnetworks = [\"10.0.0.0/8\"]\n"
    );
    let (ok, out, err) = check_config("overlap", &body);
    assert!(ok, "{err}");
    assert!(
        out.contains("warning: networks overlap: 10.0.0.0/8 (group `pupils`) and 10.1.0.0/16 (group `staff`): clients in 10.1.0.0/16 get group `staff` (the most specific network wins)"),
        "{out}"
    );
    assert!(
        out.contains("10.0.0.0/8 (group `pupils`) and 10.0.0.0/8 (group `guests`): clients in 10.0.0.0/8 get group `pupils` (the same network: the group earlier in the file wins)"),
        "{out}"
    );
}

#[test]
fn check_config_on_an_empty_file_warns_of_no_groups_and_no_upstreams() {
    let (_, out, err) = check_config("empty", "");
    assert!(out.contains("warning: no [[group]]"), "{out}{err}");
    assert!(out.contains("warning: no [upstream] servers"), "{out}{err}");
}

#[test]
fn check_config_fails_where_serve_would_on_unknown_categories() {
    let body = format!(
        "{UPSTREAM}[[group]]\nname = \"pupils\"\nnetworks = [\"10.0.0.0/8\"]\nblock_categories = [\"gambling\", \"gamblin\"]\n"
    );
    let (ok, _, err) = check_config("unknown-cat", &body);
    assert!(!ok, "an unknown category passed");
    assert!(
        err.contains("group `pupils` block_categories: unknown list category `gamblin`"),
        "{err}"
    );
    assert!(!err.contains("`gambling`"), "{err}");
}

// ---- Smaller guards ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_for_names_not_asked_about_are_dropped() {
    use hickory_proto::rr::rdata::{A, CNAME};
    let mut zone = crate::common::dns::zone();
    let rec =
        |owner: &str, data: RData| Record::from_rdata(Name::from_ascii(owner).unwrap(), 300, data);
    // A hostile zone answers for itself and plants an address for someone else's name.
    zone.insert(
        ("plant.example.test".into(), RecordType::A),
        vec![
            rec("plant.example.test.", RData::A(A::new(192, 0, 2, 77))),
            rec("www.bank.test.", RData::A(A::new(203, 0, 113, 66))),
        ],
    );
    // A CNAME chain stays whole; the stranger inside it goes.
    zone.insert(
        ("hop.example.test".into(), RecordType::CNAME),
        vec![rec(
            "hop.example.test.",
            RData::CNAME(CNAME(Name::from_ascii("www.example.test.").unwrap())),
        )],
    );
    zone.insert(
        ("www.example.test".into(), RecordType::A),
        vec![
            rec("www.example.test.", RData::A(A::new(192, 0, 2, 10))),
            rec("login.bank.test.", RData::A(A::new(203, 0, 113, 67))),
        ],
    );
    let up = Upstream::with_zone(zone).await;
    let (app, _) = start_hedgerow(LOCAL, up.addr).await;
    let dns = app.dns_addrs()[0];
    for _ in 0..2 {
        // Fresh, then from the cache.
        let m = ask(dns, "plant.example.test.", RecordType::A).await;
        let owners: Vec<String> = m.answers.iter().map(|r| r.name.to_string()).collect();
        assert_eq!(owners, ["plant.example.test."], "{m:?}");
        let m = ask(dns, "hop.example.test.", RecordType::A).await;
        let owners: Vec<String> = m.answers.iter().map(|r| r.name.to_string()).collect();
        assert_eq!(owners, ["hop.example.test.", "www.example.test."], "{m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_queries_are_answered_locally_never_forwarded() {
    use hickory_proto::rr::DNSClass;
    let up = Upstream::start().await;
    let (app, _) = start_hedgerow(LOCAL, up.addr).await;
    let dns = app.dns_addrs()[0];
    for name in [
        "version.bind.",
        "hostname.bind.",
        "id.server.",
        "version.server.",
    ] {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        let mut q = Query::query(Name::from_ascii(name).unwrap(), RecordType::TXT);
        q.query_class = DNSClass::CH;
        m.add_query(q);
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(&m.to_vec().unwrap(), dns).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(3), sock.recv(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{name}"
        );
        assert!(reply.answers.is_empty(), "{name}: {reply:?}");
        assert!(!up.seen.asked_for(name), "{name} was forwarded");
    }
}

#[test]
fn illegal_tier_counts_are_checked_and_the_good_copy_keeps_the_tier() {
    let dir = scratch_dir("illegal-guard");
    let key = dir.join("illegal.key");
    lists::generate_key_file(&key).unwrap();
    let list = dir.join("iwf.txt");
    let text: String = (0..5)
        .map(|i| format!("http://csam-guard-{i}.invalid/\n"))
        .collect();
    std::fs::write(&list, text).unwrap();
    write_lists(&dir, GAMES);
    let out = dir.join("compiled");
    lists::compile(&lists::CompileOptions {
        manifest: lists::Manifest::load(dir.join("lists.toml")).unwrap(),
        out_dir: out.clone(),
        illegal: Some(lists::IllegalSource {
            list,
            key: key.clone(),
        }),
    })
    .unwrap();
    let opened = Blocklists::open(&out, Some(&key)).unwrap();

    // The copy kept as the last good artifact holds exactly what is served, tier included.
    let good = dir.join("compiled.good");
    opened.save_copy(&good).unwrap();
    let copy = Blocklists::open(&good, Some(&key)).unwrap();
    assert_eq!(copy.meta(), opened.meta());
    assert!(copy.illegal("www.csam-guard-3.invalid").is_some());
    assert!(copy
        .lookup("games.test", copy.category_bit("games").unwrap())
        .is_some());

    // meta.toml and illegal.bin disagree on the count: refused.
    let meta_path = out.join("meta.toml");
    let meta = std::fs::read_to_string(&meta_path).unwrap();
    assert!(meta.contains("domains = 5"), "{meta}");
    std::fs::write(&meta_path, meta.replace("domains = 5", "domains = 6")).unwrap();
    let err = Blocklists::open(&out, Some(&key)).unwrap_err().to_string();
    assert!(
        err.contains("illegal.bin") && err.contains("5 domains, meta.toml says 6"),
        "{err}"
    );
}

/// An upstream that makes up `COUNT` TXT records of `LEN` bytes for any name it is asked, so
/// the test process does not hold the zone itself (for measuring Hedgerow's memory).
#[derive(Clone)]
struct Generator {
    records: usize,
}

const GEN_LEN: usize = 250;

#[async_trait::async_trait]
impl hickory_server::server::RequestHandler for Generator {
    async fn handle_request<
        R: hickory_server::server::ResponseHandler,
        T: hickory_server::net::runtime::Time,
    >(
        &self,
        request: &hickory_server::server::Request,
        mut response: R,
    ) -> hickory_server::server::ResponseInfo {
        use hickory_proto::op::Metadata;
        let q = &request.queries.queries()[0];
        let name: Name = q.name().into();
        let answers: Vec<Record> = (0..self.records)
            .map(|i| {
                let text = format!("{i:04}{}", "g".repeat(GEN_LEN - 4));
                Record::from_rdata(name.clone(), 300, RData::TXT(TXT::new(vec![text])))
            })
            .collect();
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let builder =
            hickory_server::zone_handler::MessageResponseBuilder::from_message_request(request);
        let msg = builder.build(metadata, answers.iter(), [].iter(), [].iter(), [].iter());
        response.send_response(msg).await.unwrap()
    }
}

/// Process memory (VmRSS) in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A measurement, not a check: `MEASURE_NAMES` (default 12,000) names with
/// `MEASURE_RECORDS` (default 30: ~7.7 KB) TXT records of 250 bytes over TCP, with `[cache] max_bytes = MEASURE_MAX_BYTES` (default 256 MiB);
/// `max_entry_bytes = MEASURE_MAX_ENTRY_BYTES` (default 64 KiB); prints RSS and the cache
/// gauges. One configuration per process:
/// `MEASURE_MAX_BYTES=... cargo test --test it measure_cache_memory -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_cache_memory() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (names, max_bytes) = (
        env("MEASURE_NAMES", 12_000),
        env("MEASURE_MAX_BYTES", 256 << 20),
    );
    let records = env("MEASURE_RECORDS", 30) as usize;
    let (udp, tcp) = crate::common::dns::udp_and_tcp_on_one_port().await;
    let addr = udp.local_addr().unwrap();
    let mut server = hickory_server::Server::new(Generator { records });
    server.register_socket(udp);
    server.register_listener(tcp, std::time::Duration::from_secs(5), 16);
    let entry = env("MEASURE_MAX_ENTRY_BYTES", max_bytes.min(64 << 10));
    let config = format!("{LOCAL}[cache]\nmax_bytes = {max_bytes}\nmax_entry_bytes = {entry}\n");
    let (app, _) = start_hedgerow(&config, addr).await;
    let mut client = TcpClient::connect(app.dns_addrs()[0]).await;
    let before = rss_kib();
    for i in 0..names {
        let m = client
            .query(&format!("n{i}.example.test."), RecordType::TXT)
            .await;
        assert_eq!(m.answers.len(), records);
        if (i + 1) % 3000 == 0 {
            println!(
                "{:>6} names: RSS {:>7} KiB (+{:>7}), cache {} entries, {} bytes (estimated)",
                i + 1,
                rss_kib(),
                rss_kib() - before,
                metric(&app, "hedgerow_cache_entries"),
                metric(&app, "hedgerow_cache_bytes")
            );
        }
    }
    drop(server);
}

#[test]
fn check_config_fails_on_compiled_lists_serve_could_not_open() {
    let dir = scratch_dir("check-artifact");
    write_lists(&dir, GAMES);
    let cfg = dir.join("h.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\ndata_dir = \"{}\"\n[upstream]\nservers = [\"127.0.0.1:5300\"]\n{}",
            dir.join("data").display(),
            lists_config(&dir).replace(
                "[[group]]\nname = \"pupils\"\nnetworks = [\"127.0.0.1/32\"]",
                "[[group]]\nname = \"pupils\"\nnetworks = [\"10.0.0.0/8\"]"
            )
        ),
    )
    .unwrap();
    let hedgerow = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hedgerow"))
            .args(args)
            .arg(&cfg)
            .output()
            .unwrap()
    };
    assert!(hedgerow(&["lists", "compile", "--config"]).status.success());
    let out = hedgerow(&["check-config"]);
    assert!(out.status.success(), "{out:?}");
    // Damaged in place: `serve` could not start on it (no good copy yet), so neither does the
    // check pass.
    let fst = dir.join("data/lists/categories.fst");
    let mut bytes = std::fs::read(&fst).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&fst, bytes).unwrap();
    let out = hedgerow(&["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("categories.fst"), "{err}");
}
