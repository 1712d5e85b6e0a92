//! Graceful shutdown for the DNS listeners: every query in flight holds a token; draining
//! stops new queries and waits until the last token is dropped (or the grace period ends).
//!
//! The count lives in tokio-util's [`TaskTracker`], which wakes the waiter when it reaches
//! zero, so nothing polls a counter (mini-redis's `Shutdown` does the same with a channel).

use std::time::Duration;

use tokio_util::task::{task_tracker::TaskTrackerToken, TaskTracker};

/// Tracks queries in flight.
#[derive(Clone, Default)]
pub(crate) struct Drain {
    tracker: TaskTracker,
}

impl Drain {
    /// Registers a query; `None` once draining has begun (the query is dropped unanswered,
    /// so the client asks its other server).
    pub(crate) fn enter(&self) -> Option<TaskTrackerToken> {
        if self.tracker.is_closed() {
            return None;
        }
        Some(self.tracker.token())
    }

    /// Whether draining has begun (for answers that need no token: nothing waits on them).
    pub(crate) fn draining(&self) -> bool {
        self.tracker.is_closed()
    }

    /// Refuses new queries and waits up to `grace` for those in flight; returns how many were
    /// still running when the grace period ended.
    pub(crate) async fn drain(&self, grace: Duration) -> usize {
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
        self.tracker.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_the_last_query_and_refuses_new_ones() {
        let drain = Drain::default();
        let token = drain.enter().unwrap();
        let waiter = {
            let drain = drain.clone();
            tokio::spawn(async move { drain.drain(Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        assert!(drain.enter().is_none(), "no new queries while draining");
        drop(token);
        assert_eq!(waiter.await.unwrap(), 0);
        // A query that never finishes is abandoned after the grace period.
        let drain = Drain::default();
        let _stuck = drain.enter().unwrap();
        assert_eq!(drain.drain(Duration::from_millis(20)).await, 1);
    }
}
