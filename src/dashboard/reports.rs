//! Reports: the DSL's weekly summary (the emailed report's figures as a printable page, and
//! its CSV) and the governors' annual-review pack.
//!
//! The weekly page is [`WeeklyReport`] itself, assembled from the store as the Monday email
//! is, drawn in the dashboard's template with links to the records behind it; opening it is a
//! view of children's records and downloading it an export, both audited. The annual pack is
//! aggregates only — policy per group, list ages, breach counts by category and case status,
//! queries and blocks per month from the rollups, the audit trail's size and verification —
//! and names no device, person, address or site: governors may open it.

use std::time::{Duration, SystemTime};

use askama::Template;
use axum::{
    extract::{Query, State},
    http::header,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use serde::Deserialize;

use crate::{
    accounts::Role,
    civil,
    event::Severity,
    report::{IsoWeek, ListFreshness, ReportError, ReportFormat, WeeklyReport},
    schedule::TimeZone,
    store::{
        AuditKind, BreachCount, BreachSummary, CaseStatus, CheckRun, CountBy, DeviceAttempts,
        UnblockStats,
    },
};

use super::{
    auth::Viewer,
    breaches::audit_view,
    chart::{self, Column},
    page::{self, q, CategoryTitles, Chrome, PageError, Section},
    policy::ListsWords,
    trail, Dashboard, GroupPolicyText, ListsView,
};

pub(super) fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/reports", get(index))
        .route("/reports/weekly", get(weekly))
        .route("/reports/weekly.csv", get(weekly_csv))
        .route("/reports/annual", get(annual))
}

#[derive(Template)]
#[template(path = "reports.html", config = "dashboard/askama.toml")]
struct IndexPage {
    chrome: Chrome,
    weekly: bool,
    last_week: String,
    this_year: i64,
    last_year: i64,
}

/// The school's calendar year at `at`.
fn year_of(zone: TimeZone, at: SystemTime) -> i64 {
    civil::civil_from_days(zone.local_secs(at).div_euclid(86_400)).0
}

async fn index(viewer: Viewer, State(_): State<Dashboard>) -> Result<Response, PageError> {
    viewer.require(&[Role::Dsl, Role::Governor])?;
    let year = year_of(viewer.zone, viewer.now);
    page::render(&IndexPage {
        weekly: viewer.may(&[Role::Dsl]),
        last_week: IsoWeek::last_full(viewer.now, viewer.zone).to_string(),
        this_year: year,
        last_year: year - 1,
        chrome: Chrome::new(&viewer, Section::Reports, "Reports"),
    })
}

#[derive(Deserialize, Default)]
struct WeekQuery {
    #[serde(default)]
    week: String,
}

impl WeekQuery {
    /// The week asked for; the last full week when none is.
    fn week(&self, viewer: &Viewer) -> Result<IsoWeek, PageError> {
        match self.week.trim() {
            "" => Ok(IsoWeek::last_full(viewer.now, viewer.zone)),
            w => IsoWeek::parse(w).map_err(|e| PageError::BadRequest(e.to_string())),
        }
    }
}

/// The lists in force as the weekly report describes them.
fn report_lists(lists: &ListsView) -> (Result<ListFreshness, String>, Vec<(String, String)>) {
    (
        lists
            .built
            .map(|built| ListFreshness {
                built,
                names: lists.names,
            })
            .ok_or_else(|| "the lists in force could not be read".to_string()),
        lists
            .categories
            .iter()
            .map(|c| (c.id.clone(), c.title.clone()))
            .collect(),
    )
}

/// The week's report, from the store.
async fn assemble(
    dashboard: &Dashboard,
    viewer: &Viewer,
    week: IsoWeek,
) -> Result<WeeklyReport, PageError> {
    let lists = report_lists(&dashboard.inner.services.lists());
    let (zone, made) = (viewer.zone, viewer.now);
    dashboard
        .read(move |r| Ok(WeeklyReport::assemble_with(r, week, zone, lists, made)))
        .await?
        .map_err(|e| match e {
            ReportError::Store(e) => PageError::Store(e),
            other => PageError::BadRequest(other.to_string()),
        })
}

struct DeviceRow {
    device: String,
    href: String,
    attempts: u64,
}

fn device_rows(list: &[DeviceAttempts]) -> Vec<DeviceRow> {
    list.iter()
        .map(|d| DeviceRow {
            device: d.device.clone(),
            href: format!("/devices/{}", q(&d.device_key)),
            attempts: d.attempts,
        })
        .collect()
}

struct BreachRow {
    id: i64,
    device: String,
    device_href: String,
    person: String,
    group: String,
    site: String,
    category: String,
    severity: &'static str,
    severity_class: &'static str,
    count: u64,
    first: String,
    last: String,
    status: &'static str,
    days_open: i64,
}

fn breach_rows(viewer: &Viewer, report: &WeeklyReport, list: &[BreachSummary]) -> Vec<BreachRow> {
    list.iter()
        .map(|b| BreachRow {
            id: b.id,
            device: b.device.clone(),
            device_href: format!("/devices/{}", q(&b.device_key)),
            person: b.user.clone().unwrap_or_else(|| "not known".into()),
            group: b.group.clone().unwrap_or_else(|| "none".into()),
            site: b.domain.clone(),
            category: b
                .category
                .as_deref()
                .map_or_else(|| "none".into(), |c| report.category_words(c)),
            severity: b.severity.label(),
            severity_class: page::severity_class(b.severity),
            count: b.count,
            first: viewer.zone_time(b.first),
            last: viewer.zone_time(b.last),
            status: b.status.label(),
            days_open: report.days_open(b),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "weekly.html", config = "dashboard/askama.toml")]
struct WeeklyPage {
    chrome: Chrome,
    week: String,
    range: String,
    made: String,
    previous: String,
    next: String,
    csv: String,
    queries: u64,
    blocked: u64,
    by_category: Vec<(String, u64)>,
    by_group: Vec<(String, u64, u64)>,
    top_devices: Vec<DeviceRow>,
    top_limit: u32,
    new_breaches: Vec<BreachRow>,
    /// How many new breaches in all (the table lists the newest).
    new_total: u64,
    /// Whether there are more than the table lists.
    new_more: bool,
    /// The Breaches page for the week (every breach, newest first, paged).
    new_href: String,
    open_breaches: Vec<BreachRow>,
    /// How many open cases in all (the table lists the longest open).
    open_total: u64,
    /// Whether there are more than the table lists.
    open_more: bool,
    circumvention: u64,
    circumvention_devices: u64,
    circumvention_top: Vec<DeviceRow>,
    lists: String,
}

async fn weekly(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Query(wq): Query<WeekQuery>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Dsl])?;
    let week = wq.week(&viewer)?;
    let report = assemble(&dashboard, &viewer, week).await?;
    audit_view(
        &dashboard,
        &viewer,
        format!("opened the weekly report for {week}"),
    )
    .await?;
    let zone = viewer.zone;
    let last_day = report.until - Duration::from_secs(1);
    let page = WeeklyPage {
        week: week.to_string(),
        range: format!(
            "Monday {} to Sunday {} ({})",
            page::local_date(zone, report.from),
            page::local_date(zone, last_day),
            report.zone_words()
        ),
        made: viewer.zone_time(report.made),
        previous: format!("/reports/weekly?week={}", week.previous()),
        next: if week.next() <= IsoWeek::containing(viewer.now, zone) {
            format!("/reports/weekly?week={}", week.next())
        } else {
            String::new()
        },
        csv: format!("/reports/weekly.csv?week={week}"),
        queries: report.queries,
        blocked: report.blocked,
        by_category: report
            .by_category
            .iter()
            .map(|r| (report.category_words(&r.key), r.blocks))
            .collect(),
        by_group: report
            .by_group
            .iter()
            .map(|r| {
                (
                    WeeklyReport::group_words(&r.key).to_string(),
                    r.queries,
                    r.blocks,
                )
            })
            .collect(),
        top_devices: device_rows(&report.top_devices),
        top_limit: crate::report::TOP_DEVICES,
        new_breaches: breach_rows(&viewer, &report, &report.new_breaches),
        new_total: report.new_total,
        new_more: report.new_total > report.new_breaches.len() as u64,
        new_href: format!(
            "/breaches?since={}&until={}",
            page::local_date(zone, report.from),
            page::local_date(zone, last_day)
        ),
        open_breaches: breach_rows(&viewer, &report, &report.open_breaches),
        open_total: report.open_total,
        open_more: report.open_total > report.open_breaches.len() as u64,
        circumvention: report.circumvention.attempts,
        circumvention_devices: report.circumvention.devices,
        circumvention_top: device_rows(&report.circumvention.top),
        lists: report.lists_words(),
        chrome: Chrome::new(
            &viewer,
            Section::Reports,
            format!("Weekly filtering summary, week {week}"),
        ),
    };
    page::render(&page)
}

async fn weekly_csv(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Query(wq): Query<WeekQuery>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Dsl])?;
    let week = wq.week(&viewer)?;
    let report = assemble(&dashboard, &viewer, week).await?;
    // Recorded before it is handed over: a download that reached anyone is in the trail.
    let actor = viewer.name.clone();
    dashboard
        .write(move |c| {
            c.append_audit(
                &actor,
                AuditKind::Export,
                &format!("weekly report for {week} (csv)"),
                "dashboard",
            )
        })
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"hedgerow-weekly-{week}.csv\""),
            ),
        ],
        report.render(ReportFormat::Csv),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
struct YearQuery {
    year: Option<i64>,
}

/// Midnight at the start of the first of `month` in the school's zone.
fn month_start(zone: TimeZone, year: i64, month: u32) -> Option<SystemTime> {
    let (year, month) = if month > 12 {
        (year + 1, month - 12)
    } else {
        (year, month)
    };
    let local = civil::utc_secs(year, month, 1, 0, 0, 0)?;
    Some(civil::from_unix_secs(zone.utc_of_local(local)))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

struct MonthRow {
    label: &'static str,
    queries: u64,
    blocked: u64,
}

/// Breaches of one category.
struct CategoryBreaches {
    category: String,
    total: u64,
    high: u64,
    open: u64,
    closed: u64,
}

#[derive(Template)]
#[template(path = "annual.html", config = "dashboard/askama.toml")]
struct AnnualPage {
    chrome: Chrome,
    year: i64,
    previous: String,
    next: String,
    policies: Vec<GroupPolicyText>,
    lists: ListsWords,
    chart: String,
    months: Vec<MonthRow>,
    queries: u64,
    blocked: u64,
    breaches: u64,
    by_category: Vec<CategoryBreaches>,
    by_status: Vec<(&'static str, u64)>,
    audit_records: u64,
    verified: bool,
    verdict: String,
    unblocks: UnblockStats,
    checks: Vec<CheckLine>,
    checks_failed: usize,
}

/// One filtering check of the year, as governors see it (no names: counts only).
struct CheckLine {
    when: String,
    how: &'static str,
    passed: u32,
    failed: u32,
}

/// What the annual pack reads from the store.
struct YearFigures {
    months: Vec<(u64, u64)>,
    breaches: Vec<BreachCount>,
    chain: crate::store::ChainReport,
    unblocks: UnblockStats,
    checks: Vec<CheckRun>,
}

/// A category key (ids, comma separated) as its titles.
fn category_titles(lists: &ListsView, key: Option<&str>) -> String {
    let Some(key) = key else {
        return "no category (a school deny entry, or a way round the filter)".into();
    };
    CategoryTitles::new(lists.categories.clone()).words(key)
}

fn by_category(lists: &ListsView, counts: &[BreachCount]) -> Vec<CategoryBreaches> {
    let mut out: Vec<(Option<&str>, CategoryBreaches)> = Vec::new();
    for c in counts {
        let key = c.category.as_deref();
        let i = match out.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                out.push((
                    key,
                    CategoryBreaches {
                        category: category_titles(lists, key),
                        total: 0,
                        high: 0,
                        open: 0,
                        closed: 0,
                    },
                ));
                out.len() - 1
            }
        };
        let row = &mut out[i].1;
        row.total += c.breaches;
        if c.severity == Severity::High {
            row.high += c.breaches;
        }
        if c.status == CaseStatus::Closed {
            row.closed += c.breaches;
        } else {
            row.open += c.breaches;
        }
    }
    let mut rows: Vec<CategoryBreaches> = out.into_iter().map(|(_, r)| r).collect();
    rows.sort_by(|a, b| {
        b.total
            .cmp(&a.total)
            .then_with(|| a.category.cmp(&b.category))
    });
    rows
}

async fn annual(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Query(yq): Query<YearQuery>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Dsl, Role::Governor])?;
    let zone = viewer.zone;
    let this_year = year_of(zone, viewer.now);
    let year = yq.year.unwrap_or(this_year);
    if !(2000..=this_year + 1).contains(&year) {
        return Err(PageError::BadRequest(format!(
            "{year} is not a year this pack can cover."
        )));
    }
    let edges: Vec<SystemTime> = (1..=13)
        .map(|m| month_start(zone, year, m))
        .collect::<Option<_>>()
        .ok_or_else(|| PageError::BadRequest(format!("{year} is not a year")))?;
    let (since, until) = (edges[0], edges[12]);
    let figures = dashboard
        .read(move |r| {
            let months = edges
                .windows(2)
                .map(|w| {
                    let rows = r.counts(w[0], w[1], CountBy::Disposition)?;
                    Ok((
                        rows.iter().map(|r| r.queries).sum(),
                        rows.iter().map(|r| r.blocks).sum(),
                    ))
                })
                .collect::<Result<_, crate::store::StoreError>>()?;
            Ok(YearFigures {
                months,
                breaches: r.breach_counts(since, until)?,
                chain: r.verify_audit()?,
                unblocks: r.unblock_stats(since, until)?,
                // A weekly schedule makes 52 a year; more are shown if run more often.
                checks: r
                    .check_runs(Some(since), 1000)?
                    .into_iter()
                    .filter(|c| c.started < until)
                    .collect(),
            })
        })
        .await?;
    let services = &dashboard.inner.services;
    let lists = services.lists();
    let months: Vec<MonthRow> = figures
        .months
        .iter()
        .zip(MONTHS)
        .map(|(&(queries, blocked), label)| MonthRow {
            label,
            queries,
            blocked,
        })
        .collect();
    let by_status = CaseStatus::ALL
        .iter()
        .map(|&s| {
            (
                s.label(),
                figures
                    .breaches
                    .iter()
                    .filter(|c| c.status == s)
                    .map(|c| c.breaches)
                    .sum(),
            )
        })
        .collect();
    let page = AnnualPage {
        year,
        previous: format!("/reports/annual?year={}", year - 1),
        next: if year < this_year {
            format!("/reports/annual?year={}", year + 1)
        } else {
            String::new()
        },
        policies: services.group_policies(),
        chart: chart::columns(
            &format!("Queries and blocks per month, {year}"),
            &months
                .iter()
                .map(|m| Column {
                    label: m.label.to_string(),
                    total: m.queries,
                    part: m.blocked,
                })
                .collect::<Vec<_>>(),
        ),
        queries: months.iter().map(|m| m.queries).sum(),
        blocked: months.iter().map(|m| m.blocked).sum(),
        months,
        breaches: figures.breaches.iter().map(|c| c.breaches).sum(),
        by_category: by_category(&lists, &figures.breaches),
        by_status,
        audit_records: figures.chain.records,
        verified: figures.chain.first_broken.is_none(),
        verdict: trail::chain_words(&figures.chain),
        unblocks: figures.unblocks,
        checks_failed: figures.checks.iter().filter(|c| c.failed > 0).count(),
        checks: figures
            .checks
            .iter()
            .map(|c| CheckLine {
                when: page::local_date(viewer.zone, c.started),
                how: c.trigger.describe(),
                passed: c.passed,
                failed: c.failed,
            })
            .collect(),
        lists: ListsWords::new(&viewer, &lists),
        chrome: Chrome::new(
            &viewer,
            Section::Reports,
            format!("Annual filtering review, {year}"),
        ),
    };
    page::render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_at_local_midnight_and_roll_into_the_next_year() {
        let zone = TimeZone::EuropeLondon;
        // 1 July 2026 00:00 BST is 30 June 23:00 UTC.
        let july = month_start(zone, 2026, 7).unwrap();
        assert_eq!(civil::format_rfc3339(july), "2026-06-30T23:00:00Z");
        let next_jan = month_start(zone, 2026, 13).unwrap();
        assert_eq!(civil::format_rfc3339(next_jan), "2027-01-01T00:00:00Z");
    }

    #[test]
    fn breach_counts_are_gathered_by_category() {
        let lists = ListsView {
            categories: vec![super::super::CategoryLine {
                id: "self-harm".into(),
                title: "Self-harm".into(),
            }],
            ..ListsView::default()
        };
        let count = |category: Option<&str>, severity, status, breaches| BreachCount {
            category: category.map(str::to_string),
            severity,
            status,
            breaches,
        };
        let rows = by_category(
            &lists,
            &[
                count(Some("self-harm"), Severity::High, CaseStatus::Closed, 3),
                count(Some("self-harm"), Severity::High, CaseStatus::New, 2),
                count(None, Severity::Medium, CaseStatus::Reviewed, 1),
            ],
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].category, "Self-harm");
        assert_eq!(
            (rows[0].total, rows[0].high, rows[0].open, rows[0].closed),
            (5, 5, 2, 3)
        );
        assert_eq!((rows[1].total, rows[1].open), (1, 1));
    }
}
