//! The filtering checks: does filtering work, for each group, as a device of that group gets
//! it? (DfE filtering standard: schools check their filtering per user group, and the checks
//! are completed and recorded.)
//!
//! For every configured group a run picks an address inside the group and asks, through the
//! very [`Pipeline`] the listeners use (so upstream resolution, the cache, SafeSearch rewrites
//! and the group's block answer are exactly what a device gets):
//!
//! - up to [`PER_CATEGORY`] names of each category the group blocks now (less scheduled free
//!   time), sampled from the lists in force ([`Blocklists::sample`]) among names the group's
//!   own allow entries and the lists' exceptions leave blocked: each must be blocked, with the
//!   group's block answer;
//! - the names every group should reach (`[checks] allowed`): each must resolve;
//! - Google, YouTube and Bing, when the group locks them: each must be rewritten to its safe
//!   target;
//! - the built-in anti-circumvention names, when the group has them on: each must be answered
//!   locally as designed;
//! - the illegal-content test entry (`[checks] illegal_probe`): it must be blocked. It is
//!   asked, never shown: its item carries [`WITHHELD`], and nothing here logs it. With a tier
//!   loaded and no test entry, the item is recorded as not tested (it is not a failure, and
//!   it says so).
//!
//! Check queries carry [`Origin::Check`]: the record stage leaves them out of the metrics and
//! the query log (so they open no breach and appear in no report), and the rate limit does
//! not charge them to the address they borrow.
//!
//! This module decides and asks; it imports configuration, lists and pipeline only. `app.rs`
//! records the result in the store and sends the alert.

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RData, RecordType},
};

use crate::{
    clock::{unix_secs, Clock},
    config::{BlockAnswer, Config, GroupConfig, YouTubeMode},
    event::{BlockReason, Disposition, Transport, WITHHELD},
    lists::{Blocklists, IllegalKind},
    pipeline::{
        chain,
        group::Group,
        identify::Identify,
        policy::{circumvention_names, decide, Context, Decision, LocalAnswer},
        safesearch::{decide_for_group, Decision as SafeSearch, Target},
        Answer, Origin, Pipeline, Query,
    },
    schedule::Schedule,
};

/// Names sampled from each blocked category per group.
pub const PER_CATEGORY: usize = 3;

/// Search engines whose SafeSearch rewrite a run checks, when the group locks them.
const SAFESEARCH_PROBES: [&str; 3] = ["www.google.com", "www.youtube.com", "www.bing.com"];

/// Host addresses tried per network when looking for one that identifies as the group.
const HOSTS_TRIED: u128 = 16;

/// Why a run could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The configuration does not fit the lists (unknown categories).
    #[error("{}", .0.join("\n"))]
    Policy(Vec<String>),
    /// Metric handles for the groups could not be made.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The planning task was lost (the runtime is shutting down).
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What an item tests (the store keeps its own copy of this enum; `app.rs` maps one to the
/// other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A name from a blocked category is blocked.
    Blocked,
    /// A name the group should reach resolves.
    Allowed,
    /// A search engine is rewritten to its safe mode.
    SafeSearch,
    /// An anti-circumvention name is answered as designed.
    Canary,
    /// The illegal-content test entry is blocked.
    Illegal,
}

/// One thing asked as one group, and what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The group.
    pub group: String,
    /// What it tests.
    pub kind: Kind,
    /// The category a [`Kind::Blocked`] name comes from.
    pub category: Option<String>,
    /// The name asked, or [`WITHHELD`] for the illegal-content test entry.
    pub probe: String,
    /// What the group should get, in plain words.
    pub expected: String,
    /// What it got, in plain words.
    pub observed: String,
    /// Whether it got what it should.
    pub passed: bool,
    /// `false` when there was nothing to ask with (no test entry for a loaded illegal-content
    /// tier, no name of a category left to sample): neither passed nor failed.
    pub tested: bool,
}

impl Item {
    /// Tested and not passed.
    pub fn failed(&self) -> bool {
        self.tested && !self.passed
    }
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// When the first query was asked.
    pub started: SystemTime,
    /// When the last answer came back.
    pub finished: SystemTime,
    /// Every item, group by group, in the order asked.
    pub items: Vec<Item>,
}

/// What one probe expects.
#[derive(Clone, Copy)]
enum Expect {
    /// Blocked with the group's block answer.
    Blocked(BlockAnswer),
    /// Resolved to addresses by the upstreams (or the cache).
    Resolves,
    /// Rewritten to this SafeSearch target.
    Rewritten(Target),
    /// Answered locally as designed (a circumvention name).
    Local(LocalAnswer),
    /// Blocked by the illegal-content tier.
    Illegal,
}

impl Expect {
    fn describe(self) -> String {
        match self {
            Expect::Blocked(answer) => format!("blocked ({})", block_answer_words(answer)),
            Expect::Resolves => "resolved".into(),
            Expect::Rewritten(target) => format!("rewritten to {target}"),
            Expect::Local(LocalAnswer::NoData) => "answered locally (no data)".into(),
            Expect::Local(_) => "answered locally (NXDOMAIN)".into(),
            Expect::Illegal => "blocked".into(),
        }
    }
}

fn block_answer_words(answer: BlockAnswer) -> String {
    match answer {
        BlockAnswer::NxDomain => "NXDOMAIN".into(),
        BlockAnswer::Null => "answered 0.0.0.0".into(),
        BlockAnswer::Address(ip) => format!("block page {ip}"),
    }
}

/// One question to ask. Not `Debug`: the illegal-content test entry is in `name`.
struct Probe {
    kind: Kind,
    category: Option<String>,
    /// The name asked (lower case, no trailing dot).
    name: String,
    qtype: RecordType,
    expect: Expect,
}

impl Probe {
    /// The name as an item shows it.
    fn shown(&self) -> String {
        match self.kind {
            Kind::Illegal => WITHHELD.to_string(),
            _ => self.name.clone(),
        }
    }
}

/// One group's questions.
struct GroupPlan {
    group: String,
    /// The address asked from; `None` when no address identifies as this group.
    client: Option<IpAddr>,
    probes: Vec<Probe>,
    /// Items decided without asking (nothing to ask with).
    untested: Vec<Item>,
}

/// What a run will ask, group by group: made off the runtime's workers (sampling reads the
/// lists), asked by [`execute`]. Not `Debug`: it holds the illegal-content test entry.
pub struct Plan {
    groups: Vec<GroupPlan>,
}

/// A stable 64-bit hash of a group's name (FNV-1a), so each group samples its own names.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An address that identifies as `group`: a host of one of its networks, else a device
/// pinned to it by address.
fn client_for(config: &Config, g: &GroupConfig, identify: &Identify) -> Option<IpAddr> {
    let is_ours = |ip: IpAddr| {
        identify
            .client(ip)
            .is_some_and(|c| *c.group.name == *g.name)
    };
    for net in &g.networks {
        let hosts: Vec<IpAddr> = match net {
            ipnet::IpNet::V4(n) => {
                let base = u128::from(u32::from(n.network()));
                let size = 1u128 << (32 - u32::from(n.prefix_len()));
                let first = u128::from(size > 2);
                (first..size.min(first + HOSTS_TRIED))
                    .filter_map(|i| u32::try_from(base + i).ok())
                    .map(|a| IpAddr::from(std::net::Ipv4Addr::from(a)))
                    .collect()
            }
            ipnet::IpNet::V6(n) => {
                let base = u128::from(n.network());
                let bits = 128 - u32::from(n.prefix_len());
                let size = 1u128.checked_shl(bits).unwrap_or(u128::MAX);
                let first = u128::from(size > 2);
                (first..size.min(first + HOSTS_TRIED))
                    .map(|i| IpAddr::from(std::net::Ipv6Addr::from(base | i)))
                    .collect()
            }
        };
        if let Some(ip) = hosts.into_iter().find(|&ip| is_ours(ip)) {
            return Some(ip);
        }
    }
    config
        .devices
        .iter()
        .filter(|d| d.group == g.name)
        .filter_map(|d| d.ip)
        .find(|&ip| is_ours(ip))
}

/// Plans a run for every group of `config` against `lists`, at `now` (schedules and the
/// sampling seed are read from it). Reads the lists: call it off the runtime's workers.
pub fn plan(config: &Config, lists: &Blocklists, now: SystemTime) -> Result<Plan, CheckError> {
    // Handles of a one-off registry: planning answers no query.
    let metrics = crate::metrics::Metrics::new()?;
    let groups = chain::groups(config, lists, &metrics).map_err(CheckError::Policy)?;
    let identify =
        Identify::new(&groups).with_devices(chain::devices(config, &groups), Default::default());
    let day = unix_secs(now) / 86_400;
    let mut plans = Vec::new();
    for (g, (group, _)) in config.groups.iter().zip(&groups) {
        let client = client_for(config, g, &identify);
        let mut plan = plan_group(config, lists, g, group, day, now);
        plan.client = client;
        plans.push(plan);
    }
    Ok(Plan { groups: plans })
}

fn plan_group(
    config: &Config,
    lists: &Blocklists,
    g: &GroupConfig,
    group: &Group,
    day: u64,
    now: SystemTime,
) -> GroupPlan {
    let cx = Context {
        group: &group.name,
        policy: &group.policy,
        // The standing policy: a name a grant unblocks for a while is a deliberate
        // exception, and sampling one from a list of thousands is unlikely.
        grants: None,
        lists,
        now,
        illegal_proxy: config.lists.illegal_proxy,
    };
    let mut probes = Vec::new();
    let mut untested = Vec::new();
    let block_qtype = match g.block_answer {
        BlockAnswer::Address(IpAddr::V6(_)) => RecordType::AAAA,
        _ => RecordType::A,
    };

    // Categories blocked now: scheduled free time (games at lunch) is not a failure.
    let free = Schedule::free_categories(&group.policy.schedules, now);
    for id in &g.block_categories {
        let Some(bit) = lists.category_bit(id) else {
            continue;
        };
        if bit & free != 0 {
            continue;
        }
        let seed = day ^ name_hash(&g.name);
        let names = lists.sample(bit, PER_CATEGORY, seed, |name| {
            matches!(decide(&cx, name), Decision::Block(b)
                if b.reason.kind == BlockReason::Category
                    && b.categories & bit != 0
                    && b.answer == LocalAnswer::Group)
        });
        if names.is_empty() {
            untested.push(Item {
                group: g.name.clone(),
                kind: Kind::Blocked,
                category: Some(id.clone()),
                probe: "(none)".into(),
                expected: Expect::Blocked(g.block_answer).describe(),
                observed: "not tested: the lists in force have no name of this category that the group's allow entries leave blocked".into(),
                passed: false,
                tested: false,
            });
        }
        for name in names {
            probes.push(Probe {
                kind: Kind::Blocked,
                category: Some(id.clone()),
                name,
                qtype: block_qtype,
                expect: Expect::Blocked(g.block_answer),
            });
        }
    }

    for name in &config.checks.allowed {
        probes.push(Probe {
            kind: Kind::Allowed,
            category: None,
            name: name.clone(),
            qtype: RecordType::A,
            expect: Expect::Resolves,
        });
    }

    for name in SAFESEARCH_PROBES {
        let locked = match name {
            "www.youtube.com" => g.safesearch.youtube != YouTubeMode::Off,
            _ => true,
        };
        if !locked || matches!(decide(&cx, name), Decision::Block(_)) {
            // A name the group blocks outright is safe anyway; the block is checked elsewhere.
            continue;
        }
        if let SafeSearch::Rewrite { target, .. } = decide_for_group(group, name) {
            probes.push(Probe {
                kind: Kind::SafeSearch,
                category: None,
                name: name.to_string(),
                qtype: RecordType::A,
                expect: Expect::Rewritten(target),
            });
        }
    }

    if g.anti_circumvention {
        for (name, answer, _) in circumvention_names() {
            probes.push(Probe {
                kind: Kind::Canary,
                category: None,
                name: name.to_string(),
                // Designated-resolver discovery is asked for SVCB records.
                qtype: match answer {
                    LocalAnswer::NoData => RecordType::SVCB,
                    _ => RecordType::A,
                },
                expect: Expect::Local(answer),
            });
        }
    }

    match (&config.checks.illegal_probe, lists.has_illegal_tier()) {
        (Some(probe), _) => probes.push(Probe {
            kind: Kind::Illegal,
            category: None,
            name: probe.name().to_string(),
            qtype: RecordType::A,
            expect: Expect::Illegal,
        }),
        (None, true) => untested.push(Item {
            group: g.name.clone(),
            kind: Kind::Illegal,
            category: None,
            probe: WITHHELD.into(),
            expected: Expect::Illegal.describe(),
            observed: "not tested: no test entry configured (set [checks] illegal_probe to a test entry the IWF gives its members)".into(),
            passed: false,
            tested: false,
        }),
        (None, false) => {}
    }

    GroupPlan {
        group: g.name.clone(),
        client: None,
        probes,
        untested,
    }
}

/// Asks every planned question through `pipeline`, as the group's address, and judges each
/// answer. A group's questions go out together; groups one after the other.
pub async fn execute(plan: Plan, pipeline: &Pipeline, lists: &Blocklists, clock: &Clock) -> Report {
    let started = clock.now();
    let mut items = Vec::new();
    for g in plan.groups {
        let Some(client) = g.client else {
            items.extend(g.probes.iter().map(|p| Item {
                group: g.group.clone(),
                kind: p.kind,
                category: p.category.clone(),
                probe: p.shown(),
                expected: p.expect.describe(),
                observed: "not asked: no address of this group's networks or devices is identified as this group (another group's network covers them)".into(),
                passed: false,
                tested: true,
            }));
            items.extend(g.untested);
            continue;
        };
        let asked = g.probes.iter().map(|p| ask(pipeline, client, p));
        let answers = futures_util::future::join_all(asked).await;
        for (p, answer) in g.probes.iter().zip(answers) {
            let (passed, observed) = match answer {
                Some(answer) => judge(p, &answer, lists),
                None => (false, "not asked: not a valid DNS name".to_string()),
            };
            items.push(Item {
                group: g.group.clone(),
                kind: p.kind,
                category: p.category.clone(),
                probe: p.shown(),
                expected: p.expect.describe(),
                observed,
                passed,
                tested: true,
            });
        }
        items.extend(g.untested);
    }
    Report {
        started,
        finished: clock.now().max(started),
        items,
    }
}

/// Plans (on the blocking pool) and executes a run.
pub async fn run(
    config: Arc<Config>,
    lists: Arc<Blocklists>,
    pipeline: &Pipeline,
    clock: &Clock,
) -> Result<Report, CheckError> {
    let now = clock.now();
    let plan = {
        let (config, lists) = (config.clone(), lists.clone());
        tokio::task::spawn_blocking(move || plan(&config, &lists, now)).await??
    };
    Ok(execute(plan, pipeline, &lists, clock).await)
}

/// One question through the whole chain, as a device at `client` would ask it.
async fn ask(pipeline: &Pipeline, client: IpAddr, probe: &Probe) -> Option<Answer> {
    let name = Name::from_ascii(format!("{}.", probe.name)).ok()?;
    let mut query = Query::new(client, Transport::Udp, name, probe.qtype);
    query.origin = Origin::Check;
    Some(pipeline.resolve(&mut query).await)
}

/// The A/AAAA addresses of an answer.
fn addresses(answer: &Answer) -> Vec<IpAddr> {
    answer
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// The first CNAME target of an answer, without the trailing dot.
fn cname_target(answer: &Answer) -> Option<String> {
    answer.answers().iter().find_map(|r| match &r.data {
        RData::CNAME(c) => Some(crate::names::key(&c.0)),
        _ => None,
    })
}

/// "192.0.2.1, 192.0.2.2" (at most three), or "no records".
fn address_words(ips: &[IpAddr]) -> String {
    if ips.is_empty() {
        return "no records".into();
    }
    let mut words: Vec<String> = ips.iter().take(3).map(|ip| ip.to_string()).collect();
    if ips.len() > 3 {
        words.push(format!("{} more", ips.len() - 3));
    }
    words.join(", ")
}

/// The shape of a local answer: "NXDOMAIN", "no data", "answered 0.0.0.0".
fn shape(answer: &Answer, ips: &[IpAddr]) -> String {
    match (answer.rcode, ips.is_empty()) {
        (ResponseCode::NXDomain, _) => "NXDOMAIN".into(),
        (ResponseCode::NoError, true) => "no data".into(),
        (ResponseCode::NoError, false) => format!("answered {}", address_words(ips)),
        (rcode, _) => rcode.to_string(),
    }
}

/// What came back, in plain words. `withhold`: say nothing that could identify the name
/// (no addresses, no rule text) — for the illegal-content test entry.
fn observed(answer: &Answer, withhold: bool) -> String {
    let ips = addresses(answer);
    let ips_shown = if withhold { Vec::new() } else { ips.clone() };
    let note = answer.note.as_deref().unwrap_or("no reason given");
    match answer.disposition {
        Disposition::Blocked => match answer.reason.as_ref().map(|r| r.kind) {
            Some(BlockReason::IllegalProxy) => {
                "sent to the URL-filtering proxy (illegal-content list)".into()
            }
            Some(BlockReason::Circumvention) => {
                format!("answered locally ({})", shape(answer, &ips))
            }
            // A block's addresses are Hedgerow's own (0.0.0.0, a block page): safe to show.
            _ => format!("blocked ({})", shape(answer, &ips)),
        },
        Disposition::Local => format!("answered locally ({})", shape(answer, &ips)),
        Disposition::SafeSearch => match cname_target(answer) {
            Some(target) if ips_shown.is_empty() => format!("rewritten to {target} (no address)"),
            Some(target) => format!("rewritten to {target} ({})", address_words(&ips_shown)),
            None => format!("rewritten to {}", address_words(&ips_shown)),
        },
        Disposition::Forwarded | Disposition::Cached => {
            let from = if answer.disposition == Disposition::Cached {
                " from the cache"
            } else {
                ""
            };
            match (answer.rcode, ips.is_empty()) {
                (ResponseCode::NoError, false) if withhold => {
                    format!("resolved{from}: NOT blocked")
                }
                (ResponseCode::NoError, false) => {
                    format!("resolved ({}){from}", address_words(&ips))
                }
                (ResponseCode::NoError, true) => format!("no addresses (NOERROR, no data){from}"),
                (ResponseCode::NXDomain, _) => {
                    format!("does not exist (NXDOMAIN from the upstream){from}")
                }
                (rcode, _) => format!("{rcode} from the upstream{from}"),
            }
        }
        Disposition::Stale => format!(
            "answered from an expired cache entry ({}): the upstreams did not answer",
            address_words(&ips_shown)
        ),
        Disposition::ServFail => format!("no answer: {note} (SERVFAIL)"),
        Disposition::Refused | Disposition::RateLimited => format!("refused: {note}"),
    }
}

/// Whether `answer` is what `probe` expects, and what it was in plain words.
fn judge(probe: &Probe, answer: &Answer, lists: &Blocklists) -> (bool, String) {
    let ips = addresses(answer);
    let passed = match probe.expect {
        Expect::Blocked(block) => {
            answer.disposition == Disposition::Blocked
                && match block {
                    BlockAnswer::NxDomain => answer.rcode == ResponseCode::NXDomain,
                    BlockAnswer::Null => {
                        answer.rcode == ResponseCode::NoError
                            && !ips.is_empty()
                            && ips.iter().all(|ip| ip.is_unspecified())
                    }
                    BlockAnswer::Address(page) => ips == [page],
                }
        }
        Expect::Resolves => {
            matches!(
                answer.disposition,
                Disposition::Forwarded | Disposition::Cached
            ) && answer.rcode == ResponseCode::NoError
                && !ips.is_empty()
        }
        Expect::Rewritten(Target::Cname(target)) => {
            answer.disposition == Disposition::SafeSearch
                && answer.rcode == ResponseCode::NoError
                && cname_target(answer).as_deref() == Some(target.trim_end_matches('.'))
                && !ips.is_empty()
        }
        Expect::Rewritten(Target::Address(ip)) => {
            answer.disposition == Disposition::SafeSearch && ips == [IpAddr::V4(ip)]
        }
        Expect::Local(LocalAnswer::NoData) => {
            answer.disposition == Disposition::Local
                && answer.rcode == ResponseCode::NoError
                && answer.answers().is_empty()
        }
        Expect::Local(_) => {
            answer.disposition == Disposition::Blocked
                && answer.reason.as_ref().map(|r| r.kind) == Some(BlockReason::Circumvention)
                && answer.rcode == ResponseCode::NXDomain
        }
        Expect::Illegal => {
            answer.disposition == Disposition::Blocked
                && answer
                    .reason
                    .as_ref()
                    .is_some_and(|r| r.kind.is_illegal_tier())
        }
    };
    let mut words = observed(answer, probe.kind == Kind::Illegal);
    if let (false, Kind::Blocked | Kind::Allowed | Kind::SafeSearch | Kind::Canary) =
        (passed, probe.kind)
    {
        // Why it went wrong: the rule that blocked, or how the answer was made.
        if let Some(reason) = &answer.reason {
            words.push_str(&format!(": {}", reason.detail));
        } else if let (Some(note), Disposition::SafeSearch) = (&answer.note, answer.disposition) {
            words.push_str(&format!(": {note}"));
        }
    }
    if probe.kind == Kind::Illegal && !passed {
        // Say why, without naming the entry.
        words.push_str(match lists.illegal(&probe.name).map(|h| h.kind) {
            _ if !lists.has_illegal_tier() => {
                "; no illegal-content tier is loaded (set lists.illegal_list)"
            }
            None => "; the test entry is not on the illegal-content list in force",
            Some(IllegalKind::PathOnly) => {
                "; only some URLs on this host are listed, which DNS cannot block (set lists.illegal_proxy)"
            }
            Some(IllegalKind::Domain) => "",
        });
    }
    (passed, words)
}

/// How long after start-up the first scheduled run comes when none ran within the period:
/// long enough for the upstreams to be reachable, short enough that a restart never skips a
/// check.
pub const FIRST_RUN_DELAY: Duration = Duration::from_secs(60);

/// How long from `now` until the next scheduled run, given the last run's start (`last`),
/// the period, and when the server started. A run within the period is kept to (a restart
/// does not repeat it); a period that passed while the server was down is made good
/// [`FIRST_RUN_DELAY`] after start-up (a restart does not skip it).
pub fn until_next(
    last: Option<SystemTime>,
    every: Duration,
    started: SystemTime,
    now: SystemTime,
) -> Duration {
    let earliest = started + FIRST_RUN_DELAY;
    let due = match last.map(|last| last.checked_add(every)) {
        Some(Some(due)) => due.max(earliest),
        // A period past the end of time: never.
        Some(None) => return Duration::MAX,
        None => earliest,
    };
    due.duration_since(now).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_neither_skips_nor_repeats_across_restarts() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_687_260);
        let week = Duration::from_secs(7 * 86_400);
        let h = |n: u64| Duration::from_secs(3600 * n);
        // Never ran: a minute after start.
        assert_eq!(until_next(None, week, t0, t0), FIRST_RUN_DELAY);
        // Ran two days ago: five days from now, not at start-up.
        let last = t0 - h(48);
        assert_eq!(until_next(Some(last), week, t0, t0), week - h(48));
        // Due while the server was down: a minute after start, not a week later.
        let last = t0 - week - h(5);
        assert_eq!(until_next(Some(last), week, t0, t0), FIRST_RUN_DELAY);
        // Overdue and past the first minute: now.
        assert_eq!(until_next(Some(last), week, t0, t0 + h(1)), Duration::ZERO);
        // Just ran: a whole period.
        let now = t0 + h(1);
        assert_eq!(until_next(Some(now), week, t0, now), week);
    }

    #[test]
    fn client_addresses_are_inside_the_group() {
        let config = Config::from_toml_str(
            "[[group]]\nname = \"staff\"\nnetworks = [\"10.0.0.0/24\"]\n\
             [[group]]\nname = \"pupils\"\nnetworks = [\"10.0.0.0/28\", \"fd00::/64\"]\n\
             [[group]]\nname = \"one\"\nnetworks = [\"10.9.9.9/32\"]\n\
             [[group]]\nname = \"shadowed\"\nnetworks = [\"10.0.0.0/28\"]\n\
             [[device]]\nname = \"pc\"\nip = \"10.0.0.5\"\ngroup = \"shadowed\"\n",
            "t.toml",
        )
        .unwrap();
        let lists = Blocklists::empty();
        let metrics = crate::metrics::Metrics::new().unwrap();
        let groups: Vec<crate::pipeline::identify::GroupNetworks> =
            chain::groups(&config, &lists, &metrics).unwrap();
        let identify = Identify::new(&groups)
            .with_devices(chain::devices(&config, &groups), Default::default());
        let ip = |i: usize| client_for(&config, &config.groups[i], &identify);
        // staff's first hosts are pupils' (more specific): the first of its own is .16.
        assert_eq!(ip(0), Some("10.0.0.16".parse().unwrap()));
        // The device pinned to `shadowed` takes .5 from pupils.
        assert_eq!(ip(1), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(ip(2), Some("10.9.9.9".parse().unwrap()));
        assert_eq!(ip(3), Some("10.0.0.5".parse().unwrap()));
    }
}
