//! Interning: everything that repeats becomes a small integer id, cached in the writer.

use std::{net::IpAddr, sync::Arc};

use foldhash::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Batch, ShapeKey};
use crate::store::{ip_text, StoreError};

impl Batch<'_, '_> {
    pub(super) fn shape(&mut self, key: ShapeKey, blocked: bool) -> Result<i64, StoreError> {
        if let Some(&id) = self.caches.shapes.get(&key) {
            return Ok(id);
        }
        let found: Option<i64> = self
            .tx
            .prepare_cached(
                "SELECT id FROM shapes WHERE grp IS ?1 AND qtype = ?2 AND transport = ?3
                 AND disposition = ?4 AND reason IS ?5 AND category IS ?6 AND rule IS ?7
                 AND severity IS ?8 AND rcode = ?9",
            )?
            .query_row(
                params![
                    key.group,
                    key.qtype,
                    key.transport,
                    key.disposition,
                    key.reason,
                    key.category,
                    key.rule,
                    key.severity,
                    key.rcode
                ],
                |r| r.get(0),
            )
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                // Blocked shapes count down from -1, the rest up from 1: the sign is the
                // "blocked" flag, free in every row.
                let next: i64 = if blocked {
                    self.tx.query_row(
                        "SELECT MIN(COALESCE(MIN(id), 0), 0) - 1 FROM shapes",
                        [],
                        |r| r.get(0),
                    )?
                } else {
                    self.tx.query_row(
                        "SELECT MAX(COALESCE(MAX(id), 0), 0) + 1 FROM shapes",
                        [],
                        |r| r.get(0),
                    )?
                };
                self.tx.execute(
                    "INSERT INTO shapes (id, grp, qtype, transport, disposition, reason, category, rule, severity, rcode)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        next,
                        key.group,
                        key.qtype,
                        key.transport,
                        key.disposition,
                        key.reason,
                        key.category,
                        key.rule,
                        key.severity,
                        key.rcode
                    ],
                )?;
                next
            }
        };
        self.caches.shapes.insert(key, id);
        Ok(id)
    }

    pub(super) fn group(&mut self, name: &Arc<str>) -> Result<i64, StoreError> {
        if let Some(&id) = self.caches.groups.get(name) {
            return Ok(id);
        }
        let id = intern(self.tx, "groups", "name", name)?;
        self.caches.groups.insert(name.clone(), id);
        Ok(id)
    }

    pub(super) fn ip(&mut self, ip: IpAddr) -> Result<i64, StoreError> {
        if let Some(&id) = self.caches.ips.get(&ip) {
            return Ok(id);
        }
        let id = intern(self.tx, "ips", "ip", &ip_text(ip))?;
        self.caches.ips.insert(ip, id);
        Ok(id)
    }

    pub(super) fn intern_name(&mut self, name: &str) -> Result<i64, StoreError> {
        cached(self.tx, &mut self.caches.names, "names", "name", name)
    }

    pub(super) fn intern_category(&mut self, v: &str) -> Result<i64, StoreError> {
        cached(
            self.tx,
            &mut self.caches.categories,
            "categories",
            "name",
            v,
        )
    }

    pub(super) fn intern_rule(&mut self, v: &str) -> Result<i64, StoreError> {
        cached(self.tx, &mut self.caches.rules, "rules", "text", v)
    }

    pub(super) fn intern_user(&mut self, v: &str) -> Result<i64, StoreError> {
        cached(self.tx, &mut self.caches.users, "users", "name", v)
    }
}

/// [`intern`] through the writer's cache of that table.
fn cached(
    conn: &Connection,
    cache: &mut HashMap<String, i64>,
    table: &'static str,
    column: &'static str,
    value: &str,
) -> Result<i64, StoreError> {
    if let Some(&id) = cache.get(value) {
        return Ok(id);
    }
    let id = intern(conn, table, column, value)?;
    cache.insert(value.to_string(), id);
    Ok(id)
}

/// The id of `value` in a `(id, column UNIQUE)` table, inserting it if new. `table` and
/// `column` are our own constants, never outside input.
fn intern(
    conn: &Connection,
    table: &'static str,
    column: &'static str,
    value: &str,
) -> Result<i64, StoreError> {
    let found: Option<i64> = conn
        .prepare_cached(&format!("SELECT id FROM {table} WHERE {column} = ?1"))?
        .query_row([value], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    conn.prepare_cached(&format!("INSERT INTO {table} ({column}) VALUES (?1)"))?
        .execute([value])?;
    Ok(conn.last_insert_rowid())
}
