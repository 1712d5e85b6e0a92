//! Wiring: configuration → metrics → lists → pipeline → DNS listeners + HTTP listener, reload
//! on SIGHUP or when the compiled lists change on disk, and a graceful drain on shutdown.
//!
//! This file only connects parts; each part lives in its own module. Work that blocks (reading
//! and hashing list artifacts, fsyncing the audit trail, reading the neighbour table) runs on
//! tokio's blocking pool, never on a runtime worker that answers DNS.

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;

use crate::{
    alerts::{AlertError, Alerter, BreachAlert},
    clock::Clock,
    config::{Config, ConfigError},
    dashboard::{self, Dashboard, HealthLine, ListLine, ListsView, Services},
    http::{self, HttpError},
    identity::{
        leases::Lease,
        sessions::{SessionError, SessionsToken},
        watch::{self, LeaseWatcher, WatchEvent},
    },
    lists::{self, ListError},
    metrics::{Metrics, MetricsError},
    neighbours::Neighbours,
    pipeline::{
        cache::CacheStore,
        chain::{self, ChainError, ChainParts},
        Pipeline,
    },
    report::Scheduled,
    server::{Handler, ListenError, Listeners, ServeOptions, Sockets},
    store::{AuditKind, BreachNotice, Commands, LeaseRecord, Store, StoreError},
};

/// How often the artifact folder is checked for a newly compiled list.
const LIST_POLL: Duration = Duration::from_secs(2);
/// How often the neighbour table is re-read for devices pinned by MAC address.
const NEIGHBOUR_POLL: Duration = Duration::from_secs(10);
/// How often the weekly report's schedule is checked (it is due once a week).
const REPORT_POLL: Duration = Duration::from_secs(60);
/// After a failed weekly report, wait this long before trying again.
const REPORT_RETRY: Duration = Duration::from_secs(3600);

/// Why Hedgerow could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The pipeline could not be built.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A DNS socket could not be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The HTTP socket could not be bound.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The dashboard's certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] http::tls::TlsError),
    /// Metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The compiled lists could not be loaded.
    #[error(transparent)]
    Lists(#[from] ListError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The alert channels could not be set up.
    #[error(transparent)]
    Alerts(#[from] AlertError),
    /// A DHCP lease file could not be followed.
    #[error("cannot follow the lease file {path}: {source}")]
    Leases {
        /// The lease file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The sessions API's token file is unusable.
    #[error(transparent)]
    SessionsToken(#[from] SessionError),
    /// A blocking task was lost (the runtime is shutting down).
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A DNS listener stopped while the process was running (exit, so systemd restarts us).
    #[error("{0}; exiting so that the service is restarted")]
    ListenerFailed(String),
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
    /// The clock for schedules, grants and records (tests inject one); `None` is the system
    /// clock.
    pub clock: Option<Clock>,
}

/// What triggered a reload: it decides what is re-read and which counter counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// SIGHUP or [`Hedgerow::reload`]: the configuration file, and the lists if they changed.
    Configuration,
    /// The compiled lists changed on disk: the lists, under the configuration in force.
    ListsChanged,
}

impl Trigger {
    fn reason(self) -> &'static str {
        match self {
            Trigger::Configuration => "reload requested (SIGHUP)",
            Trigger::ListsChanged => "compiled lists changed on disk",
        }
    }
}

/// What is in force, replaced as a whole by a successful reload.
struct InForce {
    config: Config,
    parts: ChainParts,
    /// When the artifact in force was written (to notice a new one).
    lists_stamp: Option<SystemTime>,
}

/// The parts that reloads and background jobs share.
struct Inner {
    config_path: Option<PathBuf>,
    overrides: Overrides,
    metrics: Arc<Metrics>,
    /// The store's commands: the audit trail of policy and list changes.
    audit: Commands,
    pipeline: Arc<ArcSwap<Pipeline>>,
    /// Also serialises reloads.
    in_force: Mutex<InForce>,
}

/// A running Hedgerow: DNS and HTTP listeners and the pipeline in force.
pub struct Hedgerow {
    inner: Arc<Inner>,
    server: Option<Listeners>,
    http: Option<http::Listener>,
    dns_addrs: Vec<SocketAddr>,
    /// Closed last, after DNS has drained, so every finished query is written.
    store: Option<Store>,
    /// Follow the configured DHCP lease files into the store.
    lease_watchers: Vec<LeaseWatcher>,
    /// Forwards high-severity breach notices to the alerter.
    alerts: Option<tokio::task::JoinHandle<Alerter>>,
    /// Writes (and emails) the weekly report on Monday mornings.
    weekly_report: tokio::task::JoinHandle<()>,
}

impl Hedgerow {
    /// Reads the configuration (`None`: the embedded default), applies `overrides`, binds the
    /// listeners and starts answering.
    pub async fn start(
        config_path: Option<PathBuf>,
        overrides: Overrides,
    ) -> Result<Hedgerow, AppError> {
        let config = load(config_path.as_deref(), &overrides)?;
        Self::start_with(config, config_path, overrides).await
    }

    /// Starts with `config`, already read from `config_path` (which reloads re-read).
    async fn start_with(
        config: Config,
        config_path: Option<PathBuf>,
        overrides: Overrides,
    ) -> Result<Hedgerow, AppError> {
        let metrics = Arc::new(Metrics::new()?);
        let clock = overrides.clock.clone().unwrap_or_default();
        let (config, lists, store) = {
            let (registry, clock) = (metrics.registry().clone(), clock.clone());
            tokio::task::spawn_blocking(move || {
                let lists = lists::configured::open(&config);
                let store = Store::open(&config.store, &config.server.data_dir, clock, &registry);
                (config, lists, store)
            })
            .await?
        };
        let (lists, store) = (Arc::new(lists?), store?);
        metrics.publish_lists(lists.meta());
        let audit = store.commands();
        let parts = ChainParts {
            metrics: metrics.clone(),
            // With the query log off, the record stage builds no events at all.
            sink: config.store.enabled.then(|| store.sink()),
            lists,
            cache: Arc::new(CacheStore::new()),
            buckets: Default::default(),
            clock: clock.clone(),
            neighbours: Neighbours::default(),
        };
        let pipeline = Arc::new(ArcSwap::from_pointee(chain::build(&config, &parts)?));
        let started = format!(
            "policy in force at start-up: {} group(s); lists built {} ({} names)",
            config.groups.len(),
            parts.lists.meta().built,
            parts.lists.meta().names
        );
        let (log, actor) = (audit.clone(), actor(&config));
        tokio::task::spawn_blocking(move || {
            record(
                &log,
                &actor,
                AuditKind::Policy,
                &started,
                "Hedgerow started",
            )
        })
        .await?;
        let lease_watchers = follow_leases(&config, &audit, &clock)?;
        let sessions_api = match config.identity.sessions_token_file.clone() {
            Some(file) => Some(http::sessions::SessionsApi {
                token: tokio::task::spawn_blocking(move || SessionsToken::read(&file)).await??,
                commands: store.commands(),
                clock: clock.clone(),
            }),
            None => None,
        };
        let weekly_report = tokio::spawn(weekly_reports(
            Scheduled::new(&config, store.reader(), store.commands()),
            clock.clone(),
        ));
        // Without an alert channel the receiver is dropped here, and the writer stops sending.
        let alerts = match store.take_breach_notices() {
            Some(notices) => {
                let alerter = Alerter::new(&config.alerts, clock.clone(), metrics.registry())?;
                alerter
                    .enabled()
                    .then(|| tokio::spawn(forward_alerts(notices, alerter)))
            }
            None => None,
        };

        let open_files = crate::server::descriptors::raise_open_file_limit();
        let sockets = Sockets::bind(&config.server.listen).await?;
        let dns_addrs = sockets.local_addrs();
        let options = ServeOptions::new(&config.server, open_files, metrics.clone());
        let budget = options.budget;
        let server = sockets.serve(Handler::new(pipeline.clone()), options);
        let tls = match &config.dashboard.tls {
            Some(files) => {
                let (cert, key) = (files.cert.clone(), files.key.clone());
                Some(
                    tokio::task::spawn_blocking(move || http::tls::server_config(&cert, &key))
                        .await??,
                )
            }
            None => None,
        };
        let inner = Arc::new(Inner {
            config_path,
            overrides,
            metrics: metrics.clone(),
            audit,
            pipeline,
            in_force: Mutex::new(InForce {
                lists_stamp: lists::configured::stamp(&config.lists.artifact_dir),
                config: config.clone(),
                parts,
            }),
        });
        let http = match config.server.http {
            Some(addr) => {
                let dashboard = config.dashboard.enabled.then(|| {
                    Dashboard::new(
                        &config.dashboard,
                        dashboard::Transport {
                            tls: tls.is_some(),
                            listen: addr.ip(),
                        },
                        config.server.timezone,
                        store.reader(),
                        store.commands(),
                        clock.clone(),
                        Arc::new(Console {
                            inner: inner.clone(),
                            health: server.health(),
                        }),
                    )
                    .routes()
                });
                Some(
                    http::Listener::bind(
                        addr,
                        http::router(
                            metrics.clone(),
                            Some(server.health()),
                            sessions_api,
                            dashboard,
                        ),
                        http::HttpOptions {
                            max_connections: budget.http,
                            tls,
                        },
                        metrics.clone(),
                    )
                    .await?,
                )
            }
            None => None,
        };
        for addr in &dns_addrs {
            tracing::info!(%addr, "DNS listening (UDP and TCP)");
        }
        if let Some(http) = &http {
            tracing::info!(addr = %http.local_addr(), "HTTP listening (/metrics, dashboard)");
        }
        Ok(Hedgerow {
            inner,
            server: Some(server),
            http,
            dns_addrs,
            store: Some(store),
            lease_watchers,
            alerts,
            weekly_report,
        })
    }

    /// The bound DNS addresses (UDP and TCP share each).
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.dns_addrs
    }

    /// The bound HTTP address, if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(http::Listener::local_addr)
    }

    /// Completes, saying which, if a DNS listener ends or panics before shutdown.
    pub fn listener_failed(&self) -> impl Future<Output = String> + Send + 'static {
        let failed = self.server.as_ref().map(Listeners::failed);
        async move {
            match failed {
                Some(failed) => failed.await,
                None => std::future::pending().await,
            }
        }
    }

    /// Shared metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Re-reads the configuration (and the compiled lists, if they changed) and swaps in a new
    /// pipeline. On any error the pipeline in force stays, and the error says why. Listener
    /// addresses need a restart to change.
    pub async fn reload(&self) -> Result<(), AppError> {
        self.reload_for(Trigger::Configuration).await
    }

    /// Reloads when the compiled artifact on disk has changed since it was opened.
    pub async fn reload_lists_if_changed(&self) {
        let _ = self.reload_for(Trigger::ListsChanged).await;
    }

    async fn reload_for(&self, trigger: Trigger) -> Result<(), AppError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.reload(trigger)).await?
    }

    /// Re-reads the neighbour table when a device is pinned by MAC address.
    pub async fn refresh_neighbours(&self) {
        let neighbours = {
            let in_force = lock(&self.inner.in_force);
            if !in_force.config.devices.iter().any(|d| d.mac.is_some()) {
                return;
            }
            in_force.parts.neighbours.clone()
        };
        let path = std::path::Path::new(crate::neighbours::PROC_ARP);
        if let Ok(table) = tokio::task::spawn_blocking(move || crate::neighbours::read(path)).await
        {
            neighbours.store(Arc::new(table));
        }
    }

    /// Stops taking queries, lets those in flight finish (up to the configured grace period),
    /// and stops.
    pub async fn shutdown(mut self) {
        let grace = lock(&self.inner.in_force).config.server.shutdown_grace;
        if let Some(listeners) = self.server.take() {
            listeners.shutdown(grace).await;
        }
        if let Some(http) = self.http.take() {
            http.shutdown(Duration::from_secs(1)).await;
        }
        self.weekly_report.abort();
        let watchers = std::mem::take(&mut self.lease_watchers);
        let (store, alerts) = (self.store.take(), self.alerts.take());
        // The store drains last: every query answered above is in its queues by now. Closing
        // it ends the breach notices, which ends the alert forwarder; queued alerts are then
        // delivered (or given up after their retries).
        let closed = tokio::task::spawn_blocking(move || {
            for w in watchers {
                w.stop();
            }
            store.map(Store::close)
        })
        .await;
        if let Ok(Some(Err(error))) = closed {
            tracing::error!(%error, "the store did not close cleanly; the journal keeps what was not written");
        }
        if let Some(alerts) = alerts {
            if let Ok(alerter) = alerts.await {
                let _ = tokio::task::spawn_blocking(move || alerter.close()).await;
            }
        }
        tracing::info!("stopped");
    }
}

impl Inner {
    /// Rebuilds the pipeline for `trigger`, counts the outcome, and audits what changed.
    /// Blocking: runs on tokio's blocking pool.
    fn reload(&self, trigger: Trigger) -> Result<(), AppError> {
        let mut in_force = lock(&self.in_force);
        let stamp = lists::configured::stamp(&in_force.config.lists.artifact_dir);
        if trigger == Trigger::ListsChanged {
            if stamp.is_none() || stamp == in_force.lists_stamp {
                return Ok(());
            }
            tracing::info!("compiled lists changed on disk: reloading");
            // Recorded first, so a broken artifact is reported once, not at every poll.
            in_force.lists_stamp = stamp;
        }
        let result = self.rebuild(&mut in_force, trigger);
        if trigger == Trigger::Configuration {
            let outcome = if result.is_ok() { "ok" } else { "error" };
            self.metrics
                .config_reloads
                .with_label_values(&[outcome])
                .inc();
        }
        match &result {
            Ok(()) if trigger == Trigger::Configuration => tracing::info!("configuration reloaded"),
            Ok(()) => tracing::info!("compiled lists reloaded"),
            Err(error) => tracing::error!(
                %error,
                "reload failed; the previous configuration and lists stay in force"
            ),
        }
        result
    }

    fn rebuild(&self, in_force: &mut InForce, trigger: Trigger) -> Result<(), AppError> {
        let config = match trigger {
            Trigger::Configuration => load(self.config_path.as_deref(), &self.overrides)?,
            Trigger::ListsChanged => in_force.config.clone(),
        };
        if config.server.listen != in_force.config.server.listen {
            tracing::warn!("listen addresses changed: restart Hedgerow to apply them");
        }
        let stamp = lists::configured::stamp(&config.lists.artifact_dir);
        let old = &in_force.config.lists;
        let lists_changed = trigger == Trigger::ListsChanged
            || stamp != in_force.lists_stamp
            || config.lists.artifact_dir != old.artifact_dir
            || config.lists.illegal_list != old.illegal_list
            || config.lists.illegal_key_file != old.illegal_key_file;
        let mut parts = in_force.parts.clone();
        if lists_changed {
            // A shrunk, unforced artifact is refused and the lists in force stay.
            let opened = lists::configured::open_replacement(&config, in_force.parts.lists.meta());
            let outcome = match &opened {
                Ok(_) => "ok",
                Err(ListError::Shrunk { .. }) => "refused",
                Err(_) => "error",
            };
            self.metrics
                .list_reloads
                .with_label_values(&[outcome])
                .inc();
            parts.lists = Arc::new(opened?);
        }
        let pipeline = chain::build(&config, &parts)?;
        self.pipeline.store(Arc::new(pipeline));

        let reason = trigger.reason();
        for change in crate::audit::diff(&in_force.config, &config) {
            record(
                &self.audit,
                &actor(&config),
                AuditKind::Policy,
                &change,
                reason,
            );
        }
        if lists_changed {
            let (old_meta, new_meta) = (in_force.parts.lists.meta(), parts.lists.meta());
            self.metrics.publish_lists(new_meta);
            if old_meta.built_unix != new_meta.built_unix || old_meta.names != new_meta.names {
                let change = format!(
                    "lists in force: built {} with {} names (was built {} with {})",
                    new_meta.built, new_meta.names, old_meta.built, old_meta.names
                );
                let actor = format!("compiled lists in {}", config.lists.artifact_dir.display());
                record(&self.audit, &actor, AuditKind::List, &change, reason);
            }
        }
        *in_force = InForce {
            config,
            parts,
            lists_stamp: stamp,
        };
        Ok(())
    }
}

/// Appends one record to the audit trail. A failed write is logged loudly and never stops
/// the resolver (the change itself is already in force). Blocking.
fn record(audit: &Commands, actor: &str, kind: AuditKind, change: &str, reason: &str) {
    tracing::info!(target: "audit", %actor, %reason, "{change}");
    if let Err(error) = audit.append_audit(actor, kind, change, reason) {
        tracing::error!(%error, "cannot write the audit trail");
    }
}

/// Starts following each configured DHCP lease file; every new or renewed lease becomes a
/// lease record, so queries are attributed to the device that held the address then.
fn follow_leases(
    config: &Config,
    commands: &Commands,
    clock: &Clock,
) -> Result<Vec<LeaseWatcher>, AppError> {
    config
        .identity
        .dhcp
        .iter()
        .map(|source| {
            let (commands, clock) = (commands.clone(), clock.clone());
            let name = source.path.display().to_string();
            LeaseWatcher::spawn(
                source.path.clone(),
                source.format,
                watch::DEFAULT_INTERVAL,
                move |event| match event {
                    WatchEvent::Changed(changes) => {
                        for lease in changes.changed {
                            let record = lease_record(lease, &name, clock.now());
                            if let Err(error) = commands.add_lease(&record) {
                                tracing::warn!(%error, file = %name, "lease not recorded");
                            }
                        }
                    }
                    WatchEvent::Unavailable { file, reason } => {
                        tracing::warn!(file = %file.display(), %reason, "lease file unavailable");
                    }
                    WatchEvent::BadLines(errors) => {
                        tracing::warn!(file = %name, lines = errors.len(), "lease file lines skipped");
                    }
                },
            )
            .map_err(|source_error| AppError::Leases {
                path: source.path.clone(),
                source: source_error,
            })
        })
        .collect()
}

/// A lease as the store keeps it. dnsmasq does not record when a lease started: it is taken
/// to have started one poll before it was seen, when the file last changed at the latest.
fn lease_record(lease: Lease, source: &str, seen: SystemTime) -> LeaseRecord {
    let starts = lease
        .starts
        .unwrap_or_else(|| seen.checked_sub(watch::DEFAULT_INTERVAL).unwrap_or(seen));
    LeaseRecord {
        ip: lease.ip,
        mac: lease.mac,
        hostname: lease.hostname,
        starts,
        ends: lease.ends.max(starts + Duration::from_secs(1)),
        source: source.to_string(),
    }
}

/// Hands each high-severity breach notice to the alerter until the store closes; returns the
/// alerter so shutdown can let it finish its deliveries.
async fn forward_alerts(
    mut notices: tokio::sync::mpsc::Receiver<BreachNotice>,
    alerter: Alerter,
) -> Alerter {
    while let Some(n) = notices.recv().await {
        alerter.submit(BreachAlert {
            breach_id: n.breach_id,
            device: n.device,
            group: n.group,
            category: n.category,
            severity: n.severity,
            domain: n.domain,
            count: n.count,
            first: n.first,
            last: n.last,
            dashboard_url: None,
        });
    }
    alerter
}

/// Writes the weekly report when it is due (Monday 07:00 school time), and at start-up when
/// the last full week's is missing (the server was down on Monday morning). The report's
/// file is the record that it ran, so nothing is written or sent twice.
async fn weekly_reports(scheduled: Scheduled, clock: Clock) {
    let mut tick = tokio::time::interval(REPORT_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        if retry_at.is_some_and(|at| tokio::time::Instant::now() < at) {
            continue;
        }
        let (job, now) = (scheduled.clone(), clock.now());
        match tokio::task::spawn_blocking(move || job.run_if_due(now)).await {
            Ok(Ok(_)) => retry_at = None,
            Ok(Err(error)) => {
                tracing::error!(%error, "the weekly report could not be made; trying again in an hour");
                retry_at = Some(tokio::time::Instant::now() + REPORT_RETRY);
            }
            Err(_) => return,
        }
    }
}

/// Who changes the policy when a configuration is loaded.
fn actor(config: &Config) -> String {
    format!("configuration file {}", config.source.display())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn load(path: Option<&std::path::Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let mut config = match path {
        Some(path) => Config::from_file(path)?,
        None => Config::embedded_default(),
    };
    config.override_with(&overrides.listen, &overrides.upstreams, overrides.http);
    Ok(config)
}

/// Runs Hedgerow until `shutdown` completes: reloads on SIGHUP or when the compiled lists
/// change, then drains gracefully.
pub async fn run(
    config_path: Option<PathBuf>,
    overrides: Overrides,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let config = load(config_path.as_deref(), &overrides)?;
    let app = Hedgerow::start_with(config, config_path, overrides).await?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut watch = tokio::time::interval(LIST_POLL);
    let mut arp = tokio::time::interval(NEIGHBOUR_POLL);
    let failed = app.listener_failed();
    tokio::pin!(shutdown, failed);
    let mut outcome = Ok(());
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            why = &mut failed => {
                outcome = Err(AppError::ListenerFailed(why));
                break;
            }
            _ = watch.tick() => app.reload_lists_if_changed().await,
            _ = arp.tick() => app.refresh_neighbours().await,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading");
                let _ = app.reload().await;
            }
        }
    }
    tracing::info!("shutting down");
    app.shutdown().await;
    outcome
}

/// What the dashboard asks of the running resolver ([`Services`]).
struct Console {
    inner: Arc<Inner>,
    health: crate::server::Health,
}

impl Console {
    fn config(&self) -> Config {
        lock(&self.inner.in_force).config.clone()
    }
}

/// The sum of a counter family's samples whose labels pass `keep`.
fn counter_sum(
    families: &[prometheus::proto::MetricFamily],
    name: &str,
    keep: impl Fn(&[prometheus::proto::LabelPair]) -> bool,
) -> f64 {
    families
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter(|m| keep(m.get_label()))
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        // Not `sum()`: an empty f64 sum is -0.0, which the health page printed as "-0".
        .fold(0.0, |a, b| a + b)
}

impl Services for Console {
    fn health(&self) -> Vec<HealthLine> {
        let mut out: Vec<HealthLine> = self
            .health
            .report()
            .1
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(what, state)| HealthLine {
                what: what.to_string(),
                ok: state == "up",
                detail: if state == "up" {
                    "answering".into()
                } else {
                    "stopped".into()
                },
            })
            .collect();
        let families = self.inner.metrics.registry().gather();
        let config = self.config();
        for upstream in &config.upstream.servers {
            let label = upstream.to_string();
            let of = |outcome: &'static str| {
                let label = label.clone();
                counter_sum(&families, "hedgerow_upstream_responses_total", move |l| {
                    l.iter()
                        .any(|p| p.name() == "upstream" && p.value() == label)
                        && l.iter().any(|p| {
                            p.name() == "outcome" && (outcome.is_empty() || p.value() == outcome)
                        })
                })
            };
            let (all, ok) = (of(""), of("answer"));
            out.push(HealthLine {
                what: format!("Upstream {label}"),
                ok: all == 0.0 || ok > 0.0,
                detail: format!("{ok:.0} of {all:.0} exchanges answered since start"),
            });
        }
        let entries = counter_sum(&families, "hedgerow_cache_entries", |_| true);
        out.push(HealthLine {
            what: "Cache".into(),
            ok: true,
            detail: format!("{entries:.0} answers held"),
        });
        let queued = counter_sum(&families, "hedgerow_store_channel_depth", |_| true);
        let journal = counter_sum(&families, "hedgerow_store_journal_bytes", |_| true);
        out.push(HealthLine {
            what: "Query log".into(),
            ok: journal == 0.0,
            detail: if !config.store.enabled {
                "switched off in the configuration".into()
            } else if journal > 0.0 {
                format!("behind: {journal:.0} bytes of blocked queries wait in the journal file")
            } else {
                format!("keeping up ({queued:.0} queries waiting to be written)")
            },
        });
        out
    }

    fn lists(&self) -> ListsView {
        let dir = self.config().lists.artifact_dir;
        match lists::Meta::read(&dir) {
            Ok(meta) => ListsView {
                built: Some(crate::civil::from_unix_secs(
                    i64::try_from(meta.built_unix).unwrap_or(i64::MAX),
                )),
                names: meta.names,
                sources: meta
                    .sources
                    .iter()
                    .map(|s| ListLine {
                        name: s.location.clone(),
                        category: s.category.clone(),
                        entries: s.entries,
                        version: s.sha256.chars().take(12).collect(),
                    })
                    .collect(),
                last_update: None,
            },
            Err(error) => ListsView {
                last_update: Some(format!("no compiled lists could be read: {error}")),
                ..ListsView::default()
            },
        }
    }

    fn policy_text(&self) -> String {
        crate::describe::describe(&self.config())
    }

    fn groups(&self) -> Vec<String> {
        self.config()
            .groups
            .iter()
            .map(|g| g.name.clone())
            .collect()
    }
}
