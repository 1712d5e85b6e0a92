//! Every dashboard page's server time and transfer size on the store benchmark's database
//! (`benches/store_scale.rs` builds it: run that first with the same `STORE_ROWS`).
//!
//! `STORE_ROWS=100000000 cargo bench --bench dashboard` (default 10 million); `STORE_DIR=folder`
//! reads the database in another folder instead (it is migrated first, like any start). The pages are
//! driven through the dashboard's router in process (no socket: the time is the server's),
//! signed in as a DSL who also approves and runs the technical side, so every page answers.
//! Each page: the first request (cold-ish) and the median of 5 more, with the body's size.
//! What only the resolver knows (policy text, lists, test-a-name) comes from a fixed
//! stand-in: those answers do not touch the store and are not what this measures.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant, UNIX_EPOCH},
};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header, Request},
    Router,
};
use hedgerow::{
    accounts::{password, Role, Roles},
    clock::Clock,
    config::dashboard::DashboardConfig,
    dashboard::{
        BlockedSite, Dashboard, GroupPolicyText, GroupVerdict, HealthLine, ListsView, Services,
        Transport,
    },
    schedule::TimeZone,
    store::{self, BreachFilter},
};
use tower::ServiceExt;

/// 2026-09-01 00:00 UTC, as in `store_scale.rs`; the dashboard's "now" is the month's end.
const T0: u64 = 1_788_220_800;

struct Fixed;

impl Services for Fixed {
    fn blocked_site(&self, _: IpAddr, _: &str) -> Option<BlockedSite> {
        Some(BlockedSite::Filtered("games".into()))
    }
    fn is_illegal(&self, _: &str) -> bool {
        false
    }
    fn run_checks(
        &self,
        _: String,
    ) -> futures_util::future::BoxFuture<'static, Result<i64, String>> {
        Box::pin(async { Err("not in this bench".into()) })
    }
    fn grants_changed(&self) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async {})
    }
    fn health(&self) -> Vec<HealthLine> {
        Vec::new()
    }
    fn lists(&self) -> ListsView {
        ListsView::default()
    }
    fn policy_text(&self) -> String {
        "group `pupils`: blocks games".into()
    }
    fn group_policies(&self) -> Vec<GroupPolicyText> {
        Vec::new()
    }
    fn groups(&self) -> Vec<String> {
        vec!["pupils".into(), "staff".into()]
    }
    fn test_name(&self, name: &str) -> Result<Vec<GroupVerdict>, String> {
        Ok(vec![GroupVerdict {
            group: "pupils".into(),
            blocked: false,
            category: None,
            summary: "allowed".into(),
            detail: name.into(),
        }])
    }
}

async fn send(
    router: &Router,
    path: &str,
    cookie: &str,
    body: Option<String>,
) -> (u16, usize, Vec<String>, String) {
    let mut request = Request::builder()
        .method(if body.is_some() { "POST" } else { "GET" })
        .uri(path)
        .header(header::COOKIE, cookie);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let mut request = request
        .body(body.map_or_else(Body::empty, Body::from))
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    (
        status,
        bytes.len(),
        cookies,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn field(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    body.find(&marker)
        .map(|i| {
            body[i + marker.len()..]
                .split('"')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: u64 = std::env::var("STORE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    // `STORE_DIR` points at another folder (a database generated elsewhere).
    let dir = std::env::var_os("STORE_DIR").map_or_else(
        || {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/store-scale")
                .join(rows.to_string())
        },
        std::path::PathBuf::from,
    );
    let end = UNIX_EPOCH + Duration::from_secs(T0 + 31 * 86_400);
    let clock = Clock::from_fn(move || end);
    let Ok((reader, commands)) = store::open_offline(&dir, clock.clone()) else {
        eprintln!(
            "no database at {}: run `STORE_ROWS={rows} cargo bench --bench store_scale` first",
            dir.display()
        );
        return;
    };
    println!(
        "database: {} stored queries",
        reader.query_count().unwrap_or(0)
    );
    let name = "bench-dsl";
    if reader.user(name).ok().flatten().is_none() {
        let roles = [Role::Dsl, Role::Approver, Role::Technician]
            .into_iter()
            .fold(Roles::default(), Roles::with);
        let hash = password::hash("a long bench passphrase 7").unwrap();
        commands.add_user(name, roles, &hash, "bench").unwrap();
    }
    let breach = reader.breaches(&BreachFilter::default(), None, 1).unwrap();
    let (breach_id, device) = breach
        .first()
        .map(|b| (b.id, b.device_key.clone()))
        .expect("the workload makes breaches");
    let router = Dashboard::new(
        &DashboardConfig::default(),
        Transport {
            tls: false,
            listen: IpAddr::from([127, 0, 0, 1]),
        },
        TimeZone::EuropeLondon,
        reader,
        commands,
        clock,
        Arc::new(Fixed),
    )
    .routes();
    // Sign in.
    let (_, _, cookies, body) = send(&router, "/login", "", None).await;
    let token = field(&body, "token");
    let form = format!("token={token}&name={name}&password=a+long+bench+passphrase+7");
    let (status, _, session, _) = send(&router, "/login", &cookies.join("; "), Some(form)).await;
    assert_eq!(status, 303, "signed in");
    let cookie = session.join("; ");
    let device = device.replace(':', "%3A");
    let pages = [
        "/".to_string(),
        "/?period=7d".into(),
        "/?period=30d".into(),
        "/breaches".into(),
        format!("/breaches/{breach_id}"),
        "/breaches?severity=high".into(),
        "/queries".into(),
        "/queries?blocked=1".into(),
        "/queries?name=site10.bad".into(),
        "/queries?name=yahoo.com".into(),
        format!("/queries?device={device}"),
        format!("/devices/{device}"),
        "/audit".into(),
        "/requests".into(),
        "/policy".into(),
        "/policy/test?name=www.example.com".into(),
        "/checks".into(),
        "/reports".into(),
        "/reports/weekly?week=2026-W38".into(),
        "/reports/annual?year=2026".into(),
        "/request".into(),
    ];
    println!(
        "{:<40} {:>6} {:>10} {:>10} {:>10}",
        "page", "status", "first ms", "median ms", "bytes"
    );
    for page in &pages {
        let t = Instant::now();
        let (status, bytes, _, _) = send(&router, page, &cookie, None).await;
        let first = t.elapsed();
        let mut warm = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            send(&router, page, &cookie, None).await;
            warm.push(t.elapsed());
        }
        warm.sort();
        println!(
            "{page:<40} {status:>6} {:>10.1} {:>10.1} {bytes:>10}",
            first.as_secs_f64() * 1000.0,
            warm[2].as_secs_f64() * 1000.0
        );
    }
}
