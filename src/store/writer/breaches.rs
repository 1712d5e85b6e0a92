//! Breaches: a blocked attempt with a severity opens or extends one per device and site
//! (registrable domain) within the window, so one page load is one breach. A closed case is
//! never extended: an attempt after the DSL closed it opens a new breach, so it is seen.

use rusqlite::{params, OptionalExtension};

use crate::{
    clock::from_unix_millis,
    event::{QueryEvent, Severity},
};

use super::{Batch, Identity};
use crate::store::{severity_of, BreachNotice, CaseStatus, StoreError, DAY_MS};

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
        let window = i64::try_from(self.config.breach_window.as_millis()).unwrap_or(i64::MAX);
        let open: Option<(i64, i64, String, String, Option<i64>)> = self
            .tx
            .prepare_cached(
                "SELECT id, first, severity, status, category FROM breaches
                 WHERE device = ?1 AND domain = ?2 AND last >= ?3 AND first <= ?4
                   AND status <> 'closed'
                 ORDER BY last DESC LIMIT 1",
            )?
            .query_row(
                params![identity.device, domain, t - window, t + window],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let (id, new) = match open {
            Some((id, first, old, status, old_category)) => {
                let worst = severity_of(&old).map_or(severity, |o| o.min(severity));
                // The daily breach counts follow a breach whose worst severity or first
                // day changes (a late event from the journal can move its start).
                if let (Some(old), Some(status)) = (severity_of(&old), CaseStatus::parse(&status)) {
                    let (was, is) = (first.div_euclid(DAY_MS), first.min(t).div_euclid(DAY_MS));
                    if was != is || old != worst {
                        let c = old_category.unwrap_or(0);
                        *self.breach_days.entry((was, c, old, status)).or_default() -= 1;
                        *self.breach_days.entry((is, c, worst, status)).or_default() += 1;
                    }
                }
                self.tx
                    .prepare_cached(
                        "UPDATE breaches SET first = MIN(first, ?2), last = MAX(last, ?2),
                         count = count + 1, severity = ?3 WHERE id = ?1",
                    )?
                    .execute(params![id, t, worst.label()])?;
                (id, false)
            }
            None => {
                self.tx
                    .prepare_cached(
                        "INSERT INTO breaches (device, domain, grp, category, severity, user, first, last, count)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 1)",
                    )?
                    .execute(params![
                        identity.device,
                        domain,
                        group,
                        category,
                        severity.label(),
                        identity.user,
                        t
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
                (id, true)
            }
        };
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO breach_queries (breach, k) VALUES (?1, ?2)")?
            .execute(params![id, k])?;
        let (first, last, count, worst): (i64, i64, i64, String) = self
            .tx
            .prepare_cached("SELECT first, last, count, severity FROM breaches WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        if worst == Severity::High.label() {
            let device: String = self
                .tx
                .prepare_cached("SELECT label FROM devices WHERE id = ?1")?
                .query_row([identity.device], |r| r.get(0))?;
            let was_new = self.out.notices.get(&id).is_some_and(|n| n.new);
            self.out.notices.insert(
                id,
                BreachNotice {
                    breach_id: id,
                    device,
                    group: e.group.as_deref().map(str::to_string),
                    category: e.category.clone(),
                    severity: Severity::High,
                    domain: domain.to_string(),
                    count: u64::try_from(count).unwrap_or(0),
                    first: from_unix_millis(first),
                    last: from_unix_millis(last),
                    new: new || was_new,
                },
            );
        }
        Ok(())
    }
}
