//! What the DNS path hands the store's writer through: the event queues ([`Queue`]) and the
//! per-minute tally of allowed queries the log keeps no row of ([`Tally`]). Both are a
//! vector behind a mutex that the writer empties by swapping it for an empty one.

use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use crate::event::{Disposition, QueryEvent};

/// Queries counted per minute on the DNS side ([`crate::event::QuerySink::tally`]) for the
/// writer to add to the per-minute counts: the allowed queries the log keeps no row of. Its
/// lock is only tried: while the writer holds it, the query goes as an event instead.
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
/// with room would take (refused instead, an allowed event went missing from a test's
/// counts, once in a few thousand).
pub(crate) struct Queue {
    inner: Mutex<Inner>,
    capacity: usize,
}

struct Inner {
    events: Vec<QueryEvent>,
    open: bool,
}

/// What a push did: queued the event, or gave it back and why.
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

    fn append(&self, mut inner: MutexGuard<'_, Inner>, event: QueryEvent) -> Pushed {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_named as event, test_names as names};

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
}
