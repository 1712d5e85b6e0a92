//! The one writer thread: batches query events into transactions, resolves each query's
//! device and user at the time it arrived, opens and extends breaches, keeps per-minute
//! rollups and the day-level aggregates (`migrate::V8`), replays the journal and enforces
//! retention.

use std::{
    collections::VecDeque,
    net::IpAddr,
    sync::{atomic::Ordering, mpsc, Arc},
    time::{Duration, Instant},
};

use foldhash::HashMap;
use rusqlite::{params, CachedStatement, Connection, Transaction, TransactionBehavior};

mod breaches;
mod counts;
mod identity;
mod intern;

use crate::{
    clock::{unix_millis, Clock},
    config::StoreConfig,
    event::{BlockReason, Disposition, EventName, QueryEvent, Severity},
};

use super::{
    journal, key_base, key_millis, meta_int, presence,
    queue::{Count, Queue},
    registrable_domain, set_meta, BreachNotice, CaseStatus, Control, Shared, StoreError, DAY_MS,
    WITHHELD,
};

/// Rows per transaction at most, reached only when the writer has a backlog (at a school's
/// rate a batch is the 200 ms interval's few dozen rows). Large enough that each presence
/// page touched is written to the WAL once for many rows (16,384 rather than 4,096 took the
/// 200-queries/s bench from 166 k to 277 k events/s), small enough to commit in ~50 ms.
pub const BATCH_ROWS: usize = 16_384;
/// WAL pages between checkpoints (SQLite's default is 1,000). A page the writer changes in
/// every batch — the tail of each table and index, the current hour's presence rows — is
/// copied into the database once per checkpoint, so fewer checkpoints copy fewer pages: at
/// 8,192 (a WAL of about 32 MiB) the writer stored 238–242k events/s on the 100-million-query
/// database where it stored 197–206k at the default (`STORE_APPEND`, `benches/README.md`).
const CHECKPOINT_PAGES: i64 = 8192;
/// Interning caches are cleared past this many entries (memory bound on a busy network).
const CACHE_MAX: usize = 200_000;
/// Retention runs this often.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// A failed journal replay is retried this often.
const REPLAY_EVERY: Duration = Duration::from_secs(1);
/// The size gauges are refreshed this often.
const SIZE_EVERY: Duration = Duration::from_secs(10);
/// Events written, since the heap was last given back, after which the writer gives it back
/// once its queue is empty: a backlog drained (events, batches, SQLite's buffers) leaves tens
/// of MB free in the arenas otherwise ([`crate::heap`]). A million events is hours of a
/// school's blocked queries (at 100 a second, nearly three); under a flood, seconds.
const TRIM_AFTER: usize = 1_000_000;
/// How long (at least two batch intervals) stored events wait for the DNS threads to reuse
/// them before the writer frees them: no batch came meanwhile, so no query arrived to be
/// kept waiting by it.
const SPENT_AGE: Duration = Duration::from_secs(1);
/// How long the writer holds back a batch while commands hold write connections: longer
/// than a command's wait for the lock between its polls (SQLite's busy handler sleeps up to
/// 100 ms at a time), short enough that a command left open cannot stall the query log.
const COMMAND_FIRST: Duration = Duration::from_millis(500);
/// Journal entries per replay transaction.
const REPLAY_CHUNK: usize = 16_384;
/// Rows deleted per retention transaction, so the writer never holds the lock for long.
const DELETE_CHUNK: i64 = 20_000;

pub(crate) struct Queues {
    pub control: mpsc::Receiver<Control>,
    pub notices: tokio::sync::mpsc::Sender<BreachNotice>,
}

/// Who a query came from, and for which span of time that answer holds for its address.
#[derive(Clone, Copy)]
struct Identity {
    device: i64,
    user: Option<i64>,
    from: i64,
    until: i64,
}

/// Interned ids, valid only while no transaction that created them has been rolled back.
#[derive(Default)]
struct Caches {
    names: HashMap<String, i64>,
    ips: HashMap<IpAddr, i64>,
    groups: HashMap<Arc<str>, i64>,
    categories: HashMap<String, i64>,
    rules: HashMap<String, i64>,
    users: HashMap<String, i64>,
    devices: HashMap<String, i64>,
    shapes: HashMap<ShapeKey, i64>,
    identity: HashMap<IpAddr, Identity>,
    /// (device, ip, user) → ident id.
    idents: HashMap<(i64, i64, i64), i64>,
    /// Device and name sightings already recorded.
    seen: presence::Seen,
    /// Breaches that recent attempts can extend.
    breaches: breaches::Open,
}

impl Caches {
    fn trim(&mut self) {
        if self.names.len() > CACHE_MAX {
            self.names.clear();
        }
        if self.identity.len() > CACHE_MAX {
            self.identity.clear();
        }
        if self.ips.len() > CACHE_MAX {
            self.ips.clear();
        }
        if self.idents.len() > CACHE_MAX {
            self.idents.clear();
        }
        if self.seen.len() > CACHE_MAX {
            self.seen.clear();
        }
        self.breaches.trim();
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct ShapeKey {
    group: Option<i64>,
    qtype: u16,
    transport: &'static str,
    disposition: &'static str,
    reason: Option<&'static str>,
    category: Option<i64>,
    rule: Option<i64>,
    severity: Option<&'static str>,
    rcode: u16,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct RollupKey {
    minute: i64,
    group: i64,
    category: i64,
    disposition: &'static str,
}

pub(crate) struct Writer {
    conn: Connection,
    config: StoreConfig,
    clock: Clock,
    shared: Arc<Shared>,
    queues: Queues,
    /// Events taken from the sink's queues ([`super::queue::Queue::take`]) and not yet moved
    /// into a batch: blocked, then allowed.
    taken: [VecDeque<QueryEvent>; 2],
    /// Counts taken from the sink's tally ([`super::queue::Tally`]), written with the next
    /// batch.
    tallied: Vec<Count>,
    caches: Caches,
    cache_generation: i64,
    /// [`super::BREACH_GENERATION`] when the open breaches were last read.
    breach_generation: i64,
    last_key: i64,
    last_replay_try: Option<Instant>,
    last_retention: Option<Instant>,
    last_size: Option<Instant>,
    /// When the last batch was handed back to the DNS threads to free ([`super::sink::Spent`]).
    handed_back: Option<Instant>,
    /// Events written since the heap was last given back (see [`TRIM_AFTER`]).
    since_trim: usize,
    /// The day before which presence days were last pruned (a scan, so once a day).
    presence_pruned_day: i64,
    db_failing: bool,
    /// Breach tallies and blocked names' counts not yet written.
    counts: counts::Counts,
}

/// Moves events from `taken` into `batch` up to [`BATCH_ROWS`], first swapping `queue`'s
/// waiting events into `taken` if it is empty; says whether it swapped (the queue then has
/// all its room again).
fn take(queue: &Queue, taken: &mut VecDeque<QueryEvent>, batch: &mut Vec<QueryEvent>) -> bool {
    let swapped = taken.is_empty();
    if swapped {
        // The empty deque's allocation goes to the queue, to be filled next.
        *taken = queue.take(Vec::from(std::mem::take(taken))).into();
    }
    let n = BATCH_ROWS.saturating_sub(batch.len()).min(taken.len());
    batch.extend(taken.drain(..n));
    swapped
}

/// What one batch produced besides rows.
#[derive(Default)]
struct BatchOut {
    rows: u64,
    notices: HashMap<i64, BreachNotice>,
}

impl Writer {
    pub fn new(
        conn: Connection,
        config: StoreConfig,
        clock: Clock,
        shared: Arc<Shared>,
        queues: Queues,
    ) -> Writer {
        // A larger page cache than the default 2 MB keeps the tails of the tables and
        // indexes and the interning indexes' hot pages in memory. 16 MiB stored as fast as
        // 64 MiB on the 100-million-query database (223–232k against 217–224k events/s,
        // `STORE_APPEND`), and it fills within minutes rather than over hours.
        if let Err(error) = conn.pragma_update(None, "cache_size", -16_384) {
            tracing::warn!(%error, "store: cannot enlarge the page cache");
        }
        if let Err(error) = conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES) {
            tracing::warn!(%error, "store: cannot set the checkpoint interval");
        }
        let last_key = conn
            .query_row("SELECT COALESCE(MAX(k), 0) FROM queries", [], |r| r.get(0))
            .unwrap_or(0);
        Writer {
            conn,
            config,
            clock,
            shared,
            queues,
            taken: Default::default(),
            tallied: Vec::new(),
            caches: Caches::default(),
            cache_generation: -1,
            breach_generation: -1,
            last_key,
            last_replay_try: None,
            last_retention: None,
            last_size: None,
            handed_back: None,
            since_trim: 0,
            presence_pruned_day: i64::MIN,
            db_failing: false,
            counts: counts::Counts::new(),
        }
    }

    /// The thread's body: until told to close, then everything queued is written.
    pub fn run(mut self) {
        let interval = self.config.batch_interval;
        let mut batch: Vec<QueryEvent> = Vec::with_capacity(BATCH_ROWS);
        let mut deadline = Instant::now() + interval;
        let mut acks: Vec<mpsc::Sender<()>> = Vec::new();
        let mut closing = false;
        self.replay_journal();
        loop {
            while let Ok(c) = self.queues.control.try_recv() {
                match c {
                    Control::Flush(ack) => acks.push(ack),
                    Control::Close => closing = true,
                }
            }
            let got = self.drain(&mut batch);
            if let Err(error) = self.shared.journal.write_buffered(closing) {
                tracing::error!(%error, "store: cannot write the journal");
            }
            let now = Instant::now();
            let pending = !batch.is_empty() || !self.tallied.is_empty();
            if batch.len() >= BATCH_ROWS
                || (pending && (now >= deadline || !acks.is_empty() || closing))
            {
                self.write_batch(&batch);
                self.shared.spent.hand_back(&mut batch);
                self.handed_back = Some(Instant::now());
                batch.clear();
                batch.reserve(BATCH_ROWS);
                deadline = Instant::now() + interval;
                // More may be queued: go round again before acknowledging a flush.
                continue;
            }
            if !pending {
                deadline = Instant::now() + interval;
            }
            if got == 0 {
                self.housekeeping(closing || !acks.is_empty());
                for ack in acks.drain(..) {
                    let _ = ack.send(());
                }
                if closing {
                    break;
                }
                std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
            }
        }
        // From here the sink finds the queues closed and journals at once; what it buffered
        // before is written now, with what reached the queues since the last pass.
        let Writer { queues, shared, .. } = self;
        drop(queues);
        let late = shared.blocked.close();
        if !late.is_empty() {
            shared.journal_events(&late.iter().collect::<Vec<_>>(), false);
        }
        let shed = shared.allowed.close().len();
        shared.metrics.shed_full.inc_by(shed as u64);
        if let Err(error) = shared.journal.unbuffer() {
            tracing::error!(%error, "store: cannot write the journal's last entries");
        }
        tracing::debug!("store: writer stopped");
    }

    /// Moves queued events into the batch (blocked first), and the DNS side's counts to
    /// the writer's; returns how many events.
    fn drain(&mut self, batch: &mut Vec<QueryEvent>) -> usize {
        self.tallied.append(&mut self.shared.tally.take());
        let before = batch.len();
        let [blocked, allowed] = &mut self.taken;
        take(&self.shared.blocked, blocked, batch);
        if take(&self.shared.allowed, allowed, batch) {
            // Room again: the sink stops shedding allowed events before they are built.
            // Cleared on every pass that swaps the queue out, even an empty one: a sink whose
            // push failed just before this pass sets the flag after it, and then sheds every
            // allowed event before it is built, so none would reach the queue to be taken.
            // Such a flag lasts until the next pass (a batch interval at most).
            self.shared.allowed_full.store(false, Ordering::Relaxed);
        }
        let n = batch.len() - before;
        if n > 0 {
            let waiting = self.taken.iter().map(VecDeque::len).sum::<usize>()
                + self.shared.blocked.len()
                + self.shared.allowed.len();
            self.shared
                .metrics
                .channel_depth
                .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        }
        n
    }

    /// Journal replay (when due) and retention (when due), and the size gauges.
    fn housekeeping(&mut self, force_replay: bool) {
        let due =
            |last: Option<Instant>, every: Duration| last.is_none_or(|t| t.elapsed() >= every);
        let mut replayed = false;
        if force_replay || due(self.last_replay_try, REPLAY_EVERY) {
            // Twice at most: the file being replayed, then what arrived meanwhile.
            for _ in 0..2 {
                if !self.shared.journal.pending() || !self.replay_journal() {
                    break;
                }
                replayed = true;
            }
        }
        if force_replay || self.counts.due() {
            self.write_counts();
        }
        if due(self.last_retention, RETENTION_EVERY) {
            self.last_retention = Some(Instant::now());
            if let Err(error) = self.retention() {
                tracing::warn!(%error, "store: retention did not complete; will retry");
            }
        }
        let idle = SPENT_AGE.max(2 * self.config.batch_interval);
        if self.handed_back.is_some_and(|t| t.elapsed() >= idle) {
            self.handed_back = None;
            drop(self.shared.spent.take_all());
        }
        if due(self.last_size, SIZE_EVERY) {
            self.last_size = Some(Instant::now());
            self.update_size();
        }
        // A replay follows a backlog: the burst is over.
        if self.since_trim >= TRIM_AFTER || replayed {
            self.since_trim = 0;
            crate::heap::give_back_freed();
        }
    }

    /// Writes the counts kept in memory in a transaction of their own (no batch came to
    /// carry them, or a flush asked for them).
    fn write_counts(&mut self) {
        let result = (|| -> Result<(), StoreError> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            self.counts.ensure(&tx, self.last_key)?;
            self.counts.write(&tx, self.last_key)?;
            tx.commit()?;
            Ok(())
        })();
        if let Err(error) = result {
            self.counts.forget();
            tracing::debug!(%error, "store: counts not written; will count again");
        }
    }

    fn update_size(&self) {
        let size: i64 = self
            .conn
            .query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        let wal = self
            .conn
            .path()
            .and_then(|p| std::fs::metadata(format!("{p}-wal")).ok())
            .map_or(0, |m| m.len() as i64);
        self.shared.metrics.database_bytes.set(size + wal);
        // SAFETY: sqlite3_memory_used only reads SQLite's own counter (thread-safe, no
        // arguments, no pointers).
        let sqlite_memory = unsafe { rusqlite::ffi::sqlite3_memory_used() };
        self.shared.metrics.sqlite_memory.set(sqlite_memory);
    }

    /// Writes one batch, with the counts tallied so far, in one transaction; when the
    /// database refuses, the events that must not be lost go to the journal and the rest
    /// (and the counts) are shed, counted.
    fn write_batch(&mut self, events: &[QueryEvent]) {
        self.since_trim += events.len();
        let started = Instant::now();
        let tallied = std::mem::take(&mut self.tallied);
        match self.try_write(events, &tallied, None) {
            Ok(out) => {
                if self.db_failing {
                    tracing::info!("store: the database is writable again");
                    self.db_failing = false;
                }
                self.finish(out, started);
            }
            Err(error) => {
                // Ids interned inside the rolled-back transaction no longer exist.
                self.caches = Caches::default();
                self.counts.forget();
                if !self.db_failing {
                    tracing::error!(%error, "store: cannot write the query log; blocked queries go to the journal until it can");
                    self.db_failing = true;
                }
                let keep: Vec<&QueryEvent> = events.iter().filter(|e| e.must_keep()).collect();
                self.shared
                    .metrics
                    .shed
                    .with_label_values(&["database"])
                    .inc_by(
                        (events.len() - keep.len()) as u64
                            + tallied
                                .iter()
                                .map(|c| c.queries.unsigned_abs())
                                .sum::<u64>(),
                    );
                self.shared.journal_events(&keep, true);
            }
        }
    }

    fn finish(&mut self, out: BatchOut, started: Instant) {
        self.shared.metrics.rows_written.inc_by(out.rows);
        self.shared
            .metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        for (_, notice) in out.notices {
            match self.queues.notices.try_send(notice) {
                // Nobody listens (no alert channel configured): nothing to tell.
                Ok(()) | Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => tracing::warn!(
                    "store: breach notice queue full; notice dropped (the breach is stored)"
                ),
            }
        }
    }

    /// Replays the journal in one transaction that also records the last sequence; `false`
    /// when the database still refuses.
    fn replay_journal(&mut self) -> bool {
        self.last_replay_try = Some(Instant::now());
        let result = (|| -> Result<usize, StoreError> {
            let mut entries = self.shared.journal.take_for_replay()?;
            let last = journal::last_replayed(&self.conn)?;
            // In chunks, each committed with its last sequence number: a long outage's
            // journal never becomes one huge transaction (nor is it ever all in memory), and
            // a failure part-way resumes after the last committed chunk.
            let mut n = 0;
            loop {
                let chunk = entries.next_chunk(REPLAY_CHUNK)?;
                if chunk.is_empty() {
                    break;
                }
                let fresh: Vec<&journal::Entry> = chunk.iter().filter(|e| e.seq > last).collect();
                let Some(max) = fresh.last().map(|e| e.seq) else {
                    continue;
                };
                let events: Vec<QueryEvent> = fresh.iter().filter_map(|e| e.to_event()).collect();
                let started = Instant::now();
                let out = self.try_write(&events, &[], Some(max))?;
                self.finish(out, started);
                self.shared.metrics.replayed.inc_by(events.len() as u64);
                self.since_trim += events.len();
                n += events.len();
            }
            if entries.bad() > 0 {
                tracing::warn!(
                    lines = entries.bad(),
                    "store: skipped damaged journal lines (a torn write at a crash)"
                );
            }
            self.shared.journal.replayed()?;
            Ok(n)
        })();
        self.shared
            .metrics
            .journal_bytes
            .set(i64::try_from(self.shared.journal.bytes()).unwrap_or(i64::MAX));
        match result {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(events = n, "store: replayed the journal into the database");
                }
                true
            }
            Err(error) => {
                self.caches = Caches::default();
                self.counts.forget();
                tracing::debug!(%error, "store: journal replay postponed");
                false
            }
        }
    }

    fn try_write(
        &mut self,
        events: &[QueryEvent],
        tallied: &[Count],
        replayed_up_to: Option<u64>,
    ) -> Result<BatchOut, StoreError> {
        let saved_key = self.last_key;
        // A command of this process is waiting for the write lock, or about to: let it have
        // it first (for a while: the events are waiting too).
        let since = Instant::now();
        while self.shared.commands.load(Ordering::SeqCst) > 0 && since.elapsed() < COMMAND_FIRST {
            std::thread::sleep(Duration::from_millis(1));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read under the write lock, so no lease, session, erasure or case change can slip
        // in between.
        let generation = |key: &str| Ok::<_, StoreError>(meta_int(&tx, key)?.unwrap_or(0));
        let (caches, breaches) = (
            generation(super::CACHE_GENERATION)?,
            generation(super::BREACH_GENERATION)?,
        );
        if caches != self.cache_generation {
            self.caches = Caches::default();
            self.cache_generation = caches;
        }
        if breaches != self.breach_generation {
            self.caches.breaches = breaches::Open::default();
            self.breach_generation = breaches;
        }
        self.caches.trim();
        self.counts.ensure(&tx, self.last_key)?;
        let mut ctx = Batch {
            insert_query: tx.prepare_cached(
                "INSERT INTO queries (k, ident, name, shape, dur) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?,
            insert_blocked: tx.prepare_cached("INSERT INTO blocked (k) VALUES (?1)")?,
            tx: &tx,
            caches: &mut self.caches,
            config: &self.config,
            last_key: &mut self.last_key,
            counts: &mut self.counts,
            write_counts: replayed_up_to.is_some(),
            out: BatchOut::default(),
            rollups: HashMap::default(),
            device_days: HashMap::default(),
            breach_days: HashMap::default(),
            presence: presence::Pending::default(),
        };
        let result = (|| -> Result<(), StoreError> {
            for e in events {
                ctx.event(e)?;
            }
            for c in tallied {
                ctx.tallied(c)?;
            }
            ctx.write_breach_rows()?;
            if let Some(newest) = events.iter().map(|e| unix_millis(e.at)).max() {
                ctx.prune_breaches(newest);
            }
            ctx.flush_rollups()?;
            if ctx.write_counts || ctx.counts.due() {
                ctx.counts.write(ctx.tx, *ctx.last_key)?;
            }
            ctx.presence.flush(ctx.tx)?;
            if let Some(seq) = replayed_up_to {
                set_meta(ctx.tx, journal::LAST_REPLAYED, &seq.to_string())?;
            }
            Ok(())
        })();
        let out = std::mem::take(&mut ctx.out);
        drop(ctx);
        match result.and_then(|()| tx.commit().map_err(StoreError::from)) {
            Ok(()) => Ok(out),
            Err(e) => {
                self.last_key = saved_key;
                Err(e)
            }
        }
    }

    /// Deletes what is past its retention, in short transactions.
    fn retention(&mut self) -> Result<(), StoreError> {
        let now = self.clock.unix_millis();
        let day = 86_400_000i64;
        let allowed_cut = key_base(now - i64::from(self.config.retention_allowed_days) * day);
        let blocked_cut = key_base(now - i64::from(self.config.retention_blocked_days) * day);
        let rollup_cut = (now - i64::from(self.config.rollup_retention_days) * day) / 60_000;
        // Rows that are evidence for a breach whose case is open stay until it is closed.
        loop {
            let n = self.conn.execute(
                "DELETE FROM queries WHERE k IN (
                   SELECT k FROM queries WHERE k < ?1 AND shape >= 0
                   AND NOT EXISTS (SELECT 1 FROM breach_queries b JOIN breaches br ON br.id = b.breach
                                   WHERE b.k = queries.k AND br.status != 'closed')
                   LIMIT ?2)",
                params![allowed_cut, DELETE_CHUNK],
            )?;
            if (n as i64) < DELETE_CHUNK {
                break;
            }
        }
        loop {
            let tx = self.conn.transaction()?;
            let n = tx.execute(
                "DELETE FROM queries WHERE k IN (
                   SELECT k FROM queries WHERE k < ?1
                   AND NOT EXISTS (SELECT 1 FROM breach_queries b JOIN breaches br ON br.id = b.breach
                                   WHERE b.k = queries.k AND br.status != 'closed')
                   LIMIT ?2)",
                params![blocked_cut, DELETE_CHUNK],
            )?;
            tx.execute(
                "DELETE FROM blocked WHERE k < ?1
                 AND NOT EXISTS (SELECT 1 FROM queries q WHERE q.k = blocked.k)",
                [blocked_cut],
            )?;
            tx.commit()?;
            if (n as i64) < DELETE_CHUNK {
                break;
            }
        }
        self.conn
            .execute("DELETE FROM rollups WHERE minute < ?1", [rollup_cut])?;
        self.conn.execute(
            "DELETE FROM blocked_daily WHERE day < ?1",
            [rollup_cut.div_euclid(1440)],
        )?;
        // The day-level aggregates go with what they summarise: the daily rollups with the
        // rollups, the per-device counts with the blocked rows. Breaches are never pruned,
        // so neither are their daily counts.
        self.conn.execute(
            "DELETE FROM rollups_daily WHERE day < ?1",
            [rollup_cut.div_euclid(1440)],
        )?;
        self.conn.execute(
            "DELETE FROM device_daily WHERE day < ?1",
            [key_millis(blocked_cut).div_euclid(DAY_MS)],
        )?;
        // Nothing older than the blocked retention is left to find through these.
        let minute_cut = super::read::minute_of(blocked_cut);
        let day_cut = minute_cut.div_euclid(1440);
        presence::prune(&self.conn, minute_cut, day_cut > self.presence_pruned_day)?;
        self.presence_pruned_day = day_cut;
        Ok(())
    }
}

/// One transaction's work.
struct Batch<'a, 'c> {
    tx: &'a Transaction<'c>,
    /// The two statements every event runs, prepared once a batch.
    insert_query: CachedStatement<'a>,
    insert_blocked: CachedStatement<'a>,
    caches: &'a mut Caches,
    config: &'a StoreConfig,
    last_key: &'a mut i64,
    counts: &'a mut counts::Counts,
    /// Whether the counts must be written with this batch: it stored a key at or below
    /// their mark (a journal replay).
    write_counts: bool,
    out: BatchOut,
    rollups: HashMap<RollupKey, (i64, i64)>,
    /// High-severity and circumvention attempts per (UTC day, device) in this batch, added to
    /// `device_daily` at its end.
    device_days: HashMap<(i64, i64), (i64, i64)>,
    /// Changes to the breach counts per (UTC day of the first attempt, category or 0, worst
    /// severity, status) in this batch, added to `breach_daily` at its end.
    breach_days: HashMap<(i64, i64, Severity, CaseStatus), i64>,
    /// Devices and names first seen in a minute in this batch, written at its end.
    presence: presence::Pending,
}

impl Batch<'_, '_> {
    fn event(&mut self, e: &QueryEvent) -> Result<(), StoreError> {
        let t = unix_millis(e.at);
        let blocked = e.must_keep();
        let group = match &e.group {
            Some(g) => Some(self.group(g)?),
            None => None,
        };
        let category = match &e.category {
            Some(c) => Some(self.intern_category(c)?),
            None => None,
        };
        let counts = self
            .rollups
            .entry(RollupKey {
                minute: t.div_euclid(60_000),
                group: group.unwrap_or(0),
                category: category.unwrap_or(0),
                disposition: e.disposition.label(),
            })
            .or_default();
        counts.0 += 1;
        counts.1 += i64::from(e.disposition == Disposition::Blocked);
        let logged = blocked
            || (self.config.log_allowed
                && !e
                    .group
                    .as_deref()
                    .is_some_and(|g| self.config.no_allowed_log_groups.contains(g)));
        if !logged {
            return Ok(());
        }
        let rule = match &e.rule {
            Some(r) => Some(self.intern_rule(r)?),
            None => None,
        };
        let shape = self.shape(
            ShapeKey {
                group,
                qtype: e.qtype,
                transport: e.transport.label(),
                disposition: e.disposition.label(),
                reason: e.reason.map(|r| r.label()),
                category,
                rule,
                severity: e.severity.map(|s| s.label()),
                rcode: e.rcode,
            },
            blocked,
        )?;
        let identity = self.identity(e.client, t, e.device.as_deref())?;
        let ip = self.ip(e.client)?;
        let name = match &e.name {
            EventName::Clear(n) => self.intern_name(n)?,
            EventName::Withheld => self.intern_name(WITHHELD)?,
        };
        let ident = self.ident(identity.device, ip, identity.user.unwrap_or(0))?;
        let k = self.key(t)?;
        let dur = i64::try_from(e.duration.as_micros()).unwrap_or(i64::MAX);
        self.insert_query
            .execute(params![k, ident, name, shape, dur])?;
        // From the key, not the event's time: a key bumped past a minute's end is found in
        // the minute it is stored in.
        let minute = super::read::minute_of(k);
        let seen = &mut self.caches.seen;
        self.presence
            .note(seen, presence::Of::Device, identity.device, minute);
        self.presence.note(seen, presence::Of::Name, name, minute);
        self.out.rows += 1;
        if blocked {
            self.insert_blocked.execute([k])?;
            self.write_counts |= self.counts.blocked(k, name);
            let day = key_millis(k).div_euclid(DAY_MS);
            // What `Reader::high_severity_devices` and `Reader::circumvention` count.
            let high = e.severity == Some(Severity::High);
            let circumvention =
                e.reason == Some(BlockReason::Circumvention) && e.severity.is_some();
            if high || circumvention {
                let c = self.device_days.entry((day, identity.device)).or_default();
                c.0 += i64::from(high);
                c.1 += i64::from(circumvention);
            }
        }
        if let (true, Some(severity)) = (blocked, e.severity) {
            let domain = match &e.name {
                EventName::Clear(n) => registrable_domain(n),
                EventName::Withheld => "withheld".to_string(),
            };
            self.breach(e, t, k, identity, group, category, severity, &domain)?;
        }
        Ok(())
    }

    /// Adds queries counted on the DNS side ([`super::queue::Tally`]) to the per-minute
    /// counts, as their events would have been: no category, none blocked.
    fn tallied(&mut self, c: &Count) -> Result<(), StoreError> {
        let group = match &c.group {
            Some(g) => self.group(g)?,
            None => 0,
        };
        let counts = self
            .rollups
            .entry(RollupKey {
                minute: c.minute,
                group,
                category: 0,
                disposition: c.disposition.label(),
            })
            .or_default();
        counts.0 += c.queries;
        Ok(())
    }

    /// A key for time `t`, unique and in arrival order (see `migrate::V1`).
    fn key(&mut self, t: i64) -> Result<i64, StoreError> {
        let base = key_base(t);
        let k = if base > *self.last_key {
            base
        } else if *self.last_key < base + 255 {
            *self.last_key + 1
        } else {
            // An older event (journal replay): the next free slot in its millisecond, or the
            // first free one after it.
            let mut probe = base;
            loop {
                let max: Option<i64> = self
                    .tx
                    .prepare_cached("SELECT MAX(k) FROM queries WHERE k >= ?1 AND k < ?2")?
                    .query_row(params![probe, probe + 256], |r| r.get(0))?;
                match max {
                    None => break probe,
                    Some(m) if m < probe + 255 => break m + 1,
                    Some(_) => probe += 256,
                }
            }
        };
        *self.last_key = (*self.last_key).max(k);
        Ok(k)
    }

    fn flush_rollups(&mut self) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO rollups (minute, grp, category, disposition, queries, blocks)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (minute, grp, category, disposition) DO UPDATE SET
               queries = queries + excluded.queries, blocks = blocks + excluded.blocks",
        )?;
        // The day's totals from the batch's minutes: no work per event beyond the minute's.
        let mut days: HashMap<(i64, i64, i64, &'static str), (i64, i64)> = HashMap::default();
        for (k, (q, b)) in self.rollups.drain() {
            stmt.execute(params![k.minute, k.group, k.category, k.disposition, q, b])?;
            let d = days
                .entry((
                    k.minute.div_euclid(1440),
                    k.group,
                    k.category,
                    k.disposition,
                ))
                .or_default();
            d.0 += q;
            d.1 += b;
        }
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO rollups_daily (day, grp, category, disposition, queries, blocks)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (day, grp, category, disposition) DO UPDATE SET
               queries = queries + excluded.queries, blocks = blocks + excluded.blocks",
        )?;
        for ((day, group, category, disposition), (q, b)) in days {
            stmt.execute(params![day, group, category, disposition, q, b])?;
        }
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO device_daily (day, device, high, circumvention) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (day, device) DO UPDATE SET high = high + excluded.high,
               circumvention = circumvention + excluded.circumvention",
        )?;
        for ((day, device), (high, circumvention)) in self.device_days.drain() {
            stmt.execute(params![day, device, high, circumvention])?;
        }
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO breach_daily (day, category, severity, status, breaches)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (day, category, severity, status) DO UPDATE SET
               breaches = breaches + excluded.breaches",
        )?;
        for ((day, category, severity, status), n) in self.breach_days.drain() {
            if n != 0 {
                stmt.execute(params![day, category, severity.label(), status.label(), n])?;
            }
        }
        Ok(())
    }
}
