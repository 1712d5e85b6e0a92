//! Filtering checks (DfE: checks "completed and recorded", per user group): the runs, each
//! run's items per group, and a button to run one now through the resolver in force. A run
//! asks the real DNS path as a device of each group would; see `crate::checks`.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use serde::Deserialize;

use crate::{
    accounts::Role,
    store::{CheckItem, CheckRun},
};

use super::{
    auth::{Submitted, Viewer},
    page::{self, Chrome, PageError, Section},
    Dashboard,
};

/// Runs listed.
const RUNS: u32 = 52;

pub(super) fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/checks", get(list))
        .route("/checks/run", post(run_now))
        .route("/checks/{id}", get(show))
}

struct RunLine {
    id: i64,
    when: String,
    by: String,
    how: &'static str,
    passed: u32,
    failed: u32,
    untested: usize,
}

fn run_line(viewer: &Viewer, r: &CheckRun) -> RunLine {
    RunLine {
        id: r.id,
        when: viewer.zone_time(r.started),
        by: r.by.clone(),
        how: r.trigger.describe(),
        passed: r.passed,
        failed: r.failed,
        untested: r.untested(),
    }
}

#[derive(Template)]
#[template(path = "checks.html", config = "dashboard/askama.toml")]
struct ListPage {
    chrome: Chrome,
    runs: Vec<RunLine>,
    error: String,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    error: String,
}

async fn list(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Query(lq): Query<ListQuery>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Technician, Role::Dsl])?;
    let runs = dashboard.read(|r| r.check_runs(None, RUNS)).await?;
    let page = ListPage {
        runs: runs.iter().map(|r| run_line(&viewer, r)).collect(),
        error: lq.error.chars().take(300).collect(),
        chrome: Chrome::new(&viewer, Section::Checks, "Filtering checks"),
    };
    page::render(&page)
}

struct Group {
    name: String,
    items: Vec<CheckItem>,
}

#[derive(Template)]
#[template(path = "check.html", config = "dashboard/askama.toml")]
struct RunPage {
    chrome: Chrome,
    run: RunLine,
    groups: Vec<Group>,
}

async fn show(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Technician, Role::Dsl])?;
    let run = dashboard
        .read(move |r| r.check_run(id))
        .await?
        .ok_or(PageError::NotFound)?;
    let mut groups: Vec<Group> = Vec::new();
    for item in &run.items {
        match groups.iter_mut().find(|g| g.name == item.group) {
            Some(g) => g.items.push(item.clone()),
            None => groups.push(Group {
                name: item.group.clone(),
                items: vec![item.clone()],
            }),
        }
    }
    let page = RunPage {
        run: run_line(&viewer, &run),
        groups,
        chrome: Chrome::new(&viewer, Section::Checks, format!("Filtering check {id}")),
    };
    page::render(&page)
}

#[derive(Deserialize)]
struct RunForm {}

async fn run_now(
    State(dashboard): State<Dashboard>,
    Submitted { viewer, .. }: Submitted<RunForm>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Technician, Role::Dsl])?;
    match dashboard
        .inner
        .services
        .run_checks(viewer.name.clone())
        .await
    {
        Ok(id) => Ok(Redirect::to(&format!("/checks/{id}")).into_response()),
        Err(e) => Ok(Redirect::to(&format!("/checks?error={}", page::q(&e))).into_response()),
    }
}
