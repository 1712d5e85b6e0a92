//! The query pipeline: one trait, [`Stage`], and the types that flow through it.
//!
//! A query flows through an ordered list of stages (assembled in exactly one place,
//! [`chain::build`]). Each stage either answers the query itself or passes it on with
//! [`Next::run`] and may change what comes back before returning it (policy strips `ech`,
//! SafeSearch prepends its CNAME); records shared with the cache are copied first
//! ([`Answer::sections_mut`]), so a change never reaches another client's answer. A stage only
//! cares about the stages after it, never about those before it (CoreDNS's rule), and no
//! stage looks another up: [`Next`] is a cursor over the rest of the chain.
//!
//! - [`Query`] (`query.rs`) and [`Answer`] (`answer.rs`) are what flows; the plain-data
//!   enums they carry ([`Disposition`], [`BlockReason`], [`Transport`]) live in
//!   [`crate::event`], which the store shares.
//! - [`group`] is the per-client context: the group, its policy and its SafeSearch settings.
//! - [`replay`] keeps finished answers for repeats, which the UDP listener answers without
//!   running the chain (the same identify, rate-limit and record stages, called directly).
//! - [`grants`] is the live table of time-limited allow grants, replaced while the resolver
//!   runs and read by policy once per query.
//!
//! ```text
//! record → identify → rate limit → policy → SafeSearch → cache → forward
//! ```

mod answer;
pub mod cache;
pub mod chain;
pub mod forward;
pub mod grants;
pub mod group;
pub mod identify;
pub mod policy;
mod query;
pub mod ratelimit;
pub mod record;
pub mod replay;
pub mod safesearch;

use std::{future::Future, net::IpAddr, pin::Pin, sync::Arc};

pub use answer::{Answer, Reason, Sections, SharedSections, Ttl};
pub use query::{Admission, Origin, Query};

pub use crate::event::{BlockReason, Disposition, Transport};

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

/// Whether a client address is served at all (belongs to a group).
pub type Gate = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// An assembled, ordered chain of stages.
#[derive(Clone)]
pub struct Pipeline {
    stages: Arc<[Arc<dyn Stage>]>,
    /// `None`: every client is served as far as the listeners know (the stages decide).
    gate: Option<Gate>,
    /// Answers kept for repeats, when the chain has a memo.
    replay: Option<Arc<replay::Replay>>,
}

impl Pipeline {
    /// A pipeline running `stages` in order.
    pub fn new(stages: Vec<Arc<dyn Stage>>) -> Pipeline {
        Pipeline {
            stages: stages.into(),
            gate: None,
            replay: None,
        }
    }

    /// Lets the listeners answer repeats from `replay`, which must answer for this chain's
    /// own identify, rate-limit and record stages.
    pub fn with_replay(mut self, replay: Arc<replay::Replay>) -> Pipeline {
        self.replay = Some(replay);
        self
    }

    /// The memo of answers kept for repeats, if the chain has one.
    pub fn replay(&self) -> Option<&replay::Replay> {
        self.replay.as_deref()
    }

    /// Tells the listeners which clients are served, so that a TCP connection from outside
    /// every group can be held to the outsiders' small share before any query is read.
    pub fn with_gate(mut self, gate: Gate) -> Pipeline {
        self.gate = Some(gate);
        self
    }

    /// Whether `client` is served (with no gate: yes).
    pub fn admits(&self, client: IpAddr) -> bool {
        self.gate.as_ref().is_none_or(|gate| gate(client))
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
