//! The store at a year's scale: 100 million stored queries (a large school's month at about
//! 40 queries a second), then the reads the dashboard makes on it — a device's timeline, a
//! breach page with the history around it, the 7-day category chart, the 7-day top blocked
//! names, the 30-day overview and high-severity devices and a year's breach counts — each
//! timed cold-ish (first call) and warm (median of 5).
//!
//! Not a criterion bench (generating the database takes minutes): run by hand,
//! `STORE_ROWS=100000000 cargo bench --bench store_scale` (default 10 million). The database is
//! kept under `target/store-scale/` and reused when it already has the rows asked for, so the
//! reads can be re-timed without generating again. `STORE_DIR=folder` uses another folder
//! (a database generated elsewhere): one that has any rows is only read, never replaced.
//! Prints the file size, bytes per query, the ingest rate and the process's peak memory
//! (VmHWM).
//!
//! `STORE_APPEND=N` with `STORE_DIR` measures the writer on a database that is already large:
//! the first N events of the `STORE_ROWS` month (the same density), 35 days later, offered at
//! `STORE_RATE` into a copy of a generated database (it is written to: copy it first; an
//! empty folder gives the rate on a new database), and the rate at which they were stored.
//! Nothing is read afterwards.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant, UNIX_EPOCH},
};

use hedgerow::{
    clock::Clock,
    config::StoreConfig,
    event::{BlockReason, Disposition, EventName, QueryEvent, Severity, Transport},
    store::{self, BreachFilter, CountBy, Store},
};

#[path = "common/names.rs"]
mod names;
use names::names;

/// 2026-09-01 00:00 UTC: the first day of the simulated month.
const T0: u64 = 1_788_220_800;
/// A school day's traffic comes in 8 hours; the month has 22 school days.
const SCHOOL_SECONDS: u64 = 22 * 8 * 3600;

/// Event `i` of `n`: 2,000 devices, school hours only, one in twelve blocked (a tenth of those
/// high severity, on one of 50 sites, so breaches form), names from the shared workload.
fn event(i: u64, n: u64, names: &[String]) -> QueryEvent {
    let offset = i * SCHOOL_SECONDS / n;
    let (day, second) = (offset / (8 * 3600), offset % (8 * 3600));
    // School days only: weekends skipped, 08:00–16:00 UTC.
    let date = day + day / 5 * 2;
    let at = UNIX_EPOCH
        + Duration::from_secs(T0 + date * 86_400 + 8 * 3600 + second)
        + Duration::from_micros(i % 1_000_000);
    let client = i.wrapping_mul(2_654_435_761) % 2000;
    let block = i.is_multiple_of(12);
    let high = block && i.is_multiple_of(120);
    let name = if high {
        format!("www.site{}.bad", i % 50)
    } else {
        names[(i as usize * 7919) % names.len()].clone()
    };
    QueryEvent {
        at,
        client: IpAddr::V4(Ipv4Addr::new(
            10,
            1,
            (client / 250) as u8,
            (client % 250) as u8 + 1,
        )),
        device: None,
        group: Some(
            if client.is_multiple_of(10) {
                "staff"
            } else {
                "pupils"
            }
            .into(),
        ),
        name: EventName::Clear(name),
        qtype: if i.is_multiple_of(3) { 28 } else { 1 },
        transport: Transport::Udp,
        disposition: if block {
            Disposition::Blocked
        } else if i.is_multiple_of(4) {
            Disposition::Cached
        } else {
            Disposition::Forwarded
        },
        reason: block.then_some(BlockReason::Category),
        category: block.then(|| if high { "self_harm" } else { "games" }.to_string()),
        rule: block.then(|| "category games (list entry `x`)".to_string()),
        severity: if high {
            Some(Severity::High)
        } else {
            block.then_some(Severity::Low)
        },
        rcode: if block { 3 } else { 0 },
        duration: Duration::from_micros(if i.is_multiple_of(4) { 40 } else { 15_000 }),
    }
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Offers events `range` of a `rows`-event month, moved `later`, to a store in `dir` at
/// `STORE_RATE` a second; returns (offered, shed, seconds until everything was written).
fn ingest(
    dir: &std::path::Path,
    clock: Clock,
    rows: u64,
    range: std::ops::Range<u64>,
    later: Duration,
) -> (u64, f64, f64) {
    // Retention is judged by the clock (the month's end): keep the whole month.
    let config = StoreConfig {
        channel_capacity: 1 << 20,
        retention_allowed_days: 365,
        ..StoreConfig::default()
    };
    let registry = prometheus::Registry::new();
    let store = Store::open(&config, dir, clock, &registry).expect("open");
    let rate: f64 = std::env::var("STORE_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150_000.0);
    let sink = store.sink();
    let names = names();
    let start = Instant::now();
    let offered = range.end - range.start;
    for (n, i) in range.enumerate() {
        let mut e = event(i, rows, &names);
        e.at += later;
        sink.record(e);
        // Paced below the writer's rate: allowed events are shed when the queue is full,
        // and a bench that sheds measures less than it says (the count is printed).
        if n % 10_000 == 9_999 {
            while start.elapsed().as_secs_f64() * rate < n as f64 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    let shed: f64 = registry
        .gather()
        .iter()
        .find(|f| f.name().ends_with("store_shed_events_total"))
        .map_or(0.0, |f| {
            f.get_metric()
                .iter()
                .map(|m| m.get_counter().get_value())
                .sum()
        });
    store.close().expect("close");
    (offered, shed, start.elapsed().as_secs_f64())
}

fn report_ingest(offered: u64, shed: f64, took: f64) {
    let stored = offered as f64 - shed;
    println!(
        "ingest: {offered} events offered in {took:.0} s; {shed} shed; {stored} stored = {:.0} stored events/s; peak RSS {} MiB",
        stored / took,
        peak_rss_mib()
    );
}

/// `STORE_APPEND`: the writer's rate on the large database in `dir`.
fn append_to(dir: &std::path::Path, rows: u64, append: u64) {
    let later = Duration::from_secs(35 * 86_400);
    let end = UNIX_EPOCH + Duration::from_secs(T0 + 66 * 86_400);
    let clock = Clock::from_fn(move || end);
    // An empty folder gives the same events' rate on a new database, for comparison.
    let before = store::open_offline(dir, clock.clone())
        .and_then(|(r, _)| r.query_count())
        .unwrap_or(0);
    let (offered, shed, took) = ingest(dir, clock, rows, 0..append, later);
    println!("appended to a database of {before} stored queries");
    report_ingest(offered, shed, took);
}

fn main() {
    let rows: u64 = std::env::var("STORE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    // `STORE_DIR` points at another folder (a database generated elsewhere).
    let dir = std::env::var_os("STORE_DIR").map_or_else(
        || {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/store-scale")
                .join(rows.to_string())
        },
        std::path::PathBuf::from,
    );
    let end = UNIX_EPOCH + Duration::from_secs(T0 + 31 * 86_400);
    let clock = Clock::from_fn(move || end);
    if let Some(append) = std::env::var("STORE_APPEND")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        append_to(&dir, rows, append);
        return;
    }
    let existing = store::open_offline(&dir, clock.clone())
        .ok()
        .and_then(|(r, _)| r.query_count().ok())
        .unwrap_or(0);
    // A folder named by `STORE_DIR` is never emptied: only an empty one is filled.
    let given = std::env::var_os("STORE_DIR").is_some();
    if existing < rows && !(given && existing > 0) {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench folder");
        let (offered, shed, took) = ingest(&dir, clock.clone(), rows, 0..rows, Duration::ZERO);
        report_ingest(offered, shed, took);
    }
    let (reader, _) = store::open_offline(&dir, clock).expect("reopen");
    let stored = reader.query_count().expect("count");
    let file = std::fs::metadata(dir.join(store::DB_FILE)).map_or(0, |m| m.len());
    println!(
        "database: {stored} stored queries, {:.2} GiB, {:.1} bytes per stored query",
        file as f64 / f64::from(1 << 30),
        file as f64 / stored.max(1) as f64
    );

    let week_end = UNIX_EPOCH + Duration::from_secs(T0 + 29 * 86_400);
    let week_start = week_end - Duration::from_secs(7 * 86_400);
    let breach = reader
        .breaches(&BreachFilter::default(), None, 1)
        .ok()
        .and_then(|b| b.first().map(|b| (b.id, b.device_key.clone())));
    let Some((breach_id, device)) = breach else {
        println!("no breach stored: the workload made none");
        return;
    };
    let time = |what: &str, f: &mut dyn FnMut() -> usize| {
        let first = Instant::now();
        let n = f();
        let first = first.elapsed();
        let mut warm: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect();
        warm.sort();
        println!(
            "read: {what}: {n} rows, first {:.1} ms, warm median {:.1} ms",
            first.as_secs_f64() * 1000.0,
            warm[2].as_secs_f64() * 1000.0
        );
    };
    time("a device's timeline, newest page (50)", &mut || {
        reader
            .device_timeline(&device, None, None, None, 50)
            .map_or(0, |p| p.rows.len())
    });
    time("a breach page with 10 minutes either side", &mut || {
        reader
            .breach(breach_id, Duration::from_secs(600), 200)
            .ok()
            .flatten()
            .map_or(0, |b| b.queries.len() + b.around.len())
    });
    time("7-day chart: blocks by category (rollups)", &mut || {
        reader
            .counts(week_start, week_end, CountBy::Category)
            .map_or(0, |c| c.len())
    });
    time("7-day top 20 blocked names", &mut || {
        reader
            .top_blocked(week_start, week_end, 20)
            .map_or(0, |c| c.len())
    });
    let month_end = UNIX_EPOCH + Duration::from_secs(T0 + 31 * 86_400);
    let month_start = month_end - Duration::from_secs(30 * 86_400);
    time("30-day overview (one read)", &mut || {
        reader
            .overview(month_start, month_end, Duration::from_secs(86_400))
            .map_or(0, |o| o.series.len())
    });
    time("30-day high-severity devices (whole days)", &mut || {
        reader
            .high_severity_devices(month_start, month_end, 10)
            .map_or(0, |d| d.len())
    });
    time("7-day high-severity devices, half-day ends", &mut || {
        reader
            .high_severity_devices(
                week_start - Duration::from_secs(12 * 3600),
                week_end + Duration::from_secs(12 * 3600),
                10,
            )
            .map_or(0, |d| d.len())
    });
    time("a year's breach counts (annual pack)", &mut || {
        reader
            .breach_counts(
                UNIX_EPOCH + Duration::from_secs(T0 - 243 * 86_400),
                month_end,
            )
            .map_or(0, |c| c.len())
    });
    time("breaches, newest page (50)", &mut || {
        reader
            .breaches(&BreachFilter::default(), None, 50)
            .map_or(0, |b| b.len())
    });
    println!("peak RSS of this process {} MiB", peak_rss_mib());
}
