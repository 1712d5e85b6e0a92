//! `[store]`: the query log, breaches and audit trail kept in `DATA_DIR/hedgerow.sqlite`.
//!
//! A leaf of the configuration: it knows nothing about the store itself, only the settings
//! the store is opened with.

use std::{collections::BTreeSet, time::Duration};

use serde::Deserialize;
use toml::Spanned;

/// `[store]` exactly as written. The checked values keep their place in the file, so an
/// error names its line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    enabled: bool,
    log_allowed: bool,
    no_allowed_log_groups: Vec<String>,
    retention_allowed_days: Spanned<u32>,
    retention_blocked_days: Spanned<u32>,
    rollup_retention_days: Spanned<u32>,
    breach_window_secs: Spanned<u64>,
    batch_interval_ms: Spanned<u64>,
    channel_capacity: Spanned<usize>,
}

impl Default for RawStore {
    fn default() -> RawStore {
        let d = StoreConfig::default();
        // Defaults are valid, so their (unknown) place is never reported.
        let default = |v| Spanned::new(0..0, v);
        RawStore {
            enabled: d.enabled,
            log_allowed: d.log_allowed,
            no_allowed_log_groups: Vec::new(),
            retention_allowed_days: default(d.retention_allowed_days),
            retention_blocked_days: default(d.retention_blocked_days),
            rollup_retention_days: default(d.rollup_retention_days),
            breach_window_secs: Spanned::new(0..0, d.breach_window.as_secs()),
            batch_interval_ms: Spanned::new(0..0, 200),
            channel_capacity: Spanned::new(0..0, d.channel_capacity),
        }
    }
}

/// The validated `[store]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Keep a query log, breaches and the audit trail at all.
    pub enabled: bool,
    /// Log allowed (not blocked) queries; blocked ones are always logged.
    pub log_allowed: bool,
    /// Groups whose allowed queries are not logged (their blocked ones still are).
    pub no_allowed_log_groups: BTreeSet<String>,
    /// Days allowed queries are kept.
    pub retention_allowed_days: u32,
    /// Days blocked queries are kept (DfE/vendor practice: a school year and more).
    pub retention_blocked_days: u32,
    /// Days per-minute counts are kept.
    pub rollup_retention_days: u32,
    /// Blocked attempts by one device on one site within this window are one breach.
    pub breach_window: Duration,
    /// The longest a finished query waits before it is written (a `kill -9` loses at most
    /// this much).
    pub batch_interval: Duration,
    /// Events the writer's queues hold before allowed queries are shed and blocked ones go to
    /// the journal file.
    pub channel_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            enabled: true,
            log_allowed: true,
            no_allowed_log_groups: BTreeSet::new(),
            retention_allowed_days: 30,
            retention_blocked_days: 365,
            rollup_retention_days: 730,
            breach_window: Duration::from_secs(600),
            batch_interval: Duration::from_millis(200),
            channel_capacity: 65_536,
        }
    }
}

/// Why `[store]` is refused: where in the file, the key, and the reason.
pub(super) type StoreError = (std::ops::Range<usize>, &'static str, String);

impl RawStore {
    /// Checks the values; the error names the offending key and its place in the file.
    pub(super) fn validate(self) -> Result<StoreConfig, StoreError> {
        let retention = "retention must be at least one day";
        for (value, key) in [
            (&self.retention_allowed_days, "store.retention_allowed_days"),
            (&self.retention_blocked_days, "store.retention_blocked_days"),
            (&self.rollup_retention_days, "store.rollup_retention_days"),
        ] {
            if *value.get_ref() == 0 {
                return Err((value.span(), key, retention.into()));
            }
        }
        if *self.breach_window_secs.get_ref() == 0 {
            return Err((
                self.breach_window_secs.span(),
                "store.breach_window_secs",
                "the breach window must be at least one second".into(),
            ));
        }
        if !(10..=5_000).contains(self.batch_interval_ms.get_ref()) {
            return Err((
                self.batch_interval_ms.span(),
                "store.batch_interval_ms",
                "use a value between 10 and 5000 (a kill -9 loses at most this much)".into(),
            ));
        }
        if *self.channel_capacity.get_ref() < 16 {
            return Err((
                self.channel_capacity.span(),
                "store.channel_capacity",
                "use at least 16 (default 65536)".into(),
            ));
        }
        Ok(StoreConfig {
            enabled: self.enabled,
            log_allowed: self.log_allowed,
            no_allowed_log_groups: self.no_allowed_log_groups.into_iter().collect(),
            retention_allowed_days: self.retention_allowed_days.into_inner(),
            retention_blocked_days: self.retention_blocked_days.into_inner(),
            rollup_retention_days: self.rollup_retention_days.into_inner(),
            breach_window: Duration::from_secs(self.breach_window_secs.into_inner()),
            batch_interval: Duration::from_millis(self.batch_interval_ms.into_inner()),
            channel_capacity: self.channel_capacity.into_inner(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::embedded_default();
        assert_eq!(c.store, super::StoreConfig::default());
        let c = Config::from_toml_str(
            "[store]\nlog_allowed = false\nno_allowed_log_groups = [\"staff\"]\nbreach_window_secs = 60\n",
            "s.toml",
        )
        .unwrap();
        assert!(!c.store.log_allowed);
        assert!(c.store.no_allowed_log_groups.contains("staff"));
        assert_eq!(c.store.breach_window.as_secs(), 60);
        let err = Config::from_toml_str("[store]\nretention = 3\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention"), "{err}");
        let err = Config::from_toml_str("[store]\nbatch_interval_ms = 0\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.batch_interval_ms"), "{err}");
    }
}
