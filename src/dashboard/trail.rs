//! The audit trail: every policy change, case change, grant, sign-in, export and view of a
//! child's records, newest first, with the chain's verification.

use askama::Template;
use axum::{
    extract::{Query, State},
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
    page::{self, Chrome, PageError, Section},
    Dashboard,
};

const PAGE: u32 = 100;

pub(super) fn routes() -> Router<Dashboard> {
    Router::new().route("/audit", get(trail))
}

#[derive(Deserialize, Default)]
struct TrailQuery {
    before: Option<i64>,
}

struct Entry {
    id: i64,
    at: String,
    actor: String,
    kind: &'static str,
    change: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "audit.html", config = "dashboard/askama.toml")]
struct TrailPage {
    chrome: Chrome,
    entries: Vec<Entry>,
    verified: bool,
    verdict: String,
    next: String,
}

async fn trail(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Query(tq): Query<TrailQuery>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Dsl, Role::Technician])?;
    let before = tq.before;
    // Case changes, views, exports and erasures name children's devices: the DSL's only.
    let kinds: &'static [AuditKind] = if viewer.sees_records() {
        &[]
    } else {
        &[
            AuditKind::Policy,
            AuditKind::List,
            AuditKind::Grant,
            AuditKind::Account,
            AuditKind::Login,
        ]
    };
    let (entries, report): (_, ChainReport) = dashboard
        .read(move |r| Ok((r.audit_of(kinds, before, PAGE)?, r.verify_audit()?)))
        .await?;
    let page = TrailPage {
        next: match entries.last() {
            Some(last) if entries.len() == PAGE as usize => format!("/audit?before={}", last.id),
            _ => String::new(),
        },
        entries: entries
            .iter()
            .map(|e| Entry {
                id: e.id,
                at: viewer.zone_time(e.at),
                actor: e.actor.clone(),
                kind: e.kind.label(),
                change: e.change.clone(),
                reason: e.reason.clone(),
            })
            .collect(),
        verified: report.first_broken.is_none(),
        verdict: chain_words(&report),
        chrome: Chrome::new(&viewer, Section::Audit, "Audit trail"),
    };
    page::render(&page)
}

/// The chain's verification in a sentence.
pub(super) fn chain_words(report: &ChainReport) -> String {
    match &report.first_broken {
        None => format!(
            "All {} records check out: none has been changed or removed.",
            report.records
        ),
        Some((id, what)) => format!(
            "Record {id} does not match the chain ({what}): the trail has been tampered with from there on."
        ),
    }
}
