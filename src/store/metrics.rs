//! `hedgerow_store_*` metrics, registered on the crate's registry (whose `hedgerow` prefix
//! makes the names). No label ever carries a personal value.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The store's metric handles.
#[derive(Clone)]
pub(crate) struct StoreMetrics {
    /// Query rows written.
    pub rows_written: IntCounter,
    /// Seconds per committed batch.
    pub batch_seconds: Histogram,
    /// Events queued for the writer.
    pub channel_depth: IntGauge,
    /// Allowed events shed under overload (`reason`: `full`, `database`).
    pub shed: IntCounterVec,
    /// `shed` with `reason="full"`, resolved once: the DNS path counts into it for every
    /// allowed query while the writer is behind, and a label lookup per query hashes.
    pub shed_full: IntCounter,
    /// Blocked events written to the journal file.
    pub journalled: IntCounter,
    /// Bytes in the journal files.
    pub journal_bytes: IntGauge,
    /// Journalled events replayed into the database.
    pub replayed: IntCounter,
    /// Bytes of the database and its WAL.
    pub database_bytes: IntGauge,
    /// What SQLite has allocated, process-wide: separates the page caches' growth (bounded
    /// by `cache_size`) from the rest of the process's memory in a soak.
    pub sqlite_memory: IntGauge,
}

impl StoreMetrics {
    pub fn register(registry: &Registry) -> Result<StoreMetrics, prometheus::Error> {
        let rows_written = IntCounter::new("store_rows_written_total", "Query-log rows written")?;
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "store_batch_duration_seconds",
                "Time to write one batch of query-log rows",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        let channel_depth = IntGauge::new(
            "store_channel_depth",
            "Query events waiting for the store's writer",
        )?;
        let shed = IntCounterVec::new(
            Opts::new(
                "store_shed_events_total",
                "Allowed-query events not logged because the writer was overloaded or the database failed",
            ),
            &["reason"],
        )?;
        let journalled = IntCounter::new(
            "store_journalled_events_total",
            "Blocked-query events written to the journal file because the database could not take them",
        )?;
        let journal_bytes =
            IntGauge::new("store_journal_bytes", "Bytes waiting in the journal file")?;
        let replayed = IntCounter::new(
            "store_replayed_events_total",
            "Journalled events replayed into the database",
        )?;
        let database_bytes = IntGauge::new(
            "store_database_bytes",
            "Size of the store's database and its write-ahead log",
        )?;
        let sqlite_memory = IntGauge::new(
            "store_sqlite_memory_bytes",
            "Heap memory SQLite holds for all the store's connections (page caches fill up to \
             their configured size, then stay there)",
        )?;
        registry.register(Box::new(rows_written.clone()))?;
        registry.register(Box::new(batch_seconds.clone()))?;
        registry.register(Box::new(channel_depth.clone()))?;
        registry.register(Box::new(shed.clone()))?;
        registry.register(Box::new(journalled.clone()))?;
        registry.register(Box::new(journal_bytes.clone()))?;
        registry.register(Box::new(replayed.clone()))?;
        registry.register(Box::new(database_bytes.clone()))?;
        registry.register(Box::new(sqlite_memory.clone()))?;
        Ok(StoreMetrics {
            rows_written,
            batch_seconds,
            channel_depth,
            shed_full: shed.with_label_values(&["full"]),
            shed,
            journalled,
            journal_bytes,
            replayed,
            database_bytes,
            sqlite_memory,
        })
    }
}
