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
mod blockpage;
mod breaches;
mod chart;
mod checks;
mod overview;
mod page;
mod policy;
mod queries;
mod reports;
mod trail;
mod unblock;

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
    /// What the last list update did to it, in plain words; `None` for a source that is not
    /// downloaded (a file kept on the server) or before the first update.
    pub last_update: Option<String>,
    /// That update left it usable (downloaded, or unchanged).
    pub update_ok: bool,
}

/// A list category: its id (what policies name) and its title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryLine {
    /// The id (`gambling`).
    pub id: String,
    /// The title (`Gambling`).
    pub title: String,
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
    /// Its categories, in bit order.
    pub categories: Vec<CategoryLine>,
    /// The last update's result, in plain words.
    pub last_update: Option<String>,
    /// When the last list update ran (`None`: never, as far as the record says).
    pub updated: Option<SystemTime>,
    /// The last update worked: every source downloaded or unchanged, and the lists compiled.
    pub update_ok: bool,
}

/// One group's policy in plain English.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPolicyText {
    /// The group's name.
    pub group: String,
    /// What it gets: blocked categories, schedules, deny and allow entries, SafeSearch.
    pub text: String,
}

/// The decision one group gets for a name ("test a name"), as `hedgerow lists lookup` gives
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupVerdict {
    /// The group's name.
    pub group: String,
    /// Blocked for this group.
    pub blocked: bool,
    /// In plain words ("blocked: gambling", "allowed with SafeSearch").
    pub summary: String,
    /// The list category (its id, or ids comma separated) that blocked it, when one did: the
    /// pages say its title instead of `summary`'s id.
    pub category: Option<String>,
    /// The rule, category and list entry that decided, and the source lines behind a
    /// category block; empty for the illegal-content list, about which nothing more is said.
    pub detail: String,
}

/// Why a site was blocked for a client, as the block page tells a pupil.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockedSite {
    /// Blocked by the school's filter: the category in plain words ("gambling").
    Filtered(String),
    /// On the illegal-content (IWF) list: neutral wording, no review.
    Withheld,
}

/// What only the running resolver can tell the dashboard. Implemented in `app.rs`.
pub trait Services: Send + Sync + 'static {
    /// Why `name` is blocked for the device at `client` now, or `None` when it is not.
    fn blocked_site(&self, client: IpAddr, name: &str) -> Option<BlockedSite>;
    /// The name is on the illegal-content tier: it can never be unblocked (callers say so
    /// in neutral words and never show or log the name as such).
    fn is_illegal(&self, name: &str) -> bool;
    /// Runs the filtering checks now through the resolver in force, as `by`, records them and
    /// alerts on failure; the run's number, or why it could not run.
    fn run_checks(
        &self,
        by: String,
    ) -> futures_util::future::BoxFuture<'static, Result<i64, String>>;
    /// The grants in the store changed (an approval, a revocation): put them in force now.
    fn grants_changed(&self) -> futures_util::future::BoxFuture<'static, ()>;
    /// Resolver health: listeners, upstreams, cache, the query log's lag.
    fn health(&self) -> Vec<HealthLine>;
    /// The lists in force, and how the last list update went.
    fn lists(&self) -> ListsView;
    /// Each group's policy in plain English (what `check-config` prints).
    fn policy_text(&self) -> String;
    /// Each group's policy alone, in configuration order: no client networks (one can be a
    /// single device's address), no devices pinned to groups, no files of the server (the
    /// governors' annual pack, and the policy page of anyone who does not see records).
    fn group_policies(&self) -> Vec<GroupPolicyText>;
    /// The configured groups' names, in configuration order.
    fn groups(&self) -> Vec<String>;
    /// The decision every group gets for `name` under the configuration and lists in force,
    /// in configuration order; `Err` says in plain words why the name cannot be tested.
    /// Blocking (it may re-read list sources to explain a match): call it on the blocking
    /// pool. The name is not logged.
    fn test_name(&self, name: &str) -> Result<Vec<GroupVerdict>, String>;
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
            .merge(checks::routes())
            .merge(queries::routes())
            .merge(trail::routes())
            .merge(unblock::routes())
            .merge(policy::routes())
            .merge(reports::routes())
            .fallback(not_found)
            .with_state(self)
            .layer(axum::middleware::from_fn(security_headers))
    }

    /// The block page's routes: every path shows the block page for the `Host` asked for,
    /// and the unblock request form is served beside it (`/request`), with the stylesheet.
    /// Served on the address the groups' block answer points browsers to.
    pub fn block_page_routes(self) -> Router {
        blockpage::routes()
            .with_state(self)
            .layer(axum::middleware::from_fn(security_headers))
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

    /// The titles of the categories of the lists in force.
    fn category_titles(&self) -> page::CategoryTitles {
        page::CategoryTitles::new(self.inner.services.lists().categories)
    }

    /// Now, by the one clock.
    fn now(&self) -> SystemTime {
        self.inner.clock.now()
    }
}

/// A mistyped address: the dashboard's own "Not found" page, not an empty answer. (The
/// block page's address has its own answer for every path.)
async fn not_found() -> page::PageError {
    page::PageError::NotFound
}

/// Headers on every dashboard response: no framing by other sites, no content sniffing, no
/// referrer leaking a page's address (which can name a device), only our own stylesheet and
/// images, and pages with records never kept in a shared cache or the browser's history
/// cache.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
