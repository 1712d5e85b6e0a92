//! The HTTP listener: Prometheus metrics at `/metrics` and a health check at `/healthz`.
//! (The DSL dashboard is mounted here too, once it exists.)

use std::{net::SocketAddr, sync::Arc};

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};

use crate::metrics::Metrics;

/// The HTTP routes, separate from binding so tests can drive them without a socket.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(metrics)
}

async fn metrics_page(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.encode(),
    )
}

/// Binds the HTTP listener.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, crate::server::ListenError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::server::ListenError::Bind {
            addr,
            protocol: "HTTP",
            source,
        })
}
