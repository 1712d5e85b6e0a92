//! The block page: when a group's block answer points browsers at Hedgerow's block-page
//! address, any page asked of it explains in plain words that the school's filter blocked
//! the site, with the category, the time and a reference staff can find in the log (time and
//! address), and links to "ask for a review" (the unblock request form). Sites on the
//! illegal-content list get neutral wording and no review.
//!
//! Only plain-HTTP sites can show it: for an `https://` site the browser refuses the
//! certificate before any page is asked for, so it shows its own error instead.

use askama::Template;
use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use super::{
    assets,
    auth::ClientAddr,
    page::{self, q, Chrome, PageError},
    unblock, BlockedSite, Dashboard,
};

pub(super) fn routes() -> Router<Dashboard> {
    unblock::request_routes()
        .route("/static/style.css", get(assets::style))
        .fallback(block_page)
}

#[derive(Template)]
#[template(path = "blocked.html", config = "dashboard/askama.toml")]
struct BlockPage {
    chrome: Chrome,
    site: String,
    category: String,
    withheld: bool,
    at: String,
    reference: String,
    review: String,
}

/// The site asked for: the `Host` header without its port, if it is a domain name.
fn host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let name = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    crate::names::normalise(name).ok()
}

async fn block_page(
    State(dashboard): State<Dashboard>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let inner = &dashboard.inner;
    let now = dashboard.now();
    let zone = inner.auth.zone();
    let site = host(&headers);
    let why = site
        .as_deref()
        .and_then(|s| inner.services.blocked_site(addr, s));
    let withheld = why == Some(BlockedSite::Withheld);
    let page = BlockPage {
        chrome: Chrome::anonymous(
            &inner.school,
            if withheld {
                "This site is not available"
            } else {
                "This site is blocked"
            },
            page::local_time(zone, now),
        ),
        // Neither the name nor anything about it is repeated for the illegal tier.
        site: if withheld {
            String::new()
        } else {
            site.clone().unwrap_or_default()
        },
        category: match &why {
            Some(BlockedSite::Filtered(c)) => dashboard.category_titles().words(c),
            _ => String::new(),
        },
        withheld,
        at: page::local_time(zone, now),
        reference: format!("{} · {addr}", page::local_clock(zone, now)),
        review: match (&site, withheld) {
            (Some(s), false) => format!("/request?name={}", q(s)),
            _ => String::new(),
        },
    };
    let mut response = page::render(&page)?;
    // Not a real page of the site: never cached, never indexed.
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response.into_response())
}
