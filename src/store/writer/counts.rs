//! Counts the writer keeps in memory between writes: each breach's tally (its last attempt,
//! attempts and last evidence key, `breach_tallies`) and blocked queries per day and name
//! (`blocked_daily`). They are written every [`EVERY`] rather than with every batch.
//!
//! Why: written with every batch, they were most of what each commit wrote
//! (`benches/wal-pages.sh`: 53–57 % and 26–28 % of the WAL's pages): a 200 ms batch rewrote
//! the same pages of both tables for a few rows on each, and on a one-core server those
//! writes are made on the DNS threads' core.
//!
//! Nothing is lost by waiting: every attempt's evidence row (`breach_queries`) and every
//! blocked row (`blocked`) is committed with its batch, and these counts follow from those
//! rows. `meta.counted_through` holds the query key through which the counts in the database
//! include every row; at start-up and after a rolled-back transaction the rows after it are
//! counted again ([`Counts::ensure`]). Keys are stored in rising order, except a journal
//! replay's late events: a batch that stores a key at or below the mark writes the counts at
//! its end, so the mark stays true.
//!
//! What the dashboard reads may lag the evidence by up to [`EVERY`]: a breach's attempts and
//! last attempt, the blocked names' counts. A store flush ([`crate::store::Store::flush`])
//! writes them at once.

use std::time::{Duration, Instant};

use foldhash::HashMap;
use rusqlite::{params, Transaction};

use crate::store::{key_millis, meta_int, set_meta, StoreError, COUNTED_THROUGH, DAY_MS};

/// How often the counts are written while queries arrive.
const EVERY: Duration = Duration::from_secs(2);
/// Counts kept at most (breaches and day-and-name pairs, ~50 bytes each): a flood of distinct
/// blocked names has them written sooner, so the writer's memory stays bounded.
const PENDING_MAX: usize = 65_536;

/// A breach's tally as the writer last knew it.
#[derive(Clone, Copy)]
pub(super) struct Tally {
    pub last: i64,
    pub count: i64,
    pub last_k: i64,
}

/// The counts not yet written, and the mark they are counted from.
pub(super) struct Counts {
    tallies: HashMap<i64, Tally>,
    /// Blocked queries per (UTC day, name id).
    blocked_days: HashMap<(i64, i64), i64>,
    /// The key through which the database's counts include every row; `None` until read
    /// (start-up) and after a transaction was rolled back.
    mark: Option<i64>,
    written: Instant,
}

impl Counts {
    pub fn new() -> Counts {
        Counts {
            tallies: HashMap::default(),
            blocked_days: HashMap::default(),
            mark: None,
            written: Instant::now(),
        }
    }

    /// Records a breach's tally after an attempt.
    pub fn tally(&mut self, breach: i64, tally: Tally) {
        self.tallies.insert(breach, tally);
    }

    /// Counts a blocked query stored with key `k` under `name`; `true` when the key is at or
    /// below the mark, so the counts must be written with this batch.
    pub fn blocked(&mut self, k: i64, name: i64) -> bool {
        let day = key_millis(k).div_euclid(DAY_MS);
        *self.blocked_days.entry((day, name)).or_default() += 1;
        self.below_mark(k)
    }

    /// Whether `k` is at or below the mark.
    fn below_mark(&self, k: i64) -> bool {
        self.mark.is_some_and(|m| k <= m)
    }

    /// Whether a write is due: counts (or a recount, when the mark is unknown) have waited
    /// [`EVERY`] since the last write or failure, or [`PENDING_MAX`] of them wait.
    pub fn due(&self) -> bool {
        let pending = self.tallies.len() + self.blocked_days.len();
        pending >= PENDING_MAX
            || ((self.mark.is_none() || pending > 0) && self.written.elapsed() >= EVERY)
    }

    /// Forgets everything after a rolled-back transaction: what was counted in it is gone,
    /// and what was counted before is counted again from the rows by [`Counts::ensure`] (the
    /// next batch, or [`EVERY`] later when none comes: a locked database is not retried in a
    /// loop).
    pub fn forget(&mut self) {
        self.tallies.clear();
        self.blocked_days.clear();
        self.mark = None;
        self.written = Instant::now();
    }

    /// Inside the transaction, before anything else in it: when the mark is unknown, reads it
    /// and counts the rows stored after it (a crash or a rolled-back transaction left them
    /// uncounted), then writes the counts. `last_key` is the newest key stored.
    pub fn ensure(&mut self, tx: &Transaction<'_>, last_key: i64) -> Result<(), StoreError> {
        if self.mark.is_some() {
            return Ok(());
        }
        let mark = meta_int(tx, COUNTED_THROUGH)?;
        // The v11 upgrade sets the mark; without one (edited by hand) nothing is counted
        // again, rather than counted twice.
        if let Some(mark) = mark {
            self.recount(tx, mark)?;
        }
        self.write(tx, last_key)
    }

    /// Adds the rows after `mark` to the counts in memory.
    fn recount(&mut self, tx: &Transaction<'_>, mark: i64) -> Result<(), StoreError> {
        // A breach's tally in the database counts its rows through its own last key (a breach
        // opened after the mark was written with its first row counted).
        let mut stmt = tx.prepare(
            "SELECT t.breach, t.last, t.count, COALESCE(t.last_k, -1), COUNT(*), MAX(bq.k)
             FROM breach_queries bq JOIN breach_tallies t ON t.breach = bq.breach
             WHERE bq.k > ?1 AND bq.k > COALESCE(t.last_k, -1)
             GROUP BY t.breach",
        )?;
        let rows = stmt.query_map([mark], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        for row in rows {
            let (breach, last, count, last_k, more, newest) = row?;
            self.tallies.insert(
                breach,
                Tally {
                    last: last.max(key_millis(newest)),
                    count: count + more,
                    last_k: last_k.max(newest),
                },
            );
        }
        let mut stmt = tx.prepare(
            "SELECT b.k, q.name FROM blocked b JOIN queries q ON q.k = b.k WHERE b.k > ?1",
        )?;
        let rows = stmt.query_map([mark], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (k, name) = row?;
            self.blocked(k, name);
        }
        Ok(())
    }

    /// Writes the tallies only (before the writer reads breaches from the database). The mark
    /// stays: a breach's tally then counts rows after it, but only through its own last key,
    /// which is what [`Counts::recount`] counts from.
    pub fn write_tallies(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let mut stmt = tx.prepare_cached(
            "UPDATE breach_tallies SET last = ?2, count = ?3, last_k = ?4 WHERE breach = ?1",
        )?;
        for (breach, t) in self.tallies.drain() {
            stmt.execute(params![breach, t.last, t.count, t.last_k])?;
        }
        Ok(())
    }

    /// Writes the counts and moves the mark to `last_key` (every row stored so far is then
    /// counted in the database).
    pub fn write(&mut self, tx: &Transaction<'_>, last_key: i64) -> Result<(), StoreError> {
        self.write_tallies(tx)?;
        let mut stmt = tx.prepare_cached(
            "INSERT INTO blocked_daily (day, name, count) VALUES (?1, ?2, ?3)
             ON CONFLICT (day, name) DO UPDATE SET count = count + excluded.count",
        )?;
        for ((day, name), n) in self.blocked_days.drain() {
            stmt.execute(params![day, name, n])?;
        }
        set_meta(tx, COUNTED_THROUGH, &last_key.to_string())?;
        self.mark = Some(last_key);
        self.written = Instant::now();
        Ok(())
    }
}
