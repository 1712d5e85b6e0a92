//! Wiring: configuration → metrics → pipeline → DNS listener + HTTP listener, reload on
//! SIGHUP, and a graceful drain on shutdown.

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use crate::{
    config::{Config, ConfigError},
    metrics::{Metrics, MetricsError},
    pipeline::{
        chain::{self, ChainError, ChainParts},
        Pipeline,
    },
    server::{Handler, ListenError, Sockets},
};

/// Why Hedgerow could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The pipeline could not be built.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A socket could not be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// Metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// Command-line values that override the configuration file (and survive reloads).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Vec<SocketAddr>,
    /// `--upstream`.
    pub upstreams: Vec<SocketAddr>,
    /// `--http`.
    pub http: Option<SocketAddr>,
}

/// Counts queries in flight so shutdown can wait for them.
#[derive(Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    draining: AtomicBool,
}

/// A running Hedgerow: DNS and HTTP listeners and the pipeline in force.
pub struct Hedgerow {
    config_path: Option<PathBuf>,
    overrides: Overrides,
    metrics: Arc<Metrics>,
    pipeline: Arc<ArcSwap<Pipeline>>,
    inflight: Arc<InFlight>,
    server: hickory_server::Server<Handler>,
    http: Option<(SocketAddr, JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
    dns_addrs: Vec<SocketAddr>,
}

impl Hedgerow {
    /// Reads the configuration (`None`: the embedded default), applies `overrides`, binds the
    /// listeners and starts answering.
    pub async fn start(
        config_path: Option<PathBuf>,
        overrides: Overrides,
    ) -> Result<Hedgerow, AppError> {
        let config = load(config_path.as_deref(), &overrides)?;
        let group_names: Vec<String> = config.groups.iter().map(|g| g.name.clone()).collect();
        let metrics = Arc::new(Metrics::new(&group_names)?);
        let pipeline = chain::build(
            &config,
            &ChainParts {
                metrics: metrics.clone(),
                sink: None,
            },
        )?;
        let pipeline = Arc::new(ArcSwap::from_pointee(pipeline));
        let inflight = Arc::new(InFlight::default());

        let sockets = Sockets::bind(&config.server.listen).await?;
        let dns_addrs = sockets.local_addrs();
        let http = match config.server.http {
            Some(addr) => {
                let listener = crate::http::bind(addr).await?;
                let local = listener.local_addr().unwrap_or(addr);
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let router = crate::http::router(metrics.clone());
                let task = tokio::spawn(async move {
                    let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                        let _ = rx.await;
                    });
                    if let Err(error) = serve.await {
                        tracing::error!(%error, "HTTP listener failed");
                    }
                });
                Some((local, task, tx))
            }
            None => None,
        };
        let server = sockets.serve(
            Handler::new(pipeline.clone(), inflight.clone()),
            config.server.tcp_idle_timeout,
        );
        for addr in &dns_addrs {
            tracing::info!(%addr, "DNS listening (UDP and TCP)");
        }
        if let Some((addr, ..)) = &http {
            tracing::info!(%addr, "HTTP listening (/metrics)");
        }
        Ok(Hedgerow {
            config_path,
            overrides,
            metrics,
            pipeline,
            inflight,
            server,
            http,
            dns_addrs,
        })
    }

    /// The bound DNS addresses (UDP and TCP share each).
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.dns_addrs
    }

    /// The bound HTTP address, if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(a, ..)| *a)
    }

    /// Shared metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Re-reads the configuration and swaps in a new pipeline. On any error the pipeline in
    /// force stays, and the error says why. Listener addresses need a restart to change.
    pub fn reload(&self) -> Result<(), AppError> {
        let result = self.rebuild();
        match result {
            Ok(pipeline) => {
                self.pipeline.store(Arc::new(pipeline));
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                tracing::info!("configuration reloaded");
                Ok(())
            }
            Err(error) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(%error, "configuration reload failed; the previous configuration stays in force");
                Err(error)
            }
        }
    }

    fn rebuild(&self) -> Result<Pipeline, AppError> {
        let config = load(self.config_path.as_deref(), &self.overrides)?;
        if config.server.listen.len() != self.dns_addrs.len() {
            tracing::warn!("listen addresses changed: restart Hedgerow to apply them");
        }
        Ok(chain::build(
            &config,
            &ChainParts {
                metrics: self.metrics.clone(),
                sink: None,
            },
        )?)
    }

    /// Stops accepting queries, lets those in flight finish (up to `grace`), and stops.
    pub async fn shutdown(mut self, grace: Duration) {
        self.inflight.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        while self.inflight.count.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.inflight.count.load(Ordering::SeqCst);
        if left > 0 {
            tracing::warn!(
                left,
                "grace period over; abandoning queries still in flight"
            );
        }
        self.server.shutdown_token().cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.server.block_until_done()).await;
        if let Some((_, task, stop)) = self.http.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        tracing::info!("stopped");
    }
}

impl InFlight {
    /// Registers a query; `None` while draining (the query is dropped unanswered, so the
    /// client retries another server).
    pub(crate) fn enter(self: &Arc<Self>) -> Option<InFlightGuard> {
        if self.draining.load(Ordering::Relaxed) {
            return None;
        }
        self.count.fetch_add(1, Ordering::SeqCst);
        Some(InFlightGuard(self.clone()))
    }
}

/// Decrements the in-flight count when a query is done.
pub(crate) struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
    }
}

fn load(path: Option<&std::path::Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let mut config = match path {
        Some(path) => Config::from_file(path)?,
        None => Config::embedded_default(),
    };
    config.override_with(&overrides.listen, &overrides.upstreams, overrides.http);
    Ok(config)
}

/// Runs Hedgerow until `shutdown` completes: reloads on SIGHUP, then drains gracefully.
pub async fn run(
    config_path: Option<PathBuf>,
    overrides: Overrides,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let config = load(config_path.as_deref(), &overrides)?;
    let grace = config.server.shutdown_grace;
    let app = Hedgerow::start(config_path, overrides).await?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading");
                let _ = app.reload();
            }
        }
    }
    tracing::info!("shutting down");
    app.shutdown(grace).await;
    Ok(())
}
