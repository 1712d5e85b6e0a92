//! Searching the query log, its CSV export, and one device's timeline. Results are paged on
//! the server (newest first, 100 a page); a search narrowed to a device or a person, a
//! device's timeline and every export are audited as views of a child's records.

use std::{io::Write, time::Duration};

use askama::Template;
use axum::{
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use serde::Deserialize;

use crate::{
    accounts::Role,
    event::Disposition,
    store::{ExportFormat, QueryFilter},
};

use super::{
    auth::Viewer,
    breaches::{audit_view, line, Line},
    page::{self, choices, q, Choice, Chrome, PageError, Section},
    Dashboard,
};

/// Rows per page.
const PAGE: u32 = 100;

pub(super) fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/queries", get(search))
        .route("/queries.csv", get(export))
        .route("/devices/{key}", get(device))
}

#[derive(Deserialize, Default, Clone)]
struct SearchQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    disposition: String,
    #[serde(default)]
    blocked: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    before: Option<i64>,
}

impl SearchQuery {
    fn filter(&self, viewer: &Viewer) -> Result<QueryFilter, PageError> {
        let text = |s: &str| {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_string())
        };
        Ok(QueryFilter {
            name: text(&self.name),
            device: text(&self.device),
            user: text(&self.person),
            group: text(&self.group),
            category: text(&self.category),
            disposition: match self.disposition.as_str() {
                "" => None,
                d => Some(
                    Disposition::ALL
                        .into_iter()
                        .find(|v| v.label() == d)
                        .ok_or_else(|| PageError::BadRequest(format!("`{d}` is not an outcome")))?,
                ),
            },
            blocked_only: self.blocked == "1",
            since: match text(&self.since) {
                Some(d) => Some(page::parse_local_date(viewer.zone, &d)?),
                None => None,
            },
            until: match text(&self.until) {
                Some(d) => {
                    Some(page::parse_local_date(viewer.zone, &d)? + Duration::from_secs(86_400))
                }
                None => None,
            },
        })
    }

    /// The query string without `before`.
    fn params(&self) -> String {
        format!(
            "name={}&device={}&person={}&group={}&category={}&disposition={}&blocked={}&since={}&until={}",
            q(&self.name), q(&self.device), q(&self.person), q(&self.group), q(&self.category),
            q(&self.disposition), q(&self.blocked), q(&self.since), q(&self.until)
        )
    }

    /// Who the search is about, when it is about one device or person.
    fn about(&self) -> Option<String> {
        match (self.device.trim(), self.person.trim()) {
            ("", "") => None,
            (d, "") => Some(format!("device {d}")),
            ("", p) => Some(format!("person {p}")),
            (d, p) => Some(format!("device {d} and person {p}")),
        }
    }
}

/// A logged query in the search results.
struct ResultRow {
    time: String,
    device: String,
    device_href: String,
    person: String,
    ip: String,
    group: String,
    line: Line,
}

#[derive(Template)]
#[template(path = "queries.html", config = "dashboard/askama.toml")]
struct SearchPage {
    chrome: Chrome,
    f: SearchQuery,
    dispositions: Vec<Choice>,
    rows: Vec<ResultRow>,
    next: String,
    csv: String,
}

async fn search(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Query(f): Query<SearchQuery>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Dsl])?;
    let filter = f.filter(&viewer)?;
    let before = f.before;
    let found = dashboard
        .read(move |r| r.search(&filter, before, PAGE))
        .await?;
    if let Some(about) = f.about() {
        audit_view(&dashboard, &viewer, format!("searched the log of {about}")).await?;
    }
    let params = f.params();
    let titles = dashboard.category_titles();
    let mut options = vec![("", "any outcome")];
    options.extend(
        Disposition::ALL
            .into_iter()
            .map(|d| (d.label(), page::disposition_words(d))),
    );
    let dispositions = choices(&options, &f.disposition);
    let page = SearchPage {
        rows: found
            .rows
            .iter()
            .map(|r| ResultRow {
                time: viewer.zone_time(r.at),
                device: r.device.clone(),
                device_href: format!("/devices/{}", q(&r.device_key)),
                person: r.user.clone().unwrap_or_default(),
                ip: r.ip.clone(),
                group: r.group.clone().unwrap_or_default(),
                line: line(&viewer, &titles, r, false),
            })
            .collect(),
        next: found
            .next
            .map_or(String::new(), |k| format!("/queries?{params}&before={k}")),
        csv: format!("/queries.csv?{params}"),
        dispositions,
        chrome: Chrome::new(&viewer, Section::Queries, "Search the log"),
        f,
    };
    page::render(&page)
}

/// Hands the export's bytes to the response body in 64 KiB pieces as they are written.
struct ChannelWriter {
    buffer: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::take(&mut self.buffer));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "download stopped"))
    }
}

async fn export(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Query(f): Query<SearchQuery>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Dsl])?;
    let filter = f.filter(&viewer)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let actor = viewer.name.clone();
    let commands = dashboard.inner.commands.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            buffer: Vec::new(),
            tx: tx.clone(),
        };
        // The export writes its audit record once it is complete; a download stopped half
        // way leaves an error in the log, not a record of an export that did not happen.
        if let Err(error) = commands.export(&filter, ExportFormat::Csv, &mut out, &actor) {
            tracing::warn!(%error, "dashboard: export failed");
            let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"hedgerow-queries.csv\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Template)]
#[template(path = "device.html", config = "dashboard/askama.toml")]
struct DevicePage {
    chrome: Chrome,
    caption: String,
    lines: Vec<Line>,
    next: String,
    breaches_href: String,
}

#[derive(Deserialize, Default)]
struct DeviceQuery {
    before: Option<i64>,
}

async fn device(
    viewer: Viewer,
    State(dashboard): State<Dashboard>,
    Path(key): Path<String>,
    Query(dq): Query<DeviceQuery>,
) -> Result<Response, PageError> {
    viewer.require(&[Role::Dsl])?;
    let lookup = key.clone();
    let before = dq.before;
    let found = dashboard
        .read(move |r| r.device_timeline(&lookup, None, None, before, PAGE))
        .await?;
    let label = found
        .rows
        .first()
        .map_or_else(|| key.clone(), |r| r.device.clone());
    audit_view(
        &dashboard,
        &viewer,
        format!("opened the timeline of device {label}"),
    )
    .await?;
    let titles = dashboard.category_titles();
    let lines: Vec<Line> = found
        .rows
        .iter()
        .map(|r| {
            let mut l = line(&viewer, &titles, r, false);
            l.time = viewer.zone_time(r.at);
            l
        })
        .collect();
    let page = DevicePage {
        caption: format!("Queries from {label}, newest first"),
        lines,
        next: found.next.map_or(String::new(), |k| {
            format!("/devices/{}?before={k}", q(&key))
        }),
        breaches_href: format!("/breaches?device={}", q(&key)),
        chrome: Chrome::new(&viewer, Section::Queries, format!("Device {label}")),
    };
    page::render(&page)
}
