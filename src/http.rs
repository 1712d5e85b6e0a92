//! The HTTP listener: Prometheus metrics at `/metrics` and a health check at `/healthz`.
//! (The DSL dashboard is mounted here too, once it exists.)

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use tokio::{sync::oneshot, task::JoinHandle};

use crate::metrics::Metrics;

/// Why the HTTP listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (HTTP): {source}")]
pub struct HttpError {
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    pub source: std::io::Error,
}

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

/// A running HTTP listener.
pub struct Listener {
    addr: SocketAddr,
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl Listener {
    /// Binds `addr` and serves `router` until [`Listener::shutdown`].
    pub async fn bind(addr: SocketAddr, router: Router) -> Result<Listener, HttpError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "HTTP listener failed");
            }
        });
        Ok(Listener { addr, task, stop })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and gives open requests up to `grace` to finish.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(grace, self.task).await;
    }
}
