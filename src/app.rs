//! Wiring: configuration → metrics → pipeline → DNS listener + HTTP listener, reload on
//! SIGHUP, and a graceful drain on shutdown.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use crate::{
    audit::{AuditLog, AuditRecord},
    clock::Clock,
    config::{Config, ConfigError},
    lists::{compile, Blocklists, CompileOptions, IllegalSource, ListError, Manifest},
    metrics::{Metrics, MetricsError},
    neighbours::Neighbours,
    pipeline::{
        cache::CacheStore,
        chain::{self, ChainError, ChainParts},
        Pipeline,
    },
    server::{Handler, ListenError, Listeners, Sockets},
};

/// How often the artifact folder is checked for a newly compiled list.
const LIST_POLL: Duration = Duration::from_secs(2);
/// How often the neighbour table is re-read for devices pinned by MAC address.
const NEIGHBOUR_POLL: Duration = Duration::from_secs(10);

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
    /// The compiled lists could not be loaded.
    #[error(transparent)]
    Lists(#[from] ListError),
}

/// Command-line values that override the configuration file (and survive reloads).
#[derive(Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Vec<SocketAddr>,
    /// `--upstream`.
    pub upstreams: Vec<SocketAddr>,
    /// `--http`.
    pub http: Option<SocketAddr>,
    /// The clock for schedules and grants (tests inject one); `None` is the system clock.
    pub clock: Option<Clock>,
}

/// A running Hedgerow: DNS and HTTP listeners and the pipeline in force.
pub struct Hedgerow {
    config_path: Option<PathBuf>,
    overrides: Overrides,
    metrics: Arc<Metrics>,
    parts: Mutex<ChainParts>,
    lists_stamp: Mutex<Option<SystemTime>>,
    /// The configuration in force (for the audit diff on reload).
    config: Mutex<Config>,
    audit: AuditLog,
    pipeline: Arc<ArcSwap<Pipeline>>,
    server: Option<Listeners>,
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
        let metrics = Arc::new(Metrics::new()?);
        let lists = Arc::new(open_lists(&config)?);
        publish_list_metrics(&metrics, &lists);
        let parts = ChainParts {
            metrics: metrics.clone(),
            sink: None,
            lists,
            cache: Arc::new(CacheStore::new()),
            buckets: Default::default(),
            clock: overrides.clock.clone().unwrap_or_default(),
            neighbours: Neighbours::default(),
        };
        let pipeline = chain::build(&config, &parts)?;
        let lists_stamp = Mutex::new(artifact_stamp(&config.lists.artifact_dir));
        let audit = AuditLog::in_dir(&config.server.data_dir);
        audit.append(&[AuditRecord {
            at: crate::audit::now(),
            actor: actor(&config),
            change: format!(
                "policy in force at start-up: {} group(s); lists built {} ({} names)",
                config.groups.len(),
                parts.lists.meta().built,
                parts.lists.meta().names
            ),
            reason: "Hedgerow started".into(),
        }]);
        let pipeline = Arc::new(ArcSwap::from_pointee(pipeline));

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
            Handler::new(pipeline.clone()),
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
            parts: Mutex::new(parts),
            lists_stamp,
            config: Mutex::new(config),
            audit,
            pipeline,
            server: Some(server),
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

    /// Re-reads the configuration and the compiled lists and swaps in a new pipeline. On any
    /// error the pipeline in force stays, and the error says why. Listener addresses need a
    /// restart to change.
    pub fn reload(&self) -> Result<(), AppError> {
        self.reload_because("reload requested (SIGHUP)")
    }

    fn reload_because(&self, reason: &str) -> Result<(), AppError> {
        let result = self.rebuild(reason);
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

    fn rebuild(&self, reason: &str) -> Result<Pipeline, AppError> {
        let config = load(self.config_path.as_deref(), &self.overrides)?;
        if config.server.listen.len() != self.dns_addrs.len() {
            tracing::warn!("listen addresses changed: restart Hedgerow to apply them");
        }
        let mut parts = lock(&self.parts).clone();
        let stamp = artifact_stamp(&config.lists.artifact_dir);
        parts.lists = Arc::new(open_lists(&config).inspect_err(|_| {
            self.metrics
                .list_reloads
                .with_label_values(&["error"])
                .inc();
        })?);
        *lock(&self.lists_stamp) = stamp;
        let pipeline = chain::build(&config, &parts)?;
        self.metrics.list_reloads.with_label_values(&["ok"]).inc();
        publish_list_metrics(&self.metrics, &parts.lists);
        let mut records: Vec<AuditRecord> = crate::audit::diff(&lock(&self.config), &config)
            .into_iter()
            .map(|change| AuditRecord {
                at: crate::audit::now(),
                actor: actor(&config),
                change,
                reason: reason.to_string(),
            })
            .collect();
        let (old_meta, new_meta) = (lock(&self.parts).lists.meta().clone(), parts.lists.meta());
        if old_meta.built_unix != new_meta.built_unix || old_meta.names != new_meta.names {
            records.push(AuditRecord {
                at: crate::audit::now(),
                actor: format!("compiled lists in {}", config.lists.artifact_dir.display()),
                change: format!(
                    "lists in force: built {} with {} names (was built {} with {})",
                    new_meta.built, new_meta.names, old_meta.built, old_meta.names
                ),
                reason: reason.to_string(),
            });
        }
        self.audit.append(&records);
        *lock(&self.parts) = parts;
        *lock(&self.config) = config;
        Ok(pipeline)
    }

    /// Re-reads the neighbour table when a device is pinned by MAC address (off the DNS
    /// path, on a blocking thread).
    pub async fn refresh_neighbours(&self) {
        let pinned = lock(&self.config).devices.iter().any(|d| d.mac.is_some());
        if !pinned {
            return;
        }
        let path = std::path::Path::new(crate::neighbours::PROC_ARP);
        if let Ok(table) = tokio::task::spawn_blocking(move || crate::neighbours::read(path)).await
        {
            lock(&self.parts).neighbours.store(Arc::new(table));
        }
    }

    /// Reloads when the compiled artifact on disk has changed since it was opened.
    pub fn reload_lists_if_changed(&self) {
        let dir = lock(&self.config).lists.artifact_dir.clone();
        let stamp = artifact_stamp(&dir);
        if stamp.is_none() || stamp == *lock(&self.lists_stamp) {
            return;
        }
        tracing::info!(dir = %dir.display(), "compiled lists changed on disk: reloading");
        // Record the stamp first so a broken artifact is reported once, not every poll.
        *lock(&self.lists_stamp) = stamp;
        let _ = self.reload_because("compiled lists changed on disk");
    }

    /// Stops accepting queries, lets those in flight finish (up to `grace`), and stops.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(listeners) = self.server.take() {
            listeners.shutdown(grace).await;
        }
        if let Some((_, task, stop)) = self.http.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        tracing::info!("stopped");
    }
}

/// Who changes the policy when a configuration is loaded.
fn actor(config: &Config) -> String {
    format!("configuration file {}", config.source.display())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// When the artifact's metadata was last written (it is renamed into place last).
fn artifact_stamp(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir.join("meta.toml"))
        .and_then(|m| m.modified())
        .ok()
}

/// Opens the compiled lists named by `config`, compiling them first when the configuration
/// asks for that and none exist. Never returns an empty snapshot silently: a school filter
/// must not start unfiltered.
pub fn open_lists(config: &Config) -> Result<Blocklists, ListError> {
    let l = &config.lists;
    let key = l
        .illegal_list
        .as_ref()
        .map(|_| l.illegal_key_file.as_path());
    match Blocklists::open(&l.artifact_dir, key) {
        Err(ListError::NoArtifact { .. }) if l.compile_if_missing => {
            tracing::info!(manifest = %l.manifest.display(), "no compiled lists yet: compiling");
            let report = compile(&compile_options(config)?)?;
            tracing::info!("{}", report.to_string().lines().next().unwrap_or_default());
            Blocklists::open(&l.artifact_dir, key)
        }
        other => other,
    }
}

/// What `hedgerow lists compile` and `compile_if_missing` compile.
pub fn compile_options(config: &Config) -> Result<CompileOptions, ListError> {
    let l = &config.lists;
    Ok(CompileOptions {
        manifest: Manifest::load(&l.manifest)?.with_cache_dir(&l.download_dir),
        out_dir: l.artifact_dir.clone(),
        illegal: l.illegal_list.as_ref().map(|list| IllegalSource {
            list: list.clone(),
            key: l.illegal_key_file.clone(),
        }),
    })
}

fn publish_list_metrics(metrics: &Metrics, lists: &Blocklists) {
    for (category, count) in lists.meta().category_counts() {
        metrics
            .list_entries
            .with_label_values(&[category])
            .set(count as i64);
    }
    metrics.lists_built.set(lists.meta().built_unix as i64);
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
    let mut watch = tokio::time::interval(LIST_POLL);
    let mut arp = tokio::time::interval(NEIGHBOUR_POLL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = watch.tick() => app.reload_lists_if_changed(),
            _ = arp.tick() => app.refresh_neighbours().await,
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
