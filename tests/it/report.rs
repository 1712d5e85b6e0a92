//! The DSL's weekly report and user sessions: a store filled with known events across three
//! weeks (one spanning the October clock change), the report's figures checked against
//! counts made here from the same events; the HTML is self-contained and the CSV parses;
//! `hedgerow report weekly` and `hedgerow sessions import` from the binary; the sessions API
//! over a real socket, and a DNS query attributed to the person it names.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{IpAddr, Ipv4Addr},
    process::Command,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hedgerow::{
    civil,
    clock::Clock,
    config::StoreConfig,
    event::{BlockReason, Disposition, EventName, QueryEvent, Severity, Transport},
    report::{self, IsoWeek, ReportFormat, WeeklyReport, CSV_COLUMNS},
    schedule::TimeZone,
    store::{self, CaseChange, CaseStatus, QueryFilter, Store},
};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{
    dns::{scratch_dir, start_hedgerow, start_hedgerow_with, udp_query, Ask, Upstream},
    tempdir::TempDir,
};

fn utc(y: i64, mo: u32, d: u32, h: u32, mi: u32) -> SystemTime {
    civil::from_unix_secs(civil::utc_secs(y, mo, d, h, mi, 0).unwrap())
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// What one generated event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Allowed,
    /// Blocked, pornography, high severity (a breach).
    Porn,
    /// Blocked, games, low severity (a breach).
    Games,
    /// Blocked by a deny entry, no category, no severity (no breach).
    Deny,
    /// iCloud Private Relay: circumvention, medium severity (a breach).
    Relay,
    /// Firefox's canary: circumvention with no severity (nobody's attempt).
    Canary,
}

#[derive(Debug, Clone)]
struct Ev {
    at: SystemTime,
    ip: IpAddr,
    group: Option<&'static str>,
    kind: Kind,
}

impl Ev {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Allowed => "www.bbc.co.uk",
            Kind::Porn => "www.pornhub.com",
            Kind::Games => "roblox.com",
            Kind::Deny => "tiktok.com",
            Kind::Relay => "mask.icloud.com",
            Kind::Canary => "use-application-dns.net",
        }
    }

    fn domain(&self) -> String {
        store::registrable_domain(self.name())
    }

    fn blocked(&self) -> bool {
        self.kind != Kind::Allowed
    }

    fn severity(&self) -> Option<Severity> {
        match self.kind {
            Kind::Porn => Some(Severity::High),
            Kind::Games => Some(Severity::Low),
            Kind::Relay => Some(Severity::Medium),
            _ => None,
        }
    }

    fn category(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Porn => Some("pornography"),
            Kind::Games => Some("games"),
            _ => None,
        }
    }

    fn event(&self) -> QueryEvent {
        let reason = match self.kind {
            Kind::Allowed => None,
            Kind::Porn | Kind::Games => Some(BlockReason::Category),
            Kind::Deny => Some(BlockReason::Deny),
            Kind::Relay | Kind::Canary => Some(BlockReason::Circumvention),
        };
        QueryEvent {
            at: self.at,
            client: self.ip,
            device: None,
            group: self.group.map(Into::into),
            name: EventName::Clear(self.name().into()),
            qtype: 1,
            transport: Transport::Udp,
            disposition: if self.blocked() {
                Disposition::Blocked
            } else {
                Disposition::Forwarded
            },
            reason,
            category: self.category().map(Into::into),
            rule: reason.map(|r| format!("rule {}", r.label())),
            severity: self.severity(),
            rcode: if self.blocked() { 3 } else { 0 },
            duration: Duration::from_micros(900),
        }
    }
}

/// Events from Monday 12 October to Wednesday 4 November 2026, every 97 minutes a handful,
/// chosen by a fixed pseudo-random sequence, with bursts (one breach, several attempts) and
/// events right at the edges of 2026-W43 (which spans the end of British Summer Time).
fn events() -> Vec<Ev> {
    let ips: Vec<IpAddr> = (1..=12)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
        .collect();
    let group = |ip: &IpAddr| match ip {
        IpAddr::V4(v) if v.octets()[3] <= 8 => Some("pupils"),
        IpAddr::V4(v) if v.octets()[3] <= 11 => Some("staff"),
        _ => None,
    };
    let kinds = [
        Kind::Allowed,
        Kind::Allowed,
        Kind::Allowed,
        Kind::Porn,
        Kind::Games,
        Kind::Deny,
        Kind::Relay,
        Kind::Canary,
        Kind::Allowed,
    ];
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut out = Vec::new();
    let start = millis(utc(2026, 10, 12, 0, 0));
    let end = millis(utc(2026, 11, 4, 0, 0));
    let mut t = start;
    while t < end {
        let n = 1 + next() % 4;
        for i in 0..n {
            let ip = ips[(next() % ips.len() as u64) as usize];
            let kind = kinds[(next() % kinds.len() as u64) as usize];
            // A burst: the same attempt again a few seconds later (one breach, more attempts).
            let repeats = if next() % 5 == 0 { 3 } else { 1 };
            for r in 0..repeats {
                let at = t + i as i64 * 20_000 + r * 3_000;
                out.push(Ev {
                    at: UNIX_EPOCH + Duration::from_millis(at as u64),
                    ip,
                    group: group(&ip),
                    kind,
                });
            }
        }
        t += 97 * 60_000;
    }
    // At the edges of 2026-W43 in Europe/London: Monday 19 October 00:00 BST is
    // 18 October 23:00 UTC; Monday 26 October 00:00 GMT is 26 October 00:00 UTC.
    let edge = |y, mo, d, h, mi, s: u64, kind, last: u8| Ev {
        at: utc(y, mo, d, h, mi) + Duration::from_secs(s),
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 1, last)),
        group: Some("pupils"),
        kind,
    };
    out.push(edge(2026, 10, 18, 22, 59, 59, Kind::Porn, 1)); // Sunday 23:59:59 BST: W42
    out.push(edge(2026, 10, 18, 23, 0, 0, Kind::Porn, 2)); // Monday 00:00 BST: W43
    out.push(edge(2026, 10, 25, 23, 59, 59, Kind::Porn, 3)); // Sunday 23:59:59 GMT: W43
    out.push(edge(2026, 10, 26, 0, 0, 0, Kind::Porn, 4)); // Monday 00:00 GMT: W44
                                                          // Sunday 25 October 01:30 happens twice in London: both are in W43.
    out.push(edge(2026, 10, 25, 0, 30, 0, Kind::Relay, 5));
    out.push(edge(2026, 10, 25, 1, 30, 0, Kind::Relay, 5));
    out.sort_by_key(|e| e.at);
    out
}

/// The breaches the store's rule makes: per device and site, a new one when the previous
/// attempt is more than the window before. (first, last, attempts, device ip, domain)
fn expected_breaches(
    events: &[Ev],
    window: Duration,
) -> Vec<(SystemTime, SystemTime, u64, IpAddr)> {
    let mut open: HashMap<(IpAddr, String), usize> = HashMap::new();
    let mut out: Vec<(SystemTime, SystemTime, u64, IpAddr)> = Vec::new();
    for e in events.iter().filter(|e| e.severity().is_some()) {
        let key = (e.ip, e.domain());
        match open.get(&key) {
            Some(&i) if e.at.duration_since(out[i].1).unwrap() <= window => {
                out[i].1 = e.at;
                out[i].2 += 1;
            }
            _ => {
                open.insert(key, out.len());
                out.push((e.at, e.at, 1, e.ip));
            }
        }
    }
    out
}

/// A minimal CSV reader (RFC 4180: quotes, doubled quotes, commas and newlines in quotes).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, '"') => panic!("a quote inside an unquoted field"),
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted, "an unclosed quote");
    assert!(field.is_empty() && row.is_empty(), "no newline at the end");
    rows
}

#[test]
fn the_weekly_report_says_what_the_rows_say() {
    let dir = TempDir::new("report-weekly");
    // The report is made on Wednesday 4 November 2026 at 12:00; events stop before that.
    let made = utc(2026, 11, 4, 12, 0);
    let now = Arc::new(AtomicI64::new(millis(made)));
    let n = now.clone();
    let clock =
        Clock::from_fn(move || UNIX_EPOCH + Duration::from_millis(n.load(Ordering::SeqCst) as u64));
    let config = StoreConfig::default();
    let store = Store::open(
        &config,
        dir.path(),
        clock.clone(),
        &prometheus::Registry::new(),
    )
    .unwrap();
    let events = events();
    let sink = store.sink();
    for e in &events {
        sink.record(e.event());
    }
    store.flush().unwrap();

    // Close one breach from before the end of the week: it must not be listed as open.
    let reader = store.reader();
    let all = reader
        .breaches(&store::BreachFilter::default(), None, 10_000)
        .unwrap();
    let expected = expected_breaches(&events, config.breach_window);
    assert_eq!(
        all.len(),
        expected.len(),
        "the test's breach rule is the store's"
    );
    let (from, until) = (utc(2026, 10, 18, 23, 0), utc(2026, 10, 26, 0, 0));
    let closed = all
        .iter()
        .filter(|b| b.first < until)
        .min_by_key(|b| b.id)
        .unwrap()
        .id;
    store
        .commands()
        .update_case(closed, &CaseChange::Status(CaseStatus::Closed), "test DSL")
        .unwrap();

    let week = IsoWeek::parse("2026-W43").unwrap();
    let r = WeeklyReport::assemble(
        &reader,
        week,
        TimeZone::EuropeLondon,
        &dir.path().join("no-lists"),
        made,
    )
    .unwrap();
    assert_eq!(
        (r.from, r.until),
        (from, until),
        "Monday 00:00 BST to Monday 00:00 GMT"
    );

    // Every figure, counted here from the events.
    let in_week: Vec<&Ev> = events
        .iter()
        .filter(|e| e.at >= from && e.at < until)
        .collect();
    assert!(in_week.len() > 100, "a real week: {}", in_week.len());
    assert_eq!(r.queries, in_week.len() as u64);
    assert_eq!(
        r.blocked,
        in_week.iter().filter(|e| e.blocked()).count() as u64
    );

    let mut by_category: BTreeMap<String, u64> = BTreeMap::new();
    for e in in_week.iter().filter(|e| e.blocked()) {
        *by_category
            .entry(e.category().unwrap_or("none").to_string())
            .or_default() += 1;
    }
    let got: BTreeMap<String, u64> = r
        .by_category
        .iter()
        .map(|c| (c.key.clone(), c.blocks))
        .collect();
    assert_eq!(got, by_category);
    assert!(
        r.by_category.windows(2).all(|w| w[0].blocks >= w[1].blocks),
        "most first"
    );

    let mut by_group: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in &in_week {
        let g = by_group
            .entry(e.group.unwrap_or("none").to_string())
            .or_default();
        g.0 += 1;
        g.1 += u64::from(e.blocked());
    }
    let got: BTreeMap<String, (u64, u64)> = r
        .by_group
        .iter()
        .map(|c| (c.key.clone(), (c.queries, c.blocks)))
        .collect();
    assert_eq!(got, by_group);

    let mut high: BTreeMap<String, u64> = BTreeMap::new();
    for e in in_week
        .iter()
        .filter(|e| e.severity() == Some(Severity::High))
    {
        *high.entry(e.ip.to_string()).or_default() += 1;
    }
    let mut high: Vec<(String, u64)> = high.into_iter().collect();
    high.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    high.truncate(10);
    let got: Vec<(String, u64)> = r
        .top_devices
        .iter()
        .map(|d| (d.device.clone(), d.attempts))
        .collect();
    assert_eq!(got, high);

    let relay: Vec<&&Ev> = in_week.iter().filter(|e| e.kind == Kind::Relay).collect();
    assert_eq!(
        r.circumvention.attempts,
        relay.len() as u64,
        "the canary is not counted"
    );
    assert_eq!(
        r.circumvention.devices,
        relay.iter().map(|e| e.ip).collect::<BTreeSet<_>>().len() as u64
    );
    let mut per_device: BTreeMap<String, u64> = BTreeMap::new();
    for e in &relay {
        *per_device.entry(e.ip.to_string()).or_default() += 1;
    }
    assert_eq!(
        per_device.get("10.0.1.5"),
        Some(&2),
        "both 01:30s of 25 October"
    );
    let mut per_device: Vec<(String, u64)> = per_device.into_iter().collect();
    per_device.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    per_device.truncate(10);
    let got: Vec<(String, u64)> = r
        .circumvention
        .top
        .iter()
        .map(|d| (d.device.clone(), d.attempts))
        .collect();
    assert_eq!(got, per_device);

    let new: Vec<_> = expected
        .iter()
        .filter(|b| b.0 >= from && b.0 < until)
        .collect();
    let max = report::MAX_BREACHES as usize;
    assert!(
        new.len() <= max,
        "every new breach is listed: {}",
        new.len()
    );
    assert_eq!(r.new_breaches.len(), new.len());
    assert_eq!(r.new_total, new.len() as u64);
    assert_eq!(
        r.new_breaches.iter().map(|b| b.count).sum::<u64>(),
        new.iter().map(|b| b.2).sum::<u64>()
    );
    assert!(r
        .new_breaches
        .iter()
        .all(|b| b.first >= from && b.first < until));
    let devices: BTreeSet<String> = r.new_breaches.iter().map(|b| b.device.clone()).collect();
    assert!(devices.contains("10.0.1.2") && devices.contains("10.0.1.3"));
    assert!(
        !devices.contains("10.0.1.1") && !devices.contains("10.0.1.4"),
        "edges"
    );
    let open = expected.iter().filter(|b| b.0 < until).count() - 1;
    assert_eq!(r.open_total, open as u64, "one closed");
    assert!(open > max, "more open cases than are listed: {open}");
    assert_eq!(r.open_breaches.len(), max, "the longest open");
    assert!(r.open_breaches.iter().all(|b| b.id != closed));
    assert!(r.open_breaches.windows(2).all(|w| w[0].first <= w[1].first));
    let mut oldest: Vec<SystemTime> = expected
        .iter()
        .filter(|b| b.0 < until)
        .map(|b| b.0)
        .collect();
    oldest.sort();
    // The closed one is the first breach stored, the oldest.
    assert_eq!(
        r.open_breaches.iter().map(|b| b.first).collect::<Vec<_>>(),
        oldest[1..=max],
        "the longest open"
    );
    assert!(r.lists.is_err(), "no lists here: said so, not guessed");

    // HTML: self-contained, printable, plain.
    let html = r.render(ReportFormat::Html);
    // HEDGEROW_REPORT_SAMPLE=/tmp/weekly.html keeps this report to look at.
    if let Some(sample) = std::env::var_os("HEDGEROW_REPORT_SAMPLE") {
        std::fs::write(sample, &html).unwrap();
    }
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.to_ascii_lowercase().contains("<script"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing fetched"
    );
    assert!(!html.contains("<link") && !html.contains("<img") && !html.contains("url("));
    assert!(html.contains("2026-W43"));
    assert!(html.contains(&format!("<td>Of which blocked</td><td>{}</td>", r.blocked)));
    assert!(html.contains("Mon 19 Oct 2026"), "{html}");
    assert!(html.contains("Sun 25 Oct 2026"), "{html}");

    // CSV: parses, one header, every row as wide, sections as documented.
    let csv = r.render(ReportFormat::Csv);
    let rows = parse_csv(&csv);
    assert_eq!(rows[0], CSV_COLUMNS.map(String::from).to_vec());
    assert!(rows.iter().all(|row| row.len() == CSV_COLUMNS.len()));
    let col = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
    let section = |s: &'static str| rows.iter().filter(move |row| row[0] == s);
    let totals = section("totals").next().unwrap();
    assert_eq!(totals[col("queries")], r.queries.to_string());
    assert_eq!(totals[col("blocked")], r.blocked.to_string());
    assert_eq!(section("new_breaches").count(), new.len());
    assert_eq!(section("open_breaches").count(), max);
    assert_eq!(section("blocks_by_category").count(), by_category.len());
    let porn = section("blocks_by_category")
        .find(|row| row[col("name")] == "pornography")
        .unwrap();
    assert_eq!(porn[col("blocked")], by_category["pornography"].to_string());
    assert_eq!(
        section("circumvention").next().unwrap()[col("attempts")],
        relay.len().to_string()
    );
    store.close().unwrap();
}

/// A week with more breaches than a report lists: the newest of the week and the longest
/// open are listed, every figure says how many there are in all, and the CSV says it too.
#[test]
fn the_weekly_report_lists_at_most_the_newest_breaches_and_says_how_many() {
    let dir = TempDir::new("report-weekly-many");
    let made = utc(2026, 11, 4, 12, 0);
    let clock = Clock::from_fn(move || made);
    let store = Store::open(
        &StoreConfig::default(),
        dir.path(),
        clock,
        &prometheus::Registry::new(),
    )
    .unwrap();
    let sink = store.sink();
    let many = report::MAX_BREACHES as usize + 7;
    // Week 2026-W44 (Monday 26 October, GMT): one breach a site, a minute apart.
    let start = utc(2026, 10, 26, 9, 0);
    for i in 0..many {
        let ev = Ev {
            at: start + Duration::from_secs(60 * i as u64),
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)),
            group: Some("pupils"),
            kind: Kind::Porn,
        };
        let mut event = ev.event();
        event.name = EventName::Clear(format!("www.site{i}.example"));
        sink.record(event);
    }
    store.flush().unwrap();
    let week = IsoWeek::parse("2026-W44").unwrap();
    let r = WeeklyReport::assemble(
        &store.reader(),
        week,
        TimeZone::EuropeLondon,
        &dir.path().join("no-lists"),
        made,
    )
    .unwrap();
    let max = report::MAX_BREACHES as usize;
    assert_eq!((r.new_total, r.open_total), (many as u64, many as u64));
    assert_eq!((r.new_breaches.len(), r.open_breaches.len()), (max, max));
    let newest = start + Duration::from_secs(60 * (many as u64 - 1));
    assert_eq!(r.new_breaches[0].first, newest, "the newest first");
    assert!(r.new_breaches.windows(2).all(|w| w[0].first > w[1].first));
    assert_eq!(r.open_breaches[0].first, start, "the longest open first");
    let html = r.render(ReportFormat::Html);
    assert!(
        html.contains(&format!("<td>New breaches</td><td>{many}</td>")),
        "{html}"
    );
    assert!(html.contains(&format!("{many} in all: the {max} most recent are listed")));
    assert!(html.contains(&format!("{many} in all: the {max} longest open are listed")));
    let rows = parse_csv(&r.render(ReportFormat::Csv));
    let col = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
    let total = rows
        .iter()
        .find(|row| row[0] == "totals" && row[col("name")] == "new_breaches")
        .unwrap();
    assert_eq!(
        total[col("note")],
        format!("{many} in all; {max} listed, the most recent")
    );
    assert_eq!(
        rows.iter().filter(|row| row[0] == "new_breaches").count(),
        max
    );
    store.close().unwrap();
}

#[test]
fn iso_weeks_follow_the_school_clock() {
    // Sunday 1 November 2026 23:30 GMT is still 2026-W44; in a +01:00 zone it is Monday.
    let at = utc(2026, 11, 1, 23, 30);
    assert_eq!(
        IsoWeek::containing(at, TimeZone::EuropeLondon).to_string(),
        "2026-W44"
    );
    assert_eq!(
        IsoWeek::containing(at, TimeZone::Fixed(60)).to_string(),
        "2026-W45"
    );
    // A summer week: Monday 00:00 BST is Sunday 23:00 UTC.
    let (from, until) = IsoWeek::parse("2026-W27")
        .unwrap()
        .bounds(TimeZone::EuropeLondon);
    assert_eq!(civil::format_rfc3339(from), "2026-06-28T23:00:00Z");
    assert_eq!(
        until.duration_since(from).unwrap(),
        Duration::from_secs(7 * 86_400)
    );
    // The spring week is an hour short.
    let (from, until) = IsoWeek::parse("2026-W13")
        .unwrap()
        .bounds(TimeZone::EuropeLondon);
    assert_eq!(
        until.duration_since(from).unwrap(),
        Duration::from_secs(167 * 3600)
    );
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hedgerow"))
}

/// A configuration file for the binary with its data in `dir/data`.
fn config_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("hedgerow.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\ndata_dir = \"{}\"\n\n[lists]\nartifact_dir = \"{}\"\n",
            dir.join("data").display(),
            dir.join("lists").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_report_command_writes_csv_and_html_and_is_audited() {
    let dir = TempDir::new("report-cli");
    let config = config_file(dir.path());
    let out = bin()
        .args([
            "report", "weekly", "--week", "2026-W43", "--format", "csv", "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = parse_csv(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(rows[0][0], "section");
    assert!(rows.iter().any(|r| r[0] == "totals" && r[8] == "0"));
    let out = bin()
        .args(["report", "weekly", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("<!DOCTYPE html>"));
    let out = bin()
        .args(["report", "weekly", "--week", "2026-44", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2026-W44"),
        "says how to write it"
    );

    let (reader, _) = store::open_offline(&dir.path().join("data"), Clock::system()).unwrap();
    let audit = reader.audit(None, 10).unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.kind == store::AuditKind::Export && e.change.contains("weekly report"))
            .count(),
        2
    );
}

#[test]
fn sessions_import_keeps_good_lines_and_names_bad_ones() {
    let dir = TempDir::new("sessions-cli");
    let config = config_file(dir.path());
    let csv = dir.path().join("sessions.csv");
    std::fs::write(
        &csv,
        "ip,username,device,start,end\n\
         10.1.2.34,jsmith,PC-12,2026-11-26T08:00:00Z,2026-11-26T09:00:00Z\n\
         not-an-ip,akhan,,2026-11-26T08:00:00Z,\n\
         10.1.2.35,akhan,,2026-11-26T08:05:00Z,\n",
    )
    .unwrap();
    let out = bin()
        .args(["sessions", "import"])
        .arg(&csv)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a bad line makes the exit status non-zero"
    );
    assert!(stdout.contains("stored 2 session(s)"), "{stdout}");
    assert!(
        stdout.contains("line 3:") && stdout.contains("not an IP address"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("akhan"),
        "usernames are not repeated: {stdout}"
    );
    let conn = rusqlite::Connection::open(dir.path().join("data").join(store::DB_FILE)).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
    // The open-ended session lasts a school day.
    let (starts, ends): (i64, i64) = conn
        .query_row(
            "SELECT starts, ends FROM sessions WHERE ip = '10.1.2.35'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        Duration::from_millis((ends - starts) as u64),
        hedgerow::sessions::OPEN_SESSION
    );
}

/// One HTTP/1.1 request; (status, body).
async fn post(addr: std::net::SocketAddr, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST /api/v1/sessions HTTP/1.1\r\nhost: hedgerow\r\ncontent-type: application/json\r\n\
         {auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_api_attributes_queries_to_the_person() {
    let up = Upstream::start().await;
    let dir = scratch_dir("sessions-api");
    let token_file = dir.join("sessions.token");
    let token = "5f0c2a9e41d7b3c8e6a1f4d2b9c07e35";
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n\
         [identity]\nsessions_token_file = \"{}\"\n\
         [[group]]\nname = \"pupils\"\nnetworks = [\"127.0.0.0/24\"]\n",
        token_file.display()
    );
    let (app, path) = start_hedgerow(&config, up.addr).await;
    let http = app.http_addr().unwrap();
    let dns = app.dns_addrs()[0];
    let body = r#"{"ip": "127.0.0.44", "username": "jsmith", "device": "PC-44"}"#;

    let (status, text) = post(http, None, body).await;
    assert_eq!(status, 401, "{text}");
    let (status, _) = post(http, Some("not-the-token-at-all"), body).await;
    assert_eq!(status, 401);
    let (status, text) = post(http, Some(token), "{not json").await;
    assert_eq!(status, 400);
    assert!(text.contains("\"error\""), "{text}");
    let (status, text) = post(
        http,
        Some(token),
        r#"{"ip": "nowhere", "username": "jsmith"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("\"field\":\"ip\""), "{text}");
    let (status, text) = post(http, Some(token), body).await;
    assert_eq!(status, 201, "{text}");

    // The writer picks the session up at its next batch.
    let ask = Ask {
        from: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 44)),
        ..Ask::default()
    };
    udp_query(dns, "www.example.test.", RecordType::A, ask)
        .await
        .expect("an answer");
    // The logout ends the open session then (a body with `end` and no `start`).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let end = SystemTime::now();
    let logout = format!(
        r#"{{"ip": "127.0.0.44", "username": "jsmith", "end": "{}"}}"#,
        civil::format_rfc3339(end)
    );
    let (status, text) = post(http, Some(token), &logout).await;
    assert_eq!(status, 201, "{text}");
    app.shutdown().await;

    let data = path.parent().unwrap().join("data");
    let conn = rusqlite::Connection::open(data.join(store::DB_FILE)).unwrap();
    let running_on: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sessions WHERE username = 'jsmith' AND ends > ?1",
            [millis(end) / 1000 * 1000],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(running_on, 0, "no session of jsmith runs past the logout");
    let (reader, _) = store::open_offline(&data, Clock::system()).unwrap();
    let rows = reader
        .search(
            &QueryFilter {
                user: Some("jsmith".into()),
                ..QueryFilter::default()
            },
            None,
            10,
        )
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].ip, "127.0.0.44");
    assert_eq!(rows[0].device, "PC-44");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_file_there_is_no_sessions_api() {
    let up = Upstream::start().await;
    let config = "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n";
    let (app, _) = start_hedgerow(config, up.addr).await;
    let (status, _) = post(app.http_addr().unwrap(), Some("anything-anything"), "{}").await;
    assert_eq!(status, 404);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_weekly_report_is_made_up_at_start() {
    let up = Upstream::start().await;
    // Tuesday 3 November 2026, 10:00: Monday's 07:00 run for 2026-W44 was missed.
    let at = utc(2026, 11, 3, 10, 0);
    let overrides = hedgerow::app::Overrides {
        clock: Some(Clock::from_fn(move || at)),
        ..Default::default()
    };
    let (app, path) = start_hedgerow_with("", up.addr, overrides).await;
    let data = path.parent().unwrap().join("data");
    let file = report::report_path(&data, IsoWeek::parse("2026-W44").unwrap());
    let mut waited = 0;
    while !file.exists() && waited < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    app.shutdown().await;
    let html = std::fs::read_to_string(&file).expect("the made-up report");
    assert!(html.contains("2026-W44"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (reader, _) = store::open_offline(&data, Clock::system()).unwrap();
    assert!(reader
        .audit(None, 20)
        .unwrap()
        .iter()
        .any(|e| e.actor == "scheduled weekly report"));
}

/// A one-message SMTP server on 127.0.0.1 (plain, no authentication): the message's DATA
/// arrives on the channel.
fn smtp_sink() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut out = stream;
        out.write_all(b"220 sink ESMTP\r\n").unwrap();
        let mut data = String::new();
        let mut in_data = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if in_data {
                if line == ".\r\n" {
                    in_data = false;
                    out.write_all(b"250 queued\r\n").unwrap();
                } else {
                    data.push_str(&line);
                }
                continue;
            }
            let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" | "HELO" => b"250 sink\r\n",
                "DATA" => {
                    in_data = true;
                    b"354 go on\r\n"
                }
                "QUIT" => {
                    let _ = out.write_all(b"221 bye\r\n");
                    break;
                }
                _ => b"250 ok\r\n",
            };
            out.write_all(reply).unwrap();
        }
        let _ = tx.send(data);
    });
    (port, rx)
}

#[test]
fn the_scheduled_report_is_written_once_and_emailed() {
    let dir = TempDir::new("report-scheduled");
    let (reader, commands) = store::open_offline(dir.path(), Clock::system()).unwrap();
    let (port, messages) = smtp_sink();
    let scheduled = report::Scheduled {
        reader,
        commands,
        data_dir: dir.path().to_path_buf(),
        lists_dir: dir.path().join("no-lists"),
        zone: TimeZone::EuropeLondon,
        email: Some(hedgerow::config::alerts::EmailConfig {
            server: "127.0.0.1".into(),
            port,
            starttls: false,
            tls_ca: None,
            credentials: None,
            from: "hedgerow@school.example".parse().unwrap(),
            to: vec!["dsl@school.example".parse().unwrap()],
        }),
    };
    // Monday 2 November 2026, 06:59 GMT: not yet due for 2026-W44 (W43's is, and missing).
    let early = utc(2026, 11, 2, 6, 59);
    let written = scheduled.run_if_due(early).unwrap().unwrap();
    assert!(written.ends_with("reports/weekly-2026-W43.html"));
    let mail = messages.recv_timeout(Duration::from_secs(15)).unwrap();
    assert!(
        mail.contains("Weekly filtering summary, week 2026-W43"),
        "{mail}"
    );
    assert!(
        mail.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{mail}"
    );
    // Written once: the file is the record of the run.
    assert_eq!(scheduled.run_if_due(early).unwrap(), None);
    // At 07:00 the next week is due (the sink has gone: the email fails, the file stays).
    let due = scheduled
        .run_if_due(utc(2026, 11, 2, 7, 0))
        .unwrap()
        .unwrap();
    assert!(due.ends_with("reports/weekly-2026-W44.html"));
    assert!(due.exists());
}
