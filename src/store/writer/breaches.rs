//! Breaches: a blocked attempt with a severity opens or extends one per device and site
//! (registrable domain) within the window, so one page load is one breach. A closed case is
//! never extended: an attempt after the DSL closed it opens a new breach, so it is seen.
//!
//! The breaches recent attempts can extend are kept in memory ([`Open`]), so an attempt costs
//! a hash lookup rather than two index searches, and a breach's first, last, count and worst
//! severity are written once per batch rather than once per attempt (each write moved its
//! entries in two indexes). The map answers only for times it is known to be complete for;
//! an older attempt (a journal replay) asks the database.

use foldhash::HashMap;

use rusqlite::{params, OptionalExtension, Row};

use crate::{
    clock::from_unix_millis,
    event::{QueryEvent, Severity},
};

use super::{Batch, Identity};
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
    /// The first and last query keys of its evidence (`None` for a breach whose evidence
    /// was erased before v10 kept the range).
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
    /// Breaches extended in this batch, by id, as they now are and whether their first
    /// attempt moved earlier: written at its end.
    dirty: HashMap<i64, (Entry, bool)>,
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
                let first_moved = t < entry.first;
                entry.first = entry.first.min(t);
                entry.last = entry.last.max(t);
                entry.first_k = Some(entry.first_k.map_or(k, |f| f.min(k)));
                entry.last_k = Some(entry.last_k.map_or(k, |l| l.max(k)));
                entry.count += 1;
                entry.worst = worst;
                let dirty = &mut self.caches.breaches.dirty;
                let moved = dirty.get(&entry.id).is_some_and(|d| d.1) || first_moved;
                dirty.insert(entry.id, (entry.clone(), moved));
                (entry, false)
            }
            None => {
                self.tx
                    .prepare_cached(
                        "INSERT INTO breaches (device, domain, grp, category, severity, user, first, last, count, first_k, last_k)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 1, ?8, ?8)",
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
                "SELECT id, first, last, count, severity, status, category, first_k, last_k FROM breaches
                 WHERE device = ?1 AND domain = ?2 AND last >= ?3 AND first <= ?4
                   AND status <> 'closed'
                 ORDER BY last DESC LIMIT 1",
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
        // `status IN (…)` rather than `<> 'closed'`: the index on (status, first) then skips
        // the closed cases, most of them once a school works its cases.
        let open = status_list(
            CaseStatus::ALL
                .into_iter()
                .filter(|s| *s != CaseStatus::Closed),
        );
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT id, first, last, count, severity, status, category, first_k, last_k, device, domain
             FROM breaches WHERE status IN ({open}) AND last >= ?1 ORDER BY last LIMIT ?2"
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

    /// Writes the batch's changes to the breaches it extended. `first` is set only when it
    /// moved (a late attempt from the journal): SQLite rewrites a row's entry in every index
    /// on a column the `UPDATE` sets, changed or not, and `breaches_status_first` holds it.
    pub(super) fn flush_breaches(&mut self) -> Result<(), StoreError> {
        for (id, (e, first_moved)) in self.caches.breaches.dirty.drain() {
            let values = params![
                id,
                e.last,
                e.count,
                e.worst.label(),
                e.first_k,
                e.last_k,
                e.first
            ];
            if first_moved {
                self.tx
                    .prepare_cached(
                        "UPDATE breaches SET last = ?2, count = ?3, severity = ?4, first_k = ?5,
                           last_k = ?6, first = ?7 WHERE id = ?1",
                    )?
                    .execute(values)?;
            } else {
                self.tx
                    .prepare_cached(
                        "UPDATE breaches SET last = ?2, count = ?3, severity = ?4, first_k = ?5,
                           last_k = ?6 WHERE id = ?1",
                    )?
                    .execute(&values[..6])?;
            }
        }
        Ok(())
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
/// category, first_k, last_k (`None` for a label this version does not know).
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
