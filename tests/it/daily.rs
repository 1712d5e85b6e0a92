//! The day-level aggregates on real SQLite files: counts, series and the overview's single
//! read (whole days from the daily rollups, partial end days from the minutes) equal the
//! counts of the events; the per-device daily counts equal counting the blocked rows, also
//! after an erasure, and retention prunes them; the daily breach counts follow every change
//! (opened, worse severity, an earlier start, a status, an erasure, a change made by plain
//! SQL); the migration fills all three from the tables already there, and running it again
//! does not count twice.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hedgerow::{
    clock::Clock,
    config::StoreConfig,
    event::{BlockReason, Disposition, EventName, QueryEvent, Severity, Transport},
    store::{
        self, BreachFilter, BreachSummary, CaseChange, CaseStatus, CountBy, CountRow,
        DeviceAttempts, EraseTarget, Overview, Reader, Store,
    },
};

use crate::common::tempdir::TempDir;

/// 2026-09-01T00:00:00Z, a UTC midnight.
const T0_MS: i64 = 1_788_220_800_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn at(offset_ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis((T0_MS + offset_ms) as u64)
}

fn clock_at(offset_ms: i64) -> Clock {
    let now = at(offset_ms);
    Clock::from_fn(move || now)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Forwarded,
    Cached,
    /// Blocked, games, low severity (a breach).
    Games,
    /// Blocked, pornography, high severity (a breach).
    Porn,
    /// Blocked by a deny entry: no category, no severity.
    Deny,
    /// A private relay: circumvention with a severity (a breach).
    Relay,
    /// A browser's canary: circumvention without a severity (nobody's attempt).
    Canary,
}

const KINDS: [Kind; 7] = [
    Kind::Forwarded,
    Kind::Cached,
    Kind::Games,
    Kind::Porn,
    Kind::Deny,
    Kind::Relay,
    Kind::Canary,
];

#[derive(Debug, Clone)]
struct Ev {
    /// Milliseconds after `T0_MS`.
    t: i64,
    /// The last byte of the client's address (its device, shown as the address).
    ip: u8,
    kind: Kind,
    /// Which of a few sites of its kind.
    site: u8,
}

impl Ev {
    fn group(&self) -> Option<&'static str> {
        match self.ip % 3 {
            0 => Some("staff"),
            1 => Some("pupils"),
            _ => None,
        }
    }

    fn disposition(&self) -> Disposition {
        match self.kind {
            Kind::Forwarded => Disposition::Forwarded,
            Kind::Cached => Disposition::Cached,
            _ => Disposition::Blocked,
        }
    }

    fn category(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Games => Some("games"),
            Kind::Porn => Some("pornography"),
            _ => None,
        }
    }

    fn severity(&self) -> Option<Severity> {
        match self.kind {
            Kind::Games => Some(Severity::Low),
            Kind::Porn => Some(Severity::High),
            Kind::Relay => Some(Severity::Medium),
            _ => None,
        }
    }

    fn reason(&self) -> Option<BlockReason> {
        match self.kind {
            Kind::Games | Kind::Porn => Some(BlockReason::Category),
            Kind::Deny => Some(BlockReason::Deny),
            Kind::Relay | Kind::Canary => Some(BlockReason::Circumvention),
            Kind::Forwarded | Kind::Cached => None,
        }
    }

    fn device(&self) -> String {
        format!("10.0.0.{}", self.ip)
    }

    fn minute(&self) -> i64 {
        (T0_MS + self.t).div_euclid(MINUTE)
    }

    fn event(&self) -> QueryEvent {
        let name = format!("{:?}{}.example", self.kind, self.site).to_ascii_lowercase();
        QueryEvent {
            at: at(self.t),
            client: self.device().parse().unwrap(),
            device: None,
            group: self.group().map(Into::into),
            name: EventName::Clear(name),
            qtype: 1,
            transport: Transport::Udp,
            disposition: self.disposition(),
            reason: self.reason(),
            category: self.category().map(Into::into),
            rule: self.reason().map(|r| format!("rule {}", r.label())),
            severity: self.severity(),
            rcode: if self.disposition() == Disposition::Blocked {
                3
            } else {
                0
            },
            duration: Duration::from_micros(700),
        }
    }
}

/// 3,000 events over five days from a UTC midnight, of every kind, from six devices, in
/// time order, chosen by a fixed pseudo-random sequence.
fn events() -> Vec<Ev> {
    let n = 3_000i64;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Ev {
                t: i * 5 * DAY / n + (x % 1000) as i64,
                ip: 1 + (x % 6) as u8,
                kind: KINDS[((x >> 8) % 7) as usize],
                site: ((x >> 16) % 4) as u8,
            }
        })
        .collect()
}

/// Periods (milliseconds after `T0_MS`) with every shape of ends: whole days, partial days
/// at both ends, inside one day, across one midnight, beyond the data, and empty.
const PERIODS: [(i64, i64); 7] = [
    (0, 5 * DAY),
    (3 * HOUR + 17_000, 4 * DAY + 5 * HOUR + 123),
    (DAY / 2, DAY / 2 + 2 * HOUR),
    (20 * HOUR, 28 * HOUR),
    (-DAY, 6 * DAY),
    (DAY + 59_999, 3 * DAY + 1),
    (DAY, DAY),
];

fn write(dir: &TempDir, config: &StoreConfig, clock: Clock, events: &[Ev]) -> Store {
    let store = Store::open(config, dir.path(), clock, &prometheus::Registry::new()).unwrap();
    let sink = store.sink();
    for e in events {
        sink.record(e.event());
    }
    store.flush().unwrap();
    store
}

fn sql(dir: &Path, statement: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.join(store::DB_FILE)).unwrap();
    conn.query_row(statement, [], |r| r.get(0)).unwrap()
}

/// The schema version whose step creates the daily tables (found, not hard-coded: steps
/// are renumbered when branches merge).
fn daily_step() -> u32 {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    (1..=store::migrate::CURRENT)
        .find(|&v| {
            store::migrate::migrate_to(&mut conn, v).unwrap();
            conn.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'rollups_daily'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
                > 0
        })
        .expect("a step creates rollups_daily")
}

/// Takes the database back to before the daily step — dropping what it made when `drop`,
/// keeping its (possibly wrong) rows otherwise — and reopens it, which runs the step again.
fn run_daily_step_again(dir: &TempDir, drop: bool) -> Reader {
    let step = daily_step();
    {
        let conn = rusqlite::Connection::open(dir.path().join(store::DB_FILE)).unwrap();
        if drop {
            conn.execute_batch(
                "DROP TABLE rollups_daily; DROP TABLE device_daily; DROP TABLE breach_daily;
                 DROP INDEX breaches_status_first;
                 DROP TRIGGER breach_daily_status; DROP TRIGGER breach_daily_delete;",
            )
            .unwrap();
        }
        conn.execute_batch(&format!("PRAGMA user_version = {}", step - 1))
            .unwrap();
    }
    let (reader, _) = store::open_offline(dir.path(), clock_at(0)).unwrap();
    assert_eq!(
        sql(dir.path(), "PRAGMA user_version"),
        i64::from(store::migrate::CURRENT)
    );
    reader
}

/// Counts of the events in `[from, to)` (whole minutes, as the rollups count), sorted as the
/// store sorts them: most queries first, then by key.
fn counts_of(events: &[Ev], from: i64, to: i64, by: CountBy) -> Vec<CountRow> {
    let (lo, hi) = (
        (T0_MS + from).div_euclid(MINUTE),
        (T0_MS + to).div_euclid(MINUTE),
    );
    let mut map: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in events.iter().filter(|e| (lo..hi).contains(&e.minute())) {
        let key = match by {
            CountBy::Category => e.category().unwrap_or("none").to_string(),
            CountBy::Group => e.group().unwrap_or("none").to_string(),
            CountBy::Disposition => e.disposition().label().to_string(),
        };
        let c = map.entry(key).or_default();
        c.0 += 1;
        c.1 += u64::from(e.disposition() == Disposition::Blocked);
    }
    let mut rows: Vec<CountRow> = map
        .into_iter()
        .map(|(key, (queries, blocks))| CountRow {
            key,
            queries,
            blocks,
        })
        .collect();
    rows.sort_by(|a, b| b.queries.cmp(&a.queries).then_with(|| a.key.cmp(&b.key)));
    rows
}

/// Queries and blocks per `step` minutes (from the Unix epoch) in `[from, to)`.
fn series_of(events: &[Ev], from: i64, to: i64, step: i64) -> Vec<(SystemTime, u64, u64)> {
    let (lo, hi) = (
        (T0_MS + from).div_euclid(MINUTE),
        (T0_MS + to).div_euclid(MINUTE),
    );
    let mut map: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for e in events.iter().filter(|e| (lo..hi).contains(&e.minute())) {
        let c = map.entry(e.minute() / step * step).or_default();
        c.0 += 1;
        c.1 += u64::from(e.disposition() == Disposition::Blocked);
    }
    map.into_iter()
        .map(|(m, (q, b))| {
            (
                UNIX_EPOCH + Duration::from_millis((m * MINUTE) as u64),
                q,
                b,
            )
        })
        .collect()
}

/// Every count, series (hourly, 90 minutes, daily, two-daily) and overview over every
/// period equals the events' own.
fn assert_rollups_match(reader: &Reader, events: &[Ev], why: &str) {
    for (from, to) in PERIODS {
        let by = |by| reader.counts(at(from), at(to), by).unwrap();
        for b in [CountBy::Category, CountBy::Group, CountBy::Disposition] {
            assert_eq!(
                by(b),
                counts_of(events, from, to, b),
                "{why}: {from}..{to} {b:?}"
            );
        }
        for step in [60, 90, 1440, 2880] {
            let step_d = Duration::from_secs(step as u64 * 60);
            let series = reader.series(at(from), at(to), step_d).unwrap();
            assert_eq!(
                series,
                series_of(events, from, to, step),
                "{why}: {from}..{to} step {step} min"
            );
            assert_eq!(
                reader.overview(at(from), at(to), step_d).unwrap(),
                Overview {
                    by_category: by(CountBy::Category),
                    by_group: by(CountBy::Group),
                    by_disposition: by(CountBy::Disposition),
                    series,
                },
                "{why}: overview {from}..{to} step {step} min"
            );
        }
    }
}

#[test]
fn daily_counts_and_series_equal_the_minutes_and_are_filled_on_upgrade() {
    let dir = TempDir::new("daily-rollups");
    let events = events();
    let store = write(&dir, &StoreConfig::default(), clock_at(0), &events);
    let reader = store.reader();
    store.close().unwrap();
    assert_rollups_match(&reader, &events, "written by the writer");
    assert_eq!(
        sql(dir.path(), "SELECT SUM(queries) FROM rollups_daily"),
        events.len() as i64,
        "the writer keeps the daily rollups"
    );

    // The whole days really come from the daily table: a wrong day there shows over a
    // period holding that day, and not over one inside a single day.
    let day2 = (T0_MS + 2 * DAY) / DAY;
    {
        let conn = rusqlite::Connection::open(dir.path().join(store::DB_FILE)).unwrap();
        conn.execute(
            "UPDATE rollups_daily SET queries = queries + 1000 WHERE day = ?1",
            [day2],
        )
        .unwrap();
    }
    let total = |from, to| -> u64 {
        reader
            .counts(at(from), at(to), CountBy::Disposition)
            .unwrap()
            .iter()
            .map(|r| r.queries)
            .sum()
    };
    let truth = |from, to| -> u64 {
        counts_of(&events, from, to, CountBy::Disposition)
            .iter()
            .map(|r| r.queries)
            .sum()
    };
    assert!(total(0, 5 * DAY) > truth(0, 5 * DAY));
    assert_eq!(
        total(DAY / 2, DAY / 2 + 2 * HOUR),
        truth(DAY / 2, DAY / 2 + 2 * HOUR)
    );

    // Running the step again on a database that has (wrong) daily rows recomputes them from
    // the minutes: nothing counted twice.
    let reader = run_daily_step_again(&dir, false);
    assert_rollups_match(&reader, &events, "the step run again");
    // A database from before the step gets them filled in.
    let reader = run_daily_step_again(&dir, true);
    assert_rollups_match(&reader, &events, "filled on upgrade");
}

/// The devices' attempts in `[from, to)` counted from the events: `(label, attempts)`, most
/// first, then by label.
fn attempts_of(
    events: &[Ev],
    from: i64,
    to: i64,
    counts: impl Fn(&Ev) -> bool,
) -> Vec<(String, u64)> {
    let mut map: BTreeMap<String, u64> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| (from..to).contains(&e.t) && counts(e))
    {
        *map.entry(e.device()).or_default() += 1;
    }
    let mut v: Vec<(String, u64)> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn high(e: &Ev) -> bool {
    e.severity() == Some(Severity::High)
}

fn circumvention(e: &Ev) -> bool {
    e.reason() == Some(BlockReason::Circumvention) && e.severity().is_some()
}

fn pairs(list: &[DeviceAttempts]) -> Vec<(String, u64)> {
    list.iter()
        .map(|d| (d.device.clone(), d.attempts))
        .collect()
}

fn assert_attempts_match(reader: &Reader, events: &[Ev], why: &str) {
    for (from, to) in PERIODS {
        let mut want = attempts_of(events, from, to, high);
        want.truncate(4);
        let got = reader.high_severity_devices(at(from), at(to), 4).unwrap();
        assert_eq!(pairs(&got), want, "{why}: high {from}..{to}");
        let want = attempts_of(events, from, to, circumvention);
        let got = reader.circumvention(at(from), at(to), 3).unwrap();
        assert_eq!(
            (got.attempts, got.devices),
            (want.iter().map(|d| d.1).sum(), want.len() as u64),
            "{why}: circumvention {from}..{to}"
        );
        assert_eq!(
            pairs(&got.top),
            want[..want.len().min(3)],
            "{why}: {from}..{to}"
        );
    }
}

/// Closes every breach of a device, so an erasure removes its rows.
fn close_all(store: &Store, device: &str) {
    let filter = BreachFilter {
        device: Some(device.into()),
        ..BreachFilter::default()
    };
    for b in store
        .reader()
        .breaches(&filter, None, 100_000)
        .unwrap()
        .iter()
        .filter(|b| b.status != CaseStatus::Closed)
    {
        store
            .commands()
            .update_case(b.id, &CaseChange::Status(CaseStatus::Closed), "test DSL")
            .unwrap();
    }
}

#[test]
fn daily_device_attempts_equal_the_rows_through_erasure_upgrade_and_retention() {
    let dir = TempDir::new("daily-devices");
    let mut events = events();
    let store = write(&dir, &StoreConfig::default(), clock_at(0), &events);
    let reader = store.reader();
    assert!(
        !attempts_of(&events, 0, 5 * DAY, circumvention).is_empty()
            && events.iter().any(|e| e.kind == Kind::Canary),
        "the workload has both kinds of circumvention"
    );
    assert_attempts_match(&reader, &events, "written by the writer");

    // Erasing a device's records before a time takes its attempts out of the daily counts
    // (what it erased only); erasing all of another's leaves no daily row of it.
    let cut = 2 * DAY + 5 * HOUR + 7;
    close_all(&store, "10.0.0.3");
    store
        .commands()
        .erase(
            &EraseTarget::Device("10.0.0.3".into()),
            at(cut),
            "dsl",
            "request",
        )
        .unwrap();
    events.retain(|e| !(e.ip == 3 && e.t < cut));
    close_all(&store, "10.0.0.5");
    store
        .commands()
        .erase(
            &EraseTarget::Device("10.0.0.5".into()),
            at(6 * DAY),
            "dsl",
            "request",
        )
        .unwrap();
    events.retain(|e| e.ip != 5);
    assert_attempts_match(&reader, &events, "after erasure");
    assert_eq!(
        sql(
            dir.path(),
            "SELECT COUNT(*) FROM device_daily WHERE device NOT IN (SELECT id FROM devices)
             OR device IN (SELECT id FROM devices WHERE label = '10.0.0.5')"
        ),
        0,
        "no daily row of the erased device"
    );
    store.close().unwrap();

    let reader = run_daily_step_again(&dir, false);
    assert_attempts_match(&reader, &events, "the step run again");
    let reader = run_daily_step_again(&dir, true);
    assert_attempts_match(&reader, &events, "filled on upgrade");
    assert!(sql(dir.path(), "SELECT COUNT(*) FROM device_daily") > 0);

    // Retention prunes the daily counts with what they summarise: the device counts with the
    // blocked rows (2 days here), the daily rollups with the rollups (3 days).
    let config = StoreConfig {
        retention_allowed_days: 1,
        retention_blocked_days: 2,
        rollup_retention_days: 3,
        ..StoreConfig::default()
    };
    let store = Store::open(
        &config,
        dir.path(),
        clock_at(5 * DAY + 12 * HOUR),
        &prometheus::Registry::new(),
    )
    .unwrap();
    store.flush().unwrap();
    store.close().unwrap();
    let first_day = T0_MS / DAY;
    assert_eq!(
        sql(dir.path(), "SELECT MIN(day) FROM device_daily"),
        first_day + 3,
        "device counts from the day of the blocked rows' horizon on"
    );
    assert_eq!(
        sql(dir.path(), "SELECT MIN(day) FROM rollups_daily"),
        first_day + 2,
        "daily rollups from the day of the rollups' horizon on"
    );
}

/// Breaches first seen in `[from, to)` counted from the breaches themselves, sorted as the
/// store sorts them.
fn breach_counts_of(
    all: &[BreachSummary],
    from: i64,
    to: i64,
) -> Vec<(Option<String>, String, String, u64)> {
    let mut map: BTreeMap<(Option<String>, String, String), u64> = BTreeMap::new();
    for b in all
        .iter()
        .filter(|b| b.first >= at(from) && b.first < at(to))
    {
        *map.entry((
            b.category.clone(),
            b.severity.label().to_string(),
            b.status.label().to_string(),
        ))
        .or_default() += 1;
    }
    let mut v: Vec<_> = map
        .into_iter()
        .map(|((c, s, st), n)| (c, s, st, n))
        .collect();
    v.sort_by(|a, b| {
        b.3.cmp(&a.3)
            .then_with(|| a.0.cmp(&b.0))
            .then_with(|| a.1.cmp(&b.1))
            .then_with(|| a.2.cmp(&b.2))
    });
    v
}

fn assert_breaches_match(reader: &Reader, why: &str) {
    let all = reader
        .breaches(&BreachFilter::default(), None, 100_000)
        .unwrap();
    assert!(all.len() > 50, "{why}: a real workload: {}", all.len());
    for (from, to) in PERIODS {
        let got: Vec<_> = reader
            .breach_counts(at(from), at(to))
            .unwrap()
            .into_iter()
            .map(|c| {
                (
                    c.category,
                    c.severity.label().to_string(),
                    c.status.label().to_string(),
                    c.breaches,
                )
            })
            .collect();
        assert_eq!(got, breach_counts_of(&all, from, to), "{why}: {from}..{to}");

        let opened: Vec<&BreachSummary> = all
            .iter()
            .filter(|b| b.first >= at(from) && b.first < at(to))
            .collect();
        let open: Vec<&BreachSummary> = all
            .iter()
            .filter(|b| b.status != CaseStatus::Closed && b.first < at(to))
            .collect();
        let totals = reader.breach_totals(at(from), at(to)).unwrap();
        assert_eq!(
            (totals.opened, totals.open),
            (opened.len() as u64, open.len() as u64),
            "{why}: totals {from}..{to}"
        );
        // The lists: the newest of the period, the longest open.
        let mut newest: Vec<(SystemTime, i64)> = opened.iter().map(|b| (b.first, b.id)).collect();
        newest.sort_by(|a, b| b.cmp(a));
        newest.truncate(5);
        let got: Vec<(SystemTime, i64)> = reader
            .breaches_opened(at(from), at(to), 5)
            .unwrap()
            .iter()
            .map(|b| (b.first, b.id))
            .collect();
        assert_eq!(got, newest, "{why}: newest {from}..{to}");
        let mut oldest: Vec<(SystemTime, i64)> = open.iter().map(|b| (b.first, b.id)).collect();
        oldest.sort();
        oldest.truncate(5);
        let got: Vec<(SystemTime, i64)> = reader
            .open_breaches(at(to), 5)
            .unwrap()
            .iter()
            .map(|b| (b.first, b.id))
            .collect();
        assert_eq!(got, oldest, "{why}: longest open before {to}");
    }
    // Open cases by the day they began, from `now` on day 4.
    let now = at(4 * DAY + 3 * HOUR);
    let today = (T0_MS + 4 * DAY) / DAY;
    let mut want: BTreeMap<usize, (CaseStatus, u64, u64, u64)> = BTreeMap::new();
    for b in all.iter().filter(|b| b.status != CaseStatus::Closed) {
        let day = b.first.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64 / DAY;
        let position = CaseStatus::ALL.iter().position(|s| *s == b.status).unwrap();
        let row = want.entry(position).or_insert((b.status, 0, 0, 0));
        match today - day {
            d if d <= 0 => row.1 += 1,
            1..=7 => row.2 += 1,
            _ => row.3 += 1,
        }
    }
    assert_eq!(
        reader.open_breach_days(now).unwrap(),
        want.into_values().collect::<Vec<_>>(),
        "{why}: open cases by day"
    );
}

#[test]
fn daily_breach_counts_follow_every_change_and_are_filled_on_upgrade() {
    let dir = TempDir::new("daily-breaches");
    let events = events();
    let store = write(&dir, &StoreConfig::default(), clock_at(0), &events);
    let sink = store.sink();
    // A breach whose severity worsens: games (low), then high on the same site.
    let mut worse = Ev {
        t: 2 * DAY + 10 * HOUR,
        ip: 9,
        kind: Kind::Games,
        site: 9,
    }
    .event();
    sink.record(worse.clone());
    store.flush().unwrap();
    worse.at += Duration::from_secs(60);
    worse.severity = Some(Severity::High);
    sink.record(worse);
    // A breach whose start moves to the day before: a late event (as the journal replays).
    let relay = |t| Ev {
        t,
        ip: 10,
        kind: Kind::Relay,
        site: 9,
    };
    sink.record(relay(3 * DAY + 30_000).event());
    store.flush().unwrap();
    sink.record(relay(3 * DAY - 20_000).event());
    store.flush().unwrap();
    let reader = store.reader();
    let moved = reader
        .breaches(
            &BreachFilter {
                device: Some("10.0.0.10".into()),
                ..BreachFilter::default()
            },
            None,
            10,
        )
        .unwrap();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        moved[0].first,
        at(3 * DAY - 20_000),
        "one breach, begun the day before"
    );
    assert_breaches_match(&reader, "written by the writer");

    // Case changes: each status, escalation, and a change made by plain SQL (the triggers
    // follow whoever changes a status).
    let all = reader
        .breaches(&BreachFilter::default(), None, 100_000)
        .unwrap();
    let commands = store.commands();
    for (i, b) in all.iter().enumerate().take(40) {
        let change = match i % 4 {
            0 => CaseChange::Status(CaseStatus::Reviewed),
            1 => CaseChange::EscalatedTo("social care".into()),
            2 => CaseChange::Status(CaseStatus::Closed),
            _ => continue,
        };
        commands.update_case(b.id, &change, "test DSL").unwrap();
    }
    {
        let conn = rusqlite::Connection::open(dir.path().join(store::DB_FILE)).unwrap();
        conn.execute(
            "UPDATE breaches SET status = 'closed' WHERE id = ?1",
            [all[43].id],
        )
        .unwrap();
    }
    assert_breaches_match(&reader, "after case changes");
    // An erasure removes closed breaches.
    close_all(&store, "10.0.0.4");
    let erased = commands
        .erase(
            &EraseTarget::Device("10.0.0.4".into()),
            at(6 * DAY),
            "dsl",
            "request",
        )
        .unwrap();
    assert!(erased.breaches > 0);
    assert_breaches_match(&reader, "after an erasure");
    store.close().unwrap();

    let reader = run_daily_step_again(&dir, false);
    assert_breaches_match(&reader, "the step run again");
    let reader = run_daily_step_again(&dir, true);
    assert_breaches_match(&reader, "filled on upgrade");
    let statuses: BTreeSet<String> = reader
        .breach_counts(at(0), at(6 * DAY))
        .unwrap()
        .iter()
        .map(|c| c.status.label().to_string())
        .collect();
    assert_eq!(statuses.len(), 4, "every status is exercised: {statuses:?}");
}
