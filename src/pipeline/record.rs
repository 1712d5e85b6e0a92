//! The outermost stage: times every query, counts it, and hands it to the query log.

use std::sync::Arc;

use crate::{
    metrics::Metrics,
    pipeline::{Next, Query, Stage, StageFuture},
};

/// Where finished queries go after they are counted (the store's channel in production).
///
/// `record` must never wait: implementations do a non-blocking send and count drops.
pub trait QuerySink: Send + Sync + 'static {
    /// Takes one finished query and its answer.
    fn record(&self, query: &Query, answer: &crate::pipeline::Answer);
}

/// Times, counts and logs every query.
pub struct Record {
    metrics: Arc<Metrics>,
    sink: Option<Arc<dyn QuerySink>>,
}

impl Record {
    /// A record stage reporting to `metrics` and, if given, to `sink`.
    pub fn new(metrics: Arc<Metrics>, sink: Option<Arc<dyn QuerySink>>) -> Record {
        Record { metrics, sink }
    }
}

impl Stage for Record {
    fn name(&self) -> &'static str {
        "record"
    }

    fn handle<'a>(&'a self, query: &'a mut Query, next: Next<'a>) -> StageFuture<'a> {
        Box::pin(async move {
            let answer = next.run(query).await;
            let elapsed = query.received.elapsed().as_secs_f64();
            let group = query.group.as_ref().map(|g| &g.metrics);
            self.metrics
                .observe_query(group, query.qtype, answer.disposition, elapsed);
            if let (Some(reason), Some(g)) = (&answer.reason, group) {
                if answer.disposition == crate::pipeline::Disposition::Blocked {
                    g.blocked(reason.label);
                }
            }
            if let Some(sink) = &self.sink {
                sink.record(query, &answer);
            }
            answer
        })
    }
}
