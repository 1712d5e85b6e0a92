//! Calendar time in UTC without a date library: reading the timestamps DHCP servers, session
//! exports and the sessions API write, and writing RFC 3339 for webhooks.
//!
//! This module is a leaf: it imports nothing from the crate, so the configuration, the
//! identity readers and the alerts can all use it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Unix seconds → the instant (before the epoch too).
pub fn from_unix_secs(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Unix seconds of a UTC date and time, checking every field's range (leap seconds are not
/// accepted: no DHCP server or session export writes them).
pub fn utc_secs(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    let valid = (1..=12).contains(&mo)
        && (1..=days_in_month(y, mo)).contains(&d)
        && h < 24
        && mi < 60
        && s < 60;
    valid.then(|| {
        days_from_civil(y, mo, d) * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)
    })
}

/// Parses `text` as a number of exactly `digits` ASCII digits.
fn digits(text: &str, digits: usize) -> Option<u32> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD` (or with `/`, as ISC dhcpd writes it) → (year, month, day).
fn parse_date(text: &str, sep: char) -> Option<(i64, u32, u32)> {
    let mut it = text.split(sep);
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    Some((i64::from(digits(y, 4)?), digits(m, 2)?, digits(d, 2)?))
}

/// `HH:MM` or `HH:MM:SS` (fractions of a second after `.` are dropped) → (h, m, s).
fn parse_time(text: &str) -> Option<(u32, u32, u32)> {
    let text = text.split_once('.').map_or(text, |(whole, frac)| {
        if frac.bytes().all(|b| b.is_ascii_digit()) && !frac.is_empty() {
            whole
        } else {
            // Not a fraction: leave it in so the parse below fails.
            text
        }
    });
    let mut it = text.split(':');
    let (h, m) = (digits(it.next()?, 2)?, digits(it.next()?, 2)?);
    let s = match it.next() {
        Some(s) => digits(s, 2)?,
        None => 0,
    };
    if it.next().is_some() {
        return None;
    }
    Some((h, m, s))
}

/// A date and time in UTC as `YYYY/MM/DD HH:MM:SS` (ISC dhcpd's lease file).
pub fn parse_slash_utc(date: &str, time: &str) -> Option<SystemTime> {
    let (y, mo, d) = parse_date(date, '/')?;
    let (h, mi, s) = parse_time(time)?;
    utc_secs(y, mo, d, h, mi, s).map(from_unix_secs)
}

/// RFC 3339 (`2026-11-26T08:01:02Z`, `…+01:00`, fractions allowed) or `YYYY-MM-DD HH:MM[:SS]`
/// taken as UTC: what session exports and login scripts write.
///
/// ```
/// use hedgerow::civil::{parse_datetime, format_rfc3339};
/// let a = parse_datetime("2026-11-26T09:01:02+01:00").unwrap();
/// assert_eq!(format_rfc3339(a), "2026-11-26T08:01:02Z");
/// assert_eq!(parse_datetime("2026-11-26 08:01").unwrap(), parse_datetime("2026-11-26T08:01:00Z").unwrap());
/// assert!(parse_datetime("2026-02-30 08:01").is_err());
/// ```
pub fn parse_datetime(text: &str) -> Result<SystemTime, String> {
    let bad =
        || format!("`{text}` is not a time like 2026-11-26T08:01:02Z or 2026-11-26 08:01 (UTC)");
    let text = text.trim();
    let (date, rest) = text.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let (y, mo, d) = parse_date(date, '-').ok_or_else(bad)?;
    // The offset, if any: `Z`, or `+HH:MM` / `-HH:MM` after the time.
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(at) = rest.rfind(['+', '-']) {
        let (t, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':').ok_or_else(bad)?;
        let (oh, om) = (
            digits(oh, 2).ok_or_else(bad)?,
            digits(om, 2).ok_or_else(bad)?,
        );
        if oh > 23 || om > 59 {
            return Err(bad());
        }
        (t, sign * (i64::from(oh) * 3600 + i64::from(om) * 60))
    } else if text.contains('T') || text.contains('t') {
        // RFC 3339 needs an offset; without one the writer's zone is unknown.
        return Err(format!(
            "`{text}` has no time zone: add `Z` for UTC or an offset like +01:00"
        ));
    } else {
        (rest, 0)
    };
    let (h, mi, s) = parse_time(time).ok_or_else(bad)?;
    let secs = utc_secs(y, mo, d, h, mi, s).ok_or_else(bad)?;
    Ok(from_unix_secs(secs - offset_secs))
}

/// `at` as RFC 3339 in UTC, whole seconds (`2026-11-26T08:01:02Z`).
pub fn format_rfc3339(at: SystemTime) -> String {
    let secs = match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let day = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

/// `at`'s date in UTC (`2026-11-26`).
pub fn format_date(at: SystemTime) -> String {
    let mut text = format_rfc3339(at);
    text.truncate(10);
    text
}

/// `days` whole days before `at` (the epoch at the earliest).
pub fn days_before(at: SystemTime, days: u64) -> SystemTime {
    at.checked_sub(Duration::from_secs(days.saturating_mul(86_400)))
        .unwrap_or(UNIX_EPOCH)
}

/// A day as people type it on the command line (`2026-09-01`, midnight UTC), or a time as
/// [`parse_datetime`] reads it.
///
/// ```
/// use hedgerow::civil::{parse_day_or_datetime, format_rfc3339};
/// let a = parse_day_or_datetime("2026-09-01").unwrap();
/// assert_eq!(format_rfc3339(a), "2026-09-01T00:00:00Z");
/// assert!(parse_day_or_datetime("2026-09-31").is_err());
/// ```
pub fn parse_day_or_datetime(text: &str) -> Result<SystemTime, String> {
    let t = text.trim();
    match parse_date(t, '-') {
        Some((y, mo, d)) => utc_secs(y, mo, d, 0, 0, 0)
            .map(from_unix_secs)
            .ok_or_else(|| format!("`{text}` is not a day like 2026-09-01")),
        None => parse_datetime(t),
    }
}

/// `at` to the minute in UTC, as people read it in the audit trail
/// (`2026-11-29 16:00 UTC`).
///
/// ```
/// use hedgerow::civil::{format_minute, parse_datetime};
/// let at = parse_datetime("2026-11-29T16:00:59Z").unwrap();
/// assert_eq!(format_minute(at), "2026-11-29 16:00 UTC");
/// ```
pub fn format_minute(at: SystemTime) -> String {
    let text = format_rfc3339(at);
    format!("{} {} UTC", &text[..10], &text[11..16])
}

/// A period as people type it on the command line: a whole number and a unit, `30m`, `1h`,
/// `2d` or `1w` (also `90s`; the caller decides the least it accepts).
///
/// ```
/// use std::time::Duration;
/// use hedgerow::civil::parse_period;
/// assert_eq!(parse_period("90m"), Ok(Duration::from_secs(5400)));
/// assert_eq!(parse_period("2d"), Ok(Duration::from_secs(172_800)));
/// assert!(parse_period("1.5h").is_err());
/// assert!(parse_period("h").is_err());
/// ```
pub fn parse_period(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a period like 30m, 1h, 2d or 1w");
    let t = text.trim();
    let unit_at = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = t.split_at(unit_at);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// A period in plain words, in its largest whole unit (`1 hour`, `90 minutes`, `2 days`).
///
/// ```
/// use std::time::Duration;
/// use hedgerow::civil::describe_period;
/// assert_eq!(describe_period(Duration::from_secs(3600)), "1 hour");
/// assert_eq!(describe_period(Duration::from_secs(5400)), "90 minutes");
/// assert_eq!(describe_period(Duration::from_secs(172_800)), "2 days");
/// ```
pub fn describe_period(period: Duration) -> String {
    let secs = period.as_secs();
    let (n, unit) = [(86_400, "day"), (3600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| secs >= *size && secs.is_multiple_of(*size))
        .map_or((secs, "second"), |(size, unit)| (secs / size, unit));
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let t = parse_datetime("2024-02-29T23:59:59.250Z").unwrap();
        assert_eq!(format_rfc3339(t), "2024-02-29T23:59:59Z");
        assert_eq!(
            parse_datetime("2026-11-26 08:01:02").unwrap(),
            parse_datetime("2026-11-26T03:01:02-05:00").unwrap()
        );
        for bad in [
            "2026-11-26",
            "2026-11-26T08:01:02",
            "2026-13-01 00:00",
            "2026-11-26 24:00",
            "26-11-26 08:00",
            "2026-11-26 08:00+1",
            "tomorrow",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_slash_utc("2026/11/26", "08:01:02").map(format_rfc3339),
            Some("2026-11-26T08:01:02Z".into())
        );
        assert_eq!(format_rfc3339(from_unix_secs(-1)), "1969-12-31T23:59:59Z");
    }
}
