//! Breaches: the DSL's list of safeguarding cases and the page of one breach, with the
//! device's and person's identity at the time, the blocked attempts, what the device did in
//! the minutes around them, and the case: reviewed, notes, escalation, parents informed,
//! outcome. Every change is stamped and audited; nothing can be deleted. Opening a breach is
//! a view of one child's records, so it is audited too.

use std::time::Duration;

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use serde::Deserialize;

use crate::{
    accounts::Role,
    event::{BlockReason, Severity},
    store::{AuditKind, BreachFilter, BreachSummary, CaseChange, CaseStatus, QueryRow},
};

use super::{
    auth::{Submitted, Viewer},
    page::{self, choices, q, CategoryTitles, Choice, Chrome, PageError, Section},
    Dashboard,
};

/// Breaches per page.
const PAGE: u32 = 50;
/// The device's queries shown either side of a breach.
const AROUND: Duration = Duration::from_secs(10 * 60);
/// At most this many of the breach's queries, and of the queries around it.
const ROWS: u32 = 200;

pub(super) fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/breaches", get(list))
        .route("/breaches/{id}", get(show).post(change))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    before: Option<i64>,
}

fn nonempty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// A breach as a row of the list.
struct Row {
    id: i64,
    first: String,
    device: String,
    device_href: String,
    person: String,
    group: String,
    site: String,
    category: String,
    severity: &'static str,
    severity_class: &'static str,
    count: u64,
    status: &'static str,
}

fn row(viewer: &Viewer, titles: &CategoryTitles, b: &BreachSummary) -> Row {
    Row {
        id: b.id,
        first: viewer.zone_time(b.first),
        device_href: format!("/devices/{}", q(&b.device_key)),
        device: b.device.clone(),
        person: b.user.clone().unwrap_or_default(),
        group: b.group.clone().unwrap_or_default(),
        site: b.domain.clone(),
        category: b
            .category
            .as_deref()
            .map_or_else(String::new, |c| titles.words(c)),
        severity: b.severity.label(),
        severity_class: page::severity_class(b.severity),
        count: b.count,
        status: b.status.label(),
    }
}

#[derive(Template)]
#[template(path = "breaches.html", config = "dashboard/askama.toml")]
struct ListPage {
    chrome: Chrome,
    statuses: Vec<Choice>,
    severities: Vec<Choice>,
    f: ListQuery,
    rows: Vec<Row>,
    next: String,
}

async fn list(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Query(f): Query<ListQuery>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Dsl])?;
    let filter = BreachFilter {
        status: match f.status.as_str() {
            "" => None,
            s => Some(
                CaseStatus::parse(s)
                    .ok_or_else(|| PageError::BadRequest(format!("`{s}` is not a case status")))?,
            ),
        },
        severity: match f.severity.as_str() {
            "" => None,
            s => Some(
                Severity::ALL
                    .into_iter()
                    .find(|v| v.label() == s)
                    .ok_or_else(|| PageError::BadRequest(format!("`{s}` is not a severity")))?,
            ),
        },
        category: nonempty(&f.category),
        group: nonempty(&f.group),
        device: nonempty(&f.device),
        user: nonempty(&f.person),
        since: match nonempty(&f.since) {
            Some(d) => Some(page::parse_local_date(viewer.zone, &d)?),
            None => None,
        },
        until: match nonempty(&f.until) {
            Some(d) => Some(page::parse_local_date(viewer.zone, &d)? + Duration::from_secs(86_400)),
            None => None,
        },
    };
    let person_or_device = filter.device.clone().or(filter.user.clone());
    let titles = dashboard.category_titles();
    let before = f.before;
    let breaches = dashboard
        .read(move |r| r.breaches(&filter, before, PAGE))
        .await?;
    if let Some(who) = person_or_device {
        audit_view(&dashboard, &viewer, format!("listed the breaches of {who}")).await?;
    }
    let next = match breaches.last() {
        Some(last) if breaches.len() == PAGE as usize => {
            format!(
                "/breaches?status={}&severity={}&category={}&group={}&device={}&person={}&since={}&until={}&before={}",
                q(&f.status), q(&f.severity), q(&f.category), q(&f.group), q(&f.device),
                q(&f.person), q(&f.since), q(&f.until), last.id
            )
        }
        _ => String::new(),
    };
    let mut statuses = vec![("", "any status")];
    statuses.extend(CaseStatus::ALL.iter().map(|s| (s.label(), s.label())));
    let mut severities = vec![("", "any severity")];
    severities.extend(Severity::ALL.iter().map(|s| (s.label(), s.label())));
    let page = ListPage {
        statuses: choices(&statuses, &f.status),
        severities: choices(&severities, &f.severity),
        rows: breaches.iter().map(|b| row(&viewer, &titles, b)).collect(),
        next,
        chrome: Chrome::new(&viewer, Section::Breaches, "Breaches"),
        f,
    };
    page::render(&page)
}

/// A logged query as a line of a timeline.
pub(super) struct Line {
    pub time: String,
    pub name: String,
    pub what: String,
    pub why: String,
    pub blocked: bool,
    pub in_breach: bool,
}

pub(super) fn line(
    viewer: &Viewer,
    titles: &CategoryTitles,
    r: &QueryRow,
    in_breach: bool,
) -> Line {
    let why = match (r.reason, &r.category) {
        // The category's title says it all ("What happened" already says blocked).
        (Some(BlockReason::Category), Some(c)) if !c.is_empty() => titles.words(c),
        (Some(reason), Some(c)) if !c.is_empty() => {
            format!("{}: {}", page::reason_words(reason), titles.words(c))
        }
        (Some(reason), _) => page::reason_words(reason).to_string(),
        (None, _) => String::new(),
    };
    Line {
        time: page::local_clock(viewer.zone, r.at),
        name: r.name.clone(),
        what: page::disposition_words(r.disposition).to_string(),
        why,
        blocked: r.disposition == crate::event::Disposition::Blocked,
        in_breach,
    }
}

#[derive(Template)]
#[template(path = "breach.html", config = "dashboard/askama.toml")]
struct BreachPage {
    chrome: Chrome,
    b: Row,
    ips: String,
    /// "2, at Sun 29 Nov 2026, 15:04", or from when to when.
    attempts: String,
    notes: Vec<String>,
    escalated_to: String,
    parents: String,
    outcome: String,
    closed: bool,
    queries: Vec<Line>,
    queries_more: bool,
    around: Vec<Line>,
    around_more: bool,
    history: Vec<(String, String, String)>,
    today: String,
    message: String,
}

#[derive(Deserialize, Default)]
struct ShowQuery {
    #[serde(default)]
    done: String,
}

async fn show(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Path(id): Path<i64>,
    Query(shown): Query<ShowQuery>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Dsl])?;
    let detail = dashboard
        .read(move |r| r.breach(id, AROUND, ROWS))
        .await?
        .ok_or(PageError::NotFound)?;
    audit_view(
        &dashboard,
        &viewer,
        format!("opened breach {id} (device {})", detail.breach.device),
    )
    .await?;
    let b = &detail.breach;
    let titles = dashboard.category_titles();
    let breach_keys: std::collections::HashSet<i64> =
        detail.queries.iter().map(|r| r.key).collect();
    let mut ips: Vec<&str> = detail.queries.iter().map(|r| r.ip.as_str()).collect();
    ips.dedup();
    let page = BreachPage {
        ips: ips.join(", "),
        attempts: attempts_words(&viewer, b.count, b.first, b.last),
        notes: b.notes.lines().map(str::to_string).collect(),
        escalated_to: b.escalated_to.clone().unwrap_or_default(),
        parents: b
            .parents_informed
            .as_ref()
            .map(|(on, by)| format!("yes, on {} by {by}", page::local_day(viewer.zone, *on)))
            .unwrap_or_default(),
        outcome: b.outcome.clone().unwrap_or_default(),
        closed: b.status == CaseStatus::Closed,
        queries_more: detail.queries.len() >= ROWS as usize,
        queries: detail
            .queries
            .iter()
            .map(|r| line(&viewer, &titles, r, true))
            .collect(),
        around_more: detail.around.len() >= ROWS as usize,
        around: detail
            .around
            .iter()
            .map(|r| line(&viewer, &titles, r, breach_keys.contains(&r.key)))
            .collect(),
        history: detail
            .history
            .iter()
            .map(|h| (viewer.zone_time(h.at), h.actor.clone(), h.change.clone()))
            .collect(),
        today: page::local_date(viewer.zone, viewer.now),
        message: match shown.done.as_str() {
            "" => String::new(),
            _ => "Saved.".into(),
        },
        b: row(&viewer, &titles, b),
        chrome: Chrome::new(&viewer, Section::Breaches, format!("Breach {id}")),
    };
    page::render(&page)
}

/// How many attempts, and when: the day is not repeated when they were all on one day.
fn attempts_words(
    viewer: &Viewer,
    count: u64,
    first: std::time::SystemTime,
    last: std::time::SystemTime,
) -> String {
    let (from, to) = (viewer.zone_time(first), viewer.zone_time(last));
    if from == to {
        format!("{count}, at {from}")
    } else if page::local_day(viewer.zone, first) == page::local_day(viewer.zone, last) {
        let clock = page::local_clock(viewer.zone, last);
        format!("{count}, from {from} to {}", &clock[..5])
    } else {
        format!("{count}, from {from} to {to}")
    }
}

/// What a case form asks for.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Action {
    Review,
    Note,
    Escalate,
    Parents,
    Close,
}

#[derive(Deserialize)]
struct CaseForm {
    action: Action,
    #[serde(default)]
    text: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    by: String,
}

async fn change(
    State(dashboard): State<Dashboard>,
    Path(id): Path<i64>,
    Submitted { viewer, form }: Submitted<CaseForm>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Dsl])?;
    let text = form.text.trim().to_string();
    let needs = |what: &str| -> Result<String, PageError> {
        if text.is_empty() {
            Err(PageError::BadRequest(format!("Please fill in {what}.")))
        } else if text.len() > 4000 {
            Err(PageError::BadRequest(
                "That is too long (4,000 characters at most).".into(),
            ))
        } else {
            Ok(text.clone())
        }
    };
    let changes = match form.action {
        Action::Review => vec![CaseChange::Status(CaseStatus::Reviewed)],
        Action::Note => vec![CaseChange::Note(needs("the note")?)],
        Action::Escalate => vec![CaseChange::EscalatedTo(needs("who it was escalated to")?)],
        Action::Parents => {
            let by = form.by.trim();
            if by.is_empty() {
                return Err(PageError::BadRequest(
                    "Please say who informed the parents.".into(),
                ));
            }
            vec![CaseChange::ParentsInformed {
                informed: true,
                on: page::parse_local_date(viewer.zone, &form.date)?,
                by: by.to_string(),
            }]
        }
        Action::Close => vec![
            CaseChange::Outcome(needs("the outcome")?),
            CaseChange::Status(CaseStatus::Closed),
        ],
    };
    let actor = viewer.name.clone();
    dashboard
        .write(move |c| {
            for change in &changes {
                c.update_case(id, change, &actor)?;
            }
            Ok(())
        })
        .await?;
    Ok(Redirect::to(&format!("/breaches/{id}?done=1")).into_response())
}

/// Records that `viewer` looked at one child's records.
pub(super) async fn audit_view(
    dashboard: &Dashboard,
    viewer: &Viewer,
    what: String,
) -> Result<(), PageError> {
    let actor = viewer.name.clone();
    dashboard
        .write(move |c| c.append_audit(&actor, AuditKind::View, &what, "dashboard"))
        .await?;
    Ok(())
}
