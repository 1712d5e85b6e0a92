//! Configuration: the TOML schema and its validation.
//!
//! Two stages, as in ripgrep's low/high args: [`RawConfig`] is exactly what the file says
//! (serde, unknown keys rejected), and [`Config`] is the validated form the rest of the crate
//! uses. Every error names the file, the line and the key, so a technician can fix it without
//! reading code.
//!
//! # Example
//!
//! ```
//! let config = hedgerow::config::Config::from_toml_str(
//!     r#"
//!     [server]
//!     listen = ["127.0.0.1:5353"]
//!
//!     [upstream]
//!     servers = ["127.0.0.1:5300"]
//!
//!     [[group]]
//!     name = "staff"
//!     networks = ["127.0.0.1/32"]
//!     "#,
//!     "example.toml",
//! )
//! .unwrap();
//! assert_eq!(config.groups[0].name, "staff");
//! ```

pub mod alerts;
pub mod checks;
pub mod dashboard;
pub mod identity;
mod raw;
mod safesearch;
mod store;

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
pub use raw::RawConfig;
pub use safesearch::{SafeSearchConfig, YouTubeMode};

/// How a group's blocked queries are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockAnswer {
    /// NXDOMAIN with an SOA carrying the block TTL (the default: no TLS errors, cached).
    #[default]
    NxDomain,
    /// `0.0.0.0` / `::` for A/AAAA; NODATA for other types.
    Null,
    /// The address of a block page for A (IPv4) or AAAA (IPv6); NODATA for other types.
    Address(IpAddr),
}
pub use store::StoreConfig;

/// How each listening address's UDP queries are spread over the worker threads
/// (`[server] udp_sockets`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UdpSockets {
    /// One socket, read by every worker: whichever is free takes the next datagrams. The
    /// default: on two cores it served more queries a second (`benches/README.md`).
    #[default]
    Shared,
    /// One socket per worker, bound together with `SO_REUSEPORT` (Linux; elsewhere the
    /// same as `shared`): the kernel spreads clients over them by address and port, so
    /// workers never contend for one socket, but a busy client's queries all wait for one
    /// worker.
    PerWorker,
}

/// The configuration used when `hedgerow serve` is given no `--config`.
///
/// It runs on a fresh machine: DNS on 127.0.0.1:5353, HTTP on 127.0.0.1:8080, data in
/// `./hedgerow-data`, one group `local` for 127.0.0.0/8 and ::1 with a pupils' policy.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema (toml's message names line and key).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line, column and key.
        message: String,
    },
    /// A value parsed but makes no sense.
    #[error("{path}:{line}: `{key}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending value (0 when not known).
        line: usize,
        /// The dotted key.
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// One upstream resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Address and port.
    pub addr: SocketAddr,
    /// `Some(server name)` for DNS-over-TLS, `None` for plain UDP/TCP.
    pub tls_name: Option<String>,
}

impl std::fmt::Display for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tls_name {
            Some(name) => write!(f, "tls://{}#{name}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Every address gets a UDP socket and a TCP listener.
    pub listen: Vec<SocketAddr>,
    /// The dashboard and `/metrics` listener, if any.
    pub http: Option<SocketAddr>,
    /// Where the store, compiled lists and other state live.
    pub data_dir: PathBuf,
    /// A TCP connection idle for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// At most this many DNS-over-TCP connections at once (lowered at start-up when the
    /// open-file limit cannot hold them).
    pub tcp_max_connections: usize,
    /// At most this many DNS-over-TCP connections at once from one client address (an IPv6
    /// client: from its /64).
    pub tcp_max_connections_per_client: usize,
    /// At most this many HTTP (`/metrics`, dashboard) connections at once.
    pub http_max_connections: usize,
    /// On SIGINT/SIGTERM, in-flight queries get this long to finish.
    pub shutdown_grace: Duration,
    /// The school's time zone, for schedules.
    pub timezone: crate::schedule::TimeZone,
    /// Groups may cover public address space (see [`is_private_network`]). Off by default:
    /// one `0.0.0.0/0` typed by mistake would make Hedgerow an open resolver.
    pub allow_public_clients: bool,
    /// How UDP queries are spread over the worker threads.
    pub udp_sockets: UdpSockets,
}

/// Whether every address of `net` is private to a site: RFC 1918, loopback, link-local,
/// CGNAT (100.64.0.0/10) for IPv4; loopback, link-local and unique local (fc00::/7) for
/// IPv6. Groups may cover only such networks unless `[server] allow_public_clients = true`.
pub fn is_private_network(net: &IpNet) -> bool {
    const PRIVATE: [&str; 9] = [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
    ];
    PRIVATE
        .iter()
        .filter_map(|p| p.parse::<IpNet>().ok())
        .any(|p| p.contains(net))
}

/// Forwarding settings.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Tried in order; a failing upstream is moved behind healthy ones.
    pub servers: Vec<UpstreamConfig>,
    /// How long one upstream gets before the next is tried.
    pub attempt_timeout: Duration,
    /// After this the client gets SERVFAIL (or a stale answer).
    pub deadline: Duration,
    /// CA certificates trusted for DNS-over-TLS upstreams instead of the built-in web roots
    /// (an upstream with a private CA, such as a local authority's filtering service).
    pub tls_roots: Option<TlsRoots>,
}

/// Certificates read from a PEM file.
#[derive(Debug, Clone)]
pub struct TlsRoots {
    /// The file they came from.
    pub path: PathBuf,
    /// The certificates, in file order.
    pub certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl TlsRoots {
    /// Reads every certificate in the PEM file at `path`; at least one is required.
    pub fn read(path: &Path) -> Result<TlsRoots, String> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("`{}` is not valid PEM: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("no certificates in `{}`", path.display()));
        }
        Ok(TlsRoots {
            path: path.to_path_buf(),
            certs,
        })
    }
}

/// Cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Maximum number of cached answers (0 disables the cache).
    pub size: usize,
    /// Memory budget of the cached answers, in bytes (each entry's records, pre-encoded bytes
    /// and key, estimated on the high side): a device asking many names with large answers
    /// cannot grow the process past it.
    pub max_bytes: usize,
    /// An answer estimated above this many bytes is served but not cached.
    pub max_entry_bytes: usize,
    /// TTLs of positive answers are clamped into `[min_ttl, max_ttl]`.
    pub min_ttl: u32,
    /// See `min_ttl`.
    pub max_ttl: u32,
    /// Upper bound for NXDOMAIN/NODATA caching (the SOA minimum is used below it).
    pub negative_max_ttl: u32,
    /// Answer from expired entries when every upstream fails (RFC 8767).
    pub serve_stale: bool,
    /// How long past expiry an entry may still be served stale.
    pub stale_max_age: Duration,
    /// With a stale entry at hand, how long to wait for upstream before answering stale.
    pub stale_answer_timeout: Duration,
}

/// Per-client rate limit.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    /// Sustained queries per second per client address (0 disables the limit).
    pub qps: u32,
    /// Short bursts above `qps` allowed per client.
    pub burst: u32,
    /// IPv6 clients share one bucket per network of this prefix length: a device picks any
    /// address in its /64 (privacy addresses), so a per-address limit would not hold it.
    /// IPv4 clients have one bucket per address.
    pub ipv6_prefix: u8,
}

/// Compiled lists: where they come from and where they go.
#[derive(Debug, Clone)]
pub struct ListsConfig {
    /// The category manifest (`lists/lists.toml`).
    pub manifest: PathBuf,
    /// Where `hedgerow lists compile` writes the artifact and `serve` reads it.
    pub artifact_dir: PathBuf,
    /// Where downloaded sources are cached by `hedgerow lists update`.
    pub download_dir: PathBuf,
    /// Compile the manifest at start-up when no artifact exists (the embedded default).
    pub compile_if_missing: bool,
    /// The licensed illegal-content (IWF/CTIRU) list file, if the school holds one.
    pub illegal_list: Option<PathBuf>,
    /// The secret key its entries are hashed with.
    pub illegal_key_file: PathBuf,
    /// Refuse a downloaded source that shrank below this fraction of the last good copy.
    pub shrink_threshold: f64,
    /// A URL-filtering proxy's address, given for hosts that have path-only illegal entries.
    pub illegal_proxy: Option<IpAddr>,
}

/// A window in which a group may reach some otherwise blocked categories.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// When.
    pub window: crate::schedule::Window,
    /// Category ids unblocked during the window.
    pub allow_categories: Vec<String>,
}

/// A known device: its address pins it to a group and gives it a name in logs.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Name shown in logs and the dashboard.
    pub name: String,
    /// Its address, if pinned by address.
    pub ip: Option<IpAddr>,
    /// Its hardware address, if pinned by MAC (IPv4 clients on the server's own LAN segment).
    pub mac: Option<crate::neighbours::Mac>,
    /// The group it belongs to, whatever network it is on.
    pub group: String,
}

/// A group of clients (pupils, staff, guests, …) and its policy.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Unique name, used in metrics labels and logs.
    pub name: String,
    /// Client networks; the most specific network across all groups wins.
    pub networks: Vec<IpNet>,
    /// Names (and their subdomains) always blocked for this group.
    pub deny: Vec<String>,
    /// Names (and their subdomains) never blocked for this group, except by the illegal tier.
    pub allow: Vec<String>,
    /// Category ids (from the list manifest) this group blocks.
    pub block_categories: Vec<String>,
    /// How blocked names are answered.
    pub block_answer: BlockAnswer,
    /// Answer the built-in circumvention names locally (Firefox canary, Private Relay, DDR).
    pub anti_circumvention: bool,
    /// Remove `ech` from HTTPS/SVCB answers.
    pub strip_ech: bool,
    /// Windows in which some categories are not blocked.
    pub schedules: Vec<ScheduleConfig>,
    /// SafeSearch and YouTube Restricted Mode (`[group.safesearch]`; absent: off).
    pub safesearch: SafeSearchConfig,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (a path, or `<embedded default>`).
    pub source: PathBuf,
    /// Listeners.
    pub server: ServerConfig,
    /// Forwarding.
    pub upstream: UpstreamSettings,
    /// Cache.
    pub cache: CacheConfig,
    /// Rate limit.
    pub rate_limit: RateLimitConfig,
    /// Lists.
    pub lists: ListsConfig,
    /// Client groups, in file order.
    pub groups: Vec<GroupConfig>,
    /// Known devices.
    pub devices: Vec<DeviceConfig>,
    /// Where client identities come from (DHCP leases, sessions).
    pub identity: identity::IdentityConfig,
    /// Instant safeguarding alerts.
    pub alerts: alerts::AlertsConfig,
    /// The query log, breaches and audit trail.
    pub store: StoreConfig,
    /// The web dashboard.
    pub dashboard: dashboard::DashboardConfig,
    /// The filtering checks: how often, and what they ask.
    pub checks: checks::ChecksConfig,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Config {
        // The embedded text is part of the binary and covered by a unit test, so this
        // cannot fail at run time.
        Self::from_toml_str(EMBEDDED_DEFAULT, "<embedded default>")
            .unwrap_or_else(|e| panic!("embedded default configuration is invalid: {e}"))
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = origin.as_ref().to_path_buf();
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        raw.validate(text, &path)
    }

    /// Applies command-line overrides (`--listen`, `--upstream`, `--http`).
    pub fn override_with(
        &mut self,
        listen: &[SocketAddr],
        upstreams: &[SocketAddr],
        http: Option<SocketAddr>,
    ) {
        if !listen.is_empty() {
            self.server.listen = listen.to_vec();
        }
        if !upstreams.is_empty() {
            self.upstream.servers = upstreams
                .iter()
                .map(|&addr| UpstreamConfig {
                    addr,
                    tls_name: None,
                })
                .collect();
        }
        if let Some(http) = http {
            self.server.http = Some(http);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default();
        assert_eq!(c.server.listen, vec!["127.0.0.1:5353".parse().unwrap()]);
        assert_eq!(c.server.http, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.groups.len(), 1);
        assert_eq!(c.groups[0].name, "local");
        let nets: Vec<String> = c.groups[0].networks.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["127.0.0.0/8", "::1/128"]);
    }

    #[test]
    fn public_networks_need_allow_public_clients() {
        let private = [
            "10.1.0.0/16",
            "172.31.0.0/16",
            "192.168.1.0/24",
            "127.0.0.1/32",
            "169.254.0.0/16",
            "100.64.0.0/10",
            "::1/128",
            "fe80::/64",
            "fd00:1::/48",
        ];
        for n in private {
            assert!(is_private_network(&n.parse().unwrap()), "{n}");
        }
        let public = [
            "0.0.0.0/0",
            "::/0",
            "8.8.8.0/24",
            "172.0.0.0/8",
            "100.0.0.0/8",
            "2001:db8::/32",
            "::ffff:0:0/96",
        ];
        for n in public {
            assert!(!is_private_network(&n.parse().unwrap()), "{n}");
        }
        let text = "[[group]]\nname = \"all\"\nnetworks = [\"10.0.0.0/8\", \"0.0.0.0/0\"]\n";
        let err = Config::from_toml_str(text, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.toml:2: `group.networks`"), "{err}");
        assert!(
            err.contains("0.0.0.0/0") && err.contains("allow_public_clients"),
            "{err}"
        );
        let allowed = format!("[server]\nallow_public_clients = true\n{text}");
        let c = Config::from_toml_str(&allowed, "s.toml").unwrap();
        assert!(c.server.allow_public_clients);
    }

    #[test]
    fn udp_sockets_is_shared_unless_per_worker_is_asked_for() {
        let group = "[[group]]\nname = \"all\"\nnetworks = [\"10.0.0.0/8\"]\n";
        let c = Config::from_toml_str(group, "s.toml").unwrap();
        assert_eq!(c.server.udp_sockets, UdpSockets::Shared);
        let text = format!("[server]\nudp_sockets = \"per-worker\"\n{group}");
        let c = Config::from_toml_str(&text, "s.toml").unwrap();
        assert_eq!(c.server.udp_sockets, UdpSockets::PerWorker);
        let text = format!("[server]\nudp_sockets = \"reuseport\"\n{group}");
        let err = Config::from_toml_str(&text, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("`shared`") && err.contains("`per-worker`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = Config::from_toml_str(
            "[server]\nlisten = [\"127.0.0.1:53\"]\nlistne = 1\n",
            "school.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("school.toml:"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("listne"), "{err}");
    }

    /// Found by the `config` fuzz target: these checks named line 0 ("not known"), and a
    /// blocked-retention of zero was blamed on `retention_allowed_days`.
    #[test]
    fn every_invalid_value_names_its_line_and_key() {
        let cases = [
            ("[server]\nlisten = []\n", 2, "server.listen"),
            (
                "[upstream]\n\nattempt_timeout_ms = 0\n",
                3,
                "upstream.attempt_timeout_ms",
            ),
            ("[upstream]\ndeadline_ms = 0\n", 2, "upstream.deadline_ms"),
            ("[cache]\nmin_ttl = 90000\n", 2, "cache.min_ttl"),
            ("[cache]\nmax_ttl = 0\nmin_ttl = 0\n", 0, ""),
            ("[cache]\nmin_ttl = 5\nmax_ttl = 1\n", 2, "cache.min_ttl"),
            ("[cache]\nmax_ttl = 1\n\nmin_ttl = 5\n", 4, "cache.min_ttl"),
            (
                "[cache]\nmax_entry_bytes = 300000000\n",
                2,
                "cache.max_entry_bytes",
            ),
            ("[cache]\n\n\nmax_bytes = 1000\n", 4, "cache.max_bytes"),
            (
                "[lists]\nshrink_threshold = 1.5\n",
                2,
                "lists.shrink_threshold",
            ),
            (
                "[store]\nretention_blocked_days = 0\n",
                2,
                "store.retention_blocked_days",
            ),
            (
                "[store]\n\nrollup_retention_days = 0\n",
                3,
                "store.rollup_retention_days",
            ),
            (
                "[store]\nbreach_window_secs = 0\n",
                2,
                "store.breach_window_secs",
            ),
            (
                "[store]\nbatch_interval_ms = 1\n",
                2,
                "store.batch_interval_ms",
            ),
            (
                "[store]\nchannel_capacity = 1\n",
                2,
                "store.channel_capacity",
            ),
        ];
        for (text, line, key) in cases {
            match Config::from_toml_str(text, "school.toml") {
                Err(ConfigError::Invalid {
                    line: l, key: k, ..
                }) => {
                    assert_eq!((l, k.as_str()), (line, key), "{text}")
                }
                Ok(_) => assert_eq!(line, 0, "{text} was accepted"),
                Err(other) => assert_eq!(line, 0, "{text}: {other}"),
            }
        }
    }

    #[test]
    fn bad_cidr_names_line() {
        let err = Config::from_toml_str(
            "[[group]]\nname = \"pupils\"\nnetworks = [\"10.0.0.0/33\"]\n",
            "school.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn duplicate_group_and_bad_deny_are_reported_with_lines() {
        let text = "[[group]]\nname = \"a\"\nnetworks = [\"10.0.0.0/8\"]\n\n[[group]]\nname = \"a\"\nnetworks = [\"10.1.0.0/16\"]\n";
        let err = Config::from_toml_str(text, "s.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "s.toml:6: `group.name`: group `a` is defined twice");
        let text = "[[group]]\nname = \"a\"\nnetworks = [\"10.0.0.0/8\"]\ndeny = [\"bad..name\"]\n";
        let err = Config::from_toml_str(text, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.toml:4: `group.deny`"), "{err}");
    }

    #[test]
    fn devices_need_a_known_group_and_a_valid_address() {
        let base = "[[group]]\nname = \"staff\"\nnetworks = [\"10.0.0.0/8\"]\n";
        let ok = format!(
            "{base}[[device]]\nname = \"pc\"\nmac = \"AA-bb-cc-dd-ee-ff\"\ngroup = \"staff\"\n"
        );
        let c = Config::from_toml_str(&ok, "s.toml").unwrap();
        assert_eq!(c.devices[0].mac, Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]));
        let bad_mac =
            format!("{base}[[device]]\nname = \"pc\"\nmac = \"aa:bb\"\ngroup = \"staff\"\n");
        let err = Config::from_toml_str(&bad_mac, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.toml:6: `device.mac`"), "{err}");
        let neither = format!("{base}[[device]]\nname = \"pc\"\ngroup = \"staff\"\n");
        assert!(Config::from_toml_str(&neither, "s.toml").is_err());
        let unknown =
            format!("{base}[[device]]\nname = \"pc\"\nip = \"10.0.0.1\"\ngroup = \"pupils\"\n");
        let err = Config::from_toml_str(&unknown, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no group named `pupils`"), "{err}");
    }

    #[test]
    fn upstream_forms() {
        let text = "[upstream]\nservers = [\"192.0.2.1\", \"192.0.2.2:5300\", \"tls://192.0.2.3#dns.example\"]\n";
        let c = Config::from_toml_str(text, "s.toml").unwrap();
        let s: Vec<String> = c.upstream.servers.iter().map(|u| u.to_string()).collect();
        assert_eq!(
            s,
            [
                "192.0.2.1:53",
                "192.0.2.2:5300",
                "tls://192.0.2.3:853#dns.example"
            ]
        );
        let err = Config::from_toml_str("[upstream]\nservers = [\"tls://192.0.2.3\"]\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("s.toml:2"), "{err}");
    }

    #[test]
    fn tls_ca_must_hold_certificates() {
        let missing = "[upstream]\ntls_ca = \"/nonexistent/ca.pem\"\n";
        let err = Config::from_toml_str(missing, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s.toml:2") && err.contains("upstream.tls_ca"),
            "{err}"
        );
        assert!(err.contains("cannot read `/nonexistent/ca.pem`"), "{err}");
        // A file with no certificate in it (this source file) is refused too.
        let not_pem = format!("[upstream]\ntls_ca = \"{}\"\n", file!());
        let err = Config::from_toml_str(&not_pem, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no certificates in"), "{err}");
    }
}

#[cfg(test)]
mod example_tests {
    #[test]
    fn shipped_example_config_is_valid() {
        let c = super::Config::from_toml_str(
            include_str!("../../deploy/hedgerow.example.toml"),
            "deploy/hedgerow.example.toml",
        )
        .unwrap();
        assert_eq!(c.groups.len(), 3);
        assert_eq!(
            c.upstream.servers[0].tls_name.as_deref(),
            Some("dns.quad9.net")
        );
    }
}
