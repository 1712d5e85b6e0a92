//! SafeSearch: locks search engines and YouTube to their restricted modes, per group.
//!
//! Search engines that support network-enforced SafeSearch publish a "safe" host name
//! (`forcesafesearch.google.com`, `strict.bing.com`, …) whose servers always filter. Pointing
//! the public name at it with a CNAME is the mechanism every engine documents, so that is what
//! this stage answers: a CNAME from the asked name to the target, followed by the target's own
//! records fetched through the rest of the chain (so the cache below stores the target, not
//! the rewrite). Yandex documents an address instead of a name, so its names get that address.
//!
//! Engines that cannot lock SafeSearch at all (Startpage, Brave Search, Yahoo Search, …) can
//! be blocked for a group with `block_unenforceable`, answered like policy blocks.
//!
//! The stage sits after policy (which decides on the name as asked) and before the cache. Its
//! miss path, taken by almost every query, is one hash probe on a borrowed slice of
//! `query.key` and allocates nothing.
//!
//! A side effect worth knowing: Firefox turns its own DNS-over-HTTPS off when `www.google.com`
//! shares an address with `forcesafesearch.google.com`, or a YouTube name with
//! `restrict(moderate).youtube.com`, so enforcing Google or YouTube here also keeps Firefox on
//! the school's resolver.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::Ipv4Addr,
    sync::{Arc, LazyLock},
};

use hickory_proto::{
    op::ResponseCode,
    rr::{
        rdata::{A, CNAME},
        DNSClass, Name, RData, Record, RecordType,
    },
};

use crate::{
    config::{SafeSearchConfig, YouTubeMode},
    event::BlockReason,
    pipeline::{
        group::Group,
        policy::{block_answer, nxdomain, Block, LocalAnswer, BLOCK_TTL},
        Answer, Disposition, Next, Query, Reason, Sections, Stage, StageFuture,
    },
};

/// Longest TTL of a rewrite (the CNAME, Yandex's address and synthesized NODATA).
///
/// The same as [`BLOCK_TTL`]: it bounds how long a device keeps a rewrite after the school
/// changes a group's settings (turning SafeSearch off takes effect within five minutes, like
/// removing a block), and it is the TTL Google itself gives `www.google.com`, so devices re-ask
/// no more often than without Hedgerow. A CNAME never outlives the target records it is sent
/// with (see [`SafeSearch`]), so a device never holds a rewrite pointing at expired data.
pub const REWRITE_TTL: u32 = BLOCK_TTL;

/// The address Yandex documents for its family (safe) search.
pub const YANDEX_FAMILY: Ipv4Addr = Ipv4Addr::new(213, 180, 193, 56);

/// Whether a group with `config` locks `engine`.
fn enforces(config: &SafeSearchConfig, engine: Engine) -> bool {
    match engine {
        Engine::Google => config.google,
        Engine::Bing => config.bing,
        Engine::DuckDuckGo => config.duckduckgo,
        Engine::Ecosia => config.ecosia,
        Engine::Yandex => config.yandex,
        Engine::Pixabay => config.pixabay,
        Engine::YouTube => config.youtube != YouTubeMode::Off,
    }
}

/// One line of plain English for `hedgerow check-config`.
///
/// ```
/// use hedgerow::{config::SafeSearchConfig, pipeline::safesearch::describe};
/// assert!(describe(&SafeSearchConfig::default()).contains("off"));
/// assert!(describe(&SafeSearchConfig::strict()).contains("YouTube Restricted Mode strict"));
/// ```
pub fn describe(config: &SafeSearchConfig) -> String {
    if config.is_off() {
        return "SafeSearch: off (search engines and YouTube resolve normally)".into();
    }
    let (on, off): (Vec<Engine>, Vec<Engine>) = Engine::SEARCH
        .iter()
        .partition(|&&engine| enforces(config, engine));
    let names = |engines: &[Engine]| {
        let names: Vec<&str> = engines.iter().map(|e| e.display()).collect();
        join_english(&names)
    };
    let mut out = String::from("SafeSearch: ");
    if on.is_empty() {
        out.push_str("not locked on any search engine");
    } else {
        let _ = write!(out, "locked on for {}", names(&on));
        if !off.is_empty() {
            let _ = write!(out, "; not enforced for {}", names(&off));
        }
    }
    match config.youtube {
        YouTubeMode::Off => out.push_str("; YouTube Restricted Mode off"),
        YouTubeMode::Moderate => out.push_str("; YouTube Restricted Mode moderate"),
        YouTubeMode::Strict => out.push_str("; YouTube Restricted Mode strict"),
    }
    if config.block_unenforceable {
        let mut engines: Vec<&str> = UNENFORCEABLE.iter().map(|(_, name)| *name).collect();
        engines.dedup(); // the list keeps an engine's domains together
        let (first, rest) = engines.split_at(engines.len().min(3));
        let _ = write!(
            out,
            "; search engines that cannot lock SafeSearch ({} and {} more) are blocked",
            first.join(", "),
            rest.len()
        );
    } else {
        out.push_str("; search engines that cannot lock SafeSearch are allowed");
    }
    out
}

/// "a", "a and b", "a, b and c".
fn join_english(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A service with a lockable safe mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Google,
    Bing,
    DuckDuckGo,
    Ecosia,
    Yandex,
    Pixabay,
    YouTube,
}

impl Engine {
    /// The search engines, in `describe` order (YouTube is described separately).
    const SEARCH: [Engine; 6] = [
        Engine::Google,
        Engine::Bing,
        Engine::DuckDuckGo,
        Engine::Ecosia,
        Engine::Yandex,
        Engine::Pixabay,
    ];

    fn display(self) -> &'static str {
        match self {
            Engine::Google => "Google",
            Engine::Bing => "Bing",
            Engine::DuckDuckGo => "DuckDuckGo",
            Engine::Ecosia => "Ecosia",
            Engine::Yandex => "Yandex",
            Engine::Pixabay => "Pixabay",
            Engine::YouTube => "YouTube",
        }
    }

    /// The lower-case name used in reason details (`google SafeSearch → …`).
    fn label(self) -> &'static str {
        match self {
            Engine::Google => "google",
            Engine::Bing => "bing",
            Engine::DuckDuckGo => "duckduckgo",
            Engine::Ecosia => "ecosia",
            Engine::Yandex => "yandex",
            Engine::Pixabay => "pixabay",
            Engine::YouTube => "youtube",
        }
    }

    /// Where this engine's names go for a group with `config`.
    fn target(self, config: &SafeSearchConfig) -> Target {
        match self {
            Engine::Google => Target::Cname("forcesafesearch.google.com."),
            Engine::Bing => Target::Cname("strict.bing.com."),
            Engine::DuckDuckGo => Target::Cname("safe.duckduckgo.com."),
            Engine::Ecosia => Target::Cname("strict-safe-search.ecosia.org."),
            Engine::Pixabay => Target::Cname("safesearch.pixabay.com."),
            Engine::Yandex => Target::Address(YANDEX_FAMILY),
            Engine::YouTube => match config.youtube {
                YouTubeMode::Strict => Target::Cname("restrict.youtube.com."),
                // `Off` never reaches here (`enforces` is false); moderate is the safe reading.
                YouTubeMode::Moderate | YouTubeMode::Off => {
                    Target::Cname("restrictmoderate.youtube.com.")
                }
            },
        }
    }
}

/// What a rewritten name is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A CNAME to this fully qualified name, followed by its records.
    Cname(&'static str),
    /// This address as an A record (AAAA and every other type: NODATA).
    Address(Ipv4Addr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Cname(name) => f.write_str(name.trim_end_matches('.')),
            Target::Address(ip) => write!(f, "{ip}"),
        }
    }
}

/// What SafeSearch does with one name for one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not a SafeSearch name for this group: resolve normally.
    Pass,
    /// Rewrite to the engine's safe target.
    Rewrite {
        /// Engine label for logs (`google`, `youtube`, …).
        engine: &'static str,
        /// The target.
        target: Target,
    },
    /// A search engine that cannot lock SafeSearch: block it.
    Unenforceable {
        /// The engine's name (`Startpage`, `Brave Search`, …).
        engine: &'static str,
        /// The listed name that matched (the key itself or a parent).
        entry: &'static str,
    },
}

/// What SafeSearch does with `key` (lower case, no trailing dot) for a group with `config`.
///
/// ```
/// use hedgerow::{config::SafeSearchConfig, pipeline::safesearch::{decide, Decision, Target}};
/// let strict = SafeSearchConfig::strict();
/// assert_eq!(
///     decide(&strict, "www.google.co.uk"),
///     Decision::Rewrite { engine: "google", target: Target::Cname("forcesafesearch.google.com.") }
/// );
/// assert!(matches!(decide(&strict, "uk.search.yahoo.com"), Decision::Unenforceable { .. }));
/// assert_eq!(decide(&strict, "mail.yahoo.com"), Decision::Pass);
/// ```
pub fn decide(config: &SafeSearchConfig, key: &str) -> Decision {
    let Some(entry) = TABLE.lookup(key) else {
        return Decision::Pass;
    };
    match entry.rule {
        Rule::Rewrite(engine) if enforces(config, engine) => Decision::Rewrite {
            engine: engine.label(),
            target: engine.target(config),
        },
        Rule::Unenforceable(engine) if config.block_unenforceable => Decision::Unenforceable {
            engine,
            entry: &entry.name,
        },
        _ => Decision::Pass,
    }
}

// ---------------------------------------------------------------------------------------
// The names. Written from the engines' own documentation (Google's supported_domains list,
// Microsoft's, DuckDuckGo's, Ecosia's, Pixabay's and Yandex's network set-up pages, Google
// Workspace's YouTube Restricted Mode page); tests check them against AdGuard Home's rules.
// ---------------------------------------------------------------------------------------

/// Google's search domains (`google.` + each of these), from google.com/supported_domains.
/// Both `www.google.<tld>` and the bare `google.<tld>` are rewritten: the bare name only
/// redirects to `www.`, but Firefox's heuristic checks it and some links use it.
const GOOGLE_TLDS: &[&str] = &[
    "com", "ad", "ae", "com.af", "com.ag", "com.ai", "al", "am", "co.ao", "com.ar", "as", "at",
    "com.au", "az", "ba", "com.bd", "be", "bf", "bg", "com.bh", "bi", "bj", "com.bn", "com.bo",
    "com.br", "bs", "bt", "co.bw", "by", "com.bz", "ca", "cd", "cf", "cg", "ch", "ci", "co.ck",
    "cl", "cm", "cn", "com.co", "co.cr", "com.cu", "cv", "com.cy", "cz", "de", "dj", "dk", "dm",
    "com.do", "dz", "com.ec", "ee", "com.eg", "es", "com.et", "fi", "com.fj", "fm", "fr", "ga",
    "ge", "gg", "com.gh", "com.gi", "gl", "gm", "gr", "com.gt", "gy", "com.hk", "hn", "hr", "ht",
    "hu", "co.id", "ie", "co.il", "im", "co.in", "iq", "is", "it", "je", "com.jm", "jo", "co.jp",
    "co.ke", "com.kh", "ki", "kg", "co.kr", "com.kw", "kz", "la", "com.lb", "li", "lk", "co.ls",
    "lt", "lu", "lv", "com.ly", "co.ma", "md", "me", "mg", "mk", "ml", "com.mm", "mn", "ms",
    "com.mt", "mu", "mv", "mw", "com.mx", "com.my", "co.mz", "com.na", "com.ng", "com.ni", "ne",
    "nl", "no", "com.np", "nr", "nu", "co.nz", "com.om", "com.pa", "com.pe", "com.pg", "com.ph",
    "com.pk", "pl", "pn", "com.pr", "ps", "pt", "com.py", "com.qa", "ro", "ru", "rw", "com.sa",
    "com.sb", "sc", "se", "com.sg", "sh", "si", "sk", "com.sl", "sn", "so", "sm", "sr", "st",
    "com.sv", "td", "tg", "co.th", "com.tj", "tl", "tm", "tn", "to", "com.tr", "tt", "com.tw",
    "co.tz", "com.ua", "co.ug", "co.uk", "com.uy", "co.uz", "com.vc", "co.ve", "vg", "co.vi",
    "com.vn", "vu", "ws", "rs", "co.za", "co.zm", "co.zw", "cat", "co", "com.nf", "gp", "tk",
];

/// Bing: Microsoft documents `www.bing.com`; the bare name and Edge's sidebar/Copilot host
/// serve results too.
const BING: &[&str] = &["www.bing.com", "bing.com", "edgeservices.bing.com"];

/// DuckDuckGo documents the first three. `html.` and `lite.` are its no-JavaScript front
/// ends, which would otherwise be a one-word bypass (safe search there is only a URL
/// parameter); sending them to the safe servers fails closed: at worst those pages stop
/// working and the pupil uses the main site, which is locked. `safe.duckduckgo.com` is the
/// target and must never be rewritten.
const DUCKDUCKGO: &[&str] = &[
    "duckduckgo.com",
    "www.duckduckgo.com",
    "start.duckduckgo.com",
    "html.duckduckgo.com",
    "lite.duckduckgo.com",
];

/// Ecosia: the search lives on `www.` (the bare name redirects there).
const ECOSIA: &[&str] = &["www.ecosia.org"];

/// Pixabay: the site lives on the bare name (`www.` redirects to it).
const PIXABAY: &[&str] = &["pixabay.com"];

/// Yandex's search domains; each is rewritten with and without `www.`.
/// `xn--d1acpjx3f.xn--p1ai` is яндекс.рф.
const YANDEX: &[&str] = &[
    "ya.ru",
    "yandex.ru",
    "yandex.com",
    "yandex.com.tr",
    "yandex.ua",
    "yandex.by",
    "yandex.kz",
    "yandex.uz",
    "yandex.az",
    "yandex.co.il",
    "yandex.com.am",
    "yandex.com.ge",
    "yandex.ee",
    "yandex.eu",
    "yandex.fr",
    "yandex.kg",
    "yandex.lt",
    "yandex.lv",
    "yandex.md",
    "yandex.tj",
    "yandex.tm",
    "yandex.com.ru",
    "yandex.de",
    "yandex.fi",
    "yandex.net",
    "yandex.org",
    "yandex.pl",
    "xn--d1acpjx3f.xn--p1ai",
];

/// The five names Google documents for YouTube Restricted Mode by DNS (also the five
/// Firefox's heuristic checks). Not rewritten: bare `youtube.com` (it only redirects to
/// `www.youtube.com`, which is) and `music.youtube.com` (Restricted Mode does not apply to
/// YouTube Music; block it by policy if needed).
const YOUTUBE: &[&str] = &[
    "www.youtube.com",
    "m.youtube.com",
    "youtubei.googleapis.com",
    "youtube.googleapis.com",
    "www.youtube-nocookie.com",
];

/// Search engines with no network-lockable SafeSearch (their filter is a cookie or URL
/// parameter the pupil controls), blocked with every subdomain under `block_unenforceable`.
///
/// Deliberately narrow: only hosts that *are* search, never a portal (`search.yahoo.com`
/// and `search.aol.com`, not Yahoo Mail or AOL; `search.brave.com`, not Brave's browser
/// downloads; `go.mail.ru`, not Mail.ru mail). Not listed: Ecosia (now lockable, rewritten
/// above), Swisscows and Qwant Junior (filter always on), the unbounded set of SearXNG
/// instances and AI assistants (a job for the circumvention and category lists).
const UNENFORCEABLE: &[(&str, &str)] = &[
    ("startpage.com", "Startpage"),
    ("startpage.nl", "Startpage"),
    ("search.brave.com", "Brave Search"),
    ("search.yahoo.com", "Yahoo Search"),
    ("search.aol.com", "AOL Search"),
    ("qwant.com", "Qwant"),
    ("ask.com", "Ask.com"),
    ("you.com", "You.com"),
    ("mojeek.com", "Mojeek"),
    ("mojeek.co.uk", "Mojeek"),
    ("dogpile.com", "Dogpile"),
    ("metacrawler.com", "MetaCrawler"),
    ("webcrawler.com", "WebCrawler"),
    ("gibiru.com", "Gibiru"),
    ("searchencrypt.com", "Search Encrypt"),
    ("metager.org", "MetaGer"),
    ("metager.de", "MetaGer"),
    ("presearch.com", "Presearch"),
    ("kagi.com", "Kagi"),
    ("yep.com", "Yep"),
    ("lukol.com", "Lukol"),
    ("oscobo.com", "Oscobo"),
    ("peekier.com", "Peekier"),
    ("go.mail.ru", "Mail.ru Search"),
    ("nova.rambler.ru", "Rambler Search"),
];

#[derive(Debug, Clone, Copy)]
enum Rule {
    Rewrite(Engine),
    Unenforceable(&'static str),
}

#[derive(Debug)]
struct Entry {
    name: Box<str>,
    /// Matches subdomains too (unenforceable engines); rewrites are exact names only.
    subdomains: bool,
    rule: Rule,
}

impl Entry {
    fn matches(&self, key: &str) -> bool {
        let name: &str = &self.name;
        key == name
            || (self.subdomains
                && key.len() > name.len()
                && key.ends_with(name)
                && key.as_bytes()[key.len() - name.len() - 1] == b'.')
    }
}

/// Every SafeSearch name, bucketed by its last two labels.
///
/// Any name at or below an entry of two or more labels shares that entry's last two labels,
/// so one probe with a borrowed slice of the key finds every candidate (exact or parent),
/// and a bucket holds a handful of entries at most (`co.uk`: Google's two and Mojeek).
struct Table {
    buckets: HashMap<Box<str>, Vec<Entry>>,
}

/// Built once per process; decisions borrow `'static` names from it.
static TABLE: LazyLock<Table> = LazyLock::new(Table::build);

/// The last two labels of `key` (all of it when it has fewer).
fn tail(key: &str) -> &str {
    match key.rmatch_indices('.').nth(1) {
        Some((i, _)) => &key[i + 1..],
        None => key,
    }
}

impl Table {
    fn build() -> Table {
        let mut names: Vec<(String, bool, Rule)> = Vec::new();
        for tld in GOOGLE_TLDS {
            for prefix in ["", "www."] {
                names.push((
                    format!("{prefix}google.{tld}"),
                    false,
                    Rule::Rewrite(Engine::Google),
                ));
            }
        }
        for domain in YANDEX {
            for prefix in ["", "www."] {
                names.push((
                    format!("{prefix}{domain}"),
                    false,
                    Rule::Rewrite(Engine::Yandex),
                ));
            }
        }
        for (list, engine) in [
            (BING, Engine::Bing),
            (DUCKDUCKGO, Engine::DuckDuckGo),
            (ECOSIA, Engine::Ecosia),
            (PIXABAY, Engine::Pixabay),
            (YOUTUBE, Engine::YouTube),
        ] {
            names.extend(
                list.iter()
                    .map(|&n| (n.to_string(), false, Rule::Rewrite(engine))),
            );
        }
        names.extend(
            UNENFORCEABLE
                .iter()
                .map(|&(n, engine)| (n.to_string(), true, Rule::Unenforceable(engine))),
        );
        let mut buckets: HashMap<Box<str>, Vec<Entry>> = HashMap::new();
        for (name, subdomains, rule) in names {
            buckets.entry(tail(&name).into()).or_default().push(Entry {
                name: name.into_boxed_str(),
                subdomains,
                rule,
            });
        }
        Table { buckets }
    }

    /// The most specific entry covering `key`.
    fn lookup(&self, key: &str) -> Option<&Entry> {
        self.buckets
            .get(tail(key))?
            .iter()
            .filter(|e| e.matches(key))
            .max_by_key(|e| e.name.len())
    }
}

// ---------------------------------------------------------------------------------------
// The stage.
// ---------------------------------------------------------------------------------------

/// The SafeSearch stage.
///
/// Each group's settings travel on its [`Group`] ([`decide_for_group`]). A query without a
/// group gets no SafeSearch (policy, which runs first, already refuses it), and a group
/// without a `[group.safesearch]` section means "off".
///
/// Answers:
/// - rewritten name, A/AAAA/HTTPS/SVCB: a CNAME from the name as asked to the target, then the
///   target's records of that type fetched through the rest of the chain. The CNAME's TTL is
///   the smaller of [`REWRITE_TTL`] and the target records' (or, for NODATA, the SOA's), so a
///   client never holds the CNAME longer than what it points at. If the target cannot be
///   resolved the client gets SERVFAIL: never the unrestricted name.
/// - rewritten name, any other type: the CNAME alone, which is complete, correct DNS for any
///   type (a resolver or stub follows it itself) and costs no upstream query; passing the
///   type through would hand out data for the unrestricted name.
/// - Yandex: A → [`YANDEX_FAMILY`]; every other type NODATA (no AAAA or HTTPS hints that would
///   reach the unrestricted servers).
/// - unenforceable engine: the group's block answer (NXDOMAIN with SOA by default), built by
///   policy's [`block_answer`] so it matches every other block, labelled
///   `safesearch_unenforceable`.
pub struct SafeSearch;

impl SafeSearch {
    /// The stage. Each group's settings travel on its [`Group`].
    pub fn new() -> SafeSearch {
        // Touch the table now, so the first query does not pay for building it.
        LazyLock::force(&TABLE);
        SafeSearch
    }

    /// The decision for `query`, and its group when it is not a pass.
    fn plan(&self, query: &Query) -> Option<(Decision, Arc<Group>)> {
        if query.qclass != DNSClass::IN {
            return None;
        }
        match decide_for_group(query.group.as_deref()?, &query.key) {
            Decision::Pass => None,
            // The Arc (one refcount bump, hit path only) frees `query` for `next`.
            decision => Some((decision, query.group.clone()?)),
        }
    }
}

impl Default for SafeSearch {
    fn default() -> SafeSearch {
        SafeSearch::new()
    }
}

/// What SafeSearch does with `key` for `group`: [`decide`] on the group's settings, except
/// that an explicit allow entry lets an unenforceable engine through (the school saying
/// "this one is fine for this group"). The stage and `hedgerow lists lookup` both ask this.
pub fn decide_for_group(group: &Group, key: &str) -> Decision {
    if group.safesearch.is_off() {
        return Decision::Pass;
    }
    match decide(&group.safesearch, key) {
        Decision::Unenforceable { .. } if group.policy.allow.deepest(key).is_some() => {
            Decision::Pass
        }
        decision => decision,
    }
}

/// The reason for blocking an engine that cannot lock SafeSearch, worded like policy's.
pub fn unenforceable_reason(group: &str, engine: &str, entry: &str) -> Reason {
    Reason {
        kind: BlockReason::SafeSearchUnenforceable,
        detail: format!("group `{group}`: {engine} cannot lock SafeSearch ({entry})"),
        severity: None,
        category: None,
    }
}

/// The note on a rewrite, worded like policy's reasons.
pub fn rewrite_note(group: &str, engine: &str, target: Target) -> String {
    let what = if engine == "youtube" {
        "Restricted Mode"
    } else {
        "SafeSearch"
    };
    format!("group `{group}`: {engine} {what} → {target}")
}

impl Stage for SafeSearch {
    fn name(&self) -> &'static str {
        "safesearch"
    }

    fn handle<'a>(&'a self, query: &'a mut Query, next: Next<'a>) -> StageFuture<'a> {
        let Some((decision, group)) = self.plan(query) else {
            return next.run(query);
        };
        let group_name = &group.name;
        match decision {
            Decision::Pass => next.run(query),
            Decision::Unenforceable { engine, entry } => {
                // Answered exactly like a policy block (the group's block answer: NXDOMAIN
                // with SOA unless the school chose a block page).
                let block = Block {
                    reason: unenforceable_reason(group_name, engine, entry),
                    categories: 0,
                    answer: LocalAnswer::Group,
                };
                let answer = block_answer(query, &block, group.policy.block_answer);
                Box::pin(async move { answer })
            }
            Decision::Rewrite {
                engine,
                target: Target::Address(ip),
            } => {
                let note = rewrite_note(group_name, engine, Target::Address(ip));
                let answer = address_answer(query, ip).with_note(note);
                Box::pin(async move { answer })
            }
            Decision::Rewrite {
                engine,
                target: Target::Cname(target),
            } => {
                let note = rewrite_note(group_name, engine, Target::Cname(target));
                Box::pin(cname_answer(query, next, target, note))
            }
        }
    }
}

/// Types whose answer needs the target's records (addresses, or hints to them).
fn follows_target(qtype: RecordType) -> bool {
    matches!(
        qtype,
        RecordType::A | RecordType::AAAA | RecordType::HTTPS | RecordType::SVCB
    )
}

async fn cname_answer(
    query: &mut Query,
    next: Next<'_>,
    target: &'static str,
    detail: String,
) -> Answer {
    let Ok(target_name) = Name::from_ascii(target) else {
        // The targets are constants covered by a unit test; fail closed all the same.
        return Answer::servfail().with_note(format!("{detail}: bad target name"));
    };
    let mut rcode = ResponseCode::NoError;
    let mut sections = Sections::default();
    let mut ttl = REWRITE_TTL;
    if follows_target(query.qtype) {
        let mut sub = query.for_name(target_name.clone());
        let resolved = next.run(&mut sub).await;
        if resolved.disposition == Disposition::ServFail
            || !matches!(
                resolved.rcode,
                ResponseCode::NoError | ResponseCode::NXDomain
            )
        {
            // Never fall back to the unrestricted name.
            return Answer::servfail().with_note(format!(
                "{detail}: the target did not resolve ({})",
                resolved.rcode
            ));
        }
        rcode = resolved.rcode;
        // authentic_data stays false: the CNAME is ours, nobody signed it.
        sections = resolved.into_sections();
        let target_ttl = if sections.answers.is_empty() {
            // NODATA/NXDOMAIN: negatively cached for the SOA's TTL and minimum (RFC 2308).
            sections.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
        } else {
            sections.answers.iter().map(|r| r.ttl).min()
        };
        ttl = ttl.min(target_ttl.unwrap_or(REWRITE_TTL));
    }
    sections.answers.insert(
        0,
        Record::from_rdata(query.name.clone(), ttl, RData::CNAME(CNAME(target_name))),
    );
    Answer::new(rcode, sections, Disposition::SafeSearch).with_note(detail)
}

/// Yandex: the family address for A, NODATA for everything else.
fn address_answer(query: &Query, ip: Ipv4Addr) -> Answer {
    if query.qtype == RecordType::A {
        let sections = Sections {
            answers: vec![Record::from_rdata(
                query.name.clone(),
                REWRITE_TTL,
                RData::A(A(ip)),
            )],
            ..Sections::default()
        };
        return Answer::new(ResponseCode::NoError, sections, Disposition::SafeSearch);
    }
    // The block answer's SOA (minimum BLOCK_TTL = REWRITE_TTL), as NOERROR: the name exists.
    let mut answer = nxdomain(query);
    answer.rcode = ResponseCode::NoError;
    answer.disposition = Disposition::SafeSearch;
    answer
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashSet,
        str::FromStr,
        sync::{Arc, Mutex},
    };

    use hickory_proto::rr::{
        rdata::{AAAA, HTTPS, SOA, SVCB},
        RData,
    };

    use super::*;
    use crate::pipeline::{
        group::{GroupPolicy, NameSet},
        Pipeline, Transport,
    };

    /// A stand-in for cache + forward: answers the targets, records what it was asked.
    #[derive(Default)]
    struct FakeUpstream {
        asked: Mutex<Vec<(String, RecordType)>>,
        fail: Mutex<HashSet<String>>,
    }

    impl FakeUpstream {
        fn asked(&self) -> Vec<(String, RecordType)> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl Stage for FakeUpstream {
        fn name(&self) -> &'static str {
            "fake"
        }

        fn handle<'a>(&'a self, query: &'a mut Query, _next: Next<'a>) -> StageFuture<'a> {
            self.asked
                .lock()
                .unwrap()
                .push((query.key.clone(), query.qtype));
            let fail = self.fail.lock().unwrap().contains(&query.key);
            let mut sections = Sections::default();
            if fail {
                return Box::pin(async { Answer::servfail() });
            }
            let ip = match query.key.as_str() {
                "forcesafesearch.google.com" => 60,
                "restrict.youtube.com" => 61,
                "restrictmoderate.youtube.com" => 62,
                "strict.bing.com" => 63,
                "safe.duckduckgo.com" => 64,
                "strict-safe-search.ecosia.org" => 65,
                "safesearch.pixabay.com" => 66,
                _ => 99,
            };
            let name = query.name.clone();
            let data = match query.qtype {
                RecordType::A => Some(RData::A(A(Ipv4Addr::new(192, 0, 2, ip)))),
                RecordType::AAAA if ip != 66 => Some(RData::AAAA(AAAA(
                    std::net::Ipv6Addr::from_str(&format!("2001:db8::{ip}")).unwrap(),
                ))),
                RecordType::HTTPS => Some(RData::HTTPS(HTTPS(SVCB::new(1, Name::root(), vec![])))),
                _ => None,
            };
            match data {
                Some(data) => sections.answers.push(Record::from_rdata(name, 120, data)),
                None => sections.authorities.push(Record::from_rdata(
                    name,
                    600,
                    RData::SOA(SOA::new(
                        Name::from_ascii("ns.test.").unwrap(),
                        Name::from_ascii("admin.test.").unwrap(),
                        1,
                        3600,
                        600,
                        86400,
                        60,
                    )),
                )),
            }
            let answer = Answer::new(ResponseCode::NoError, sections, Disposition::Forwarded);
            Box::pin(async move { answer })
        }
    }

    struct Setup {
        pipeline: Pipeline,
        upstream: Arc<FakeUpstream>,
        groups: Vec<Arc<Group>>,
    }

    fn setup(configs: Vec<SafeSearchConfig>) -> Setup {
        let groups: Vec<Arc<Group>> = configs
            .into_iter()
            .enumerate()
            .map(|(index, safesearch)| {
                Arc::new(Group {
                    index,
                    name: ["pupils", "staff", "guests"][index].into(),
                    policy: GroupPolicy {
                        allow: NameSet::new(["kagi.com".to_string()]),
                        ..GroupPolicy::default()
                    },
                    safesearch,
                    metrics: crate::metrics::Metrics::new().unwrap().group("test"),
                })
            })
            .collect();
        let upstream = Arc::new(FakeUpstream::default());
        let stage = SafeSearch::new();
        let pipeline = Pipeline::new(vec![Arc::new(stage), upstream.clone()]);
        Setup {
            pipeline,
            upstream,
            groups,
        }
    }

    async fn ask(s: &Setup, group: usize, name: &str, qtype: RecordType) -> Answer {
        let mut q = Query::new(
            "127.0.0.1".parse().unwrap(),
            Transport::Udp,
            Name::from_ascii(name).unwrap(),
            qtype,
        );
        q.group = s.groups.get(group).cloned();
        s.pipeline.resolve(&mut q).await
    }

    fn cname_of(answer: &Answer) -> (String, String, u32) {
        match &answer.answers()[0].data {
            RData::CNAME(c) => (
                answer.answers()[0].name.to_string(),
                c.0.to_string(),
                answer.answers()[0].ttl,
            ),
            other => panic!("first record is not a CNAME: {other:?}"),
        }
    }

    fn a_of(answer: &Answer) -> Vec<Ipv4Addr> {
        answer
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn google_www_and_bare_are_rewritten_with_case_kept() {
        let s = setup(vec![SafeSearchConfig::strict()]);
        for name in ["WWW.Google.co.UK.", "google.com.", "www.google.de."] {
            let a = ask(&s, 0, name, RecordType::A).await;
            assert_eq!(a.rcode, ResponseCode::NoError);
            assert_eq!(a.disposition, Disposition::SafeSearch);
            let (owner, target, ttl) = cname_of(&a);
            assert_eq!(owner, name, "the CNAME owner is the name as asked");
            assert_eq!(target, "forcesafesearch.google.com.");
            assert_eq!(ttl, 120, "CNAME TTL is capped by the target's");
            assert_eq!(a_of(&a), [Ipv4Addr::new(192, 0, 2, 60)]);
            assert!(!a.authentic_data);
            assert_eq!(a.disposition, Disposition::SafeSearch);
            assert!(a.reason.is_none(), "a rewrite blocks nothing");
            assert_eq!(
                a.note.as_deref(),
                Some("group `pupils`: google SafeSearch → forcesafesearch.google.com")
            );
        }
        // Only the target was asked upstream, never the unrestricted name.
        assert!(s
            .upstream
            .asked()
            .iter()
            .all(|(n, _)| n == "forcesafesearch.google.com"));
    }

    #[tokio::test]
    async fn aaaa_and_https_follow_the_target() {
        let s = setup(vec![SafeSearchConfig::strict()]);
        let aaaa = ask(&s, 0, "www.bing.com.", RecordType::AAAA).await;
        assert_eq!(cname_of(&aaaa).1, "strict.bing.com.");
        assert_eq!(aaaa.answers()[1].record_type(), RecordType::AAAA);
        let https = ask(&s, 0, "duckduckgo.com.", RecordType::HTTPS).await;
        assert_eq!(cname_of(&https).1, "safe.duckduckgo.com.");
        assert_eq!(https.answers()[1].record_type(), RecordType::HTTPS);
        // NODATA at the target: CNAME plus the target's SOA; TTL from the SOA (min 60).
        let nodata = ask(&s, 0, "pixabay.com.", RecordType::AAAA).await;
        assert_eq!(nodata.rcode, ResponseCode::NoError);
        assert_eq!(nodata.answers().len(), 1);
        assert_eq!(
            cname_of(&nodata),
            ("pixabay.com.".into(), "safesearch.pixabay.com.".into(), 60)
        );
        assert_eq!(nodata.authorities()[0].record_type(), RecordType::SOA);
        assert_eq!(
            s.upstream.asked(),
            [
                ("strict.bing.com".to_string(), RecordType::AAAA),
                ("safe.duckduckgo.com".to_string(), RecordType::HTTPS),
                ("safesearch.pixabay.com".to_string(), RecordType::AAAA),
            ]
        );
    }

    #[tokio::test]
    async fn other_types_get_the_cname_alone() {
        let s = setup(vec![SafeSearchConfig::strict()]);
        for qtype in [
            RecordType::TXT,
            RecordType::MX,
            RecordType::CNAME,
            RecordType::ANY,
        ] {
            let a = ask(&s, 0, "www.ecosia.org.", qtype).await;
            assert_eq!(a.rcode, ResponseCode::NoError);
            assert_eq!(a.answers().len(), 1);
            assert_eq!(
                cname_of(&a),
                (
                    "www.ecosia.org.".into(),
                    "strict-safe-search.ecosia.org.".into(),
                    REWRITE_TTL
                )
            );
        }
        assert!(s.upstream.asked().is_empty());
    }

    #[tokio::test]
    async fn yandex_gets_the_family_address_and_nodata() {
        let s = setup(vec![SafeSearchConfig::strict()]);
        for name in [
            "yandex.ru.",
            "www.Yandex.com.tr.",
            "xn--d1acpjx3f.xn--p1ai.",
        ] {
            let a = ask(&s, 0, name, RecordType::A).await;
            assert_eq!(a_of(&a), [YANDEX_FAMILY]);
            assert_eq!(a.answers()[0].name.to_ascii(), name);
            assert_eq!(a.answers()[0].ttl, REWRITE_TTL);
            assert_eq!(
                a.note.as_deref(),
                Some("group `pupils`: yandex SafeSearch → 213.180.193.56")
            );
            for qtype in [RecordType::AAAA, RecordType::HTTPS, RecordType::MX] {
                let n = ask(&s, 0, name, qtype).await;
                assert_eq!(n.rcode, ResponseCode::NoError);
                assert_eq!(n.disposition, Disposition::SafeSearch);
                assert!(n.answers().is_empty());
                assert_eq!(n.authorities()[0].record_type(), RecordType::SOA);
            }
        }
        assert!(s.upstream.asked().is_empty());
    }

    #[tokio::test]
    async fn youtube_modes_per_group() {
        let staff = SafeSearchConfig {
            youtube: YouTubeMode::Moderate,
            ..SafeSearchConfig::default()
        };
        let s = setup(vec![
            SafeSearchConfig::strict(),
            staff,
            SafeSearchConfig::default(),
        ]);
        for name in YOUTUBE {
            let fqdn = format!("{name}.");
            let pupils = ask(&s, 0, &fqdn, RecordType::A).await;
            assert_eq!(cname_of(&pupils).1, "restrict.youtube.com.");
            assert_eq!(
                pupils.note.as_deref(),
                Some("group `pupils`: youtube Restricted Mode → restrict.youtube.com")
            );
            let staff = ask(&s, 1, &fqdn, RecordType::A).await;
            assert_eq!(cname_of(&staff).1, "restrictmoderate.youtube.com.");
            assert_eq!(a_of(&staff), [Ipv4Addr::new(192, 0, 2, 62)]);
            let guests = ask(&s, 2, &fqdn, RecordType::A).await;
            assert_eq!(guests.disposition, Disposition::Forwarded);
            assert_eq!(a_of(&guests), [Ipv4Addr::new(192, 0, 2, 99)]);
        }
        // Staff have YouTube only: Google passes through for them.
        let g = ask(&s, 1, "www.google.com.", RecordType::A).await;
        assert_eq!(g.disposition, Disposition::Forwarded);
    }

    #[tokio::test]
    async fn target_failure_is_servfail_never_the_unrestricted_name() {
        let s = setup(vec![SafeSearchConfig::strict()]);
        s.upstream
            .fail
            .lock()
            .unwrap()
            .insert("forcesafesearch.google.com".into());
        let a = ask(&s, 0, "www.google.com.", RecordType::A).await;
        assert_eq!(a.rcode, ResponseCode::ServFail);
        assert!(a.answers().is_empty());
        assert!(a.note.unwrap().contains("did not resolve"));
        assert_eq!(
            s.upstream.asked(),
            [("forcesafesearch.google.com".to_string(), RecordType::A)]
        );
    }

    #[tokio::test]
    async fn unenforceable_engines_are_blocked_but_not_their_portals() {
        let staff = SafeSearchConfig {
            google: true,
            ..SafeSearchConfig::default()
        };
        let s = setup(vec![SafeSearchConfig::strict(), staff]);
        for name in [
            "startpage.com.",
            "www.startpage.com.",
            "uk.search.yahoo.com.",
            "search.brave.com.",
            "QWANT.com.",
        ] {
            let a = ask(&s, 0, name, RecordType::A).await;
            assert_eq!(a.rcode, ResponseCode::NXDomain, "{name}");
            assert_eq!(a.disposition, Disposition::Blocked);
            assert_eq!(a.authorities()[0].record_type(), RecordType::SOA);
            assert_eq!(
                a.reason.as_ref().unwrap().kind,
                BlockReason::SafeSearchUnenforceable
            );
            // Staff: block_unenforceable is off.
            let b = ask(&s, 1, name, RecordType::A).await;
            assert_eq!(b.disposition, Disposition::Forwarded, "{name}");
        }
        assert_eq!(
            ask(&s, 0, "www.startpage.com.", RecordType::A)
                .await
                .reason
                .unwrap()
                .detail,
            "group `pupils`: Startpage cannot lock SafeSearch (startpage.com)"
        );
        for name in [
            "mail.yahoo.com.",
            "yahoo.com.",
            "brave.com.",
            "notstartpage.com.",
            "safe.duckduckgo.com.",
            "forcesafesearch.google.com.",
            "images.google.com.",
            "music.youtube.com.",
            "youtube.com.",
            // An explicit allow entry lets an unenforceable engine through.
            "kagi.com.",
        ] {
            let a = ask(&s, 0, name, RecordType::A).await;
            assert_eq!(a.disposition, Disposition::Forwarded, "{name}");
        }
    }

    #[tokio::test]
    async fn no_group_and_unknown_group_pass_through() {
        let s = setup(vec![SafeSearchConfig::strict()]);
        let a = ask(&s, 5, "www.google.com.", RecordType::A).await;
        assert_eq!(a.disposition, Disposition::Forwarded);
    }

    #[test]
    fn config_parses_from_toml() {
        let c: SafeSearchConfig = toml::from_str("google = true\nyoutube = \"strict\"\n").unwrap();
        assert_eq!(
            c,
            SafeSearchConfig {
                google: true,
                youtube: YouTubeMode::Strict,
                ..SafeSearchConfig::default()
            }
        );
        let c: SafeSearchConfig = toml::from_str("").unwrap();
        assert!(c.is_off());
        let err = toml::from_str::<SafeSearchConfig>("gogle = true").unwrap_err();
        assert!(err.to_string().contains("gogle"), "{err}");
        let err = toml::from_str::<SafeSearchConfig>("youtube = \"on\"").unwrap_err();
        assert!(err.to_string().contains("off"), "{err}");
    }

    #[test]
    fn describe_in_plain_english() {
        assert_eq!(
            describe(&SafeSearchConfig::strict()),
            "SafeSearch: locked on for Google, Bing, DuckDuckGo, Ecosia, Yandex and Pixabay; \
             YouTube Restricted Mode strict; search engines that cannot lock SafeSearch \
             (Startpage, Brave Search, Yahoo Search and 19 more) are blocked"
        );
        let c = SafeSearchConfig {
            google: true,
            youtube: YouTubeMode::Moderate,
            ..SafeSearchConfig::default()
        };
        assert_eq!(
            describe(&c),
            "SafeSearch: locked on for Google; not enforced for Bing, DuckDuckGo, Ecosia, \
             Yandex and Pixabay; YouTube Restricted Mode moderate; search engines that cannot \
             lock SafeSearch are allowed"
        );
    }

    #[test]
    fn table_is_sound() {
        let mut seen = HashSet::new();
        let mut targets = HashSet::new();
        let all = SafeSearchConfig::strict();
        let moderate = SafeSearchConfig {
            youtube: YouTubeMode::Moderate,
            ..SafeSearchConfig::strict()
        };
        for entry in TABLE.buckets.values().flatten() {
            let name: &str = &entry.name;
            assert!(seen.insert(name), "{name} is listed twice");
            assert!(name.contains('.'), "{name} has one label");
            assert_eq!(name, name.to_ascii_lowercase());
            assert!(!name.ends_with('.'));
            assert!(TABLE.lookup(name).is_some());
            if let Rule::Rewrite(engine) = entry.rule {
                targets.insert(engine.target(&all));
                targets.insert(engine.target(&moderate));
            }
        }
        assert!(GOOGLE_TLDS.len() >= 190, "{}", GOOGLE_TLDS.len());
        assert_eq!(targets.len(), 8);
        for target in targets {
            if let Target::Cname(name) = target {
                let parsed = Name::from_ascii(name).unwrap();
                assert!(parsed.is_fqdn());
                // A target is never itself rewritten or blocked (no loops, no fallbacks).
                let key = name.trim_end_matches('.');
                assert_eq!(decide(&all, key), Decision::Pass, "{key}");
            }
        }
    }

    #[test]
    fn rewrites_are_exact_and_blocks_cover_subdomains() {
        let strict = SafeSearchConfig::strict();
        let unenforceable = |key| matches!(decide(&strict, key), Decision::Unenforceable { .. });
        let rewritten = |key| matches!(decide(&strict, key), Decision::Rewrite { .. });
        // One bucket (`co.uk`) holds Google's exact names and Mojeek's subtree.
        assert!(rewritten("www.google.co.uk") && rewritten("google.co.uk"));
        assert!(!rewritten("x.www.google.co.uk") && !rewritten("maps.google.co.uk"));
        assert!(unenforceable("mojeek.co.uk") && unenforceable("www.mojeek.co.uk"));
        assert_eq!(decide(&strict, "bbc.co.uk"), Decision::Pass);
        assert_eq!(decide(&strict, "co.uk"), Decision::Pass);
        // Label boundaries, not string suffixes.
        assert_eq!(decide(&strict, "notsearch.yahoo.com"), Decision::Pass);
        assert_eq!(
            decide(&strict, "search.yahoo.com.evil.test"),
            Decision::Pass
        );
        assert!(unenforceable("a.b.search.yahoo.com"));
        assert_eq!(decide(&strict, ""), Decision::Pass);
        assert_eq!(decide(&strict, "com"), Decision::Pass);
    }

    #[test]
    fn tail_is_the_last_two_labels() {
        assert_eq!(tail("a.b.google.co.uk"), "co.uk");
        assert_eq!(tail("google.com"), "google.com");
        assert_eq!(tail("localhost"), "localhost");
        assert_eq!(tail(""), "");
    }
}
