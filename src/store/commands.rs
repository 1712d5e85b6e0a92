//! Changes made by people and tools: case changes, audit records, leases and sessions,
//! export and erasure. Synchronous (callers use `spawn_blocking`); each takes the write lock
//! with `BEGIN IMMEDIATE` and writes its audit record in the same transaction, so a change
//! and its audit record are both there or both not.

use crate::civil;
use std::{
    io::Write,
    net::IpAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::SystemTime,
};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::clock::{unix_millis, Clock};

use super::{
    audit, bump_breach_generation, bump_cache_generation, ip_text, key_base, meta_int, open_read,
    open_write,
    presence::{self, Of, Source},
    read, AuditKind, CaseStatus, QueryFilter, QueryRow, StoreError, COUNTED_THROUGH,
};

/// A DHCP lease: which device held an address, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The leased address.
    pub ip: IpAddr,
    /// The device's hardware address, if known.
    pub mac: Option<String>,
    /// The name the device gave, if any.
    pub hostname: Option<String>,
    /// Start of the lease.
    pub starts: SystemTime,
    /// End of the lease.
    pub ends: SystemTime,
    /// Where the record came from (a lease file's path, a DHCP server's name).
    pub source: String,
}

/// A signed-in user at an address (from a directory, a captive portal, a login script).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The address.
    pub ip: IpAddr,
    /// The user's name.
    pub username: String,
    /// The device's name, if the source knows it.
    pub device: Option<String>,
    /// Start.
    pub starts: SystemTime,
    /// End.
    pub ends: SystemTime,
}

/// One change to a breach's case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseChange {
    /// New status.
    Status(CaseStatus),
    /// A note, appended to the notes.
    Note(String),
    /// Escalated to whom (DSL, police, social care…); also sets the status to escalated.
    EscalatedTo(String),
    /// Parents informed (or, with `false`, the record of it withdrawn).
    ParentsInformed {
        /// Whether they were.
        informed: bool,
        /// When.
        on: SystemTime,
        /// By whom.
        by: String,
    },
    /// The outcome.
    Outcome(String),
}

impl CaseChange {
    fn describe(&self) -> String {
        match self {
            CaseChange::Status(s) => format!("status set to {}", s.label()),
            CaseChange::Note(n) => format!("note added: {n}"),
            CaseChange::EscalatedTo(to) => format!("escalated to {to}"),
            CaseChange::ParentsInformed {
                informed: true,
                on,
                by,
            } => {
                format!("parents informed on {} by {by}", civil::format_date(*on))
            }
            CaseChange::ParentsInformed {
                informed: false, ..
            } => "parents-informed record withdrawn".to_string(),
            CaseChange::Outcome(o) => format!("outcome: {o}"),
        }
    }
}

/// What to export: the same filter as a search of the log.
pub type ExportFilter = QueryFilter;

/// Export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Comma-separated values with a header line (opens in a spreadsheet).
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Whose data to erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraseTarget {
    /// A device, by its label.
    Device(String),
    /// An address.
    Ip(IpAddr),
    /// A user.
    User(String),
}

impl std::fmt::Display for EraseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EraseTarget::Device(d) => write!(f, "device {d}"),
            EraseTarget::Ip(ip) => write!(f, "address {ip}"),
            EraseTarget::User(u) => write!(f, "user {u}"),
        }
    }
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EraseReport {
    /// Query rows removed.
    pub queries: u64,
    /// Closed breaches removed.
    pub breaches: u64,
    /// Breaches kept because their case is still open (their queries are kept too).
    pub kept_open_breaches: Vec<i64>,
}

/// Synchronous changes to the store (see the module docs).
#[derive(Clone)]
pub struct Commands {
    path: Arc<PathBuf>,
    clock: Clock,
    /// Commands of this process holding a connection, shared with its writer thread (none
    /// when no writer runs: the command line's own).
    active: Option<Arc<AtomicUsize>>,
}

/// A command's connection. While one is open the writer begins no new batch (for a while:
/// [`super::writer`]): through a backlog the writer's transactions follow one another with
/// no gap the command's wait for the write lock would find, and after two seconds it failed
/// with "database is locked" (a DSL's case change, the scheduled checks).
pub(super) struct CommandConn {
    conn: Connection,
    _active: Active,
}

struct Active(Option<Arc<AtomicUsize>>);

impl Active {
    fn new(counter: Option<&Arc<AtomicUsize>>) -> Active {
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::SeqCst);
        }
        Active(counter.cloned())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl std::ops::Deref for CommandConn {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for CommandConn {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Commands {
    pub(crate) fn new(path: PathBuf, clock: Clock, active: Option<Arc<AtomicUsize>>) -> Commands {
        Commands {
            path: Arc::new(path),
            clock,
            active,
        }
    }

    pub(super) fn conn(&self) -> Result<CommandConn, StoreError> {
        let active = Active::new(self.active.as_ref());
        Ok(CommandConn {
            conn: open_write(&self.path)?,
            _active: active,
        })
    }

    /// Now, from the store's clock, in Unix milliseconds.
    pub(super) fn now_millis(&self) -> i64 {
        self.clock.unix_millis()
    }

    /// The clock audit records are stamped with.
    pub(super) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Appends an audit record (policy and list changes, grants, logins, views…).
    pub fn append_audit(
        &self,
        actor: &str,
        kind: AuditKind,
        change: &str,
        reason: &str,
    ) -> Result<i64, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = audit::append(&tx, self.clock.unix_millis(), actor, kind, change, reason)?;
        tx.commit()?;
        Ok(id)
    }

    /// Records a DHCP lease (history: later leases never rewrite earlier queries).
    pub fn add_lease(&self, lease: &LeaseRecord) -> Result<(), StoreError> {
        if lease.ends <= lease.starts {
            return Err(StoreError::Invalid(format!(
                "the lease for {} ends before it starts",
                lease.ip
            )));
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO leases (ip, mac, hostname, starts, ends, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                ip_text(lease.ip),
                lease.mac.as_deref().map(str::to_ascii_lowercase),
                lease.hostname,
                unix_millis(lease.starts),
                unix_millis(lease.ends),
                lease.source
            ],
        )?;
        bump_cache_generation(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Records a user session.
    pub fn add_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        if session.ends <= session.starts {
            return Err(StoreError::Invalid(format!(
                "the session of {} ends before it starts",
                session.username
            )));
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO sessions (ip, username, device, starts, ends) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                ip_text(session.ip),
                session.username,
                session.device,
                unix_millis(session.starts),
                unix_millis(session.ends)
            ],
        )?;
        bump_cache_generation(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Ends, at `at`, the sessions of `username` on `ip` that started before `at` and were
    /// to run past it (a logout ends the open session its login began). Returns how many.
    pub fn end_sessions(
        &self,
        ip: IpAddr,
        username: &str,
        at: SystemTime,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let at = unix_millis(at);
        let n = tx.execute(
            "UPDATE sessions SET ends = ?3 WHERE ip = ?1 AND username = ?2 AND starts < ?3 AND ends > ?3",
            params![ip_text(ip), username, at],
        )?;
        if n > 0 {
            bump_cache_generation(&tx)?;
        }
        tx.commit()?;
        Ok(n)
    }

    /// Changes a breach's case: the case, its history and the audit record in one
    /// transaction.
    pub fn update_case(
        &self,
        breach: i64,
        change: &CaseChange,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM breaches WHERE id = ?1", [breach], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_none() {
            return Err(StoreError::NoSuchBreach(breach));
        }
        let now = self.clock.unix_millis();
        match change {
            CaseChange::Status(s) => {
                tx.execute(
                    "UPDATE breaches SET status = ?2 WHERE id = ?1",
                    params![breach, s.label()],
                )?;
            }
            CaseChange::Note(n) => {
                tx.execute(
                    "UPDATE breaches SET notes = CASE WHEN notes = '' THEN ?2 ELSE notes || char(10) || ?2 END WHERE id = ?1",
                    params![breach, n],
                )?;
            }
            CaseChange::EscalatedTo(to) => {
                tx.execute(
                    "UPDATE breaches SET escalated_to = ?2, status = 'escalated' WHERE id = ?1",
                    params![breach, to],
                )?;
            }
            CaseChange::ParentsInformed { informed, on, by } => {
                tx.execute(
                    "UPDATE breaches SET parents_informed = ?2, parents_informed_on = ?3, parents_informed_by = ?4 WHERE id = ?1",
                    params![
                        breach,
                        informed,
                        informed.then(|| unix_millis(*on)),
                        informed.then_some(by.as_str())
                    ],
                )?;
            }
            CaseChange::Outcome(o) => {
                tx.execute(
                    "UPDATE breaches SET outcome = ?2 WHERE id = ?1",
                    params![breach, o],
                )?;
            }
        }
        bump_breach_generation(&tx)?;
        let text = change.describe();
        tx.execute(
            "INSERT INTO breach_events (breach, at, actor, change) VALUES (?1, ?2, ?3, ?4)",
            params![breach, now, actor, text],
        )?;
        audit::append(
            &tx,
            now,
            actor,
            AuditKind::Case,
            &format!("breach {breach}: {text}"),
            "safeguarding case record",
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Writes the queries matching `filter`, oldest first, to `out`; the export is audited
    /// once it is complete. Returns the number of rows.
    pub fn export(
        &self,
        filter: &ExportFilter,
        format: ExportFormat,
        out: &mut dyn Write,
        actor: &str,
    ) -> Result<u64, StoreError> {
        let read = open_read(&self.path)?;
        let io = |e: std::io::Error| StoreError::Export(e.to_string());
        if format == ExportFormat::Csv {
            writeln!(
                out,
                "time,device,ip,user,group,name,qtype,transport,disposition,reason,category,rule,severity,rcode,duration_ms"
            )
            .map_err(io)?;
        }
        let mut after = filter
            .since
            .map(|t| key_base(unix_millis(t)) - 1)
            .or(Some(-1));
        let mut n = 0u64;
        loop {
            let rows = read::select_queries(&read, filter, None, after, 5000)?;
            let Some(last) = rows.last() else { break };
            after = Some(last.key);
            for row in &rows {
                match format {
                    ExportFormat::Csv => write_csv(out, row).map_err(io)?,
                    ExportFormat::Jsonl => {
                        serde_json::to_writer(&mut *out, &json_row(row))
                            .map_err(|e| StoreError::Export(e.to_string()))?;
                        out.write_all(b"\n").map_err(io)?;
                    }
                }
                n += 1;
            }
        }
        out.flush().map_err(io)?;
        let describe =
            |t: Option<SystemTime>| t.map_or("the start".to_string(), civil::format_rfc3339);
        self.append_audit(
            actor,
            AuditKind::Export,
            &format!(
                "exported {n} queries ({}) from {} until {}{}",
                if format == ExportFormat::Csv {
                    "CSV"
                } else {
                    "JSON lines"
                },
                describe(filter.since),
                filter
                    .until
                    .map_or("now".to_string(), civil::format_rfc3339),
                describe_filter(filter),
            ),
            "export of the query log",
        )?;
        Ok(n)
    }

    /// Erases a device's, an address's or a user's queries and closed breaches before
    /// `before`. Breaches whose case is still open are kept (with their queries) and
    /// reported. Audited in the same transaction.
    ///
    /// Cost: it reads every minute in which the target's devices were active before the date
    /// (there is no per-row device index, see `migrate`), holding the write lock meanwhile;
    /// the writer journals blocked queries and sheds allowed ones until it is done.
    pub fn erase(
        &self,
        target: &EraseTarget,
        before: SystemTime,
        actor: &str,
        reason: &str,
    ) -> Result<EraseReport, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let cut = key_base(unix_millis(before));
        let cut_ms = unix_millis(before);
        let (value, idents_sql, devices_sql) = match target {
            EraseTarget::Device(d) => (
                d.clone(),
                "SELECT id FROM idents WHERE device IN (SELECT id FROM devices WHERE label = ?1 OR key = ?1)",
                "SELECT id FROM devices WHERE label = ?1 OR key = ?1",
            ),
            EraseTarget::Ip(ip) => (
                ip_text(*ip),
                "SELECT id FROM idents WHERE ip = (SELECT id FROM ips WHERE ip = ?1)",
                "SELECT DISTINCT device FROM idents WHERE ip = (SELECT id FROM ips WHERE ip = ?1)",
            ),
            EraseTarget::User(u) => (
                u.clone(),
                "SELECT id FROM idents WHERE user = (SELECT id FROM users WHERE name = ?1)",
                "SELECT DISTINCT device FROM idents WHERE user = (SELECT id FROM users WHERE name = ?1)",
            ),
        };
        let ids = |sql: &str| -> Result<Vec<i64>, StoreError> {
            let mut stmt = tx.prepare(sql)?;
            let rows = stmt.query_map([&value], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        let idents = ids(idents_sql)?;
        let devices = ids(devices_sql)?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS erase_idents (id INTEGER PRIMARY KEY);
             CREATE TEMP TABLE IF NOT EXISTS erase_breaches (id INTEGER PRIMARY KEY);
             DELETE FROM temp.erase_idents; DELETE FROM temp.erase_breaches;",
        )?;
        for id in &idents {
            tx.execute("INSERT INTO temp.erase_idents (id) VALUES (?1)", [id])?;
        }

        // Breaches: of the device or user, or holding one of the target's queries.
        let breach_clause = match target {
            EraseTarget::Device(_) => {
                "device IN (SELECT id FROM devices WHERE label = ?1 OR key = ?1)"
            }
            EraseTarget::User(_) => {
                "(user = (SELECT id FROM users WHERE name = ?1) OR id IN (
                   SELECT bq.breach FROM breach_queries bq JOIN queries q ON q.k = bq.k
                   WHERE q.ident IN (SELECT id FROM temp.erase_idents)))"
            }
            EraseTarget::Ip(_) => {
                "id IN (SELECT bq.breach FROM breach_queries bq JOIN queries q ON q.k = bq.k
                        WHERE q.ident IN (SELECT id FROM temp.erase_idents)) AND ?1 IS NOT NULL"
            }
        };
        let mut kept: Vec<i64> = Vec::new();
        {
            let mut stmt = tx.prepare(&format!(
                "SELECT id, status FROM breaches WHERE first < ?2 AND {breach_clause}"
            ))?;
            let rows = stmt.query_map(params![value, cut_ms], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (id, status) = row?;
                if status == CaseStatus::Closed.label() {
                    tx.execute("INSERT INTO temp.erase_breaches (id) VALUES (?1)", [id])?;
                } else {
                    kept.push(id);
                }
            }
        }
        // A breach's evidence rows lie within its key range (`migrate::V10`): read there
        // rather than through the whole table. Its last attempts may not be in its tally yet:
        // those lie after the mark the tallies are counted through.
        let counted = meta_int(&tx, COUNTED_THROUGH)?.unwrap_or(i64::MAX);
        let ranges: Vec<(i64, i64, i64)> = tx
            .prepare(
                "SELECT b.id, b.first_k, t.last_k FROM temp.erase_breaches e
                 JOIN breaches b ON b.id = e.id JOIN breach_tallies t ON t.breach = b.id
                 WHERE b.first_k IS NOT NULL AND t.last_k IS NOT NULL",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for (id, lo, hi) in ranges {
            tx.prepare_cached(
                "DELETE FROM breach_queries WHERE (k BETWEEN ?2 AND ?3 OR k > ?4) AND breach = ?1",
            )?
            .execute(params![id, lo, hi, counted])?;
        }
        tx.execute(
            "DELETE FROM breach_tallies WHERE breach IN (SELECT id FROM temp.erase_breaches)",
            [],
        )?;
        let breaches = tx.execute(
            "DELETE FROM breaches WHERE id IN (SELECT id FROM temp.erase_breaches)",
            [],
        )? as u64;
        tx.execute(
            "DELETE FROM breach_events WHERE breach IN (SELECT id FROM temp.erase_breaches)",
            [],
        )?;

        // Rows: only the minutes the target's devices were active in are read (no per-row
        // index exists, see `migrate::V1`). Evidence of an open case stays.
        let mut queries = 0u64;
        if !idents.is_empty() {
            let source = Source {
                of: Of::Device,
                ids: "SELECT device FROM idents WHERE id IN (SELECT id FROM temp.erase_idents)",
                args: Vec::new(),
            };
            let last_minute = read::minute_of(cut.saturating_sub(1));
            let mut from = i64::MIN;
            loop {
                let batch = presence::minutes(&tx, &source, from, last_minute, true)?;
                let Some(&last) = batch.last() else { break };
                for m in batch {
                    let (lo, hi) = (read::minute_start(m), cut.min(read::minute_start(m + 1)));
                    // The per-device daily counts lose what is erased (and only that: what
                    // is kept as evidence still counts).
                    tx.prepare_cached(
                        "UPDATE device_daily SET high = high - x.erased_high,
                           circumvention = circumvention - x.erased_circumvention
                         FROM (SELECT ((q.k >> 8) + 1577836800000) / 86400000 AS day,
                                      i.device AS device,
                                      SUM(s.severity = 'high') AS erased_high,
                                      SUM(s.reason = 'circumvention') AS erased_circumvention
                               FROM queries q JOIN shapes s ON s.id = q.shape
                               JOIN idents i ON i.id = q.ident
                               WHERE q.k >= ?1 AND q.k < ?2
                                 AND q.ident IN (SELECT id FROM temp.erase_idents)
                                 AND NOT EXISTS (SELECT 1 FROM breach_queries b WHERE b.k = q.k)
                                 AND s.severity IS NOT NULL
                                 AND (s.severity = 'high' OR s.reason = 'circumvention')
                               GROUP BY 1, 2) AS x
                         WHERE device_daily.day = x.day AND device_daily.device = x.device",
                    )?
                    .execute(params![lo, hi])?;
                    queries += tx
                        .prepare_cached(
                            "DELETE FROM queries WHERE k >= ?1 AND k < ?2
                             AND ident IN (SELECT id FROM temp.erase_idents)
                             AND NOT EXISTS (SELECT 1 FROM breach_queries b WHERE b.k = queries.k)",
                        )?
                        .execute(params![lo, hi])? as u64;
                }
                from = last + 1;
            }
            let cut_day = super::key_millis(cut).div_euclid(super::DAY_MS);
            for device in &devices {
                tx.execute(
                    "DELETE FROM device_daily WHERE day <= ?2 AND device = ?1
                     AND high <= 0 AND circumvention <= 0",
                    params![device, cut_day],
                )?;
            }
        }
        tx.execute(
            "DELETE FROM blocked WHERE k < ?1 AND NOT EXISTS (SELECT 1 FROM queries q WHERE q.k = blocked.k)",
            [cut],
        )?;

        // The person's own identifiers go too, once nothing can refer to them: an ident
        // whose device was active after the cut, or that holds kept evidence, stays.
        let cut_minute = read::minute_of(cut);
        let erase_idents: Vec<(i64, i64)> = tx
            .prepare(
                "SELECT id, device FROM idents WHERE id IN (SELECT id FROM temp.erase_idents)",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (ident, device) in erase_idents {
            if presence::device_seen_since(&tx, device, cut_minute)? {
                continue;
            }
            tx.execute(
                "DELETE FROM idents WHERE id = ?1
                 AND NOT EXISTS (SELECT 1 FROM breach_queries bq JOIN queries q ON q.k = bq.k WHERE q.ident = idents.id)",
                [ident],
            )?;
        }
        match target {
            EraseTarget::User(u) => {
                tx.execute(
                    "DELETE FROM users WHERE name = ?1
                     AND NOT EXISTS (SELECT 1 FROM idents i WHERE i.user = users.id)
                     AND NOT EXISTS (SELECT 1 FROM breaches b WHERE b.user = users.id)",
                    [u],
                )?;
                tx.execute(
                    "DELETE FROM sessions WHERE username = ?1 AND ends < ?2",
                    params![u, cut_ms],
                )?;
            }
            EraseTarget::Ip(ip) => {
                tx.execute(
                    "DELETE FROM ips WHERE ip = ?1 AND NOT EXISTS (SELECT 1 FROM idents i WHERE i.ip = ips.id)",
                    [ip_text(*ip)],
                )?;
                tx.execute(
                    "DELETE FROM leases WHERE ip = ?1 AND ends < ?2",
                    params![ip_text(*ip), cut_ms],
                )?;
            }
            EraseTarget::Device(d) => {
                tx.execute(
                    "DELETE FROM leases WHERE hostname = ?1 AND ends < ?2",
                    params![d, cut_ms],
                )?;
            }
        }
        // When the devices were active is personal too; a device with nothing left goes.
        for device in &devices {
            let used: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM idents WHERE device = ?1)
                     OR EXISTS (SELECT 1 FROM breaches WHERE device = ?1)",
                [device],
                |r| r.get(0),
            )?;
            if !used {
                presence::forget_device(&tx, *device, cut_minute)?;
                // Nothing of the device is left to count.
                tx.execute("DELETE FROM device_daily WHERE device = ?1", [device])?;
                if !presence::device_listed(&tx, *device)? {
                    tx.execute("DELETE FROM devices WHERE id = ?1", [device])?;
                }
            }
        }
        // The writer's cached ids may point at what was just deleted.
        bump_cache_generation(&tx)?;
        let kept_text = if kept.is_empty() {
            String::new()
        } else {
            format!(
                "; kept {} breach(es) with an open case: {}",
                kept.len(),
                kept.iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        audit::append(
            &tx,
            self.clock.unix_millis(),
            actor,
            AuditKind::Erasure,
            &format!(
                "erased {queries} queries and {breaches} closed breaches of {target} before {}{kept_text}",
                civil::format_rfc3339(before)
            ),
            reason,
        )?;
        tx.commit()?;
        Ok(EraseReport {
            queries,
            breaches,
            kept_open_breaches: kept,
        })
    }
}

fn csv_field(out: &mut dyn Write, v: &str) -> std::io::Result<()> {
    // Spreadsheets run cells starting with = + - @ as formulas: prefix a quote (OWASP).
    let risky = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky || v.contains([',', '"', '\n', '\r']) {
        write!(
            out,
            "\"{}{}\"",
            if risky { "'" } else { "" },
            v.replace('"', "\"\"")
        )
    } else {
        out.write_all(v.as_bytes())
    }
}

fn write_csv(out: &mut dyn Write, r: &QueryRow) -> std::io::Result<()> {
    let fields: [String; 15] = [
        civil::format_rfc3339(r.at),
        r.device.clone(),
        r.ip.clone(),
        r.user.clone().unwrap_or_default(),
        r.group.clone().unwrap_or_default(),
        r.name.clone(),
        r.qtype.to_string(),
        r.transport.label().into(),
        r.disposition.label().into(),
        r.reason.map(|x| x.label()).unwrap_or_default().into(),
        r.category.clone().unwrap_or_default(),
        r.rule.clone().unwrap_or_default(),
        r.severity.map(|s| s.label()).unwrap_or_default().into(),
        r.rcode.to_string(),
        format!("{:.3}", r.duration.as_secs_f64() * 1000.0),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        csv_field(out, f)?;
    }
    out.write_all(b"\n")
}

fn json_row(r: &QueryRow) -> serde_json::Value {
    serde_json::json!({
        "time": civil::format_rfc3339(r.at),
        "device": r.device,
        "ip": r.ip,
        "user": r.user,
        "group": r.group,
        "name": r.name,
        "qtype": r.qtype,
        "transport": r.transport.label(),
        "disposition": r.disposition.label(),
        "reason": r.reason.map(|x| x.label()),
        "category": r.category,
        "rule": r.rule,
        "severity": r.severity.map(|s| s.label()),
        "rcode": r.rcode,
        "duration_ms": r.duration.as_secs_f64() * 1000.0,
    })
}

/// The narrowing parts of an export's filter, for its audit record (", group pupils, …").
fn describe_filter(f: &QueryFilter) -> String {
    let mut out = String::new();
    let mut add = |what: &str, v: &Option<String>| {
        if let Some(v) = v {
            out.push_str(&format!(", {what} {v}"));
        }
    };
    add("group", &f.group);
    add("device", &f.device);
    add("person", &f.user);
    add("name", &f.name);
    add("category", &f.category);
    if let Some(d) = f.disposition {
        out.push_str(&format!(", {} only", d.label()));
    }
    if f.blocked_only {
        out.push_str(", blocked only");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let field = |v: &str| {
            let mut out = Vec::new();
            csv_field(&mut out, v).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(field("a.example"), "a.example");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=cmd()"), "\"'=cmd()\"");
    }
}
