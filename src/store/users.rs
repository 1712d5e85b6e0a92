//! Dashboard accounts in the store (table `accounts`): names, roles, password hashes,
//! two-factor secrets, and sign-ins. Every change is written with its audit record in the
//! same transaction; audit texts never carry a hash or a secret.
//!
//! Hashing, strength rules and code checks are [`crate::accounts`]'s: the store keeps what
//! it is given.

use std::{fmt, net::IpAddr, time::SystemTime};

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::{
    accounts::{self, totp, Roles},
    clock::from_unix_millis,
};

use super::{audit, AuditKind, Commands, Reader, StoreError};

/// The reason written on account audit records.
const REASON: &str = "dashboard account administration";

/// One dashboard account as stored. Its `Debug` prints neither the hash nor the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The row's id.
    pub id: i64,
    /// The account name (unique, ignoring ASCII case).
    pub name: String,
    /// What the account may see and do.
    pub roles: Roles,
    /// A disabled account cannot sign in.
    pub disabled: bool,
    /// The Argon2id PHC string ([`crate::accounts::password::hash`]).
    pub password_hash: String,
    /// The TOTP secret in base32, when two-factor sign-in is set up.
    pub totp_secret: Option<String>,
    /// When the account was added.
    pub created: SystemTime,
    /// When the password was last set.
    pub password_changed: SystemTime,
    /// The last successful sign-in.
    pub last_login: Option<SystemTime>,
}

impl UserRecord {
    /// Whether two-factor sign-in is set up.
    pub fn two_factor(&self) -> bool {
        self.totp_secret.is_some()
    }
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("disabled", &self.disabled)
            .field("password_hash", &"(hidden)")
            .field(
                "totp_secret",
                &self.totp_secret.as_ref().map(|_| "(hidden)"),
            )
            .field("created", &self.created)
            .field("password_changed", &self.password_changed)
            .field("last_login", &self.last_login)
            .finish()
    }
}

/// How a sign-in attempt (or a sign-out) ended, for [`Commands::record_login`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginOutcome {
    /// Signed in.
    Success,
    /// The password was wrong.
    BadPassword,
    /// The password was right, the two-factor code wrong (or already used).
    BadCode,
    /// No account has that name.
    UnknownUser,
    /// The account is disabled.
    Disabled,
    /// Refused without checking: too many failed attempts.
    LockedOut,
    /// Signed out.
    Logout,
}

impl LoginOutcome {
    /// Every outcome.
    pub const ALL: [LoginOutcome; 7] = [
        LoginOutcome::Success,
        LoginOutcome::BadPassword,
        LoginOutcome::BadCode,
        LoginOutcome::UnknownUser,
        LoginOutcome::Disabled,
        LoginOutcome::LockedOut,
        LoginOutcome::Logout,
    ];

    /// A short stable name (for metrics and logs).
    pub fn label(self) -> &'static str {
        match self {
            LoginOutcome::Success => "success",
            LoginOutcome::BadPassword => "bad_password",
            LoginOutcome::BadCode => "bad_code",
            LoginOutcome::UnknownUser => "unknown_user",
            LoginOutcome::Disabled => "disabled",
            LoginOutcome::LockedOut => "locked_out",
            LoginOutcome::Logout => "logout",
        }
    }

    /// The audit record's words, before " from ADDRESS".
    fn describe(self) -> &'static str {
        match self {
            LoginOutcome::Success => "login succeeded",
            LoginOutcome::BadPassword => "failed login (wrong password)",
            LoginOutcome::BadCode => "failed login (wrong two-factor code)",
            // The name typed is not recorded: people type their password into the name box.
            LoginOutcome::UnknownUser => {
                "failed login (no such account; the name typed is not recorded)"
            }
            LoginOutcome::Disabled => "failed login (account disabled)",
            LoginOutcome::LockedOut => "locked out after repeated failed logins, login refused",
            LoginOutcome::Logout => "logged out",
        }
    }
}

/// The columns [`user_row`] reads.
const COLUMNS: &str = "id, name, roles, disabled, password_hash, totp_secret, created, \
                       password_changed, last_login";

fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        roles: Roles::from_bits(u8::try_from(r.get::<_, i64>(2)?).unwrap_or(0)),
        disabled: r.get(3)?,
        password_hash: r.get(4)?,
        totp_secret: r.get(5)?,
        created: from_unix_millis(r.get(6)?),
        password_changed: from_unix_millis(r.get(7)?),
        last_login: r.get::<_, Option<i64>>(8)?.map(from_unix_millis),
    })
}

fn check_name(name: &str) -> Result<(), StoreError> {
    accounts::check_name(name).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn check_roles(roles: Roles) -> Result<(), StoreError> {
    if roles.is_empty() {
        return Err(StoreError::Invalid(
            "an account needs at least one role".into(),
        ));
    }
    Ok(())
}

/// The stored name (its own case) and roles of the account called `name`.
fn locate(conn: &Connection, name: &str) -> Result<(i64, String, Roles), StoreError> {
    check_name(name)?;
    conn.query_row(
        "SELECT id, name, roles FROM accounts WHERE name = ?1",
        [name],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                Roles::from_bits(u8::try_from(r.get::<_, i64>(2)?).unwrap_or(0)),
            ))
        },
    )
    .optional()?
    .ok_or_else(|| StoreError::NoSuchUser(name.to_string()))
}

impl Reader {
    /// Every account, by name.
    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.connection()?;
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM accounts ORDER BY name"))?;
        let rows = stmt.query_map([], user_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The account called `name` (ignoring ASCII case); `None` when there is none, or the
    /// name could not name one.
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        if !accounts::valid_name(name) {
            return Ok(None);
        }
        let conn = self.connection()?;
        Ok(conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM accounts WHERE name = ?1"),
                [name],
                user_row,
            )
            .optional()?)
    }
}

impl Commands {
    /// Runs `change` on the account called `name` in one write transaction with its audit
    /// record; `change` gets the connection and the account's id, stored name and roles,
    /// and returns the audit text.
    fn change_account(
        &self,
        name: &str,
        by: &str,
        change: impl FnOnce(&Connection, i64, &str, Roles) -> Result<String, StoreError>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (id, stored, roles) = locate(&tx, name)?;
        let text = change(&tx, id, &stored, roles)?;
        audit::append(
            &tx,
            self.clock().unix_millis(),
            by,
            AuditKind::Account,
            &text,
            REASON,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Adds an account; returns its id. `password_hash` is stored as given (hash it with
    /// [`crate::accounts::password::hash`]).
    pub fn add_user(
        &self,
        name: &str,
        roles: Roles,
        password_hash: &str,
        by: &str,
    ) -> Result<i64, StoreError> {
        check_name(name)?;
        check_roles(roles)?;
        if password_hash.is_empty() {
            return Err(StoreError::Invalid("an account needs a password".into()));
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<String> = tx
            .query_row("SELECT name FROM accounts WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(existing) = existing {
            return Err(StoreError::UserExists(existing));
        }
        let now = self.clock().unix_millis();
        tx.execute(
            "INSERT INTO accounts (name, roles, password_hash, disabled, created, password_changed)
             VALUES (?1, ?2, ?3, 0, ?4, ?4)",
            params![name, roles.bits(), password_hash, now],
        )?;
        let id = tx.last_insert_rowid();
        audit::append(
            &tx,
            now,
            by,
            AuditKind::Account,
            &format!("added the dashboard account {name} (roles: {roles})"),
            REASON,
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Replaces an account's password hash.
    pub fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        by: &str,
    ) -> Result<(), StoreError> {
        if password_hash.is_empty() {
            return Err(StoreError::Invalid("an account needs a password".into()));
        }
        self.change_account(name, by, |tx, id, stored, _| {
            tx.execute(
                "UPDATE accounts SET password_hash = ?2, password_changed = ?3 WHERE id = ?1",
                params![id, password_hash, self.clock().unix_millis()],
            )?;
            Ok(format!("changed the password of {stored}"))
        })
    }

    /// Disables (`true`) or enables an account. A disabled account cannot sign in; the
    /// dashboard also ends its sessions.
    pub fn set_disabled(&self, name: &str, disabled: bool, by: &str) -> Result<(), StoreError> {
        self.change_account(name, by, |tx, id, stored, _| {
            tx.execute(
                "UPDATE accounts SET disabled = ?2 WHERE id = ?1",
                params![id, disabled],
            )?;
            Ok(if disabled {
                format!("disabled the account {stored}")
            } else {
                format!("enabled the account {stored}")
            })
        })
    }

    /// Replaces an account's roles (at least one).
    pub fn set_roles(&self, name: &str, roles: Roles, by: &str) -> Result<(), StoreError> {
        check_roles(roles)?;
        self.change_account(name, by, |tx, id, stored, old| {
            tx.execute(
                "UPDATE accounts SET roles = ?2 WHERE id = ?1",
                params![id, roles.bits()],
            )?;
            Ok(format!(
                "changed the roles of {stored} from {old} to {roles}"
            ))
        })
    }

    /// Sets (enrols) or, with `None`, removes an account's TOTP secret (base32). Either way
    /// the record of used codes starts afresh.
    pub fn set_totp(&self, name: &str, secret: Option<&str>, by: &str) -> Result<(), StoreError> {
        if let Some(s) = secret {
            totp::Secret::from_base32(s).map_err(|e| StoreError::Invalid(e.to_string()))?;
        }
        self.change_account(name, by, |tx, id, stored, _| {
            tx.execute(
                "UPDATE accounts SET totp_secret = ?2, totp_last_step = NULL WHERE id = ?1",
                params![id, secret],
            )?;
            Ok(match secret {
                Some(_) => format!("set up two-factor sign-in for {stored} (new secret)"),
                None => format!("removed two-factor sign-in from {stored}"),
            })
        })
    }

    /// Records that the TOTP code of time `step` (from [`crate::accounts::totp::verify`])
    /// was used by `name`: `true` if no code of this step or a later one was accepted
    /// before, `false` if it was (a replayed code: refuse the sign-in). Atomic, so two
    /// sign-ins racing with one code cannot both pass.
    pub fn claim_totp_step(&self, name: &str, step: u64) -> Result<bool, StoreError> {
        let step = i64::try_from(step)
            .map_err(|_| StoreError::Invalid("a time step out of range".into()))?;
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (id, _, _) = locate(&tx, name)?;
        let changed = tx.execute(
            "UPDATE accounts SET totp_last_step = ?2
             WHERE id = ?1 AND totp_secret IS NOT NULL
               AND (totp_last_step IS NULL OR totp_last_step < ?2)",
            params![id, step],
        )?;
        tx.commit()?;
        Ok(changed == 1)
    }

    /// Records a sign-in attempt or a sign-out in the audit trail (kind `login`), with the
    /// address it came from; on [`LoginOutcome::Success`] also the account's last login.
    /// For [`LoginOutcome::UnknownUser`] the name typed is not recorded.
    pub fn record_login(
        &self,
        name: &str,
        addr: Option<IpAddr>,
        outcome: LoginOutcome,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = self.clock().unix_millis();
        let actor = match outcome {
            LoginOutcome::UnknownUser => "unknown account".to_string(),
            LoginOutcome::Success => {
                let (id, stored, _) = locate(&tx, name)?;
                tx.execute(
                    "UPDATE accounts SET last_login = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                stored
            }
            _ => match locate(&tx, name) {
                Ok((_, stored, _)) => stored,
                Err(StoreError::NoSuchUser(_)) => name.to_string(),
                Err(e) => return Err(e),
            },
        };
        let from = addr.map(|a| format!(" from {a}")).unwrap_or_default();
        audit::append(
            &tx,
            now,
            &actor,
            AuditKind::Login,
            &format!("{}{from}", outcome.describe()),
            "dashboard sign-in",
        )?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::{accounts::Role, clock::Clock, store::open_offline};

    fn open(tag: &str) -> (std::path::PathBuf, Reader, Commands) {
        let dir =
            std::env::temp_dir().join(format!("hedgerow-unit-users-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let at = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let (reader, commands) = open_offline(&dir, Clock::from_fn(move || at)).unwrap();
        (dir, reader, commands)
    }

    #[test]
    fn debug_hides_the_hash_and_the_secret() {
        let record = UserRecord {
            id: 1,
            name: "alice".into(),
            roles: Roles::NONE.with(Role::Dsl),
            disabled: false,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            totp_secret: Some("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into()),
            created: UNIX_EPOCH,
            password_changed: UNIX_EPOCH,
            last_login: None,
        };
        let shown = format!("{record:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(
            !shown.contains("argon2") && !shown.contains("aGFzaA"),
            "{shown}"
        );
        assert!(!shown.contains("GEZDGNBV"), "{shown}");
        assert!(shown.contains("(hidden)"), "{shown}");
        for o in LoginOutcome::ALL {
            assert!(!o.label().is_empty() && !o.describe().is_empty());
        }
    }

    #[test]
    fn accounts_are_stored_changed_and_audited() {
        let (dir, reader, commands) = open("crud");
        let dsl = Roles::NONE.with(Role::Dsl);
        let id = commands.add_user("Alice", dsl, "HASH-1", "tester").unwrap();
        assert!(id > 0);
        let err = commands
            .add_user("alice", dsl, "HASH-2", "tester")
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::UserExists(n) if n == "Alice"),
            "{err}"
        );
        for bad in ["", "al ice", "x/y"] {
            let err = commands.add_user(bad, dsl, "HASH", "tester").unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err}");
        }
        let err = commands
            .add_user("bob", Roles::NONE, "HASH", "tester")
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");

        let u = reader.user("ALICE").unwrap().unwrap();
        assert_eq!(
            (u.name.as_str(), u.roles, u.disabled),
            ("Alice", dsl, false)
        );
        assert_eq!(u.password_hash, "HASH-1");
        assert_eq!((u.totp_secret.as_deref(), u.last_login), (None, None));
        assert!(reader.user("nobody").unwrap().is_none());
        assert!(reader.user("not a name").unwrap().is_none());

        commands.set_password("alice", "HASH-3", "tester").unwrap();
        commands.set_disabled("alice", true, "tester").unwrap();
        let both = dsl.with(Role::Approver);
        commands.set_roles("alice", both, "tester").unwrap();
        assert!(matches!(
            commands.set_roles("alice", Roles::NONE, "tester"),
            Err(StoreError::Invalid(_))
        ));
        let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        assert!(matches!(
            commands.set_totp("alice", Some("not base32!"), "tester"),
            Err(StoreError::Invalid(_))
        ));
        commands.set_totp("alice", Some(secret), "tester").unwrap();
        let u = reader.user("alice").unwrap().unwrap();
        assert_eq!(u.password_hash, "HASH-3");
        assert!(u.disabled);
        assert_eq!(u.roles, both);
        assert_eq!(u.totp_secret.as_deref(), Some(secret));
        for missing in [
            commands.set_password("bob", "H", "tester"),
            commands.set_disabled("bob", false, "tester"),
            commands.set_roles("bob", dsl, "tester"),
            commands.set_totp("bob", None, "tester"),
        ] {
            assert!(matches!(missing, Err(StoreError::NoSuchUser(ref n)) if n == "bob"));
        }

        // A code's time step is accepted once; later steps still are.
        assert!(commands.claim_totp_step("alice", 100).unwrap());
        assert!(!commands.claim_totp_step("alice", 100).unwrap(), "replay");
        assert!(
            !commands.claim_totp_step("alice", 99).unwrap(),
            "older step"
        );
        assert!(commands.claim_totp_step("alice", 101).unwrap());
        commands.set_totp("alice", None, "tester").unwrap();
        assert!(
            !commands.claim_totp_step("alice", 102).unwrap(),
            "no secret"
        );
        assert!(reader.user("alice").unwrap().unwrap().totp_secret.is_none());

        let addr: IpAddr = "10.0.0.5".parse().unwrap();
        commands
            .record_login("alice", Some(addr), LoginOutcome::BadPassword)
            .unwrap();
        commands
            .record_login("typed-my-password", Some(addr), LoginOutcome::UnknownUser)
            .unwrap();
        assert!(reader.user("alice").unwrap().unwrap().last_login.is_none());
        commands
            .record_login("alice", Some(addr), LoginOutcome::Success)
            .unwrap();
        assert!(reader.user("alice").unwrap().unwrap().last_login.is_some());
        assert!(matches!(
            commands.record_login("bob", None, LoginOutcome::Success),
            Err(StoreError::NoSuchUser(_))
        ));
        commands
            .record_login("alice", None, LoginOutcome::Logout)
            .unwrap();

        let trail: Vec<_> = reader.audit(None, 100).unwrap().into_iter().rev().collect();
        let texts: Vec<(AuditKind, &str, &str)> = trail
            .iter()
            .map(|e| (e.kind, e.actor.as_str(), e.change.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                (
                    AuditKind::Account,
                    "tester",
                    "added the dashboard account Alice (roles: dsl)"
                ),
                (
                    AuditKind::Account,
                    "tester",
                    "changed the password of Alice"
                ),
                (AuditKind::Account, "tester", "disabled the account Alice"),
                (
                    AuditKind::Account,
                    "tester",
                    "changed the roles of Alice from dsl to dsl, approver"
                ),
                (
                    AuditKind::Account,
                    "tester",
                    "set up two-factor sign-in for Alice (new secret)"
                ),
                (
                    AuditKind::Account,
                    "tester",
                    "removed two-factor sign-in from Alice"
                ),
                (
                    AuditKind::Login,
                    "Alice",
                    "failed login (wrong password) from 10.0.0.5"
                ),
                (
                    AuditKind::Login,
                    "unknown account",
                    "failed login (no such account; the name typed is not recorded) from 10.0.0.5"
                ),
                (AuditKind::Login, "Alice", "login succeeded from 10.0.0.5"),
                (AuditKind::Login, "Alice", "logged out"),
            ]
        );
        assert!(reader.verify_audit().unwrap().first_broken.is_none());
        let users = reader.users().unwrap();
        assert_eq!(users.len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
