//! Breaches: a blocked attempt with a severity opens or extends one per device and site
//! (registrable domain) within the window, so one page load is one breach. A closed case is
//! never extended: an attempt after the DSL closed it opens a new breach, so it is seen.
//!
//! The breaches recent attempts can extend are kept in memory ([`Open`]), so an attempt costs
//! a hash lookup rather than two index searches. A case's own row (first attempt, worst
//! severity) is written once per batch when it changed, its tally (last attempt, attempts)
//! every few seconds ([`super::counts`]). The map answers only for times it is known to be
//! complete for; an older attempt (a journal replay) asks the database.

use foldhash::HashMap;

use rusqlite::{params, OptionalExtension, Row};

use crate::{
    clock::from_unix_millis,
    event::{QueryEvent, Severity},
};

use super::{counts::Tally, Batch, Identity};
use crate::store::{daily::status_list, severity_of, BreachNotice, CaseStatus, StoreError, DAY_MS};

/// How far behind the newest attempt the map stays complete: attempts that arrive this much
/// out of order (the queues' and the journal's usual delay) still find their breach in it.
const SLACK_MS: i64 = 3_600_000;

/// A breach that an attempt may extend.
#[derive(Clone)]
struct Entry {
    id: i64,
    first: i64,
    last: i64,
    count: i64,
    worst: Severity,
    status: CaseStatus,
    category: Option<i64>,
    /// The first and last query keys of its evidence (`None` for a breach that had no
    /// evidence rows when v10 filled the ranges in).
    first_k: Option<i64>,
    last_k: Option<i64>,
}

/// The breaches not closed whose last attempt is at or after `since`: for each device and
/// site, the one with the latest attempt (the one the database query below would choose).
/// Emptied with the writer's caches; a case change elsewhere empties it too (its status
/// decides whether a breach can be extended and where it is counted).
#[derive(Default)]
pub(super) struct Open {
    /// `None` until loaded from the database (after start-up, a failed batch or a case change).
    since: Option<i64>,
    /// Batches to go before loading again, after the open breaches were more than the
    /// writer's cache bound (a flood of attempts on distinct sites): meanwhile every attempt
    /// asks the database, as it did before the map existed.
    pause: u32,
    by_site: HashMap<(i64, String), Entry>,
    /// Breaches whose case row changed in this batch (first attempt, first key or worst
    /// severity), by id, as they now are: written at its end.
    rows: HashMap<i64, Entry>,
}

/// What the map can say about an attempt.
enum Lookup {
    /// The breach the attempt extends.
    Extends(Entry),
    /// No breach: the attempt opens one.
    Opens,
    /// The map is not complete for this attempt's time: ask the database.
    Unknown,
}

/// Batches to wait before loading the open breaches again after they were too many.
const PAUSE_BATCHES: u32 = 100;

impl Open {
    /// At the start of each batch: keeps the map within the writer's memory bound.
    pub(super) fn trim(&mut self) {
        if self.by_site.len() > super::CACHE_MAX {
            *self = Open {
                pause: PAUSE_BATCHES,
                ..Open::default()
            };
        }
        self.pause = self.pause.saturating_sub(1);
    }

    fn lookup(&self, key: &(i64, String), t: i64, window: i64) -> Lookup {
        match self.since {
            Some(since) if t.saturating_sub(window) >= since => match self.by_site.get(key) {
                None => Lookup::Opens,
                Some(e) if e.last < t.saturating_sub(window) => Lookup::Opens,
                Some(e) if e.first <= t.saturating_add(window) => Lookup::Extends(e.clone()),
                // A breach that starts later than this attempt's window: an older one may
                // still match.
                Some(_) => Lookup::Unknown,
            },
            _ => Lookup::Unknown,
        }
    }

    /// Keeps `entry` if it is the latest breach of its site and the map covers its time.
    fn remember(&mut self, key: (i64, String), entry: Entry) {
        let Some(since) = self.since else { return };
        if entry.last < since || entry.status == CaseStatus::Closed {
            return;
        }
        match self.by_site.get(&key) {
            Some(old) if old.id != entry.id && old.last > entry.last => {}
            _ => {
                self.by_site.insert(key, entry);
            }
        }
    }
}

impl Batch<'_, '_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn breach(
        &mut self,
        e: &QueryEvent,
        t: i64,
        k: i64,
        identity: Identity,
        group: Option<i64>,
        category: Option<i64>,
        severity: Severity,
        domain: &str,
    ) -> Result<(), StoreError> {
        let window = self.window();
        let map = &self.caches.breaches;
        if map.since.is_none() && map.pause == 0 {
            self.load_open_breaches(t.saturating_sub(window).saturating_sub(SLACK_MS))?;
        }
        let key = (identity.device, domain.to_string());
        let open = match self.caches.breaches.lookup(&key, t, window) {
            Lookup::Extends(entry) => Some(entry),
            Lookup::Opens => None,
            Lookup::Unknown => {
                // The database must see this batch's changes before it is asked.
                self.flush_breaches()?;
                self.open_breach_in_database(identity.device, domain, t, window)?
            }
        };
        let (entry, new) = match open {
            Some(mut entry) => {
                let worst = entry.worst.min(severity);
                // The daily breach counts follow a breach whose worst severity or first
                // day changes (a late event from the journal can move its start).
                let (was, is) = (
                    entry.first.div_euclid(DAY_MS),
                    entry.first.min(t).div_euclid(DAY_MS),
                );
                if was != is || entry.worst != worst {
                    let c = entry.category.unwrap_or(0);
                    let status = entry.status;
                    *self
                        .breach_days
                        .entry((was, c, entry.worst, status))
                        .or_default() -= 1;
                    *self.breach_days.entry((is, c, worst, status)).or_default() += 1;
                }
                // Most attempts change only the tallies; the case's row is written when its
                // first attempt or key moves (a late attempt) or its severity worsens.
                let row_changed =
                    t < entry.first || worst != entry.worst || entry.first_k.is_none_or(|f| k < f);
                entry.first = entry.first.min(t);
                entry.last = entry.last.max(t);
                entry.first_k = Some(entry.first_k.map_or(k, |f| f.min(k)));
                entry.last_k = Some(entry.last_k.map_or(k, |l| l.max(k)));
                entry.count += 1;
                entry.worst = worst;
                let rows = &mut self.caches.breaches.rows;
                if row_changed || rows.contains_key(&entry.id) {
                    rows.insert(entry.id, entry.clone());
                }
                self.counts.tally(
                    entry.id,
                    Tally {
                        last: entry.last,
                        count: entry.count,
                        last_k: entry.last_k.unwrap_or(k),
                    },
                );
                (entry, false)
            }
            None => {
                self.tx
                    .prepare_cached(
                        "INSERT INTO breaches (device, domain, grp, category, severity, user, first, first_k)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![
                        identity.device,
                        domain,
                        group,
                        category,
                        severity.label(),
                        identity.user,
                        t,
                        k
                    ])?;
                let id = self.tx.last_insert_rowid();
                self.tx
                    .prepare_cached(
                        "INSERT INTO breach_tallies (breach, last, count, last_k) VALUES (?1, ?2, 1, ?3)",
                    )?
                    .execute(params![id, t, k])?;
                *self
                    .breach_days
                    .entry((
                        t.div_euclid(DAY_MS),
                        category.unwrap_or(0),
                        severity,
                        CaseStatus::New,
                    ))
                    .or_default() += 1;
                self.tx
                    .prepare_cached(
                        "INSERT INTO breach_events (breach, at, actor, change) VALUES (?1, ?2, 'hedgerow', 'opened')",
                    )?
                    .execute(params![id, t])?;
                let entry = Entry {
                    id,
                    first: t,
                    last: t,
                    count: 1,
                    worst: severity,
                    status: CaseStatus::New,
                    category,
                    first_k: Some(k),
                    last_k: Some(k),
                };
                (entry, true)
            }
        };
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO breach_queries (k, breach) VALUES (?1, ?2)")?
            .execute(params![k, entry.id])?;
        if entry.worst == Severity::High {
            let device: String = self
                .tx
                .prepare_cached("SELECT label FROM devices WHERE id = ?1")?
                .query_row([identity.device], |r| r.get(0))?;
            let was_new = self.out.notices.get(&entry.id).is_some_and(|n| n.new);
            self.out.notices.insert(
                entry.id,
                BreachNotice {
                    breach_id: entry.id,
                    device,
                    group: e.group.as_deref().map(str::to_string),
                    category: e.category.clone(),
                    severity: Severity::High,
                    domain: domain.to_string(),
                    count: u64::try_from(entry.count).unwrap_or(0),
                    first: from_unix_millis(entry.first),
                    last: from_unix_millis(entry.last),
                    new: new || was_new,
                },
            );
        }
        self.caches.breaches.remember(key, entry);
        Ok(())
    }

    /// The breach an attempt at `t` extends, from the database: the latest one of the
    /// device and site not closed whose span reaches within the window of `t`.
    fn open_breach_in_database(
        &self,
        device: i64,
        domain: &str,
        t: i64,
        window: i64,
    ) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT b.id, b.first, t.last, t.count, b.severity, b.status, b.category, b.first_k,
                        t.last_k
                 FROM breaches b JOIN breach_tallies t ON t.breach = b.id
                 WHERE b.device = ?1 AND b.domain = ?2 AND t.last >= ?3 AND b.first <= ?4
                   AND b.status <> 'closed'
                 ORDER BY t.last DESC LIMIT 1",
            )?
            .query_row(
                params![
                    device,
                    domain,
                    t.saturating_sub(window),
                    t.saturating_add(window)
                ],
                entry,
            )
            .optional()?
            .flatten())
    }

    /// Fills the map with the breaches not closed whose last attempt is at or after `since`.
    fn load_open_breaches(&mut self, since: i64) -> Result<(), StoreError> {
        // The tallies read here must include the attempts counted in memory.
        self.flush_breaches()?;
        // `status IN (…)` rather than `<> 'closed'`: the index on (status, first) then skips
        // the closed cases, most of them once a school works its cases.
        let open = status_list(
            CaseStatus::ALL
                .into_iter()
                .filter(|s| *s != CaseStatus::Closed),
        );
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT b.id, b.first, t.last, t.count, b.severity, b.status, b.category, b.first_k,
                    t.last_k, b.device, b.domain
             FROM breaches b JOIN breach_tallies t ON t.breach = b.id
             WHERE b.status IN ({open}) AND t.last >= ?1 ORDER BY t.last LIMIT ?2"
        ))?;
        let bound = i64::try_from(super::CACHE_MAX).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![since, bound + 1], |r| {
            Ok(((r.get(9)?, r.get(10)?), entry(r)?))
        })?;
        let open = &mut self.caches.breaches;
        open.by_site.clear();
        let mut n = 0;
        for row in rows {
            // In order of `last`: the latest of a site's breaches is kept.
            if let (key, Some(e)) = row? {
                open.by_site.insert(key, e);
            }
            n += 1;
        }
        if n > bound {
            open.by_site.clear();
            open.pause = PAUSE_BATCHES;
        } else {
            open.since = Some(since);
        }
        Ok(())
    }

    /// Writes the cases' rows changed in this batch (only those: SQLite rewrites a row's
    /// entry in every index on a column an `UPDATE` sets, changed or not, and
    /// `breaches_status_first` holds `first`).
    pub(super) fn write_breach_rows(&mut self) -> Result<(), StoreError> {
        for (id, e) in self.caches.breaches.rows.drain() {
            self.tx
                .prepare_cached(
                    "UPDATE breaches SET first = ?2, severity = ?3, first_k = ?4 WHERE id = ?1",
                )?
                .execute(params![id, e.first, e.worst.label(), e.first_k])?;
        }
        Ok(())
    }

    /// Writes everything known about the breaches, rows and tallies, before the database is
    /// asked about them.
    fn flush_breaches(&mut self) -> Result<(), StoreError> {
        self.write_breach_rows()?;
        self.counts.write_tallies(self.tx)
    }

    /// The breach window in milliseconds.
    fn window(&self) -> i64 {
        i64::try_from(self.config.breach_window.as_millis()).unwrap_or(i64::MAX)
    }

    /// Forgets the breaches no attempt within [`SLACK_MS`] of `newest` can extend.
    pub(super) fn prune_breaches(&mut self, newest: i64) {
        let window = self.window();
        let open = &mut self.caches.breaches;
        let Some(since) = open.since else { return };
        let cut = newest.saturating_sub(window).saturating_sub(SLACK_MS);
        if cut > since {
            open.since = Some(cut);
            open.by_site.retain(|_, e| e.last >= cut);
        }
    }
}

/// An [`Entry`] from a row's first nine columns: id, first, last, count, severity, status,
/// category, first_k, last_k (the last, count and last key from `breach_tallies`; `None` for
/// a label this version does not know).
fn entry(r: &Row<'_>) -> rusqlite::Result<Option<Entry>> {
    let (worst, status): (String, String) = (r.get(4)?, r.get(5)?);
    let (Some(worst), Some(status)) = (severity_of(&worst), CaseStatus::parse(&status)) else {
        return Ok(None);
    };
    Ok(Some(Entry {
        id: r.get(0)?,
        first: r.get(1)?,
        last: r.get(2)?,
        count: r.get(3)?,
        worst,
        status,
        category: r.get(6)?,
        first_k: r.get(7)?,
        last_k: r.get(8)?,
    }))
}
