//! Policy: the block/allow decision for a client's group, in one readable function
//! ([`decide`]), and the answers that carry it out.
//!
//! Order (DfE: the illegal tier cannot be disabled, overridden or altered by anyone):
//!
//! 1. the illegal-content tier, for everyone, always;
//! 2. built-in anti-circumvention names (Firefox canary, iCloud Private Relay, DDR);
//! 3. the group's deny and allow entries and its unexpired allow grants (the live table in
//!    [`super::grants`], read once per query) — the most specific entry wins, deny on a tie;
//! 4. the group's blocked categories (less any scheduled free time), unless a list-level
//!    exception (`@@`) or a group allow entry at least as specific says otherwise.
//!
//! After the upstream answers, CNAME targets get the same decision (CNAME cloaking), and
//! `ech` is stripped from HTTPS records for groups that ask for it.

use std::{net::IpAddr, sync::Arc, time::SystemTime};

use hickory_proto::{
    op::ResponseCode,
    rr::{
        rdata::{svcb::SvcParamKey, A, AAAA, HTTPS, SOA},
        Name, RData, Record, RecordType,
    },
};

use crate::{
    clock::Clock,
    config::BlockAnswer,
    event::{BlockReason, Severity},
    lists::{Blocklists, IllegalKind},
    pipeline::{
        grants::{Grants, GroupGrants, LiveGrants},
        group::{Group, GroupPolicy},
        Answer, Disposition, Next, Query, Reason, Sections, Stage, StageFuture,
    },
    schedule::Schedule,
};

/// TTL of block answers and of their SOA minimum (how long devices cache a block).
pub const BLOCK_TTL: u32 = 300;

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

/// A block decision: why, and how to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Why, complete (kind, plain-words detail, severity, category).
    pub reason: Reason,
    /// Category bits involved (0 when a deny entry or built-in rule decided).
    pub categories: u32,
    /// How to answer.
    pub answer: LocalAnswer,
}

impl Block {
    fn new(
        kind: BlockReason,
        detail: String,
        severity: Option<Severity>,
        answer: LocalAnswer,
    ) -> Block {
        Block {
            reason: Reason {
                kind,
                detail,
                severity,
                category: None,
            },
            categories: 0,
            answer,
        }
    }
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

/// One built-in name that steers devices away from the school's DNS.
struct Circumvention {
    name: &'static str,
    answer: LocalAnswer,
    what: &'static str,
    /// Private Relay is something a person switched on: a breach for the DSL. Firefox asks
    /// its canary and operating systems ask for DDR on their own, many times a day, so those
    /// are answered but are nobody's attempt.
    severity: Option<Severity>,
}

/// Built-in names that steer devices away from the school's DNS, and their answers.
const CIRCUMVENTION: [Circumvention; 5] = [
    Circumvention {
        name: "use-application-dns.net",
        answer: LocalAnswer::NxDomain,
        what: "Firefox DoH canary",
        severity: None,
    },
    Circumvention {
        name: "mask.icloud.com",
        answer: LocalAnswer::NxDomain,
        what: "iCloud Private Relay",
        severity: Some(Severity::Medium),
    },
    Circumvention {
        name: "mask-h2.icloud.com",
        answer: LocalAnswer::NxDomain,
        what: "iCloud Private Relay",
        severity: Some(Severity::Medium),
    },
    Circumvention {
        name: "mask-canary.icloud.com",
        answer: LocalAnswer::NxDomain,
        what: "iCloud Private Relay",
        severity: Some(Severity::Medium),
    },
    Circumvention {
        name: "_dns.resolver.arpa",
        answer: LocalAnswer::NoData,
        what: "designated-resolver discovery (RFC 9462)",
        severity: None,
    },
];

/// The built-in anti-circumvention names with their local answers and what each is, in
/// plain words: what the filtering checks ask to see that the rules answer as designed.
pub fn circumvention_names() -> impl Iterator<Item = (&'static str, LocalAnswer, &'static str)> {
    CIRCUMVENTION.iter().map(|c| (c.name, c.answer, c.what))
}

/// Everything [`decide`] reads besides the name.
pub struct Context<'a> {
    /// The group's name, for explanations.
    pub group: &'a str,
    /// The group's policy.
    pub policy: &'a GroupPolicy,
    /// The group's time-limited allow grants, if it has any.
    pub grants: Option<&'a GroupGrants>,
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
                return Decision::Block(Block::new(
                    BlockReason::Illegal,
                    hit.to_string(),
                    Some(Severity::High),
                    LocalAnswer::NxDomain,
                ))
            }
            (IllegalKind::PathOnly, Some(proxy)) => {
                return Decision::Block(Block::new(
                    BlockReason::IllegalProxy,
                    format!("{hit}: host sent to the URL-filtering proxy"),
                    Some(Severity::High),
                    LocalAnswer::Proxy(proxy),
                ))
            }
            // Only some URLs on this host are listed: DNS cannot block just those.
            (IllegalKind::PathOnly, None) => {}
        }
    }
    if p.anti_circumvention {
        if let Some(c) = CIRCUMVENTION.iter().find(|c| c.name == key) {
            return Decision::Block(Block::new(
                BlockReason::Circumvention,
                format!(
                    "group `{}`: built-in anti-circumvention rule `{}` ({})",
                    cx.group, c.name, c.what
                ),
                c.severity,
                c.answer,
            ));
        }
    }

    let deny = p.deny.deepest(key);
    // A grant lapses on time by itself: its expiry is compared with this query's time.
    let grant = cx.grants.and_then(|g| g.deepest(key, cx.now));
    let allow = match (p.allow.deepest(key), grant) {
        (Some(a), Some(g)) => Some(if g.0 > a.0 { g } else { a }),
        (a, g) => a.or(g),
    };
    match (deny, allow) {
        (Some((d, entry)), allow) if allow.is_none_or(|(a, _)| d >= a) => {
            return Decision::Block(Block::new(
                BlockReason::Deny,
                format!("group `{}`: deny entry `{entry}`", cx.group),
                None,
                LocalAnswer::Group,
            ))
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
                // One pass over the hit's categories, straight into one string, and the list
                // entry a slice of the key: this runs on the DNS thread for every blocked
                // query (callgrind: the reason's text was ~1,600 of its instructions).
                let mut severity: Option<Severity> = None;
                let mut category = String::with_capacity(32);
                for c in cx.lists.categories_in(hit.bits) {
                    // High < Medium < Low: the most serious category.
                    severity = Some(severity.map_or(c.severity, |s| s.min(c.severity)));
                    if !category.is_empty() {
                        category.push_str(", ");
                    }
                    category.push_str(&c.id);
                }
                return Decision::Block(Block {
                    reason: Reason {
                        kind: BlockReason::Category,
                        detail: format!(
                            "group `{}`: category {category} (list entry `{}`)",
                            cx.group,
                            cx.lists.matched_part(key, hit.depth)
                        ),
                        severity,
                        category: Some(category),
                    },
                    categories: hit.bits,
                    answer: LocalAnswer::Group,
                });
            }
        }
    }
    Decision::Allow {
        by: allow.map(|(_, e)| e.to_string()),
    }
}

/// [`decide`], failing closed: a lookup that panics (list data damaged in a way that passed
/// every check at load) blocks the name instead of letting the query through unfiltered.
/// Returns whether it failed, for counting.
pub fn decide_or_block(cx: &Context<'_>, key: &str) -> (Decision, bool) {
    decide_guarded(|| decide(cx, key), cx.group)
}

/// Runs `decide`; a panic inside becomes a block of the group's kind.
fn decide_guarded(decide: impl FnOnce() -> Decision, group: &str) -> (Decision, bool) {
    // Unwind safety: the lists are immutable and nothing is left half-changed by a lookup.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(decide)) {
        Ok(decision) => (decision, false),
        Err(_) => {
            tracing::error!(
                group,
                "list lookup failed (damaged compiled lists?): name blocked to be safe; recompile the lists"
            );
            let block = Block::new(
                BlockReason::Category,
                format!(
                    "group `{group}`: the list lookup failed, so the name is blocked to be safe"
                ),
                None,
                LocalAnswer::Group,
            );
            (Decision::Block(block), true)
        }
    }
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
    // Designated-resolver discovery is asked by operating systems on their own: answering it
    // locally blocks nothing a person asked for.
    answer.disposition = match block.answer {
        LocalAnswer::NoData => Disposition::Local,
        _ => Disposition::Blocked,
    };
    answer.reason = Some(block.reason.clone());
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
    /// Shared with the wiring, which replaces the snapshot when grants change.
    grants: Arc<LiveGrants>,
    clock: Clock,
    illegal_proxy: Option<IpAddr>,
    /// Counts lookups that failed and were blocked.
    failures: Option<prometheus::IntCounter>,
}

impl Policy {
    /// A policy stage deciding against `lists` and the live `grants`.
    pub fn new(
        lists: Arc<Blocklists>,
        grants: Arc<LiveGrants>,
        clock: Clock,
        illegal_proxy: Option<IpAddr>,
    ) -> Policy {
        Policy {
            lists,
            grants,
            clock,
            illegal_proxy,
            failures: None,
        }
    }

    /// Counts failed (and so blocked) lookups on `counter`.
    pub fn with_failure_counter(mut self, counter: prometheus::IntCounter) -> Policy {
        self.failures = Some(counter);
        self
    }

    fn decide(&self, cx: &Context<'_>, key: &str) -> Decision {
        let (decision, failed) = decide_or_block(cx, key);
        if failed {
            if let Some(c) = &self.failures {
                c.inc();
            }
        }
        decision
    }

    fn context<'a>(&'a self, group: &'a Group, grants: Option<&'a Grants>) -> Context<'a> {
        Context {
            group: &group.name,
            policy: &group.policy,
            grants: grants.and_then(|g| g.group(&group.name)),
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
            // The grants snapshot is held only while deciding, never across the await below
            // (a guard is a short-lived borrow of the table).
            let decision = {
                let grants = self.grants.load();
                self.decide(
                    &self.context(&group, grants.as_deref().map(Arc::as_ref)),
                    &query.key,
                )
            };
            if let Decision::Block(block) = decision {
                return block_answer(query, &block, group.policy.block_answer);
            }
            let mut answer = next.run(query).await;
            // CNAME cloaking: an allowed name must not lead into a blocked one.
            if answer
                .answers()
                .iter()
                .any(|r| matches!(r.data, RData::CNAME(_)))
            {
                let grants = self.grants.load();
                let cx = self.context(&group, grants.as_deref().map(Arc::as_ref));
                for record in answer.answers() {
                    if let RData::CNAME(target) = &record.data {
                        let target_key = crate::names::key(&target.0);
                        if let Decision::Block(mut block) = self.decide(&cx, &target_key) {
                            // An illegal-tier target is never named.
                            if !block.reason.kind.is_illegal_tier() {
                                block.reason.detail =
                                    format!("CNAME to `{target_key}`: {}", block.reason.detail);
                            }
                            return block_answer(query, &block, group.policy.block_answer);
                        }
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
    use crate::{
        lists::{
            illegal::{import_illegal, IllegalKey, IllegalSet},
            BlocklistsBuilder, EntryKind,
        },
        pipeline::{
            grants::{Grant, Grants},
            group::NameSet,
        },
    };

    #[test]
    fn a_lookup_that_panics_blocks() {
        let (decision, failed) = decide_guarded(|| panic!("damaged transducer"), "pupils");
        assert!(failed);
        match decision {
            Decision::Block(b) => {
                assert_eq!(b.reason.kind, BlockReason::Category);
                assert_eq!(b.answer, LocalAnswer::Group);
                assert!(
                    b.reason.detail.contains("lookup failed"),
                    "{}",
                    b.reason.detail
                );
            }
            other => panic!("{other:?}"),
        }
        let (decision, failed) = decide_guarded(|| Decision::Allow { by: None }, "pupils");
        assert_eq!((decision, failed), (Decision::Allow { by: None }, false));
    }

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
        decide_with(policy, None, lists, key)
    }

    fn decide_with(
        policy: &GroupPolicy,
        grants: Option<&Grants>,
        lists: &Blocklists,
        key: &str,
    ) -> Decision {
        let cx = Context {
            group: "pupils",
            policy,
            grants: grants.and_then(|g| g.group("pupils")),
            lists,
            now: SystemTime::now(),
            illegal_proxy: None,
        };
        decide(&cx, key)
    }

    fn grant(name: &str, expires: SystemTime) -> Grants {
        Grants::new([Grant {
            group: "pupils".into(),
            name: name.into(),
            expires,
        }])
    }

    fn blocked(d: &Decision) -> Option<&'static str> {
        match d {
            Decision::Block(b) => Some(b.reason.kind.label()),
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
            Decision::Block(b) => b.reason.severity,
            Decision::Allow { .. } => panic!("{key} allowed"),
        };
        assert_eq!(severity("www.bad.example"), Some(Severity::High));
        assert_eq!(severity("roblox.com"), Some(Severity::Low));
        assert_eq!(severity("mask.icloud.com"), Some(Severity::Medium));
        // Asked by browsers and operating systems on their own: nobody's attempt.
        assert_eq!(severity("use-application-dns.net"), None);
        assert_eq!(severity("_dns.resolver.arpa"), None);
        assert_eq!(severity("ads.example.org"), None);
    }

    #[test]
    fn grants_allow_until_they_expire() {
        let (lists, games, _) = lists();
        let policy = GroupPolicy {
            categories: games,
            ..Default::default()
        };
        let live = grant("roblox.com", SystemTime::now() + Duration::from_secs(60));
        assert_eq!(
            blocked(&decide_with(&policy, Some(&live), &lists, "www.roblox.com")),
            None
        );
        let lapsed = grant("roblox.com", SystemTime::now() - Duration::from_secs(1));
        assert_eq!(
            blocked(&decide_with(
                &policy,
                Some(&lapsed),
                &lists,
                "www.roblox.com"
            )),
            Some("category")
        );
        // Another group's grant does nothing for this one.
        let staff = Grants::new([Grant {
            group: "staff".into(),
            name: "roblox.com".into(),
            expires: SystemTime::now() + Duration::from_secs(60),
        }]);
        assert_eq!(
            blocked(&decide_with(
                &policy,
                Some(&staff),
                &lists,
                "www.roblox.com"
            )),
            Some("category")
        );
    }

    #[test]
    fn a_grant_never_unblocks_the_illegal_tier() {
        let key = IllegalKey::from_bytes(&[7u8; 32]).unwrap();
        let import = import_illegal(&b"forbidden.roblox.com\n"[..], &key).unwrap();
        let (lists, games, _) = lists();
        let lists = lists.with_illegal(IllegalSet::from_import(&import, key).unwrap());
        let policy = GroupPolicy {
            categories: games,
            ..Default::default()
        };
        let later = SystemTime::now() + Duration::from_secs(3600);
        // Granted at the listed name, above it, and below it.
        for (granted, asked) in [
            ("forbidden.roblox.com", "forbidden.roblox.com"),
            ("roblox.com", "forbidden.roblox.com"),
            ("www.forbidden.roblox.com", "www.forbidden.roblox.com"),
        ] {
            let grants = grant(granted, later);
            assert_eq!(
                blocked(&decide_with(&policy, Some(&grants), &lists, asked)),
                Some("illegal"),
                "a grant of {granted} must not unblock {asked}"
            );
        }
        // The same grant does unblock the category entry beside the listed name.
        let grants = grant("roblox.com", later);
        assert_eq!(
            blocked(&decide_with(&policy, None, &lists, "play.roblox.com")),
            Some("category")
        );
        assert_eq!(
            blocked(&decide_with(
                &policy,
                Some(&grants),
                &lists,
                "play.roblox.com"
            )),
            None
        );
    }
}
