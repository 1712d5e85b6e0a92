//! Unblock requests: the form staff fill in (linked from the block page and the dashboard;
//! no account needed, so it is limited per address and carries its own form token), and the
//! approver's page — pending requests with what each group gets for the name today, approve
//! for chosen groups and a period, or refuse with a reason; the grants in force, which can
//! be ended early. An approval becomes a time-limited grant the resolver applies at once
//! ([`super::Services::grants_changed`]); the illegal tier can never be granted. All of it is
//! audited by the store, in the same transaction as the change.

use std::time::Duration;

use askama::Template;
use axum::{
    extract::{Path, Query, Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use serde::Deserialize;

use crate::{
    accounts::Role,
    store::{GrantRecord, NewUnblockRequest, RequestStatus, UnblockRequest},
};

use super::{
    auth::{ClientAddr, Submitted, Viewer},
    page::{self, Chrome, PageError, Section},
    Dashboard, GroupVerdict,
};

/// The periods offered, in minutes, with their words.
const PERIODS: [(u64, &str); 6] = [
    (60, "1 hour"),
    (8 * 60, "the school day (8 hours)"),
    (24 * 60, "1 day"),
    (7 * 24 * 60, "1 week"),
    (28 * 24 * 60, "4 weeks"),
    (365 * 24 * 60, "1 year"),
];
/// Refused names get these words, whatever the reason, so the tier is never revealed.
const CANNOT: &str = "This site cannot be unblocked.";

pub(super) fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/request", get(request_form).post(request_submit))
        .route("/requests", get(requests))
        .route("/requests/{id}", post(decide))
        .route("/grants/{id}/revoke", post(revoke))
}

/// The request form as the block page's address serves it: always to nobody in particular.
/// A dashboard session cookie can reach it (cookies do not tell ports apart), but the
/// dashboard's navigation would lead to block pages there.
pub(super) fn request_routes() -> Router<Dashboard> {
    Router::new().route("/request", get(block_page_form).post(block_page_submit))
}

/// Words for a period in minutes.
fn period_words(minutes: u64) -> String {
    PERIODS
        .iter()
        .find(|(m, _)| *m == minutes)
        .map_or_else(|| format!("{minutes} minutes"), |(_, w)| w.to_string())
}

struct PeriodChoice {
    minutes: u64,
    label: &'static str,
    selected: bool,
}

fn period_choices(selected: u64) -> Vec<PeriodChoice> {
    PERIODS
        .iter()
        .map(|&(minutes, label)| PeriodChoice {
            minutes,
            label,
            selected: minutes == selected,
        })
        .collect()
}

// ---------------------------------------------------------------- the request form

#[derive(Template)]
#[template(path = "request.html", config = "dashboard/askama.toml")]
struct RequestPage {
    chrome: Chrome,
    token: String,
    name: String,
    groups: Vec<(String, bool)>,
    periods: Vec<PeriodChoice>,
    message: String,
    error: String,
}

#[derive(Deserialize, Default)]
struct RequestQuery {
    #[serde(default)]
    name: String,
}

/// The form, with `name` filled in (the block page passes the blocked site); drawn with
/// the signed-in person's header and navigation, if someone is signed in.
async fn request_form(
    viewer: Option<Viewer>,
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Query(query): Query<RequestQuery>,
) -> Result<Response, PageError> {
    form_page(
        &dashboard,
        viewer.as_ref(),
        &headers,
        &query.name,
        &[],
        String::new(),
        StatusCode::OK,
    )
}

/// The form on the block page's address.
async fn block_page_form(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Query(query): Query<RequestQuery>,
) -> Result<Response, PageError> {
    form_page(
        &dashboard,
        None,
        &headers,
        &query.name,
        &[],
        String::new(),
        StatusCode::OK,
    )
}

/// The header for the request pages: the signed-in person's, or nobody's.
fn request_chrome(dashboard: &Dashboard, viewer: Option<&Viewer>, title: &str) -> Chrome {
    match viewer {
        Some(viewer) => Chrome::new(viewer, Section::Requests, title),
        None => {
            let inner = &dashboard.inner;
            Chrome::anonymous(
                &inner.school,
                title,
                page::local_time(inner.auth.zone(), dashboard.now()),
            )
        }
    }
}

/// Renders a request page; someone not signed in gets the anonymous form's token and its
/// cookie (the signed-in person's forms carry their session's token instead).
fn render_request(
    dashboard: &Dashboard,
    viewer: Option<&Viewer>,
    headers: &HeaderMap,
    page: impl FnOnce(String) -> RequestPage,
) -> Result<Response, PageError> {
    if viewer.is_some() {
        return page::render(&page(String::new()));
    }
    let (token, cookie) = dashboard.inner.auth.anonymous_token(headers);
    let mut response = page::render(&page(token))?;
    response
        .headers_mut()
        .insert(axum::http::header::SET_COOKIE, cookie);
    Ok(response)
}

fn form_page(
    dashboard: &Dashboard,
    viewer: Option<&Viewer>,
    headers: &HeaderMap,
    name: &str,
    chosen: &[String],
    error: String,
    status: StatusCode,
) -> Result<Response, PageError> {
    let groups = dashboard
        .inner
        .services
        .groups()
        .into_iter()
        .map(|g| {
            let on = chosen.contains(&g);
            (g, on)
        })
        .collect();
    let mut response = render_request(dashboard, viewer, headers, |token| RequestPage {
        chrome: request_chrome(dashboard, viewer, "Ask for a site to be unblocked"),
        token,
        name: name.chars().take(253).collect(),
        groups,
        periods: period_choices(24 * 60),
        message: String::new(),
        error,
    })?;
    *response.status_mut() = status;
    Ok(response)
}

async fn request_submit(
    viewer: Option<Viewer>,
    State(dashboard): State<Dashboard>,
    ClientAddr(addr): ClientAddr,
    request: Request,
) -> Result<Response, PageError> {
    submit(dashboard, viewer, addr, request).await
}

async fn block_page_submit(
    State(dashboard): State<Dashboard>,
    ClientAddr(addr): ClientAddr,
    request: Request,
) -> Result<Response, PageError> {
    submit(dashboard, None, addr, request).await
}

/// Checks and records a request sent with the form.
async fn submit(
    dashboard: Dashboard,
    viewer: Option<Viewer>,
    addr: std::net::IpAddr,
    request: Request,
) -> Result<Response, PageError> {
    let viewer = viewer.as_ref();
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| PageError::BadRequest("The form is too large.".into()))?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| PageError::BadRequest("The form could not be read.".into()))?;
    let value = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or(String::new(), |(_, v)| v.trim().to_string())
    };
    let inner = &dashboard.inner;
    if !inner
        .auth
        .request_token_ok(viewer, &parts.headers, &value("csrf"), &value("token"))
    {
        return Err(PageError::Csrf);
    }
    let groups: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "group")
        .map(|(_, v)| v.clone())
        .collect();
    let typed = value("name");
    let retry = |error: String| {
        form_page(
            &dashboard,
            viewer,
            &parts.headers,
            &typed,
            &groups,
            error,
            StatusCode::BAD_REQUEST,
        )
    };
    let name = match crate::names::normalise(&typed) {
        Ok(n) => n,
        Err(_) => {
            return retry(format!(
                "“{typed}” is not a web address like www.example.org."
            ))
        }
    };
    if inner.services.is_illegal(&name) {
        return retry(CANNOT.into());
    }
    let known = inner.services.groups();
    if groups.is_empty() || groups.iter().any(|g| !known.contains(g)) {
        return retry("Choose who it should be unblocked for.".into());
    }
    let (who, reason) = (value("who"), value("reason"));
    if who.is_empty() || reason.is_empty() {
        return retry("Please give your name and say why the site is needed.".into());
    }
    let minutes: u64 = value("minutes").parse().unwrap_or(0);
    if !PERIODS.iter().any(|(m, _)| *m == minutes) {
        return retry("Choose how long it is needed for.".into());
    }
    if !inner.auth.allow_request(addr, dashboard.now()) {
        return retry("Too many requests from this computer: try again in an hour, or ask the online safety lead in person.".into());
    }
    let new = NewUnblockRequest {
        name: name.clone(),
        groups,
        reason,
        duration: Duration::from_secs(minutes * 60),
        requested_by: who,
        client: (!addr.is_unspecified()).then_some(addr),
    };
    let id = dashboard.write(move |c| c.request_unblock(&new)).await?;
    render_request(&dashboard, viewer, &parts.headers, |token| {
        RequestPage {
        chrome: request_chrome(&dashboard, viewer, "Request sent"),
        token,
        name,
        groups: Vec::new(),
        periods: Vec::new(),
        message: format!(
            "Your request number {id} has been sent. The head or the online safety lead will decide; \
             if it is approved, the site works within a minute, for the time they choose."
        ),
        error: String::new(),
    }
    })
}

// ---------------------------------------------------------------- the approver's page

struct Pending {
    id: i64,
    name: String,
    asked_groups: String,
    reason: String,
    requested_by: String,
    requested_at: String,
    period: String,
    verdicts: Vec<GroupVerdict>,
    verdict_error: String,
    groups: Vec<(String, bool)>,
    periods: Vec<PeriodChoice>,
}

struct Decided {
    id: i64,
    name: String,
    status: &'static str,
    by: String,
    at: String,
    note: String,
}

struct GrantLine {
    id: i64,
    name: String,
    group: String,
    until: String,
    by: String,
}

#[derive(Template)]
#[template(path = "requests.html", config = "dashboard/askama.toml")]
struct RequestsPage {
    chrome: Chrome,
    approver: bool,
    pending: Vec<Pending>,
    decided: Vec<Decided>,
    grants: Vec<GrantLine>,
    message: String,
}

#[derive(Deserialize, Default)]
struct RequestsQuery {
    #[serde(default)]
    done: String,
}

async fn requests(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Query(rq): Query<RequestsQuery>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Approver, Role::Dsl])?;
    let now = viewer.now;
    let (pending, decided, grants): (Vec<UnblockRequest>, Vec<UnblockRequest>, Vec<GrantRecord>) =
        dashboard
            .read(move |r| {
                let all = r.unblock_requests(None, 100)?;
                let (pending, decided) = all
                    .into_iter()
                    .partition(|q| q.status == RequestStatus::Pending);
                Ok((pending, decided, r.active_grants(now)?))
            })
            .await?;
    let services = dashboard.inner.services.clone();
    let all_groups = services.groups();
    // What each group gets for each pending name today (blocking: it may re-read list
    // sources to explain a match).
    let names: Vec<String> = pending.iter().map(|q| q.name.clone()).collect();
    let verdicts: Vec<Result<Vec<GroupVerdict>, String>> =
        tokio::task::spawn_blocking(move || names.iter().map(|n| services.test_name(n)).collect())
            .await?;
    let titles = dashboard.category_titles();
    let page = RequestsPage {
        approver: viewer.may(&[Role::Approver]),
        pending: pending
            .iter()
            .zip(verdicts)
            .map(|(q, verdict)| {
                let (verdicts, verdict_error) = match verdict {
                    Ok(v) => (
                        v.into_iter()
                            .map(|g| GroupVerdict {
                                summary: titles.verdict(&g),
                                ..g
                            })
                            .collect(),
                        String::new(),
                    ),
                    Err(e) => (Vec::new(), e),
                };
                let minutes = q.duration.as_secs() / 60;
                Pending {
                    id: q.id,
                    name: q.name.clone(),
                    asked_groups: q.groups.join(", "),
                    reason: q.reason.clone(),
                    requested_by: q.requested_by.clone(),
                    requested_at: viewer.zone_time(q.requested_at),
                    period: period_words(minutes),
                    verdicts,
                    verdict_error,
                    groups: all_groups
                        .iter()
                        .map(|g| (g.clone(), q.groups.contains(g)))
                        .collect(),
                    periods: period_choices(minutes),
                }
            })
            .collect(),
        decided: decided
            .iter()
            .take(30)
            .map(|q| Decided {
                id: q.id,
                name: q.name.clone(),
                status: q.status.label(),
                by: q.decided_by.clone().unwrap_or_default(),
                at: q.decided_at.map_or(String::new(), |t| viewer.zone_time(t)),
                note: q.decision_note.clone().unwrap_or_default(),
            })
            .collect(),
        grants: grants
            .iter()
            .map(|g| GrantLine {
                id: g.id,
                name: g.name.clone(),
                group: g.group.clone(),
                until: viewer.zone_time(g.expires),
                by: g.granted_by.clone(),
            })
            .collect(),
        message: match rq.done.as_str() {
            "approved" => "Approved: the site works now for the chosen groups.".into(),
            "refused" => "Refused: the reason is recorded.".into(),
            "revoked" => "The grant has ended.".into(),
            _ => String::new(),
        },
        chrome: Chrome::new(&viewer, Section::Requests, "Unblock requests"),
    };
    page::render(&page)
}

async fn decide(
    State(dashboard): State<Dashboard>,
    Path(id): Path<i64>,
    Submitted { viewer, form }: Submitted<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Approver])?;
    let value = |key: &str| {
        form.iter()
            .find(|(k, _)| k == key)
            .map_or(String::new(), |(_, v)| v.trim().to_string())
    };
    let by = viewer.name.clone();
    let done = match value("action").as_str() {
        "approve" => {
            let request = dashboard
                .read(move |r| r.unblock_request(id))
                .await?
                .ok_or(PageError::NotFound)?;
            if dashboard.inner.services.is_illegal(&request.name) {
                return Err(PageError::BadRequest(CANNOT.into()));
            }
            let groups: Vec<String> = form
                .iter()
                .filter(|(k, _)| k == "group")
                .map(|(_, v)| v.clone())
                .collect();
            if groups.is_empty() {
                return Err(PageError::BadRequest("Choose at least one group.".into()));
            }
            let minutes: u64 = value("minutes").parse().unwrap_or(0);
            if !PERIODS.iter().any(|(m, _)| *m == minutes) {
                return Err(PageError::BadRequest("Choose how long.".into()));
            }
            let until = viewer.now + Duration::from_secs(minutes * 60);
            let note = value("note");
            dashboard
                .write(move |c| c.approve_unblock(id, &groups, until, &by, &note))
                .await?;
            dashboard.inner.services.grants_changed().await;
            "approved"
        }
        "refuse" => {
            let reason = value("reason");
            if reason.is_empty() {
                return Err(PageError::BadRequest(
                    "Please say why it is refused.".into(),
                ));
            }
            dashboard
                .write(move |c| c.refuse_unblock(id, &by, &reason))
                .await?;
            "refused"
        }
        _ => return Err(PageError::BadRequest("Approve or refuse?".into())),
    };
    Ok(Redirect::to(&format!("/requests?done={done}")).into_response())
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    reason: String,
}

async fn revoke(
    State(dashboard): State<Dashboard>,
    Path(id): Path<i64>,
    Submitted { viewer, form }: Submitted<RevokeForm>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Approver])?;
    let reason = form.reason.trim().to_string();
    if reason.is_empty() {
        return Err(PageError::BadRequest(
            "Please say why the grant ends early.".into(),
        ));
    }
    let by = viewer.name.clone();
    dashboard
        .write(move |c| c.revoke_grant(id, &by, &reason))
        .await?;
    dashboard.inner.services.grants_changed().await;
    Ok(Redirect::to("/requests?done=revoked").into_response())
}
