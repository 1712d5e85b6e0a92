//! Recording user sessions ("where possible the person", as the DfE filtering standard
//! asks): from a CSV export (`hedgerow sessions import`) or a login script's
//! `POST /api/v1/sessions`. Parsing and checking are in [`crate::identity::sessions`]; this
//! turns a checked [`Session`] into the store's [`SessionRecord`] and stores it.
//!
//! Usernames are personal data: nothing here logs them, and the messages name lines, not
//! people.

use std::{fmt::Write as _, path::Path, time::Duration};

use crate::{
    clock::Clock,
    config::Config,
    identity::{
        sessions::{read_csv, Session, SessionError},
        LineError,
    },
    store::{self, Commands, SessionRecord, StoreError},
};

/// How long a session without an end is taken to last: a school day. A later session on the
/// same address takes over from it as soon as it starts (the store picks the latest start),
/// so the next person to log in on that machine is attributed correctly.
pub const OPEN_SESSION: Duration = Duration::from_secs(12 * 3600);

/// Why sessions could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    /// The file could not be read or its header is wrong (nothing was stored).
    #[error(transparent)]
    File(SessionError),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A checked session as the store keeps it: without an end, it lasts [`OPEN_SESSION`]; an
/// end equal to the start is taken as one second, so the record is never empty.
pub fn record(session: Session) -> SessionRecord {
    let ends = session
        .ends
        .unwrap_or(session.starts + OPEN_SESSION)
        .max(session.starts + Duration::from_secs(1));
    SessionRecord {
        ip: session.ip,
        username: session.username,
        device: session.device,
        starts: session.starts,
        ends,
    }
}

/// Stores each session (blocking); returns how many.
pub fn store_all(commands: &Commands, sessions: Vec<Session>) -> Result<usize, StoreError> {
    let mut stored = 0;
    for s in sessions {
        commands.add_session(&record(s))?;
        stored += 1;
    }
    Ok(stored)
}

/// Stores a session a login or logout script sent: with an end, it also ends that person's
/// open session on that address then (the one its login began), so a shared machine is not
/// attributed to someone who has logged out. Blocking.
pub fn store_posted(commands: &Commands, session: Session) -> Result<(), StoreError> {
    match session.ends {
        // A logout alone (ends when it starts): nothing to add, only the open session to end.
        Some(end) if end == session.starts => {
            commands.end_sessions(session.ip, &session.username, end)?;
        }
        Some(end) => {
            let (ip, username) = (session.ip, session.username.clone());
            commands.add_session(&record(session))?;
            commands.end_sessions(ip, &username, end)?;
        }
        None => commands.add_session(&record(session))?,
    }
    Ok(())
}

/// What `hedgerow sessions import` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Sessions stored.
    pub stored: usize,
    /// Lines that could not be used (nothing from them was stored).
    pub errors: Vec<LineError>,
}

impl ImportReport {
    /// In plain words, one line per bad line of the file.
    pub fn describe(&self) -> String {
        let mut out = format!("stored {} session(s)\n", self.stored);
        if !self.errors.is_empty() {
            let _ = writeln!(
                out,
                "{} line(s) could not be used and were skipped (correct them and import just those \
                 lines again):",
                self.errors.len()
            );
            for e in &self.errors {
                let _ = writeln!(out, "  line {}: {}", e.line, e.reason);
            }
        }
        out
    }
}

/// `hedgerow sessions import FILE`: stores the good lines' sessions, reports the bad lines.
pub fn import_csv(
    config: &Config,
    file: &Path,
    clock: Clock,
) -> Result<ImportReport, SessionsError> {
    let (sessions, errors) = match read_csv(file) {
        Ok(sessions) => (sessions, Vec::new()),
        Err(SessionError::Partial { sessions, errors }) => (sessions, errors),
        Err(other) => return Err(SessionsError::File(other)),
    };
    let (_, commands) = store::open_offline(&config.server.data_dir, clock)?;
    let stored = store_all(&commands, sessions)?;
    Ok(ImportReport { stored, errors })
}
