//! What an alert says: plain words for a teacher in email, JSON for a webhook.
//!
//! The domain is written as the caller gave it: for the illegal tier that is already
//! "withheld (illegal-content list)", and nothing here adds the entry back.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::throttle::Outgoing;
use crate::{civil, event::Severity, schedule::TimeZone};

/// Seconds since the epoch in `zone`'s local time, from the minute of the day the schedule
/// module gives (the offset is whole minutes and under 12 hours for any school's zone).
fn local_secs(at: SystemTime, zone: TimeZone) -> i64 {
    let utc = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let (_, local_minute) = zone.local_week_minute(at);
    let utc_minute = utc.rem_euclid(86_400) / 60;
    let offset = (i64::from(local_minute) - utc_minute + 1440 + 720).rem_euclid(1440) - 720;
    utc + offset * 60
}

/// `HH:MM` in the school's zone.
pub fn local_hhmm(at: SystemTime, zone: TimeZone) -> String {
    let s = local_secs(at, zone).rem_euclid(86_400);
    format!("{:02}:{:02}", s / 3600, s % 3600 / 60)
}

/// `Thursday 26 November 2026` in the school's zone.
pub fn local_date(at: SystemTime, zone: TimeZone) -> String {
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = local_secs(at, zone).div_euclid(86_400);
    let (y, m, d) = civil::civil_from_days(days);
    // 1970-01-01 was a Thursday (Monday = 0 → Thursday = 3).
    let weekday = DAYS[(days + 3).rem_euclid(7) as usize];
    let month = MONTHS[(m as usize).saturating_sub(1) % 12];
    format!("{weekday} {d} {month} {y}")
}

/// How serious the site is, in a teacher's words.
fn risk(severity: Severity) -> &'static str {
    match severity {
        Severity::High => "high-risk",
        Severity::Medium => "harmful",
        Severity::Low => "restricted",
    }
}

/// The one-line summary: "Hedgerow blocked a high-risk site on device PC-12 (pupils):
/// category self-harm, site example.com, 3 attempts (and 7 more attempts since 10:02)."
pub fn summary(out: &Outgoing, zone: TimeZone) -> String {
    let a = &out.alert;
    let mut s = format!(
        "Hedgerow blocked a {} site on device {}",
        risk(a.severity),
        a.device
    );
    if let Some(g) = &a.group {
        s.push_str(&format!(" ({g})"));
    }
    s.push(':');
    if let Some(c) = &a.category {
        s.push_str(&format!(" category {c},"));
    }
    s.push_str(&format!(" site {}", a.domain));
    let n = a.count.max(1);
    s.push_str(&format!(", {n} attempt{}", if n == 1 { "" } else { "s" }));
    if let Some(p) = out.suppressed {
        s.push_str(&format!(
            " (and {} more attempt{} since {})",
            p.attempts,
            if p.attempts == 1 { "" } else { "s" },
            local_hhmm(p.since, zone)
        ));
    }
    s.push('.');
    s
}

/// The email's subject.
pub fn email_subject(out: &Outgoing) -> String {
    format!(
        "Hedgerow safeguarding alert: {} site blocked on {}",
        risk(out.alert.severity),
        out.alert.device
    )
}

/// The email's plain-text body.
pub fn email_body(out: &Outgoing, zone: TimeZone, throttle_minutes: u64) -> String {
    let a = &out.alert;
    let mut b = summary(out, zone);
    b.push_str("\n\n");
    let (first, last) = (local_hhmm(a.first, zone), local_hhmm(a.last, zone));
    let when = if first == last {
        format!("at {first}")
    } else {
        format!("between {first} and {last}")
    };
    b.push_str(&format!(
        "When: {when} on {} (school time).\n",
        local_date(a.first, zone)
    ));
    if let Some(p) = out.suppressed {
        b.push_str(&format!(
            "Earlier attempts: {} more on this device since {} were held back, so that you get \
             one message rather than one per attempt.\n",
            p.attempts,
            local_hhmm(p.since, zone)
        ));
    }
    b.push_str(&format!("Breach reference: {}\n", a.breach_id));
    if let Some(url) = &a.dashboard_url {
        b.push_str(&format!("See the details in the dashboard: {url}\n"));
    }
    b.push_str("\nThe site was not shown on the device. ");
    if throttle_minutes > 0 {
        b.push_str(&format!(
            "Hedgerow sends at most one alert per device every {throttle_minutes} minutes.\n"
        ));
    } else {
        b.push('\n');
    }
    b.push_str(
        "You receive this because you are a safeguarding contact in Hedgerow's configuration.\n",
    );
    b
}

/// The webhook's JSON body.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    /// Always `hedgerow.breach`, so receivers can tell Hedgerow's messages apart.
    pub event: &'static str,
    /// The breach record's id.
    pub breach_id: i64,
    /// The device.
    pub device: &'a str,
    /// The device's group.
    pub group: Option<&'a str>,
    /// The list category.
    pub category: Option<&'a str>,
    /// `high`, `medium` or `low`.
    pub severity: Severity,
    /// The domain, or "withheld (illegal-content list)".
    pub domain: &'a str,
    /// Attempts in this alert.
    pub count: u64,
    /// First attempt, RFC 3339 UTC.
    pub first: String,
    /// Last attempt, RFC 3339 UTC.
    pub last: String,
    /// Link to the breach in the dashboard.
    pub dashboard_url: Option<&'a str>,
    /// Attempts held back since the device's previous alert.
    pub suppressed: Option<WebhookSuppressed>,
    /// The one-line summary in plain words (for chat webhooks that show `text`).
    pub text: String,
}

/// The held-back attempts in a webhook body.
#[derive(Debug, Serialize)]
pub struct WebhookSuppressed {
    /// Attempts held back.
    pub attempts: u64,
    /// Alerts held back.
    pub alerts: u64,
    /// First held-back attempt, RFC 3339 UTC.
    pub since: String,
}

/// The webhook's JSON body as text.
pub fn webhook_json(out: &Outgoing, zone: TimeZone) -> String {
    let a = &out.alert;
    let body = WebhookBody {
        event: "hedgerow.breach",
        breach_id: a.breach_id,
        device: &a.device,
        group: a.group.as_deref(),
        category: a.category.as_deref(),
        severity: a.severity,
        domain: &a.domain,
        count: a.count,
        first: civil::format_rfc3339(a.first),
        last: civil::format_rfc3339(a.last),
        dashboard_url: a.dashboard_url.as_deref(),
        suppressed: out.suppressed.map(|p| WebhookSuppressed {
            attempts: p.attempts,
            alerts: p.alerts,
            since: civil::format_rfc3339(p.since),
        }),
        text: summary(out, zone),
    };
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::alerts::{throttle::Suppressed, BreachAlert};

    #[test]
    fn teacher_words_in_school_time() {
        // 2026-07-02 09:01 UTC is 10:01 BST.
        let t = civil::parse_datetime("2026-07-02T09:01:00Z").unwrap();
        let out = Outgoing {
            alert: BreachAlert {
                breach_id: 42,
                device: "PC-12".into(),
                group: Some("pupils".into()),
                category: Some("self-harm".into()),
                severity: Severity::High,
                domain: "example.com".into(),
                count: 3,
                first: t,
                last: t + Duration::from_secs(60),
                dashboard_url: Some("http://hedgerow.school/breaches/42".into()),
            },
            suppressed: Some(Suppressed {
                attempts: 7,
                alerts: 3,
                since: t + Duration::from_secs(60),
            }),
        };
        let z = TimeZone::EuropeLondon;
        assert_eq!(summary(&out, z), "Hedgerow blocked a high-risk site on device PC-12 (pupils): category self-harm, site example.com, 3 attempts (and 7 more attempts since 10:02).");
        let body = email_body(&out, z, 10);
        assert!(
            body.contains("When: between 10:01 and 10:02 on Thursday 2 July 2026"),
            "{body}"
        );
        assert!(body.contains("Breach reference: 42"), "{body}");
        assert_eq!(local_hhmm(t, TimeZone::Fixed(0)), "09:01");
        let json: serde_json::Value = serde_json::from_str(&webhook_json(&out, z)).unwrap();
        assert_eq!(json["suppressed"]["attempts"], 7);
        assert_eq!(json["first"], "2026-07-02T09:01:00Z");
        assert_eq!(json["severity"], "high");
    }
}
