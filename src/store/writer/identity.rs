//! Who a query came from at the time it arrived: configured device, DHCP lease, session,
//! or the address itself — resolved here, in the writer, never on the DNS path.

use std::net::IpAddr;

use rusqlite::{params, OptionalExtension};

use super::{Batch, Identity};
use crate::store::{ip_text, StoreError};

impl Batch<'_, '_> {
    /// The device and user at time `t`: the configured device wins, else a DHCP lease valid
    /// then, else a session's device, else the address itself. Cached per address for the
    /// span in which no lease or session for it starts or ends.
    pub(super) fn identity(
        &mut self,
        ip: IpAddr,
        t: i64,
        configured: Option<&str>,
    ) -> Result<Identity, StoreError> {
        let cached = self
            .caches
            .identity
            .get(&ip)
            .copied()
            .filter(|i| i.from <= t && t < i.until);
        let mut identity = match cached {
            Some(i) => i,
            None => {
                let i = self.lookup_identity(ip, t)?;
                self.caches.identity.insert(ip, i);
                i
            }
        };
        if let Some(name) = configured {
            identity.device = self.device(&format!("device:{name}"), name, "configured")?;
        }
        Ok(identity)
    }

    pub(super) fn lookup_identity(&mut self, ip: IpAddr, t: i64) -> Result<Identity, StoreError> {
        let ip_s = ip_text(ip);
        let lease: Option<(Option<String>, Option<String>)> = self
            .tx
            .prepare_cached(
                "SELECT mac, hostname FROM leases WHERE ip = ?1 AND starts <= ?2 AND ends > ?2
                 ORDER BY starts DESC, id DESC LIMIT 1",
            )?
            .query_row(params![ip_s, t], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let session: Option<(String, Option<String>)> = self
            .tx
            .prepare_cached(
                "SELECT username, device FROM sessions WHERE ip = ?1 AND starts <= ?2 AND ends > ?2
                 ORDER BY starts DESC, id DESC LIMIT 1",
            )?
            .query_row(params![ip_s, t], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (from, until): (Option<i64>, Option<i64>) = self
            .tx
            .prepare_cached(
                "SELECT MAX(CASE WHEN x <= ?2 THEN x END), MIN(CASE WHEN x > ?2 THEN x END) FROM (
                   SELECT starts AS x FROM leases WHERE ip = ?1 UNION ALL
                   SELECT ends FROM leases WHERE ip = ?1 UNION ALL
                   SELECT starts FROM sessions WHERE ip = ?1 UNION ALL
                   SELECT ends FROM sessions WHERE ip = ?1)",
            )?
            .query_row(params![ip_s, t], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let device = match (&lease, &session) {
            (Some((Some(mac), host)), _) => {
                let label = host.clone().unwrap_or_else(|| mac.clone());
                self.device(&format!("mac:{mac}"), &label, "lease")?
            }
            (Some((None, Some(host))), _) => self.device(&format!("host:{host}"), host, "lease")?,
            (_, Some((_, Some(name)))) => {
                self.device(&format!("device:{name}"), name, "session")?
            }
            _ => self.device(&format!("ip:{ip_s}"), &ip_s, "address")?,
        };
        let user = match session {
            Some((u, _)) => Some(self.intern_user(&u)?),
            None => None,
        };
        Ok(Identity {
            device,
            user,
            from: from.unwrap_or(i64::MIN),
            until: until.unwrap_or(i64::MAX),
        })
    }

    pub(super) fn device(&mut self, key: &str, label: &str, kind: &str) -> Result<i64, StoreError> {
        if let Some(&id) = self.caches.devices.get(key) {
            return Ok(id);
        }
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT id FROM devices WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                self.tx
                    .prepare_cached("INSERT INTO devices (key, label, kind) VALUES (?1, ?2, ?3)")?
                    .execute(params![key, label, kind])?;
                self.tx.last_insert_rowid()
            }
        };
        self.caches.devices.insert(key.to_string(), id);
        Ok(id)
    }

    pub(super) fn ident(&mut self, device: i64, ip: i64, user: i64) -> Result<i64, StoreError> {
        if let Some(&id) = self.caches.idents.get(&(device, ip, user)) {
            return Ok(id);
        }
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT id FROM idents WHERE device = ?1 AND ip = ?2 AND user = ?3")?
            .query_row(params![device, ip, user], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                self.tx
                    .prepare_cached("INSERT INTO idents (device, ip, user) VALUES (?1, ?2, ?3)")?
                    .execute(params![device, ip, user])?;
                self.tx.last_insert_rowid()
            }
        };
        self.caches.idents.insert((device, ip, user), id);
        Ok(id)
    }
}
