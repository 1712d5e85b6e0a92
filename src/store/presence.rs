//! When each device and each name was seen, to the minute: what lets a device's timeline, a
//! person's queries or a name search read only the minutes they appear in, since the
//! `queries` table has no per-row index (see `migrate::V1`).
//!
//! Two tables per kind (`migrate::V9`):
//! - `device_hours (hour, device, minutes)` and `name_hours (hour, name, minutes)`: a
//!   60-bit mask of the minutes of an hour in which the device or name was seen. They are
//!   keyed time first, so the writer's inserts and updates land on the last pages of the
//!   B-tree. Keyed id first (as the per-minute tables before them were), every batch
//!   touched a page per distinct name, all over a file far larger than the page cache: the
//!   writer fell from about 250 thousand rows a second to 50 thousand once the database
//!   passed a gigabyte (benches/README.md, "Store at 100 million queries").
//! - `device_days (device, day)` and `name_days (name, day)`: on which days to look, keyed
//!   id first so a search finds its days in one range read. A row is added once per pair
//!   and day, so these inserts are few after the first minutes of a day.
//!
//! A search reads the matching ids' days, then each of those days' hours by key.
//! Hours and days count from [`super::KEY_EPOCH_MS`], like the minutes of [`super::read::minute_of`].

use std::collections::BTreeMap;

use foldhash::{HashMap, HashSet};

use rusqlite::{params, params_from_iter, types::Value, Connection, OptionalExtension};

use super::StoreError;

const MINUTES_PER_HOUR: i64 = 60;
const MINUTES_PER_DAY: i64 = 1440;
/// Minutes returned by one [`minutes`] call at most; callers page on.
pub(crate) const MINUTES_PER_CALL: usize = 256;

/// Whose presence.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub(crate) enum Of {
    Device,
    Name,
}

impl Of {
    const ALL: [Of; 2] = [Of::Device, Of::Name];

    fn hours(self) -> &'static str {
        match self {
            Of::Device => "device_hours",
            Of::Name => "name_hours",
        }
    }

    fn days(self) -> &'static str {
        match self {
            Of::Device => "device_days",
            Of::Name => "name_days",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Of::Device => "device",
            Of::Name => "name",
        }
    }
}

/// The devices or names a search is about: a query selecting their ids, and its arguments.
pub(crate) struct Source {
    pub of: Of,
    pub ids: &'static str,
    pub args: Vec<Value>,
}

/// Up to [`MINUTES_PER_CALL`] minutes within `[lo, hi]` in which one of `source`'s ids was
/// seen, oldest first when `ascending`, newest first otherwise.
pub(crate) fn minutes(
    conn: &Connection,
    source: &Source,
    lo: i64,
    hi: i64,
    ascending: bool,
) -> Result<Vec<i64>, StoreError> {
    if lo > hi {
        return Ok(Vec::new());
    }
    let of = source.of;
    let sql = format!(
        "SELECT day, {col} FROM {days} WHERE {col} IN ({ids}) AND day >= ? AND day <= ?",
        col = of.column(),
        days = of.days(),
        ids = source.ids,
    );
    let mut args = source.args.clone();
    args.push(Value::Integer(lo.div_euclid(MINUTES_PER_DAY)));
    args.push(Value::Integer(hi.div_euclid(MINUTES_PER_DAY)));
    let mut by_day: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    {
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(args))?;
        while let Some(r) = rows.next()? {
            by_day.entry(r.get(0)?).or_default().push(r.get(1)?);
        }
    }
    let mut mask_of = conn.prepare_cached(&format!(
        "SELECT minutes FROM {} WHERE hour = ?1 AND {} = ?2",
        of.hours(),
        of.column()
    ))?;
    let mut out = Vec::new();
    let mut days: Vec<(i64, Vec<i64>)> = by_day.into_iter().collect();
    if !ascending {
        days.reverse();
    }
    for (day, ids) in days {
        let first_hour = (day * MINUTES_PER_DAY).max(lo) / MINUTES_PER_HOUR;
        let last_hour = ((day + 1) * MINUTES_PER_DAY - 1).min(hi) / MINUTES_PER_HOUR;
        for hour in span(first_hour, last_hour, ascending) {
            let mut mask = 0u64;
            for &id in &ids {
                let m: Option<i64> = mask_of
                    .query_row(params![hour, id], |r| r.get(0))
                    .optional()?;
                mask |= m.unwrap_or(0) as u64;
            }
            let base = hour * MINUTES_PER_HOUR;
            for bit in span(0, MINUTES_PER_HOUR - 1, ascending) {
                let minute = base + bit;
                if mask & (1 << bit) != 0 && (lo..=hi).contains(&minute) {
                    out.push(minute);
                    if out.len() == MINUTES_PER_CALL {
                        return Ok(out);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The hour a minute falls in, and its bit in that hour's mask.
fn hour_and_bit(minute: i64) -> (i64, i64) {
    (
        minute.div_euclid(MINUTES_PER_HOUR),
        minute.rem_euclid(MINUTES_PER_HOUR),
    )
}

/// `lo..=hi`, upwards or downwards.
fn span(lo: i64, hi: i64, ascending: bool) -> impl Iterator<Item = i64> {
    (lo..=hi).map(move |i| if ascending { i } else { lo + hi - i })
}

/// What the writer has already recorded, so a repeated sighting costs a hash lookup.
/// Clearing it is harmless: the writes OR into what is stored.
#[derive(Default)]
pub(crate) struct Seen {
    hours: HashMap<(Of, i64, i64), u64>,
    days: HashSet<(Of, i64, i64)>,
}

impl Seen {
    /// Entries held (for the writer's memory bound).
    pub fn len(&self) -> usize {
        self.hours.len() + self.days.len()
    }

    pub fn clear(&mut self) {
        self.hours.clear();
        self.days.clear();
    }
}

/// One batch's new sightings, written at its end in key order.
#[derive(Default)]
pub(crate) struct Pending {
    hours: BTreeMap<(Of, i64, i64), u64>,
    days: Vec<(Of, i64, i64)>,
}

impl Pending {
    /// Notes that `id` was seen in `minute`.
    pub fn note(&mut self, seen: &mut Seen, of: Of, id: i64, minute: i64) {
        let (hour, bit) = hour_and_bit(minute);
        let mask = seen.hours.entry((of, hour, id)).or_default();
        if *mask & (1 << bit) == 0 {
            *mask |= 1 << bit;
            self.hours.insert((of, hour, id), *mask);
            let day = minute.div_euclid(MINUTES_PER_DAY);
            if seen.days.insert((of, id, day)) {
                self.days.push((of, id, day));
            }
        }
    }

    /// Writes the batch's sightings (each statement prepared once, not once a row).
    pub fn flush(&mut self, conn: &Connection) -> Result<(), StoreError> {
        let hours = |of: Of| {
            conn.prepare_cached(&format!(
                "INSERT INTO {hours} (hour, {col}, minutes) VALUES (?1, ?2, ?3)
                 ON CONFLICT (hour, {col}) DO UPDATE SET minutes = minutes | excluded.minutes",
                hours = of.hours(),
                col = of.column()
            ))
        };
        let days = |of: Of| {
            conn.prepare_cached(&format!(
                "INSERT OR IGNORE INTO {} ({}, day) VALUES (?1, ?2)",
                of.days(),
                of.column()
            ))
        };
        // Indexed by `Of` in declaration order.
        let mut statements = [hours(Of::Device)?, hours(Of::Name)?];
        for ((of, hour, id), mask) in std::mem::take(&mut self.hours) {
            statements[of as usize].execute(params![hour, id, mask as i64])?;
        }
        let mut statements = [days(Of::Device)?, days(Of::Name)?];
        self.days.sort_unstable();
        for (of, id, day) in self.days.drain(..) {
            statements[of as usize].execute(params![id, day])?;
        }
        Ok(())
    }
}

/// Forgets sightings before `minute` (retention). The hour tables lose whole hours, cheaply,
/// at the front of their B-trees; the day tables, keyed by id, are scanned, so only when
/// `days` (the writer does it once a day).
pub(crate) fn prune(conn: &Connection, minute: i64, days: bool) -> Result<(), StoreError> {
    for of in Of::ALL {
        conn.execute(
            &format!("DELETE FROM {} WHERE hour < ?1", of.hours()),
            [minute.div_euclid(MINUTES_PER_HOUR)],
        )?;
        if days {
            conn.execute(
                &format!("DELETE FROM {} WHERE day < ?1", of.days()),
                [minute.div_euclid(MINUTES_PER_DAY)],
            )?;
        }
    }
    Ok(())
}

/// Whether `device` was seen in `minute` or after.
pub(crate) fn device_seen_since(
    conn: &Connection,
    device: i64,
    minute: i64,
) -> Result<bool, StoreError> {
    let day = minute.div_euclid(MINUTES_PER_DAY);
    let later_day: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM device_days WHERE device = ?1 AND day > ?2)")?
        .query_row(params![device, day], |r| r.get(0))?;
    if later_day {
        return Ok(true);
    }
    let source = Source {
        of: Of::Device,
        ids: "?",
        args: vec![Value::Integer(device)],
    };
    Ok(!minutes(conn, &source, minute, (day + 1) * MINUTES_PER_DAY - 1, true)?.is_empty())
}

/// Forgets when `device` was seen before `minute` (erasure).
pub(crate) fn forget_device(conn: &Connection, device: i64, minute: i64) -> Result<(), StoreError> {
    let (hour, bit) = hour_and_bit(minute);
    let day = minute.div_euclid(MINUTES_PER_DAY);
    let days: Vec<i64> = conn
        .prepare_cached("SELECT day FROM device_days WHERE device = ?1 AND day <= ?2")?
        .query_map(params![device, day], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for d in days {
        conn.prepare_cached(
            "DELETE FROM device_hours WHERE hour >= ?1 AND hour < ?2 AND device = ?3",
        )?
        .execute(params![d * 24, (d * 24 + 24).min(hour), device])?;
    }
    // The minutes of the cut's hour before it.
    conn.prepare_cached(
        "UPDATE device_hours SET minutes = minutes & ~((1 << ?3) - 1) WHERE hour = ?1 AND device = ?2",
    )?
    .execute(params![hour, device, bit])?;
    conn.prepare_cached(
        "DELETE FROM device_hours WHERE hour = ?1 AND device = ?2 AND minutes = 0",
    )?
    .execute(params![hour, device])?;
    conn.prepare_cached("DELETE FROM device_days WHERE device = ?1 AND day < ?2")?
        .execute(params![device, day])?;
    // The cut's own day stays listed only if the device was seen on it after the cut.
    let rest = Source {
        of: Of::Device,
        ids: "?",
        args: vec![Value::Integer(device)],
    };
    let day_start = day * MINUTES_PER_DAY;
    if minutes(
        conn,
        &rest,
        day_start,
        day_start + MINUTES_PER_DAY - 1,
        true,
    )?
    .is_empty()
    {
        conn.prepare_cached("DELETE FROM device_days WHERE device = ?1 AND day = ?2")?
            .execute(params![device, day])?;
    }
    Ok(())
}

/// Whether anything records when `device` was seen.
pub(crate) fn device_listed(conn: &Connection, device: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM device_days WHERE device = ?1)")?
        .query_row([device], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::store::migrate;

    /// A small deterministic generator (no dependency for a test).
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn source(of: Of, ids: &[i64]) -> Source {
        Source {
            of,
            ids: "SELECT value FROM json_each(?)",
            args: vec![Value::Text(format!("{ids:?}"))],
        }
    }

    /// Every minute `minutes` returns, paging on as the readers do.
    fn all(conn: &Connection, source: &Source, lo: i64, hi: i64, ascending: bool) -> Vec<i64> {
        let (mut lo, mut hi) = (lo, hi);
        let mut out = Vec::new();
        loop {
            let page = minutes(conn, source, lo, hi, ascending).unwrap();
            assert!(page.len() <= MINUTES_PER_CALL);
            let Some(&last) = page.last() else { break };
            out.extend(page);
            if ascending {
                lo = last + 1;
            } else {
                hi = last - 1;
            }
        }
        out
    }

    fn expected(seen: &BTreeSet<(i64, i64)>, ids: &[i64], lo: i64, hi: i64, asc: bool) -> Vec<i64> {
        let set: BTreeSet<i64> = seen
            .iter()
            .filter(|(id, m)| ids.contains(id) && (lo..=hi).contains(m))
            .map(|&(_, m)| m)
            .collect();
        if asc {
            set.into_iter().collect()
        } else {
            set.into_iter().rev().collect()
        }
    }

    #[test]
    fn finds_every_minute_in_either_direction_across_batches_and_days() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::migrate(&mut conn).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15;
        let mut truth = BTreeSet::new();
        let mut seen = Seen::default();
        let base = 2_000_000; // minutes since the key epoch, any day
        for batch in 0..20 {
            let mut pending = Pending::default();
            for _ in 0..500 {
                let id = (next(&mut state) % 5) as i64;
                let minute = base + (next(&mut state) % (4 * 1440)) as i64;
                pending.note(&mut seen, Of::Name, id, minute);
                truth.insert((id, minute));
            }
            pending.flush(&conn).unwrap();
            if batch % 7 == 3 {
                // The writer's memory may be dropped at any time.
                seen.clear();
            }
        }
        for ids in [&[0][..], &[1, 3], &[4, 2, 0]] {
            for (lo, hi) in [
                (0, i64::MAX / 2),
                (base + 1439, base + 1441),
                (base + 59, base + 3 * 1440 + 61),
                (base + 2 * 1440 + 7, base + 2 * 1440 + 7),
            ] {
                for asc in [true, false] {
                    assert_eq!(
                        all(&conn, &source(Of::Name, ids), lo, hi, asc),
                        expected(&truth, ids, lo, hi, asc),
                        "{ids:?} {lo}..={hi} ascending {asc}"
                    );
                }
            }
        }
        // Devices are separate from names.
        assert!(all(&conn, &source(Of::Device, &[0]), 0, i64::MAX / 2, true).is_empty());
    }

    #[test]
    fn erasure_forgets_the_minutes_before_the_cut_only() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::migrate(&mut conn).unwrap();
        let mut seen = Seen::default();
        let mut pending = Pending::default();
        let base = 3_000_000 - 3_000_000 % 1440; // a day's first minute
        let sightings = [
            base + 5,
            base + 1440 + 70,
            base + 1440 + 95,
            base + 1440 + 100,
        ];
        for m in sightings {
            pending.note(&mut seen, Of::Device, 7, m);
            pending.note(&mut seen, Of::Device, 8, m);
        }
        pending.flush(&conn).unwrap();
        let cut = base + 1440 + 96;
        assert!(device_seen_since(&conn, 7, cut).unwrap());
        forget_device(&conn, 7, cut).unwrap();
        let everything = |id| all(&conn, &source(Of::Device, &[id]), 0, i64::MAX / 2, true);
        assert_eq!(everything(7), vec![base + 1440 + 100]);
        assert_eq!(
            everything(8),
            sightings.to_vec(),
            "another device is untouched"
        );
        assert!(!device_seen_since(&conn, 7, cut + 5).unwrap());
        assert!(device_listed(&conn, 7).unwrap());
        forget_device(&conn, 7, cut + 5).unwrap();
        assert!(everything(7).is_empty());
        assert!(!device_listed(&conn, 7).unwrap());
    }

    #[test]
    fn the_per_minute_tables_of_v8_are_carried_over() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::migrate_to(&mut conn, 8).unwrap();
        let rows = [(1, 100), (1, 101), (1, 159), (1, 1440 * 9 + 3), (2, 100)];
        for (device, minute) in rows {
            conn.execute(
                "INSERT INTO device_minutes (device, minute) VALUES (?1, ?2)",
                [device, minute],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO name_minutes (name, minute) VALUES (?1, ?2)",
                [device + 10, minute],
            )
            .unwrap();
        }
        migrate::migrate(&mut conn).unwrap();
        let truth: BTreeSet<(i64, i64)> = rows.into_iter().collect();
        for asc in [true, false] {
            assert_eq!(
                all(&conn, &source(Of::Device, &[1]), 0, 1 << 40, asc),
                expected(&truth, &[1], 0, 1 << 40, asc)
            );
            assert_eq!(
                all(&conn, &source(Of::Name, &[12]), 0, 1 << 40, asc),
                vec![100]
            );
        }
    }
}
