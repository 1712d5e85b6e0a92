//! Policy and lists: each group's policy in plain English, the list sources in force with
//! their age and how the last update went, the recent policy and list changes from the audit
//! trail, and "test a name": the decision every group gets for a name, as
//! `hedgerow lists lookup` gives it. Nothing here is a pupil's record, so technicians and
//! approvers may open it; the name typed is neither logged nor audited, and a name on the
//! illegal-content list is not repeated back.

use std::time::SystemTime;

use askama::Template;
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
    routing::get,
    Router,
};
use serde::Deserialize;

use crate::{
    accounts::Role,
    store::{AuditKind, ChainReport},
};

use super::{
    auth::Viewer,
    page::{self, CategoryTitles, Chrome, PageError, Section},
    trail, Dashboard, GroupVerdict, ListsView,
};

/// Who may open these pages.
const ROLES: [Role; 3] = [Role::Technician, Role::Dsl, Role::Approver];
/// Recent changes shown.
const CHANGES: u32 = 20;
/// Longer than any DNS name (253): refused before the resolver is asked.
const MAX_NAME: usize = 300;

pub(super) fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/policy", get(policy))
        .route("/policy/test", get(test_name))
}

/// How long ago, in words ("3 days ago", "just now").
pub(super) fn ago(now: SystemTime, then: SystemTime) -> String {
    let secs = now.duration_since(then).map_or(0, |d| d.as_secs());
    let (n, unit) = match secs {
        0..60 => return "just now".into(),
        60..3600 => (secs / 60, "minute"),
        3600..86_400 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// A list source as a row.
pub(super) struct SourceRow {
    pub name: String,
    pub category: String,
    pub entries: u64,
    pub version: String,
    pub update: String,
    pub update_ok: bool,
}

/// The lists in force, in words, for this page and the annual pack.
pub(super) struct ListsWords {
    /// "Tue 3 Nov 2026, 10:00 (3 days ago)".
    pub built: String,
    pub names: u64,
    pub sources: Vec<SourceRow>,
    /// When the last update ran and what it did.
    pub update: String,
    pub update_ok: bool,
}

impl ListsWords {
    pub fn new(viewer: &Viewer, lists: &ListsView) -> ListsWords {
        let titles = CategoryTitles::new(lists.categories.clone());
        ListsWords {
            built: lists.built.map_or_else(
                || "not known".into(),
                |t| format!("{} ({})", viewer.zone_time(t), ago(viewer.now, t)),
            ),
            names: lists.names,
            sources: lists
                .sources
                .iter()
                .map(|s| SourceRow {
                    name: s.name.clone(),
                    category: titles.words(&s.category),
                    entries: s.entries,
                    version: s.version.clone(),
                    update: s
                        .last_update
                        .clone()
                        .unwrap_or_else(|| "not downloaded (a file kept on the server)".into()),
                    update_ok: s.update_ok,
                })
                .collect(),
            update: match (lists.updated, &lists.last_update) {
                (Some(at), Some(what)) => format!(
                    "The last list update ran {} ({}): {what}.",
                    viewer.zone_time(at),
                    ago(viewer.now, at)
                ),
                (None, Some(what)) => format!("{what}."),
                _ => "No list update has been recorded: the lists are only as new as their \
                      last compile. Ask the technician to schedule `hedgerow lists update`."
                    .into(),
            },
            update_ok: lists.update_ok,
        }
    }
}

/// An audit record as a row.
struct Change {
    at: String,
    actor: String,
    kind: &'static str,
    change: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "policy.html", config = "dashboard/askama.toml")]
struct PolicyPage {
    chrome: Chrome,
    policy: String,
    lists: ListsWords,
    changes: Vec<Change>,
    verified: bool,
    verdict: String,
    audit_link: bool,
    /// Time-limited unblockings in force: site, group, until, approved by.
    grants: Vec<(String, String, String, String)>,
    requests_link: bool,
}

async fn policy(viewer: Viewer, State(dashboard): State<Dashboard>) -> Result<Response, PageError> {
    viewer.require(&ROLES)?;
    let now = viewer.now;
    let (entries, report, grants): (_, ChainReport, _) = dashboard
        .read(move |r| {
            Ok((
                r.audit_of(&[AuditKind::Policy, AuditKind::List], None, CHANGES)?,
                r.verify_audit()?,
                r.active_grants(now)?,
            ))
        })
        .await?;
    let services = &dashboard.inner.services;
    // The whole configuration names devices and their addresses: only for those who see
    // pupils' records; everyone else gets each group's rules.
    let policy = if viewer.sees_records() {
        services.policy_text()
    } else {
        services
            .group_policies()
            .iter()
            .map(|p| {
                let rules: Vec<String> = p.text.lines().map(|l| format!("  {l}")).collect();
                format!("group `{}`:\n{}\n", p.group, rules.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let page = PolicyPage {
        grants: grants
            .iter()
            .map(|g| {
                (
                    g.name.clone(),
                    g.group.clone(),
                    viewer.zone_time(g.expires),
                    g.granted_by.clone(),
                )
            })
            .collect(),
        requests_link: viewer.may(&[Role::Approver, Role::Dsl]),
        policy,
        lists: ListsWords::new(&viewer, &services.lists()),
        changes: entries
            .iter()
            .map(|e| Change {
                at: viewer.zone_time(e.at),
                actor: e.actor.clone(),
                kind: e.kind.label(),
                change: e.change.clone(),
                reason: e.reason.clone(),
            })
            .collect(),
        verified: report.first_broken.is_none(),
        verdict: trail::chain_words(&report),
        audit_link: viewer.may(&[Role::Dsl, Role::Technician]),
        chrome: Chrome::new(&viewer, Section::Policy, "Policy and lists"),
    };
    page::render(&page)
}

#[derive(Deserialize, Default)]
struct TestQuery {
    #[serde(default)]
    name: String,
}

/// A group's verdict as a row.
struct VerdictRow {
    group: String,
    blocked: bool,
    summary: String,
    detail: Vec<String>,
}

#[derive(Template)]
#[template(path = "policy_test.html", config = "dashboard/askama.toml")]
struct TestPage {
    chrome: Chrome,
    /// The name as typed, to show again; empty when it is on the illegal-content list.
    name: String,
    rows: Vec<VerdictRow>,
    message: String,
}

async fn test_name(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Query(query): Query<TestQuery>,
) -> Result<Response, PageError> {
    viewer.require(&ROLES)?;
    let chrome = Chrome::new(&viewer, Section::Policy, "Test a name");
    let typed = query.name.trim().to_string();
    if typed.is_empty() {
        return page::render(&TestPage {
            chrome,
            name: String::new(),
            rows: Vec::new(),
            message: String::new(),
        });
    }
    let verdicts = if typed.len() > MAX_NAME {
        Err("That is too long to be a website's name.".to_string())
    } else {
        let (services, name) = (dashboard.inner.services.clone(), typed.clone());
        tokio::task::spawn_blocking(move || services.test_name(&name)).await?
    };
    let verdicts: Vec<GroupVerdict> = match verdicts {
        Ok(v) => v,
        Err(message) => {
            let mut response = page::render(&TestPage {
                chrome,
                name: typed,
                rows: Vec::new(),
                message,
            })?;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(response);
        }
    };
    // A name on the illegal-content list is not repeated back, not even to the person who
    // typed it (the page may be printed, shared or left open).
    let illegal = verdicts.iter().any(|v| v.blocked && v.detail.is_empty());
    let titles = dashboard.category_titles();
    let page = TestPage {
        chrome,
        name: if illegal { String::new() } else { typed },
        rows: verdicts
            .into_iter()
            .map(|v| VerdictRow {
                detail: v.detail.lines().map(str::to_string).collect(),
                summary: titles.verdict(&v),
                group: v.group,
                blocked: v.blocked,
            })
            .collect(),
        message: String::new(),
    };
    page::render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ages_are_in_words() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * 86_400);
        let before = |s: u64| now - Duration::from_secs(s);
        assert_eq!(ago(now, before(5)), "just now");
        assert_eq!(ago(now, before(60)), "1 minute ago");
        assert_eq!(ago(now, before(7200)), "2 hours ago");
        assert_eq!(ago(now, before(3 * 86_400 + 5)), "3 days ago");
        assert_eq!(ago(now, now + Duration::from_secs(60)), "just now");
    }
}
