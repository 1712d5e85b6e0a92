//! Dates as people type and read them (UTC), without a date-time dependency.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::{from_unix_millis, unix_millis};

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `2026-11-29T12:47:45Z`.
pub fn format_datetime(at: SystemTime) -> String {
    let ms = unix_millis(at);
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// `2026-11-29`.
pub fn format_date(at: SystemTime) -> String {
    format_datetime(at)[..10].to_string()
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM`, `YYYY-MM-DD HH:MM:SS` (UTC; a trailing `Z` is
/// allowed).
pub fn parse_datetime(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("`{text}` is not a date like 2026-09-01 or 2026-09-01T13:30");
    let t = text.trim().trim_end_matches(['Z', 'z']);
    let (date, clock) = match t.split_once(['T', 't', ' ']) {
        Some((d, c)) => (d, Some(c)),
        None => (t, None),
    };
    let mut parts = date.split('-');
    let y: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let m: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let d: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    if parts.next().is_some()
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || !(1970..=9999).contains(&y)
    {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(c) = clock {
        let f: Vec<&str> = c.split(':').collect();
        if !(2..=3).contains(&f.len()) {
            return Err(bad());
        }
        let num = |s: &str, max: i64| s.parse::<i64>().ok().filter(|v| (0..max).contains(v));
        let h = num(f[0], 24).ok_or_else(bad)?;
        let mi = num(f[1], 60).ok_or_else(bad)?;
        let s = match f.get(2) {
            Some(s) => num(s, 61).ok_or_else(bad)?,
            None => 0,
        };
        secs += h * 3600 + mi * 60 + s;
    }
    Ok(from_unix_millis(secs * 1000))
}

/// `days` days before `at`.
pub fn days_before(at: SystemTime, days: u64) -> SystemTime {
    at.checked_sub(Duration::from_secs(days * 86_400))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = parse_datetime("2026-11-29T12:47:45Z").unwrap();
        assert_eq!(format_datetime(t), "2026-11-29T12:47:45Z");
        assert_eq!(
            format_date(parse_datetime("2024-02-29").unwrap()),
            "2024-02-29"
        );
        assert_eq!(parse_datetime("1970-01-01").unwrap(), UNIX_EPOCH);
        assert!(parse_datetime("2026-13-01").is_err());
        assert!(parse_datetime("yesterday").is_err());
        assert_eq!(
            parse_datetime("2026-09-01 13:30").unwrap(),
            parse_datetime("2026-09-01T13:30:00").unwrap()
        );
    }
}
