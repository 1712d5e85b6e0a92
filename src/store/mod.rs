//! The store: the query log, device identity, breaches and their cases, dashboard accounts,
//! unblock requests and grants, and the tamper-evident audit trail, in SQLite at `DATA_DIR/hedgerow.sqlite`. The only place in the crate with SQL.
//! It depends on [`crate::event`], [`crate::clock`], [`crate::config`] and the
//! [`crate::accounts`] leaf (an account's roles) only.
//!
//! # Concurrency, and why
//!
//! - **One writer thread** owns the connection that writes query events. The DNS path hands
//!   events over through [`QuerySink::record`], a non-blocking send into one of two bounded
//!   queues: blocked (and breach-bearing) events, which are never dropped — when their queue is
//!   full or the writer is gone they are appended to the journal file (a short mutex; a
//!   `write` per 64 KiB or 100 ms, only on that overload path) — and allowed events, which are shed and counted.
//!   Nothing on the DNS path ever waits for SQLite. Stored events go back to the DNS
//!   threads, which build new ones in their buffers ([`QuerySink::spare`], `sink::Spent`):
//!   freed by the writer a batch at a time, they stalled the DNS thread's allocator.
//! - The writer batches: one transaction per 16,384 rows or per `batch_interval` (default
//!   200 ms), prepared statements reused. A `kill -9` loses the events still queued or in the
//!   current batch — while the writer keeps up, at most one batch interval — and WAL mode
//!   means it never corrupts the database. When a commit fails (locked, read-only, disk full)
//!   the batch's blocked events go to the journal (fsynced) and are replayed exactly once when
//!   the database takes writes again.
//! - **Readers** ([`Reader`]) open their own read-only connections; they are synchronous and
//!   must be called from `spawn_blocking`, never on a runtime worker.
//! - **Commands** ([`Commands`]: case changes, audit appends, leases, sessions, export,
//!   erasure, unblock requests and grants) are synchronous too and use their own connection; each takes SQLite's write
//!   lock with `BEGIN IMMEDIATE` and writes its audit record in the same transaction, so the
//!   audit chain is appended by one transaction at a time. Changes that make the writer's
//!   cached ids stale bump a generation in `meta`, which the writer reads under the same
//!   lock at the start of each batch — so this works from the command line too.
//! - One server process per data folder: the journal files are not shared between processes
//!   (the command line opens the database without a writer or journal).
//!
//! The public API is small and typed ([`Store`], [`Reader`], [`Commands`] and plain structs)
//! so another backend (PostgreSQL) could sit behind it later.

mod audit;
mod checks;
pub mod cli;
mod commands;
mod daily;
mod journal;
mod metrics;
pub mod migrate;
mod presence;
mod queue;
mod read;
mod sink;
mod unblock;
mod users;
mod writer;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{mpsc, Arc, Mutex},
    thread::JoinHandle,
    time::SystemTime,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

pub use audit::{AuditEntry, AuditKind, ChainReport};
pub use checks::{CheckItem, CheckKind, CheckRun, CheckTrigger};
pub use commands::{
    CaseChange, Commands, EraseReport, EraseTarget, ExportFilter, ExportFormat, LeaseRecord,
    SessionRecord,
};
pub use daily::Overview;
pub use read::{
    BreachCount, BreachDetail, BreachFilter, BreachHistory, BreachSummary, BreachTotals,
    CircumventionSummary, CountBy, CountRow, DeviceAttempts, QueryFilter, QueryPage, QueryRow,
    Reader,
};
pub use users::{LoginOutcome, UserRecord};

use crate::{
    clock::Clock,
    config::StoreConfig,
    event::{BlockReason, Disposition, QuerySink, Severity, Transport},
};
pub use unblock::{
    GrantRecord, NewUnblockRequest, RequestStatus, UnblockRequest, UnblockStats, MAX_PERIOD,
    MAX_TEXT, MIN_PERIOD,
};

/// The `meta` key bumped by every change that can make the writer's cached ids or
/// identities wrong (a lease or session added, data erased). Kept in the database, not in
/// memory, so the command line changing it under a running server works too.
pub(crate) const CACHE_GENERATION: &str = "cache_generation";

/// Bumps [`CACHE_GENERATION`] inside the caller's transaction.
pub(crate) fn bump_cache_generation(conn: &Connection) -> Result<(), StoreError> {
    bump(conn, CACHE_GENERATION)
}

/// The `meta` key counting case changes: the writer keeps the breaches that attempts can
/// extend in memory, with their status, and reads them again when this changes.
pub(crate) const BREACH_GENERATION: &str = "breach_generation";

/// Bumps [`BREACH_GENERATION`] inside the caller's transaction.
pub(crate) fn bump_breach_generation(conn: &Connection) -> Result<(), StoreError> {
    bump(conn, BREACH_GENERATION)
}

/// The `meta` key holding the query key through which the breach tallies and the blocked
/// names' daily counts include every row (the writer writes them every few seconds; rows
/// after it may not be counted yet, see `writer::counts`).
pub(crate) const COUNTED_THROUGH: &str = "counted_through";

/// An integer `meta` value (`None` when it was never set).
pub(crate) fn meta_int(conn: &Connection, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// Sets a `meta` value.
pub(crate) fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key, value])?;
    Ok(())
}

fn bump(conn: &Connection, key: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        [key],
    )?;
    Ok(())
}

/// Lowers the calling thread to background priority. The writer is background work: when
/// answering DNS needs every cycle, the scheduler gives them to the resolver's threads and the
/// writer catches up when the load drops (blocked events wait in the queue, then the journal
/// file; allowed ones may be shed, counted). On a one-core server under `dnsperf` with 40 % of
/// queries blocked, the writer at normal priority took half the CPU.
///
/// On Linux the policy is `SCHED_IDLE`, not nice 19, which any normal thread that wakes
/// preempts at once. At nice 19 the writer's batches still showed in the answers' tail on a
/// one-core server: p99 at 10k queries/s was 1.44 ms with blocked-query logging and 0.13 ms
/// with the store off; at `SCHED_IDLE`, 0.44 ms (`benches/README.md`).
fn background_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; the parameter is a plain struct read by the call.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }
    }
    // SAFETY: `gettid` has no preconditions; `setpriority` on our own thread id only changes
    // this thread's nice value (Linux applies PRIO_PROCESS to a single thread).
    let result = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19)
    };
    if result != 0 {
        tracing::debug!("store: cannot lower the writer's priority; it runs at normal priority");
    }
}

/// A blocked event named `name`, for the store's unit tests.
#[cfg(test)]
pub(crate) fn test_event(name: crate::event::EventName) -> crate::event::QueryEvent {
    crate::event::QueryEvent {
        at: crate::clock::from_unix_millis(1_788_256_800_123),
        client: "10.0.0.1".parse().unwrap(),
        device: Some("pc".into()),
        group: Some("pupils".into()),
        name,
        qtype: 28,
        transport: Transport::Tcp,
        disposition: Disposition::Blocked,
        reason: Some(BlockReason::Illegal),
        category: None,
        rule: Some("illegal-content list".into()),
        severity: Some(Severity::High),
        rcode: 3,
        duration: std::time::Duration::from_micros(42),
    }
}

/// [`test_event`] with `name` in clear.
#[cfg(test)]
pub(crate) fn test_named(name: &str) -> crate::event::QueryEvent {
    test_event(crate::event::EventName::Clear(name.to_string()))
}

/// The names of `events` (all in clear), in order, for the store's unit tests.
#[cfg(test)]
pub(crate) fn test_names(events: &[crate::event::QueryEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.name.clone().into_buffer().expect("a name in clear"))
        .collect()
}

/// The database file's name inside `DATA_DIR`.
pub const DB_FILE: &str = "hedgerow.sqlite";

pub use crate::event::WITHHELD;

/// Query keys count milliseconds from 2020-01-01 UTC: shifted left 8 bits they stay below
/// 2^47 until 2037, so a key takes 6 bytes in an index record instead of 8.
pub const KEY_EPOCH_MS: i64 = 1_577_836_800_000;

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database was written by a newer Hedgerow.
    #[error(
        "the database was written by a newer version of Hedgerow (schema {found}; this one \
         knows up to {known}); upgrade Hedgerow or restore a backup, it is not changed"
    )]
    TooNew {
        /// The database's version.
        found: u32,
        /// The newest this build knows.
        known: u32,
    },
    /// Metrics could not be registered.
    #[error("store metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// There is no such breach.
    #[error("there is no breach number {0}")]
    NoSuchBreach(i64),
    /// There is no such unblock request.
    #[error("there is no unblock request number {0}")]
    NoSuchUnblockRequest(i64),
    /// There is no such grant.
    #[error("there is no grant number {0}")]
    NoSuchGrant(i64),
    /// A dashboard account with this name exists already.
    #[error("there is already an account called {0}")]
    UserExists(String),
    /// There is no dashboard account with this name.
    #[error("there is no account called {0}")]
    NoSuchUser(String),
    /// A value given by a person or a file makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// Writing an export failed.
    #[error("export: {0}")]
    Export(String),
    /// The writer thread is gone.
    #[error("the store's writer has stopped")]
    WriterGone,
}

impl StoreError {
    fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A case's status: new → reviewed → escalated → closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaseStatus {
    /// Nobody has looked at it yet.
    New,
    /// Looked at by a DSL.
    Reviewed,
    /// Passed on (to the DSL, the police, social care…).
    Escalated,
    /// Dealt with.
    Closed,
}

impl CaseStatus {
    /// The stored and displayed form.
    pub fn label(self) -> &'static str {
        match self {
            CaseStatus::New => "new",
            CaseStatus::Reviewed => "reviewed",
            CaseStatus::Escalated => "escalated",
            CaseStatus::Closed => "closed",
        }
    }

    /// Every status, in order.
    pub const ALL: [CaseStatus; 4] = [
        CaseStatus::New,
        CaseStatus::Reviewed,
        CaseStatus::Escalated,
        CaseStatus::Closed,
    ];

    /// Parses [`CaseStatus::label`].
    pub fn parse(text: &str) -> Option<CaseStatus> {
        Self::ALL.into_iter().find(|s| s.label() == text)
    }
}

/// A new or extended high-severity breach, for the alerting code to turn into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachNotice {
    /// The breach.
    pub breach_id: i64,
    /// The device, as shown to a person.
    pub device: String,
    /// The client's group.
    pub group: Option<String>,
    /// The blocking category (ids, comma separated).
    pub category: Option<String>,
    /// The worst severity seen.
    pub severity: Severity,
    /// The registrable domain, or "withheld" for the illegal tier.
    pub domain: String,
    /// Blocked attempts so far.
    pub count: u64,
    /// First attempt.
    pub first: SystemTime,
    /// Latest attempt.
    pub last: SystemTime,
    /// Whether this breach was opened by this batch (else extended).
    pub new: bool,
}

/// State shared by the sink, the writer and the commands.
pub(crate) struct Shared {
    pub(crate) metrics: metrics::StoreMetrics,
    pub(crate) journal: journal::Journal,
    /// Blocked events (every event that must be kept) waiting for the writer.
    pub(crate) blocked: queue::Queue,
    /// Allowed events waiting for the writer.
    pub(crate) allowed: queue::Queue,
    /// Allowed queries counted, not sent as events.
    pub(crate) tally: queue::Tally,
    /// Commands holding a write connection ([`Commands`]), which the writer lets go first.
    pub(crate) commands: Arc<std::sync::atomic::AtomicUsize>,
    /// Events stored, waiting for the DNS threads to build new ones in them.
    pub(crate) spent: sink::Spent,
    /// Set by the sink when the allowed queue was full, cleared by the writer when it takes
    /// from that queue or finds it empty: while set, allowed events are shed before they
    /// are built.
    pub(crate) allowed_full: std::sync::atomic::AtomicBool,
}

enum Control {
    Flush(mpsc::Sender<()>),
    Close,
}

/// The open store: owns the writer thread. Call [`Store::close`] on shutdown (it flushes and
/// drains); dropping without it also drains, but cannot report errors.
pub struct Store {
    path: PathBuf,
    clock: Clock,
    sink: Arc<sink::StoreSink>,
    control: mpsc::SyncSender<Control>,
    writer: Option<JoinHandle<()>>,
    notices: Mutex<Option<tokio::sync::mpsc::Receiver<BreachNotice>>>,
}

impl Store {
    /// Opens (creating, mode 0600, and migrating) `data_dir/hedgerow.sqlite`, imports
    /// `audit.jsonl` records not yet imported, and starts the writer thread.
    pub fn open(
        config: &StoreConfig,
        data_dir: &Path,
        clock: Clock,
        registry: &prometheus::Registry,
    ) -> Result<Store, StoreError> {
        let path = prepare(data_dir, &clock)?;
        let metrics = metrics::StoreMetrics::register(registry)?;
        let conn = open_write(&path)?;
        let last_replayed = journal::last_replayed(&conn)?;
        let journal = journal::Journal::open(data_dir, last_replayed)?;
        let shared = Arc::new(Shared {
            metrics,
            journal,
            blocked: queue::Queue::new(config.channel_capacity),
            allowed: queue::Queue::new(config.channel_capacity),
            tally: queue::Tally::default(),
            commands: Arc::default(),
            spent: sink::Spent::default(),
            allowed_full: Default::default(),
        });
        let (control_tx, control_rx) = mpsc::sync_channel(64);
        // Notices are few (high severity only); a full queue drops the notice, never the
        // breach, which is in the database either way.
        let (notice_tx, notice_rx) = tokio::sync::mpsc::channel(1024);
        let writer = writer::Writer::new(
            conn,
            config.clone(),
            clock.clone(),
            shared.clone(),
            writer::Queues {
                control: control_rx,
                notices: notice_tx,
            },
        );
        let handle = std::thread::Builder::new()
            .name("hedgerow-store".into())
            .spawn(move || {
                background_priority();
                writer.run()
            })
            .map_err(|e| StoreError::io(&path, e))?;
        let sink = Arc::new(sink::StoreSink {
            config: config.clone(),
            writer: handle.thread().clone(),
            shared: shared.clone(),
        });
        Ok(Store {
            path,
            clock,
            sink,
            control: control_tx,
            writer: Some(handle),
            notices: Mutex::new(Some(notice_rx)),
        })
    }

    /// Where finished queries go (hand this to the record stage).
    pub fn sink(&self) -> Arc<dyn QuerySink> {
        self.sink.clone()
    }

    /// Read-only access (synchronous: call through `spawn_blocking`).
    pub fn reader(&self) -> Reader {
        Reader::new(self.path.clone(), self.clock.clone())
    }

    /// Case changes, audit records, leases, sessions, export and erasure (synchronous).
    pub fn commands(&self) -> Commands {
        Commands::new(
            self.path.clone(),
            self.clock.clone(),
            Some(self.sink.shared.commands.clone()),
        )
    }

    /// The receiver of high-severity breach notices; `None` after the first call.
    pub fn take_breach_notices(&self) -> Option<tokio::sync::mpsc::Receiver<BreachNotice>> {
        self.notices.lock().ok().and_then(|mut n| n.take())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until every event handed over before this call is written (or journalled).
    pub fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        self.control
            .send(Control::Flush(tx))
            .map_err(|_| StoreError::WriterGone)?;
        if let Some(w) = &self.writer {
            w.thread().unpark();
        }
        rx.recv().map_err(|_| StoreError::WriterGone)
    }

    /// Writes everything queued, replays the journal if the database allows, and stops the
    /// writer (the SIGTERM path). Events recorded after this go to the journal (blocked) or
    /// are shed (allowed).
    pub fn close(mut self) -> Result<(), StoreError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), StoreError> {
        let Some(handle) = self.writer.take() else {
            return Ok(());
        };
        let _ = self.control.send(Control::Close);
        handle.thread().unpark();
        handle.join().map_err(|_| StoreError::WriterGone)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Opens the database for the command line and tools without starting a writer: migrates it
/// and returns a reader and commands (their changes are audited like the server's).
pub fn open_offline(data_dir: &Path, clock: Clock) -> Result<(Reader, Commands), StoreError> {
    let path = prepare(data_dir, &clock)?;
    Ok((
        Reader::new(path.clone(), clock.clone()),
        Commands::new(path, clock, None),
    ))
}

/// Creates the folder and the file (0600), migrates, imports `audit.jsonl`.
fn prepare(data_dir: &Path, clock: &Clock) -> Result<PathBuf, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|e| StoreError::io(data_dir, e))?;
    let path = data_dir.join(DB_FILE);
    create_private(&path)?;
    let mut conn = open_write(&path)?;
    migrate::migrate(&mut conn)?;
    audit::import_jsonl(&mut conn, &data_dir.join("audit.jsonl"), clock)?;
    Ok(path)
}

/// The query log says who looked at what: only the service account may read it. SQLite gives
/// its `-wal` and `-shm` files the main file's permissions.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| StoreError::io(path, e))
}

/// A read-write connection with the store's settings.
pub(crate) fn open_write(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // WAL: readers never block the writer; NORMAL sync: a committed transaction survives a
    // process crash (kill -9), and only a power cut can lose the last commits, never corrupt.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // Commands and the writer share the write lock; a short wait covers the other's commit.
    conn.busy_timeout(std::time::Duration::from_secs(2))?;
    Ok(conn)
}

/// A read-only connection.
pub(crate) fn open_read(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(2))?;
    Ok(conn)
}

/// The query key for an arrival time (see [`KEY_EPOCH_MS`]).
/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// The key of the first query at `unix_ms` or later.
pub(crate) fn key_base(unix_ms: i64) -> i64 {
    (unix_ms - KEY_EPOCH_MS).max(0) << 8
}

/// The arrival time of a query key, in Unix milliseconds.
pub(crate) fn key_millis(key: i64) -> i64 {
    (key >> 8) + KEY_EPOCH_MS
}

pub(crate) fn disposition_of(label: &str) -> Option<Disposition> {
    Disposition::ALL.into_iter().find(|d| d.label() == label)
}

pub(crate) fn reason_of(label: &str) -> Option<BlockReason> {
    BlockReason::ALL.into_iter().find(|d| d.label() == label)
}

pub(crate) fn transport_of(label: &str) -> Option<Transport> {
    Transport::ALL.into_iter().find(|d| d.label() == label)
}

/// The error for a label the database holds but this build does not know.
pub(crate) fn bad_label(what: &str, v: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} `{v}` in the database").into(),
    )
}

pub(crate) fn severity_of(label: &str) -> Option<Severity> {
    Severity::ALL.into_iter().find(|d| d.label() == label)
}

/// The site a name belongs to (Public Suffix List), so one page load is one breach.
pub fn registrable_domain(name: &str) -> String {
    crate::names::registrable_domain(name).to_string()
}

/// An address as stored.
pub(crate) fn ip_text(ip: IpAddr) -> String {
    ip.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_time_order_and_milliseconds() {
        let t = 1_788_256_800_123;
        assert_eq!(key_millis(key_base(t)), t);
        assert_eq!(
            key_millis(key_base(t) + 255),
            t,
            "the counter stays inside its millisecond"
        );
        assert!(key_base(t + 1) > key_base(t) + 255);
        // Six bytes in an index record until 2037.
        assert!(key_base(2_114_380_800_000) < 1 << 47);
        assert_eq!(key_base(0), 0, "before the epoch clamps");
    }

    #[test]
    fn registrable_domains_follow_the_public_suffix_list() {
        assert_eq!(registrable_domain("www.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(registrable_domain("a.b.example.com"), "example.com");
        assert_eq!(registrable_domain("user.github.io"), "user.github.io");
        assert_eq!(registrable_domain("localhost"), "localhost");
    }

    #[test]
    fn labels_round_trip() {
        for d in Disposition::ALL {
            assert_eq!(disposition_of(d.label()), Some(d));
        }
        for r in BlockReason::ALL {
            assert_eq!(reason_of(r.label()), Some(r));
        }
        for s in Severity::ALL {
            assert_eq!(severity_of(s.label()), Some(s));
        }
        for s in CaseStatus::ALL {
            assert_eq!(CaseStatus::parse(s.label()), Some(s));
        }
        assert_eq!(transport_of("udp"), Some(Transport::Udp));
        assert_eq!(disposition_of("nonsense"), None);
    }
}
