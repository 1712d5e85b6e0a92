//! The query pipeline: one trait, [`Stage`], and the types that flow through it.
//!
//! A query flows through an ordered list of stages (assembled in exactly one place,
//! [`chain::build`]). Each stage either answers the query itself or passes it on with
//! [`Next::run`] and may look at (never mutate in place) what comes back. A stage only
//! cares about the stages after it, never about those before it (CoreDNS's rule), and no
//! stage looks another up: [`Next`] is a cursor over the rest of the chain.
//!
//! ```text
//! record → identify → rate limit → policy → SafeSearch → cache → forward
//! ```

pub mod cache;
pub mod chain;
pub mod forward;
pub mod identify;
pub mod policy;
pub mod ratelimit;
pub mod record;
pub mod safesearch;

use std::{borrow::Cow, future::Future, net::IpAddr, pin::Pin, sync::Arc, time::Instant};

use hickory_proto::{
    op::ResponseCode,
    rr::{DNSClass, Name, Record, RecordType},
};

use crate::wire::Encoded;

/// How the query arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain DNS over UDP.
    Udp,
    /// Plain DNS over TCP.
    Tcp,
}

/// One question from one client, as the stages see it.
#[derive(Debug, Clone)]
pub struct Query {
    /// The client's address (the rate-limit and group key).
    pub client: IpAddr,
    /// UDP or TCP.
    pub transport: Transport,
    /// The question name as asked (case preserved, for the answer).
    pub name: Name,
    /// The question name in lower case without the trailing dot, for matching.
    pub key: String,
    /// The question type.
    pub qtype: RecordType,
    /// The question class.
    pub qclass: DNSClass,
    /// The client set the EDNS DO bit (DNSSEC records wanted).
    pub dnssec_ok: bool,
    /// The client set the CD bit (checking disabled).
    pub checking_disabled: bool,
    /// The client's group, set by the identify stage.
    pub group: Option<Arc<identify::Group>>,
    /// When the query arrived.
    pub received: Instant,
}

impl Query {
    /// A query for `name`/`qtype` from `client`.
    ///
    /// ```
    /// use hedgerow::pipeline::{Query, Transport};
    /// use hickory_proto::rr::{Name, RecordType};
    /// let q = Query::new("127.0.0.1".parse().unwrap(), Transport::Udp,
    ///                    Name::from_ascii("WWW.Example.com.").unwrap(), RecordType::A);
    /// assert_eq!(q.key, "www.example.com");
    /// ```
    pub fn new(client: IpAddr, transport: Transport, name: Name, qtype: RecordType) -> Query {
        Query {
            client,
            transport,
            key: name_key(&name),
            name,
            qtype,
            qclass: DNSClass::IN,
            dnssec_ok: false,
            checking_disabled: false,
            group: None,
            received: Instant::now(),
        }
    }

    /// The same query for another name (used to resolve a rewrite target).
    pub fn for_name(&self, name: Name) -> Query {
        Query {
            key: name_key(&name),
            name,
            ..self.clone()
        }
    }
}

/// Lower-case name without the trailing dot; the root is the empty string.
pub fn name_key(name: &Name) -> String {
    let mut key = String::with_capacity(name.len());
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            key.push('.');
        }
        for &b in label {
            key.push(b.to_ascii_lowercase() as char);
        }
    }
    key
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
    /// Answered locally (e.g. a synthesized NODATA for a special name).
    Local,
    /// The client is outside every group.
    Refused,
    /// The client exceeded its rate limit.
    RateLimited,
    /// Upstreams failed or timed out.
    ServFail,
}

impl Disposition {
    /// The low-cardinality label used in metrics.
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

/// Why a query was blocked or rewritten: a short label for metrics and a full text for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// Low-cardinality label (`deny`, `category`, `illegal`, …).
    pub label: &'static str,
    /// Full explanation: group, rule, category, source.
    pub detail: String,
    /// Safeguarding severity when the attempt is a breach for the DSL (illegal content: high;
    /// circumvention: medium; a category: its manifest severity); `None` otherwise.
    pub severity: Option<crate::lists::Severity>,
}

/// The records of an answer, section by section.
#[derive(Debug, Clone, Default)]
pub struct Sections {
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authorities: Vec<Record>,
    /// Additional section (never the OPT record; the listener adds its own).
    pub additionals: Vec<Record>,
}

impl Sections {
    /// A copy with every TTL replaced by `ttl(TTL)`.
    pub fn with_ttls(&self, ttl: impl Fn(u32) -> u32) -> Sections {
        let copy = |records: &[Record]| {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = ttl(r.ttl);
                    r
                })
                .collect()
        };
        Sections {
            answers: copy(&self.answers),
            authorities: copy(&self.authorities),
            additionals: copy(&self.additionals),
        }
    }
}

/// Records shared by every answer made from them (a cache entry), also kept pre-encoded so
/// the UDP listener copies bytes instead of encoding records.
#[derive(Debug)]
pub struct SharedSections {
    sections: Sections,
    encoded: Option<Encoded>,
}

impl SharedSections {
    /// Shares `sections`, encoded for responses to `qname` (DNSSEC records kept only when
    /// `dnssec_ok`, as the answers made from them will be sent).
    pub fn new(sections: Sections, qname: &Name, dnssec_ok: bool) -> SharedSections {
        let encoded = Encoded::new(
            qname,
            [
                &sections.answers,
                &sections.authorities,
                &sections.additionals,
            ],
            dnssec_ok,
        )
        .ok();
        SharedSections { sections, encoded }
    }

    /// The records.
    pub fn sections(&self) -> &Sections {
        &self.sections
    }
}

/// How the TTLs of shared records are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Lowered by this many seconds (a cache entry's age), but never below 1.
    Aged(u32),
    /// Every TTL replaced by this value (stale answers).
    Fixed(u32),
}

impl Ttl {
    /// The TTL sent for a record stored with `stored`.
    pub fn apply(self, stored: u32) -> u32 {
        match self {
            Ttl::Aged(age) => stored.saturating_sub(age).max(1),
            Ttl::Fixed(ttl) => ttl,
        }
    }
}

#[derive(Debug, Clone)]
enum Records {
    Owned(Sections),
    Shared(Arc<SharedSections>, Ttl),
}

/// The answer a stage produced.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Response code.
    pub rcode: ResponseCode,
    /// The upstream vouched for the data (AD bit), passed through.
    pub authentic_data: bool,
    /// How it was made.
    pub disposition: Disposition,
    /// Why, when policy or SafeSearch decided.
    pub reason: Option<Reason>,
    records: Records,
}

impl Answer {
    /// An answer made of `sections`.
    pub fn new(rcode: ResponseCode, sections: Sections, disposition: Disposition) -> Answer {
        Answer {
            rcode,
            authentic_data: false,
            disposition,
            reason: None,
            records: Records::Owned(sections),
        }
    }

    /// An answer made of shared records, their TTLs sent as `ttl` says.
    pub fn shared(
        rcode: ResponseCode,
        records: Arc<SharedSections>,
        ttl: Ttl,
        disposition: Disposition,
    ) -> Answer {
        Answer {
            rcode,
            authentic_data: false,
            disposition,
            reason: None,
            records: Records::Shared(records, ttl),
        }
    }

    /// An empty answer with `rcode`.
    pub fn empty(rcode: ResponseCode, disposition: Disposition) -> Answer {
        Answer::new(rcode, Sections::default(), disposition)
    }

    /// SERVFAIL, e.g. when every upstream failed.
    pub fn servfail() -> Answer {
        Answer::empty(ResponseCode::ServFail, Disposition::ServFail)
    }

    /// Attaches a reason.
    pub fn with_reason(mut self, label: &'static str, detail: impl Into<String>) -> Answer {
        self.reason = Some(Reason {
            label,
            detail: detail.into(),
            severity: None,
        });
        self
    }

    fn stored(&self) -> &Sections {
        match &self.records {
            Records::Owned(sections) => sections,
            Records::Shared(shared, _) => &shared.sections,
        }
    }

    /// The answer section, for looking at names and data. Shared records carry their stored
    /// TTLs here; the TTLs sent are those of [`Answer::into_sections`].
    pub fn answers(&self) -> &[Record] {
        &self.stored().answers
    }

    /// The authority section (TTLs as for [`Answer::answers`]).
    pub fn authorities(&self) -> &[Record] {
        &self.stored().authorities
    }

    /// The additional section (TTLs as for [`Answer::answers`]).
    pub fn additionals(&self) -> &[Record] {
        &self.stored().additionals
    }

    /// The records for changing them (shared records are copied first, TTLs as sent).
    pub fn sections_mut(&mut self) -> &mut Sections {
        if let Records::Shared(shared, ttl) = &self.records {
            self.records = Records::Owned(shared.sections.with_ttls(|t| ttl.apply(t)));
        }
        match &mut self.records {
            Records::Owned(sections) => sections,
            Records::Shared(..) => unreachable!("made owned above"),
        }
    }

    /// The records with their TTLs as sent, copied only when shared.
    pub fn sections_as_sent(&self) -> Cow<'_, Sections> {
        match &self.records {
            Records::Owned(sections) => Cow::Borrowed(sections),
            Records::Shared(shared, ttl) => Cow::Owned(shared.sections.with_ttls(|t| ttl.apply(t))),
        }
    }

    /// The records with their TTLs as sent.
    pub fn into_sections(self) -> Sections {
        match self.records {
            Records::Owned(sections) => sections,
            Records::Shared(shared, ttl) => shared.sections.with_ttls(|t| ttl.apply(t)),
        }
    }

    /// The pre-encoded records and how to set their TTLs, when this answer has them.
    pub fn encoded(&self) -> Option<(&Encoded, Ttl)> {
        match &self.records {
            Records::Shared(shared, ttl) => shared.encoded.as_ref().map(|e| (e, *ttl)),
            Records::Owned(_) => None,
        }
    }
}

/// The future a stage returns.
pub type StageFuture<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

/// One step of the pipeline.
pub trait Stage: Send + Sync + 'static {
    /// Short name for logs, spans and construction errors.
    fn name(&self) -> &'static str;

    /// Answers `query` or passes it on with `next.run(query)`.
    fn handle<'a>(&'a self, query: &'a mut Query, next: Next<'a>) -> StageFuture<'a>;
}

/// The rest of the chain after the current stage.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    rest: &'a [Arc<dyn Stage>],
}

impl<'a> Next<'a> {
    /// Passes `query` to the next stage. Past the last stage the answer is SERVFAIL
    /// (a chain that ends without a forwarder is a bug, and failing closed is safe).
    pub fn run<'b>(self, query: &'b mut Query) -> StageFuture<'b>
    where
        'a: 'b,
    {
        match self.rest.split_first() {
            Some((stage, rest)) => stage.handle(query, Next { rest }),
            None => Box::pin(async { Answer::servfail() }),
        }
    }
}

/// An assembled, ordered chain of stages.
#[derive(Clone)]
pub struct Pipeline {
    stages: Arc<[Arc<dyn Stage>]>,
}

impl Pipeline {
    /// A pipeline running `stages` in order.
    pub fn new(stages: Vec<Arc<dyn Stage>>) -> Pipeline {
        Pipeline {
            stages: stages.into(),
        }
    }

    /// Runs `query` through the whole chain.
    pub async fn resolve(&self, query: &mut Query) -> Answer {
        Next { rest: &self.stages }.run(query).await
    }

    /// Stage names in order, for `check-config` and logs.
    pub fn stage_names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name()).collect()
    }
}
