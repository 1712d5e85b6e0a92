//! Filtering checks, completed and recorded (DfE filtering standard): each run of
//! [`crate::checks`] with what it asked, as which group, what it expected and what it got.
//!
//! Runs are small (tens of items per group) and are the school's evidence that it checks its
//! filtering, so they are kept for as long as the database: no retention sweeps them, and they
//! name no person (a group, never a device's owner). An illegal-tier probe is never stored in
//! clear: [`Commands::record_check`] writes [`WITHHELD`] for it whatever the caller passes.

use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::clock::{from_unix_millis, unix_millis};

use super::{audit, AuditKind, Commands, Reader, StoreError, WITHHELD};

/// What one check item tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// A name listed in a category the group blocks is blocked.
    Blocked,
    /// A name the group should reach resolves.
    Allowed,
    /// A search engine is rewritten to its safe mode.
    SafeSearch,
    /// A built-in anti-circumvention name is answered as designed.
    Canary,
    /// A test entry of the illegal-content list is blocked.
    Illegal,
}

impl CheckKind {
    /// The stored form.
    pub fn label(self) -> &'static str {
        match self {
            CheckKind::Blocked => "blocked",
            CheckKind::Allowed => "allowed",
            CheckKind::SafeSearch => "safesearch",
            CheckKind::Canary => "canary",
            CheckKind::Illegal => "illegal",
        }
    }

    /// Every kind, in the order a run checks them.
    pub const ALL: [CheckKind; 5] = [
        CheckKind::Blocked,
        CheckKind::Allowed,
        CheckKind::SafeSearch,
        CheckKind::Canary,
        CheckKind::Illegal,
    ];

    /// Parses [`CheckKind::label`].
    pub fn parse(text: &str) -> Option<CheckKind> {
        Self::ALL.into_iter().find(|k| k.label() == text)
    }

    /// What an item of this kind shows, in plain English.
    pub fn describe(self) -> &'static str {
        match self {
            CheckKind::Blocked => "a name from a blocked category is blocked",
            CheckKind::Allowed => "a name the group should reach resolves",
            CheckKind::SafeSearch => "a search engine is locked to its safe mode",
            CheckKind::Canary => {
                "a name devices use to leave the school's DNS is answered as designed"
            }
            CheckKind::Illegal => "a test entry of the illegal-content list is blocked",
        }
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckTrigger {
    /// The server's schedule (`[checks] every`).
    Schedule,
    /// Someone pressed the button in the dashboard.
    Dashboard,
    /// `hedgerow check-filtering`.
    CommandLine,
}

impl CheckTrigger {
    /// The stored form.
    pub fn label(self) -> &'static str {
        match self {
            CheckTrigger::Schedule => "schedule",
            CheckTrigger::Dashboard => "dashboard",
            CheckTrigger::CommandLine => "command_line",
        }
    }

    /// Every trigger.
    pub const ALL: [CheckTrigger; 3] = [
        CheckTrigger::Schedule,
        CheckTrigger::Dashboard,
        CheckTrigger::CommandLine,
    ];

    /// Parses [`CheckTrigger::label`].
    pub fn parse(text: &str) -> Option<CheckTrigger> {
        Self::ALL.into_iter().find(|t| t.label() == text)
    }

    /// How the run came about, in plain words ("on schedule").
    pub fn describe(self) -> &'static str {
        match self {
            CheckTrigger::Schedule => "on schedule",
            CheckTrigger::Dashboard => "from the dashboard",
            CheckTrigger::CommandLine => "from the command line",
        }
    }
}

/// One thing a run asked, as one group, and what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckItem {
    /// The group the query was asked as.
    pub group: String,
    /// What it tests.
    pub kind: CheckKind,
    /// The list category the probe comes from ([`CheckKind::Blocked`] items).
    pub category: Option<String>,
    /// The name asked; for [`CheckKind::Illegal`] always [`WITHHELD`], never the name.
    pub probe: String,
    /// What the group should get, in plain words ("blocked (NXDOMAIN)").
    pub expected: String,
    /// What it got, in plain words ("resolved (93.184.216.34)").
    pub observed: String,
    /// Whether what it got is what it should get.
    pub passed: bool,
    /// Whether the item could be tested at all. `false` only when there was nothing to ask
    /// with: an illegal-content tier is loaded but no `[checks] illegal_probe` is set, or the
    /// lists in force have no name of a blocked category that the group leaves blocked. Such
    /// an item has `passed == false`, is counted in neither [`CheckRun::passed`] nor
    /// [`CheckRun::failed`], raises no alert, and its `observed` says why it was not tested.
    pub tested: bool,
}

impl CheckItem {
    /// Whether this item counts as a failure of the run (tested and not passed).
    pub fn failed(&self) -> bool {
        self.tested && !self.passed
    }
}

/// One run of the filtering checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    /// Its number (ignored by [`Commands::record_check`], which assigns it).
    pub id: i64,
    /// When the first query was asked.
    pub started: SystemTime,
    /// When the last answer came back.
    pub finished: SystemTime,
    /// What started it.
    pub trigger: CheckTrigger,
    /// Who or what started it (a dashboard user, `command line (USER)`, the schedule).
    pub by: String,
    /// Items tested and passed.
    pub passed: u32,
    /// Items tested and failed.
    pub failed: u32,
    /// The items, in the order asked (empty in lists of runs).
    pub items: Vec<CheckItem>,
}

impl CheckRun {
    /// Items that could not be tested (see [`CheckItem::tested`]).
    pub fn untested(&self) -> usize {
        self.items.iter().filter(|i| !i.tested).count()
    }

    /// The one-line summary the audit trail and the command line use:
    /// "filtering check 7: 41 passed, 0 failed (on schedule)".
    pub fn summary(&self) -> String {
        let untested = self.untested();
        let untested = if untested > 0 {
            format!(", {untested} not tested")
        } else {
            String::new()
        };
        format!(
            "filtering check {}: {} passed, {} failed{untested} ({})",
            self.id,
            self.passed,
            self.failed,
            self.trigger.describe()
        )
    }

    /// The run as a readable table, one block per group, for the command line.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut groups: Vec<&str> = Vec::new();
        for item in &self.items {
            if !groups.contains(&item.group.as_str()) {
                groups.push(&item.group);
            }
        }
        for group in groups {
            let _ = writeln!(out, "group `{group}`");
            let items: Vec<&CheckItem> = self.items.iter().filter(|i| i.group == group).collect();
            let width = |f: fn(&CheckItem) -> usize| items.iter().map(|i| f(i)).max().unwrap_or(0);
            let probe_w = width(|i| i.probe.len());
            let expected_w = width(|i| i.expected.len());
            for item in &items {
                let mark = match (item.tested, item.passed) {
                    (false, _) => "NOT TESTED",
                    (true, true) => "ok",
                    (true, false) => "FAILED",
                };
                let what = match &item.category {
                    Some(c) => format!("{} ({c})", item.kind.label()),
                    None => item.kind.label().to_string(),
                };
                let _ = writeln!(
                    out,
                    "  {mark:<10}  {what:<28}  {:<probe_w$}  expected {:<expected_w$}  got {}",
                    item.probe, item.expected, item.observed
                );
            }
            out.push('\n');
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }
}

const RUN_COLUMNS: &str = "id, started, finished, trigger, by, passed, failed";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CheckRun> {
    let trigger: String = r.get(3)?;
    Ok(CheckRun {
        id: r.get(0)?,
        started: from_unix_millis(r.get(1)?),
        finished: from_unix_millis(r.get(2)?),
        trigger: CheckTrigger::parse(&trigger).ok_or_else(|| bad_label("trigger", &trigger))?,
        by: r.get(4)?,
        passed: r.get(5)?,
        failed: r.get(6)?,
        items: Vec::new(),
    })
}

fn bad_label(what: &str, v: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown check {what} `{v}`").into(),
    )
}

fn items_of(conn: &Connection, run: i64) -> Result<Vec<CheckItem>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT grp, kind, category, probe, expected, observed, passed, tested
         FROM check_items WHERE run = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([run], |r| {
        let kind: String = r.get(1)?;
        Ok(CheckItem {
            group: r.get(0)?,
            kind: CheckKind::parse(&kind).ok_or_else(|| bad_label("kind", &kind))?,
            category: r.get(2)?,
            probe: r.get(3)?,
            expected: r.get(4)?,
            observed: r.get(5)?,
            passed: r.get(6)?,
            tested: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Commands {
    /// Records a finished run and its items, with an audit record, in one transaction;
    /// returns the run's number. The totals are counted from the items (the run's own
    /// `passed`/`failed`/`id` are not trusted), and an illegal-tier probe is stored as
    /// [`WITHHELD`] whatever it says.
    pub fn record_check(&self, run: &CheckRun) -> Result<i64, StoreError> {
        let passed = run.items.iter().filter(|i| i.tested && i.passed).count();
        let failed = run.items.iter().filter(|i| i.failed()).count();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO check_runs (started, finished, trigger, by, passed, failed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                unix_millis(run.started),
                unix_millis(run.finished),
                run.trigger.label(),
                run.by,
                count(passed),
                count(failed)
            ],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut insert = tx.prepare(
                "INSERT INTO check_items
                 (run, seq, grp, kind, category, probe, expected, observed, passed, tested)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for (seq, item) in run.items.iter().enumerate() {
                let probe = match item.kind {
                    CheckKind::Illegal => WITHHELD,
                    _ => item.probe.as_str(),
                };
                insert.execute(params![
                    id,
                    i64::try_from(seq).unwrap_or(i64::MAX),
                    item.group,
                    item.kind.label(),
                    item.category,
                    probe,
                    item.expected,
                    item.observed,
                    item.passed,
                    item.tested
                ])?;
            }
        }
        let stored = CheckRun {
            id,
            passed: count(passed),
            failed: count(failed),
            ..run.clone()
        };
        audit::append(
            &tx,
            self.clock().unix_millis(),
            &run.by,
            AuditKind::Check,
            &stored.summary(),
            "filtering checked for every group (DfE filtering standard: checks completed and recorded)",
        )?;
        tx.commit()?;
        Ok(id)
    }
}

impl Reader {
    /// Runs started at or after `since`, newest first, at most `limit`, without their items.
    pub fn check_runs(
        &self,
        since: Option<SystemTime>,
        limit: u32,
    ) -> Result<Vec<CheckRun>, StoreError> {
        let conn = self.connection()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM check_runs WHERE started >= ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let since = since.map_or(i64::MIN, unix_millis);
        let rows = stmt.query_map(params![since, limit], run_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One run with its items.
    pub fn check_run(&self, id: i64) -> Result<Option<CheckRun>, StoreError> {
        let conn = self.connection()?;
        let run = conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM check_runs WHERE id = ?1"),
                [id],
                run_row,
            )
            .optional()?;
        match run {
            Some(mut run) => {
                run.items = items_of(&conn, id)?;
                Ok(Some(run))
            }
            None => Ok(None),
        }
    }

    /// The latest run, without its items (the schedule asks when the last one was).
    pub fn last_check(&self) -> Result<Option<CheckRun>, StoreError> {
        Ok(self.check_runs(None, 1)?.pop())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::Clock;

    fn item(kind: CheckKind, probe: &str, passed: bool) -> CheckItem {
        CheckItem {
            group: "pupils".into(),
            kind,
            category: (kind == CheckKind::Blocked).then(|| "games".to_string()),
            probe: probe.into(),
            expected: "blocked (NXDOMAIN)".into(),
            observed: if passed {
                "blocked (NXDOMAIN)".into()
            } else {
                "resolved (192.0.2.1)".into()
            },
            passed,
            tested: true,
        }
    }

    #[test]
    fn labels_round_trip() {
        for k in CheckKind::ALL {
            assert_eq!(CheckKind::parse(k.label()), Some(k));
            assert!(!k.describe().is_empty());
        }
        for t in CheckTrigger::ALL {
            assert_eq!(CheckTrigger::parse(t.label()), Some(t));
        }
        assert_eq!(CheckKind::parse("nonsense"), None);
    }

    #[test]
    fn recorded_runs_read_back_with_counts_from_the_items() {
        let dir = std::env::temp_dir().join(format!(
            "hedgerow-store-checks-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_687_260);
        let clock = Clock::from_fn(move || t0);
        let (reader, commands) = super::super::open_offline(&dir, clock).unwrap();
        assert_eq!(reader.last_check().unwrap(), None);
        let mut untested = item(CheckKind::Illegal, "iwf-test.example", false);
        untested.tested = false;
        let run = CheckRun {
            id: 0,
            started: t0,
            finished: t0 + Duration::from_secs(2),
            trigger: CheckTrigger::Schedule,
            by: "schedule".into(),
            passed: 99,
            failed: 99,
            items: vec![
                item(CheckKind::Blocked, "roblox.com", true),
                item(CheckKind::Allowed, "www.bbc.co.uk", false),
                item(CheckKind::Illegal, "iwf-test.example", true),
                untested,
            ],
        };
        let id = commands.record_check(&run).unwrap();
        let stored = reader.check_run(id).unwrap().unwrap();
        assert_eq!((stored.passed, stored.failed), (2, 1));
        assert_eq!(stored.items.len(), 4);
        assert_eq!(stored.items[0], run.items[0]);
        assert_eq!(stored.items[2].probe, WITHHELD, "never the name");
        assert_eq!(stored.items[3].probe, WITHHELD);
        assert!(!stored.items[3].tested && !stored.items[3].failed());
        assert_eq!(stored.started, run.started);
        assert_eq!(stored.finished, run.finished);

        let second = CheckRun {
            trigger: CheckTrigger::CommandLine,
            items: vec![item(CheckKind::Canary, "mask.icloud.com", true)],
            ..run.clone()
        };
        let id2 = commands.record_check(&second).unwrap();
        let runs = reader.check_runs(None, 10).unwrap();
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [id2, id]);
        assert!(runs.iter().all(|r| r.items.is_empty()));
        assert_eq!(reader.last_check().unwrap().unwrap().id, id2);
        assert!(reader
            .check_runs(Some(t0 + Duration::from_secs(1)), 10)
            .unwrap()
            .is_empty());
        assert_eq!(reader.check_run(id2 + 1).unwrap(), None);

        let audit = reader.audit(None, 10).unwrap();
        let texts: Vec<&str> = audit.iter().map(|a| a.change.as_str()).collect();
        assert!(
            texts.contains(
                &format!("filtering check {id}: 2 passed, 1 failed, 1 not tested (on schedule)")
                    .as_str()
            ),
            "{texts:?}"
        );
        assert!(audit.iter().all(|a| !a.change.contains("iwf-test")));
        assert!(audit.iter().any(|a| a.kind == AuditKind::Check));
        let table = stored.table();
        assert!(
            table.contains("FAILED") && table.contains("NOT TESTED"),
            "{table}"
        );
        assert!(!table.contains("iwf-test"), "{table}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
