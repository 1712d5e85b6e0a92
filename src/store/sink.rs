//! The [`QuerySink`] the DNS path records into, over the queues and the tally of
//! [`super::queue`]; and the stored events it gives back to be filled again ([`Spent`]).

use std::{
    sync::{atomic::Ordering, Arc, Mutex},
    time::SystemTime,
};

use crate::{
    clock::unix_millis,
    config::StoreConfig,
    event::{Disposition, QueryEvent, QuerySink},
};

use super::{queue::Pushed, Shared};

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
        let full = self.shared.allowed_full.load(Ordering::Relaxed);
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
        let pushed = if keep {
            self.shared.blocked.try_push(event)
        } else {
            self.shared.allowed.push(event)
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
                self.shared.allowed_full.store(true, Ordering::Relaxed);
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
    use crate::store::{test_named as event, test_names as names};

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
