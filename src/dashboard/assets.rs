//! Static files, embedded at build time.

use axum::{http::header, response::IntoResponse};

const STYLE: &str = include_str!("../../dashboard/static/style.css");

/// The one stylesheet (cached for a day: it changes only with the binary).
pub(super) async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        STYLE,
    )
}
