//! What one finished query leaves behind: [`QueryEvent`], plain owned data built once by the
//! record stage and handed to a [`QuerySink`] (the store in production).
//!
//! This module is a leaf: it imports nothing from the crate, so the DNS path and the store
//! can both depend on it without depending on each other. The enums here are what the store
//! persists and what metrics label by; each has a stable `label()` and an `ALL` list.

use std::{net::IpAddr, sync::Arc, time::Duration, time::SystemTime};

use serde::{Deserialize, Serialize};

/// How serious a blocked attempt is for safeguarding (drives breaches, alerts and reports,
/// never matching). Ordered from most to least serious, so `min()` picks the worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Illegal or seriously harmful content (illegal tier, self-harm, extremism, …).
    High,
    /// Harmful or inappropriate for most pupils, and attempts to get round the filter.
    Medium,
    /// Distracting or policy-dependent (games, social networks).
    Low,
}

impl Severity {
    /// The stored and displayed form.
    pub fn label(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }

    /// Every severity, most serious first.
    pub const ALL: [Severity; 3] = [Severity::High, Severity::Medium, Severity::Low];
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// How the query arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain DNS over UDP.
    Udp,
    /// Plain DNS over TCP.
    Tcp,
}

impl Transport {
    /// The stored form.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// Every transport.
    pub const ALL: [Transport; 2] = [Transport::Udp, Transport::Tcp];
}

/// How an answer was made. Drives metrics labels, logs and the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Answered by an upstream.
    Forwarded,
    /// Answered from the cache.
    Cached,
    /// Answered from an expired cache entry because upstreams failed.
    Stale,
    /// Blocked by policy.
    Blocked,
    /// Rewritten to a SafeSearch target.
    SafeSearch,
    /// Answered locally without blocking anything a person asked for (the NODATA answer to
    /// designated-resolver discovery, which operating systems send on their own).
    Local,
    /// The client is outside every group.
    Refused,
    /// The client exceeded its rate limit.
    RateLimited,
    /// Upstreams failed or timed out.
    ServFail,
}

impl Disposition {
    /// The low-cardinality label used in metrics and the store.
    pub fn label(self) -> &'static str {
        match self {
            Disposition::Forwarded => "forwarded",
            Disposition::Cached => "cached",
            Disposition::Stale => "stale",
            Disposition::Blocked => "blocked",
            Disposition::SafeSearch => "safesearch",
            Disposition::Local => "local",
            Disposition::Refused => "refused",
            Disposition::RateLimited => "rate_limited",
            Disposition::ServFail => "servfail",
        }
    }

    /// Every disposition, for pre-registering metric handles.
    pub const ALL: [Disposition; 9] = [
        Disposition::Forwarded,
        Disposition::Cached,
        Disposition::Stale,
        Disposition::Blocked,
        Disposition::SafeSearch,
        Disposition::Local,
        Disposition::Refused,
        Disposition::RateLimited,
        Disposition::ServFail,
    ];
}

/// Why a name was blocked (or, for [`BlockReason::Circumvention`], answered locally).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockReason {
    /// On the illegal-content tier (IWF/CTIRU): for everyone, never overridable.
    Illegal,
    /// A host with path-only illegal-tier entries, sent to the URL-filtering proxy.
    IllegalProxy,
    /// A built-in anti-circumvention name (Firefox canary, Private Relay, DDR).
    Circumvention,
    /// A deny entry of the client's group.
    Deny,
    /// A blocked list category of the client's group.
    Category,
    /// A search engine that cannot lock SafeSearch, blocked for the group.
    SafeSearchUnenforceable,
}

impl BlockReason {
    /// The low-cardinality label used in metrics, the store and `lists lookup`.
    pub fn label(self) -> &'static str {
        match self {
            BlockReason::Illegal => "illegal",
            BlockReason::IllegalProxy => "illegal_proxy",
            BlockReason::Circumvention => "circumvention",
            BlockReason::Deny => "deny",
            BlockReason::Category => "category",
            BlockReason::SafeSearchUnenforceable => "safesearch_unenforceable",
        }
    }

    /// Every reason, for pre-registering metric handles.
    pub const ALL: [BlockReason; 6] = [
        BlockReason::Illegal,
        BlockReason::IllegalProxy,
        BlockReason::Circumvention,
        BlockReason::Deny,
        BlockReason::Category,
        BlockReason::SafeSearchUnenforceable,
    ];

    /// Whether the name belongs to the illegal-content tier, which is never shown, logged or
    /// stored in clear.
    pub fn is_illegal_tier(self) -> bool {
        matches!(self, BlockReason::Illegal | BlockReason::IllegalProxy)
    }
}

/// What is stored and shown instead of an illegal-tier name (the query log, breaches,
/// alerts). It cannot be a DNS name (it has spaces), so it never collides with one.
pub const WITHHELD: &str = "withheld (illegal-content list)";

/// The question name as it may be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventName {
    /// Lower case, no trailing dot.
    Clear(String),
    /// An illegal-tier entry: recorded only as "illegal-content list, entry withheld".
    Withheld,
}

impl EventName {
    /// The name's buffer, to be reused ([`QuerySink::spare`]).
    pub fn into_buffer(self) -> Option<String> {
        match self {
            EventName::Clear(s) => Some(s),
            EventName::Withheld => None,
        }
    }
}

/// One finished query, as the query log and breach records keep it. Owned plain data: no
/// hickory types and nothing pointing into the pipeline, so it can cross a channel and be
/// stored as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryEvent {
    /// When the query arrived (the one clock's time).
    pub at: SystemTime,
    /// The client's address.
    pub client: IpAddr,
    /// The configured device (`[[device]]`) the query came from, if pinned.
    pub device: Option<Arc<str>>,
    /// The client's group; `None` when it is outside every group.
    pub group: Option<Arc<str>>,
    /// The question name.
    pub name: EventName,
    /// The question type (numeric, as on the wire).
    pub qtype: u16,
    /// UDP or TCP.
    pub transport: Transport,
    /// How it was answered.
    pub disposition: Disposition,
    /// Why it was blocked, if it was.
    pub reason: Option<BlockReason>,
    /// The list categories that blocked it (ids, comma separated), if a category did.
    pub category: Option<String>,
    /// The rule and its source in plain words (never an illegal-tier entry).
    pub rule: Option<String>,
    /// Safeguarding severity when the attempt is a breach for the DSL.
    pub severity: Option<Severity>,
    /// The response code sent (numeric).
    pub rcode: u16,
    /// How long the answer took.
    pub duration: Duration,
}

impl QueryEvent {
    /// Whether the query log must keep this event whatever its load ([`must_keep`]).
    pub fn must_keep(&self) -> bool {
        must_keep(self.disposition, self.reason, self.severity)
    }
}

/// Whether an event with these parts must be kept whatever the query log's load: a block, or
/// any query with a reason or a severity (an attempt the DSL may need). Every other event
/// (an allowed query) may be shed while the log is behind. Apart from the event so that the
/// DNS path can ask before it builds one ([`QuerySink::sheds_allowed`]).
pub fn must_keep(
    disposition: Disposition,
    reason: Option<BlockReason>,
    severity: Option<Severity>,
) -> bool {
    disposition == Disposition::Blocked || reason.is_some() || severity.is_some()
}

/// Where finished queries go (the store's channel in production).
///
/// `record` must never wait: implementations do a non-blocking send and count what they
/// could not take. The event is passed by value so it moves into the channel uncopied.
pub trait QuerySink: Send + Sync + 'static {
    /// Takes one finished query.
    fn record(&self, event: QueryEvent);

    /// An event already stored, for the next one to be built in (its strings' buffers
    /// reused), when the sink has one to spare; never waits. Events then go round, DNS
    /// thread to store and back, and are neither allocated nor freed per query: freed by the
    /// thread that stored them, a batch's worth of strings would land in the DNS thread's
    /// allocator at once and cost it a millisecond to take in (benches/README.md).
    fn spare(&self) -> Option<QueryEvent> {
        None
    }

    /// Whether an event that need not be kept ([`must_keep`] false) would be shed now, in
    /// which case the sink has counted it as shed and the caller builds none. Asked before
    /// the event is built: while the log is behind, most queries' events would be built
    /// only to be dropped (benches/README.md).
    fn sheds_allowed(&self) -> bool {
        false
    }

    /// Counts a query whose event need not be kept ([`must_keep`] false) of `group`,
    /// answered as `disposition` at `at`, when all the log keeps of it is its count in the
    /// per-minute counts; says whether it did, in which case the caller builds no event.
    /// Why: an event built, queued and taken apart by the store for every allowed query,
    /// only to be counted, and shed uncounted while the log was behind (benches/README.md).
    fn tally(&self, group: Option<&Arc<str>>, disposition: Disposition, at: SystemTime) -> bool {
        let _ = (group, disposition, at);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metrics index their pre-registered handles by `variant as usize`.
    #[test]
    fn all_lists_follow_declaration_order() {
        for (i, r) in BlockReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, d) in Disposition::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i);
        }
    }
}
