//! The overview: what happened over the last day, week or month, at a glance. Every figure
//! links to the records behind it for people who may see them (the DSL); a technician sees
//! the same aggregates without devices.
//!
//! The totals, the chart and the blocks by category and group cover the period to the minute
//! (per-minute rollups at its ends, daily ones between). The lists of sites and devices, the
//! attempts to get round the filter and the ages of open cases count whole UTC days — the
//! days the period touches — from the daily tables only: counting the period's partial end
//! days from the rows read up to a day of blocked queries twice, which at a large school's
//! volume (hundreds of thousands of blocked queries a day) is most of a second.

use std::time::{Duration, SystemTime};

use askama::Template;
use axum::{
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use serde::Deserialize;

use crate::{
    accounts::Role,
    event::Disposition,
    store::{CaseStatus, CheckRun, CircumventionSummary, DeviceAttempts, Overview},
};

use super::{
    auth::Viewer,
    chart::{self, Column},
    page::{self, q, CategoryTitles, Chrome, PageError, Section},
    Dashboard, HealthLine, ListsView,
};

pub(super) fn routes() -> Router<Dashboard> {
    Router::new().route("/", get(overview))
}

/// The period the overview covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
enum Period {
    #[default]
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

impl Period {
    const ALL: [Period; 3] = [Period::Day, Period::Week, Period::Month];

    fn param(self) -> &'static str {
        match self {
            Period::Day => "24h",
            Period::Week => "7d",
            Period::Month => "30d",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Period::Day => "the last 24 hours",
            Period::Week => "the last 7 days",
            Period::Month => "the last 30 days",
        }
    }

    fn length(self) -> Duration {
        Duration::from_secs(match self {
            Period::Day => 86_400,
            Period::Week => 7 * 86_400,
            Period::Month => 30 * 86_400,
        })
    }

    /// Chart columns: hours for a day, days otherwise.
    fn step(self) -> Duration {
        Duration::from_secs(if self == Period::Day { 3600 } else { 86_400 })
    }
}

#[derive(Deserialize, Default)]
struct OverviewQuery {
    #[serde(default)]
    period: Period,
}

struct PeriodLink {
    href: String,
    label: &'static str,
    current: bool,
}

/// A row of a count table: key, number, bar width, link (empty: none).
struct Bar {
    label: String,
    value: u64,
    width: u64,
    href: String,
}

struct Age {
    status: &'static str,
    day: u64,
    week: u64,
    older: u64,
    href: String,
}

#[derive(Template)]
#[template(path = "overview.html", config = "dashboard/askama.toml")]
struct OverviewPage {
    chrome: Chrome,
    periods: Vec<PeriodLink>,
    period_words: &'static str,
    /// The whole UTC days the lists count, in words.
    days_words: String,
    records: bool,
    queries: u64,
    blocked: u64,
    blocked_percent: String,
    chart: String,
    by_category: Vec<Bar>,
    by_group: Vec<Bar>,
    top_names: Vec<Bar>,
    devices: Vec<Bar>,
    ages: Vec<Age>,
    circumvention: u64,
    circumvention_devices: u64,
    circumvention_href: String,
    /// The period's queries and blocked queries in the log (for those who may see them).
    queries_href: String,
    blocked_href: String,
    health: Vec<HealthLine>,
    lists: ListsView,
    lists_built: String,
    /// The last filtering check in words, its link, and whether anything failed.
    check: String,
    check_href: String,
    check_failed: bool,
}

struct Figures {
    counts: Overview,
    top: Vec<(String, u64)>,
    devices: Vec<DeviceAttempts>,
    ages: Vec<(CaseStatus, u64, u64, u64)>,
    circumvention: CircumventionSummary,
    last_check: Option<CheckRun>,
}

fn bars(rows: impl Iterator<Item = (String, u64, String)>) -> Vec<Bar> {
    let rows: Vec<_> = rows.filter(|(_, v, _)| *v > 0).collect();
    let max = rows.iter().map(|(_, v, _)| *v).max().unwrap_or(0);
    rows.into_iter()
        .map(|(label, value, href)| Bar {
            width: chart::share(value, max),
            label,
            value,
            href,
        })
        .collect()
}

async fn overview(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Query(query): Query<OverviewQuery>,
) -> Result<Response, PageError> {
    if !viewer.may(&[Role::Dsl, Role::Technician]) {
        return Ok(Redirect::to(viewer.home()).into_response());
    }
    let period = query.period;
    // The counts come from per-minute rollups of whole minutes: end at the next minute's
    // start, so the queries of this one count too (a DSL testing the filter sees them now,
    // not up to a minute later while the lists below already show them).
    let until = next_minute(viewer.now);
    let since = until - period.length();
    // The lists count the whole UTC days the period touches (see the module's docs).
    let (day_since, day_until) = (utc_midnight(since, false), utc_midnight(until, true));
    let records = viewer.sees_records();
    let figures = dashboard
        .read(move |r| {
            Ok(Figures {
                counts: r.overview(since, until, period.step())?,
                top: r.top_blocked(day_since, day_until, 10)?,
                devices: if records {
                    r.high_severity_devices(day_since, day_until, 10)?
                } else {
                    Vec::new()
                },
                ages: if records {
                    r.open_breach_days(until)?
                } else {
                    Vec::new()
                },
                circumvention: r.circumvention(day_since, day_until, 5)?,
                last_check: r.last_check()?,
            })
        })
        .await?;
    let services = &dashboard.inner.services;
    let since_param = page::local_date(viewer.zone, since);
    let days_param = page::local_date(viewer.zone, day_since);
    let link = |path: String| if records { path } else { String::new() };
    let queries: u64 = figures
        .counts
        .by_disposition
        .iter()
        .map(|r| r.queries)
        .sum();
    let blocked: u64 = figures
        .counts
        .by_disposition
        .iter()
        .filter(|r| r.key == Disposition::Blocked.label())
        .map(|r| r.queries)
        .sum();
    let lists = services.lists();
    let titles = CategoryTitles::new(lists.categories.clone());
    let page = OverviewPage {
        periods: Period::ALL
            .iter()
            .map(|&p| PeriodLink {
                href: format!("/?period={}", p.param()),
                label: p.words(),
                current: p == period,
            })
            .collect(),
        period_words: period.words(),
        days_words: days_words(day_since, day_until),
        queries,
        blocked,
        blocked_percent: if queries == 0 {
            "0".into()
        } else {
            format!("{:.1}", blocked as f64 * 100.0 / queries as f64)
        },
        chart: chart::columns(
            &format!("Queries and blocks over {}", period.words()),
            &series_columns(&viewer, period, since, &figures.counts.series),
        ),
        by_category: bars(
            figures
                .counts
                .by_category
                .iter()
                .filter(|r| r.key != "none")
                .map(|r| {
                    (
                        titles.words(&r.key),
                        r.blocks,
                        link(format!(
                            "/queries?blocked=1&category={}&since={since_param}",
                            q(&r.key)
                        )),
                    )
                }),
        ),
        by_group: bars(figures.counts.by_group.iter().map(|r| {
            (
                r.key.clone(),
                r.blocks,
                link(format!(
                    "/queries?blocked=1&group={}&since={since_param}",
                    q(&r.key)
                )),
            )
        })),
        top_names: bars(figures.top.iter().map(|(name, n)| {
            (
                name.clone(),
                *n,
                if name == crate::event::WITHHELD {
                    String::new()
                } else {
                    link(format!(
                        "/queries?blocked=1&name={}&since={days_param}",
                        q(name)
                    ))
                },
            )
        })),
        devices: bars(figures.devices.iter().map(|d| {
            (
                d.device.clone(),
                d.attempts,
                format!("/devices/{}", q(&d.device_key)),
            )
        })),
        ages: figures
            .ages
            .iter()
            .map(|&(status, day, week, older)| Age {
                status: status.label(),
                day,
                week,
                older,
                href: format!("/breaches?status={}", status.label()),
            })
            .collect(),
        circumvention: figures.circumvention.attempts,
        circumvention_devices: figures.circumvention.devices,
        queries_href: link(format!("/queries?since={since_param}")),
        blocked_href: link(format!("/queries?blocked=1&since={since_param}")),
        circumvention_href: link(format!(
            "/queries?blocked=1&category=circumvention&since={days_param}"
        )),
        health: services.health(),
        lists_built: lists
            .built
            .map_or_else(|| "never".into(), |t| viewer.zone_time(t)),
        lists,
        check: figures.last_check.as_ref().map_or_else(
            || "No filtering check has run yet.".to_string(),
            |c| {
                format!(
                    "{}: {} passed, {} failed",
                    viewer.zone_time(c.started),
                    c.passed,
                    c.failed
                )
            },
        ),
        check_href: figures
            .last_check
            .as_ref()
            .map_or_else(|| "/checks".to_string(), |c| format!("/checks/{}", c.id)),
        check_failed: figures.last_check.as_ref().is_some_and(|c| c.failed > 0),
        records,
        chrome: Chrome::new(&viewer, Section::Overview, "Overview"),
    };
    page::render(&page)
}

/// The UTC midnight at or before `at`, or (`after`) at or after it.
fn utc_midnight(at: SystemTime, after: bool) -> SystemTime {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs / 86_400 + u64::from(after && !secs.is_multiple_of(86_400));
    SystemTime::UNIX_EPOCH + Duration::from_secs(day * 86_400)
}

/// The whole UTC days `[since, until)` in words: one date, or the first and the last.
fn days_words(since: SystemTime, until: SystemTime) -> String {
    let last = until - Duration::from_secs(86_400);
    if last <= since {
        format!("{} (a whole day, UTC)", crate::civil::format_date(since))
    } else {
        format!(
            "{} to {} (whole days, UTC)",
            crate::civil::format_date(since),
            crate::civil::format_date(last)
        )
    }
}

/// The start of the minute after `at`.
fn next_minute(at: SystemTime) -> SystemTime {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs((secs / 60 + 1) * 60)
}

/// One column per hour (a day) or per day, including empty ones.
fn series_columns(
    viewer: &Viewer,
    period: Period,
    since: SystemTime,
    series: &[(SystemTime, u64, u64)],
) -> Vec<Column> {
    let step = period.step();
    let n = (period.length().as_secs() / step.as_secs()) as usize;
    let start = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / step.as_secs() * step.as_secs());
    (0..=n)
        .map(|i| {
            let at =
                SystemTime::UNIX_EPOCH + Duration::from_secs(start + step.as_secs() * i as u64);
            let (total, part) = series
                .iter()
                .filter(|(t, ..)| *t >= at && *t < at + step)
                .fold((0, 0), |(a, b), (_, q, bl)| (a + q, b + bl));
            let label = if period == Period::Day {
                page::local_clock(viewer.zone, at)[..5].to_string()
            } else {
                page::local_date(viewer.zone, at)[5..].to_string()
            };
            Column { label, total, part }
        })
        .collect()
}
