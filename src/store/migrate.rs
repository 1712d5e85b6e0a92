//! Numbered schema migrations, applied at start-up (`PRAGMA user_version`).
//!
//! Each step runs in its own transaction together with the `user_version` bump, so a crash
//! mid-upgrade leaves the database at the previous version, never half-way (hickory's
//! journal upgrades lack this). A database written by a newer Hedgerow is refused rather
//! than guessed at.

use rusqlite::{Connection, Transaction};

use super::StoreError;

/// The query log's table layout, and why (measured: `cargo bench --bench store`):
///
/// - `queries`: one row per logged query, four small integers. The rowid `k` is the
///   arrival time in milliseconds since [`super::KEY_EPOCH_MS`] shifted left 8 bits plus a
///   per-millisecond counter, so the table itself is the time index (range scans and keyset
///   pagination by `k`, no time column). Everything that repeats is interned: `ident` is the
///   (device, address, user) at the time of the query, `name` the question, and `shape` the
///   whole (group, qtype, transport, disposition, reason, category, rule, severity, rcode)
///   tuple. Blocked shapes get negative ids, so "blocked" needs no column.
/// - No per-row secondary index: a full index on device or name costs 14–16 bytes a row,
///   more than half the row again. Instead `device_minutes` and `name_minutes` record the
///   minutes in which a device or a name was seen (a row per pair, not per query), and a
///   device's timeline or a name search reads those minutes' stretch of `queries`, newest
///   first, stopping when the page is full.
///   Their minutes count from [`super::KEY_EPOCH_MS`] (three bytes until 2035).
///   (Replaced by hour and day tables in v9: `store::presence`.)
/// - `blocked (k)`: blocked queries by time, a few percent of rows, in their own clustered
///   table instead of an index over every row.
const V1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE ips (id INTEGER PRIMARY KEY, ip TEXT NOT NULL UNIQUE);
CREATE TABLE groups (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE categories (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE rules (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE devices (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE shapes (
    id INTEGER PRIMARY KEY,
    grp INTEGER,
    qtype INTEGER NOT NULL,
    transport TEXT NOT NULL,
    disposition TEXT NOT NULL,
    reason TEXT,
    category INTEGER,
    rule INTEGER,
    severity TEXT,
    rcode INTEGER NOT NULL,
    UNIQUE (grp, qtype, transport, disposition, reason, category, rule, severity, rcode)
);
CREATE TABLE idents (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL,
    ip INTEGER NOT NULL,
    user INTEGER NOT NULL,
    UNIQUE (device, ip, user)
);
CREATE INDEX idents_ip ON idents (ip);
CREATE INDEX idents_user ON idents (user);
CREATE TABLE queries (
    k INTEGER PRIMARY KEY,
    ident INTEGER NOT NULL,
    name INTEGER NOT NULL,
    shape INTEGER NOT NULL,
    dur INTEGER NOT NULL
);
CREATE TABLE device_minutes (
    device INTEGER NOT NULL,
    minute INTEGER NOT NULL,
    PRIMARY KEY (device, minute)
) WITHOUT ROWID;
CREATE TABLE name_minutes (
    name INTEGER NOT NULL,
    minute INTEGER NOT NULL,
    PRIMARY KEY (name, minute)
) WITHOUT ROWID;
CREATE TABLE blocked (k INTEGER PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE rollups (
    minute INTEGER NOT NULL,
    grp INTEGER NOT NULL,
    category INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    queries INTEGER NOT NULL,
    blocks INTEGER NOT NULL,
    PRIMARY KEY (minute, grp, category, disposition)
) WITHOUT ROWID;
CREATE TABLE leases (
    id INTEGER PRIMARY KEY,
    ip TEXT NOT NULL,
    mac TEXT,
    hostname TEXT,
    starts INTEGER NOT NULL,
    ends INTEGER NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX leases_ip ON leases (ip, starts);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    ip TEXT NOT NULL,
    username TEXT NOT NULL,
    device TEXT,
    starts INTEGER NOT NULL,
    ends INTEGER NOT NULL
);
CREATE INDEX sessions_ip ON sessions (ip, starts);
CREATE TABLE breaches (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL,
    domain TEXT NOT NULL,
    grp INTEGER,
    category INTEGER,
    severity TEXT NOT NULL,
    user INTEGER,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    count INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'new',
    notes TEXT NOT NULL DEFAULT '',
    escalated_to TEXT,
    parents_informed INTEGER NOT NULL DEFAULT 0,
    parents_informed_on INTEGER,
    parents_informed_by TEXT,
    outcome TEXT
);
CREATE INDEX breaches_open ON breaches (device, domain, last);
CREATE INDEX breaches_last ON breaches (last);
CREATE TABLE breach_queries (
    breach INTEGER NOT NULL,
    k INTEGER NOT NULL,
    PRIMARY KEY (breach, k)
) WITHOUT ROWID;
CREATE TABLE breach_events (
    id INTEGER PRIMARY KEY,
    breach INTEGER NOT NULL,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    change TEXT NOT NULL
);
CREATE INDEX breach_events_breach ON breach_events (breach, id);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    change TEXT NOT NULL,
    reason TEXT NOT NULL,
    prev BLOB NOT NULL,
    hash BLOB NOT NULL
);
";

/// v2: breach queries looked up by query (retention and erasure keep evidence rows).
const V2: &str = "CREATE INDEX breach_queries_k ON breach_queries (k);";

/// v3: the audit trail refuses updates and deletes, case histories refuse updates (an
/// erasure may still remove a closed case's history, and is audited). Anyone with the file can drop these
/// triggers, which is why the chain of hashes exists; they stop mistakes and casual edits.
const V3: &str = "
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER breach_events_no_update BEFORE UPDATE ON breach_events
BEGIN SELECT RAISE(ABORT, 'a case history is append-only'); END;
";

/// Blocked queries per name and UTC day, so "top blocked names this week" reads a few thousand
/// counts instead of every blocked row of the week (3 s at 100 million rows; see
/// benches/README.md). Filled from the rows already stored.
const V4: &str = "
CREATE TABLE blocked_daily (
    day INTEGER NOT NULL,
    name INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (day, name)
) WITHOUT ROWID;
INSERT INTO blocked_daily (day, name, count)
    SELECT ((b.k >> 8) + 1577836800000) / 86400000, q.name, COUNT(*)
    FROM blocked b JOIN queries q ON q.k = b.k GROUP BY 1, 2;
";

/// Dashboard accounts. Not `users`: that table (v1) interns the user names of query logs,
/// pupils' among them. Names are unique ignoring ASCII case, so `Alice` cannot sit beside
/// `alice` and sign-in takes either. `totp_last_step` is the last time step whose code was
/// accepted, so a code cannot be used twice. Times are Unix milliseconds.
const V5: &str = "
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    roles INTEGER NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret TEXT,
    totp_last_step INTEGER,
    disabled INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL,
    password_changed INTEGER NOT NULL,
    last_login INTEGER
);
";

/// Unblock requests and the time-limited grants that answer them (or are made directly).
/// Groups are stored as the comma-separated group names (group names cannot hold a comma).
/// Grants are read by expiry (the ones in force, the recent history); requests by status.
const V6: &str = "
CREATE TABLE unblock_requests (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    groups TEXT NOT NULL,
    reason TEXT NOT NULL,
    duration_secs INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    client TEXT,
    requested_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at INTEGER,
    decision_note TEXT
);
CREATE INDEX unblock_requests_status ON unblock_requests (status, id);
CREATE TABLE grants (
    id INTEGER PRIMARY KEY,
    request INTEGER,
    name TEXT NOT NULL,
    grp TEXT NOT NULL,
    starts INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    granted_by TEXT NOT NULL,
    note TEXT NOT NULL,
    revoked_at INTEGER,
    revoked_by TEXT,
    revoke_reason TEXT
);
CREATE INDEX grants_expires ON grants (expires);
";

/// Filtering checks (DfE: checks completed and recorded): one row per run, one per item
/// asked. Items name groups and probe names, never a person; an illegal-tier probe is stored
/// only as the withheld text. `IF NOT EXISTS`: a database taken back to an earlier version
/// (as a test of an earlier step does) upgrades again without tripping over these tables.
const V7: &str = "
CREATE TABLE IF NOT EXISTS check_runs (
    id INTEGER PRIMARY KEY,
    started INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    by TEXT NOT NULL,
    passed INTEGER NOT NULL,
    failed INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS check_runs_started ON check_runs (started);
CREATE TABLE IF NOT EXISTS check_items (
    run INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    grp TEXT NOT NULL,
    kind TEXT NOT NULL,
    category TEXT,
    probe TEXT NOT NULL,
    expected TEXT NOT NULL,
    observed TEXT NOT NULL,
    passed INTEGER NOT NULL,
    tested INTEGER NOT NULL,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
";

/// Day-level aggregates, so a dashboard page over a week, a month or a year reads a few
/// thousand rows instead of every minute's rollups or every blocked row (at 100 million
/// queries a month, the overview's device and circumvention figures scanned every blocked
/// row of the period with four joins). Days are whole UTC days (`unix ms / 86,400,000`).
///
/// - `rollups_daily`: the per-minute `rollups` summed by day (same key, same horizon).
/// - `device_daily`: per device and day (of the query's key), its blocked attempts with severity
///   high, and its attempts to get round the filter that carry a severity — the conditions
///   `Reader::high_severity_devices` and `Reader::circumvention` count. Only rows with one of
///   them are kept.
/// - `breach_daily`: breaches by the day of their first attempt, category (0: none), worst
///   severity and case status now. The writer keeps it for what it changes (opened, severity
///   worsened, first attempt moved earlier); the two triggers keep it for what commands change
///   (a case's status, an erasure), whoever writes them.
/// - `breaches_status_first`: a breach list by status and first attempt (the newest of a
///   week, the open ones) and the partial days at the ends of a period, without reading the
///   other breaches.
///
/// Filled from the tables already there; written to be run again safely (`IF NOT EXISTS`,
/// each back-fill replaces the table's contents with the aggregate of its source). `CROSS
/// JOIN` keeps SQLite walking the small `blocked` table and looking its rows up, instead of
/// scanning every query for the few blocked ones (4 times slower, measured at 1 million).
const V8: &str = "
CREATE TABLE IF NOT EXISTS rollups_daily (
    day INTEGER NOT NULL,
    grp INTEGER NOT NULL,
    category INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    queries INTEGER NOT NULL,
    blocks INTEGER NOT NULL,
    PRIMARY KEY (day, grp, category, disposition)
) WITHOUT ROWID;
DELETE FROM rollups_daily;
INSERT INTO rollups_daily (day, grp, category, disposition, queries, blocks)
    SELECT minute / 1440, grp, category, disposition, SUM(queries), SUM(blocks)
    FROM rollups GROUP BY 1, 2, 3, 4;
CREATE TABLE IF NOT EXISTS device_daily (
    day INTEGER NOT NULL,
    device INTEGER NOT NULL,
    high INTEGER NOT NULL,
    circumvention INTEGER NOT NULL,
    PRIMARY KEY (day, device)
) WITHOUT ROWID;
DELETE FROM device_daily;
INSERT INTO device_daily (day, device, high, circumvention)
    SELECT ((b.k >> 8) + 1577836800000) / 86400000, i.device,
           SUM(s.severity = 'high'), SUM(s.reason = 'circumvention')
    FROM blocked b CROSS JOIN queries q ON q.k = b.k JOIN shapes s ON s.id = q.shape
    JOIN idents i ON i.id = q.ident
    WHERE s.severity IS NOT NULL AND (s.severity = 'high' OR s.reason = 'circumvention')
    GROUP BY 1, 2;
CREATE TABLE IF NOT EXISTS breach_daily (
    day INTEGER NOT NULL,
    category INTEGER NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    breaches INTEGER NOT NULL,
    PRIMARY KEY (day, category, severity, status)
) WITHOUT ROWID;
DELETE FROM breach_daily;
INSERT INTO breach_daily (day, category, severity, status, breaches)
    SELECT first / 86400000, COALESCE(category, 0), severity, status, COUNT(*)
    FROM breaches GROUP BY 1, 2, 3, 4;
CREATE INDEX IF NOT EXISTS breaches_status_first ON breaches (status, first);
CREATE TRIGGER IF NOT EXISTS breach_daily_status AFTER UPDATE OF status ON breaches
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE breach_daily SET breaches = breaches - 1
    WHERE day = OLD.first / 86400000 AND category = COALESCE(OLD.category, 0)
      AND severity = OLD.severity AND status = OLD.status;
    INSERT INTO breach_daily (day, category, severity, status, breaches)
    VALUES (NEW.first / 86400000, COALESCE(NEW.category, 0), NEW.severity, NEW.status, 1)
    ON CONFLICT (day, category, severity, status) DO UPDATE SET breaches = breaches + 1;
END;
CREATE TRIGGER IF NOT EXISTS breach_daily_delete AFTER DELETE ON breaches
BEGIN
    UPDATE breach_daily SET breaches = breaches - 1
    WHERE day = OLD.first / 86400000 AND category = COALESCE(OLD.category, 0)
      AND severity = OLD.severity AND status = OLD.status;
END;
";

/// v9: presence by hour (a mask of minutes) keyed time first, and by day keyed id first,
/// instead of per-minute tables keyed id first, whose inserts landed on random pages (see
/// `store::presence`). Safe to run twice (tests step back and run it again).
const V9: &str = "
CREATE TABLE IF NOT EXISTS device_minutes (
    device INTEGER NOT NULL,
    minute INTEGER NOT NULL,
    PRIMARY KEY (device, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS name_minutes (
    name INTEGER NOT NULL,
    minute INTEGER NOT NULL,
    PRIMARY KEY (name, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_hours (
    hour INTEGER NOT NULL,
    device INTEGER NOT NULL,
    minutes INTEGER NOT NULL,
    PRIMARY KEY (hour, device)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS name_hours (
    hour INTEGER NOT NULL,
    name INTEGER NOT NULL,
    minutes INTEGER NOT NULL,
    PRIMARY KEY (hour, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_days (
    device INTEGER NOT NULL,
    day INTEGER NOT NULL,
    PRIMARY KEY (device, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS name_days (
    name INTEGER NOT NULL,
    day INTEGER NOT NULL,
    PRIMARY KEY (name, day)
) WITHOUT ROWID;
-- A (device, minute) pair is unique, so the sum of its hour's bits is their OR.
INSERT INTO device_hours (hour, device, minutes)
    SELECT minute / 60, device, SUM(1 << (minute % 60)) FROM device_minutes WHERE true GROUP BY 1, 2
    ON CONFLICT (hour, device) DO UPDATE SET minutes = minutes | excluded.minutes;
INSERT INTO name_hours (hour, name, minutes)
    SELECT minute / 60, name, SUM(1 << (minute % 60)) FROM name_minutes WHERE true GROUP BY 1, 2
    ON CONFLICT (hour, name) DO UPDATE SET minutes = minutes | excluded.minutes;
INSERT OR IGNORE INTO device_days (device, day) SELECT DISTINCT device, minute / 1440 FROM device_minutes;
INSERT OR IGNORE INTO name_days (name, day) SELECT DISTINCT name, minute / 1440 FROM name_minutes;
DROP TABLE device_minutes;
DROP TABLE name_minutes;
";

/// v10: the breach bookkeeping the writer does for every attempt appends, or writes small
/// rows, instead of rewriting pages all over the database (measured by the pages each commit
/// wrote: these rows and index entries were nine tenths of them; benches/README.md):
///
/// - `breach_queries` is keyed by query first, `(k, breach)`, so an attempt's row lands at the
///   end of the table instead of on a page chosen by its breach. The index by key (v2) goes
///   with the old table: the key leads now.
/// - A breach's page reads its evidence as a range of keys: `breaches.first_k` and
///   `breach_tallies.last_k` (keys, not times: a replayed event's key may sit past its
///   millisecond).
/// - What every attempt changes — the last attempt, the count, the last key — moves to
///   `breach_tallies`, a row of four integers per breach: an extension rewrites that, not the
///   case's wide row (domain, notes, outcome…), so a batch's extensions share far fewer pages.
///   The case's row changes only when its first attempt, first key or worst severity does.
/// - No index entry moves when a breach is extended: `breaches_open` loses `last` (a device's
///   breaches on one site are few, so the writer's lookup sorts them) and `breaches_last`
///   goes (the writer finds the open breaches through `breaches_status_first`; a breach list
///   from a date walks breaches newest first, as it does without that filter).
///
/// Safe to run again (tests take a database back a few versions and reopen it): [`v10`] adds
/// `first_k` and moves the tallies only when the old columns are there, and the evidence
/// table is rebuilt from whatever layout it has.
const V10: &str = "
CREATE TABLE breach_queries_by_k (
    k INTEGER NOT NULL,
    breach INTEGER NOT NULL,
    PRIMARY KEY (k, breach)
) WITHOUT ROWID;
INSERT INTO breach_queries_by_k (k, breach) SELECT k, breach FROM breach_queries ORDER BY k, breach;
DROP TABLE breach_queries;
ALTER TABLE breach_queries_by_k RENAME TO breach_queries;
DROP INDEX IF EXISTS breaches_open;
CREATE INDEX breaches_open ON breaches (device, domain);
DROP INDEX IF EXISTS breaches_last;
CREATE TABLE IF NOT EXISTS breach_tallies (
    breach INTEGER PRIMARY KEY,
    last INTEGER NOT NULL,
    count INTEGER NOT NULL,
    last_k INTEGER
);
";

/// [`V10`], with what SQL cannot make conditional (no `ADD COLUMN IF NOT EXISTS`, no
/// `DROP COLUMN IF EXISTS`), then each breach's key range from its evidence.
fn v10(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let has = |column: &str| -> Result<bool, StoreError> {
        let n: i64 = tx.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('breaches') WHERE name = ?1",
            [column],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    };
    if !has("first_k")? {
        tx.execute_batch("ALTER TABLE breaches ADD COLUMN first_k INTEGER;")?;
    }
    tx.execute_batch(V10)?;
    if has("last")? {
        tx.execute_batch(
            "INSERT INTO breach_tallies (breach, last, count) SELECT id, last, count FROM breaches;
             ALTER TABLE breaches DROP COLUMN last;
             ALTER TABLE breaches DROP COLUMN count;",
        )?;
    }
    tx.execute_batch(
        "UPDATE breaches SET first_k = r.lo
             FROM (SELECT breach, MIN(k) AS lo FROM breach_queries GROUP BY breach) AS r
             WHERE r.breach = breaches.id;
         UPDATE breach_tallies SET last_k = r.hi
             FROM (SELECT breach, MAX(k) AS hi FROM breach_queries GROUP BY breach) AS r
             WHERE r.breach = breach_tallies.breach;",
    )?;
    Ok(())
}

/// v11: the breach tallies and `blocked_daily` are written every few seconds rather than with
/// each batch, and after a crash the rows stored after `meta.counted_through` are counted again
/// (`writer::counts`). A build before this one would not count them, so it must refuse such a
/// database; the upgrade records that every row stored so far is counted (v10 wrote the counts
/// with every batch).
fn v11(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO meta (key, value) SELECT ?1, COALESCE(MAX(k), 0) FROM queries WHERE true
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [super::COUNTED_THROUGH],
    )?;
    Ok(())
}

/// One migration step: SQL alone, or code where SQL cannot say it.
enum Step {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> Result<(), StoreError>),
}

/// Every step, in order; step `i` takes the database from version `i` to `i + 1`.
const STEPS: &[Step] = &[
    Step::Sql(V1),
    Step::Sql(V2),
    Step::Sql(V3),
    Step::Sql(V4),
    Step::Sql(V5),
    Step::Sql(V6),
    Step::Sql(V7),
    Step::Sql(V8),
    Step::Sql(V9),
    Step::Code(v10),
    Step::Code(v11),
];

/// The schema version this build writes.
pub const CURRENT: u32 = STEPS.len() as u32;

/// The database's schema version.
pub fn version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Brings the database up to [`CURRENT`]; refuses one from a newer Hedgerow.
pub fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    migrate_to(conn, CURRENT)
}

/// Brings the database up to `target` (tests build older versions with it).
pub fn migrate_to(conn: &mut Connection, target: u32) -> Result<u32, StoreError> {
    let found = version(conn)?;
    if found > CURRENT {
        return Err(StoreError::TooNew {
            found,
            known: CURRENT,
        });
    }
    for step in found..target.min(CURRENT) {
        let tx = conn.transaction()?;
        match STEPS[step as usize] {
            Step::Sql(sql) => tx.execute_batch(sql)?,
            Step::Code(run) => run(&tx)?,
        }
        // PRAGMA takes no parameters; `step + 1` is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", step + 1))?;
        tx.commit()?;
        tracing::info!(version = step + 1, "store: schema upgraded");
    }
    version(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_step_by_step_and_refuses_newer() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate_to(&mut conn, 1).unwrap(), 1);
        assert_eq!(migrate(&mut conn).unwrap(), CURRENT);
        assert_eq!(migrate(&mut conn).unwrap(), CURRENT, "idempotent");
        conn.execute_batch(&format!("PRAGMA user_version = {}", CURRENT + 1))
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    }

    /// The breach evidence of a v9 database survives the re-keying, each breach's tallies
    /// move to their own table and it gets its key range, and running the step again (a
    /// database taken back a version) changes nothing.
    #[test]
    fn v10_rekeys_breach_evidence_and_runs_again_safely() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 9).unwrap();
        conn.execute_batch(
            "INSERT INTO breaches (id, device, domain, severity, first, last, count)
                 VALUES (1, 1, 'a.example', 'high', 0, 9, 3), (2, 1, 'b.example', 'low', 0, 8, 2),
                        (3, 2, 'a.example', 'low', 0, 0, 1);
             INSERT INTO breach_queries (breach, k) VALUES (1, 100), (1, 300), (1, 900),
                 (2, 200), (2, 800);",
        )
        .unwrap();
        let state = |conn: &Connection| {
            /// id, first key, last key, last attempt, count.
            type Tally = (i64, Option<i64>, Option<i64>, i64, i64);
            let ranges: Vec<Tally> = conn
                .prepare(
                    "SELECT b.id, b.first_k, t.last_k, t.last, t.count
                     FROM breaches b JOIN breach_tallies t ON t.breach = b.id ORDER BY b.id",
                )
                .unwrap()
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            // In the table's own order: by key first.
            let rows: Vec<(i64, i64)> = conn
                .prepare("SELECT k, breach FROM breach_queries")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let indexes: Vec<String> = conn
                .prepare(
                    "SELECT sql FROM sqlite_master WHERE tbl_name LIKE 'breach%' AND sql NOT NULL
                     AND type = 'index' ORDER BY name",
                )
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let columns: Vec<String> = conn
                .prepare("SELECT name FROM pragma_table_info('breaches')")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            (ranges, rows, indexes, columns)
        };
        migrate_to(&mut conn, 10).unwrap();
        let after = state(&conn);
        assert_eq!(
            after.0,
            [
                (1, Some(100), Some(900), 9, 3),
                (2, Some(200), Some(800), 8, 2),
                (3, None, None, 0, 1)
            ]
        );
        assert_eq!(after.1, [(100, 1), (200, 2), (300, 1), (800, 2), (900, 1)]);
        assert_eq!(
            after.2,
            [
                "CREATE INDEX breach_events_breach ON breach_events (breach, id)",
                "CREATE INDEX breaches_open ON breaches (device, domain)",
                "CREATE INDEX breaches_status_first ON breaches (status, first)",
            ]
        );
        assert!(
            !after.3.iter().any(|c| c == "last" || c == "count")
                && after.3.contains(&"first_k".into()),
            "{:?}",
            after.3
        );
        conn.execute_batch("PRAGMA user_version = 9").unwrap();
        migrate_to(&mut conn, 10).unwrap();
        assert_eq!(state(&conn), after);
    }

    /// v10 wrote its counts with every batch: v11 marks every stored row as counted, so the
    /// writer counts nothing twice after the upgrade.
    #[test]
    fn v11_marks_every_stored_row_counted() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 10).unwrap();
        conn.execute_batch(
            "INSERT INTO queries (k, ident, name, shape, dur) VALUES (100, 1, 1, 1, 0), (700, 1, 1, 1, 0);",
        )
        .unwrap();
        migrate_to(&mut conn, 11).unwrap();
        let mark: String = conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [crate::store::COUNTED_THROUGH],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(mark, "700");
    }

    #[test]
    fn a_failing_step_leaves_the_previous_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 2).unwrap();
        // Make step 3 fail: its trigger name is taken.
        conn.execute_batch(
            "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT 1; END;",
        )
        .unwrap();
        assert!(migrate(&mut conn).is_err());
        assert_eq!(version(&conn).unwrap(), 2);
    }
}
