//! The store's writer: ingest rate (events per second through the sink into SQLite, one
//! writer thread) and bytes per stored query, on names from the shared workload.
//!
//! `cargo bench --bench store`. The size figures are printed (not a criterion measurement):
//! one million events are written once, the WAL checkpointed, and the file (and each table
//! and index, through `dbstat`) divided by the rows.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant, UNIX_EPOCH},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hedgerow::{
    clock::Clock,
    config::StoreConfig,
    event::{BlockReason, Disposition, EventName, QueryEvent, Severity, Transport},
    store::{self, Store},
};

#[path = "common/names.rs"]
mod names;
use names::names;

/// `n` events: 800 clients, about one in twelve blocked (a quarter of those with a
/// severity), `qps` queries a second of simulated time.
fn workload(n: usize, qps: u64) -> Vec<QueryEvent> {
    let names = names();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_788_256_800);
    (0..n)
        .map(|i| {
            let name = &names[(i * 7919) % names.len()];
            let block = i % 12 == 0;
            QueryEvent {
                at: t0 + Duration::from_micros(i as u64 * 1_000_000 / qps),
                client: IpAddr::V4(Ipv4Addr::new(
                    10,
                    0,
                    (i % 800 / 250) as u8,
                    (i % 250) as u8 + 1,
                )),
                device: None,
                group: Some(if i % 5 == 0 { "staff" } else { "pupils" }.into()),
                name: EventName::Clear(name.clone()),
                qtype: if i % 3 == 0 { 28 } else { 1 },
                transport: Transport::Udp,
                disposition: if block {
                    Disposition::Blocked
                } else if i % 4 == 0 {
                    Disposition::Cached
                } else {
                    Disposition::Forwarded
                },
                reason: block.then_some(BlockReason::Category),
                category: block.then(|| "gambling".to_string()),
                rule: block.then(|| "category gambling (list: ut1)".to_string()),
                severity: (block && i % 48 == 0).then_some(Severity::Medium),
                rcode: if block { 3 } else { 0 },
                duration: Duration::from_micros(if i % 4 == 0 {
                    40
                } else {
                    15_000 + (i % 900) as u64
                }),
            }
        })
        .collect()
}

fn config() -> StoreConfig {
    StoreConfig {
        channel_capacity: 1 << 21,
        ..StoreConfig::default()
    }
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/store-bench")
        .join(tag);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench folder");
    dir
}

/// Writes `events` through a fresh store and returns the time from the first record to the
/// end of `close()` (everything committed).
fn ingest_once(events: Vec<QueryEvent>, dir: &std::path::Path) -> Duration {
    let clock = Clock::from_fn(|| UNIX_EPOCH + Duration::from_secs(1_788_256_800));
    let store = Store::open(&config(), dir, clock, &prometheus::Registry::new()).expect("open");
    let sink = store.sink();
    let start = Instant::now();
    for e in events {
        sink.record(e);
    }
    store.close().expect("close");
    start.elapsed()
}

fn ingest(c: &mut Criterion) {
    const N: usize = 200_000;
    let events = workload(N, 2000);
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("ingest_200k_events", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = scratch("ingest");
                total += ingest_once(events.clone(), &dir);
            }
            total
        })
    });
    group.finish();
    // A dense log (the ingest bench's) and a school's (200 queries a second, the name
    // distribution of the shared workload is nearly flat, so most names are new each minute).
    size_report(2000);
    size_report(200);
}

/// Bytes per stored query for one million events.
fn size_report(qps: u64) {
    const N: usize = 1_000_000;
    let dir = scratch(&format!("size-{qps}"));
    let took = ingest_once(workload(N, qps), &dir);
    let conn = rusqlite::Connection::open(dir.join(store::DB_FILE)).expect("reopen");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM queries", [], |r| r.get(0))
        .expect("count");
    let file = std::fs::metadata(dir.join(store::DB_FILE)).map_or(0, |m| m.len());
    println!(
        "store, {qps} queries/s simulated: {N} events in {:.2} s ({:.0} events/s); {rows} rows; file {file} bytes = {:.1} bytes per stored query (everything: tables, indexes, interned names, rollups, breaches)",
        took.as_secs_f64(),
        N as f64 / took.as_secs_f64(),
        file as f64 / rows as f64
    );
    let stat = conn.prepare(
        "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY SUM(pgsize) DESC LIMIT 8",
    );
    if let Ok(mut stat) = stat {
        let parts = stat
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map(|rows| rows.filter_map(Result::ok).collect::<Vec<_>>())
            .unwrap_or_default();
        for (name, bytes) in parts {
            println!(
                "  {name}: {:.1} bytes per query",
                bytes as f64 / rows as f64
            );
        }
    }
    read_report(&dir);
}

/// Time of the reads a dashboard makes, on the million-row database.
fn read_report(dir: &std::path::Path) {
    let clock = Clock::from_fn(|| UNIX_EPOCH + Duration::from_secs(1_788_256_800 + 3600));
    let Ok((reader, _)) = store::open_offline(dir, clock) else {
        return;
    };
    let time = |what: &str, f: &mut dyn FnMut() -> usize| {
        let start = Instant::now();
        let n = f();
        println!(
            "  read: {what}: {n} rows in {:.1} ms",
            start.elapsed().as_secs_f64() * 1000.0
        );
    };
    time("newest page of everything (50)", &mut || {
        reader
            .search(&store::QueryFilter::default(), None, 50)
            .map_or(0, |p| p.rows.len())
    });
    time("a device's timeline, first page (50)", &mut || {
        reader
            .device_timeline("10.0.1.17", None, None, None, 50)
            .map_or(0, |p| p.rows.len())
    });
    let mut next = None;
    time("a device's timeline, 10 pages (500)", &mut || {
        let mut n = 0;
        for _ in 0..10 {
            let Ok(p) = reader.device_timeline("10.0.1.17", None, None, next, 50) else {
                break;
            };
            n += p.rows.len();
            next = p.next;
        }
        n
    });
    let name = names()[7919].clone();
    time(&format!("name search `{name}` (50)"), &mut || {
        let filter = store::QueryFilter {
            name: Some(name.clone()),
            ..Default::default()
        };
        reader.search(&filter, None, 50).map_or(0, |p| p.rows.len())
    });
    time("blocked only, newest page (50)", &mut || {
        let filter = store::QueryFilter {
            blocked_only: true,
            ..Default::default()
        };
        reader.search(&filter, None, 50).map_or(0, |p| p.rows.len())
    });
    let (from, to) = (
        UNIX_EPOCH + Duration::from_secs(1_788_256_800),
        UNIX_EPOCH + Duration::from_secs(1_788_256_800 + 3600),
    );
    time("counts by category over the hour (rollups)", &mut || {
        reader
            .counts(from, to, store::CountBy::Category)
            .map_or(0, |c| c.len())
    });
    time("top 20 blocked names over the hour", &mut || {
        reader.top_blocked(from, to, 20).map_or(0, |c| c.len())
    });
}

criterion_group!(benches, ingest);
criterion_main!(benches);
