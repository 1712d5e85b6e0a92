//! Wiring: configuration → metrics → lists → pipeline → DNS listeners + HTTP listener, reload
//! on SIGHUP or when the compiled lists change on disk, live grants from the store, and a
//! graceful drain on shutdown.
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
    alerts::{AlertError, Alerter, BreachAlert, CheckAlert, CheckFailure},
    checks::{self, CheckError},
    clock::Clock,
    config::{Config, ConfigError},
    dashboard::{
        self, BlockedSite, CategoryLine, Dashboard, GroupPolicyText, GroupVerdict, HealthLine,
        ListLine, ListsView, Services,
    },
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
        grants::{Grant, Grants, LiveGrants},
        Pipeline,
    },
    report::Scheduled,
    server::{Handler, ListenError, Listeners, ServeOptions, Sockets},
    store::{
        AuditKind, BreachNotice, CheckItem, CheckKind, CheckRun, CheckTrigger, Commands,
        LeaseRecord, Reader, Store, StoreError,
    },
};

/// How often the artifact folder is checked for a newly compiled list.
const LIST_POLL: Duration = Duration::from_secs(2);
/// How often the neighbour table is re-read for devices pinned by MAC address.
const NEIGHBOUR_POLL: Duration = Duration::from_secs(10);
/// How often the weekly report's schedule is checked (it is due once a week).
const REPORT_POLL: Duration = Duration::from_secs(60);
/// After a failed weekly report, wait this long before trying again.
const REPORT_RETRY: Duration = Duration::from_secs(3600);
/// How often the store is checked for grants changed by another process (the command line).
const GRANTS_POLL: Duration = Duration::from_secs(5);
/// The filtering checks' schedule is looked at again at least this often (a reload may change
/// the period, a run from the dashboard moves the next one).
const CHECK_POLL: Duration = Duration::from_secs(3600);
/// After a scheduled check that could not run or be recorded, wait this long.
const CHECK_RETRY: Duration = Duration::from_secs(3600);
/// Who the audit trail names for scheduled filtering checks.
const SCHEDULE_ACTOR: &str = "Hedgerow (filtering check schedule)";

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
    /// A filtering check could not be planned.
    #[error(transparent)]
    Checks(#[from] CheckError),
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
    /// The lists in force, readable without the reload lock (for [`Hedgerow::is_illegal`]).
    lists: ArcSwap<lists::Blocklists>,
    /// The live grants table and its loader.
    grants: GrantsHandle,
    /// The one clock (tests inject one).
    clock: Clock,
    /// Also serialises reloads.
    in_force: Mutex<InForce>,
}

/// A running Hedgerow: DNS and HTTP listeners and the pipeline in force.
pub struct Hedgerow {
    inner: Arc<Inner>,
    server: Option<Listeners>,
    /// The listeners' health, for [`Hedgerow::services`].
    health: crate::server::Health,
    http: Option<http::Listener>,
    /// The block page's listener, when `[dashboard] block_page` is set.
    block_page: Option<http::Listener>,
    dns_addrs: Vec<SocketAddr>,
    /// Closed last, after DNS has drained, so every finished query is written.
    store: Option<Store>,
    /// Follow the configured DHCP lease files into the store.
    lease_watchers: Vec<LeaseWatcher>,
    /// Forwards high-severity breach notices to the alerter.
    alerts: Option<tokio::task::JoinHandle<Alerter>>,
    /// Writes (and emails) the weekly report on Monday mornings.
    weekly_report: tokio::task::JoinHandle<()>,
    /// Picks up grants changed by another process, and drops lapsed ones from the table.
    grants_poll: tokio::task::JoinHandle<()>,
    /// Runs the filtering checks on their schedule.
    scheduled_checks: tokio::task::JoinHandle<()>,
}

/// A cheap, cloneable handle on the grants the resolver applies. The dashboard calls
/// [`GrantsHandle::refresh`] right after it approves, grants or revokes, so the change is in
/// force before the page answers; changes made by the command line are picked up within
/// five seconds without it.
#[derive(Clone)]
pub struct GrantsHandle {
    state: Arc<GrantsState>,
}

struct GrantsState {
    live: Arc<LiveGrants>,
    reader: Reader,
    clock: Clock,
    /// The store's grants generation the table was loaded at. Held while loading, so two
    /// loads never interleave and an older read never replaces a newer one.
    loaded: Mutex<Option<u64>>,
}

impl GrantsHandle {
    fn new(reader: Reader, clock: Clock) -> GrantsHandle {
        GrantsHandle {
            state: Arc::new(GrantsState {
                live: Arc::new(LiveGrants::new()),
                reader,
                clock,
                loaded: Mutex::new(None),
            }),
        }
    }

    /// Re-reads the grants in force from the store (on the blocking pool) and puts them in
    /// force for every query that starts after this returns.
    pub async fn refresh(&self) {
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.load(true)).await;
    }

    /// Re-reads the grants only when the store says they changed, or when one in the table
    /// has lapsed (a lapsed grant already counts for nothing; this only keeps the table
    /// small, and empty again when the last one lapses).
    async fn poll(&self) {
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.load(false)).await;
    }

    /// The grants in force, as the resolver applies them.
    pub fn in_force(&self) -> Arc<Grants> {
        self.state.live.snapshot()
    }
}

impl GrantsState {
    /// Loads the grants in force into the live table. Blocking. A failed read is logged and
    /// the table in force stays (grants only ever allow; keeping them a few seconds longer
    /// is bounded by their expiry, which every query checks).
    fn load(&self, force: bool) {
        let mut loaded = lock(&self.loaded);
        let generation = match self.reader.grants_generation() {
            Ok(generation) => generation,
            Err(error) => {
                tracing::error!(%error, "cannot read the grants; the grants in force stay");
                return;
            }
        };
        let now = self.clock.now();
        let changed = *loaded != Some(generation);
        let lapsed = self
            .live
            .snapshot()
            .earliest_expiry()
            .is_some_and(|e| e <= now);
        if !force && !changed && !lapsed {
            return;
        }
        match self.reader.active_grants(now) {
            Ok(records) => {
                let n = records.len();
                self.live
                    .replace(Grants::new(records.into_iter().map(|r| Grant {
                        group: r.group,
                        name: r.name,
                        expires: r.expires,
                    })));
                if changed && loaded.is_some() {
                    tracing::info!(grants = n, "grants changed: {n} in force");
                }
                *loaded = Some(generation);
            }
            Err(error) => {
                tracing::error!(%error, "cannot read the grants; the grants in force stay")
            }
        }
    }
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
        let grants = GrantsHandle::new(store.reader(), clock.clone());
        grants.refresh().await;
        let parts = ChainParts {
            metrics: metrics.clone(),
            // With the query log off, the record stage builds no events at all.
            sink: config.store.enabled.then(|| store.sink()),
            lists,
            grants: grants.state.live.clone(),
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
        let sockets = Sockets::bind(&config.server.listen, config.server.udp_sockets).await?;
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
            lists: ArcSwap::new(parts.lists.clone()),
            grants,
            clock: clock.clone(),
            in_force: Mutex::new(InForce {
                lists_stamp: lists::configured::stamp(&config.lists.artifact_dir),
                config: config.clone(),
                parts,
            }),
        });
        let dashboard = config.dashboard.enabled.then(|| {
            Dashboard::new(
                &config.dashboard,
                dashboard::Transport {
                    tls: tls.is_some(),
                    listen: config
                        .server
                        .http
                        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip()),
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
        });
        let http = match config.server.http {
            Some(addr) => Some(
                http::Listener::bind(
                    addr,
                    http::router(
                        metrics.clone(),
                        Some(server.health()),
                        sessions_api,
                        dashboard.clone().map(Dashboard::routes),
                    ),
                    http::HttpOptions {
                        max_connections: budget.http,
                        tls,
                    },
                    metrics.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let block_page = match (config.dashboard.block_page, dashboard) {
            (Some(addr), Some(dashboard)) => Some(
                http::Listener::bind(
                    addr,
                    dashboard.block_page_routes(),
                    http::HttpOptions {
                        max_connections: budget.http,
                        tls: None,
                    },
                    metrics.clone(),
                )
                .await?,
            ),
            _ => None,
        };
        for addr in &dns_addrs {
            tracing::info!(%addr, "DNS listening (UDP and TCP)");
        }
        if let Some(http) = &http {
            tracing::info!(addr = %http.local_addr(), "HTTP listening (/metrics, dashboard)");
        }
        if let Some(page) = &block_page {
            tracing::info!(addr = %page.local_addr(), "block page listening");
        }
        let grants_poll = tokio::spawn(poll_grants(inner.grants.clone()));
        let scheduled_checks = tokio::spawn(scheduled_checks(
            inner.clone(),
            store.reader(),
            clock.clone(),
        ));
        Ok(Hedgerow {
            inner,
            health: server.health(),
            server: Some(server),
            http,
            block_page,
            dns_addrs,
            store: Some(store),
            lease_watchers,
            alerts,
            weekly_report,
            grants_poll,
            scheduled_checks,
        })
    }

    /// The block page's bound address, when it is served.
    pub fn block_page_addr(&self) -> Option<SocketAddr> {
        self.block_page.as_ref().map(http::Listener::local_addr)
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

    /// The live grants: refresh them after approving, granting or revoking.
    pub fn grants(&self) -> GrantsHandle {
        self.inner.grants.clone()
    }

    /// Whether `name` is on the illegal-content tier of the lists in force (any entry: such a
    /// name can never be granted). Callers refuse with neutral words ("this name cannot be
    /// unblocked"); the name is never logged here. A name that is not a valid domain name
    /// is not on the tier.
    pub fn is_illegal(&self, name: &str) -> bool {
        self.inner.is_illegal(name)
    }

    /// What the dashboard asks of this resolver ([`Services`]): health, the policy and lists
    /// in force, and each group's verdict for a name.
    pub fn services(&self) -> Arc<dyn Services> {
        Arc::new(Console {
            inner: self.inner.clone(),
            health: self.health.clone(),
        })
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

    /// Runs the filtering checks now through the pipeline in force, records the run in the
    /// store (with its audit record) and, when an item failed, alerts the DSL through the
    /// configured channels (delivered in the background). `by` is who asked (a dashboard
    /// user); the returned run carries its number and items.
    pub async fn run_checks(&self, trigger: CheckTrigger, by: &str) -> Result<CheckRun, AppError> {
        self.inner.run_checks(trigger, by).await
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
        if let Some(page) = self.block_page.take() {
            page.shutdown(Duration::from_secs(1)).await;
        }
        self.weekly_report.abort();
        self.grants_poll.abort();
        self.scheduled_checks.abort();
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
    /// See [`Hedgerow::run_checks`].
    async fn run_checks(
        self: &Arc<Self>,
        trigger: CheckTrigger,
        by: &str,
    ) -> Result<CheckRun, AppError> {
        // The configuration, lists and pipeline of one moment: a reload swaps the pipeline
        // while holding this lock (on the blocking pool: a reload may hold it for a while).
        let inner = self.clone();
        let (config, lists, clock, pipeline) = tokio::task::spawn_blocking(move || {
            let in_force = lock(&inner.in_force);
            (
                Arc::new(in_force.config.clone()),
                in_force.parts.lists.clone(),
                in_force.parts.clock.clone(),
                inner.pipeline.load_full(),
            )
        })
        .await?;
        let report = checks::run(config.clone(), lists, &pipeline, &clock).await?;
        let mut run = stored_run(report, trigger, by);
        let commands = self.audit.clone();
        let recorded = run.clone();
        run.id = tokio::task::spawn_blocking(move || commands.record_check(&recorded)).await??;
        tracing::info!(
            run = run.id,
            passed = run.passed,
            failed = run.failed,
            "filtering check recorded"
        );
        if run.failed > 0 && config.alerts.enabled() {
            let alert = check_alert(&run);
            let alerts = config.alerts.clone();
            // In the background: a slow receiver must not hold up whoever asked for the run.
            tokio::task::spawn_blocking(move || {
                if let Err(error) = crate::alerts::send_check_alert(&alerts, &alert) {
                    tracing::error!(%error, "the filtering check alert could not be sent");
                }
            });
        }
        Ok(run)
    }

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
        if config.server.udp_sockets != in_force.config.server.udp_sockets {
            tracing::warn!("server.udp_sockets changed: restart Hedgerow to apply it");
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
        self.lists.store(parts.lists.clone());
        // The grants table is one of the parts carried across the rebuild; re-reading it here
        // also applies anything the store holds for groups this configuration added.
        self.grants.state.load(true);

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

/// Polls the store for grant changes (see [`GrantsHandle::poll`]) until aborted.
async fn poll_grants(grants: GrantsHandle) {
    let mut tick = tokio::time::interval(GRANTS_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        grants.poll().await;
    }
}

/// Runs the filtering checks when due (`[checks] every`): the first ~a minute after start-up
/// when none ran within the period (so a restart neither skips nor repeats one), then a
/// period after the last run, whoever started it. The store's last run is the record.
async fn scheduled_checks(inner: Arc<Inner>, reader: Reader, clock: Clock) {
    let started = clock.now();
    loop {
        let read = inner.clone();
        let Ok(every) =
            tokio::task::spawn_blocking(move || lock(&read.in_force).config.checks.every).await
        else {
            return;
        };
        let wait = match every {
            None => CHECK_POLL,
            Some(every) => {
                let reader = reader.clone();
                match tokio::task::spawn_blocking(move || reader.last_check()).await {
                    Ok(Ok(last)) => {
                        checks::until_next(last.map(|r| r.started), every, started, clock.now())
                    }
                    Ok(Err(error)) => {
                        tracing::error!(%error, "cannot read when the filtering checks last ran");
                        CHECK_RETRY
                    }
                    Err(_) => return,
                }
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait.min(CHECK_POLL)).await;
            continue;
        }
        if let Err(error) = inner
            .run_checks(CheckTrigger::Schedule, SCHEDULE_ACTOR)
            .await
        {
            tracing::error!(%error, "the scheduled filtering check failed to run; trying again in an hour");
            tokio::time::sleep(CHECK_RETRY).await;
        }
    }
}

/// The run as the store keeps it (the store counts the totals again from the items).
fn stored_run(report: checks::Report, trigger: CheckTrigger, by: &str) -> CheckRun {
    let items: Vec<CheckItem> = report
        .items
        .into_iter()
        .map(|i| CheckItem {
            group: i.group,
            kind: match i.kind {
                checks::Kind::Blocked => CheckKind::Blocked,
                checks::Kind::Allowed => CheckKind::Allowed,
                checks::Kind::SafeSearch => CheckKind::SafeSearch,
                checks::Kind::Canary => CheckKind::Canary,
                checks::Kind::Illegal => CheckKind::Illegal,
            },
            category: i.category,
            probe: i.probe,
            expected: i.expected,
            observed: i.observed,
            passed: i.passed,
            tested: i.tested,
        })
        .collect();
    let count = |f: fn(&CheckItem) -> bool| {
        u32::try_from(items.iter().filter(|i| f(i)).count()).unwrap_or(u32::MAX)
    };
    // Milliseconds, as the store keeps them, so the run returned is the run read back.
    let millis = |t: SystemTime| crate::clock::from_unix_millis(crate::clock::unix_millis(t));
    CheckRun {
        id: 0,
        started: millis(report.started),
        finished: millis(report.finished),
        trigger,
        by: by.to_string(),
        passed: count(|i| i.tested && i.passed),
        failed: count(CheckItem::failed),
        items,
    }
}

/// The alert for a run with failures.
fn check_alert(run: &CheckRun) -> CheckAlert {
    CheckAlert {
        run_id: run.id,
        started: run.started,
        trigger: run.trigger.describe().to_string(),
        passed: run.passed,
        failed: run.failed,
        failures: run
            .items
            .iter()
            .filter(|i| i.failed())
            .map(|i| CheckFailure {
                group: i.group.clone(),
                what: match &i.category {
                    Some(c) => format!("{} ({c})", i.kind.describe()),
                    None => i.kind.describe().to_string(),
                },
                probe: i.probe.clone(),
                expected: i.expected.clone(),
                observed: i.observed.clone(),
            })
            .collect(),
        dashboard_url: None,
    }
}

/// What `hedgerow check-filtering` did: the recorded run and how each alert channel fared.
pub struct CheckCommand {
    /// The run, as recorded (with its number).
    pub run: CheckRun,
    /// Each configured alert channel's outcome (empty when nothing failed or none is set).
    pub alerts: Vec<crate::alerts::check::Delivery>,
}

/// `hedgerow check-filtering`: builds the pipeline from `config` and the compiled lists as
/// `serve` would (the configured upstreams, a fresh cache, no query log), runs the checks in
/// this process, records the run in the store as the command-line user, and alerts when an
/// item failed (waiting for the deliveries, since the process ends next).
pub async fn check_filtering(config: Config, clock: Clock) -> Result<CheckCommand, AppError> {
    let config = Arc::new(config);
    let lists = {
        let config = config.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || lists::configured::open_to_read(&config)).await??,
        )
    };
    let parts = ChainParts {
        metrics: Arc::new(Metrics::new()?),
        // Check queries are never logged; there is no query log here to begin with.
        sink: None,
        grants: Arc::new(LiveGrants::new()),
        lists: lists.clone(),
        cache: Arc::new(CacheStore::new()),
        buckets: Default::default(),
        clock: clock.clone(),
        neighbours: Neighbours::default(),
    };
    let pipeline = chain::build(&config, &parts)?;
    let report = checks::run(config.clone(), lists, &pipeline, &clock).await?;
    let mut run = stored_run(
        report,
        CheckTrigger::CommandLine,
        &crate::store::cli::actor(),
    );
    let (data_dir, recorded) = (config.server.data_dir.clone(), run.clone());
    run.id = tokio::task::spawn_blocking(move || {
        let (_, commands) = crate::store::open_offline(&data_dir, clock)?;
        commands.record_check(&recorded)
    })
    .await??;
    let mut alerts = Vec::new();
    if run.failed > 0 {
        let (alert, config) = (check_alert(&run), config.clone());
        alerts = tokio::task::spawn_blocking(move || {
            crate::alerts::send_check_alert(&config.alerts, &alert)
        })
        .await??;
    }
    Ok(CheckCommand { run, alerts })
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
    // Before the listeners start: a SIGHUP that arrived between "DNS listening" and the
    // handler would otherwise take its default action and end the process.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let app = Hedgerow::start_with(config, config_path, overrides).await?;
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

impl Inner {
    /// See [`Hedgerow::is_illegal`].
    fn is_illegal(&self, name: &str) -> bool {
        match crate::names::normalise(name) {
            Ok(key) => self.lists.load().illegal(&key).is_some(),
            Err(_) => false,
        }
    }
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

    fn is_illegal(&self, name: &str) -> bool {
        self.inner.is_illegal(name)
    }

    fn blocked_site(&self, client: std::net::IpAddr, name: &str) -> Option<BlockedSite> {
        let config = self.config();
        let lists = self.inner.lists.load_full();
        let grants = self.inner.grants.in_force();
        let now = self.inner.clock.now();
        let reason = crate::lookup::blocked_for(&config, &lists, &grants, name, client, now)?;
        Some(match reason.kind {
            crate::event::BlockReason::Illegal | crate::event::BlockReason::IllegalProxy => {
                BlockedSite::Withheld
            }
            crate::event::BlockReason::Category => BlockedSite::Filtered(
                reason
                    .category
                    .unwrap_or_else(|| "blocked".into())
                    .replace(',', ", "),
            ),
            crate::event::BlockReason::Circumvention => {
                BlockedSite::Filtered("ways round the filter".into())
            }
            crate::event::BlockReason::Deny => {
                BlockedSite::Filtered("blocked by the school".into())
            }
            crate::event::BlockReason::SafeSearchUnenforceable => {
                BlockedSite::Filtered("search without SafeSearch".into())
            }
        })
    }

    fn run_checks(
        &self,
        by: String,
    ) -> futures_util::future::BoxFuture<'static, Result<i64, String>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner
                .run_checks(CheckTrigger::Dashboard, &by)
                .await
                .map(|run| run.id)
                .map_err(|e| e.to_string())
        })
    }

    fn grants_changed(&self) -> futures_util::future::BoxFuture<'static, ()> {
        let grants = self.inner.grants.clone();
        Box::pin(async move { grants.refresh().await })
    }

    fn lists(&self) -> ListsView {
        let (meta, config) = {
            let in_force = lock(&self.inner.in_force);
            (in_force.parts.lists.meta().clone(), in_force.config.clone())
        };
        let last = lists::update::LastUpdate::read(&config.lists.download_dir);
        let source_update = |location: &str| {
            last.as_ref()
                .and_then(|l| l.sources.iter().find(|s| s.url == location))
        };
        ListsView {
            built: Some(meta.built_at()),
            names: meta.names,
            sources: meta
                .sources
                .iter()
                .map(|s| {
                    let update = source_update(&s.location);
                    ListLine {
                        name: s.location.clone(),
                        category: s.category.clone(),
                        entries: s.entries,
                        version: s.sha256.chars().take(12).collect(),
                        last_update: update.map(|u| u.detail.clone()),
                        update_ok: update.is_none_or(|u| u.result.ok()),
                    }
                })
                .collect(),
            categories: meta
                .categories
                .iter()
                .map(|c| CategoryLine {
                    id: c.id.clone(),
                    title: c.title.clone(),
                })
                .collect(),
            last_update: last.as_ref().map(lists::update::LastUpdate::summary),
            updated: last.as_ref().map(lists::update::LastUpdate::finished),
            update_ok: last.as_ref().is_some_and(lists::update::LastUpdate::ok),
        }
    }

    fn group_policies(&self) -> Vec<GroupPolicyText> {
        let config = self.config();
        config
            .groups
            .iter()
            .map(|g| GroupPolicyText {
                group: g.name.clone(),
                // Without the group's networks: one can be a single device's address.
                text: crate::describe::describe_group_rules(&config, g)
                    .lines()
                    .map(str::trim_start)
                    .collect::<Vec<_>>()
                    .join("\n"),
            })
            .collect()
    }

    fn test_name(&self, name: &str) -> Result<Vec<GroupVerdict>, String> {
        let (config, lists, now) = {
            let in_force = lock(&self.inner.in_force);
            (
                in_force.config.clone(),
                in_force.parts.lists.clone(),
                in_force.parts.clock.now(),
            )
        };
        // The manifest explains category blocks (which source line), as `lists lookup` does.
        let manifest = lists::Manifest::load(&config.lists.manifest).ok();
        let grants = self.inner.grants.in_force();
        let (_, verdicts) = crate::lookup::verdicts(
            &config,
            &lists,
            manifest.as_ref(),
            Some(&grants),
            name,
            None,
            now,
        )
        .map_err(|e| e.to_string())?;
        Ok(verdicts
            .iter()
            .map(|v| {
                let mut detail = v.detail();
                for line in v.explanation_lines() {
                    detail.push('\n');
                    detail.push_str(&line);
                }
                GroupVerdict {
                    group: v.group.clone(),
                    blocked: v.blocked(),
                    summary: v.summary(),
                    category: v.category().map(str::to_string),
                    detail,
                }
            })
            .collect())
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
