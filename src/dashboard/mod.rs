//! The web dashboard: what the DSL, approvers, technicians and governors open in a browser.
//!
//! Server-rendered HTML (askama templates under the top-level `dashboard/`, compiled and
//! embedded into the binary), one stylesheet, no script and nothing fetched from outside: it
//! works on a school network with no internet. One file per page family; every page reads
//! through the store's [`Reader`] and writes through its [`Commands`], always on the blocking
//! pool. What only the resolver knows (the policy in force, a name's verdict for each group,
//! the lists, health, filtering checks, live grants) comes through [`Services`], which
//! `app.rs` implements — the dashboard never imports the DNS path.
//!
//! Access is by role ([`crate::accounts::Role`]): a governor sees aggregates only, never a
//! device, person or address; a technician without `dsl` sees no pupil-level record. Every
//! view of one device's or one person's records is written to the audit trail.

mod assets;
mod auth;
mod breaches;
mod chart;
mod overview;
mod page;
mod queries;
mod trail;

use std::{net::IpAddr, sync::Arc, time::SystemTime};

use axum::{routing::get, Router};

use crate::{
    clock::Clock,
    config::dashboard::DashboardConfig,
    schedule::TimeZone,
    store::{Commands, Reader, StoreError},
};

pub use auth::LOGIN_PATH;

/// One line of resolver health for the overview ("Upstream 10.0.0.1: answering").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthLine {
    /// What ("DNS listener 10.0.0.2:53", "Query log").
    pub what: String,
    /// Working as it should.
    pub ok: bool,
    /// In plain words.
    pub detail: String,
}

/// One list source as the technician sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListLine {
    /// The list's name.
    pub name: String,
    /// Its category.
    pub category: String,
    /// Entries.
    pub entries: u64,
    /// Version or checksum, as recorded at the last update.
    pub version: String,
}

/// The lists in force.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListsView {
    /// When the artifact in force was built.
    pub built: Option<SystemTime>,
    /// Names in it.
    pub names: u64,
    /// Its sources.
    pub sources: Vec<ListLine>,
    /// The last update's result, in plain words.
    pub last_update: Option<String>,
}

/// What only the running resolver can tell the dashboard. Implemented in `app.rs`.
pub trait Services: Send + Sync + 'static {
    /// Resolver health: listeners, upstreams, cache, the query log's lag.
    fn health(&self) -> Vec<HealthLine>;
    /// The lists in force.
    fn lists(&self) -> ListsView;
    /// Each group's policy in plain English (what `check-config` prints).
    fn policy_text(&self) -> String;
    /// The configured groups' names, in configuration order.
    fn groups(&self) -> Vec<String>;
}

/// How the dashboard is being reached, which decides whether passwords may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// Served over HTTPS.
    pub tls: bool,
    /// The listener's address (a loopback-only listener may take plain-HTTP logins).
    pub listen: IpAddr,
}

impl Transport {
    /// Logins may be taken here: HTTPS, a loopback-only listener, or an explicit
    /// `allow_plain_http` (a TLS reverse proxy in front).
    pub fn login_allowed(self, config: &DashboardConfig) -> bool {
        self.tls || self.listen.is_loopback() || config.allow_plain_http
    }
}

/// The dashboard's state, shared by every request.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

struct Inner {
    reader: Reader,
    commands: Commands,
    clock: Clock,
    auth: auth::Auth,
    services: Arc<dyn Services>,
    school: String,
}

impl Dashboard {
    /// The dashboard over a store, served on `transport`, showing times in `zone`.
    pub fn new(
        config: &DashboardConfig,
        transport: Transport,
        zone: TimeZone,
        reader: Reader,
        commands: Commands,
        clock: Clock,
        services: Arc<dyn Services>,
    ) -> Dashboard {
        let school = if config.school_name.is_empty() {
            "Hedgerow".to_string()
        } else {
            config.school_name.clone()
        };
        Dashboard {
            inner: Arc::new(Inner {
                auth: auth::Auth::new(config, transport, zone),
                reader,
                commands,
                clock,
                services,
                school,
            }),
        }
    }

    /// Its routes (mounted at `/` by the HTTP listener).
    pub fn routes(self) -> Router {
        Router::new()
            .route("/static/style.css", get(assets::style))
            .merge(auth::routes())
            .merge(overview::routes())
            .merge(breaches::routes())
            .merge(queries::routes())
            .merge(trail::routes())
            .with_state(self)
    }

    /// Runs `read` with the store's reader on the blocking pool.
    async fn read<T, F>(&self, read: F) -> Result<T, page::PageError>
    where
        T: Send + 'static,
        F: FnOnce(&Reader) -> Result<T, StoreError> + Send + 'static,
    {
        let reader = self.inner.reader.clone();
        Ok(tokio::task::spawn_blocking(move || read(&reader)).await??)
    }

    /// Runs `write` with the store's commands on the blocking pool.
    async fn write<T, F>(&self, write: F) -> Result<T, page::PageError>
    where
        T: Send + 'static,
        F: FnOnce(&Commands) -> Result<T, StoreError> + Send + 'static,
    {
        let commands = self.inner.commands.clone();
        Ok(tokio::task::spawn_blocking(move || write(&commands)).await??)
    }

    /// Now, by the one clock.
    fn now(&self) -> SystemTime {
        self.inner.clock.now()
    }
}
