//! Time: the school's clock and weekly windows ("games allowed 12:00–13:00 on weekdays").
//!
//! Schools in the UK run on Europe/London time, so that zone's rules (BST from 01:00 UTC on the
//! last Sunday of March to 01:00 UTC on the last Sunday of October) are built in, with `UTC`
//! and fixed offsets for anything else. No time-zone database is needed.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::civil::{civil_from_days, days_from_civil};

/// The school's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeZone {
    /// GMT in winter, BST in summer.
    #[default]
    EuropeLondon,
    /// A fixed offset from UTC, in minutes (`UTC` is 0).
    Fixed(i32),
}

impl std::str::FromStr for TimeZone {
    type Err = String;

    /// `Europe/London`, `UTC`, or `+HH:MM` / `-HH:MM`.
    fn from_str(s: &str) -> Result<TimeZone, String> {
        match s {
            "Europe/London" => return Ok(TimeZone::EuropeLondon),
            "UTC" | "Etc/UTC" | "GMT" => return Ok(TimeZone::Fixed(0)),
            _ => {}
        }
        let bad = || format!("`{s}`: use Europe/London, UTC or an offset like +01:00");
        let (sign, rest) = match s.as_bytes().first() {
            Some(b'+') => (1, &s[1..]),
            Some(b'-') => (-1, &s[1..]),
            _ => return Err(bad()),
        };
        let minutes = parse_hhmm(rest).ok_or_else(bad)?;
        Ok(TimeZone::Fixed(sign * i32::from(minutes)))
    }
}

impl TimeZone {
    /// Minutes to add to UTC at `unix` seconds.
    fn offset_minutes(self, unix: i64) -> i32 {
        match self {
            TimeZone::Fixed(m) => m,
            TimeZone::EuropeLondon => {
                let (year, _, _) = civil_from_days(unix.div_euclid(86_400));
                let start = last_sunday_0100_utc(year, 3);
                let end = last_sunday_0100_utc(year, 10);
                if (start..end).contains(&unix) {
                    60
                } else {
                    0
                }
            }
        }
    }

    /// The wall-clock time in this zone at `at`, as seconds counted as if that wall-clock
    /// time were UTC (so `div_euclid(86_400)` is the local day, as days since 1970-01-01).
    pub fn local_secs(self, at: SystemTime) -> i64 {
        let unix = match at.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        unix + i64::from(self.offset_minutes(unix)) * 60
    }

    /// The Unix seconds at which the wall clock in this zone shows `local` (counted as in
    /// [`TimeZone::local_secs`]). A time the clocks skip (01:30 on the last Sunday of March
    /// in the UK) is taken at the offset before the change; a time they show twice, at its
    /// first showing. Midnight and school hours are never either in the UK.
    pub fn utc_of_local(self, local: i64) -> i64 {
        // The offset is the one in force either a day before or a day after: try both.
        let before = i64::from(self.offset_minutes(local - 86_400)) * 60;
        let after = i64::from(self.offset_minutes(local + 86_400)) * 60;
        let mut candidates = [local - before, local - after];
        candidates.sort_unstable();
        candidates
            .into_iter()
            .find(|&utc| utc + i64::from(self.offset_minutes(utc)) * 60 == local)
            .unwrap_or(local - before)
    }

    /// (weekday Monday = 0, minute of the day) in this zone.
    pub fn local_week_minute(self, at: SystemTime) -> (u8, u16) {
        let local = self.local_secs(at);
        let days = local.div_euclid(86_400);
        // 1970-01-01 was a Thursday (Monday = 0 → Thursday = 3).
        let weekday = (days + 3).rem_euclid(7) as u8;
        let minute = (local.rem_euclid(86_400) / 60) as u16;
        (weekday, minute)
    }
}

/// `HH:MM` → minutes since midnight (`24:00` allowed as the end of the day).
pub fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

/// Unix seconds of 01:00 UTC on the last Sunday of `month` (March and October have 31 days).
fn last_sunday_0100_utc(year: i64, month: u32) -> i64 {
    let last = days_from_civil(year, month, 31);
    let weekday = (last + 3).rem_euclid(7); // Monday = 0, Sunday = 6
    let sunday = last - (weekday + 1) % 7;
    sunday * 86_400 + 3_600
}

/// A weekly window: days of the week and a time span in the school's zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Bit 0 = Monday … bit 6 = Sunday.
    pub days: u8,
    /// Start, minutes after midnight.
    pub from: u16,
    /// End (exclusive), minutes after midnight; a window past midnight has `to < from`.
    pub to: u16,
    /// The zone the times are in.
    pub zone: TimeZone,
}

impl Window {
    /// Whether `at` falls inside the window.
    pub fn contains(&self, at: SystemTime) -> bool {
        let (day, minute) = self.zone.local_week_minute(at);
        let on = |d: u8| self.days & (1 << (d % 7)) != 0;
        if self.from <= self.to {
            on(day) && (self.from..self.to).contains(&minute)
        } else {
            // Overnight: the part after midnight belongs to the previous day's window.
            (on(day) && minute >= self.from) || (on((day + 6) % 7) && minute < self.to)
        }
    }

    /// Parses day names (`mon`…`sun`, `weekdays`, `weekend`, `all`).
    pub fn parse_days(names: &[String]) -> Result<u8, String> {
        let mut bits = 0u8;
        for n in names {
            bits |= match n.to_ascii_lowercase().as_str() {
                "mon" | "monday" => 1,
                "tue" | "tuesday" => 2,
                "wed" | "wednesday" => 4,
                "thu" | "thursday" => 8,
                "fri" | "friday" => 16,
                "sat" | "saturday" => 32,
                "sun" | "sunday" => 64,
                "weekdays" => 31,
                "weekend" => 96,
                "all" | "every day" => 127,
                other => {
                    return Err(format!(
                        "`{other}` is not a day (mon … sun, weekdays, weekend)"
                    ))
                }
            };
        }
        Ok(bits)
    }
}

/// A window during which some categories are not blocked for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// When.
    pub window: Window,
    /// Category bits unblocked in the window.
    pub categories: u32,
}

impl Schedule {
    /// The categories free at `at` under any of `schedules`.
    pub fn free_categories(schedules: &[Schedule], at: SystemTime) -> u32 {
        schedules
            .iter()
            .filter(|s| s.window.contains(at))
            .fold(0, |acc, s| acc | s.categories)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn london_switches_on_the_last_sundays() {
        // 2026-03-29 is the last Sunday of March: BST from 01:00 UTC.
        let before = 1_774_745_999; // 2026-03-29T00:59:59Z
        let after = 1_774_746_000; // 2026-03-29T01:00:00Z
        assert_eq!(
            TimeZone::EuropeLondon.local_week_minute(at(before)),
            (6, 59)
        );
        assert_eq!(
            TimeZone::EuropeLondon.local_week_minute(at(after)),
            (6, 120)
        );
        // 2026-10-25 01:00Z back to GMT.
        assert_eq!(
            TimeZone::EuropeLondon.local_week_minute(at(1_792_890_000)),
            (6, 60)
        );
        assert_eq!(
            TimeZone::EuropeLondon.local_week_minute(at(1_792_889_999)),
            (6, 119)
        );
    }

    #[test]
    fn windows_on_weekdays_and_overnight() {
        let lunch = Window {
            days: Window::parse_days(&["weekdays".into()]).unwrap(),
            from: parse_hhmm("12:00").unwrap(),
            to: parse_hhmm("13:00").unwrap(),
            zone: TimeZone::EuropeLondon,
        };
        // Monday 2026-11-23 12:30 GMT = 12:30Z.
        let monday_1230 = 1_795_437_000;
        assert!(lunch.contains(at(monday_1230)));
        assert!(!lunch.contains(at(monday_1230 + 3600)));
        // Saturday.
        assert!(!lunch.contains(at(monday_1230 + 5 * 86_400)));
        let night = Window {
            days: 1,
            from: 22 * 60,
            to: 6 * 60,
            zone: TimeZone::Fixed(0),
        };
        // Monday 23:00 and Tuesday 05:00 are in; Tuesday 23:00 is not.
        let monday_0000 = 1_795_392_000;
        assert!(night.contains(at(monday_0000 + 23 * 3600)));
        assert!(night.contains(at(monday_0000 + 29 * 3600)));
        assert!(!night.contains(at(monday_0000 + 47 * 3600)));
        assert_eq!("+05:30".parse::<TimeZone>(), Ok(TimeZone::Fixed(330)));
        assert!("Mars/Olympus".parse::<TimeZone>().is_err());
    }
}
