//! Reads over the day-level aggregates (`migrate::V8`): whole UTC days come from the daily
//! tables and only the partial days at either end of a period from the finer ones (per-minute
//! rollups, blocked rows, breaches), so the result equals reading the finer table over the
//! whole period while a month costs about what its two end days cost.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, SystemTime},
};

use rusqlite::{params_from_iter, types::Value, Connection};

use crate::clock::{from_unix_millis, unix_millis};

use super::{
    bad_label, key_base, severity_of, BreachCount, CaseStatus, CountBy, CountRow, DeviceAttempts,
    StoreError, DAY_MS,
};

/// Minutes in a day.
const DAY_MINUTES: i64 = 1440;

/// A period `[lo, hi)`, in some unit with `per_day` units a day, split at UTC midnights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Split {
    /// The partial day at the start, `[lo, first midnight)`, in the fine unit (may be empty).
    pub head: (i64, i64),
    /// The whole days, `[first, last)`, as day numbers (may be empty).
    pub days: (i64, i64),
    /// The partial day at the end, `[last midnight, hi)`, in the fine unit (may be empty).
    pub tail: (i64, i64),
}

impl Split {
    /// Whole days where there are any, the rest as edges.
    pub(crate) fn at_days(lo: i64, hi: i64, per_day: i64) -> Split {
        // The first midnight at or after `lo`, the last at or before `hi`.
        let first = lo.div_euclid(per_day) + i64::from(lo.rem_euclid(per_day) != 0);
        let last = hi.div_euclid(per_day);
        if first < last {
            Split {
                head: (lo, first * per_day),
                days: (first, last),
                tail: (last * per_day, hi),
            }
        } else {
            Split::fine(lo, hi)
        }
    }

    /// No whole days: everything from the fine table.
    pub(crate) fn fine(lo: i64, hi: i64) -> Split {
        Split {
            head: (lo, hi.max(lo)),
            days: (0, 0),
            tail: (hi, hi),
        }
    }

    /// The six bounds in order (head, days, tail), for `?1`…`?6`.
    fn bounds(self) -> [i64; 6] {
        [
            self.head.0,
            self.head.1,
            self.tail.0,
            self.tail.1,
            self.days.0,
            self.days.1,
        ]
    }
}

/// The minute (from the Unix epoch, as `rollups` counts) an instant falls in.
fn minute(at: SystemTime) -> i64 {
    unix_millis(at).div_euclid(60_000)
}

/// `r (minute, grp, category, disposition, queries, blocks)`: the per-minute rollups of a
/// [`Split`]'s edges (`?1`…`?4`) and the daily rollups of its whole days (`?5`, `?6`), a
/// day's row at the day's first minute.
const ROLLUP_ROWS: &str = "
WITH r (minute, grp, category, disposition, queries, blocks) AS (
    SELECT minute, grp, category, disposition, queries, blocks FROM rollups
    WHERE minute >= ?1 AND minute < ?2
    UNION ALL
    SELECT minute, grp, category, disposition, queries, blocks FROM rollups
    WHERE minute >= ?3 AND minute < ?4
    UNION ALL
    SELECT day * 1440, grp, category, disposition, queries, blocks FROM rollups_daily
    WHERE day >= ?5 AND day < ?6)";

fn count_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Query and block counts over `[since, until)` (whole minutes), most queries first.
pub(crate) fn counts(
    conn: &Connection,
    since: SystemTime,
    until: SystemTime,
    by: CountBy,
) -> Result<Vec<CountRow>, StoreError> {
    let key = match by {
        CountBy::Category => "COALESCE(c.name, 'none')",
        CountBy::Group => "COALESCE(g.name, 'none')",
        CountBy::Disposition => "r.disposition",
    };
    let sql = format!(
        "{ROLLUP_ROWS}
         SELECT {key} AS k, SUM(r.queries), SUM(r.blocks) FROM r
         LEFT JOIN groups g ON g.id = r.grp
         LEFT JOIN categories c ON c.id = r.category
         GROUP BY k ORDER BY SUM(r.queries) DESC, k"
    );
    let split = Split::at_days(minute(since), minute(until), DAY_MINUTES);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(split.bounds(), |r| {
        Ok(CountRow {
            key: r.get(0)?,
            queries: count_u64(r.get(1)?),
            blocks: count_u64(r.get(2)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A step in whole minutes (at least one), and how to split a period for it: the daily
/// rollups serve a step of whole days only (a day never straddles two columns then).
fn step_split(since: SystemTime, until: SystemTime, step: Duration) -> (i64, Split) {
    let step = i64::try_from(step.as_secs() / 60)
        .unwrap_or(i64::MAX)
        .max(1);
    let (lo, hi) = (minute(since), minute(until));
    let split = if step % DAY_MINUTES == 0 {
        Split::at_days(lo, hi, DAY_MINUTES)
    } else {
        Split::fine(lo, hi)
    };
    (step, split)
}

fn bucket_time(minute: i64) -> SystemTime {
    from_unix_millis(minute.saturating_mul(60_000))
}

/// Queries and blocks per `step` over `[since, until)`, oldest first; empty steps absent.
pub(crate) fn series(
    conn: &Connection,
    since: SystemTime,
    until: SystemTime,
    step: Duration,
) -> Result<Vec<(SystemTime, u64, u64)>, StoreError> {
    let (step, split) = step_split(since, until, step);
    let mut stmt = conn.prepare_cached(&format!(
        "{ROLLUP_ROWS}
         SELECT (minute / ?7) * ?7 AS b, SUM(queries), SUM(blocks) FROM r GROUP BY b ORDER BY b"
    ))?;
    let mut args = split.bounds().to_vec();
    args.push(step);
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            bucket_time(r.get(0)?),
            count_u64(r.get(1)?),
            count_u64(r.get(2)?),
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The overview's figures of a period, read in one pass (see [`super::Reader::overview`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Overview {
    /// As [`super::Reader::counts`] by category.
    pub by_category: Vec<CountRow>,
    /// As [`super::Reader::counts`] by group.
    pub by_group: Vec<CountRow>,
    /// As [`super::Reader::counts`] by disposition.
    pub by_disposition: Vec<CountRow>,
    /// As [`super::Reader::series`].
    pub series: Vec<(SystemTime, u64, u64)>,
}

/// Sorted as [`counts`] sorts: most queries first, then by key.
fn count_rows(map: HashMap<String, (u64, u64)>) -> Vec<CountRow> {
    let mut rows: Vec<CountRow> = map
        .into_iter()
        .map(|(key, (queries, blocks))| CountRow {
            key,
            queries,
            blocks,
        })
        .collect();
    rows.sort_by(|a, b| b.queries.cmp(&a.queries).then_with(|| a.key.cmp(&b.key)));
    rows
}

/// Counts by category, group and disposition and the series, from one read of the rollups.
pub(crate) fn overview(
    conn: &Connection,
    since: SystemTime,
    until: SystemTime,
    step: Duration,
) -> Result<Overview, StoreError> {
    let (step, split) = step_split(since, until, step);
    let mut stmt = conn.prepare_cached(&format!(
        "{ROLLUP_ROWS},
         x AS (SELECT (minute / ?7) * ?7 AS b, grp, category, disposition,
                      SUM(queries) AS q, SUM(blocks) AS bl
               FROM r GROUP BY 1, 2, 3, 4)
         SELECT x.b, COALESCE(g.name, 'none'), COALESCE(c.name, 'none'), x.disposition, x.q, x.bl
         FROM x LEFT JOIN groups g ON g.id = x.grp LEFT JOIN categories c ON c.id = x.category"
    ))?;
    let mut args = split.bounds().to_vec();
    args.push(step);
    let mut rows = stmt.query(params_from_iter(args))?;
    let (mut categories, mut groups, mut dispositions) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    let mut series: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let (queries, blocks) = (count_u64(r.get(4)?), count_u64(r.get(5)?));
        for (map, column) in [
            (&mut categories, 2),
            (&mut groups, 1),
            (&mut dispositions, 3),
        ] {
            let c: &mut (u64, u64) = map.entry(r.get::<_, String>(column)?).or_default();
            c.0 += queries;
            c.1 += blocks;
        }
        let s = series.entry(r.get(0)?).or_default();
        s.0 += queries;
        s.1 += blocks;
    }
    Ok(Overview {
        by_category: count_rows(categories),
        by_group: count_rows(groups),
        by_disposition: count_rows(dispositions),
        series: series
            .into_iter()
            .map(|(b, (q, bl))| (bucket_time(b), q, bl))
            .collect(),
    })
}

/// Which attempts of a device to count (the columns of `device_daily`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempts {
    /// Blocked with severity high.
    High,
    /// A way round the filter, with a severity (the checks systems make on their own carry
    /// none).
    Circumvention,
}

impl Attempts {
    /// The condition on a blocked row's shape `s`.
    fn condition(self) -> &'static str {
        match self {
            Attempts::High => "s.severity = 'high'",
            Attempts::Circumvention => "s.reason = 'circumvention' AND s.severity IS NOT NULL",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Attempts::High => "high",
            Attempts::Circumvention => "circumvention",
        }
    }
}

/// Attempts per device over `[since, until)`, most first (ties by label, then key), at most
/// `limit` devices (`None`: all that made any). Whole UTC days come from `device_daily`; the
/// blocked rows of the partial days at either end are read and joined, so the cost grows
/// with the rows in those partial days (`CROSS JOIN`: walk the blocked rows and look each
/// up, not every query of the range; 3 to 5 times faster).
pub(crate) fn device_attempts(
    conn: &Connection,
    which: Attempts,
    since: SystemTime,
    until: SystemTime,
    limit: Option<u32>,
) -> Result<Vec<DeviceAttempts>, StoreError> {
    let split = Split::at_days(unix_millis(since), unix_millis(until), DAY_MS);
    let edge = |a: usize, b: usize| {
        format!(
            "SELECT id.device, COUNT(*) FROM blocked b
             CROSS JOIN queries q ON q.k = b.k JOIN shapes s ON s.id = q.shape
             JOIN idents id ON id.id = q.ident
             WHERE b.k >= ?{a} AND b.k < ?{b} AND {} GROUP BY id.device",
            which.condition()
        )
    };
    let mut stmt = conn.prepare_cached(&format!(
        "WITH c (device, n) AS (
             {} UNION ALL {} UNION ALL
             SELECT device, SUM({}) FROM device_daily WHERE day >= ?5 AND day < ?6
             GROUP BY device)
         SELECT d.label, d.key, SUM(c.n) AS total FROM c JOIN devices d ON d.id = c.device
         GROUP BY c.device HAVING total > 0 ORDER BY total DESC, d.label, d.key LIMIT ?7",
        edge(1, 2),
        edge(3, 4),
        which.column()
    ))?;
    let [h0, h1, t0, t1, d0, d1] = split.bounds();
    let args = [
        key_base(h0),
        key_base(h1),
        key_base(t0),
        key_base(t1),
        d0,
        d1,
        limit.map_or(-1, i64::from),
    ];
    let rows = stmt.query_map(args, |r| {
        Ok(DeviceAttempts {
            device: r.get(0)?,
            device_key: r.get(1)?,
            attempts: count_u64(r.get(2)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The statuses, as an SQL list of our own labels.
pub(super) fn status_list(statuses: impl Iterator<Item = CaseStatus>) -> String {
    statuses
        .map(|s| format!("'{}'", s.label()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Breaches whose first attempt falls in `[since, until)` by category, severity and status,
/// most first. Whole days from `breach_daily`; the partial days from the breaches themselves
/// through `breaches_status_first`.
pub(crate) fn breach_counts(
    conn: &Connection,
    since: SystemTime,
    until: SystemTime,
) -> Result<Vec<BreachCount>, StoreError> {
    let split = Split::at_days(unix_millis(since), unix_millis(until), DAY_MS);
    // `status IN (every status)` lets the index on (status, first) serve the range.
    let statuses = status_list(CaseStatus::ALL.into_iter());
    let edge = |a: usize, b: usize| {
        format!(
            "SELECT COALESCE(category, 0), severity, status, COUNT(*) FROM breaches
             WHERE status IN ({statuses}) AND first >= ?{a} AND first < ?{b} GROUP BY 1, 2, 3"
        )
    };
    let mut stmt = conn.prepare_cached(&format!(
        "WITH x (category, severity, status, n) AS (
             {} UNION ALL {} UNION ALL
             SELECT category, severity, status, SUM(breaches) FROM breach_daily
             WHERE day >= ?5 AND day < ?6 GROUP BY 1, 2, 3)
         SELECT c.name, x.severity, x.status, SUM(x.n) AS n FROM x
         LEFT JOIN categories c ON c.id = x.category
         GROUP BY x.category, x.severity, x.status HAVING n > 0
         ORDER BY n DESC, c.name, x.severity, x.status",
        edge(1, 2),
        edge(3, 4)
    ))?;
    let rows = stmt.query_map(split.bounds(), |r| {
        let severity: String = r.get(1)?;
        let status: String = r.get(2)?;
        Ok(BreachCount {
            category: r.get(0)?,
            severity: severity_of(&severity).ok_or_else(|| bad_label("severity", &severity))?,
            status: CaseStatus::parse(&status).ok_or_else(|| bad_label("status", &status))?,
            breaches: count_u64(r.get(3)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Open breaches by status and the UTC day of their first attempt, relative to `now`'s day:
/// `(status, today, the 7 days before, earlier)`, in status order. From `breach_daily` only.
pub(crate) fn open_breach_days(
    conn: &Connection,
    now: SystemTime,
) -> Result<Vec<(CaseStatus, u64, u64, u64)>, StoreError> {
    let today = unix_millis(now).div_euclid(DAY_MS);
    let mut stmt = conn.prepare_cached(
        "SELECT status, SUM(CASE WHEN day >= ?1 THEN breaches ELSE 0 END),
                SUM(CASE WHEN day < ?1 AND day >= ?2 THEN breaches ELSE 0 END),
                SUM(CASE WHEN day < ?2 THEN breaches ELSE 0 END)
         FROM breach_daily WHERE status <> 'closed' GROUP BY status HAVING SUM(breaches) > 0",
    )?;
    let mut out = stmt
        .query_map([today, today - 7], |r| {
            let status: String = r.get(0)?;
            Ok((
                CaseStatus::parse(&status).ok_or_else(|| bad_label("status", &status))?,
                count_u64(r.get(1)?),
                count_u64(r.get(2)?),
                count_u64(r.get(3)?),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|(s, ..)| CaseStatus::ALL.iter().position(|a| a == s));
    Ok(out)
}

/// The ids of at most `limit` breaches with one of `statuses` and a first attempt in
/// `[since, until)`, newest (or oldest) first: one short walk of `breaches_status_first` per
/// status, never the other breaches. Returns the SQL (a `SELECT id …` for an `IN`) and its
/// arguments `?1`…`?3`.
pub(crate) fn breach_ids(
    statuses: impl Iterator<Item = CaseStatus>,
    since: SystemTime,
    until: SystemTime,
    limit: u32,
    newest_first: bool,
) -> (String, [Value; 3]) {
    let order = if newest_first { "DESC" } else { "ASC" };
    let arms: Vec<String> = statuses
        .map(|s| {
            format!(
                "SELECT id FROM (SELECT id FROM breaches
                 WHERE status = '{}' AND first >= ?1 AND first < ?2
                 ORDER BY first {order}, id {order} LIMIT ?3)",
                s.label()
            )
        })
        .collect();
    (
        arms.join(" UNION ALL "),
        [
            Value::Integer(unix_millis(since)),
            Value::Integer(unix_millis(until)),
            Value::Integer(i64::from(limit)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_splits_at_midnights() {
        // 1.5 days to 4.25 days: half a day, two whole days, a quarter day.
        assert_eq!(
            Split::at_days(6, 17, 4),
            Split {
                head: (6, 8),
                days: (2, 4),
                tail: (16, 17)
            }
        );
        // Aligned ends: no edges.
        assert_eq!(
            Split::at_days(8, 16, 4),
            Split {
                head: (8, 8),
                days: (2, 4),
                tail: (16, 16)
            }
        );
        // Inside one day, or across one midnight only: no whole day.
        assert_eq!(Split::at_days(5, 7, 4), Split::fine(5, 7));
        assert_eq!(Split::at_days(6, 10, 4), Split::fine(6, 10));
        // Backwards: empty.
        assert_eq!(Split::at_days(10, 6, 4).head, (10, 10));
    }
}
