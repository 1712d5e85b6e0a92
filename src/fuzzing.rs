//! The bodies of the fuzz targets, shared by the coverage-guided fuzzers (`tests/fuzz`, cargo-fuzz
//! on nightly) and the corpus replay test (`tests/it/fuzz_corpus.rs`, stable), so that a
//! committed corpus file is replayed through exactly the code the fuzzer ran.
//!
//! Each function takes the fuzzer's bytes and panics only when Hedgerow breaks one of its own
//! rules; anything an outsider can send or a technician can write must come back as `None` or
//! an error. Not part of the API: hidden from the docs, used by no other module.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::Arc,
};

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{
        rdata::{A, CNAME, SOA},
        DNSClass, Name, RData, Record,
    },
};

use crate::{
    config::{Config, ConfigError},
    lists::{
        artifact::{
            FileSum, Meta, ALLOW_FST, CATEGORIES_FST, ILLEGAL_BIN, META_TOML, PREFILTER_BIN,
        },
        parse::{normalize_name, parse_reader, Format, LineClass},
        Blocklists, CompileOptions, IllegalSource, Manifest,
    },
    pipeline::{Answer, Disposition, Sections, SharedSections, Ttl},
    server::{form_error_reply, query_from_wire, write_answer},
    wire::WireQuery,
};

/// Our UDP payload size in the responses written here (the listener's default).
const OURS: u16 = 1232;

/// A datagram as the UDP listener gets it: the fast-path reader, checked against hickory's
/// decoder (whatever the reader accepts, hickory reads the same way); then, for a query it
/// accepts, the pipeline's view of it and both ways an answer is written (records encoded now,
/// and a cache hit's pre-encoded bytes), each parsed back; for one it leaves to hickory, the
/// FORMERR reply to an unreadable body.
pub fn wire_reader(data: &[u8]) {
    let Some(mut ours) = WireQuery::read(data) else {
        if let Some(reply) = form_error_reply(data) {
            assert_eq!(reply[..2], data[..2], "FORMERR with another ID");
            assert_eq!(reply[2] & 0x80, 0x80, "FORMERR is not a response");
        }
        return;
    };
    // The fast path checks only the framing of EDNS options, which it does not use; hickory
    // also decodes the body of those it knows (a Client Subnet with an unknown family fails
    // the whole message). Ignoring an option a server does not implement is RFC 6891 §6.1.2,
    // so such a query is compared with its options removed.
    let theirs = match Message::from_vec(data).or_else(|e| match without_options(data) {
        Some(stripped) => Message::from_vec(&stripped),
        None => Err(e),
    }) {
        Ok(m) => m,
        Err(e) => panic!("the fast path accepted what hickory rejects ({e}): {data:02x?}"),
    };
    assert_eq!(ours.id, theirs.metadata.id);
    assert_eq!(theirs.metadata.message_type, MessageType::Query);
    assert_eq!(theirs.queries.len(), 1);
    let question = &theirs.queries[0];
    assert!(ours.name.eq_case(question.name()), "{data:02x?}");
    assert_eq!(ours.qtype, question.query_type());
    assert_eq!(question.query_class(), DNSClass::IN);
    assert_eq!(ours.recursion_desired(), theirs.metadata.recursion_desired);
    assert_eq!(ours.checking_disabled(), theirs.metadata.checking_disabled);
    assert_eq!(ours.edns.is_some(), theirs.edns.is_some(), "{data:02x?}");
    if let (Some(o), Some(t)) = (ours.edns, theirs.edns.as_ref()) {
        // hickory raises payloads below 512 to 512, as `max_response` does.
        assert_eq!(o.payload.max(512), t.max_payload());
        assert_eq!(o.dnssec_ok, t.flags().dnssec_ok);
    }

    let (id, qname, qtype) = (ours.id, ours.name.clone(), ours.qtype);
    let limit = ours.max_response(OURS);
    let query = query_from_wire(&mut ours, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(query.name.eq_case(&qname));
    assert_eq!(query.key, crate::names::key(&qname));

    let sections = answer_for(&qname);
    let fresh = Answer::new(
        ResponseCode::NoError,
        sections.clone(),
        Disposition::Forwarded,
    );
    let shared = Arc::new(SharedSections::new(sections, &query.name, query.dnssec_ok));
    let cached = Answer::shared(
        ResponseCode::NoError,
        shared,
        Ttl::Aged(7),
        Disposition::Cached,
    );
    let blocked = Answer::empty(ResponseCode::NXDomain, Disposition::Blocked);
    for (answer, records) in [(fresh, 3), (cached, 3), (blocked, 0)] {
        let mut out = Vec::new();
        write_answer(&ours, &query, &answer, OURS, &mut out);
        assert!(out.len() <= limit, "{} bytes over {limit}", out.len());
        let m = match Message::from_vec(&out) {
            Ok(m) => m,
            Err(e) => panic!("hickory cannot read our response ({e}): {out:02x?}"),
        };
        assert_eq!(m.metadata.id, id);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.queries[0].name().eq_case(&qname));
        assert_eq!(m.queries[0].query_type(), qtype);
        assert_eq!(m.metadata.response_code, answer.rcode);
        let sent = m.answers.len() + m.authorities.len() + m.additionals.len();
        if m.metadata.truncation {
            assert_eq!(sent, 0, "a truncated response carries records");
        } else {
            assert_eq!(sent, records);
        }
    }
}

/// A query the fast path accepted, with its OPT record's options removed (`None` without an
/// OPT record). The question name is uncompressed, so the OPT record starts after it and the
/// 4 bytes of type and class.
fn without_options(data: &[u8]) -> Option<Vec<u8>> {
    let mut at = 12;
    while *data.get(at)? != 0 {
        at += 1 + usize::from(data[at]);
    }
    let rdlen_at = at + 1 + 4 + 9;
    if data.len() < rdlen_at + 2 {
        return None;
    }
    Some([&data[..rdlen_at], &[0, 0]].concat())
}

/// A forwarded answer to `qname`: a CNAME out of the question's zone, the target's address
/// and an SOA, so both compression to the question and plain names are written.
fn answer_for(qname: &Name) -> Sections {
    let target = Name::from_ascii("cdn.example.net.").unwrap_or_else(|_| Name::root());
    let zone = Name::from_ascii("example.net.").unwrap_or_else(|_| Name::root());
    let soa = SOA::new(zone.clone(), zone.clone(), 1, 2, 3, 4, 5);
    Sections {
        answers: vec![
            Record::from_rdata(qname.clone(), 300, RData::CNAME(CNAME(target.clone()))),
            Record::from_rdata(target, 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))),
        ],
        authorities: vec![Record::from_rdata(zone, 30, RData::SOA(soa))],
        additionals: Vec::new(),
    }
}

/// The declared formats, chosen by an input's first byte.
const FORMATS: [Format; 4] = [
    Format::Domains,
    Format::Hosts,
    Format::Adblock,
    Format::Auto,
];

/// A list file (after a first byte that picks its declared [`Format`]) through the importer:
/// every line is classed once, every entry is a normalised name that normalises to itself,
/// and every issue can be shown.
pub fn list_line(data: &[u8]) {
    let Some((&pick, list)) = data.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(pick) % FORMATS.len()];
    let mut shown = String::new();
    let stats = parse_reader(list, format, |line| {
        let entries: Vec<_> = line.entries().collect();
        match line.class {
            LineClass::Entry | LineClass::Allow => {
                assert!(!entries.is_empty(), "line {}: no entries", line.number)
            }
            _ => assert!(entries.is_empty(), "line {}: stray entries", line.number),
        }
        for entry in entries {
            assert_eq!(
                normalize_name(entry.name).as_deref(),
                Ok(entry.name),
                "line {}: entry is not normalised",
                line.number
            );
            assert!(!crate::names::is_public_suffix(entry.name));
        }
        if let Some(issue) = line.issue {
            shown.clear();
            std::fmt::Write::write_fmt(&mut shown, format_args!("{issue}"))
                .unwrap_or_else(|e| panic!("line {}: issue not shown: {e}", line.number));
        }
    })
    .unwrap_or_else(|e| panic!("reading from memory failed: {e}"));
    assert_eq!(stats.classified(), stats.lines);
    let newlines = list.iter().filter(|&&b| b == b'\n').count() as u64;
    let unterminated = u64::from(!list.is_empty() && list.last() != Some(&b'\n'));
    assert_eq!(stats.lines, newlines + unterminated, "lines miscounted");
}

/// TOML text through the configuration loader: it parses and validates, or its error names
/// the file and a line within the text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(error) = Config::from_toml_str(text, "fuzz.toml") else {
        return;
    };
    let shown = error.to_string();
    assert!(shown.starts_with("fuzz.toml"), "{shown}");
    match error {
        // toml's own message says where: "TOML parse error at line 3, column 7".
        ConfigError::Parse { message, .. } => assert!(message.contains("line "), "{shown}"),
        ConfigError::Invalid { line, .. } => {
            let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
            assert!(
                (1..=lines).contains(&line),
                "line {line} of {lines}: {shown}"
            );
        }
        ConfigError::Read { .. } => panic!("nothing was read from a file: {shown}"),
    }
}

/// A small valid compiled artifact (two categories, an exception, an illegal-content tier)
/// that [`ArtifactFixture::run`] damages one file of, input by input.
#[derive(Debug)]
pub struct ArtifactFixture {
    dir: PathBuf,
    key: PathBuf,
    /// The artifact's files as compiled, `meta.toml` last.
    files: Vec<(&'static str, Vec<u8>)>,
    meta: Meta,
}

/// The files an input's first byte picks from (`meta.toml` is written as given; the others get
/// a matching checksum and size in `meta.toml`, so only the loader's own checks stand).
const ARTIFACT_FILES: [&str; 5] = [
    CATEGORIES_FST,
    ALLOW_FST,
    ILLEGAL_BIN,
    META_TOML,
    PREFILTER_BIN,
];

/// A fixed key, so the compiled illegal-content file (and a corpus made from it) is the same
/// on every run.
const FIXTURE_KEY: &[u8; 32] = b"hedgerow fuzzing fixture key 32b";

/// Names looked up in every artifact that opens.
const PROBES: [&str; 8] = [
    "roblox.com",
    "www.roblox.com",
    "education.minecraft.net",
    "login.education.minecraft.net",
    "casino.example",
    "a.b.csam-test-3.invalid",
    "host.csam-path-test.invalid",
    "com",
];

impl ArtifactFixture {
    /// Compiles the fixture under `base` (created if missing).
    pub fn new(base: &Path) -> ArtifactFixture {
        let dir = base.join("compiled");
        let key = base.join("illegal.key");
        let write = |path: &Path, bytes: &[u8]| {
            std::fs::write(path, bytes)
                .unwrap_or_else(|e| panic!("fixture: cannot write {}: {e}", path.display()))
        };
        if let Err(e) = std::fs::create_dir_all(base) {
            panic!("fixture: cannot create {}: {e}", base.display());
        }
        write(&key, FIXTURE_KEY);
        write(
            &base.join("games.txt"),
            b"||roblox.com^\n||minecraft.net^\n@@||education.minecraft.net^\n|poki.com^\n",
        );
        write(
            &base.join("gambling.hosts"),
            b"0.0.0.0 casino.example bet.example\n0.0.0.0 www.lottery.example\n",
        );
        let illegal = base.join("iwf.txt");
        write(
            &illegal,
            b"http://csam-test-1.invalid/\nhttp://csam-test-3.invalid/\n\
              https://host.csam-path-test.invalid/gallery/1.html\n",
        );
        let manifest_path = base.join("lists.toml");
        let manifest = Manifest::parse(
            "[[category]]\nid = \"games\"\ntitle = \"Games\"\nuk_definition = \"-\"\n\
             severity = \"low\"\n[[category.source]]\npath = \"games.txt\"\nformat = \"adblock\"\n\
             [[category]]\nid = \"gambling\"\ntitle = \"Gambling\"\nuk_definition = \"-\"\n\
             severity = \"medium\"\n[[category.source]]\npath = \"gambling.hosts\"\n\
             format = \"hosts\"\n",
            &manifest_path,
        )
        .unwrap_or_else(|e| panic!("fixture manifest: {e}"));
        crate::lists::compile(&CompileOptions {
            manifest,
            out_dir: dir.clone(),
            illegal: Some(IllegalSource {
                list: illegal,
                key: key.clone(),
            }),
        })
        .unwrap_or_else(|e| panic!("fixture compile: {e}"));
        let files = ARTIFACT_FILES
            .iter()
            .map(|&name| {
                let path = dir.join(name);
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("fixture: cannot read {}: {e}", path.display()));
                (name, bytes)
            })
            .collect();
        let meta = Meta::read(&dir).unwrap_or_else(|e| panic!("fixture meta: {e}"));
        ArtifactFixture {
            dir,
            key,
            files,
            meta,
        }
    }

    /// The fixture's files as inputs for [`ArtifactFixture::run`] (seeds for a corpus).
    pub fn seeds(&self) -> Vec<Vec<u8>> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, (_, bytes))| [&[i as u8][..], bytes].concat())
            .collect()
    }

    /// Replaces one artifact file (the first byte picks which) with the rest of `data` and
    /// opens the artifact: it opens, or fails with an error naming a file, never panics; when
    /// it opens, lookups answer without panicking. Returns whether it opened.
    pub fn run(&self, data: &[u8]) -> bool {
        let Some((&pick, bytes)) = data.split_first() else {
            return false;
        };
        let target = ARTIFACT_FILES[usize::from(pick) % ARTIFACT_FILES.len()];
        let mut meta = self.meta.clone();
        if target != META_TOML {
            use sha2::Digest;
            let sha256 = sha2::Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let sum = FileSum {
                sha256,
                bytes: bytes.len() as u64,
            };
            meta.files.insert(target.to_string(), sum);
        }
        for (name, original) in &self.files {
            let contents: &[u8] = if *name == target { bytes } else { original };
            let text;
            let contents = if *name == META_TOML && target != META_TOML {
                text = toml::to_string(&meta).unwrap_or_else(|e| panic!("meta.toml: {e}"));
                text.as_bytes()
            } else {
                contents
            };
            let path = self.dir.join(name);
            if let Err(e) = std::fs::write(&path, contents) {
                panic!("cannot write {}: {e}", path.display());
            }
        }
        match Blocklists::open(&self.dir, Some(&self.key)) {
            Ok(lists) => {
                probe(&lists);
                true
            }
            Err(e) => {
                let shown = e.to_string();
                assert!(shown.contains(&*self.dir.to_string_lossy()), "{shown}");
                false
            }
        }
    }
}

/// Every lookup the resolver and the technician's views make, on names in and out of the
/// fixture.
fn probe(lists: &Blocklists) {
    let ids: Vec<String> = lists.categories().iter().map(|c| c.id.clone()).collect();
    let all = lists
        .mask_of(ids.iter().map(String::as_str))
        .unwrap_or(u32::MAX);
    let _ = lists.categories_in(u32::MAX).count();
    let _ = lists.meta().category_counts().count();
    for name in PROBES {
        for mask in [all, u32::MAX, 1] {
            // The prefilter never hides what the walk finds.
            let mut walked = None;
            lists.walk(name, |hit| {
                if hit.bits & mask != 0 {
                    walked = Some(hit.depth);
                }
            });
            assert_eq!(lists.lookup(name, mask).map(|h| h.depth), walked, "{name}");
            if let Some(hit) = lists.lookup(name, mask) {
                let _ = lists.matched_key(name, hit.depth);
            }
            if let Some(hit) = lists.allow_lookup(name, mask) {
                let _ = lists.matched_key(name, hit.depth);
            }
        }
        let _ = lists.illegal(name);
        lists.walk(name, |hit| {
            let _ = lists.matched_key(name, hit.depth);
        });
        lists.walk_allow(name, |_| {});
    }
}

/// The artifact target's fixture, compiled once per process under the temporary folder.
pub fn artifact(data: &[u8]) {
    static FIXTURE: std::sync::OnceLock<ArtifactFixture> = std::sync::OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let base =
                std::env::temp_dir().join(format!("hedgerow-fuzz-artifact-{}", std::process::id()));
            ArtifactFixture::new(&base)
        })
        .run(data);
}
