//! Signing in and out, sessions, the security token on every form, and the [`Viewer`] every
//! page is shown to.
//!
//! - Passwords are checked against the store's argon2id hashes on the blocking pool; a
//!   missing account costs the same hash as a wrong password, so names cannot be probed by
//!   timing. A second factor (TOTP) is asked of every account that has one enrolled, and an
//!   account whose roles `[dashboard] require_totp` names cannot sign in without one; a code
//!   is accepted once.
//! - Throttling: [`ACCOUNT_FAILURES`] failures for one account, or [`ADDRESS_FAILURES`] from
//!   one address, within [`FAILURE_WINDOW`] lock it for [`LOCKOUT`]. Every sign-in, failure,
//!   lockout and sign-out goes to the audit trail.
//! - Sessions live in memory (a restart signs everyone out): a random 256-bit token in an
//!   `HttpOnly`, `SameSite=Strict` cookie (`Secure` under HTTPS), ended after
//!   `session_idle_minutes` without a request or `session_max_hours` after sign-in. Each
//!   request re-reads the account, so disabling it or changing its roles applies at once.
//! - Every form carries a token tied to the session ([`Submitted`] checks it before the form
//!   is read); the sign-in form's token is tied to a short-lived cookie instead.
//! - Passwords are taken only over HTTPS, on a loopback-only listener, or with
//!   `allow_plain_http = true` (a TLS reverse proxy in front).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Mutex,
    time::{Duration, SystemTime},
};

use askama::Template;
use axum::{
    extract::{
        ConnectInfo, FromRequest, FromRequestParts, OptionalFromRequestParts, Query, Request, State,
    },
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use serde::{de::DeserializeOwned, Deserialize};

use crate::{
    accounts::{password, totp, Roles},
    config::dashboard::DashboardConfig,
    schedule::TimeZone,
    store::{LoginOutcome, UserRecord},
};

pub(super) use super::page::Viewer;
use super::{
    page::{self, home, Chrome, PageError},
    Dashboard, Transport,
};

/// Where people sign in.
pub const LOGIN_PATH: &str = "/login";
const SESSION_COOKIE: &str = "hedgerow_session";
/// Carries the nonce the sign-in form's token is made from.
const LOGIN_COOKIE: &str = "hedgerow_signin";
/// Failures for one account that lock it.
pub const ACCOUNT_FAILURES: usize = 5;
/// Failures from one address that lock it.
pub const ADDRESS_FAILURES: usize = 20;
/// Failures count within this window.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a lock lasts.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Unblock requests one address may send in an hour.
pub const REQUESTS_PER_HOUR: usize = 10;
/// Sessions kept at most (the oldest are ended first).
const MAX_SESSIONS: usize = 10_000;
/// A form body is at most this big.
const MAX_FORM_BYTES: usize = 64 * 1024;
struct Session {
    name: String,
    csrf: String,
    started: SystemTime,
    seen: SystemTime,
}

#[derive(Default)]
struct Failures {
    recent: Vec<SystemTime>,
    locked_until: Option<SystemTime>,
}

impl Failures {
    /// Still locked at `now`: until when.
    fn locked(&self, now: SystemTime) -> Option<SystemTime> {
        self.locked_until.filter(|&until| until > now)
    }

    /// Records a failure; returns true when it locks.
    fn fail(&mut self, now: SystemTime, limit: usize) -> bool {
        self.recent
            .retain(|&t| now.duration_since(t).unwrap_or_default() < FAILURE_WINDOW);
        self.recent.push(now);
        if self.recent.len() >= limit {
            self.locked_until = Some(now + LOCKOUT);
            self.recent.clear();
            return true;
        }
        false
    }
}

#[derive(Default)]
struct Throttle {
    accounts: HashMap<String, Failures>,
    addresses: HashMap<IpAddr, Failures>,
    /// Unblock requests by address, within the last hour.
    requests: HashMap<IpAddr, Vec<SystemTime>>,
}

/// The sign-in state of the dashboard.
pub(super) struct Auth {
    idle: Duration,
    max: Duration,
    require_totp: Roles,
    secure: bool,
    login_allowed: bool,
    zone: TimeZone,
    key: ring::hmac::Key,
    sessions: Mutex<HashMap<String, Session>>,
    throttle: Mutex<Throttle>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// 32 random bytes as hex.
fn random_token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    // The system's random source failing is not something a sign-in can work around; a
    // zeroed token would be guessable, so fail closed with an unusable, unique-per-call token.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        tracing::error!("dashboard: the system random source failed");
        return String::new();
    }
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Auth {
    pub(super) fn new(config: &DashboardConfig, transport: Transport, zone: TimeZone) -> Auth {
        let key_bytes = random_token();
        Auth {
            idle: config.session_idle,
            max: config.session_max,
            require_totp: config.require_totp,
            secure: transport.tls,
            login_allowed: transport.login_allowed(config),
            zone,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key_bytes.as_bytes()),
            sessions: Mutex::default(),
            throttle: Mutex::default(),
        }
    }

    /// The school's time zone.
    pub(super) fn zone(&self) -> TimeZone {
        self.zone
    }

    /// The sign-in form's token for a nonce.
    fn login_token(&self, nonce: &str) -> String {
        hex(ring::hmac::sign(&self.key, nonce.as_bytes()).as_ref())
    }

    /// The token for a form shown to someone not signed in (sign-in, an unblock request),
    /// and the cookie carrying the nonce it is made from (kept if the browser has one).
    pub(super) fn anonymous_token(&self, headers: &HeaderMap) -> (String, HeaderValue) {
        let nonce = cookie_value(headers, LOGIN_COOKIE)
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .map_or_else(random_token, str::to_string);
        (
            self.login_token(&nonce),
            self.cookie(LOGIN_COOKIE, &nonce, Some(Duration::from_secs(3600))),
        )
    }

    /// Whether a form shown to someone not signed in came back with its token.
    pub(super) fn anonymous_token_ok(&self, headers: &HeaderMap, token: &str) -> bool {
        let nonce = cookie_value(headers, LOGIN_COOKIE).unwrap_or("");
        same(token, &self.login_token(nonce))
    }

    /// Whether an unblock request form came back with its token: the session's (`csrf`) when
    /// someone is signed in, or the anonymous form's (`token`) — a form drawn before its
    /// sender signed in, in another tab, still counts.
    pub(super) fn request_token_ok(
        &self,
        viewer: Option<&Viewer>,
        headers: &HeaderMap,
        csrf: &str,
        token: &str,
    ) -> bool {
        viewer.is_some_and(|v| same(csrf, &v.csrf)) || self.anonymous_token_ok(headers, token)
    }

    /// Counts a request from `addr` (unblock requests from the block page): false once it
    /// has made [`REQUESTS_PER_HOUR`] within the hour.
    pub(super) fn allow_request(&self, addr: IpAddr, now: SystemTime) -> bool {
        let mut t = lock(&self.throttle);
        let recent = t.requests.entry(addr).or_default();
        recent.retain(|&at| now.duration_since(at).unwrap_or_default() < Duration::from_secs(3600));
        if recent.len() >= REQUESTS_PER_HOUR {
            return false;
        }
        recent.push(now);
        true
    }

    fn cookie(&self, name: &str, value: &str, max_age: Option<Duration>) -> HeaderValue {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        if self.secure {
            c.push_str("; Secure");
        }
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The session for a token, if it is still valid (and marks it used).
    fn session(&self, token: &str, now: SystemTime) -> Option<(String, String)> {
        let mut sessions = lock(&self.sessions);
        let s = sessions.get_mut(token)?;
        let idle = now.duration_since(s.seen).unwrap_or_default();
        let age = now.duration_since(s.started).unwrap_or_default();
        if idle >= self.idle || age >= self.max {
            sessions.remove(token);
            return None;
        }
        s.seen = now;
        Some((s.name.clone(), s.csrf.clone()))
    }

    fn start_session(&self, name: &str, now: SystemTime) -> String {
        let token = random_token();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| {
            now.duration_since(s.seen).unwrap_or_default() < self.idle
                && now.duration_since(s.started).unwrap_or_default() < self.max
        });
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.seen)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            token.clone(),
            Session {
                name: name.to_string(),
                csrf: random_token(),
                started: now,
                seen: now,
            },
        );
        token
    }

    fn end_session(&self, token: &str) -> Option<String> {
        lock(&self.sessions).remove(token).map(|s| s.name)
    }

    /// Ends every session of an account (disabled, or its password changed elsewhere).
    fn end_sessions_of(&self, name: &str) {
        lock(&self.sessions).retain(|_, s| s.name != name);
    }

    /// Until when an account or an address is locked, if it is.
    fn locked(&self, name: &str, addr: IpAddr, now: SystemTime) -> Option<SystemTime> {
        let t = lock(&self.throttle);
        let a = t.accounts.get(name).and_then(|f| f.locked(now));
        let b = t.addresses.get(&addr).and_then(|f| f.locked(now));
        a.max(b)
    }

    /// Records a failure; returns true when it locked the account or the address.
    fn failed(&self, name: &str, addr: IpAddr, now: SystemTime) -> bool {
        let mut t = lock(&self.throttle);
        let by_account = t
            .accounts
            .entry(name.to_string())
            .or_default()
            .fail(now, ACCOUNT_FAILURES);
        let by_address = t
            .addresses
            .entry(addr)
            .or_default()
            .fail(now, ADDRESS_FAILURES);
        by_account || by_address
    }

    fn succeeded(&self, name: &str) {
        lock(&self.throttle).accounts.remove(name);
    }
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The client's address (the HTTP listener puts it on every request; `0.0.0.0` when a
/// request comes from elsewhere, as in tests without a socket).
pub(super) struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientAddr, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

/// Not signed in (or no longer allowed): to the sign-in page, coming back afterwards.
pub(super) struct SignIn(String);

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        Redirect::to(&format!("{LOGIN_PATH}?next={}", page::q(&self.0))).into_response()
    }
}

/// The person signed in on this request: `None` when there is no session, it has ended, or
/// the account is disabled or has no role any more (its sessions are then ended); `Err`
/// only when the store cannot be read.
async fn signed_in(parts: &Parts, dashboard: &Dashboard) -> Result<Option<Viewer>, Response> {
    let inner = &dashboard.inner;
    let now = inner.clock.now();
    let Some(token) = cookie_value(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some((name, csrf)) = inner.auth.session(token, now) else {
        return Ok(None);
    };
    let lookup = name.clone();
    let user = dashboard
        .read(move |r| r.user(&lookup))
        .await
        .map_err(IntoResponse::into_response)?;
    match user {
        Some(u) if !u.disabled && !u.roles.is_empty() => Ok(Some(Viewer {
            name,
            roles: u.roles,
            csrf,
            school: inner.school.clone(),
            zone: inner.auth.zone,
            now,
        })),
        _ => {
            inner.auth.end_sessions_of(&name);
            Ok(None)
        }
    }
}

/// A page for signed-in people: anyone else is sent to the sign-in page, to come back here.
impl FromRequestParts<Dashboard> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        dashboard: &Dashboard,
    ) -> Result<Viewer, Response> {
        signed_in(parts, dashboard).await?.ok_or_else(|| {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            SignIn(path.to_string()).into_response()
        })
    }
}

/// A page anyone may open (the unblock request form): `Option<Viewer>` is the person when
/// someone is signed in, so the page shows their header and navigation, and `None` otherwise.
impl OptionalFromRequestParts<Dashboard> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        dashboard: &Dashboard,
    ) -> Result<Option<Viewer>, Response> {
        signed_in(parts, dashboard).await
    }
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A form from a signed-in person whose security token matched; the form is read only after
/// the token is checked.
pub(super) struct Submitted<T> {
    /// Who sent it.
    pub viewer: Viewer,
    /// What they sent.
    pub form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<Dashboard> for Submitted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, dashboard: &Dashboard) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let viewer =
            <Viewer as FromRequestParts<Dashboard>>::from_request_parts(&mut parts, dashboard)
                .await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| PageError::BadRequest("The form is too large.".into()).into_response())?;
        let token: CsrfField =
            serde_urlencoded::from_bytes(&bytes).map_err(|_| PageError::Csrf.into_response())?;
        if !same(&token.csrf, &viewer.csrf) {
            return Err(PageError::Csrf.into_response());
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            PageError::BadRequest(format!("The form could not be read: {e}")).into_response()
        })?;
        Ok(Submitted { viewer, form })
    }
}

pub(super) fn routes() -> Router<Dashboard> {
    Router::new()
        .route(LOGIN_PATH, get(login_page).post(login))
        .route("/logout", post(logout))
}

#[derive(Template)]
#[template(path = "login.html", config = "dashboard/askama.toml")]
struct LoginPage {
    chrome: Chrome,
    token: String,
    next: String,
    name: String,
    message: String,
    allowed: bool,
}

#[derive(Deserialize, Default)]
struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// Only paths on this site (`/…`, never `//host` or a full URL).
fn safe_next(next: &str) -> Option<&str> {
    (next.starts_with('/') && !next.starts_with("//") && !next.contains('\\')).then_some(next)
}

fn login_form(
    dashboard: &Dashboard,
    headers: &HeaderMap,
    next: &str,
    name: &str,
    message: String,
    status: StatusCode,
) -> Result<Response, PageError> {
    let inner = &dashboard.inner;
    let (token, cookie) = inner.auth.anonymous_token(headers);
    let made = page::local_time(inner.auth.zone, inner.clock.now());
    let page = LoginPage {
        chrome: Chrome::anonymous(&inner.school, "Sign in", made),
        token,
        next: safe_next(next).unwrap_or("").to_string(),
        name: name.to_string(),
        allowed: inner.auth.login_allowed,
        message,
    };
    let mut response = page::render(&page)?;
    *response.status_mut() = status;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

async fn login_page(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Result<Response, PageError> {
    login_form(
        &dashboard,
        &headers,
        &query.next,
        "",
        String::new(),
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: String,
}

/// What a sign-in attempt came to.
enum Attempt {
    In(UserRecord),
    Refused(LoginOutcome, String),
}

async fn login(
    State(dashboard): State<Dashboard>,
    request: Request,
) -> Result<Response, PageError> {
    let (mut parts, body) = request.into_parts();
    let Ok(ClientAddr(addr)) = ClientAddr::from_request_parts(&mut parts, &()).await;
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| PageError::BadRequest("The form is too large.".into()))?;
    let form: LoginForm = serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| PageError::BadRequest("The sign-in form could not be read.".into()))?;
    let auth = &dashboard.inner.auth;
    if !auth.anonymous_token_ok(&parts.headers, &form.token) {
        return Err(PageError::Csrf);
    }
    let retry = |message: String| {
        login_form(
            &dashboard,
            &parts.headers,
            &form.next,
            &form.name,
            message,
            StatusCode::UNAUTHORIZED,
        )
    };
    if !auth.login_allowed {
        return retry(
            "Signing in over plain HTTP is switched off: passwords would cross the network \
             unprotected. Use the dashboard's https:// address."
                .into(),
        );
    }
    let name = form.name.trim().to_string();
    let now = dashboard.now();
    if let Some(until) = auth.locked(&name, addr, now) {
        record(&dashboard, &name, addr, LoginOutcome::LockedOut).await;
        return retry(format!(
            "Too many failed sign-ins. Try again after {}.",
            page::local_clock(auth.zone, until)
        ));
    }
    let attempt = check_credentials(&dashboard, &name, &form.password, &form.code, now).await?;
    let user = match attempt {
        Attempt::In(user) => user,
        Attempt::Refused(outcome, message) => {
            record(&dashboard, &name, addr, outcome).await;
            let counts = matches!(
                outcome,
                LoginOutcome::BadPassword | LoginOutcome::BadCode | LoginOutcome::UnknownUser
            );
            if counts && auth.failed(&name, addr, now) {
                record(&dashboard, &name, addr, LoginOutcome::LockedOut).await;
            }
            return retry(message);
        }
    };
    auth.succeeded(&user.name);
    record(&dashboard, &user.name, addr, LoginOutcome::Success).await;
    let token = auth.start_session(&user.name, now);
    let to = safe_next(&form.next)
        .filter(|n| !n.starts_with(LOGIN_PATH))
        .unwrap_or(home(user.roles))
        .to_string();
    let mut response = Redirect::to(&to).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        auth.cookie(SESSION_COOKIE, &token, None),
    );
    headers.append(
        header::SET_COOKIE,
        auth.cookie(LOGIN_COOKIE, "", Some(Duration::ZERO)),
    );
    Ok(response)
}

/// Checks a name, password and code; argon2 runs on the blocking pool.
async fn check_credentials(
    dashboard: &Dashboard,
    name: &str,
    password_text: &str,
    code: &str,
    now: SystemTime,
) -> Result<Attempt, PageError> {
    const WRONG: &str = "The name or password is not right.";
    let lookup = name.to_string();
    let user = dashboard.read(move |r| r.user(&lookup)).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let typed = password_text.to_string();
    // A missing account costs a hash too, so names cannot be probed by timing.
    let matches = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => password::verify(&hash, &typed),
        None => password::verify_nobody(&typed),
    })
    .await?;
    let Some(user) = user else {
        return Ok(Attempt::Refused(LoginOutcome::UnknownUser, WRONG.into()));
    };
    if !matches {
        return Ok(Attempt::Refused(LoginOutcome::BadPassword, WRONG.into()));
    }
    if user.disabled || user.roles.is_empty() {
        return Ok(Attempt::Refused(
            LoginOutcome::Disabled,
            "This account is switched off. Ask the school's technician.".into(),
        ));
    }
    let auth = &dashboard.inner.auth;
    if user.totp_secret.is_some() {
        if code.trim().is_empty() {
            return Ok(Attempt::Refused(
                LoginOutcome::BadCode,
                "Enter the 6-digit code from your authenticator app.".into(),
            ));
        }
        if !totp_ok(dashboard, &user, code, now).await? {
            return Ok(Attempt::Refused(
                LoginOutcome::BadCode,
                "That code is not right (or was already used). Wait for the next code and try again."
                    .into(),
            ));
        }
    } else if user.roles.iter().any(|r| auth.require_totp.contains(r)) {
        return Ok(Attempt::Refused(
            LoginOutcome::BadCode,
            format!(
                "Your role needs a second factor and this account has none yet. Ask the \
                 technician to run `hedgerow user totp {}` with you.",
                user.name
            ),
        ));
    }
    Ok(Attempt::In(user))
}

/// Accepts a TOTP code once (the store keeps the last time step used, so a code seen by
/// someone looking over a shoulder cannot be used again).
async fn totp_ok(
    dashboard: &Dashboard,
    user: &UserRecord,
    code: &str,
    now: SystemTime,
) -> Result<bool, PageError> {
    let Some(secret) = user
        .totp_secret
        .as_deref()
        .and_then(|s| totp::Secret::from_base32(s).ok())
    else {
        return Ok(false);
    };
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let Some(step) = totp::verify(&secret, code.trim(), unix) else {
        return Ok(false);
    };
    let name = user.name.clone();
    dashboard
        .write(move |c| c.claim_totp_step(&name, step))
        .await
}

/// Writes a sign-in record to the audit trail (a failure to write is logged, not shown).
async fn record(dashboard: &Dashboard, name: &str, addr: IpAddr, outcome: LoginOutcome) {
    let name = if name.is_empty() { "(no name)" } else { name }.to_string();
    if let Err(error) = dashboard
        .write(move |c| c.record_login(&name, Some(addr), outcome))
        .await
    {
        tracing::warn!(%error, "dashboard: sign-in not recorded in the audit trail");
    }
}

async fn logout(
    State(dashboard): State<Dashboard>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    _checked: Submitted<CsrfField>,
) -> Response {
    let auth = &dashboard.inner.auth;
    if let Some(name) = cookie_value(&headers, SESSION_COOKIE).and_then(|t| auth.end_session(t)) {
        record(&dashboard, &name, addr, LoginOutcome::Logout).await;
    }
    let mut response = Redirect::to(LOGIN_PATH).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        auth.cookie(SESSION_COOKIE, "", Some(Duration::ZERO)),
    );
    response
}
