//! Rate-limited warnings: at most N a minute per kind of message, then one line saying how
//! many similar warnings were suppressed.
//!
//! Warnings about client traffic (a refused connection, a panic while answering) are cheap
//! for a client to cause; without a limit, one laptop could fill the disk with the log and
//! spend a core writing it.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// The window the limit counts over.
const WINDOW: Duration = Duration::from_secs(60);

/// One kind of warning's budget. Keep one per message kind in a `static`.
pub struct LogLimit {
    /// Names the kind in the "suppressed" line.
    kind: &'static str,
    per_window: u32,
    state: Mutex<State>,
}

struct State {
    /// `None` until the first warning.
    started: Option<Instant>,
    emitted: u32,
    suppressed: u64,
}

impl LogLimit {
    /// A budget of `per_minute` warnings of `kind` a minute.
    pub const fn new(kind: &'static str, per_minute: u32) -> LogLimit {
        LogLimit {
            kind,
            per_window: per_minute,
            state: Mutex::new(State {
                started: None,
                emitted: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether one more warning may be written now. When a new window opens after some were
    /// suppressed, the "suppressed K similar warnings" line is written first.
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state
            .started
            .is_none_or(|started| now.duration_since(started) >= WINDOW)
        {
            if state.suppressed > 0 {
                tracing::warn!(
                    kind = self.kind,
                    suppressed = state.suppressed,
                    "suppressed {} similar warnings in the last minute",
                    state.suppressed
                );
            }
            *state = State {
                started: Some(now),
                emitted: 0,
                suppressed: 0,
            };
        }
        if state.emitted < self.per_window {
            state.emitted += 1;
            true
        } else {
            state.suppressed += 1;
            false
        }
    }

    /// How many warnings the current window has suppressed so far.
    pub fn suppressed(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .suppressed
    }
}

/// `tracing::warn!` through a [`LogLimit`]: `warn_limited!(LIMIT, %error, "message")`.
#[macro_export]
macro_rules! warn_limited {
    ($limit:expr, $($arg:tt)+) => {
        if $limit.allow() {
            tracing::warn!($($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_n_a_minute_then_a_new_window() {
        let limit = LogLimit::new("test", 3);
        let t0 = Instant::now();
        let allowed = (0..10).filter(|_| limit.allow_at(t0)).count();
        assert_eq!(allowed, 3);
        assert_eq!(limit.suppressed(), 7);
        // A minute later the budget is back, and the count starts again.
        assert!(limit.allow_at(t0 + WINDOW));
        assert_eq!(limit.suppressed(), 0);
    }
}
