//! Unblock requests and time-limited grants: staff ask for a blocked name to be unblocked,
//! the head or Online Safety Lead approves it for chosen groups and a period (one grant per
//! group) or refuses it with a reason, and a grant can be revoked early. Grants can also be
//! made directly (the command line). Every change writes its audit record in the same
//! transaction and bumps [`GRANTS_GENERATION`] in `meta`, so a running server notices
//! changes made by another process (the command line) with one small read.
//!
//! Names arrive normalised (the caller uses [`crate::names::normalise`]); whether a name may
//! be granted at all (the illegal-content tier may not) is decided by the caller, which holds
//! the lists. The store never sees the lists.

use std::{
    net::IpAddr,
    time::{Duration, SystemTime},
};

use rusqlite::{params, types::Type, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::{
    civil,
    clock::{from_unix_millis, unix_millis},
};

use super::{audit, AuditKind, Commands, Reader, StoreError};

/// The `meta` key bumped by every change to requests or grants.
pub(crate) const GRANTS_GENERATION: &str = "grants_generation";

/// The longest reason, note or decision a person may write.
pub const MAX_TEXT: usize = 2000;
/// The shortest period a request may ask for.
pub const MIN_PERIOD: Duration = Duration::from_secs(60);
/// The longest period a request may ask for, or a grant may run.
pub const MAX_PERIOD: Duration = Duration::from_secs(365 * 86_400);

/// Where an unblock request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    /// Waiting for a decision.
    Pending,
    /// Approved: grants were made.
    Approved,
    /// Refused, with a reason.
    Refused,
}

impl RequestStatus {
    /// The stored and displayed form.
    pub fn label(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Refused => "refused",
        }
    }

    /// Every status.
    pub const ALL: [RequestStatus; 3] = [
        RequestStatus::Pending,
        RequestStatus::Approved,
        RequestStatus::Refused,
    ];

    /// Parses [`RequestStatus::label`].
    pub fn parse(text: &str) -> Option<RequestStatus> {
        Self::ALL.into_iter().find(|s| s.label() == text)
    }
}

/// A request as staff make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUnblockRequest {
    /// The name to unblock (normalised by the caller, with `crate::names::normalise`).
    pub name: String,
    /// The groups it should be unblocked for.
    pub groups: Vec<String>,
    /// Why (required, at most [`MAX_TEXT`] characters).
    pub reason: String,
    /// For how long (between [`MIN_PERIOD`] and [`MAX_PERIOD`]).
    pub duration: Duration,
    /// Who asks.
    pub requested_by: String,
    /// The address they asked from, if known.
    pub client: Option<IpAddr>,
}

/// A stored request and its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnblockRequest {
    /// Its number.
    pub id: i64,
    /// The name.
    pub name: String,
    /// The groups asked for.
    pub groups: Vec<String>,
    /// Why it was asked for.
    pub reason: String,
    /// The period asked for.
    pub duration: Duration,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested_at: SystemTime,
    /// Where it stands.
    pub status: RequestStatus,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<SystemTime>,
    /// The approver's note, or the reason for a refusal.
    pub decision_note: Option<String>,
}

/// One grant: a name allowed for one group for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    /// Its number.
    pub id: i64,
    /// The request it answers (none for a direct grant).
    pub request_id: Option<i64>,
    /// The name (with its subdomains).
    pub name: String,
    /// The group.
    pub group: String,
    /// When it took effect.
    pub starts: SystemTime,
    /// When it lapses.
    pub expires: SystemTime,
    /// Who granted it.
    pub granted_by: String,
    /// When it was revoked and by whom, if it was.
    pub revoked: Option<(SystemTime, String)>,
}

/// Counts of requests and grants over a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnblockStats {
    /// Requests made in the period.
    pub requested: u64,
    /// Requests approved in the period.
    pub approved: u64,
    /// Requests refused in the period.
    pub refused: u64,
    /// Requests made before the period's end and still waiting.
    pub pending: u64,
    /// Grants that took effect in the period.
    pub grants: u64,
}

fn invalid(text: impl Into<String>) -> StoreError {
    StoreError::Invalid(text.into())
}

fn check_name(name: &str) -> Result<(), StoreError> {
    let bad = name.is_empty()
        || name.len() > 253
        || name.bytes().any(|b| b.is_ascii_whitespace() || b == b',');
    if bad {
        return Err(invalid(format!("`{name}` is not a domain name")));
    }
    Ok(())
}

/// The groups, checked and without repeats, in the order given.
fn check_groups(groups: &[String]) -> Result<Vec<String>, StoreError> {
    let mut out: Vec<String> = Vec::new();
    for g in groups {
        let g = g.trim();
        let ok = !g.is_empty()
            && g.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(invalid(format!("`{g}` is not a group name")));
        }
        if !out.iter().any(|o| o == g) {
            out.push(g.to_string());
        }
    }
    if out.is_empty() {
        return Err(invalid("choose at least one group"));
    }
    Ok(out)
}

/// `text` trimmed; required and at most [`MAX_TEXT`] characters.
fn check_text(what: &str, text: &str) -> Result<String, StoreError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(invalid(format!("a {what} is required")));
    }
    if t.chars().count() > MAX_TEXT {
        return Err(invalid(format!(
            "the {what} is too long (at most {MAX_TEXT} characters)"
        )));
    }
    Ok(t.to_string())
}

/// `text` trimmed, which may be empty; at most [`MAX_TEXT`] characters.
fn check_optional_text(what: &str, text: &str) -> Result<String, StoreError> {
    match text.trim() {
        "" => Ok(String::new()),
        t => check_text(what, t),
    }
}

fn check_period(period: Duration) -> Result<(), StoreError> {
    if period < MIN_PERIOD || period > MAX_PERIOD {
        return Err(invalid(format!(
            "the period must be between 1 minute and 365 days (not {})",
            civil::describe_period(period)
        )));
    }
    Ok(())
}

fn check_actor(by: &str) -> Result<(), StoreError> {
    if by.trim().is_empty() {
        return Err(invalid("say who is making the change"));
    }
    Ok(())
}

/// Checks that a grant ending at `until` ends after `now` and at most [`MAX_PERIOD`] from
/// it. The approver chooses the period, so there is no least one (and the caller computed
/// `until` a moment before `now` was read here).
fn check_until(now: SystemTime, until: SystemTime) -> Result<(), StoreError> {
    match until.duration_since(now) {
        Ok(period) if period > MAX_PERIOD => Err(invalid("a grant can run for at most 365 days")),
        Ok(period) if !period.is_zero() => Ok(()),
        _ => Err(invalid("the end of the grant is in the past")),
    }
}

fn bump_generation(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        [GRANTS_GENERATION],
    )?;
    Ok(())
}

fn conversion(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, what.to_string().into())
}

const REQUEST_COLUMNS: &str = "id, name, groups, reason, duration_secs, requested_by, requested_at, status, decided_by, decided_at, decision_note";

fn request_row(r: &Row<'_>) -> rusqlite::Result<UnblockRequest> {
    let groups: String = r.get(2)?;
    let status: String = r.get(7)?;
    Ok(UnblockRequest {
        id: r.get(0)?,
        name: r.get(1)?,
        groups: groups.split(',').map(str::to_string).collect(),
        reason: r.get(3)?,
        duration: Duration::from_secs(u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0)),
        requested_by: r.get(5)?,
        requested_at: from_unix_millis(r.get(6)?),
        status: RequestStatus::parse(&status).ok_or_else(|| conversion(7, "unknown status"))?,
        decided_by: r.get(8)?,
        decided_at: r.get::<_, Option<i64>>(9)?.map(from_unix_millis),
        decision_note: r.get(10)?,
    })
}

const GRANT_COLUMNS: &str =
    "id, request, name, grp, starts, expires, granted_by, revoked_at, revoked_by";

fn grant_row(r: &Row<'_>) -> rusqlite::Result<GrantRecord> {
    let revoked_at: Option<i64> = r.get(7)?;
    let revoked_by: Option<String> = r.get(8)?;
    Ok(GrantRecord {
        id: r.get(0)?,
        request_id: r.get(1)?,
        name: r.get(2)?,
        group: r.get(3)?,
        starts: from_unix_millis(r.get(4)?),
        expires: from_unix_millis(r.get(5)?),
        granted_by: r.get(6)?,
        revoked: revoked_at.map(|at| (from_unix_millis(at), revoked_by.unwrap_or_default())),
    })
}

fn request_by_id(conn: &Connection, id: i64) -> Result<Option<UnblockRequest>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {REQUEST_COLUMNS} FROM unblock_requests WHERE id = ?1"),
            [id],
            request_row,
        )
        .optional()?)
}

fn grant_by_id(conn: &Connection, id: i64) -> Result<Option<GrantRecord>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1"),
            [id],
            grant_row,
        )
        .optional()?)
}

/// A pending request, or why it cannot be decided.
fn pending_request(conn: &Connection, id: i64) -> Result<UnblockRequest, StoreError> {
    let request = request_by_id(conn, id)?.ok_or(StoreError::NoSuchUnblockRequest(id))?;
    if request.status != RequestStatus::Pending {
        let by = request.decided_by.as_deref().unwrap_or("someone");
        let on = request
            .decided_at
            .map(|at| format!(" on {}", civil::format_minute(at)))
            .unwrap_or_default();
        return Err(invalid(format!(
            "unblock request {id} was already {} by {by}{on}",
            request.status.label()
        )));
    }
    Ok(request)
}

/// Inserts one grant per group, starting at `now`.
fn insert_grants(
    conn: &Connection,
    request: Option<i64>,
    name: &str,
    groups: &[String],
    (now, until): (i64, i64),
    by: &str,
    note: &str,
) -> Result<Vec<GrantRecord>, StoreError> {
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        conn.execute(
            "INSERT INTO grants (request, name, grp, starts, expires, granted_by, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![request, name, group, now, until, by, note],
        )?;
        out.push(GrantRecord {
            id: conn.last_insert_rowid(),
            request_id: request,
            name: name.to_string(),
            group: group.clone(),
            starts: from_unix_millis(now),
            expires: from_unix_millis(until),
            granted_by: by.to_string(),
            revoked: None,
        });
    }
    Ok(out)
}

fn grant_numbers(grants: &[GrantRecord]) -> String {
    let ids: Vec<String> = grants.iter().map(|g| g.id.to_string()).collect();
    format!(
        "grant{} {}",
        if ids.len() == 1 { "" } else { "s" },
        ids.join(", ")
    )
}

impl Commands {
    /// Records a request to unblock a name; returns its number. Audited as asked by
    /// `requested_by`, with their reason.
    pub fn request_unblock(&self, r: &NewUnblockRequest) -> Result<i64, StoreError> {
        check_name(&r.name)?;
        let groups = check_groups(&r.groups)?;
        let reason = check_text("reason", &r.reason)?;
        check_period(r.duration)?;
        check_actor(&r.requested_by)?;
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = self.now_millis();
        tx.execute(
            "INSERT INTO unblock_requests (name, groups, reason, duration_secs, requested_by, client, requested_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                r.name,
                groups.join(","),
                reason,
                i64::try_from(r.duration.as_secs()).unwrap_or(i64::MAX),
                r.requested_by,
                r.client.map(|ip| ip.to_string()),
                now,
                RequestStatus::Pending.label()
            ],
        )?;
        let id = tx.last_insert_rowid();
        audit::append(
            &tx,
            now,
            &r.requested_by,
            AuditKind::Grant,
            &format!(
                "unblock request {id} for {} for {} ({}) made by {}",
                r.name,
                groups.join(", "),
                civil::describe_period(r.duration),
                r.requested_by
            ),
            &reason,
        )?;
        bump_generation(&tx)?;
        tx.commit()?;
        Ok(id)
    }

    /// Approves a pending request for `groups` until `until`: one grant per group, starting
    /// now. Only a pending request can be approved.
    pub fn approve_unblock(
        &self,
        id: i64,
        groups: &[String],
        until: SystemTime,
        by: &str,
        note: &str,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let groups = check_groups(groups)?;
        let note = check_optional_text("note", note)?;
        check_actor(by)?;
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let request = pending_request(&tx, id)?;
        let now = self.now_millis();
        check_until(from_unix_millis(now), until)?;
        let until_ms = unix_millis(until);
        tx.execute(
            "UPDATE unblock_requests SET status = ?2, decided_by = ?3, decided_at = ?4, decision_note = ?5
             WHERE id = ?1",
            params![
                id,
                RequestStatus::Approved.label(),
                by,
                now,
                (!note.is_empty()).then_some(note.as_str())
            ],
        )?;
        let grants = insert_grants(
            &tx,
            Some(id),
            &request.name,
            &groups,
            (now, until_ms),
            by,
            &note,
        )?;
        let why = if note.is_empty() {
            format!("asked by {}: {}", request.requested_by, request.reason)
        } else {
            note.clone()
        };
        audit::append(
            &tx,
            now,
            by,
            AuditKind::Grant,
            &format!(
                "unblock request {id} for {} approved for {} until {} by {by} ({})",
                request.name,
                groups.join(", "),
                civil::format_minute(from_unix_millis(until_ms)),
                grant_numbers(&grants)
            ),
            &why,
        )?;
        bump_generation(&tx)?;
        tx.commit()?;
        Ok(grants)
    }

    /// Refuses a pending request; the reason is required and recorded.
    pub fn refuse_unblock(&self, id: i64, by: &str, reason: &str) -> Result<(), StoreError> {
        let reason = check_text("reason", reason)?;
        check_actor(by)?;
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let request = pending_request(&tx, id)?;
        let now = self.now_millis();
        tx.execute(
            "UPDATE unblock_requests SET status = ?2, decided_by = ?3, decided_at = ?4, decision_note = ?5
             WHERE id = ?1",
            params![id, RequestStatus::Refused.label(), by, now, reason],
        )?;
        audit::append(
            &tx,
            now,
            by,
            AuditKind::Grant,
            &format!("unblock request {id} for {} refused by {by}", request.name),
            &reason,
        )?;
        bump_generation(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Ends a grant now; the reason is required and recorded. A grant already revoked or
    /// lapsed cannot be revoked.
    pub fn revoke_grant(&self, id: i64, by: &str, reason: &str) -> Result<(), StoreError> {
        let reason = check_text("reason", reason)?;
        check_actor(by)?;
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let grant = grant_by_id(&tx, id)?.ok_or(StoreError::NoSuchGrant(id))?;
        let now = self.now_millis();
        if let Some((at, who)) = &grant.revoked {
            return Err(invalid(format!(
                "grant {id} was already revoked by {who} on {}",
                civil::format_minute(*at)
            )));
        }
        if unix_millis(grant.expires) <= now {
            return Err(invalid(format!(
                "grant {id} already lapsed on {}",
                civil::format_minute(grant.expires)
            )));
        }
        tx.execute(
            "UPDATE grants SET revoked_at = ?2, revoked_by = ?3, revoke_reason = ?4 WHERE id = ?1",
            params![id, now, by, reason],
        )?;
        audit::append(
            &tx,
            now,
            by,
            AuditKind::Grant,
            &format!(
                "grant {id} ({} for {}, until {}) revoked by {by}",
                grant.name,
                grant.group,
                civil::format_minute(grant.expires)
            ),
            &reason,
        )?;
        bump_generation(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Grants `name` (normalised by the caller) to `groups` until `until` without a request
    /// (the command line); the note, required, says why.
    pub fn grant(
        &self,
        name: &str,
        groups: &[String],
        until: SystemTime,
        by: &str,
        note: &str,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        check_name(name)?;
        let groups = check_groups(groups)?;
        let note = check_text("note", note)?;
        check_actor(by)?;
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = self.now_millis();
        check_until(from_unix_millis(now), until)?;
        let until_ms = unix_millis(until);
        let grants = insert_grants(&tx, None, name, &groups, (now, until_ms), by, &note)?;
        audit::append(
            &tx,
            now,
            by,
            AuditKind::Grant,
            &format!(
                "{name} granted for {} until {} by {by} ({})",
                groups.join(", "),
                civil::format_minute(from_unix_millis(until_ms)),
                grant_numbers(&grants)
            ),
            &note,
        )?;
        bump_generation(&tx)?;
        tx.commit()?;
        Ok(grants)
    }
}

impl Reader {
    /// Requests, newest first; only those with `status` if given.
    pub fn unblock_requests(
        &self,
        status: Option<RequestStatus>,
        limit: u32,
    ) -> Result<Vec<UnblockRequest>, StoreError> {
        let conn = self.connection()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {REQUEST_COLUMNS} FROM unblock_requests
             WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(
            params![status.map(RequestStatus::label), limit],
            request_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One request.
    pub fn unblock_request(&self, id: i64) -> Result<Option<UnblockRequest>, StoreError> {
        request_by_id(&self.connection()?, id)
    }

    /// One grant.
    pub fn grant(&self, id: i64) -> Result<Option<GrantRecord>, StoreError> {
        grant_by_id(&self.connection()?, id)
    }

    /// Grants in force at `now` (started, not lapsed, not revoked), oldest first.
    pub fn active_grants(&self, now: SystemTime) -> Result<Vec<GrantRecord>, StoreError> {
        let conn = self.connection()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants
             WHERE expires > ?1 AND starts <= ?1 AND revoked_at IS NULL ORDER BY id"
        ))?;
        let rows = stmt.query_map([unix_millis(now)], grant_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Grants in force at some time since `since` (revoked ones too), newest first.
    pub fn grants(&self, since: SystemTime, limit: u32) -> Result<Vec<GrantRecord>, StoreError> {
        let conn = self.connection()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE expires > ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![unix_millis(since), limit], grant_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Requests and grants over `[since, until)`.
    pub fn unblock_stats(
        &self,
        since: SystemTime,
        until: SystemTime,
    ) -> Result<UnblockStats, StoreError> {
        let conn = self.connection()?;
        let (since, until) = (unix_millis(since), unix_millis(until));
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(conn.query_row(
            "SELECT
               (SELECT COUNT(*) FROM unblock_requests WHERE requested_at >= ?1 AND requested_at < ?2),
               (SELECT COUNT(*) FROM unblock_requests WHERE status = 'approved' AND decided_at >= ?1 AND decided_at < ?2),
               (SELECT COUNT(*) FROM unblock_requests WHERE status = 'refused' AND decided_at >= ?1 AND decided_at < ?2),
               (SELECT COUNT(*) FROM unblock_requests WHERE status = 'pending' AND requested_at < ?2),
               (SELECT COUNT(*) FROM grants WHERE starts >= ?1 AND starts < ?2)",
            params![since, until],
            |r| {
                Ok(UnblockStats {
                    requested: count(r.get(0)?),
                    approved: count(r.get(1)?),
                    refused: count(r.get(2)?),
                    pending: count(r.get(3)?),
                    grants: count(r.get(4)?),
                })
            },
        )?)
    }

    /// A number that changes whenever a request or grant changes (from any process): cheap
    /// to poll, one read of `meta`.
    pub fn grants_generation(&self) -> Result<u64, StoreError> {
        let value: Option<String> = self
            .connection()?
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [GRANTS_GENERATION],
                |r| r.get(0),
            )
            .optional()?;
        Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    };

    use super::*;
    use crate::{clock::Clock, store::open_offline};

    const T0: i64 = 1_795_000_000_000;

    struct Fixture {
        _dir: tempdir::Dir,
        reader: Reader,
        commands: Commands,
        now: Arc<AtomicI64>,
    }

    /// A scratch folder removed on drop (the unit tests have no access to the integration
    /// tests' harness).
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn fixture(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!(
            "hedgerow-unit-{}-unblock-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let now = Arc::new(AtomicI64::new(T0));
        let clock_now = now.clone();
        let clock = Clock::from_fn(move || from_unix_millis(clock_now.load(Ordering::SeqCst)));
        let (reader, commands) = open_offline(&dir, clock).unwrap();
        Fixture {
            _dir: tempdir::Dir(dir),
            reader,
            commands,
            now,
        }
    }

    fn at(offset: Duration) -> SystemTime {
        from_unix_millis(T0) + offset
    }

    fn request(name: &str) -> NewUnblockRequest {
        NewUnblockRequest {
            name: name.into(),
            groups: vec!["staff".into()],
            reason: "the history department's Roman Britain resources".into(),
            duration: Duration::from_secs(3600),
            requested_by: "teacher".into(),
            client: Some("10.0.0.5".parse().unwrap()),
        }
    }

    fn invalid_text(r: Result<impl std::fmt::Debug, StoreError>) -> String {
        match r {
            Err(StoreError::Invalid(text)) => text,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn requests_are_validated() {
        let f = fixture("validate");
        let c = &f.commands;
        let mut r = request("example.org");
        r.reason = "  ".into();
        assert_eq!(invalid_text(c.request_unblock(&r)), "a reason is required");
        r.reason = "x".repeat(MAX_TEXT + 1);
        assert!(invalid_text(c.request_unblock(&r)).contains("too long"));
        r.reason = "é".repeat(MAX_TEXT);
        r.duration = Duration::from_secs(59);
        assert!(invalid_text(c.request_unblock(&r)).contains("between 1 minute and 365 days"));
        r.duration = MAX_PERIOD + Duration::from_secs(1);
        assert!(invalid_text(c.request_unblock(&r)).contains("between 1 minute and 365 days"));
        r.duration = MAX_PERIOD;
        r.groups = vec![];
        assert_eq!(
            invalid_text(c.request_unblock(&r)),
            "choose at least one group"
        );
        r.groups = vec!["staff,pupils".into()];
        assert!(invalid_text(c.request_unblock(&r)).contains("not a group name"));
        r.groups = vec!["staff".into(), "staff".into()];
        r.name = String::new();
        assert!(invalid_text(c.request_unblock(&r)).contains("not a domain name"));
        r.name = "example.org".into();
        // A reason of exactly the limit (counted in characters, not bytes) is fine.
        let id = c.request_unblock(&r).unwrap();
        let stored = f.reader.unblock_request(id).unwrap().unwrap();
        assert_eq!(stored.groups, ["staff"], "repeats dropped");
        assert_eq!(stored.status, RequestStatus::Pending);
        assert_eq!(stored.duration, MAX_PERIOD);
        assert_eq!(stored.requested_at, at(Duration::ZERO));
        assert_eq!(f.reader.unblock_requests(None, 10).unwrap().len(), 1);
        // Nothing else was written by the refused attempts.
        assert_eq!(f.reader.audit(None, 100).unwrap().len(), 1);
    }

    #[test]
    fn approve_once_then_no_more_decisions() {
        let f = fixture("transitions");
        let c = &f.commands;
        let id = c.request_unblock(&request("example.org")).unwrap();
        let groups = vec!["staff".to_string(), "pupils".to_string()];
        let until = at(Duration::from_secs(7200));
        // The end must be in the future, and no more than a year away.
        let past = from_unix_millis(T0 - 1000);
        for end in [past, at(Duration::ZERO)] {
            let text = invalid_text(c.approve_unblock(id, &groups, end, "head", ""));
            assert!(text.contains("in the past"), "{text}");
        }
        let text = invalid_text(c.approve_unblock(
            id,
            &groups,
            at(MAX_PERIOD + Duration::from_secs(1)),
            "head",
            "",
        ));
        assert!(text.contains("at most 365 days"), "{text}");
        let grants = c.approve_unblock(id, &groups, until, "head", "").unwrap();
        assert_eq!(grants.len(), 2);
        assert_eq!(
            grants
                .iter()
                .map(|g| (g.group.as_str(), g.request_id, g.expires))
                .collect::<Vec<_>>(),
            [("staff", Some(id), until), ("pupils", Some(id), until)]
        );
        let stored = f.reader.unblock_request(id).unwrap().unwrap();
        assert_eq!(stored.status, RequestStatus::Approved);
        assert_eq!(stored.decided_by.as_deref(), Some("head"));
        assert_eq!(stored.decision_note, None);

        let again = invalid_text(c.approve_unblock(id, &groups, until, "head", ""));
        assert!(again.contains("already approved by head"), "{again}");
        let refuse = invalid_text(c.refuse_unblock(id, "head", "changed my mind"));
        assert!(refuse.contains("already approved"), "{refuse}");
        assert!(matches!(
            c.approve_unblock(99, &groups, until, "head", ""),
            Err(StoreError::NoSuchUnblockRequest(99))
        ));

        let audit = f.reader.audit(None, 10).unwrap();
        assert_eq!(audit.len(), 2, "refused attempts write nothing");
        assert_eq!(audit[0].kind, AuditKind::Grant);
        assert_eq!(
            audit[0].change,
            format!(
                "unblock request {id} for example.org approved for staff, pupils until 2026-11-18 13:06 UTC by head (grants 1, 2)"
            )
        );
        assert!(audit[0].reason.contains("asked by teacher: the history"));
    }

    #[test]
    fn refusals_need_a_reason_and_are_final() {
        let f = fixture("refuse");
        let c = &f.commands;
        let id = c.request_unblock(&request("example.org")).unwrap();
        assert_eq!(
            invalid_text(c.refuse_unblock(id, "head", " ")),
            "a reason is required"
        );
        c.refuse_unblock(id, "head", "a phishing site").unwrap();
        let stored = f.reader.unblock_request(id).unwrap().unwrap();
        assert_eq!(stored.status, RequestStatus::Refused);
        assert_eq!(stored.decision_note.as_deref(), Some("a phishing site"));
        let approve = invalid_text(c.approve_unblock(
            id,
            &["staff".into()],
            at(Duration::from_secs(3600)),
            "head",
            "",
        ));
        assert!(approve.contains("already refused by head"), "{approve}");
        assert!(c.refuse_unblock(id, "head", "again").is_err());
        assert!(f
            .reader
            .active_grants(at(Duration::ZERO))
            .unwrap()
            .is_empty());
        assert_eq!(
            f.reader
                .unblock_requests(Some(RequestStatus::Refused), 10)
                .unwrap()
                .len(),
            1
        );
        assert!(f
            .reader
            .unblock_requests(Some(RequestStatus::Pending), 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn grants_lapse_and_revoke_and_bump_the_generation() {
        let f = fixture("grants");
        let (c, r) = (&f.commands, &f.reader);
        assert_eq!(r.grants_generation().unwrap(), 0);
        assert!(invalid_text(c.grant(
            "example.org",
            &["staff".into()],
            at(Duration::from_secs(600)),
            "head",
            ""
        ))
        .contains("note is required"));
        let made = c
            .grant(
                "example.org",
                &["staff".into()],
                at(Duration::from_secs(600)),
                "head",
                "assembly video",
            )
            .unwrap();
        assert_eq!(made[0].request_id, None);
        let generation = r.grants_generation().unwrap();
        assert!(generation > 0);
        assert_eq!(r.active_grants(at(Duration::ZERO)).unwrap(), made);
        assert!(r
            .active_grants(at(Duration::from_secs(600)))
            .unwrap()
            .is_empty());
        // Revoked: gone from the active grants, kept in the history.
        let id = made[0].id;
        f.now.fetch_add(1000, Ordering::SeqCst);
        assert_eq!(
            invalid_text(c.revoke_grant(id, "head", "")),
            "a reason is required"
        );
        c.revoke_grant(id, "head", "the video was shown").unwrap();
        assert!(r.grants_generation().unwrap() > generation);
        assert!(r
            .active_grants(at(Duration::from_secs(2)))
            .unwrap()
            .is_empty());
        let history = r.grants(at(Duration::ZERO), 10).unwrap();
        assert_eq!(
            history[0].revoked,
            Some((at(Duration::from_secs(1)), "head".to_string()))
        );
        assert!(invalid_text(c.revoke_grant(id, "head", "again")).contains("already revoked"));
        assert!(matches!(
            c.revoke_grant(42, "head", "x"),
            Err(StoreError::NoSuchGrant(42))
        ));
        // A lapsed grant cannot be revoked.
        let other = c
            .grant(
                "example.net",
                &["staff".into()],
                at(Duration::from_secs(120)),
                "head",
                "a visit",
            )
            .unwrap();
        f.now.fetch_add(200_000, Ordering::SeqCst);
        assert!(invalid_text(c.revoke_grant(other[0].id, "head", "late")).contains("lapsed"));
        assert_eq!(r.verify_audit().unwrap().first_broken, None);
    }

    #[test]
    fn stats_count_by_period() {
        let f = fixture("stats");
        let c = &f.commands;
        let a = c.request_unblock(&request("a.example")).unwrap();
        let b = c.request_unblock(&request("b.example")).unwrap();
        c.request_unblock(&request("c.example")).unwrap();
        f.now.fetch_add(60_000, Ordering::SeqCst);
        c.approve_unblock(
            a,
            &["staff".into()],
            at(Duration::from_secs(3600)),
            "head",
            "",
        )
        .unwrap();
        c.refuse_unblock(b, "head", "no").unwrap();
        let all = f
            .reader
            .unblock_stats(at(Duration::ZERO), at(Duration::from_secs(3600)))
            .unwrap();
        assert_eq!(
            all,
            UnblockStats {
                requested: 3,
                approved: 1,
                refused: 1,
                pending: 1,
                grants: 1
            }
        );
        // Only the first 30 seconds: the requests, no decisions yet.
        let first = f
            .reader
            .unblock_stats(at(Duration::ZERO), at(Duration::from_secs(30)))
            .unwrap();
        assert_eq!((first.requested, first.approved, first.grants), (3, 0, 0));
        assert_eq!(
            f.reader.unblock_requests(None, 2).unwrap()[0].name,
            "c.example",
            "newest first"
        );
    }
}
