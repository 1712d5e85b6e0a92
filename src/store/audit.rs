//! The audit trail in the store: append-only and tamper-evident. Each record carries the
//! SHA-256 of its predecessor, so editing or deleting a record breaks the chain at that point
//! and [`Reader::verify_audit`](super::Reader::verify_audit) names it.

use std::{io::BufRead, path::Path, time::SystemTime};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::clock::{from_unix_millis, Clock};

use super::StoreError;

/// The `meta` key counting `audit.jsonl` lines already imported.
const IMPORTED: &str = "audit_jsonl_lines_imported";

/// What kind of action an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// A change to the filtering policy (groups, rules, categories).
    Policy,
    /// A change to a list (an update, a local allow or deny entry).
    List,
    /// A temporary grant (an unblock).
    Grant,
    /// A change to a breach's case.
    Case,
    /// An export of logged data.
    Export,
    /// An erasure of logged data.
    Erasure,
    /// A login to the dashboard.
    Login,
    /// A dashboard account added or changed (roles, password, two-factor, disabled).
    Account,
    /// Someone viewed a person's records.
    View,
    /// A filtering check was run and recorded.
    Check,
    /// Anything else.
    Other,
}

impl AuditKind {
    /// The stored form.
    pub fn label(self) -> &'static str {
        match self {
            AuditKind::Policy => "policy",
            AuditKind::List => "list",
            AuditKind::Grant => "grant",
            AuditKind::Case => "case",
            AuditKind::Export => "export",
            AuditKind::Erasure => "erasure",
            AuditKind::Login => "login",
            AuditKind::Account => "account",
            AuditKind::View => "view",
            AuditKind::Check => "check",
            AuditKind::Other => "other",
        }
    }

    /// Every kind.
    pub const ALL: [AuditKind; 11] = [
        AuditKind::Policy,
        AuditKind::List,
        AuditKind::Grant,
        AuditKind::Case,
        AuditKind::Export,
        AuditKind::Erasure,
        AuditKind::Login,
        AuditKind::Account,
        AuditKind::View,
        AuditKind::Check,
        AuditKind::Other,
    ];

    /// Parses [`AuditKind::label`] (unknown: `Other`).
    pub fn parse(text: &str) -> AuditKind {
        Self::ALL
            .into_iter()
            .find(|k| k.label() == text)
            .unwrap_or(AuditKind::Other)
    }
}

/// One audit record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its position in the chain (1, 2, …).
    pub id: i64,
    /// When.
    pub at: SystemTime,
    /// Who or what.
    pub actor: String,
    /// What kind of action.
    pub kind: AuditKind,
    /// What changed, in plain words.
    pub change: String,
    /// Why.
    pub reason: String,
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Records checked.
    pub records: u64,
    /// The first record whose content or link does not match, if any, and what is wrong.
    pub first_broken: Option<(i64, String)>,
}

fn digest(
    prev: &[u8],
    id: i64,
    at: i64,
    actor: &str,
    kind: &str,
    change: &str,
    reason: &str,
) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(id.to_be_bytes());
    h.update(at.to_be_bytes());
    // Length prefixes: moving text from one field to the next changes the hash.
    for field in [actor, kind, change, reason] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().to_vec()
}

/// Appends one record inside the caller's transaction (which must hold the write lock, so
/// two appenders never link to the same predecessor).
pub(crate) fn append(
    conn: &Connection,
    at_ms: i64,
    actor: &str,
    kind: AuditKind,
    change: &str,
    reason: &str,
) -> Result<i64, StoreError> {
    let last: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (id, prev) = match last {
        Some((id, hash)) => (id + 1, hash),
        None => (1, vec![0u8; 32]),
    };
    let hash = digest(&prev, id, at_ms, actor, kind.label(), change, reason);
    conn.execute(
        "INSERT INTO audit (id, at, actor, kind, change, reason, prev, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![id, at_ms, actor, kind.label(), change, reason, prev, hash],
    )?;
    Ok(id)
}

/// Walks the chain from the first record.
pub(crate) fn verify(conn: &Connection) -> Result<ChainReport, StoreError> {
    let mut stmt = conn
        .prepare("SELECT id, at, actor, kind, change, reason, prev, hash FROM audit ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut expected_prev = vec![0u8; 32];
    let mut expected_id = 1i64;
    let mut records = 0;
    while let Some(r) = rows.next()? {
        records += 1;
        let id: i64 = r.get(0)?;
        let (at, actor, kind, change, reason): (i64, String, String, String, String) =
            (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
        let (prev, hash): (Vec<u8>, Vec<u8>) = (r.get(6)?, r.get(7)?);
        let problem = if id != expected_id {
            Some(format!("record {expected_id} is missing"))
        } else if prev != expected_prev {
            Some("its link to the previous record does not match".to_string())
        } else if digest(&prev, id, at, &actor, &kind, &change, &reason) != hash {
            Some("its content was changed after it was written".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Ok(ChainReport {
                records,
                first_broken: Some((id.min(expected_id), problem)),
            });
        }
        expected_prev = hash;
        expected_id += 1;
    }
    Ok(ChainReport {
        records,
        first_broken: None,
    })
}

/// Records, newest first, before `before_id` if given.
/// Records of the given kinds (every kind when `kinds` is empty), newest first, with ids
/// below `before_id`.
pub(crate) fn list(
    conn: &Connection,
    kinds: &[AuditKind],
    before_id: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditEntry>, StoreError> {
    // The labels are this module's constants, never outside text.
    let only = if kinds.is_empty() {
        String::new()
    } else {
        let labels: Vec<String> = kinds.iter().map(|k| format!("'{}'", k.label())).collect();
        format!("AND kind IN ({})", labels.join(", "))
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT id, at, actor, kind, change, reason FROM audit
         WHERE id < ?1 {only} ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![before_id.unwrap_or(i64::MAX), limit], |r| {
        Ok(AuditEntry {
            id: r.get(0)?,
            at: from_unix_millis(r.get(1)?),
            actor: r.get(2)?,
            kind: AuditKind::parse(&r.get::<_, String>(3)?),
            change: r.get(4)?,
            reason: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Deserialize)]
struct JsonRecord {
    at: u64,
    actor: String,
    change: String,
    reason: String,
}

/// Imports the records of the old `audit.jsonl` not imported yet. The `meta` marker counts
/// lines and is updated in the same transaction as the records, so running it again (or
/// after a crash) never imports a record twice; lines the running server appends later are
/// picked up next time.
pub(crate) fn import_jsonl(
    conn: &mut Connection,
    path: &Path,
    clock: &Clock,
) -> Result<(), StoreError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let done: u64 = tx
        .query_row("SELECT value FROM meta WHERE key = ?1", [IMPORTED], |r| {
            r.get::<_, String>(0)
        })
        .optional()?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut lines = 0u64;
    let mut imported = 0u64;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|e| StoreError::io(path, e))?;
        // A line still being written (no newline yet) would fail to parse: stop there.
        let Ok(record) = serde_json::from_str::<JsonRecord>(&line) else {
            if line.trim().is_empty() {
                lines += 1;
                continue;
            }
            break;
        };
        lines += 1;
        if lines <= done {
            continue;
        }
        let at = i64::try_from(record.at.saturating_mul(1000)).unwrap_or(i64::MAX);
        append(
            &tx,
            at,
            &record.actor,
            AuditKind::Policy,
            &record.change,
            &record.reason,
        )?;
        imported += 1;
    }
    if imported > 0 {
        append(
            &tx,
            clock.unix_millis(),
            "hedgerow",
            AuditKind::Other,
            &format!("imported {imported} records from {}", path.display()),
            "one-time move of the policy audit log into the store",
        )?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![IMPORTED, lines.max(done).to_string()],
    )?;
    tx.commit()?;
    Ok(())
}
