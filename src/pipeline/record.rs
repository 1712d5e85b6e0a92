//! The outermost stage: times every query, counts it, and hands one [`QueryEvent`] per
//! finished query to the query log.
//!
//! Filtering checks ([`Origin::Check`]) pass through untouched: they are Hedgerow asking as
//! a device, nobody's attempt, so they are neither counted nor logged, and so never open a
//! breach or reach the DSL's reports. Honouring the flag here, rather than running checks on
//! a chain without this stage, keeps the check on the very `Pipeline` the listeners use.

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use hickory_proto::rr::RecordType;

use crate::{
    clock::Clock,
    event::{must_keep, BlockReason, EventName, QueryEvent, QuerySink, Severity, Transport},
    metrics::Metrics,
    pipeline::{group::Group, Answer, Disposition, Next, Origin, Query, Stage, StageFuture},
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

/// The event for `query` answered with `answer` after `duration`, stamped `at`, built in
/// `spare`'s buffers when the sink gave one ([`QuerySink::spare`]).
///
/// Built here, once, from the finished query: an illegal-tier name is withheld at this point,
/// so it never reaches a channel, a journal or a database.
pub fn event(
    spare: Option<QueryEvent>,
    query: &Query,
    answer: &Answer,
    at: SystemTime,
    duration: Duration,
) -> QueryEvent {
    let (name, category, rule) = buffers(spare);
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
            EventName::Clear(refill(name, &query.key))
        },
        qtype: u16::from(query.qtype),
        transport: query.transport,
        disposition: answer.disposition,
        reason: reason.map(|r| r.kind),
        category: reason
            .and_then(|r| r.category.as_deref())
            .map(|c| refill(category, c)),
        rule: if illegal {
            Some(refill(rule, "illegal-content list, entry withheld"))
        } else {
            reason
                .map(|r| r.detail.as_str())
                .or(answer.note.as_deref())
                .map(|text| refill(rule, text))
        },
        severity: reason.and_then(|r| r.severity),
        rcode: u16::from(answer.rcode),
        duration,
    }
}

/// A spare event's string buffers (name, category, rule), for a new event to reuse.
fn buffers(spare: Option<QueryEvent>) -> (Option<String>, Option<String>, Option<String>) {
    match spare {
        Some(e) => (e.name.into_buffer(), e.category, e.rule),
        None => (None, None, None),
    }
}

/// `text` in `buffer` when there is one (no allocation while it is long enough).
fn refill(buffer: Option<String>, text: &str) -> String {
    let mut s = buffer.unwrap_or_default();
    s.clear();
    s.push_str(text);
    s
}

/// A query whose event the query log wants ([`Record::count`]): the event is built (in the
/// spare's buffers, when the log has one to give back) and handed to [`Record::log`].
pub struct Wanted(pub Option<QueryEvent>);

impl Record {
    /// Counts one finished query of `group` (answered `at`) and says whether the query log
    /// wants its event, which the caller then builds in the spare's buffers and hands to
    /// [`Record::log`]: the record stage's work, shared with repeats answered from the replay
    /// memo ([`super::replay`]) so that both count and log alike. Two steps, so that a repeat
    /// builds its event from the memo entry it borrows under the entry's lock, and logs after.
    #[allow(clippy::too_many_arguments)]
    pub fn count(
        &self,
        group: Option<&Group>,
        qtype: RecordType,
        disposition: Disposition,
        reason: Option<BlockReason>,
        severity: Option<Severity>,
        elapsed: Duration,
        at: SystemTime,
    ) -> Option<Wanted> {
        let metrics = group.map(|g| &g.metrics);
        self.metrics
            .observe_query(metrics, qtype, disposition, elapsed.as_secs_f64());
        if let (Some(reason), Some(g)) = (reason, metrics) {
            if disposition == Disposition::Blocked {
                g.blocked(reason);
            }
        }
        let sink = self.sink.as_ref()?;
        let wanted = must_keep(disposition, reason, severity)
            || !(sink.tally(group.map(|g| &g.name), disposition, at) || sink.sheds_allowed());
        wanted.then(|| Wanted(sink.spare()))
    }

    /// Hands the event [`Record::count`] wanted to the query log.
    pub fn log(&self, event: QueryEvent) {
        if let Some(sink) = &self.sink {
            sink.record(event);
        }
    }
}

/// What every repeat of one query has in its event: all but the time, the client, the
/// device and the duration (borrowed from the replay memo, which keeps it compactly).
#[derive(Debug, Clone, Copy)]
pub struct Shared<'a> {
    /// The group's name.
    pub group: Option<&'a Arc<str>>,
    /// The name as recorded; `None` when withheld (illegal tier).
    pub name: Option<&'a str>,
    /// The question type.
    pub qtype: u16,
    /// How it arrived.
    pub transport: Transport,
    /// How it was answered.
    pub disposition: Disposition,
    /// Why it was blocked.
    pub reason: Option<BlockReason>,
    /// The categories that decided.
    pub category: Option<&'a str>,
    /// The rule, in plain words.
    pub rule: Option<&'a str>,
    /// Safeguarding severity.
    pub severity: Option<Severity>,
    /// The response code.
    pub rcode: u16,
}

impl<'a> Shared<'a> {
    /// The shared part of `event`.
    pub fn of(event: &'a QueryEvent) -> Shared<'a> {
        Shared {
            group: event.group.as_ref(),
            name: match &event.name {
                EventName::Clear(name) => Some(name),
                EventName::Withheld => None,
            },
            qtype: event.qtype,
            transport: event.transport,
            disposition: event.disposition,
            reason: event.reason,
            category: event.category.as_deref(),
            rule: event.rule.as_deref(),
            severity: event.severity,
            rcode: event.rcode,
        }
    }
}

/// The event of a repeat: `shared` for `client` and `device`, stamped `at` after `duration`,
/// built in `spare`'s buffers.
pub fn repeat_event(
    spare: Option<QueryEvent>,
    shared: Shared<'_>,
    client: IpAddr,
    device: Option<&Arc<str>>,
    at: SystemTime,
    duration: Duration,
) -> QueryEvent {
    let (name, category, rule) = buffers(spare);
    QueryEvent {
        at,
        client,
        device: device.cloned(),
        group: shared.group.cloned(),
        name: match shared.name {
            Some(text) => EventName::Clear(refill(name, text)),
            None => EventName::Withheld,
        },
        qtype: shared.qtype,
        transport: shared.transport,
        disposition: shared.disposition,
        reason: shared.reason,
        category: shared.category.map(|c| refill(category, c)),
        rule: shared.rule.map(|r| refill(rule, r)),
        severity: shared.severity,
        rcode: shared.rcode,
        duration,
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
            // Read once, for the histogram and the event.
            let (elapsed, at) = (query.received.elapsed(), self.clock.now());
            let reason = answer.reason.as_ref();
            let wanted = self.count(
                query.group.as_deref(),
                query.qtype,
                answer.disposition,
                reason.map(|r| r.kind),
                reason.and_then(|r| r.severity),
                elapsed,
                at,
            );
            if let Some(Wanted(spare)) = wanted {
                self.log(event(spare, query, &answer, at, elapsed));
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

    /// A sink that is behind: it would shed every event it need not keep.
    #[derive(Default)]
    struct Behind {
        kept: Collect,
        asked: std::sync::atomic::AtomicUsize,
    }

    impl QuerySink for Behind {
        fn record(&self, event: QueryEvent) {
            self.kept.record(event);
        }

        fn sheds_allowed(&self) -> bool {
            self.asked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            true
        }
    }

    /// Answers with the disposition and reason its name's first label asks for.
    struct AsNamed;

    impl Stage for AsNamed {
        fn name(&self) -> &'static str {
            "as-named"
        }

        fn handle<'a>(&'a self, query: &'a mut Query, _: Next<'a>) -> StageFuture<'a> {
            use crate::{event::BlockReason, pipeline::answer::Reason};
            let reason = |kind| Reason {
                kind,
                detail: "test".to_string(),
                severity: None,
                category: None,
            };
            let answer = match query.key.split('.').next() {
                Some("blocked") => {
                    let mut a = Answer::empty(ResponseCode::NXDomain, Disposition::Blocked);
                    a.reason = Some(reason(BlockReason::Category));
                    a
                }
                // Not blocked, but answered for a reason: kept too.
                Some("rewritten") => {
                    let mut a = Answer::empty(ResponseCode::NoError, Disposition::SafeSearch);
                    a.reason = Some(reason(BlockReason::Deny));
                    a
                }
                _ => Answer::empty(ResponseCode::NoError, Disposition::Forwarded),
            };
            Box::pin(async move { answer })
        }
    }

    #[tokio::test]
    async fn a_sink_that_is_behind_gets_no_allowed_event_but_every_kept_one() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let sink = Arc::new(Behind::default());
        let record = Record::new(metrics, Some(sink.clone()), Clock::system());
        let pipeline = Pipeline::new(vec![Arc::new(record), Arc::new(AsNamed)]);
        for name in [
            "allowed.test.",
            "blocked.test.",
            "rewritten.test.",
            "other.test.",
        ] {
            let mut q = Query::new(
                "127.0.0.1".parse().unwrap(),
                Transport::Udp,
                Name::from_ascii(name).unwrap(),
                RecordType::A,
            );
            pipeline.resolve(&mut q).await;
        }
        let names: Vec<EventName> = sink
            .kept
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(
            names,
            [
                EventName::Clear("blocked.test".into()),
                EventName::Clear("rewritten.test".into())
            ]
        );
        assert_eq!(
            sink.asked.load(std::sync::atomic::Ordering::Relaxed),
            2,
            "asked only for the two allowed queries"
        );
    }

    /// A sink that counts what it need not keep.
    #[derive(Default)]
    struct Counting {
        kept: Collect,
        counted: Mutex<Vec<(Option<String>, Disposition)>>,
    }

    impl QuerySink for Counting {
        fn record(&self, event: QueryEvent) {
            self.kept.record(event);
        }

        fn tally(&self, group: Option<&Arc<str>>, disposition: Disposition, _: SystemTime) -> bool {
            let group = group.map(|g| g.to_string());
            self.counted.lock().unwrap().push((group, disposition));
            true
        }

        fn sheds_allowed(&self) -> bool {
            unreachable!("a counted query needs no event")
        }
    }

    #[tokio::test]
    async fn a_sink_that_counts_gets_no_allowed_event_but_every_kept_one() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let sink = Arc::new(Counting::default());
        let record = Record::new(metrics.clone(), Some(sink.clone()), Clock::system());
        let pipeline = Pipeline::new(vec![Arc::new(record), Arc::new(AsNamed)]);
        let group = Group::plain(0, "pupils", &metrics);
        for name in ["allowed.test.", "blocked.test.", "rewritten.test."] {
            let mut q = Query::new(
                "127.0.0.1".parse().unwrap(),
                Transport::Udp,
                Name::from_ascii(name).unwrap(),
                RecordType::A,
            );
            q.group = Some(group.clone());
            pipeline.resolve(&mut q).await;
        }
        let kept = sink.kept.0.lock().unwrap().len();
        assert_eq!(kept, 2, "the blocked and the rewritten query");
        assert_eq!(
            *sink.counted.lock().unwrap(),
            [(Some("pupils".to_string()), Disposition::Forwarded)]
        );
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

    /// An event built in a spare is the event built afresh, in the spare's buffers; and an
    /// illegal-tier name leaves no trace of the spare's name.
    #[test]
    fn an_event_built_in_a_spare_reuses_its_buffers_and_equals_a_fresh_one() {
        use crate::{
            event::{BlockReason, Severity},
            pipeline::answer::Reason,
        };
        let query = Query::new(
            "127.0.0.1".parse().unwrap(),
            Transport::Udp,
            Name::from_ascii("www.example.test.").unwrap(),
            RecordType::A,
        );
        let mut blocked = Answer::empty(ResponseCode::NXDomain, Disposition::Blocked);
        blocked.reason = Some(Reason {
            kind: BlockReason::Category,
            detail: "group pupils: category gambling".to_string(),
            severity: Some(Severity::Medium),
            category: Some("gambling".to_string()),
        });
        let allowed =
            Answer::empty(ResponseCode::NoError, Disposition::Forwarded).with_note("cached");
        let at = std::time::SystemTime::now();
        let took = std::time::Duration::from_micros(7);

        // A spare whose buffers are larger than anything this query writes.
        let mut spare = event(None, &query, &blocked, at, took);
        let long = "x".repeat(300);
        for s in [
            match &mut spare.name {
                EventName::Clear(s) => s,
                EventName::Withheld => unreachable!(),
            },
            spare.category.as_mut().unwrap(),
            spare.rule.as_mut().unwrap(),
        ] {
            s.push_str(&long);
        }
        let buffers = |e: &QueryEvent| {
            (
                match &e.name {
                    EventName::Clear(s) => s.as_ptr(),
                    EventName::Withheld => std::ptr::null(),
                },
                e.category.as_ref().map(|s| s.as_ptr()),
                e.rule.as_ref().map(|s| s.as_ptr()),
            )
        };
        let before = buffers(&spare);
        let refilled = event(Some(spare), &query, &blocked, at, took);
        let fresh = event(None, &query, &blocked, at, took);
        assert_eq!(refilled, fresh);
        assert_eq!(fresh.duration, took);
        assert_eq!(buffers(&refilled), before, "every buffer reused");

        // Allowed, into a blocked spare: no category left over, the note as the rule.
        let rule = refilled.rule.as_ref().map(|s| s.as_ptr());
        let allowed_event = event(Some(refilled), &query, &allowed, at, took);
        assert_eq!(allowed_event.category, None);
        assert_eq!(allowed_event.rule.as_deref(), Some("cached"));
        assert_eq!(allowed_event.rule.as_ref().map(|s| s.as_ptr()), rule);
        assert_eq!(
            allowed_event.name,
            EventName::Clear("www.example.test".to_string())
        );

        // An illegal-tier block withholds the name whatever the spare held.
        let mut illegal = blocked.clone();
        if let Some(r) = illegal.reason.as_mut() {
            r.kind = BlockReason::Illegal;
        }
        let withheld = event(Some(allowed_event), &query, &illegal, at, took);
        assert_eq!(withheld.name, EventName::Withheld);
        assert_eq!(
            withheld.rule.as_deref(),
            Some("illegal-content list, entry withheld")
        );
    }
}
