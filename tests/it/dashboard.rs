//! The dashboard's routes driven without a socket (`tower::ServiceExt::oneshot`), over a real
//! SQLite store: who may see what, security tokens on forms, lockout, session expiry, second
//! factor, and a breach case worked from open to closed.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header, Request, StatusCode},
    Router,
};
use hedgerow::{
    accounts::{password, totp, Role, Roles},
    clock::Clock,
    config::{dashboard::DashboardConfig, StoreConfig},
    dashboard::{
        BlockedSite, CategoryLine, Dashboard, GroupPolicyText, GroupVerdict, HealthLine, ListLine,
        ListsView, Services, Transport,
    },
    event::{BlockReason, Disposition, EventName, QueryEvent, Severity},
    schedule::TimeZone,
    store::{AuditKind, Store},
};
use tower::ServiceExt;

use crate::common::tempdir::TempDir;

/// 2026-09-01T10:00:00Z.
const T0_MS: i64 = 1_788_256_800_000;
const PUPIL_DEVICE: &str = "pupil-laptop-7";
const PUPIL_IP: &str = "10.1.2.3";
const PUPIL_PERSON: &str = "jsmith";
const PASSWORD: &str = "correct horse battery staple 42";

/// A name the fixed resolver says is on the illegal-content list.
const ILLEGAL_NAME: &str = "illegal-test.example";

/// The resolver's side, as a fixed answer: these tests are about the dashboard's pages.
/// `illegal.example` is on the illegal tier; `games.example` is blocked as games for pupils.
#[derive(Default)]
struct FixedResolver {
    grants_changed: AtomicI64,
}

impl Services for FixedResolver {
    fn is_illegal(&self, name: &str) -> bool {
        name == "illegal.example"
    }
    fn run_checks(
        &self,
        _by: String,
    ) -> futures_util::future::BoxFuture<'static, Result<i64, String>> {
        Box::pin(async { Err("no resolver in this test".to_string()) })
    }
    fn grants_changed(&self) -> futures_util::future::BoxFuture<'static, ()> {
        self.grants_changed.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }
    fn blocked_site(&self, _client: IpAddr, name: &str) -> Option<BlockedSite> {
        match name {
            "illegal.example" => Some(BlockedSite::Withheld),
            "games.example" => Some(BlockedSite::Filtered("games".into())),
            _ => None,
        }
    }
    fn health(&self) -> Vec<HealthLine> {
        vec![HealthLine {
            what: "DNS listener udp 127.0.0.1:53".into(),
            ok: true,
            detail: "answering".into(),
        }]
    }
    fn lists(&self) -> ListsView {
        ListsView {
            built: Some(UNIX_EPOCH + Duration::from_millis(T0_MS as u64 - 3 * 86_400_000)),
            names: 1234,
            sources: vec![ListLine {
                name: "https://lists.example/self-harm.txt".into(),
                category: "self-harm".into(),
                entries: 1200,
                version: "0123456789ab".into(),
                last_update: Some("unchanged since the last download".into()),
                update_ok: true,
            }],
            categories: vec![CategoryLine {
                id: "self-harm".into(),
                title: "Self-harm and suicide".into(),
            }],
            last_update: Some("sources: 1 unchanged; the lists were compiled".into()),
            updated: Some(UNIX_EPOCH + Duration::from_millis(T0_MS as u64 - 3_600_000)),
            update_ok: true,
        }
    }
    fn policy_text(&self) -> String {
        format!(
            "group `pupils`: clients in {PUPIL_IP}/32\n  blocks pornography\n\n\
             device `{PUPIL_DEVICE}` (address {PUPIL_IP}) is always in group `pupils`\n"
        )
    }
    fn group_policies(&self) -> Vec<GroupPolicyText> {
        vec![
            GroupPolicyText {
                group: "pupils".into(),
                text: "blocks pornography".into(),
            },
            GroupPolicyText {
                group: "staff".into(),
                text: "blocks no list categories".into(),
            },
        ]
    }
    fn groups(&self) -> Vec<String> {
        vec!["pupils".into(), "staff".into()]
    }
    fn test_name(&self, name: &str) -> Result<Vec<GroupVerdict>, String> {
        if !name.contains('.') {
            return Err(format!("`{name}` is not a valid domain name"));
        }
        Ok(self
            .groups()
            .into_iter()
            .map(|group| {
                if name == ILLEGAL_NAME {
                    GroupVerdict {
                        group,
                        blocked: true,
                        summary: "blocked: on the child-abuse (IWF) list".into(),
                        category: None,
                        detail: String::new(),
                    }
                } else if group == "pupils" && name == "games.example" {
                    GroupVerdict {
                        detail: format!("group `{group}`: category games"),
                        group,
                        blocked: true,
                        summary: "blocked: games".into(),
                        category: Some("games".into()),
                    }
                } else if group == "pupils" && name.ends_with("bad.example") {
                    GroupVerdict {
                        detail: format!(
                            "group `{group}`: category self-harm (list entry `bad.example`)"
                        ),
                        group,
                        blocked: true,
                        summary: "blocked: self-harm".into(),
                        category: Some("self-harm".into()),
                    }
                } else {
                    GroupVerdict {
                        group,
                        blocked: false,
                        summary: "allowed".into(),
                        category: None,
                        detail: "no rule matches".into(),
                    }
                }
            })
            .collect())
    }
}

struct Site {
    _dir: TempDir,
    store: Store,
    router: Router,
    block_page: Router,
    resolver: Arc<FixedResolver>,
    now: Arc<AtomicI64>,
}

fn event(t: i64, name: &str, blocked: bool) -> QueryEvent {
    QueryEvent {
        at: UNIX_EPOCH + Duration::from_millis((T0_MS + t) as u64),
        client: PUPIL_IP.parse().unwrap(),
        device: Some(PUPIL_DEVICE.into()),
        group: Some("pupils".into()),
        name: EventName::Clear(name.into()),
        qtype: 1,
        transport: hedgerow::event::Transport::Udp,
        disposition: if blocked {
            Disposition::Blocked
        } else {
            Disposition::Forwarded
        },
        reason: blocked.then_some(BlockReason::Category),
        category: blocked.then(|| "self-harm".into()),
        rule: blocked.then(|| "category self-harm".into()),
        severity: blocked.then_some(Severity::High),
        rcode: if blocked { 3 } else { 0 },
        duration: Duration::from_micros(900),
    }
}

impl Site {
    fn new(tag: &str, config: DashboardConfig, transport: Transport) -> Site {
        let dir = TempDir::new(tag);
        let now = Arc::new(AtomicI64::new(T0_MS + 60_000));
        let n = now.clone();
        let clock = Clock::from_fn(move || {
            UNIX_EPOCH + Duration::from_millis(n.load(Ordering::SeqCst) as u64)
        });
        let store = Store::open(
            &StoreConfig::default(),
            dir.path(),
            clock.clone(),
            &prometheus::Registry::new(),
        )
        .unwrap();
        let commands = store.commands();
        commands
            .add_session(&hedgerow::store::SessionRecord {
                ip: PUPIL_IP.parse().unwrap(),
                username: PUPIL_PERSON.into(),
                device: None,
                starts: UNIX_EPOCH + Duration::from_millis(T0_MS as u64 - 3_600_000),
                ends: UNIX_EPOCH + Duration::from_millis(T0_MS as u64 + 3_600_000),
            })
            .unwrap();
        let sink = store.sink();
        sink.record(event(0, "www.bbc.co.uk", false));
        sink.record(event(1_000, "bad.example", true));
        sink.record(event(2_000, "www.bad.example", true));
        sink.record(event(3_000, "en.wikipedia.org", false));
        store.flush().unwrap();
        let hash = password::hash(PASSWORD).unwrap();
        for (name, roles) in [
            ("dana", &[Role::Dsl][..]),
            ("tom", &[Role::Technician]),
            ("gill", &[Role::Governor]),
            ("alex", &[Role::Approver]),
        ] {
            let roles = roles.iter().fold(Roles::default(), |r, &x| r.with(x));
            commands.add_user(name, roles, &hash, "test").unwrap();
        }
        let resolver = Arc::new(FixedResolver::default());
        let dashboard = Dashboard::new(
            &config,
            transport,
            TimeZone::EuropeLondon,
            store.reader(),
            store.commands(),
            clock,
            resolver.clone(),
        );
        Site {
            _dir: dir,
            store,
            router: dashboard.clone().routes(),
            block_page: dashboard.block_page_routes(),
            resolver,
            now,
        }
    }

    fn loopback(tag: &str) -> Site {
        Site::new(
            tag,
            DashboardConfig::default(),
            Transport {
                tls: false,
                listen: IpAddr::from([127, 0, 0, 1]),
            },
        )
    }

    fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    fn browser(&self) -> Browser {
        Browser {
            router: self.router.clone(),
            cookies: HashMap::new(),
        }
    }
}

/// Keeps cookies between requests, like a browser.
struct Browser {
    router: Router,
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    location: String,
    body: String,
}

/// The value of the first `name="…" value="…"` field in a page.
fn field(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker).map(|i| i + marker.len()).unwrap_or(0);
    body[start..].split('"').next().unwrap_or("").to_string()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Browser {
    async fn send(&mut self, method: &str, path: &str, body: Option<String>) -> Page {
        self.send_to(method, path, body, None).await
    }

    async fn send_to(
        &mut self,
        method: &str,
        path: &str,
        body: Option<String>,
        host: Option<&str>,
    ) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut request = Request::builder().method(method).uri(path);
        if !cookie.is_empty() {
            request = request.header(header::COOKIE, cookie);
        }
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let mut request = request
            .body(body.map_or_else(Body::empty, Body::from))
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 9, 9, 9], 40000))));
        let response = self.router.clone().oneshot(request).await.unwrap();
        for c in response.headers().get_all(header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (kv, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map_or(String::new(), |v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), 4 << 20)
            .await
            .unwrap();
        Page {
            status,
            location,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None).await
    }

    async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Page {
        self.send("POST", path, Some(form(pairs))).await
    }

    async fn sign_in_with(&mut self, name: &str, password: &str, code: &str) -> Page {
        let page = self.get("/login").await;
        let token = field(&page.body, "token");
        self.post(
            "/login",
            &[
                ("token", &token),
                ("name", name),
                ("password", password),
                ("code", code),
            ],
        )
        .await
    }

    async fn sign_in(&mut self, name: &str) {
        let page = self.sign_in_with(name, PASSWORD, "").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{name}: {}", page.body);
    }

    /// The security token of the signed-in session (from any page's sign-out form).
    async fn csrf(&mut self, path: &str) -> String {
        field(&self.get(path).await.body, "csrf")
    }
}

const PAGES: [&str; 7] = [
    "/",
    "/breaches",
    "/breaches/1",
    "/queries",
    "/queries?device=pupil-laptop-7",
    "/devices/device%3Apupil-laptop-7",
    "/audit",
];

#[tokio::test]
async fn each_role_sees_only_what_it_may() {
    let site = Site::loopback("dash-roles");
    // Signed out: every page sends to the sign-in page.
    let mut anonymous = site.browser();
    for path in PAGES {
        let page = anonymous.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            page.location.starts_with("/login?next="),
            "{path}: {}",
            page.location
        );
    }
    let personal = [PUPIL_DEVICE, PUPIL_IP, PUPIL_PERSON];
    // The DSL sees the breach, the device, the person and the address.
    let mut dsl = site.browser();
    dsl.sign_in("dana").await;
    let breach = dsl.get("/breaches/1").await;
    assert_eq!(breach.status, StatusCode::OK, "{}", breach.body);
    for p in personal {
        assert!(breach.body.contains(p), "the DSL's breach page shows {p}");
    }
    assert!(breach.body.contains("www.bbc.co.uk"), "history either side");
    for path in PAGES {
        assert_eq!(dsl.get(path).await.status, StatusCode::OK, "dsl {path}");
    }
    // A technician: aggregates, health and the audit trail, never pupil-level records.
    let mut tech = site.browser();
    tech.sign_in("tom").await;
    for path in PAGES {
        let page = tech.get(path).await;
        if matches!(path, "/" | "/audit") {
            assert_eq!(page.status, StatusCode::OK, "technician {path}");
        } else {
            assert_eq!(page.status, StatusCode::FORBIDDEN, "technician {path}");
        }
        for p in personal {
            assert!(!page.body.contains(p), "technician {path} shows {p}");
        }
    }
    // A governor and an approver: none of these pages, and nothing personal anywhere.
    for name in ["gill", "alex"] {
        let mut b = site.browser();
        b.sign_in(name).await;
        for path in PAGES {
            let page = b.get(path).await;
            assert!(
                matches!(page.status, StatusCode::FORBIDDEN | StatusCode::SEE_OTHER),
                "{name} {path}: {}",
                page.status
            );
            for p in personal {
                assert!(!page.body.contains(p), "{name} {path} shows {p}");
            }
        }
    }
}

#[tokio::test]
async fn forms_without_the_session_token_are_refused() {
    let site = Site::loopback("dash-csrf");
    let mut dsl = site.browser();
    dsl.sign_in("dana").await;
    for token in [None, Some("0".repeat(64))] {
        let mut pairs = vec![("action", "note"), ("text", "forged note")];
        if let Some(t) = &token {
            pairs.push(("csrf", t));
        }
        let page = dsl.post("/breaches/1", &pairs).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{token:?}");
    }
    // Another person's token does not work either.
    let mut other = site.browser();
    other.sign_in("dana").await;
    let theirs = other.csrf("/breaches").await;
    let page = dsl
        .post(
            "/breaches/1",
            &[
                ("csrf", &theirs),
                ("action", "note"),
                ("text", "forged note"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // The sign-in form needs its own token too.
    let mut fresh = site.browser();
    let page = fresh
        .post("/login", &[("name", "dana"), ("password", PASSWORD)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let breach = dsl.get("/breaches/1").await;
    assert!(!breach.body.contains("forged note"));
}

#[tokio::test]
async fn a_breach_is_worked_from_new_to_closed_and_every_step_is_audited() {
    let site = Site::loopback("dash-case");
    let mut dsl = site.browser();
    dsl.sign_in("dana").await;
    let csrf = dsl.csrf("/breaches/1").await;
    for pairs in [
        vec![("action", "review")],
        vec![
            ("action", "note"),
            ("text", "Spoke with the pupil at break."),
        ],
        vec![("action", "escalate"), ("text", "Head of year")],
        vec![
            ("action", "parents"),
            ("date", "2026-09-01"),
            ("by", "Mrs Patel"),
        ],
        vec![
            ("action", "close"),
            ("text", "Support plan agreed with parents."),
        ],
    ] {
        let mut pairs = pairs.clone();
        pairs.push(("csrf", &csrf));
        let page = dsl.post("/breaches/1", &pairs).await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "{pairs:?}: {}",
            page.body
        );
    }
    let page = dsl.get("/breaches/1").await;
    for text in [
        "Spoke with the pupil at break.",
        "Head of year",
        "on Tue 1 Sep 2026 by Mrs Patel",
        "Support plan agreed with parents.",
        "closed",
    ] {
        assert!(page.body.contains(text), "breach page shows {text}");
    }
    // A missing outcome is refused, not saved empty.
    let refused = dsl
        .post(
            "/breaches/1",
            &[("csrf", &csrf), ("action", "close"), ("text", " ")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let audit = site.store.reader().audit(None, 100).unwrap();
    let of = |kind: AuditKind| {
        audit
            .iter()
            .filter(|e| e.kind == kind && e.actor == "dana")
            .count()
    };
    assert_eq!(
        of(AuditKind::Case),
        6,
        "review, note, escalation, parents, outcome, closed"
    );
    assert!(
        of(AuditKind::View) >= 2,
        "each opening of the breach is a view"
    );
    assert!(audit
        .iter()
        .any(|e| e.kind == AuditKind::Login && e.actor == "dana"));
}

#[tokio::test]
async fn categories_are_shown_by_their_titles_and_filtered_by_their_ids() {
    let site = Site::loopback("dash-titles");
    let mut dsl = site.browser();
    dsl.sign_in("dana").await;
    for path in [
        "/",
        "/breaches",
        "/breaches/1",
        "/queries",
        "/devices/device%3Apupil-laptop-7",
    ] {
        let page = dsl.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            page.body.contains("Self-harm and suicide"),
            "{path} names the category by its title: {}",
            page.body
        );
        assert!(
            !page.body.contains(">self-harm<") && !page.body.contains(": self-harm<"),
            "{path} shows the category's id as text"
        );
    }
    // And what each group gets for a requested name, on the approver's page.
    let mut staff = site.browser();
    let token = field(&staff.get("/request").await.body, "token");
    let sent = post_request(
        &mut staff,
        vec![
            ("token", token),
            ("name", "www.bad.example".into()),
            ("group", "pupils".into()),
            ("minutes", "60".into()),
            ("reason", "Anti-bullying lesson".into()),
            ("who", "Mr Jones".into()),
        ],
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let requests = dsl.get("/requests").await;
    assert!(
        requests.body.contains("blocked: Self-harm and suicide"),
        "{}",
        requests.body
    );
    // Links and filters keep the id.
    let overview = dsl.get("/").await;
    assert!(
        overview.body.contains("category=self-harm"),
        "{}",
        overview.body
    );
    let filtered = dsl.get("/breaches?category=self-harm").await;
    assert!(filtered.body.contains("/breaches/1"), "{}", filtered.body);
}

#[tokio::test]
async fn repeated_failures_lock_the_account() {
    let site = Site::loopback("dash-lockout");
    let mut b = site.browser();
    for _ in 0..5 {
        let page = b.sign_in_with("dana", "wrong password", "").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password is refused, and the lock is recorded.
    let page = b.sign_in_with("dana", PASSWORD, "").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(
        page.body.contains("Too many failed sign-ins"),
        "{}",
        page.body
    );
    let audit = site.store.reader().audit(None, 100).unwrap();
    assert!(audit
        .iter()
        .any(|e| e.kind == AuditKind::Login && e.change.contains("locked")));
    // Another account from elsewhere is not affected; after the lock, dana can sign in.
    site.browser().sign_in("tom").await;
    site.advance(Duration::from_secs(16 * 60));
    site.browser().sign_in("dana").await;
}

#[tokio::test]
async fn sessions_end_when_idle_and_when_old() {
    let site = Site::loopback("dash-expiry");
    let mut b = site.browser();
    b.sign_in("dana").await;
    assert_eq!(b.get("/breaches").await.status, StatusCode::OK);
    site.advance(Duration::from_secs(29 * 60));
    assert_eq!(
        b.get("/breaches").await.status,
        StatusCode::OK,
        "used within 30 minutes"
    );
    site.advance(Duration::from_secs(31 * 60));
    let page = b.get("/breaches").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "idle for 31 minutes");
    // Busy but old: ends after 12 hours however often it is used.
    b.sign_in("dana").await;
    for _ in 0..25 {
        site.advance(Duration::from_secs(29 * 60));
        if b.get("/breaches").await.status != StatusCode::OK {
            break;
        }
    }
    assert_eq!(b.get("/breaches").await.status, StatusCode::SEE_OTHER);
    // Disabling an account ends its sessions at once.
    let mut c = site.browser();
    c.sign_in("dana").await;
    site.store
        .commands()
        .set_disabled("dana", true, "test")
        .unwrap();
    assert_eq!(c.get("/breaches").await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        c.sign_in_with("dana", PASSWORD, "").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_second_factor_is_required_where_enforced_and_a_code_works_once() {
    let config = DashboardConfig {
        require_totp: Roles::default().with(Role::Dsl),
        ..DashboardConfig::default()
    };
    let site = Site::new(
        "dash-totp",
        config,
        Transport {
            tls: true,
            listen: IpAddr::from([10, 0, 0, 2]),
        },
    );
    // A DSL without a second factor cannot sign in; a technician can.
    let page = site.browser().sign_in_with("dana", PASSWORD, "").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(
        page.body.contains("hedgerow user totp dana"),
        "{}",
        page.body
    );
    site.browser().sign_in("tom").await;
    let secret = totp::Secret::generate().unwrap();
    site.store
        .commands()
        .set_totp("dana", Some(&secret.to_base32()), "test")
        .unwrap();
    let now = SystemTime::UNIX_EPOCH
        .elapsed()
        .map(|_| (T0_MS as u64 + 60_000) / 1000)
        .unwrap();
    let mut b = site.browser();
    assert_eq!(
        b.sign_in_with("dana", PASSWORD, "").await.status,
        StatusCode::UNAUTHORIZED,
        "no code"
    );
    let wrong = if totp::code(&secret, now) == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert_eq!(
        b.sign_in_with("dana", PASSWORD, wrong).await.status,
        StatusCode::UNAUTHORIZED,
        "wrong code"
    );
    let code = totp::code(&secret, now);
    let page = b.sign_in_with("dana", PASSWORD, &code).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    // Under HTTPS the session cookie is Secure.
    assert_eq!(b.get("/breaches").await.status, StatusCode::OK);
    // The same code cannot be used again.
    let replay = site.browser().sign_in_with("dana", PASSWORD, &code).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn passwords_are_not_taken_over_plain_http_on_the_network() {
    let site = Site::new(
        "dash-plain",
        DashboardConfig::default(),
        Transport {
            tls: false,
            listen: IpAddr::from([10, 0, 0, 2]),
        },
    );
    let page = site.browser().sign_in_with("dana", PASSWORD, "").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("https://"));
    let allowed = Site::new(
        "dash-plain-proxy",
        DashboardConfig {
            allow_plain_http: true,
            ..DashboardConfig::default()
        },
        Transport {
            tls: false,
            listen: IpAddr::from([10, 0, 0, 2]),
        },
    );
    allowed.browser().sign_in("dana").await;
}

#[tokio::test]
async fn the_overview_shows_the_period_and_links_figures_to_records() {
    let site = Site::loopback("dash-overview");
    let mut dsl = site.browser();
    dsl.sign_in("dana").await;
    let page = dsl.get("/?period=7d").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<svg"), "a chart");
    // The lists count the whole UTC days the period touches, and say so; open cases are
    // aged by the day they began.
    assert!(
        page.body
            .contains("2026-08-25 to 2026-09-01 (whole days, UTC)"),
        "{}",
        page.body
    );
    assert!(page.body.contains(
        "<th scope=\"row\"><a href=\"/breaches?status=new\">new</a></th><td class=\"num\">1</td>"
    ));
    assert!(page.body.contains("Opened today"));
    assert!(page.body.contains("category=self-harm"), "{}", page.body);
    assert!(page.body.contains("/devices/device%3Apupil-laptop-7"));
    // The CSV export has the rows and is audited.
    let csv = dsl.get("/queries.csv?device=pupil-laptop-7").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.body.lines().count(), 5, "{}", csv.body);
    let audit = site.store.reader().audit(None, 100).unwrap();
    assert!(audit
        .iter()
        .any(|e| e.kind == AuditKind::Export && e.actor == "dana"));
}

/// A week with more breaches than the report lists: the newest are listed, the page says
/// how many there are in all and links to the week on the Breaches page.
#[tokio::test]
async fn the_weekly_page_lists_the_newest_breaches_and_links_to_the_rest() {
    let site = Site::loopback("dash-weekly-many");
    let sink = site.store.sink();
    for i in 0..105 {
        sink.record(event(10_000 + i * 1_000, &format!("bad{i}.example"), true));
    }
    site.store.flush().unwrap();
    let mut dsl = site.browser();
    dsl.sign_in("dana").await;
    let weekly = dsl.get("/reports/weekly?week=2026-W36").await;
    assert_eq!(weekly.status, StatusCode::OK, "{}", weekly.body);
    // The site's own breach and these 105.
    for text in [
        "<td class=\"num\">106</td>",
        "106 in all: the 100 most recent are listed here.",
        "href=\"/breaches?since=2026-08-31&#38;until=2026-09-06\"",
        "106 in all: the 100 longest open are listed here.",
        "href=\"/breaches/106\"",
    ] {
        assert!(
            weekly.body.contains(text),
            "weekly shows {text}: {}",
            weekly.body
        );
    }
    assert_eq!(
        weekly.body.matches("<td><a href=\"/breaches/").count(),
        200,
        "100 new, 100 open"
    );
    let week = dsl.get("/breaches?since=2026-08-31&until=2026-09-06").await;
    assert_eq!(week.status, StatusCode::OK);
    assert!(week.body.contains("href=\"/breaches/106\""));
}

#[tokio::test]
async fn staff_ask_for_an_unblock_and_the_approver_decides() {
    let site = Site::loopback("dash-unblock");
    // Anyone on the network can ask (no account), with the form's own token.
    let mut staff = site.browser();
    let shown = staff.get("/request?name=games.example").await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.body.contains("value=\"games.example\""));
    let token = field(&shown.body, "token");
    let ask = |name: &'static str| {
        vec![
            ("token", token.clone()),
            ("name", name.to_string()),
            ("group", "staff".to_string()),
            ("minutes", "60".to_string()),
            ("reason", "Year 9 history lesson".to_string()),
            ("who", "Mr Jones".to_string()),
        ]
    };
    let sent = post_request(&mut staff, ask("games.example")).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    assert!(sent.body.contains("request number 1"), "{}", sent.body);
    // The illegal tier cannot even be asked for, and says nothing about why.
    let refused = post_request(&mut staff, ask("illegal.example")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("cannot be unblocked"));
    assert!(!refused.body.to_lowercase().contains("iwf"));
    assert_eq!(
        site.store
            .reader()
            .unblock_requests(None, 10)
            .unwrap()
            .len(),
        1
    );
    // Without the token: refused.
    let mut no_token = ask("games.example");
    no_token.remove(0);
    assert_eq!(
        post_request(&mut staff, no_token).await.status,
        StatusCode::FORBIDDEN
    );

    // The DSL sees the request but cannot decide; the approver approves for staff.
    let mut dsl = site.browser();
    dsl.sign_in("dana").await;
    let seen = dsl.get("/requests").await;
    assert!(seen.body.contains("games.example") && seen.body.contains("blocked: games"));
    let csrf = field(&seen.body, "csrf");
    let approve = form(&[
        ("csrf", csrf.as_str()),
        ("action", "approve"),
        ("group", "staff"),
        ("minutes", "60"),
    ]);
    assert_eq!(
        dsl.send("POST", "/requests/1", Some(approve)).await.status,
        StatusCode::FORBIDDEN
    );
    let mut head = site.browser();
    head.sign_in("alex").await;
    let csrf = head.csrf("/requests").await;
    let approve = form(&[
        ("csrf", csrf.as_str()),
        ("action", "approve"),
        ("group", "staff"),
        ("minutes", "60"),
    ]);
    let done = head.send("POST", "/requests/1", Some(approve)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        site.resolver.grants_changed.load(Ordering::SeqCst),
        1,
        "applied at once"
    );
    let grants = site
        .store
        .reader()
        .active_grants(UNIX_EPOCH + Duration::from_millis((T0_MS + 120_000) as u64))
        .unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(
        (grants[0].name.as_str(), grants[0].group.as_str()),
        ("games.example", "staff")
    );
    assert_eq!(grants[0].granted_by, "alex");
    // A second request is refused with a reason; both decisions are audited.
    post_request(&mut staff, ask("games.example")).await;
    let refuse = form(&[
        ("csrf", csrf.as_str()),
        ("action", "refuse"),
        ("reason", "Not needed for lessons"),
    ]);
    assert_eq!(
        head.send("POST", "/requests/2", Some(refuse)).await.status,
        StatusCode::SEE_OTHER
    );
    let audit = site.store.reader().audit(None, 100).unwrap();
    assert!(audit
        .iter()
        .any(|e| e.kind == AuditKind::Grant && e.actor == "alex" && e.change.contains("approved")));
    assert!(audit
        .iter()
        .any(|e| e.kind == AuditKind::Grant && e.reason.contains("Not needed for lessons")));
    // A governor has no business here.
    let mut gov = site.browser();
    gov.sign_in("gill").await;
    assert_eq!(gov.get("/requests").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_block_page_explains_and_offers_a_review_except_for_the_illegal_tier() {
    let site = Site::loopback("dash-blockpage");
    let mut pupil = Browser {
        router: site.block_page.clone(),
        cookies: HashMap::new(),
    };
    let page = pupil
        .send_to("GET", "/some/page?x=1", None, Some("games.example"))
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("games.example") && page.body.contains("games"));
    assert!(
        page.body.contains("/request?name=games.example"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("10.9.9.9"),
        "the reference names the address"
    );
    // The review link works on the block page's own address.
    assert_eq!(
        pupil.get("/request?name=games.example").await.status,
        StatusCode::OK
    );
    let page = pupil
        .send_to("GET", "/", None, Some("illegal.example:80"))
        .await;
    assert!(page.body.contains("not available"));
    assert!(
        !page.body.contains("illegal.example"),
        "the name is not repeated"
    );
    assert!(!page.body.contains("/request"), "no review");
    // Nothing of the dashboard is reachable there.
    let page = pupil.get("/breaches").await;
    assert!(!page.body.contains("Sign in") || page.status == StatusCode::FORBIDDEN);
    assert_eq!(
        page.status,
        StatusCode::FORBIDDEN,
        "the block page, not the dashboard"
    );
}

#[tokio::test]
async fn the_request_form_keeps_a_signed_in_persons_header_and_works_without_an_account() {
    let site = Site::loopback("dash-request-signed-in");
    // Signed in: the person's own header and navigation, and their session's token.
    let mut head = site.browser();
    head.sign_in("alex").await;
    let shown = head.get("/request?name=games.example").await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.body.contains("Signed in as alex"), "{}", shown.body);
    assert!(shown.body.contains("href=\"/requests\""), "the navigation");
    assert!(!shown.body.contains("name=\"token\""), "no anonymous token");
    let csrf = field(&shown.body, "csrf");
    assert!(!csrf.is_empty());
    let ask = |csrf: &str| {
        vec![
            ("csrf", csrf.to_string()),
            ("name", "games.example".to_string()),
            ("group", "staff".to_string()),
            ("minutes", "60".to_string()),
            ("reason", "Year 9 history lesson".to_string()),
            ("who", "Ms Alexander".to_string()),
        ]
    };
    let sent = post_request(&mut head, ask(&csrf)).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    assert!(sent.body.contains("request number 1"), "{}", sent.body);
    assert!(sent.body.contains("Signed in as alex"));
    // Another session's token, or none, is refused.
    let mut dsl = site.browser();
    dsl.sign_in("dana").await;
    let other = dsl.csrf("/requests").await;
    assert_eq!(
        post_request(&mut head, ask(&other)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post_request(&mut head, ask("")).await.status,
        StatusCode::FORBIDDEN
    );
    // Signed out, the same address is the anonymous form.
    let mut staff = site.browser();
    let shown = staff.get("/request").await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(!shown.body.contains("Signed in as"));
    assert!(!field(&shown.body, "token").is_empty());
    // The block page's address always shows the anonymous form, even to a browser holding a
    // dashboard session (cookies do not tell ports apart): its navigation would lead to
    // block pages there.
    let mut same_browser = Browser {
        router: site.block_page.clone(),
        cookies: head.cookies.clone(),
    };
    let shown = same_browser.get("/request?name=games.example").await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(!shown.body.contains("Signed in as"), "{}", shown.body);
    assert!(!field(&shown.body, "token").is_empty());
    assert_eq!(
        site.store
            .reader()
            .unblock_requests(None, 10)
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_mistyped_address_gets_the_dashboards_not_found_page() {
    let site = Site::loopback("dash-not-found");
    let mut dana = site.browser();
    dana.sign_in("dana").await;
    for path in ["/breachs", "/reports/weekley", "/nothing/here?x=1"] {
        let page = dana.get(path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            page.body.contains("<h1>Not found</h1>") && page.body.contains("no such page"),
            "{path}: {}",
            page.body
        );
    }
    // With the same headers as every other page.
    let request = Request::builder()
        .uri("/breachs")
        .body(Body::empty())
        .unwrap();
    let response = site.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response
        .headers()
        .contains_key(header::CONTENT_SECURITY_POLICY));
    // The block page's address keeps its own answer for every path.
    let mut pupil = Browser {
        router: site.block_page.clone(),
        cookies: HashMap::new(),
    };
    let page = pupil
        .send_to("GET", "/breachs", None, Some("games.example"))
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("This site is blocked"), "{}", page.body);
}

async fn post_request(b: &mut Browser, pairs: Vec<(&'static str, String)>) -> Page {
    let body = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    b.send("POST", "/request", Some(body)).await
}

/// What a person's browser may not show to anyone but the DSL: the fixture's device, person,
/// address and the sites it visited.
const PERSONAL: [&str; 6] = [
    PUPIL_DEVICE,
    PUPIL_PERSON,
    PUPIL_IP,
    "bad.example",
    "www.bbc.co.uk",
    "en.wikipedia.org",
];

#[tokio::test]
async fn policy_and_test_a_name_by_role() {
    let site = Site::loopback("dash-policy");
    site.store
        .commands()
        .append_audit(
            "configuration file /etc/hedgerow.toml",
            AuditKind::Policy,
            "group `pupils`: now blocks gambling",
            "reload requested (SIGHUP)",
        )
        .unwrap();
    let mut anonymous = site.browser();
    for path in ["/policy", "/policy/test?name=x.example", "/reports"] {
        let page = anonymous.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
    }
    for name in ["tom", "alex", "dana"] {
        let mut b = site.browser();
        b.sign_in(name).await;
        let page = b.get("/policy").await;
        assert_eq!(page.status, StatusCode::OK, "{name}: {}", page.body);
        for text in [
            "blocks pornography",
            "https://lists.example/self-harm.txt",
            "Self-harm and suicide",
            "0123456789ab",
            "3 days ago",
            "unchanged since the last download",
            "now blocks gambling",
            "check out",
        ] {
            assert!(page.body.contains(text), "{name}: /policy shows {text}");
        }
        // The whole configuration names devices and addresses: only for the DSL; the others
        // get each group's rules.
        for p in [PUPIL_DEVICE, PUPIL_IP] {
            assert_eq!(
                page.body.contains(p),
                name == "dana",
                "{name}: /policy shows {p}: {}",
                page.body
            );
        }
        if name != "dana" {
            assert!(page.body.contains("group `pupils`:\n  blocks pornography"));
        }
        // The whole trail is only for those who may open it.
        assert_eq!(
            page.body.contains("href=\"/audit\""),
            name != "alex",
            "{name}"
        );
        let page = b.get("/policy/test?name=www.bad.example").await;
        assert_eq!(page.status, StatusCode::OK, "{name}");
        let rows: Vec<&str> = page.body.split("<th scope=\"row\">").skip(1).collect();
        assert_eq!(rows.len(), 2, "a row per group: {}", page.body);
        assert!(
            rows[0].starts_with("pupils") && rows[0].contains("blocked: Self-harm and suicide"),
            "the category by its title: {}",
            rows[0]
        );
        assert!(rows[0].contains("list entry `bad.example`"));
        assert!(rows[1].starts_with("staff") && rows[1].contains("allowed"));
        if name != "dana" {
            for p in [PUPIL_DEVICE, PUPIL_PERSON, PUPIL_IP] {
                assert!(!page.body.contains(p), "{name} sees {p}");
            }
        }
    }
    // A governor sees neither.
    let mut governor = site.browser();
    governor.sign_in("gill").await;
    for path in ["/policy", "/policy/test?name=www.bad.example"] {
        assert_eq!(governor.get(path).await.status, StatusCode::FORBIDDEN);
    }
    // An illegal-tier name: nothing but the list's name, and the name is not repeated.
    let mut tech = site.browser();
    tech.sign_in("tom").await;
    let page = tech.get(&format!("/policy/test?name={ILLEGAL_NAME}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("blocked: on the child-abuse (IWF) list"));
    assert!(!page.body.contains(ILLEGAL_NAME), "{}", page.body);
    // A name that is not one is refused in words.
    let page = tech.get("/policy/test?name=not%20a%20name").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("not a valid domain name"));
    // The names typed are not in the audit trail (nor is the test at all).
    let audit = site.store.reader().audit(None, 1000).unwrap();
    assert!(audit
        .iter()
        .all(|e| !e.change.contains("bad.example") && !e.change.contains(ILLEGAL_NAME)));
}

#[tokio::test]
async fn reports_by_role_and_the_governors_pack_names_nobody() {
    let site = Site::loopback("dash-reports");
    // A technician and an approver get no reports.
    for name in ["tom", "alex"] {
        let mut b = site.browser();
        b.sign_in(name).await;
        for path in [
            "/reports",
            "/reports/weekly",
            "/reports/weekly.csv",
            "/reports/annual",
        ] {
            assert_eq!(
                b.get(path).await.status,
                StatusCode::FORBIDDEN,
                "{name} {path}"
            );
        }
    }
    // A governor: the index (annual only) and the annual pack, which names nobody.
    let mut governor = site.browser();
    governor.sign_in("gill").await;
    let index = governor.get("/reports").await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(index.body.contains("/reports/annual?year=2026"));
    assert!(!index.body.contains("/reports/weekly"));
    for path in [
        "/reports/weekly?week=2026-W36",
        "/reports/weekly.csv?week=2026-W36",
    ] {
        assert_eq!(
            governor.get(path).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    // An unblock request and its approval, and a filtering check, in the year.
    let commands = site.store.commands();
    let id = commands
        .request_unblock(&hedgerow::store::NewUnblockRequest {
            name: "games.example".into(),
            groups: vec!["staff".into()],
            reason: "lesson".into(),
            duration: Duration::from_secs(3600),
            requested_by: "Mr Jones".into(),
            client: None,
        })
        .unwrap();
    let until = UNIX_EPOCH + Duration::from_millis((T0_MS + 7_200_000) as u64);
    commands
        .approve_unblock(id, &["staff".to_string()], until, "alex", "")
        .unwrap();
    let at = UNIX_EPOCH + Duration::from_millis(T0_MS as u64);
    commands
        .record_check(&hedgerow::store::CheckRun {
            id: 0,
            started: at,
            finished: at,
            trigger: hedgerow::store::CheckTrigger::Schedule,
            by: "schedule".into(),
            passed: 0,
            failed: 0,
            items: vec![hedgerow::store::CheckItem {
                group: "pupils".into(),
                kind: hedgerow::store::CheckKind::Allowed,
                category: None,
                probe: "www.gov.uk".into(),
                expected: "resolved".into(),
                observed: "no answer".into(),
                passed: false,
                tested: true,
            }],
        })
        .unwrap();
    let pack = governor.get("/reports/annual?year=2026").await;
    assert_eq!(pack.status, StatusCode::OK, "{}", pack.body);
    for text in [
        "Staff asked 1 time(s) for a site to be unblocked: 1 approved",
        "1 check(s) recorded; 1 found a problem",
    ] {
        assert!(
            pack.body.contains(text),
            "the pack shows {text}: {}",
            pack.body
        );
    }
    assert!(!pack.body.contains("games.example") && !pack.body.contains("Mr Jones"));
    for p in PERSONAL {
        assert!(!pack.body.contains(p), "the governors' pack shows {p}");
    }
    // Aggregates: the policy per group, the lists, September's traffic, the breach.
    for text in [
        "<h3>Group staff</h3>\n<pre class=\"policy\">blocks no list categories</pre>",
        "https://lists.example/self-harm.txt",
        "<svg",
        "<th scope=\"row\">Sep</th><td class=\"num\">4</td><td class=\"num\">2</td>",
        "<th scope=\"row\">Self-harm and suicide</th><td class=\"num\">1</td><td class=\"num\">1</td><td class=\"num\">1</td><td class=\"num\">0</td>",
        "<th scope=\"row\">new</th><td class=\"num\">1</td>",
        "check out",
    ] {
        assert!(pack.body.contains(text), "the pack shows {text}: {}", pack.body);
    }
    let last_year = governor.get("/reports/annual?year=2025").await;
    assert_eq!(last_year.status, StatusCode::OK);
    assert!(last_year.body.contains("0 breach(es)"));
    assert_eq!(
        governor.get("/reports/annual?year=1900").await.status,
        StatusCode::BAD_REQUEST
    );

    // The DSL: the weekly report with its records, a week picker, and its CSV.
    let mut dsl = site.browser();
    dsl.sign_in("dana").await;
    let index = dsl.get("/reports").await;
    assert!(
        index.body.contains("/reports/weekly?week=2026-W35"),
        "last full week"
    );
    let weekly = dsl.get("/reports/weekly?week=2026-W36").await;
    assert_eq!(weekly.status, StatusCode::OK, "{}", weekly.body);
    for text in [
        PUPIL_DEVICE,
        PUPIL_PERSON,
        "href=\"/breaches/1\"",
        "/reports/weekly?week=2026-W35",
        "/reports/weekly.csv?week=2026-W36",
        "Monday 2026-08-31 to Sunday 2026-09-06",
        "Self-harm and suicide",
    ] {
        assert!(weekly.body.contains(text), "weekly shows {text}");
    }
    // No week after the current one.
    assert!(!weekly.body.contains("week=2026-W37"), "{}", weekly.body);
    let csv = dsl.get("/reports/weekly.csv?week=2026-W36").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.body.starts_with("section,name,device"), "{}", csv.body);
    assert!(csv.body.contains("new_breaches") && csv.body.contains(PUPIL_DEVICE));
    assert_eq!(
        dsl.get("/reports/weekly?week=2026-47").await.status,
        StatusCode::BAD_REQUEST
    );
    let annual = dsl.get("/reports/annual").await;
    assert_eq!(annual.status, StatusCode::OK);
    assert!(annual.body.contains("Annual filtering review, 2026"));
    // The weekly report is a view of children's records, its CSV an export.
    let audit = site.store.reader().audit(None, 1000).unwrap();
    assert!(audit.iter().any(|e| e.kind == AuditKind::View
        && e.actor == "dana"
        && e.change.contains("weekly report for 2026-W36")));
    assert!(audit.iter().any(|e| e.kind == AuditKind::Export
        && e.actor == "dana"
        && e.change.contains("weekly report for 2026-W36 (csv)")));
}
