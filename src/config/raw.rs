//! The configuration file exactly as written (serde, unknown keys rejected).

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::schedule::{parse_hhmm, Window};

use super::{
    BlockAnswer, CacheConfig, Config, ConfigError, DeviceConfig, GroupConfig, ListsConfig,
    RateLimitConfig, ScheduleConfig, ServerConfig, TlsRoots, UpstreamConfig, UpstreamSettings,
};

/// The whole file. Every section is optional; missing values take documented defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    upstream: RawUpstream,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    rate_limit: RawRateLimit,
    #[serde(default)]
    lists: RawLists,
    #[serde(default, rename = "group")]
    groups: Vec<RawGroup>,
    #[serde(default, rename = "device")]
    devices: Vec<RawDevice>,
    #[serde(default)]
    identity: super::identity::RawIdentity,
    #[serde(default)]
    alerts: super::alerts::RawAlerts,
    #[serde(default)]
    store: super::store::RawStore,
    #[serde(default)]
    dashboard: super::dashboard::RawDashboard,
    #[serde(default)]
    checks: super::checks::RawChecks,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: Spanned<String>,
    #[serde(default)]
    ip: Option<std::net::IpAddr>,
    #[serde(default)]
    mac: Option<Spanned<String>>,
    group: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: Spanned<Vec<SocketAddr>>,
    http: Option<SocketAddr>,
    data_dir: PathBuf,
    tcp_idle_timeout_secs: u64,
    tcp_max_connections: usize,
    tcp_max_connections_per_client: usize,
    http_max_connections: usize,
    shutdown_grace_secs: u64,
    timezone: Spanned<String>,
    allow_public_clients: bool,
    udp_sockets: super::UdpSockets,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: Spanned::new(0..0, vec![SocketAddr::from(([127, 0, 0, 1], 5353))]),
            http: None,
            data_dir: PathBuf::from("hedgerow-data"),
            tcp_idle_timeout_secs: 10,
            tcp_max_connections: 1000,
            tcp_max_connections_per_client: 50,
            http_max_connections: 64,
            shutdown_grace_secs: 5,
            timezone: Spanned::new(0..0, "Europe/London".to_string()),
            allow_public_clients: false,
            udp_sockets: super::UdpSockets::Shared,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    servers: Vec<Spanned<String>>,
    attempt_timeout_ms: Spanned<u64>,
    deadline_ms: Spanned<u64>,
    tls_ca: Option<Spanned<PathBuf>>,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            tls_ca: None,
            attempt_timeout_ms: Spanned::new(0..0, 1000),
            deadline_ms: Spanned::new(0..0, 2000),
        }
    }
}

/// `[cache] max_bytes`: 256 MiB holds the default 100,000 entries at their typical 1–2 KiB
/// (a few A/AAAA records, an SOA) with room to spare, and bounds a flood of large answers.
const DEFAULT_CACHE_MAX_BYTES: u64 = 256 << 20;
/// `[cache] max_entry_bytes`: 64 KiB of estimated memory is 10–30 KiB of wire data, above any
/// everyday answer (a UDP answer is at most 1,232 wire bytes; big SPF TXT sets and DNSKEY sets
/// with signatures are a few KiB). Bigger answers come over TCP from zones that are unusual or
/// hostile; serving them uncached costs one upstream exchange each, caching them would let
/// 4,096 names fill the whole budget.
const DEFAULT_CACHE_MAX_ENTRY_BYTES: u64 = 64 << 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCache {
    size: usize,
    max_bytes: Spanned<u64>,
    max_entry_bytes: Spanned<u64>,
    min_ttl: Spanned<u32>,
    max_ttl: Spanned<u32>,
    negative_max_ttl: u32,
    serve_stale: bool,
    stale_max_age_secs: u64,
    stale_answer_timeout_ms: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            size: 100_000,
            max_bytes: Spanned::new(0..0, DEFAULT_CACHE_MAX_BYTES),
            max_entry_bytes: Spanned::new(0..0, DEFAULT_CACHE_MAX_ENTRY_BYTES),
            min_ttl: Spanned::new(0..0, 0),
            max_ttl: Spanned::new(0..0, 86_400),
            negative_max_ttl: 3_600,
            serve_stale: true,
            stale_max_age_secs: 86_400,
            stale_answer_timeout_ms: 500,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRateLimit {
    qps: u32,
    burst: u32,
    ipv6_prefix: Spanned<u8>,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            qps: 500,
            burst: 1000,
            ipv6_prefix: Spanned::new(0..0, 64),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLists {
    manifest: PathBuf,
    artifact_dir: Option<PathBuf>,
    download_dir: Option<PathBuf>,
    compile_if_missing: bool,
    illegal_list: Option<PathBuf>,
    illegal_key_file: Option<PathBuf>,
    illegal_proxy: Option<std::net::IpAddr>,
    shrink_threshold: Spanned<f64>,
}

impl Default for RawLists {
    fn default() -> Self {
        Self {
            manifest: PathBuf::from("lists/lists.toml"),
            artifact_dir: None,
            download_dir: None,
            compile_if_missing: false,
            illegal_list: None,
            illegal_key_file: None,
            illegal_proxy: None,
            shrink_threshold: Spanned::new(0..0, 0.5),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    networks: Vec<IpNet>,
    #[serde(default)]
    deny: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    allow: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    block_categories: Vec<String>,
    #[serde(default)]
    block_answer: Option<Spanned<String>>,
    #[serde(default = "yes")]
    anti_circumvention: bool,
    #[serde(default)]
    strip_ech: bool,
    #[serde(default, rename = "schedule")]
    schedules: Vec<RawSchedule>,
    #[serde(default)]
    safesearch: super::SafeSearchConfig,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    days: Spanned<Vec<String>>,
    from: Spanned<String>,
    to: Spanned<String>,
    allow_categories: Vec<String>,
}

/// The span and key of `first` if it was written in the file, else of `second`: for a check
/// between two values, one of which may be a default (which has no place in the file).
fn written<T>(
    first: &Spanned<T>,
    first_key: &'static str,
    second: &Spanned<T>,
    second_key: &'static str,
) -> (std::ops::Range<usize>, &'static str) {
    if first.span() == (0..0) {
        (second.span(), second_key)
    } else {
        (first.span(), first_key)
    }
}

/// 1-based line where `span` starts; 0 for the empty span at 0, which marks a default value
/// (never written, so nowhere in the file; no value can start at offset 0, a key comes first).
fn line_of(text: &str, span: &std::ops::Range<usize>) -> usize {
    if *span == (0..0) {
        return 0;
    }
    text.get(..span.start)
        .map_or(0, |t| t.bytes().filter(|&b| b == b'\n').count() + 1)
}

impl RawConfig {
    /// Checks what serde cannot, and builds the validated [`Config`].
    pub(super) fn validate(self, text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid =
            |span: std::ops::Range<usize>, key: &str, reason: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: line_of(text, &span),
                key: key.to_string(),
                reason,
            };

        let s = self.server;
        if s.listen.get_ref().is_empty() {
            return Err(invalid(
                s.listen.span(),
                "server.listen",
                "at least one address is needed".into(),
            ));
        }
        let timezone = s
            .timezone
            .get_ref()
            .parse()
            .map_err(|reason| invalid(s.timezone.span(), "server.timezone", reason))?;
        let server = ServerConfig {
            timezone,
            listen: s.listen.into_inner(),
            http: s.http,
            data_dir: s.data_dir,
            tcp_idle_timeout: Duration::from_secs(s.tcp_idle_timeout_secs.max(1)),
            // Zero would refuse every connection; one is the least that still serves.
            tcp_max_connections: s.tcp_max_connections.max(1),
            tcp_max_connections_per_client: s.tcp_max_connections_per_client.max(1),
            http_max_connections: s.http_max_connections.max(1),
            shutdown_grace: Duration::from_secs(s.shutdown_grace_secs),
            allow_public_clients: s.allow_public_clients,
            udp_sockets: s.udp_sockets,
        };

        let mut servers = Vec::new();
        for spanned in &self.upstream.servers {
            let parsed = parse_upstream(spanned.get_ref())
                .map_err(|reason| invalid(spanned.span(), "upstream.servers", reason))?;
            servers.push(parsed);
        }
        for (timeout, key) in [
            (
                &self.upstream.attempt_timeout_ms,
                "upstream.attempt_timeout_ms",
            ),
            (&self.upstream.deadline_ms, "upstream.deadline_ms"),
        ] {
            if *timeout.get_ref() == 0 {
                return Err(invalid(
                    timeout.span(),
                    key,
                    "timeouts must be above zero".into(),
                ));
            }
        }
        let tls_roots = match &self.upstream.tls_ca {
            Some(path) => Some(
                TlsRoots::read(path.get_ref())
                    .map_err(|reason| invalid(path.span(), "upstream.tls_ca", reason))?,
            ),
            None => None,
        };
        let upstream = UpstreamSettings {
            servers,
            attempt_timeout: Duration::from_millis(*self.upstream.attempt_timeout_ms.get_ref()),
            deadline: Duration::from_millis(*self.upstream.deadline_ms.get_ref()),
            tls_roots,
        };

        let c = self.cache;
        let (min_ttl, max_ttl) = (*c.min_ttl.get_ref(), *c.max_ttl.get_ref());
        if min_ttl > max_ttl {
            // Blame the one that was written (a default has no place in the file).
            let (span, key) = written(&c.min_ttl, "cache.min_ttl", &c.max_ttl, "cache.max_ttl");
            return Err(invalid(
                span,
                key,
                format!("min_ttl ({min_ttl}) is above max_ttl ({max_ttl})"),
            ));
        }
        let (max_bytes, max_entry_bytes) = (*c.max_bytes.get_ref(), *c.max_entry_bytes.get_ref());
        if max_bytes == 0 && c.size > 0 {
            return Err(invalid(
                c.max_bytes.span(),
                "cache.max_bytes",
                "must be above zero (set `size = 0` to turn the cache off)".into(),
            ));
        }
        if max_entry_bytes > max_bytes {
            let (span, key) = written(
                &c.max_entry_bytes,
                "cache.max_entry_bytes",
                &c.max_bytes,
                "cache.max_bytes",
            );
            return Err(invalid(
                span,
                key,
                format!("{max_entry_bytes} is above max_bytes ({max_bytes})"),
            ));
        }
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let cache = CacheConfig {
            size: c.size,
            max_bytes: to_usize(max_bytes),
            max_entry_bytes: to_usize(max_entry_bytes),
            min_ttl,
            max_ttl,
            negative_max_ttl: c.negative_max_ttl,
            serve_stale: c.serve_stale,
            stale_max_age: Duration::from_secs(c.stale_max_age_secs),
            stale_answer_timeout: Duration::from_millis(c.stale_answer_timeout_ms),
        };

        let ipv6_prefix = *self.rate_limit.ipv6_prefix.get_ref();
        if ipv6_prefix > 128 {
            return Err(invalid(
                self.rate_limit.ipv6_prefix.span(),
                "rate_limit.ipv6_prefix",
                format!(
                    "{ipv6_prefix} is not a prefix length (0 to 128; 64 is one device's network)"
                ),
            ));
        }
        let rate_limit = RateLimitConfig {
            qps: self.rate_limit.qps,
            burst: self.rate_limit.burst.max(self.rate_limit.qps),
            ipv6_prefix,
        };

        let l = self.lists;
        if !(0.0..=1.0).contains(l.shrink_threshold.get_ref()) {
            return Err(invalid(
                l.shrink_threshold.span(),
                "lists.shrink_threshold",
                "must be between 0.0 and 1.0".into(),
            ));
        }
        let lists = ListsConfig {
            artifact_dir: l
                .artifact_dir
                .unwrap_or_else(|| server.data_dir.join("lists")),
            download_dir: l
                .download_dir
                .unwrap_or_else(|| server.data_dir.join("downloads")),
            illegal_key_file: l
                .illegal_key_file
                .unwrap_or_else(|| server.data_dir.join("illegal.key")),
            manifest: l.manifest,
            compile_if_missing: l.compile_if_missing,
            illegal_proxy: l.illegal_proxy,
            illegal_list: l.illegal_list,
            shrink_threshold: *l.shrink_threshold.get_ref(),
        };

        let mut names = HashSet::new();
        let mut groups = Vec::new();
        for g in self.groups {
            let name = g.name.get_ref().trim().to_string();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(
                    g.name.span(),
                    "group.name",
                    format!("`{name}`: use letters, digits, `-` and `_` only"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(
                    g.name.span(),
                    "group.name",
                    format!("group `{name}` is defined twice"),
                ));
            }
            if g.networks.is_empty() {
                return Err(invalid(
                    g.name.span(),
                    "group.networks",
                    format!("group `{name}` has no networks"),
                ));
            }
            let public: Vec<String> = g
                .networks
                .iter()
                .filter(|n| !super::is_private_network(n))
                .map(|n| n.to_string())
                .collect();
            if !public.is_empty() && !server.allow_public_clients {
                return Err(invalid(
                    g.name.span(),
                    "group.networks",
                    format!(
                        "group `{name}` covers public address space ({}): Hedgerow would answer anyone there, an open resolver. Use the school's private networks, or set `[server] allow_public_clients = true` if the school really has public addresses",
                        public.join(", ")
                    ),
                ));
            }
            let names_of = |list: &Option<Spanned<Vec<String>>>,
                            key: &str|
             -> Result<Vec<String>, ConfigError> {
                let Some(list) = list else {
                    return Ok(Vec::new());
                };
                list.get_ref()
                    .iter()
                    .map(|n| {
                        crate::names::normalise(n)
                            .map_err(|e| invalid(list.span(), key, format!("`{n}`: {e}")))
                    })
                    .collect()
            };
            let block_answer = match &g.block_answer {
                None => BlockAnswer::NxDomain,
                Some(spanned) => match spanned.get_ref().as_str() {
                    "nxdomain" => BlockAnswer::NxDomain,
                    "null" => BlockAnswer::Null,
                    other => BlockAnswer::Address(other.parse().map_err(|_| {
                        invalid(
                            spanned.span(),
                            "group.block_answer",
                            format!("`{other}`: use \"nxdomain\", \"null\" or a block page's IP address"),
                        )
                    })?),
                },
            };
            let mut schedules = Vec::new();
            for sc in &g.schedules {
                let days = Window::parse_days(sc.days.get_ref())
                    .map_err(|r| invalid(sc.days.span(), "group.schedule.days", r))?;
                let time = |t: &Spanned<String>, key: &str| {
                    parse_hhmm(t.get_ref()).ok_or_else(|| {
                        invalid(
                            t.span(),
                            key,
                            format!("`{}` is not a time like 12:30", t.get_ref()),
                        )
                    })
                };
                schedules.push(ScheduleConfig {
                    window: Window {
                        days,
                        from: time(&sc.from, "group.schedule.from")?,
                        to: time(&sc.to, "group.schedule.to")?,
                        zone: timezone,
                    },
                    allow_categories: sc.allow_categories.clone(),
                });
            }
            groups.push(GroupConfig {
                block_categories: g.block_categories.clone(),
                safesearch: g.safesearch.clone(),
                block_answer,
                anti_circumvention: g.anti_circumvention,
                strip_ech: g.strip_ech,
                schedules,
                deny: names_of(&g.deny, "group.deny")?,
                allow: names_of(&g.allow, "group.allow")?,
                name,
                networks: g.networks.iter().map(|n| n.trunc()).collect(),
            });
        }

        let mut devices = Vec::new();
        for d in self.devices {
            let group = d.group.get_ref();
            if !names.contains(group) {
                return Err(invalid(
                    d.group.span(),
                    "device.group",
                    format!("device `{}`: no group named `{group}`", d.name.get_ref()),
                ));
            }
            let mac = match &d.mac {
                Some(m) => Some(crate::neighbours::parse_mac(m.get_ref()).ok_or_else(|| {
                    invalid(
                        m.span(),
                        "device.mac",
                        format!(
                            "`{}` is not a MAC address like aa:bb:cc:dd:ee:ff",
                            m.get_ref()
                        ),
                    )
                })?),
                None => None,
            };
            if d.ip.is_none() && mac.is_none() {
                return Err(invalid(
                    d.name.span(),
                    "device",
                    format!("device `{}` needs an `ip` or a `mac`", d.name.get_ref()),
                ));
            }
            devices.push(DeviceConfig {
                name: d.name.get_ref().clone(),
                ip: d.ip,
                mac,
                group: group.clone(),
            });
        }

        let identity = self.identity.validate(&invalid)?;
        let alerts = self.alerts.validate(timezone, &invalid)?;
        let dashboard = self.dashboard.validate(&invalid)?;
        let checks = self.checks.validate(&invalid)?;

        let store = self
            .store
            .validate()
            .map_err(|(span, key, reason)| invalid(span, key, reason))?;
        Ok(Config {
            dashboard,
            identity,
            alerts,
            checks,
            store,
            devices,
            source: path.to_path_buf(),
            server,
            upstream,
            cache,
            rate_limit,
            lists,
            groups,
        })
    }
}

/// `ADDR`, `ADDR:PORT`, `[V6]:PORT`, or `tls://ADDR[:PORT]#server.name`.
fn parse_upstream(text: &str) -> Result<UpstreamConfig, String> {
    let (rest, tls_name, default_port) = match text.strip_prefix("tls://") {
        Some(rest) => {
            let (addr, name) = rest.split_once('#').ok_or_else(|| {
                format!("`{text}`: DNS-over-TLS needs the server's name: tls://ADDR#dns.example")
            })?;
            (addr, Some(name.to_string()), 853)
        }
        None => (text, None, 53),
    };
    let addr = rest
        .parse::<SocketAddr>()
        .or_else(|_| {
            rest.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, default_port))
        })
        .map_err(|_| format!("`{text}` is not ADDR, ADDR:PORT or tls://ADDR[:PORT]#NAME"))?;
    Ok(UpstreamConfig { addr, tls_name })
}
