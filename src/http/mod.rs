//! The HTTP listener: Prometheus metrics at `/metrics`, a health check at `/healthz`, when a
//! token file is configured the sessions API ([`sessions`]), and the dashboard (its routes
//! come ready-made from `app.rs`). HTTPS when the dashboard has a certificate ([`tls`]); every
//! request carries the client's address as `ConnectInfo<SocketAddr>`.
//!
//! `axum::serve` has no timeouts and no connection cap, so ~1,100 half-open requests could
//! take every descriptor the DNS path needs. This listener owns its accept loop: at most
//! [`HttpOptions::max_connections`] connections (more are closed at once), request headers
//! within [`HEADER_READ_TIMEOUT`] (also the keep-alive idle limit: hyper starts the timer
//! when it waits for the next request's head), a response within [`REQUEST_TIMEOUT`], and no
//! connection older than [`MAX_CONNECTION_AGE`]. `/metrics` is encoded at most once a second,
//! so a scraper flood costs a copy, not a walk of every metric.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

pub mod sessions;
pub mod tls;

use crate::{
    log_limit::LogLimit,
    metrics::Metrics,
    server::{accept::Acceptor, Health},
};

/// A request's headers must arrive within this; also how long an idle keep-alive connection
/// is kept.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A response must be ready within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer than this (a client that stops reading its response).
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
/// `/metrics` is encoded at most this often.
const METRICS_MAX_AGE: Duration = Duration::from_secs(1);

static ACCEPT_WARNINGS: LogLimit = LogLimit::new("HTTP accept failed", 5);
static CAP_WARNINGS: LogLimit = LogLimit::new("HTTP connection cap reached", 5);

/// Why the HTTP listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (HTTP): {source}")]
pub struct HttpError {
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    pub source: std::io::Error,
}

/// What the pages read.
#[derive(Clone)]
struct Pages {
    metrics: Arc<Metrics>,
    /// The last `/metrics` text and when it was encoded.
    encoded: Arc<Mutex<Option<(Instant, axum::body::Bytes)>>>,
    health: Option<Health>,
}

/// The HTTP routes, separate from binding so tests can drive them without a socket.
/// `health`: the DNS listeners `/healthz` reports on; `sessions`: the sessions API, when
/// configured; `dashboard`: the dashboard's routes, when it is on.
pub fn router(
    metrics: Arc<Metrics>,
    health: Option<Health>,
    sessions: Option<sessions::SessionsApi>,
    dashboard: Option<Router>,
) -> Router {
    let pages = Pages {
        metrics,
        encoded: Arc::default(),
        health,
    };
    let mut router = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(health_page))
        .with_state(pages);
    if let Some(api) = sessions {
        router = router.merge(sessions::routes(api));
    }
    if let Some(dashboard) = dashboard {
        router = router.merge(dashboard);
    }
    router.layer(axum::middleware::from_fn(request_timeout))
}

async fn request_timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn metrics_page(State(pages): State<Pages>) -> impl IntoResponse {
    let text = {
        let mut encoded = pages.encoded.lock().unwrap_or_else(|p| p.into_inner());
        match &*encoded {
            Some((at, text)) if at.elapsed() < METRICS_MAX_AGE => text.clone(),
            _ => {
                // Encoding under the lock: concurrent scrapes wait for one encoding instead
                // of each walking every metric.
                let text = axum::body::Bytes::from(pages.metrics.encode());
                *encoded = Some((Instant::now(), text.clone()));
                text
            }
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// `ok` and one line per DNS listener; 503 when one is down.
async fn health_page(State(pages): State<Pages>) -> impl IntoResponse {
    let (up, listeners) = pages
        .health
        .as_ref()
        .map_or((true, String::new()), Health::report);
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let first = if up { "ok\n" } else { "down\n" };
    (status, format!("{first}{listeners}"))
}

/// Connection limits and TLS for [`Listener::bind`].
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// At most this many connections at once; more are closed at once.
    pub max_connections: usize,
    /// HTTPS with this configuration; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A running HTTP listener.
pub struct Listener {
    addr: SocketAddr,
    task: JoinHandle<()>,
    stop: CancellationToken,
    connections: TaskTracker,
}

impl Listener {
    /// Binds `addr` and serves `router` until [`Listener::shutdown`].
    pub async fn bind(
        addr: SocketAddr,
        router: Router,
        options: HttpOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Listener, HttpError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let task = tokio::spawn(accept_loop(
            Acceptor::new(listener, &ACCEPT_WARNINGS),
            router,
            options,
            metrics,
            stop.clone(),
            connections.clone(),
        ));
        Ok(Listener {
            addr,
            task,
            stop,
            connections,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and gives open requests up to `grace` to finish.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        self.connections.close();
        let _ = tokio::time::timeout(grace, async {
            let _ = self.task.await;
            self.connections.wait().await;
        })
        .await;
    }
}

async fn accept_loop(
    mut acceptor: Acceptor,
    router: Router,
    options: HttpOptions,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    let open = metrics.connections_open.with_label_values(&["http"]);
    let rejected = metrics
        .connections_rejected
        .with_label_values(&["http", "total"]);
    let tls = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    while let Some((stream, peer)) = acceptor.accept(&stop).await {
        if connections.len() >= options.max_connections {
            rejected.inc();
            crate::warn_limited!(
                CAP_WARNINGS,
                max = options.max_connections,
                "HTTP connection closed at once: connection cap reached"
            );
            drop(stream);
            continue;
        }
        let service = router.clone().map_request(move |mut request: Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let (stop, open, tls) = (stop.clone(), open.clone(), tls.clone());
        connections.spawn(async move {
            open.inc();
            match tls {
                None => serve(stream, service, stop).await,
                // The handshake shares the connection's age limit and the header timeout.
                Some(tls) => {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => serve(stream, service, stop).await,
                        Ok(Err(error)) => tracing::debug!(%error, "HTTPS handshake failed"),
                        Err(_) => tracing::debug!("HTTPS handshake timed out"),
                    }
                }
            }
            open.dec();
        });
    }
}

/// Serves one connection until it ends, the listener stops, or it is too old.
async fn serve<IO, S>(stream: IO, service: S, stop: CancellationToken)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // The smallest hyper allows: our requests are a line and a few headers (a sign-in
        // form is well under it; larger bodies are read as they stream in).
        .max_buf_size(8192);
    let conn =
        builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.map_request(
                |r: hyper::Request<hyper::body::Incoming>| r.map(axum::body::Body::new),
            )),
        );
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => if let Err(error) = result {
            tracing::debug!(%error, "HTTP connection ended");
        },
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
        }
        _ = tokio::time::sleep(MAX_CONNECTION_AGE) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(health: Health) -> Pages {
        Pages {
            metrics: Arc::new(Metrics::new().unwrap()),
            encoded: Arc::default(),
            health: Some(health),
        }
    }

    #[tokio::test]
    async fn healthz_lists_listeners_and_is_503_when_one_is_down() {
        let health = Health::default();
        let (ok, _) = health.report();
        assert!(ok);
        let response = health_page(State(pages(health.clone())))
            .await
            .into_response();
        assert_eq!(response.status(), StatusCode::OK);
        crate::server::testing::mark_down(&health, "dns udp 127.0.0.1:53");
        let response = health_page(State(pages(health))).await.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"down\ndns udp 127.0.0.1:53 down\n");
    }

    #[tokio::test]
    async fn metrics_are_encoded_at_most_once_a_second() {
        let p = pages(Health::default());
        let first = metrics_page(State(p.clone())).await.into_response();
        let first = axum::body::to_bytes(first.into_body(), 1 << 20)
            .await
            .unwrap();
        p.metrics.lists_built.set(1_234_567);
        let second = metrics_page(State(p.clone())).await.into_response();
        let second = axum::body::to_bytes(second.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(first, second, "served from the cache within the second");
        // Once the cached copy is old, the next scrape sees the change.
        if let Some((at, _)) = p.encoded.lock().unwrap().as_mut() {
            *at = at.checked_sub(METRICS_MAX_AGE).unwrap();
        }
        let third = metrics_page(State(p)).await.into_response();
        let third = axum::body::to_bytes(third.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&third)
            .contains("hedgerow_lists_build_timestamp_seconds 1234567"));
    }
}
