//! The failed-filtering-check alert: when a run of the filtering checks finds something that
//! does not work (a blocked category resolving, an allowed name failing, SafeSearch not
//! rewritten), the DSL and the technician hear at once, through the same webhook and email
//! channels as breach alerts.
//!
//! It is sent apart from breach alerts: one message per failed run (weekly, or when someone
//! runs a check), so there is no queue or per-device throttle to share, and breach alerts
//! keep their own path untouched. [`send_check_alert`] blocks while it delivers (with the
//! same retries and waits as breach alerts): call it off the runtime's workers.
//!
//! A check names groups and test names, never a person; an illegal-content probe reaches this
//! module already withheld.

use std::time::SystemTime;

use serde::Serialize;

use super::{
    deliver::{Email, Failure, Webhook},
    message::{local_date, local_hhmm},
    AlertError,
};
use crate::{civil, config::alerts::AlertsConfig, schedule::TimeZone};

/// One item of a run that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckFailure {
    /// The group it was asked as.
    pub group: String,
    /// What it tests, in plain words ("a name from a blocked category is blocked (games)").
    pub what: String,
    /// The name asked (withheld for the illegal-content tier).
    pub probe: String,
    /// What the group should get.
    pub expected: String,
    /// What it got.
    pub observed: String,
}

/// A run of the filtering checks with at least one failure. Plain owned data, built by
/// whoever records the runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckAlert {
    /// The run's number in the store.
    pub run_id: i64,
    /// When it started.
    pub started: SystemTime,
    /// How it came about, in plain words ("on schedule").
    pub trigger: String,
    /// Items that passed.
    pub passed: u32,
    /// Items that failed.
    pub failed: u32,
    /// The failed items.
    pub failures: Vec<CheckFailure>,
    /// Link to the run in the dashboard.
    pub dashboard_url: Option<String>,
}

/// Failed items listed in full in a message; the rest are counted.
const LISTED: usize = 20;

/// "Hedgerow's filtering check 7 (on schedule) found 3 problems: 38 of 41 checks passed."
pub fn check_summary(alert: &CheckAlert) -> String {
    let n = alert.failed;
    format!(
        "Hedgerow's filtering check {} ({}) found {n} problem{}: {} of {} checks passed.",
        alert.run_id,
        alert.trigger,
        if n == 1 { "" } else { "s" },
        alert.passed,
        alert.passed + alert.failed
    )
}

/// The email's subject.
pub fn check_email_subject(alert: &CheckAlert) -> String {
    format!(
        "Hedgerow filtering check failed: {} problem{}",
        alert.failed,
        if alert.failed == 1 { "" } else { "s" }
    )
}

/// The email's plain-text body.
pub fn check_email_body(alert: &CheckAlert, zone: TimeZone) -> String {
    let mut b = check_summary(alert);
    b.push_str(&format!(
        "\n\nWhen: {} on {} (school time).\n\n",
        local_hhmm(alert.started, zone),
        local_date(alert.started, zone)
    ));
    for f in alert.failures.iter().take(LISTED) {
        b.push_str(&format!(
            "- group {}: {}\n  asked {}: expected {}, got {}\n",
            f.group, f.what, f.probe, f.expected, f.observed
        ));
    }
    if alert.failures.len() > LISTED {
        b.push_str(&format!(
            "- and {} more (see the full run)\n",
            alert.failures.len() - LISTED
        ));
    }
    b.push_str(&format!("\nCheck reference: {}\n", alert.run_id));
    if let Some(url) = &alert.dashboard_url {
        b.push_str(&format!("See the full run in the dashboard: {url}\n"));
    }
    b.push_str(
        "\nThe check asks Hedgerow what a device of each group gets. A failure means filtering \
         (or resolving) does not work as configured for that group: please ask your technician \
         to look at it. The DfE filtering standard asks schools to check filtering regularly \
         and to record the checks; this run is recorded.\n",
    );
    b
}

/// The webhook's JSON body.
#[derive(Debug, Serialize)]
struct CheckWebhookBody<'a> {
    /// Always `hedgerow.filtering_check_failed`, so receivers can tell it from a breach.
    event: &'static str,
    run_id: i64,
    started: String,
    trigger: &'a str,
    passed: u32,
    failed: u32,
    failures: &'a [CheckFailure],
    dashboard_url: Option<&'a str>,
    text: String,
}

/// The webhook's JSON body as text.
pub fn check_webhook_json(alert: &CheckAlert) -> String {
    let body = CheckWebhookBody {
        event: "hedgerow.filtering_check_failed",
        run_id: alert.run_id,
        started: civil::format_rfc3339(alert.started),
        trigger: &alert.trigger,
        passed: alert.passed,
        failed: alert.failed,
        failures: &alert.failures,
        dashboard_url: alert.dashboard_url.as_deref(),
        text: check_summary(alert),
    };
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

/// How one channel fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `webhook` or `email`.
    pub channel: &'static str,
    /// `Ok` when delivered; the last failure's reason (never personal data) otherwise.
    pub outcome: Result<(), String>,
}

/// Sends `alert` through every configured channel, each retried as breach alerts are
/// (`tries`, doubling waits). Blocking. Returns how each channel fared (empty when none is
/// configured); a channel that cannot even be set up (an unreadable secret file) is an error.
pub fn send_check_alert(
    config: &AlertsConfig,
    alert: &CheckAlert,
) -> Result<Vec<Delivery>, AlertError> {
    let mut out = Vec::new();
    if let Some(w) = &config.webhook {
        let hook = Webhook::new(w, config.timezone)?;
        let json = check_webhook_json(alert);
        out.push(Delivery {
            channel: "webhook",
            outcome: retry(config, || hook.post(&json)),
        });
    }
    if let Some(e) = &config.email {
        let mail = Email::new(e, config.timezone, config.throttle)?;
        let (subject, body) = (
            check_email_subject(alert),
            check_email_body(alert, config.timezone),
        );
        out.push(Delivery {
            channel: "email",
            outcome: retry(config, || mail.send_text(subject.clone(), body.clone())),
        });
    }
    for d in &out {
        match &d.outcome {
            Ok(()) => tracing::info!(
                run = alert.run_id,
                channel = d.channel,
                "filtering check alert sent"
            ),
            Err(reason) => tracing::warn!(
                run = alert.run_id,
                channel = d.channel,
                "filtering check alert not delivered: {reason}"
            ),
        }
    }
    Ok(out)
}

/// Tries `attempt` up to `config.tries` times with doubling waits; a permanent failure stops
/// at once.
fn retry(config: &AlertsConfig, attempt: impl Fn() -> Result<(), Failure>) -> Result<(), String> {
    let mut wait = config.retry_backoff;
    let tries = config.tries.max(1);
    for n in 1..=tries {
        match attempt() {
            Ok(()) => return Ok(()),
            Err(f) if f.permanent || n == tries => return Err(f.reason),
            Err(_) => {
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
            }
        }
    }
    Err("no attempt was made".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> CheckAlert {
        CheckAlert {
            run_id: 7,
            started: civil::parse_datetime("2026-07-02T09:01:00Z").unwrap(),
            trigger: "on schedule".into(),
            passed: 38,
            failed: 1,
            failures: vec![CheckFailure {
                group: "pupils".into(),
                what: "a name the group should reach resolves".into(),
                probe: "www.bbc.co.uk".into(),
                expected: "resolved".into(),
                observed: "no answer: every upstream failed (SERVFAIL)".into(),
            }],
            dashboard_url: None,
        }
    }

    #[test]
    fn plain_words_and_json() {
        let a = alert();
        assert_eq!(
            check_summary(&a),
            "Hedgerow's filtering check 7 (on schedule) found 1 problem: 38 of 39 checks passed."
        );
        let body = check_email_body(&a, TimeZone::EuropeLondon);
        assert!(
            body.contains("When: 10:01 on Thursday 2 July 2026"),
            "{body}"
        );
        assert!(body.contains("group pupils"), "{body}");
        let json: serde_json::Value = serde_json::from_str(&check_webhook_json(&a)).unwrap();
        assert_eq!(json["event"], "hedgerow.filtering_check_failed");
        assert_eq!(json["failures"][0]["probe"], "www.bbc.co.uk");
        assert_eq!(json["failed"], 1);
    }

    #[test]
    fn no_channel_sends_nothing() {
        let sent = send_check_alert(&AlertsConfig::default(), &alert()).unwrap();
        assert!(sent.is_empty());
    }
}
