//! The outermost stage: times every query, counts it, and hands one [`QueryEvent`] per
//! finished query to the query log.
//!
//! Filtering checks ([`Origin::Check`]) pass through untouched: they are Hedgerow asking as
//! a device, nobody's attempt, so they are neither counted nor logged, and so never open a
//! breach or reach the DSL's reports. Honouring the flag here, rather than running checks on
//! a chain without this stage, keeps the check on the very `Pipeline` the listeners use.

use std::sync::Arc;

use crate::{
    clock::Clock,
    event::{EventName, QueryEvent, QuerySink},
    metrics::Metrics,
    pipeline::{Answer, Disposition, Next, Origin, Query, Stage, StageFuture},
};

/// Times, counts and logs every query.
pub struct Record {
    metrics: Arc<Metrics>,
    sink: Option<Arc<dyn QuerySink>>,
    clock: Clock,
}

impl Record {
    /// A record stage reporting to `metrics` and, if given, to `sink`, stamping events with
    /// `clock`.
    pub fn new(metrics: Arc<Metrics>, sink: Option<Arc<dyn QuerySink>>, clock: Clock) -> Record {
        Record {
            metrics,
            sink,
            clock,
        }
    }
}

/// The event for `query` answered with `answer`, stamped `at`.
///
/// Built here, once, from the finished query: an illegal-tier name is withheld at this point,
/// so it never reaches a channel, a journal or a database.
pub fn event(query: &Query, answer: &Answer, at: std::time::SystemTime) -> QueryEvent {
    let reason = answer.reason.as_ref();
    let illegal = reason.is_some_and(|r| r.kind.is_illegal_tier());
    QueryEvent {
        at,
        client: query.client,
        device: query.device.clone(),
        group: query.group.as_ref().map(|g| g.name.clone()),
        name: if illegal {
            EventName::Withheld
        } else {
            EventName::Clear(query.key.clone())
        },
        qtype: u16::from(query.qtype),
        transport: query.transport,
        disposition: answer.disposition,
        reason: reason.map(|r| r.kind),
        category: reason.and_then(|r| r.category.clone()),
        rule: if illegal {
            Some("illegal-content list, entry withheld".to_string())
        } else {
            reason
                .map(|r| r.detail.clone())
                .or_else(|| answer.note.as_ref().map(|n| n.to_string()))
        },
        severity: reason.and_then(|r| r.severity),
        rcode: u16::from(answer.rcode),
        duration: query.received.elapsed(),
    }
}

impl Stage for Record {
    fn name(&self) -> &'static str {
        "record"
    }

    fn handle<'a>(&'a self, query: &'a mut Query, next: Next<'a>) -> StageFuture<'a> {
        Box::pin(async move {
            let answer = next.run(query).await;
            if query.origin == Origin::Check {
                return answer;
            }
            let elapsed = query.received.elapsed().as_secs_f64();
            let group = query.group.as_ref().map(|g| &g.metrics);
            self.metrics
                .observe_query(group, query.qtype, answer.disposition, elapsed);
            if let (Some(reason), Some(g)) = (&answer.reason, group) {
                if answer.disposition == Disposition::Blocked {
                    g.blocked(reason.kind);
                }
            }
            if let Some(sink) = &self.sink {
                sink.record(event(query, &answer, self.clock.now()));
            }
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use hickory_proto::{
        op::ResponseCode,
        rr::{Name, RecordType},
    };

    use super::*;
    use crate::pipeline::{Pipeline, Transport};

    #[derive(Default)]
    struct Collect(Mutex<Vec<QueryEvent>>);

    impl QuerySink for Collect {
        fn record(&self, event: QueryEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    /// Answers every query itself, like the cache on a hit.
    struct Answers;

    impl Stage for Answers {
        fn name(&self) -> &'static str {
            "answers"
        }

        fn handle<'a>(&'a self, _: &'a mut Query, _: Next<'a>) -> StageFuture<'a> {
            Box::pin(async { Answer::empty(ResponseCode::NoError, Disposition::Forwarded) })
        }
    }

    #[tokio::test]
    async fn check_queries_are_neither_logged_nor_counted() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let sink = Arc::new(Collect::default());
        let record = Record::new(metrics.clone(), Some(sink.clone()), Clock::system());
        let pipeline = Pipeline::new(vec![Arc::new(record), Arc::new(Answers)]);
        let query = |origin| {
            let mut q = Query::new(
                "127.0.0.1".parse().unwrap(),
                Transport::Udp,
                Name::from_ascii("www.example.test.").unwrap(),
                RecordType::A,
            );
            q.origin = origin;
            q
        };
        let before = metrics.encode();
        let answer = pipeline.resolve(&mut query(Origin::Check)).await;
        assert_eq!(
            answer.disposition,
            Disposition::Forwarded,
            "answered all the same"
        );
        assert!(sink.0.lock().unwrap().is_empty());
        assert_eq!(metrics.encode(), before);
        pipeline.resolve(&mut query(Origin::Client)).await;
        assert_eq!(sink.0.lock().unwrap().len(), 1);
        assert_ne!(metrics.encode(), before);
    }
}
