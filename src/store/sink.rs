//! The [`QuerySink`] the DNS path records into: a push that never waits; the queues it
//! pushes into ([`Queue`]); the counts of allowed queries it keeps no event of ([`Tally`]);
//! and the stored events it gives back to be filled again ([`Spent`]).

use std::{
    sync::{Arc, Mutex, TryLockError},
    time::SystemTime,
};

use crate::{
    clock::unix_millis,
    config::StoreConfig,
    event::{Disposition, QueryEvent, QuerySink},
};

use super::Shared;

/// The queue length at which the sink wakes the writer early. Waking it for every event (as
/// this did at first) cost a context switch per query: on a one-core school server the
/// writer then took half the CPU (profiled under `dnsperf`, 40 % of queries blocked). A few
/// thousand events is a fraction of a batch interval's worth under heavy load and far below
/// the queues' capacity, so nothing waits long and nothing overflows.
pub(crate) const WAKE_AT: usize = 4096;

pub(crate) struct StoreSink {
    pub config: StoreConfig,
    /// Woken when a queue reaches [`WAKE_AT`] events; otherwise it wakes on its own at the
    /// end of the batch interval.
    pub writer: std::thread::Thread,
    pub shared: Arc<Shared>,
}

impl QuerySink for StoreSink {
    fn tally(&self, group: Option<&Arc<str>>, disposition: Disposition, at: SystemTime) -> bool {
        let logged = self.config.log_allowed
            && !group.is_some_and(|g| self.config.no_allowed_log_groups.contains(&**g));
        self.config.enabled
            && !logged
            && self
                .shared
                .tally
                .add(unix_millis(at).div_euclid(60_000), group, disposition)
    }

    fn sheds_allowed(&self) -> bool {
        if !self.config.enabled {
            return true;
        }
        let full = self
            .shared
            .allowed_full
            .load(std::sync::atomic::Ordering::Relaxed);
        if full {
            self.shared.metrics.shed_full.inc();
        }
        full
    }

    fn spare(&self) -> Option<QueryEvent> {
        if !self.config.enabled {
            return None;
        }
        self.shared.spent.take()
    }

    fn record(&self, event: QueryEvent) {
        if !self.config.enabled {
            return;
        }
        let keep = event.must_keep();
        let queue = if keep {
            &self.shared.blocked
        } else {
            &self.shared.allowed
        };
        let pushed = if keep {
            queue.try_push(event)
        } else {
            queue.push(event)
        };
        let unqueued = match pushed {
            Pushed::Queued(len) => {
                if len == WAKE_AT {
                    self.writer.unpark();
                }
                return;
            }
            // Never dropped: the journal file takes it. This path only runs when the writer
            // is far behind or holds the queue this instant (buffered: the writer thread
            // writes the buffer within a batch interval even if no append follows) or gone
            // (written at once).
            Pushed::Full(event) | Pushed::Busy(event) if keep => {
                self.shared.journal_event(&event);
                event
            }
            Pushed::Closed(event) if keep => {
                self.shared.journal_events(&[&event], false);
                event
            }
            Pushed::Full(event) | Pushed::Closed(event) | Pushed::Busy(event) => {
                self.shared
                    .allowed_full
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.shared.metrics.shed_full.inc();
                event
            }
        };
        // Done with here, on the DNS thread: the next query's event is built in it. While
        // the writer is behind it hands nothing back, and every query's event was allocated
        // and freed (with the shed counter's lookup, ~600 instructions a query under
        // overload; callgrind, benches/README.md).
        self.shared.spent.give_back(unqueued);
    }
}

/// Queries counted per minute on the DNS side ([`QuerySink::tally`]) for the writer to add
/// to the per-minute counts: the allowed queries the log keeps no row of. A lock only tried,
/// as [`Queue`]'s: while the writer holds it, the query goes as an event instead.
#[derive(Default)]
pub(crate) struct Tally {
    counts: Mutex<Vec<Count>>,
}

/// So many queries of one group, answered one way, in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Count {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub group: Option<Arc<str>>,
    pub disposition: Disposition,
    pub queries: i64,
}

impl Tally {
    /// The DNS side: one more query; `false` (not counted) when the writer holds the tally
    /// this instant.
    pub(crate) fn add(
        &self,
        minute: i64,
        group: Option<&Arc<str>>,
        disposition: Disposition,
    ) -> bool {
        let mut counts = match self.counts.try_lock() {
            Ok(counts) => counts,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        let same = |c: &Count| {
            c.minute == minute
                && c.disposition == disposition
                && match (&c.group, group) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                    (a, b) => a.is_none() && b.is_none(),
                }
        };
        // A minute's few counts (groups × dispositions) are the last ones.
        match counts.iter_mut().rev().find(|c| same(c)) {
            Some(c) => c.queries += 1,
            None => counts.push(Count {
                minute,
                group: group.cloned(),
                disposition,
                queries: 1,
            }),
        }
        true
    }

    /// The writer's side: every count so far, the tally starting again from none.
    pub(crate) fn take(&self) -> Vec<Count> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Events waiting for the writer: a vector behind a lock that a DNS thread holds to push one
/// event and the writer to swap the whole vector for an empty one — nanoseconds either way.
///
/// Why not `std::sync::mpsc::sync_channel` (as before): its `try_send` spins (`pause`, no
/// yield) while a receiver has claimed a slot but not yet released it, and the writer runs
/// at `SCHED_IDLE`, usually on the DNS thread's own CPU. Preempted there, it left the DNS
/// thread spinning until the scheduler gave the writer its turn: 15 % of the DNS thread's
/// CPU at saturation went to that spin (`perf`, benches/README.md). Here a blocked event only
/// tries the lock ([`Queue::try_push`]: held by the writer, the event goes to the journal, as
/// on a full queue), and an allowed one waits for it ([`Queue::push`]): a mutex's waiter
/// sleeps, so the writer gets the CPU to finish its swap, and nothing is shed that a queue
/// with room would take (refused instead, one allowed event in a few thousand went missing
/// from a test's counts).
pub(crate) struct Queue {
    inner: Mutex<Inner>,
    capacity: usize,
}

struct Inner {
    events: Vec<QueryEvent>,
    open: bool,
}

/// What [`Queue::push`] did: queued the event, or gave it back and why.
pub(crate) enum Pushed {
    /// Queued; this many now wait.
    Queued(usize),
    /// `capacity` events are waiting.
    Full(QueryEvent),
    /// The writer holds the queue this instant ([`Queue::try_push`] only).
    Busy(QueryEvent),
    /// The writer has stopped.
    Closed(QueryEvent),
}

impl Queue {
    /// An empty queue taking at most `capacity` events.
    pub(crate) fn new(capacity: usize) -> Queue {
        Queue {
            inner: Mutex::new(Inner {
                events: Vec::new(),
                open: true,
            }),
            capacity,
        }
    }

    /// The DNS side: appends `event` and says how many now wait, unless the writer holds
    /// the queue this instant ([`Pushed::Busy`]); never waits.
    pub(crate) fn try_push(&self, event: QueryEvent) -> Pushed {
        match self.inner.try_lock() {
            Ok(inner) => self.append(inner, event),
            Err(TryLockError::Poisoned(p)) => self.append(p.into_inner(), event),
            Err(TryLockError::WouldBlock) => Pushed::Busy(event),
        }
    }

    /// The DNS side: appends `event` and says how many now wait, waiting for the writer to
    /// finish a swap if it is in one.
    pub(crate) fn push(&self, event: QueryEvent) -> Pushed {
        self.append(self.inner.lock().unwrap_or_else(|p| p.into_inner()), event)
    }

    fn append(&self, mut inner: std::sync::MutexGuard<'_, Inner>, event: QueryEvent) -> Pushed {
        if !inner.open {
            return Pushed::Closed(event);
        }
        if inner.events.len() >= self.capacity {
            return Pushed::Full(event);
        }
        inner.events.push(event);
        Pushed::Queued(inner.events.len())
    }

    /// The writer's side: every waiting event, in arrival order, in exchange for `empty`
    /// (cleared; its allocation is what the queue fills next, so none is made per swap).
    pub(crate) fn take(&self, mut empty: Vec<QueryEvent>) -> Vec<QueryEvent> {
        empty.clear();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut inner.events, empty)
    }

    /// How many events wait.
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .len()
    }

    /// The writer's side, as it stops: no event is taken from now on; those still waiting
    /// are returned.
    pub(crate) fn close(&self) -> Vec<QueryEvent> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.open = false;
        std::mem::take(&mut inner.events)
    }
}

/// Events the writer has stored, handed back for the DNS threads to build new ones in
/// ([`QuerySink::spare`]).
///
/// Why: an event's strings are allocated by the DNS thread that built it. Freed by the writer,
/// a whole batch of them (thousands every batch interval at 10k queries a second) lands in
/// that thread's `malloc` arena at once, and glibc makes the DNS thread's next large
/// allocation take them all in (`malloc_consolidate`): about a millisecond, every batch, in
/// which no query was answered (`perf record` on the DNS thread, benches/README.md). Freeing
/// them a few at a time on the DNS thread instead did not help (the frees still outran the
/// allocations); reusing them does: no allocation and no free per query.
#[derive(Default)]
pub(crate) struct Spent {
    pile: Mutex<Vec<QueryEvent>>,
}

impl Spent {
    /// Events kept at most (a few MB); beyond it the writer frees them, which happens only
    /// when fewer queries now arrive than were stored.
    const MAX: usize = super::writer::BATCH_ROWS;

    /// The writer's side: moves `batch` (stored) onto the pile, as much as fits. What is left
    /// in `batch` is the caller's to free. Swapped when the pile is empty (the usual case:
    /// the DNS threads took the last batch's while this one was queued), so the lock is
    /// held for no longer than that.
    pub(crate) fn hand_back(&self, batch: &mut Vec<QueryEvent>) {
        let mut pile = self.pile.lock().unwrap_or_else(|p| p.into_inner());
        if pile.is_empty() {
            std::mem::swap(&mut *pile, batch);
            let extra = pile.len().saturating_sub(Self::MAX);
            batch.extend(pile.drain(..extra));
        } else {
            let room = Self::MAX.saturating_sub(pile.len()).min(batch.len());
            pile.extend(batch.drain(..room));
        }
    }

    /// The DNS side: one event it could not queue (journalled or shed), kept when there is
    /// room and nobody holds the pile (never waits for it); otherwise freed.
    pub(crate) fn give_back(&self, event: QueryEvent) {
        if let Ok(mut pile) = self.pile.try_lock() {
            if pile.len() < Self::MAX {
                pile.push(event);
            }
        }
    }

    /// The DNS side: one stored event, or none when there is none or the writer holds the
    /// pile (never waits for it).
    pub(crate) fn take(&self) -> Option<QueryEvent> {
        self.pile.try_lock().ok()?.pop()
    }

    /// Empties the pile into the caller's hands (the writer's, when no batch has come for a
    /// while: no query is there to be delayed by the frees).
    pub(crate) fn take_all(&self) -> Vec<QueryEvent> {
        std::mem::take(&mut *self.pile.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventName;

    fn event(name: &str) -> QueryEvent {
        crate::store::test_event(EventName::Clear(name.to_string()))
    }

    fn names(events: &[QueryEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| e.name.clone().into_buffer().unwrap())
            .collect()
    }

    /// While the writer holds the queue, a blocked event's push is refused at once (the sink
    /// journals it) and an allowed one's waits and is then queued: neither is lost. Events
    /// come out in arrival order, the writer's empty vector goes in, and a closed queue
    /// returns what it held and takes nothing more.
    #[test]
    fn a_push_waits_only_for_a_swap_and_the_writer_takes_all_in_order() {
        use std::time::Duration;
        let queue = Arc::new(Queue::new(4));
        let held = queue.inner.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let pushers: Vec<_> = [true, false]
            .into_iter()
            .map(|tries| {
                let (queue, tx) = (queue.clone(), tx.clone());
                std::thread::spawn(move || {
                    let pushed = if tries {
                        queue.try_push(event("tried.example"))
                    } else {
                        queue.push(event("waited.example"))
                    };
                    let what = match pushed {
                        Pushed::Queued(n) => format!("queued {n}"),
                        Pushed::Busy(_) => "busy".to_string(),
                        Pushed::Full(_) | Pushed::Closed(_) => "refused".to_string(),
                    };
                    tx.send((tries, what)).unwrap();
                })
            })
            .collect();
        // A try that waited for the lock would still be waiting here.
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(2)),
            Ok((true, "busy".to_string()))
        );
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "the other push waits for the writer"
        );
        drop(held);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok((false, "queued 1".to_string()))
        );
        for pusher in pushers {
            pusher.join().unwrap();
        }

        for (i, name) in ["a.example", "b.example", "c.example"].iter().enumerate() {
            assert!(matches!(queue.try_push(event(name)), Pushed::Queued(n) if n == i + 2));
        }
        assert!(matches!(queue.push(event("d.example")), Pushed::Full(_)));
        assert!(matches!(
            queue.try_push(event("d.example")),
            Pushed::Full(_)
        ));
        assert_eq!(queue.len(), 4);
        let empty: Vec<QueryEvent> = Vec::with_capacity(64);
        let given = empty.as_ptr();
        let taken = queue.take(empty);
        assert_eq!(
            names(&taken),
            ["waited.example", "a.example", "b.example", "c.example"]
        );
        assert_eq!(queue.len(), 0);
        assert!(matches!(queue.push(event("e.example")), Pushed::Queued(1)));
        assert_eq!(
            queue.inner.lock().unwrap().events.as_ptr(),
            given,
            "filled in the writer's allocation"
        );
        assert_eq!(names(&queue.close()), ["e.example"]);
        assert!(matches!(queue.push(event("f.example")), Pushed::Closed(_)));
        assert!(queue.take(Vec::new()).is_empty());
    }

    #[test]
    fn stored_events_are_taken_back_one_at_a_time_up_to_the_bound() {
        let spent = Spent::default();
        assert!(spent.take().is_none());
        let mut batch = vec![event("a.example"), event("b.example")];
        spent.hand_back(&mut batch);
        assert!(batch.is_empty(), "an empty pile takes the whole batch");
        let mut more = vec![event("c.example")];
        spent.hand_back(&mut more);
        assert!(more.is_empty());
        let taken = [spent.take(), spent.take(), spent.take(), spent.take()];
        let taken: Vec<QueryEvent> = taken.into_iter().flatten().collect();
        assert_eq!(names(&taken), ["c.example", "b.example", "a.example"]);

        // Past the bound the caller keeps the rest, whether the pile was empty or not.
        let mut big: Vec<QueryEvent> = (0..Spent::MAX + 3).map(|_| event("x.example")).collect();
        spent.hand_back(&mut big);
        assert_eq!(big.len(), 3);
        let mut one = vec![event("y.example")];
        spent.hand_back(&mut one);
        assert_eq!(one.len(), 1);
        assert_eq!(spent.take_all().len(), Spent::MAX);
        assert!(spent.take().is_none());

        // What the DNS side could not queue goes on the pile, up to the same bound.
        spent.give_back(event("z.example"));
        assert_eq!(names(&[spent.take().unwrap()]), ["z.example"]);
        let mut full: Vec<QueryEvent> = (0..Spent::MAX).map(|_| event("x.example")).collect();
        spent.hand_back(&mut full);
        spent.give_back(event("z.example"));
        let all = spent.take_all();
        assert_eq!(all.len(), Spent::MAX);
        assert!(names(&all).iter().all(|n| n == "x.example"));
    }
}
