//! Typed, paged reads on read-only connections, for the dashboard and the command line.
//! Synchronous: call them through `spawn_blocking`, never on a runtime worker.
//!
//! Paging is by key (keyset): a page ends with the key to pass as `before` for the next,
//! so page 1,000 costs what page 1 does.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use rusqlite::{params_from_iter, types::Value, Connection, OptionalExtension, Row};

use crate::{
    clock::{from_unix_millis, unix_millis, Clock},
    event::{BlockReason, Disposition, Severity, Transport},
};

use super::{
    audit, bad_label, daily, disposition_of, key_base, key_millis, open_read,
    presence::{self, Of, Source},
    reason_of, severity_of, transport_of, AuditEntry, AuditKind, CaseStatus, ChainReport, Overview,
    StoreError, DAY_MS,
};

/// One logged query, as a person sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRow {
    /// Its key (for paging and links).
    pub key: i64,
    /// When it arrived (millisecond precision).
    pub at: SystemTime,
    /// The device at that time, as shown to people (DHCP host names can repeat).
    pub device: String,
    /// The device's unique key (`device:NAME`, `mac:…`, `host:…`, `ip:…`), for links and
    /// filters that must not mix up two devices with the same name.
    pub device_key: String,
    /// The client's address.
    pub ip: String,
    /// The signed-in user at that time, if known.
    pub user: Option<String>,
    /// The client's group.
    pub group: Option<String>,
    /// The name, or [`super::WITHHELD`].
    pub name: String,
    /// Question type (numeric).
    pub qtype: u16,
    /// UDP or TCP.
    pub transport: Transport,
    /// How it was answered.
    pub disposition: Disposition,
    /// Why it was blocked.
    pub reason: Option<BlockReason>,
    /// Blocking categories.
    pub category: Option<String>,
    /// The rule, in plain words.
    pub rule: Option<String>,
    /// Safeguarding severity.
    pub severity: Option<Severity>,
    /// Response code (numeric).
    pub rcode: u16,
    /// Time to answer.
    pub duration: Duration,
}

/// Which queries to read. Every field narrows; the default is everything.
#[derive(Debug, Clone, Default)]
pub struct QueryFilter {
    /// A name and its subdomains.
    pub name: Option<String>,
    /// A device: its key, or its label (which may match several devices).
    pub device: Option<String>,
    /// A user name.
    pub user: Option<String>,
    /// A group.
    pub group: Option<String>,
    /// A blocking category (exact).
    pub category: Option<String>,
    /// One disposition.
    pub disposition: Option<Disposition>,
    /// Blocked queries only.
    pub blocked_only: bool,
    /// From (inclusive).
    pub since: Option<SystemTime>,
    /// Until (exclusive).
    pub until: Option<SystemTime>,
}

/// A page of queries, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPage {
    /// The rows.
    pub rows: Vec<QueryRow>,
    /// Pass as `before` for the next (older) page; `None` on the last page.
    pub next: Option<i64>,
}

/// One breach, for lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachSummary {
    /// Its number.
    pub id: i64,
    /// The device, as shown to people.
    pub device: String,
    /// The device's unique key (see [`QueryRow::device_key`]).
    pub device_key: String,
    /// The user at the first attempt, if known.
    pub user: Option<String>,
    /// The group.
    pub group: Option<String>,
    /// The site (registrable domain), or "withheld".
    pub domain: String,
    /// The blocking category.
    pub category: Option<String>,
    /// The worst severity.
    pub severity: Severity,
    /// First attempt.
    pub first: SystemTime,
    /// Latest attempt.
    pub last: SystemTime,
    /// Attempts.
    pub count: u64,
    /// Case status.
    pub status: CaseStatus,
    /// Case notes.
    pub notes: String,
    /// Escalated to whom.
    pub escalated_to: Option<String>,
    /// Parents informed: when and by whom.
    pub parents_informed: Option<(SystemTime, String)>,
    /// Outcome.
    pub outcome: Option<String>,
}

/// One change to a breach's case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachHistory {
    /// When.
    pub at: SystemTime,
    /// Who.
    pub actor: String,
    /// What, in plain words.
    pub change: String,
}

/// One breach with its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachDetail {
    /// The breach.
    pub breach: BreachSummary,
    /// Its blocked queries, oldest first.
    pub queries: Vec<QueryRow>,
    /// The device's queries in the minutes around it, oldest first.
    pub around: Vec<QueryRow>,
    /// The case history, oldest first.
    pub history: Vec<BreachHistory>,
}

/// Which breaches to list. Every field narrows.
#[derive(Debug, Clone, Default)]
pub struct BreachFilter {
    /// Case status.
    pub status: Option<CaseStatus>,
    /// Severity.
    pub severity: Option<Severity>,
    /// Category (exact).
    pub category: Option<String>,
    /// Group.
    pub group: Option<String>,
    /// Device: its key or its label.
    pub device: Option<String>,
    /// The signed-in person at the first attempt.
    pub user: Option<String>,
    /// Latest attempt at or after.
    pub since: Option<SystemTime>,
    /// First attempt before.
    pub until: Option<SystemTime>,
}

/// What to count by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountBy {
    /// Blocking category ("none" for queries without one).
    Category,
    /// Group ("none" outside every group).
    Group,
    /// Disposition.
    Disposition,
}

/// Counts for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    /// The category, group or disposition.
    pub key: String,
    /// Queries.
    pub queries: u64,
    /// Of which blocked.
    pub blocks: u64,
}

/// Blocked attempts of one device over a period (see [`Reader::high_severity_devices`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAttempts {
    /// The device, as shown to people.
    pub device: String,
    /// The device's unique key (see [`QueryRow::device_key`]).
    pub device_key: String,
    /// Attempts.
    pub attempts: u64,
}

/// Attempts to get round the filter over a period (see [`Reader::circumvention`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CircumventionSummary {
    /// Attempts in all.
    pub attempts: u64,
    /// How many different devices made them.
    pub devices: u64,
    /// The devices with the most attempts, most first.
    pub top: Vec<DeviceAttempts>,
}

/// How many breaches a week's lists hold in all (see [`Reader::breach_totals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreachTotals {
    /// First seen in the period.
    pub opened: u64,
    /// Not closed, first seen before the period's end.
    pub open: u64,
}

/// Breaches of a period counted by category, severity and case status (see
/// [`Reader::breach_counts`]): no device, person or site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachCount {
    /// The blocking category (ids, comma separated); `None` when no category decided (a
    /// school deny entry, a way round the filter).
    pub category: Option<String>,
    /// The worst severity.
    pub severity: Severity,
    /// The case's status now.
    pub status: CaseStatus,
    /// How many breaches.
    pub breaches: u64,
}

/// Read-only access to the store. Cheap to clone; each call opens its own read-only
/// connection, so any number of blocking threads can read while the writer writes (WAL).
#[derive(Clone, Debug)]
pub struct Reader {
    path: Arc<PathBuf>,
    clock: Clock,
}

/// The columns of a [`QueryRow`]; `{from}` is `queries q` or `blocked b JOIN queries q …`.
const ROW_COLUMNS: &str = "
SELECT q.k, d.label, i.ip, u.name, g.name, n.name, s.qtype, s.transport, s.disposition,
       s.reason, c.name, r.text, s.severity, s.rcode, q.dur, d.key";

/// Everything a [`QueryRow`] joins.
const ROW_JOINS: &str = "
JOIN idents id ON id.id = q.ident
JOIN devices d ON d.id = id.device
JOIN ips i ON i.id = id.ip
JOIN names n ON n.id = q.name
JOIN shapes s ON s.id = q.shape
LEFT JOIN users u ON u.id = id.user
LEFT JOIN groups g ON g.id = s.grp
LEFT JOIN categories c ON c.id = s.category
LEFT JOIN rules r ON r.id = s.rule";

fn query_row(r: &Row<'_>) -> rusqlite::Result<QueryRow> {
    let transport: String = r.get(7)?;
    let disposition: String = r.get(8)?;
    let reason: Option<String> = r.get(9)?;
    let severity: Option<String> = r.get(12)?;
    let key: i64 = r.get(0)?;
    Ok(QueryRow {
        key,
        at: from_unix_millis(key_millis(key)),
        device: r.get(1)?,
        device_key: r.get(15)?,
        ip: r.get(2)?,
        user: r.get(3)?,
        group: r.get(4)?,
        name: r.get(5)?,
        qtype: r.get(6)?,
        transport: transport_of(&transport).ok_or_else(|| bad_label("transport", &transport))?,
        disposition: disposition_of(&disposition)
            .ok_or_else(|| bad_label("disposition", &disposition))?,
        reason: match reason {
            Some(v) => Some(reason_of(&v).ok_or_else(|| bad_label("reason", &v))?),
            None => None,
        },
        category: r.get(10)?,
        rule: r.get(11)?,
        severity: match severity {
            Some(v) => Some(severity_of(&v).ok_or_else(|| bad_label("severity", &v))?),
            None => None,
        },
        rcode: r.get(13)?,
        duration: Duration::from_micros(u64::try_from(r.get::<_, i64>(14)?).unwrap_or(0)),
    })
}

/// Escapes `%`, `_` and `\` for `LIKE … ESCAPE '\'`.
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Row conditions (on `q`) for a filter, with their arguments in order.
fn row_conditions(filter: &QueryFilter) -> (Vec<&'static str>, Vec<Value>) {
    let (mut clauses, mut args) = (Vec::new(), Vec::new());
    if let Some(name) = &filter.name {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        clauses.push("q.name IN (SELECT id FROM names WHERE name = ? OR name LIKE ? ESCAPE '\\')");
        args.push(Value::Text(name.clone()));
        args.push(Value::Text(format!("%.{}", like_escape(&name))));
    }
    if let Some(device) = &filter.device {
        clauses.push(
            "q.ident IN (SELECT id FROM idents WHERE device IN (SELECT id FROM devices WHERE label = ? OR key = ?))",
        );
        args.push(Value::Text(device.clone()));
        args.push(Value::Text(device.clone()));
    }
    if let Some(user) = &filter.user {
        clauses.push(
            "q.ident IN (SELECT id FROM idents WHERE user = (SELECT id FROM users WHERE name = ?))",
        );
        args.push(Value::Text(user.clone()));
    }
    if let Some(group) = &filter.group {
        clauses.push(
            "q.shape IN (SELECT id FROM shapes WHERE grp = (SELECT id FROM groups WHERE name = ?))",
        );
        args.push(Value::Text(group.clone()));
    }
    if let Some(category) = &filter.category {
        clauses.push(
            "q.shape IN (SELECT id FROM shapes WHERE category = (SELECT id FROM categories WHERE name = ?))",
        );
        args.push(Value::Text(category.clone()));
    }
    if let Some(d) = filter.disposition {
        clauses.push("q.shape IN (SELECT id FROM shapes WHERE disposition = ?)");
        args.push(Value::Text(d.label().into()));
    }
    (clauses, args)
}

/// Whose presence narrows a search for the filter's device, user or name (the most selective
/// one present).
pub(crate) fn minute_source(
    device: Option<&str>,
    user: Option<&str>,
    name: Option<&str>,
) -> Option<Source> {
    if let Some(device) = device {
        return Some(Source {
            of: Of::Device,
            ids: "SELECT id FROM devices WHERE label = ? OR key = ?",
            args: vec![Value::Text(device.into()), Value::Text(device.into())],
        });
    }
    if let Some(user) = user {
        return Some(Source {
            of: Of::Device,
            ids: "SELECT device FROM idents WHERE user = (SELECT id FROM users WHERE name = ?)",
            args: vec![Value::Text(user.into())],
        });
    }
    name.map(|name| {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        Source {
            of: Of::Name,
            ids: "SELECT id FROM names WHERE name = ? OR name LIKE ? ESCAPE '\\'",
            args: vec![
                Value::Text(name.clone()),
                Value::Text(format!("%.{}", like_escape(&name))),
            ],
        }
    })
}

/// The minute a key falls in, counted from [`super::KEY_EPOCH_MS`] (so it fits the 3-byte
/// integer SQLite stores until 2035, a byte less per presence row than Unix minutes).
pub(crate) fn minute_of(key: i64) -> i64 {
    (key >> 8).div_euclid(60_000)
}

/// The first key of a minute.
pub(crate) fn minute_start(minute: i64) -> i64 {
    minute.saturating_mul(60_000).max(0) << 8
}

/// Rows matching `filter`, keys strictly before `before` (newest first) or strictly after
/// `after` (oldest first), at most `limit`.
///
/// With a device, user or name in the filter, only the minutes in which it was seen are read
/// (see `presence`); otherwise the key range is read in order.
pub(crate) fn select_queries(
    conn: &Connection,
    filter: &QueryFilter,
    before: Option<i64>,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<QueryRow>, StoreError> {
    let ascending = after.is_some();
    let mut lo = filter.since.map_or(0, |t| key_base(unix_millis(t)));
    let mut hi = filter.until.map_or(i64::MAX, |t| key_base(unix_millis(t)));
    if let Some(b) = before {
        hi = hi.min(b);
    }
    if let Some(a) = after {
        lo = lo.max(a.saturating_add(1));
    }
    let limit = limit as usize;
    if lo >= hi || limit == 0 {
        return Ok(Vec::new());
    }
    let (conditions, cond_args) = row_conditions(filter);
    // Blocked-only reads walk the small `blocked` table and join the rows.
    let (from, key) = if filter.blocked_only {
        ("blocked b JOIN queries q ON q.k = b.k", "b.k")
    } else {
        ("queries q", "q.k")
    };
    let mut sql = format!("{ROW_COLUMNS} FROM {from} {ROW_JOINS} WHERE {key} >= ? AND {key} < ?");
    for c in &conditions {
        sql.push_str(" AND ");
        sql.push_str(c);
    }
    sql.push_str(&format!(
        " ORDER BY {key} {} LIMIT ?",
        if ascending { "ASC" } else { "DESC" }
    ));
    let run = |klo: i64, khi: i64, n: usize| -> Result<Vec<QueryRow>, StoreError> {
        let mut args = vec![Value::Integer(klo), Value::Integer(khi)];
        args.extend(cond_args.iter().cloned());
        args.push(Value::Integer(n as i64));
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), query_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    let Some(source) = minute_source(
        filter.device.as_deref(),
        filter.user.as_deref(),
        filter.name.as_deref(),
    ) else {
        return run(lo, hi, limit);
    };
    let (mut mlo, mut mhi) = (minute_of(lo), minute_of(hi.saturating_sub(1)));
    let mut out = Vec::new();
    while mlo <= mhi {
        let batch = presence::minutes(conn, &source, mlo, mhi, ascending)?;
        let Some(&last) = batch.last() else { break };
        for m in batch {
            let klo = lo.max(minute_start(m));
            let khi = hi.min(minute_start(m + 1));
            if klo >= khi {
                continue;
            }
            out.extend(run(klo, khi, limit - out.len())?);
            if out.len() >= limit {
                return Ok(out);
            }
        }
        if ascending {
            mlo = last + 1;
        } else {
            mhi = last - 1;
        }
    }
    Ok(out)
}

const BREACH_SELECT: &str = "
SELECT b.id, d.label, u.name, g.name, b.domain, c.name, b.severity, b.first, t.last, t.count,
       b.status, b.notes, b.escalated_to, b.parents_informed, b.parents_informed_on,
       b.parents_informed_by, b.outcome, d.key
FROM breaches b
JOIN breach_tallies t ON t.breach = b.id
JOIN devices d ON d.id = b.device
LEFT JOIN users u ON u.id = b.user
LEFT JOIN groups g ON g.id = b.grp
LEFT JOIN categories c ON c.id = b.category";

fn breach_row(r: &Row<'_>) -> rusqlite::Result<BreachSummary> {
    let severity: String = r.get(6)?;
    let status: String = r.get(10)?;
    let informed: bool = r.get(13)?;
    let informed_on: Option<i64> = r.get(14)?;
    let informed_by: Option<String> = r.get(15)?;
    Ok(BreachSummary {
        id: r.get(0)?,
        device: r.get(1)?,
        device_key: r.get(17)?,
        user: r.get(2)?,
        group: r.get(3)?,
        domain: r.get(4)?,
        category: r.get(5)?,
        severity: severity_of(&severity).ok_or_else(|| bad_label("severity", &severity))?,
        first: from_unix_millis(r.get(7)?),
        last: from_unix_millis(r.get(8)?),
        count: u64::try_from(r.get::<_, i64>(9)?).unwrap_or(0),
        status: CaseStatus::parse(&status).ok_or_else(|| bad_label("status", &status))?,
        notes: r.get(11)?,
        escalated_to: r.get(12)?,
        parents_informed: if informed {
            Some((
                from_unix_millis(informed_on.unwrap_or(0)),
                informed_by.unwrap_or_default(),
            ))
        } else {
            None
        },
        outcome: r.get(16)?,
    })
}

impl Reader {
    pub(crate) fn new(path: PathBuf, clock: Clock) -> Reader {
        Reader {
            path: Arc::new(path),
            clock,
        }
    }

    /// A read-only connection (the file must exist: the store creates it).
    pub(crate) fn connection(&self) -> Result<Connection, StoreError> {
        open_read(&self.path)
    }

    /// Queries matching `filter`, newest first, older than `before` (a key from the previous
    /// page's `next`).
    pub fn search(
        &self,
        filter: &QueryFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<QueryPage, StoreError> {
        let conn = self.connection()?;
        let rows = select_queries(&conn, filter, before, None, limit)?;
        let next = if rows.len() as u32 == limit && limit > 0 {
            rows.last().map(|r| r.key)
        } else {
            None
        };
        Ok(QueryPage { rows, next })
    }

    /// A device's queries, newest first.
    pub fn device_timeline(
        &self,
        device: &str,
        since: Option<SystemTime>,
        until: Option<SystemTime>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<QueryPage, StoreError> {
        let filter = QueryFilter {
            device: Some(device.to_string()),
            since,
            until,
            ..QueryFilter::default()
        };
        self.search(&filter, before, limit)
    }

    /// Breaches matching `filter`, newest first, with ids below `before`.
    pub fn breaches(
        &self,
        filter: &BreachFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<BreachSummary>, StoreError> {
        let conn = self.connection()?;
        let mut sql = String::from(BREACH_SELECT);
        let mut args: Vec<Value> = vec![Value::Integer(before.unwrap_or(i64::MAX))];
        sql.push_str(" WHERE b.id < ?1");
        let mut push = |sql: &mut String, clause: &str, v: Value| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(s) = filter.status {
            push(&mut sql, " AND b.status = ?", Value::Text(s.label().into()));
        }
        if let Some(s) = filter.severity {
            push(
                &mut sql,
                " AND b.severity = ?",
                Value::Text(s.label().into()),
            );
        }
        if let Some(c) = &filter.category {
            push(&mut sql, " AND c.name = ?", Value::Text(c.clone()));
        }
        if let Some(g) = &filter.group {
            push(&mut sql, " AND g.name = ?", Value::Text(g.clone()));
        }
        if let Some(d) = &filter.device {
            push(
                &mut sql,
                " AND (d.label = ? OR d.key = ?)",
                Value::Text(d.clone()),
            );
        }
        if let Some(u) = &filter.user {
            push(&mut sql, " AND u.name = ?", Value::Text(u.clone()));
        }
        if let Some(t) = filter.since {
            push(&mut sql, " AND t.last >= ?", Value::Integer(unix_millis(t)));
        }
        if let Some(t) = filter.until {
            push(&mut sql, " AND b.first < ?", Value::Integer(unix_millis(t)));
        }
        push(
            &mut sql,
            " ORDER BY b.id DESC LIMIT ?",
            Value::Integer(i64::from(limit)),
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), breach_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One breach with its queries, its case history, and the device's queries from
    /// `around` before the first attempt to `around` after the last; at most `limit` of each
    /// (the breach's first queries; around it, the nearest `limit / 2` before and the rest
    /// from the first attempt on).
    pub fn breach(
        &self,
        id: i64,
        around: Duration,
        limit: u32,
    ) -> Result<Option<BreachDetail>, StoreError> {
        let conn = self.connection()?;
        let Some(breach) = conn
            .query_row(
                &format!("{BREACH_SELECT} WHERE b.id = ?1"),
                [id],
                breach_row,
            )
            .optional()?
        else {
            return Ok(None);
        };
        // The evidence lies within the breach's key range (`migrate::V10`), in key order:
        // the walk stops at the `limit`-th row (no `IN` list of every row to sort first).
        let mut stmt = conn.prepare(&format!(
            "{ROW_COLUMNS} FROM breaches b JOIN breach_tallies t ON t.breach = b.id
             JOIN breach_queries bq ON bq.k BETWEEN b.first_k AND t.last_k AND bq.breach = b.id
             CROSS JOIN queries q ON q.k = bq.k {ROW_JOINS}
             WHERE b.id = ?1 ORDER BY bq.k LIMIT ?2"
        ))?;
        let queries = stmt
            .query_map(rusqlite::params![id, limit], query_row)?
            .collect::<Result<Vec<_>, _>>()?;
        let device_key = breach.device_key.clone();
        let window = QueryFilter {
            device: Some(device_key),
            since: Some(breach.first.checked_sub(around).unwrap_or(breach.first)),
            until: Some(breach.last + around + Duration::from_millis(1)),
            ..QueryFilter::default()
        };
        // The nearest `limit / 2` before the first attempt, then from the first attempt on
        // up to `limit` in all: a long breach shows its start and what led to it.
        let first_key = key_base(unix_millis(breach.first));
        let mut around_rows = select_queries(&conn, &window, Some(first_key), None, limit / 2)?;
        around_rows.reverse();
        let rest = limit.saturating_sub(u32::try_from(around_rows.len()).unwrap_or(u32::MAX));
        around_rows.extend(select_queries(
            &conn,
            &window,
            None,
            Some(first_key - 1),
            rest,
        )?);
        let mut stmt = conn
            .prepare("SELECT at, actor, change FROM breach_events WHERE breach = ?1 ORDER BY id")?;
        let history = stmt
            .query_map([id], |r| {
                Ok(BreachHistory {
                    at: from_unix_millis(r.get(0)?),
                    actor: r.get(1)?,
                    change: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(BreachDetail {
            breach,
            queries,
            around: around_rows,
            history,
        }))
    }

    /// Query and block counts over `[since, until)` (whole minutes), most queries first:
    /// whole UTC days from the daily rollups, the partial days at either end from the
    /// per-minute rollups (the same result as summing every minute).
    pub fn counts(
        &self,
        since: SystemTime,
        until: SystemTime,
        by: CountBy,
    ) -> Result<Vec<CountRow>, StoreError> {
        daily::counts(&self.connection()?, since, until, by)
    }

    /// The overview's counts by category, group and disposition and its series, as
    /// [`Reader::counts`] (three times) and [`Reader::series`] give them, from one read of the
    /// rollups instead of four.
    pub fn overview(
        &self,
        since: SystemTime,
        until: SystemTime,
        step: Duration,
    ) -> Result<Overview, StoreError> {
        daily::overview(&self.connection()?, since, until, step)
    }

    /// The most blocked names over `[since, until)`, most first.
    pub fn top_blocked(
        &self,
        since: SystemTime,
        until: SystemTime,
        limit: u32,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.connection()?;
        let (since, until) = (unix_millis(since), unix_millis(until));
        // Whole UTC days come from the daily counts; only the partial days at either end
        // are counted from the rows.
        let first_day = (since + DAY_MS - 1).div_euclid(DAY_MS);
        let last_day = until.div_euclid(DAY_MS).max(first_day);
        let (head_end, tail_start) = if first_day < last_day {
            (first_day * DAY_MS, last_day * DAY_MS)
        } else {
            (until, until)
        };
        let mut stmt = conn.prepare_cached(
            "WITH c (name, n) AS (
                 SELECT q.name, COUNT(*) FROM blocked b JOIN queries q ON q.k = b.k
                 WHERE (b.k >= ?1 AND b.k < ?2) OR (b.k >= ?3 AND b.k < ?4)
                 GROUP BY q.name
                 UNION ALL
                 SELECT name, SUM(count) FROM blocked_daily
                 WHERE day >= ?5 AND day < ?6 GROUP BY name)
             SELECT n.name, SUM(c.n) AS total FROM c JOIN names n ON n.id = c.name
             GROUP BY c.name ORDER BY total DESC, n.name LIMIT ?7",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![
                key_base(since),
                key_base(head_end),
                key_base(tail_start),
                key_base(until),
                first_day,
                if first_day < last_day {
                    last_day
                } else {
                    first_day
                },
                limit
            ],
            |r| Ok((r.get(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0))),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The devices with the most high-severity blocked attempts over `[since, until)`, most
    /// first. Whole UTC days come from the per-device daily counts; only the blocked rows of
    /// the partial days at either end are read, so the cost grows with those: a caller that
    /// must stay fast over any period (the overview) asks for whole days.
    pub fn high_severity_devices(
        &self,
        since: SystemTime,
        until: SystemTime,
        limit: u32,
    ) -> Result<Vec<DeviceAttempts>, StoreError> {
        daily::device_attempts(
            &self.connection()?,
            daily::Attempts::High,
            since,
            until,
            Some(limit),
        )
    }

    /// Attempts to get round the filter (iCloud Private Relay and the like) over
    /// `[since, until)`, with the devices that made the most, at most `limit`. Only the
    /// answers with a severity count: the checks browsers and operating systems make on their
    /// own many times a day (Firefox's canary, resolver discovery) are nobody's attempt.
    /// Read as [`Reader::high_severity_devices`] is (whole days from the daily counts, the
    /// partial days from the rows), in one pass.
    pub fn circumvention(
        &self,
        since: SystemTime,
        until: SystemTime,
        limit: u32,
    ) -> Result<CircumventionSummary, StoreError> {
        let mut all = daily::device_attempts(
            &self.connection()?,
            daily::Attempts::Circumvention,
            since,
            until,
            None,
        )?;
        let attempts = all.iter().map(|d| d.attempts).sum();
        let devices = all.len() as u64;
        all.truncate(limit as usize);
        Ok(CircumventionSummary {
            attempts,
            devices,
            top: all,
        })
    }

    /// Breaches whose first attempt falls in `[since, until)`, newest first, at most `limit`:
    /// a short walk of the (status, first) index per status, never the period's other
    /// breaches.
    pub fn breaches_opened(
        &self,
        since: SystemTime,
        until: SystemTime,
        limit: u32,
    ) -> Result<Vec<BreachSummary>, StoreError> {
        let (ids, args) = daily::breach_ids(CaseStatus::ALL.into_iter(), since, until, limit, true);
        let conn = self.connection()?;
        let mut stmt = conn.prepare(&format!(
            "{BREACH_SELECT} WHERE b.id IN ({ids}) ORDER BY b.first DESC, b.id DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params_from_iter(args), breach_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Breaches whose case is not closed and whose first attempt was before `until`, oldest
    /// first, at most `limit` (read as [`Reader::breaches_opened`] is).
    pub fn open_breaches(
        &self,
        until: SystemTime,
        limit: u32,
    ) -> Result<Vec<BreachSummary>, StoreError> {
        let open = CaseStatus::ALL
            .into_iter()
            .filter(|s| *s != CaseStatus::Closed);
        let (ids, args) = daily::breach_ids(open, SystemTime::UNIX_EPOCH, until, limit, false);
        let conn = self.connection()?;
        let mut stmt = conn.prepare(&format!(
            "{BREACH_SELECT} WHERE b.id IN ({ids}) ORDER BY b.first, b.id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params_from_iter(args), breach_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many breaches [`Reader::breaches_opened`] and [`Reader::open_breaches`] would list
    /// without a limit: those first seen in `[since, until)`, and those not closed first seen
    /// before `until`. From the daily breach counts (and the partial days' breaches).
    pub fn breach_totals(
        &self,
        since: SystemTime,
        until: SystemTime,
    ) -> Result<BreachTotals, StoreError> {
        let conn = self.connection()?;
        let sum = |rows: Vec<BreachCount>, open_only: bool| -> u64 {
            rows.iter()
                .filter(|c| !open_only || c.status != CaseStatus::Closed)
                .map(|c| c.breaches)
                .sum()
        };
        Ok(BreachTotals {
            opened: sum(daily::breach_counts(&conn, since, until)?, false),
            open: sum(
                daily::breach_counts(&conn, SystemTime::UNIX_EPOCH, until)?,
                true,
            ),
        })
    }

    /// Queries and blocks per `step` (a whole number of minutes) over `[since, until)`, oldest
    /// first; steps with no queries are absent. A step of whole days reads the daily rollups
    /// and the per-minute ones of the partial days at either end; a shorter step reads every
    /// minute of the period (meant for a day or two).
    pub fn series(
        &self,
        since: SystemTime,
        until: SystemTime,
        step: Duration,
    ) -> Result<Vec<(SystemTime, u64, u64)>, StoreError> {
        daily::series(&self.connection()?, since, until, step)
    }

    /// Breaches whose first attempt falls in `[since, until)`, counted by category, severity
    /// and case status as it is now; most first. Aggregates only (no device, person or site):
    /// the governors' annual pack. Whole UTC days from the daily breach counts, the partial
    /// days at either end from the breaches (through their (status, first) index).
    pub fn breach_counts(
        &self,
        since: SystemTime,
        until: SystemTime,
    ) -> Result<Vec<BreachCount>, StoreError> {
        daily::breach_counts(&self.connection()?, since, until)
    }

    /// Breaches not yet closed, by status and the UTC calendar day of their first attempt
    /// relative to `now`'s: `(status, opened today, opened in the 7 days before, earlier)`,
    /// in status order. Whole days, so it reads only the daily breach counts.
    pub fn open_breach_days(
        &self,
        now: SystemTime,
    ) -> Result<Vec<(CaseStatus, u64, u64, u64)>, StoreError> {
        daily::open_breach_days(&self.connection()?, now)
    }

    /// Audit records, newest first, with ids below `before`.
    pub fn audit(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        audit::list(&self.connection()?, &[], before, limit)
    }

    /// Audit records of the given kinds only, newest first, with ids below `before`.
    pub fn audit_of(
        &self,
        kinds: &[AuditKind],
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        audit::list(&self.connection()?, kinds, before, limit)
    }

    /// Checks the audit chain from its first record.
    pub fn verify_audit(&self) -> Result<ChainReport, StoreError> {
        audit::verify(&self.connection()?)
    }

    /// Logged query rows.
    pub fn query_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .connection()?
            .query_row("SELECT COUNT(*) FROM queries", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The clock the store was opened with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}
