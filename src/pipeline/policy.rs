//! Policy: the block/allow decision for a client's group, in one readable function
//! ([`decide`]), and the answers that carry it out.
//!
//! Order (DfE: the illegal tier cannot be disabled, overridden or altered by anyone):
//!
//! 1. the illegal-content tier, for everyone, always;
//! 2. built-in anti-circumvention names (Firefox canary, iCloud Private Relay, DDR);
//! 3. the group's deny and allow entries and unexpired allow grants — the most specific
//!    entry wins, deny on a tie;
//! 4. the group's blocked categories (less any scheduled free time), unless a list-level
//!    exception (`@@`) or a group allow entry at least as specific says otherwise.
//!
//! After the upstream answers, CNAME targets get the same decision (CNAME cloaking), and
//! `ech` is stripped from HTTPS records for groups that ask for it.

use std::{collections::HashSet, net::IpAddr, sync::Arc, time::SystemTime};

use hickory_proto::{
    op::ResponseCode,
    rr::{
        rdata::{svcb::SvcParamKey, A, AAAA, HTTPS, SOA},
        Name, RData, Record, RecordType,
    },
};

use crate::{
    clock::Clock,
    lists::{Blocklists, IllegalKind, Severity},
    pipeline::{Answer, Disposition, Next, Query, Sections, Stage, StageFuture},
    schedule::Schedule,
};

/// TTL of block answers and of their SOA minimum (how long devices cache a block).
pub const BLOCK_TTL: u32 = 300;

/// A small set of names matched with their subdomains (configuration overrides).
#[derive(Debug, Default, Clone)]
pub struct NameSet {
    names: HashSet<String>,
}

impl NameSet {
    /// A set of normalised names (lower case, no trailing dot).
    pub fn new(names: impl IntoIterator<Item = String>) -> NameSet {
        NameSet {
            names: names.into_iter().collect(),
        }
    }

    /// The most specific listed ancestor of `key` (or `key` itself) as `(depth, entry)`,
    /// where depth counts the labels of the entry.
    ///
    /// ```
    /// use hedgerow::pipeline::policy::NameSet;
    /// let set = NameSet::new(["example.com".to_string()]);
    /// assert_eq!(set.deepest("a.b.example.com"), Some((2, "example.com")));
    /// assert_eq!(set.deepest("notexample.com"), None);
    /// ```
    pub fn deepest<'k>(&self, key: &'k str) -> Option<(usize, &'k str)> {
        if self.names.is_empty() || key.is_empty() {
            return None;
        }
        let mut depth = key.bytes().filter(|&b| b == b'.').count() + 1;
        let mut suffix = key;
        loop {
            if self.names.contains(suffix) {
                return Some((depth, suffix));
            }
            match suffix.split_once('.') {
                Some((_, rest)) => {
                    suffix = rest;
                    depth -= 1;
                }
                None => return None,
            }
        }
    }

    /// Listed names, sorted (for descriptions).
    pub fn sorted(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.names.iter().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// A time-limited allow entry (from the unblock-request workflow).
#[derive(Debug, Clone)]
pub struct Grant {
    /// The allowed name (with subdomains).
    pub name: String,
    /// When the grant lapses.
    pub expires: SystemTime,
}

/// How a group's blocked queries are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockAnswer {
    /// NXDOMAIN with an SOA carrying the block TTL (the default: no TLS errors, cached).
    #[default]
    NxDomain,
    /// `0.0.0.0` / `::` for A/AAAA; NODATA for other types.
    Null,
    /// The address of a block page for A (IPv4) or AAAA (IPv6); NODATA for other types.
    Address(IpAddr),
}

/// What one group may and may not reach.
#[derive(Debug, Default)]
pub struct GroupPolicy {
    /// Always blocked (with subdomains).
    pub deny: NameSet,
    /// Never blocked (with subdomains), except by the illegal tier.
    pub allow: NameSet,
    /// Time-limited allow entries.
    pub grants: Vec<Grant>,
    /// Bits of the categories this group blocks (against the lists in force).
    pub categories: u32,
    /// Windows during which some of those categories are not blocked.
    pub schedules: Vec<Schedule>,
    /// How blocks are answered.
    pub block_answer: BlockAnswer,
    /// Built-in anti-circumvention names are answered locally.
    pub anti_circumvention: bool,
    /// Remove `ech` from HTTPS/SVCB answers (keeps SNI visible to the school's firewall).
    pub strip_ech: bool,
}

/// Why a name is blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Resolve normally.
    Allow {
        /// Which allow entry decided, if one did (for explanations).
        by: Option<String>,
    },
    /// Block (or answer locally).
    Block(Block),
}

/// A block decision with its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Low-cardinality label: `illegal`, `circumvention`, `deny`, `category`, …
    pub label: &'static str,
    /// Category bits involved (0 when a deny entry or built-in rule decided).
    pub categories: u32,
    /// Safeguarding severity of the attempt, if it is a breach.
    pub severity: Option<Severity>,
    /// Full explanation: group, rule, category. Never names an illegal-tier entry.
    pub detail: String,
    /// How to answer.
    pub answer: LocalAnswer,
}

/// The local answer for a blocked or special name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalAnswer {
    /// Use the group's block answer.
    Group,
    /// Always NXDOMAIN (illegal tier, Private Relay, Firefox canary).
    NxDomain,
    /// NOERROR with no records (DDR discovery).
    NoData,
    /// Answer with this address (URL-filtering proxy for path-only illegal entries).
    Proxy(IpAddr),
}

/// Built-in names that steer devices away from the school's DNS, and their answers.
const CIRCUMVENTION: [(&str, LocalAnswer, &str); 5] = [
    (
        "use-application-dns.net",
        LocalAnswer::NxDomain,
        "Firefox DoH canary",
    ),
    (
        "mask.icloud.com",
        LocalAnswer::NxDomain,
        "iCloud Private Relay",
    ),
    (
        "mask-h2.icloud.com",
        LocalAnswer::NxDomain,
        "iCloud Private Relay",
    ),
    (
        "mask-canary.icloud.com",
        LocalAnswer::NxDomain,
        "iCloud Private Relay",
    ),
    (
        "_dns.resolver.arpa",
        LocalAnswer::NoData,
        "designated-resolver discovery (RFC 9462)",
    ),
];

/// Everything [`decide`] reads besides the name.
pub struct Context<'a> {
    /// The group's name, for explanations.
    pub group: &'a str,
    /// The group's policy.
    pub policy: &'a GroupPolicy,
    /// The lists in force.
    pub lists: &'a Blocklists,
    /// Now (injected for tests).
    pub now: SystemTime,
    /// Address of a URL-filtering proxy for hosts with path-only illegal entries.
    pub illegal_proxy: Option<IpAddr>,
}

/// The decision for `key` (lower case, no trailing dot) under `cx`.
pub fn decide(cx: &Context<'_>, key: &str) -> Decision {
    let p = cx.policy;
    if let Some(hit) = cx.lists.illegal(key) {
        match (hit.kind, cx.illegal_proxy) {
            (IllegalKind::Domain, _) => {
                return Decision::Block(Block {
                    label: "illegal",
                    categories: 0,
                    severity: Some(Severity::High),
                    detail: hit.to_string(),
                    answer: LocalAnswer::NxDomain,
                })
            }
            (IllegalKind::PathOnly, Some(proxy)) => {
                return Decision::Block(Block {
                    label: "illegal_proxy",
                    categories: 0,
                    severity: Some(Severity::High),
                    detail: format!("{hit}: host sent to the URL-filtering proxy"),
                    answer: LocalAnswer::Proxy(proxy),
                })
            }
            // Only some URLs on this host are listed: DNS cannot block just those.
            (IllegalKind::PathOnly, None) => {}
        }
    }
    if p.anti_circumvention {
        if let Some((name, answer, what)) = CIRCUMVENTION.iter().find(|(n, ..)| *n == key) {
            return Decision::Block(Block {
                label: "circumvention",
                categories: 0,
                severity: Some(Severity::Medium),
                detail: format!(
                    "group `{}`: built-in anti-circumvention rule `{name}` ({what})",
                    cx.group
                ),
                answer: *answer,
            });
        }
    }

    let deny = p.deny.deepest(key);
    let grant = p
        .grants
        .iter()
        .filter(|g| g.expires > cx.now)
        .filter_map(|g| suffix_depth(key, &g.name))
        .max_by_key(|(d, _)| *d);
    let allow = match (p.allow.deepest(key), grant) {
        (Some(a), Some(g)) => Some(if g.0 > a.0 { g } else { a }),
        (a, g) => a.or(g),
    };
    match (deny, allow) {
        (Some((d, entry)), allow) if allow.is_none_or(|(a, _)| d >= a) => {
            return Decision::Block(Block {
                label: "deny",
                categories: 0,
                severity: None,
                detail: format!("group `{}`: deny entry `{entry}`", cx.group),
                answer: LocalAnswer::Group,
            })
        }
        _ => {}
    }

    let mask = p.categories & !Schedule::free_categories(&p.schedules, cx.now);
    if mask != 0 {
        if let Some(hit) = cx.lists.lookup(key, mask) {
            let allow_depth = allow.map(|(d, _)| d).unwrap_or(0);
            let exception = cx.lists.allow_lookup(key, hit.bits);
            let excepted = exception.is_some_and(|e| e.depth >= hit.depth);
            if usize::from(hit.depth) > allow_depth && !excepted {
                let severity = cx.lists.categories_in(hit.bits).map(|c| c.severity).min(); // High < Medium < Low: the most serious category
                let names: Vec<&str> = cx
                    .lists
                    .categories_in(hit.bits)
                    .map(|c| c.id.as_str())
                    .collect();
                return Decision::Block(Block {
                    label: "category",
                    categories: hit.bits,
                    severity,
                    detail: format!(
                        "group `{}`: category {} (list entry `{}`)",
                        cx.group,
                        names.join(", "),
                        cx.lists.matched_key(key, hit.depth)
                    ),
                    answer: LocalAnswer::Group,
                });
            }
        }
    }
    Decision::Allow {
        by: allow.map(|(_, e)| e.to_string()),
    }
}

/// `(depth of name, name)` when `key` is `name` or below it.
fn suffix_depth<'n>(key: &str, name: &'n str) -> Option<(usize, &'n str)> {
    let below = key.len() > name.len()
        && key.ends_with(name)
        && key.as_bytes()[key.len() - name.len() - 1] == b'.';
    (key == name || below).then(|| (name.split('.').count(), name))
}

/// The local answer for a block.
pub fn block_answer(query: &Query, block: &Block, group: BlockAnswer) -> Answer {
    let mut answer = match (block.answer, group) {
        (LocalAnswer::NxDomain, _) | (LocalAnswer::Group, BlockAnswer::NxDomain) => nxdomain(query),
        (LocalAnswer::NoData, _) => nodata(query),
        (LocalAnswer::Group, BlockAnswer::Null) => address(
            query,
            &[IpAddr::from([0, 0, 0, 0]), IpAddr::from([0u16; 8])],
        ),
        (LocalAnswer::Group, BlockAnswer::Address(ip)) | (LocalAnswer::Proxy(ip), _) => {
            address(query, &[ip])
        }
    };
    answer.disposition = Disposition::Blocked;
    let mut answer = answer.with_reason(block.label, block.detail.clone());
    if let Some(reason) = &mut answer.reason {
        reason.severity = block.severity;
    }
    answer
}

/// NXDOMAIN with an SOA whose minimum is the block TTL, so resolvers cache the block.
pub fn nxdomain(query: &Query) -> Answer {
    with_block_soa(query, ResponseCode::NXDomain)
}

fn nodata(query: &Query) -> Answer {
    with_block_soa(query, ResponseCode::NoError)
}

fn with_block_soa(query: &Query, rcode: ResponseCode) -> Answer {
    let sections = Sections {
        authorities: vec![block_soa(&query.name)],
        ..Sections::default()
    };
    Answer::new(rcode, sections, Disposition::Blocked)
}

/// A/AAAA answers from `ips` matching the query type; NODATA for other types.
fn address(query: &Query, ips: &[IpAddr]) -> Answer {
    let mut answer = nodata(query);
    for ip in ips {
        let data = match (query.qtype, ip) {
            (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
            (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
            _ => continue,
        };
        let sections = answer.sections_mut();
        sections.authorities.clear();
        sections
            .answers
            .push(Record::from_rdata(query.name.clone(), BLOCK_TTL, data));
    }
    answer
}

/// The SOA of block answers, built once: its names never change.
static BLOCK_SOA: std::sync::LazyLock<RData> = std::sync::LazyLock::new(|| {
    let name = |s| Name::from_ascii(s).unwrap_or_else(|_| Name::root());
    RData::SOA(SOA::new(
        name("hedgerow.invalid."),
        name("blocked.hedgerow.invalid."),
        1,
        3600,
        600,
        86_400,
        BLOCK_TTL,
    ))
});

fn block_soa(owner: &Name) -> Record {
    Record::from_rdata(owner.clone(), BLOCK_TTL, BLOCK_SOA.clone())
}

/// The policy stage.
pub struct Policy {
    lists: Arc<Blocklists>,
    clock: Clock,
    illegal_proxy: Option<IpAddr>,
}

impl Policy {
    /// A policy stage deciding against `lists`.
    pub fn new(lists: Arc<Blocklists>, clock: Clock, illegal_proxy: Option<IpAddr>) -> Policy {
        Policy {
            lists,
            clock,
            illegal_proxy,
        }
    }

    fn context<'a>(&'a self, group: &'a crate::pipeline::identify::Group) -> Context<'a> {
        Context {
            group: &group.name,
            policy: &group.policy,
            lists: &self.lists,
            now: self.clock.now(),
            illegal_proxy: self.illegal_proxy,
        }
    }
}

impl Stage for Policy {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn handle<'a>(&'a self, query: &'a mut Query, next: Next<'a>) -> StageFuture<'a> {
        Box::pin(async move {
            let Some(group) = query.group.clone() else {
                // identify runs first; a query without a group must not be resolved.
                return Answer::empty(ResponseCode::Refused, Disposition::Refused);
            };
            let cx = self.context(&group);
            if let Decision::Block(block) = decide(&cx, &query.key) {
                return block_answer(query, &block, group.policy.block_answer);
            }
            let mut answer = next.run(query).await;
            // CNAME cloaking: an allowed name must not lead into a blocked one.
            for record in answer.answers() {
                if let RData::CNAME(target) = &record.data {
                    let target_key = crate::pipeline::name_key(&target.0);
                    if let Decision::Block(mut block) = decide(&cx, &target_key) {
                        block.detail = format!("CNAME to `{target_key}`: {}", block.detail);
                        return block_answer(query, &block, group.policy.block_answer);
                    }
                }
            }
            if group.policy.strip_ech && answer.answers().iter().any(has_ech) {
                strip_ech(&mut answer.sections_mut().answers);
            }
            answer
        })
    }
}

/// Whether an HTTPS or SVCB record carries an `ech` parameter.
fn has_ech(record: &Record) -> bool {
    matches!(&record.data, RData::HTTPS(HTTPS(svcb)) | RData::SVCB(svcb)
        if svcb.svc_params.iter().any(|(key, _)| *key == SvcParamKey::EchConfigList))
}

/// Removes the `ech` parameter from HTTPS and SVCB records.
fn strip_ech(records: &mut [Record]) {
    for record in records {
        if let RData::HTTPS(HTTPS(svcb)) | RData::SVCB(svcb) = &mut record.data {
            svcb.svc_params
                .retain(|(key, _)| *key != SvcParamKey::EchConfigList);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::lists::{BlocklistsBuilder, EntryKind, Severity};

    fn lists() -> (Blocklists, u32, u32) {
        let mut b = BlocklistsBuilder::new();
        let games = b.category("games", "Games", Severity::Low).unwrap();
        let porn = b
            .category("pornography", "Pornography", Severity::High)
            .unwrap();
        b.add(games, "roblox.com", EntryKind::Subtree).unwrap();
        b.add(games, "games.example.org", EntryKind::Subtree)
            .unwrap();
        b.add(porn, "bad.example", EntryKind::Subtree).unwrap();
        b.allow(games, "edu.roblox.com", EntryKind::Subtree)
            .unwrap();
        (b.build().unwrap(), games, porn)
    }

    fn decide_for(policy: &GroupPolicy, lists: &Blocklists, key: &str) -> Decision {
        let cx = Context {
            group: "pupils",
            policy,
            lists,
            now: SystemTime::now(),
            illegal_proxy: None,
        };
        decide(&cx, key)
    }

    fn blocked(d: &Decision) -> Option<&'static str> {
        match d {
            Decision::Block(b) => Some(b.label),
            Decision::Allow { .. } => None,
        }
    }

    #[test]
    fn order_deny_allow_categories() {
        let (lists, games, porn) = lists();
        let policy = GroupPolicy {
            deny: NameSet::new(["ads.example.org".to_string()]),
            allow: NameSet::new(["example.org".to_string(), "ok.bad.example".to_string()]),
            categories: games | porn,
            anti_circumvention: true,
            ..Default::default()
        };
        assert_eq!(
            blocked(&decide_for(&policy, &lists, "x.ads.example.org")),
            Some("deny")
        );
        // The category entry is more specific than the allow of example.org.
        assert_eq!(
            blocked(&decide_for(&policy, &lists, "games.example.org")),
            Some("category")
        );
        assert_eq!(
            blocked(&decide_for(&policy, &lists, "www.example.org")),
            None
        );
        assert_eq!(
            blocked(&decide_for(&policy, &lists, "play.roblox.com")),
            Some("category")
        );
        // List-level exception.
        assert_eq!(
            blocked(&decide_for(&policy, &lists, "edu.roblox.com")),
            None
        );
        // A more specific group allow beats the category.
        assert_eq!(
            blocked(&decide_for(&policy, &lists, "ok.bad.example")),
            None
        );
        assert_eq!(
            blocked(&decide_for(&policy, &lists, "www.bad.example")),
            Some("category")
        );
        assert_eq!(
            blocked(&decide_for(&policy, &lists, "use-application-dns.net")),
            Some("circumvention")
        );
        let staff = GroupPolicy::default();
        assert_eq!(
            blocked(&decide_for(&staff, &lists, "play.roblox.com")),
            None
        );
        assert_eq!(
            blocked(&decide_for(&staff, &lists, "use-application-dns.net")),
            None
        );
    }

    #[test]
    fn blocks_carry_a_safeguarding_severity() {
        let (lists, games, porn) = lists();
        let policy = GroupPolicy {
            categories: games | porn,
            deny: NameSet::new(["ads.example.org".to_string()]),
            anti_circumvention: true,
            ..Default::default()
        };
        let severity = |key| match decide_for(&policy, &lists, key) {
            Decision::Block(b) => b.severity,
            Decision::Allow { .. } => panic!("{key} allowed"),
        };
        assert_eq!(severity("www.bad.example"), Some(Severity::High));
        assert_eq!(severity("roblox.com"), Some(Severity::Low));
        assert_eq!(severity("mask.icloud.com"), Some(Severity::Medium));
        assert_eq!(severity("ads.example.org"), None);
    }

    #[test]
    fn grants_allow_until_they_expire() {
        let (lists, games, _) = lists();
        let mut policy = GroupPolicy {
            categories: games,
            grants: vec![Grant {
                name: "roblox.com".into(),
                expires: SystemTime::now() + Duration::from_secs(60),
            }],
            ..Default::default()
        };
        assert_eq!(
            blocked(&decide_for(&policy, &lists, "www.roblox.com")),
            None
        );
        policy.grants[0].expires = SystemTime::now() - Duration::from_secs(1);
        assert_eq!(
            blocked(&decide_for(&policy, &lists, "www.roblox.com")),
            Some("category")
        );
    }
}
