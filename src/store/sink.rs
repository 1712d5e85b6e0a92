//! The [`QuerySink`] the DNS path records into: a non-blocking send, never a wait.

use std::sync::{atomic::Ordering, mpsc, Arc};

use crate::event::{QueryEvent, QuerySink};

use super::{must_keep, Shared};

/// The queue depth at which the sink wakes the writer early. Waking it for every event (as
/// this did at first) cost a context switch per query: on a one-core school server the
/// writer then took half the CPU (profiled under `dnsperf`, 40 % of queries blocked). A few
/// thousand events is a fraction of a batch interval's worth under heavy load and far below
/// the queues' capacity, so nothing waits long and nothing overflows.
pub(crate) const WAKE_AT: i64 = 4096;

pub(crate) struct StoreSink {
    pub enabled: bool,
    pub allowed: mpsc::SyncSender<QueryEvent>,
    pub blocked: mpsc::SyncSender<QueryEvent>,
    /// Woken when the queues reach [`WAKE_AT`] events; otherwise it wakes on its own at the
    /// end of the batch interval.
    pub writer: std::thread::Thread,
    pub shared: Arc<Shared>,
}

impl StoreSink {
    /// Counts one queued event, waking the writer when a batch's worth is waiting.
    fn queued(&self) {
        if self.shared.depth.fetch_add(1, Ordering::Relaxed) + 1 == WAKE_AT {
            self.writer.unpark();
        }
    }
}

impl QuerySink for StoreSink {
    fn record(&self, event: QueryEvent) {
        if !self.enabled {
            return;
        }
        if must_keep(&event) {
            match self.blocked.try_send(event) {
                Ok(()) => self.queued(),
                // Never dropped: the journal file takes it. This path only runs when the
                // writer is far behind (buffered: the writer thread writes the buffer within
                // a batch interval even if no append follows) or gone (written at once).
                Err(mpsc::TrySendError::Full(event)) => self.shared.journal_event(&event),
                Err(mpsc::TrySendError::Disconnected(event)) => {
                    self.shared.journal_events(&[event], false);
                }
            }
        } else {
            match self.allowed.try_send(event) {
                Ok(()) => self.queued(),
                Err(_) => self.shared.metrics.shed.with_label_values(&["full"]).inc(),
            }
        }
    }
}
