//! The one clock: where "now" comes from for schedules, grants, audit records and the store.
//! Tests inject a fixed or stepped instant; production uses the system clock.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

/// Where "now" comes from.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// The real clock.
    pub fn system() -> Clock {
        Clock(Arc::new(SystemTime::now))
    }

    /// A clock that reads `now` (tests: a fixed or stepped instant).
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// Now.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }

    /// Now in whole seconds since the Unix epoch (0 before it).
    pub fn unix_secs(&self) -> u64 {
        unix_secs(self.now())
    }

    /// Now in milliseconds since the Unix epoch (0 before it).
    pub fn unix_millis(&self) -> i64 {
        unix_millis(self.now())
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// `at` in whole seconds since the Unix epoch (0 before it).
pub fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `at` in milliseconds since the Unix epoch (0 before it).
pub fn unix_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The instant `millis` after the Unix epoch (the epoch for negative values).
pub fn from_unix_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_clock_and_conversions() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let clock = Clock::from_fn(move || at);
        assert_eq!(clock.unix_secs(), 1_700_000_000);
        assert_eq!(clock.unix_millis(), 1_700_000_000_123);
        assert_eq!(from_unix_millis(clock.unix_millis()), at);
        assert_eq!(unix_secs(UNIX_EPOCH - std::time::Duration::from_secs(5)), 0);
    }
}
