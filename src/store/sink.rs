//! The [`QuerySink`] the DNS path records into: a non-blocking send, never a wait.

use std::sync::{atomic::Ordering, mpsc, Arc};

use crate::event::{QueryEvent, QuerySink};

use super::{must_keep, Shared};

pub(crate) struct StoreSink {
    pub enabled: bool,
    pub allowed: mpsc::SyncSender<QueryEvent>,
    pub blocked: mpsc::SyncSender<QueryEvent>,
    /// Woken after each send; `unpark` is an atomic swap when the writer is already awake.
    pub writer: std::thread::Thread,
    pub shared: Arc<Shared>,
}

impl QuerySink for StoreSink {
    fn record(&self, event: QueryEvent) {
        if !self.enabled {
            return;
        }
        if must_keep(&event) {
            match self.blocked.try_send(event) {
                Ok(()) => {
                    self.shared.depth.fetch_add(1, Ordering::Relaxed);
                    self.writer.unpark();
                }
                // Never dropped: the journal file takes it (one buffered append; this path
                // only runs when the writer is far behind or gone).
                Err(mpsc::TrySendError::Full(event))
                | Err(mpsc::TrySendError::Disconnected(event)) => {
                    self.shared.journal_events(&[event], false);
                }
            }
        } else {
            match self.allowed.try_send(event) {
                Ok(()) => {
                    self.shared.depth.fetch_add(1, Ordering::Relaxed);
                    self.writer.unpark();
                }
                Err(_) => self.shared.metrics.shed.with_label_values(&["full"]).inc(),
            }
        }
    }
}
