//! `hedgerow check-config`: what the configuration does, in plain English — per group, what
//! is blocked, what is rewritten (SafeSearch), when, and for which devices.

use crate::{
    config::{BlockAnswer, Config, GroupConfig},
    schedule::{TimeZone, Window},
};

fn timezone_name(config: &Config) -> String {
    match config.server.timezone {
        TimeZone::EuropeLondon => "Europe/London time".into(),
        TimeZone::Fixed(m) => {
            format!("UTC{:+03}:{:02}", m / 60, (m % 60).abs())
        }
    }
}

/// A plain-English summary of what each group gets, for `hedgerow check-config` (and the
/// dashboard's policy page).
pub fn describe(config: &Config) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "configuration: {}", config.source.display());
    let listen: Vec<String> = config.server.listen.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(out, "DNS (UDP and TCP) on: {}", listen.join(", "));
    match config.server.http {
        Some(http) => {
            let _ = writeln!(out, "dashboard and /metrics on: http://{http}");
        }
        None => {
            let _ = writeln!(out, "dashboard and /metrics: off");
        }
    }
    let ups: Vec<String> = config
        .upstream
        .servers
        .iter()
        .map(|u| u.to_string())
        .collect();
    let _ = writeln!(
        out,
        "forwards to: {} (each tried for {} ms, SERVFAIL after {} ms)",
        ups.join(", "),
        config.upstream.attempt_timeout.as_millis(),
        config.upstream.deadline.as_millis()
    );
    let _ = writeln!(
        out,
        "cache: {} entries or {} KiB, answers above {} KiB not cached, TTL clamped to {}..{} s, negative answers up to {} s, serve-stale {}",
        config.cache.size,
        config.cache.max_bytes / 1024,
        config.cache.max_entry_bytes / 1024,
        config.cache.min_ttl,
        config.cache.max_ttl,
        config.cache.negative_max_ttl,
        if config.cache.serve_stale {
            "on"
        } else {
            "off"
        }
    );
    if config.rate_limit.qps == 0 {
        let _ = writeln!(out, "rate limit: off");
    } else {
        let _ = writeln!(
            out,
            "rate limit: {} queries/s per client (IPv4 address, IPv6 /{}), bursts of {}",
            config.rate_limit.qps, config.rate_limit.ipv6_prefix, config.rate_limit.burst
        );
    }
    let public: Vec<String> = config
        .groups
        .iter()
        .flat_map(|g| g.networks.iter())
        .filter(|n| !crate::config::is_private_network(n))
        .map(|n| n.to_string())
        .collect();
    if public.is_empty() {
        let _ = writeln!(
            out,
            "clients outside every group below are REFUSED (never an open resolver)"
        );
    } else {
        let _ = writeln!(
            out,
            "clients outside every group below are REFUSED, but allow_public_clients = true and groups cover public address space ({}): anyone there is answered, an OPEN RESOLVER to those networks",
            public.join(", ")
        );
    }
    for g in &config.groups {
        let _ = write!(out, "\n{}", describe_group(config, g));
    }
    for d in &config.devices {
        let by = match (d.ip, d.mac) {
            (Some(ip), _) => format!("address {ip}"),
            (None, Some(m)) => format!(
                "MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            (None, None) => continue,
        };
        let _ = writeln!(
            out,
            "\ndevice `{}` ({by}) is always in group `{}`",
            d.name, d.group
        );
    }
    let illegal = match &config.lists.illegal_list {
        Some(path) => format!(
            "{} (stored as keyed hashes; applies to every group and cannot be overridden)",
            path.display()
        ),
        None => "none configured: rely on your broadband provider's filtering for IWF/CTIRU URLs"
            .to_string(),
    };
    let _ = writeln!(out, "\nillegal-content list: {illegal}");
    if let Some(proxy) = config.lists.illegal_proxy {
        let _ = writeln!(
                out,
                "hosts with only some illegal URLs listed are sent to the URL-filtering proxy at {proxy}"
            );
    }
    out.push_str(&describe_checks(
        &config.checks,
        config.lists.illegal_list.is_some(),
    ));
    out
}

/// The filtering checks in plain English (never the illegal-content test entry itself).
fn describe_checks(checks: &crate::config::checks::ChecksConfig, illegal_list: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let every = match checks.every {
        Some(d) if d.as_secs() % 86_400 == 0 => format!("every {} day(s)", d.as_secs() / 86_400),
        Some(d) => format!("every {} hour(s)", d.as_secs() / 3600),
        None => "only when asked (`every = \"off\"`)".to_string(),
    };
    let _ = writeln!(
        out,
        "\nfiltering checks: {every}, recorded in the store, an alert when one fails; `hedgerow check-filtering` runs one now"
    );
    let _ = writeln!(
        out,
        "  each group is asked, as one of its devices: up to 3 names of each category it blocks (must be blocked), its SafeSearch engines (must be rewritten), the anti-circumvention names (must be answered locally)"
    );
    if checks.allowed.is_empty() {
        let _ = writeln!(
            out,
            "  no names are checked to resolve ([checks] allowed is empty)"
        );
    } else {
        let _ = writeln!(
            out,
            "  and these must resolve: {}",
            checks.allowed.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "  illegal-content test entry: {}",
        match (&checks.illegal_probe, illegal_list) {
            (Some(_), _) => "set (withheld); it must be blocked",
            (None, true) => "NOT set: the illegal-content tier is recorded as not tested (ask the IWF for a test entry)",
            (None, false) => "not set",
        }
    );
    out
}

/// What one group gets, in plain English: its networks, blocked categories and schedules,
/// deny and allow entries, block answer, anti-circumvention and SafeSearch. Names no device
/// (devices pinned to the group are described by [`describe`] after the groups).
pub fn describe_group(config: &Config, g: &GroupConfig) -> String {
    let nets: Vec<String> = g.networks.iter().map(|n| n.to_string()).collect();
    format!(
        "group `{}`: clients in {}\n{}",
        g.name,
        nets.join(", "),
        describe_group_rules(config, g)
    )
}

/// What one group gets without where its clients are: [`describe_group`]'s lines after the
/// first, each indented by two spaces. A network can be one device's address (a `/32`), so
/// pages for people who may not see addresses show this instead.
pub fn describe_group_rules(config: &Config, g: &GroupConfig) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if g.block_categories.is_empty() {
        let _ = writeln!(out, "  blocks no list categories");
    } else {
        let _ = writeln!(
            out,
            "  blocks these list categories (with subdomains): {}",
            g.block_categories.join(", ")
        );
    }
    for s in &g.schedules {
        let _ = writeln!(
            out,
            "  but allows {} {} ({})",
            s.allow_categories.join(", "),
            describe_window(&s.window),
            timezone_name(config)
        );
    }
    if g.deny.is_empty() {
        let _ = writeln!(out, "  blocks no extra names");
    } else {
        let _ = writeln!(
            out,
            "  always blocks (with subdomains): {}",
            g.deny.join(", ")
        );
    }
    if !g.allow.is_empty() {
        let _ = writeln!(
            out,
            "  never blocks (with subdomains, except the illegal-content list): {}",
            g.allow.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "  answers blocked names with {}",
        match g.block_answer {
            BlockAnswer::NxDomain => "NXDOMAIN (\"no such name\", cached 5 minutes)".to_string(),
            BlockAnswer::Null => "0.0.0.0 / ::".to_string(),
            BlockAnswer::Address(ip) => format!("the block page at {ip}"),
        }
    );
    if g.anti_circumvention {
        let _ = writeln!(out, "  stops DNS-over-HTTPS and Private Relay take-over (Firefox canary, mask.icloud.com, _dns.resolver.arpa)");
    } else {
        let _ = writeln!(
            out,
            "  does NOT answer the Firefox canary, Private Relay or DDR names locally"
        );
    }
    let _ = writeln!(
        out,
        "  {}",
        crate::pipeline::safesearch::describe(&g.safesearch)
    );
    if g.strip_ech {
        let _ = writeln!(
            out,
            "  strips Encrypted Client Hello keys from HTTPS records"
        );
    }
    out
}

fn describe_window(w: &Window) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let days: Vec<&str> = (0..7)
        .filter(|d| w.days & (1 << d) != 0)
        .map(|d| DAYS[d])
        .collect();
    format!(
        "on {} from {:02}:{:02} to {:02}:{:02}",
        days.join(", "),
        w.from / 60,
        w.from % 60,
        w.to / 60,
        w.to % 60
    )
}

/// What `check-config` found beyond the schema: errors (`serve` would fail too) and warnings
/// (it would start, but probably not as meant).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Each makes `check-config` exit non-zero.
    pub errors: Vec<String>,
    /// Printed, exit status unchanged.
    pub warnings: Vec<String>,
}

/// Checks what a parsed configuration cannot say about itself: networks shared by groups
/// (and which group wins, as [`crate::pipeline::identify`] decides: the most specific
/// network, on a tie the earlier group), missing groups or upstreams, and category ids that
/// the list manifest or the compiled lists do not define (`serve` refuses to start on those).
/// Reads the manifest and the compiled lists' `meta.toml`.
pub fn check(config: &Config) -> Findings {
    let mut f = Findings::default();
    if config.groups.is_empty() {
        f.warnings
            .push("no [[group]]: every client will be REFUSED (add one per school network)".into());
    }
    if config.upstream.servers.is_empty() {
        f.warnings
            .push("no [upstream] servers: `serve` will only start with --upstream ADDR".into());
    }
    overlaps(config, &mut f.warnings);
    categories(config, &mut f);
    artifact(config, &mut f);
    dashboard(config, &mut f.warnings);
    f
}

/// Sign-in over plain HTTP: allowed on a loopback listener, refused elsewhere unless
/// `allow_plain_http` says a TLS reverse proxy is in front — which deserves a warning.
fn dashboard(config: &Config, warnings: &mut Vec<String>) {
    let d = &config.dashboard;
    let Some(http) = config.server.http else {
        return;
    };
    if !d.enabled || d.tls.is_some() || http.ip().is_loopback() {
        return;
    }
    if d.allow_plain_http {
        warnings.push(format!(
            "dashboard: sign-in over plain HTTP on {http} is allowed (allow_plain_http = true):              only safe behind a TLS reverse proxy on the same machine; otherwise set              [dashboard] tls_cert and tls_key"
        ));
    } else {
        warnings.push(format!(
            "dashboard: {http} is plain HTTP and not loopback, so sign-in is refused there:              set [dashboard] tls_cert and tls_key"
        ));
    }
}

/// Opens the compiled lists as `serve` would (checksums, structure, the illegal tier's key),
/// without compiling or writing anything.
fn artifact(config: &Config, f: &mut Findings) {
    use crate::lists::{artifact::good_path, Blocklists};
    let l = &config.lists;
    if !l
        .artifact_dir
        .join(crate::lists::artifact::META_TOML)
        .exists()
    {
        return; // reported by `categories`
    }
    let key = l
        .illegal_list
        .as_ref()
        .map(|_| l.illegal_key_file.as_path());
    if let Err(error) = Blocklists::open(&l.artifact_dir, key) {
        let good = good_path(&l.artifact_dir);
        match Blocklists::open(&good, key) {
            Ok(_) => f.warnings.push(format!(
                "{error}; `serve` would use the last good copy in {}",
                good.display()
            )),
            Err(_) => f.errors.push(error.to_string()),
        }
    }
}

fn overlaps(config: &Config, out: &mut Vec<String>) {
    for (i, a) in config.groups.iter().enumerate() {
        for b in &config.groups[i + 1..] {
            for na in &a.networks {
                for nb in &b.networks {
                    if !(na.contains(nb) || nb.contains(na)) {
                        continue;
                    }
                    let (inner, winner, why) = match na.prefix_len().cmp(&nb.prefix_len()) {
                        std::cmp::Ordering::Greater => (na, a, "the most specific network wins"),
                        std::cmp::Ordering::Less => (nb, b, "the most specific network wins"),
                        std::cmp::Ordering::Equal => (
                            na,
                            a,
                            "the same network: the group earlier in the file wins",
                        ),
                    };
                    out.push(format!(
                        "networks overlap: {na} (group `{}`) and {nb} (group `{}`): clients in {inner} get group `{}` ({why})",
                        a.name, b.name, winner.name
                    ));
                }
            }
        }
    }
}

/// Category ids the groups name, each with where it is named.
fn named_categories(config: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for g in &config.groups {
        for c in &g.block_categories {
            out.push((c.clone(), format!("group `{}` block_categories", g.name)));
        }
        for s in &g.schedules {
            for c in &s.allow_categories {
                out.push((c.clone(), format!("group `{}` schedule", g.name)));
            }
        }
    }
    out
}

fn categories(config: &Config, f: &mut Findings) {
    use crate::lists::{artifact, Manifest, Meta};
    let l = &config.lists;
    let named = named_categories(config);
    let unknown = |known: &[&str], source: &str, errors: &mut Vec<String>| {
        for (id, where_) in &named {
            if !known.contains(&id.as_str()) {
                errors.push(format!(
                    "{where_}: unknown list category `{id}` ({source} defines: {})",
                    known.join(", ")
                ));
            }
        }
    };
    let manifest = Manifest::load(&l.manifest);
    if let Ok(m) = &manifest {
        let ids: Vec<&str> = m.categories.iter().map(|c| c.id.as_str()).collect();
        unknown(
            &ids,
            &format!("the manifest {}", l.manifest.display()),
            &mut f.errors,
        );
    }
    // `serve` checks against the compiled lists (or the last good copy it would fall back on).
    let compiled =
        Meta::read(&l.artifact_dir).or_else(|_| Meta::read(&artifact::good_path(&l.artifact_dir)));
    match (&compiled, &manifest) {
        (Ok(meta), _) => {
            let ids: Vec<&str> = meta.categories.iter().map(|c| c.id.as_str()).collect();
            let before = f.errors.len();
            unknown(&ids, "the compiled lists", &mut f.errors);
            if f.errors.len() > before {
                f.errors.push(format!(
                    "the compiled lists in {} are older than the manifest: run `hedgerow lists compile`",
                    l.artifact_dir.display()
                ));
            }
        }
        (Err(_), Err(e)) if l.compile_if_missing => f.errors.push(format!(
            "no compiled lists, and the manifest cannot be read to compile them: {e}"
        )),
        (Err(_), Err(e)) => f.warnings.push(format!(
            "no compiled lists in {} and the manifest cannot be read ({e}): `serve` will not start",
            l.artifact_dir.display()
        )),
        (Err(_), Ok(_)) if !l.compile_if_missing => f.warnings.push(format!(
            "no compiled lists in {} yet: run `hedgerow lists compile` before `serve`",
            l.artifact_dir.display()
        )),
        (Err(_), Ok(_)) => {}
    }
    f.errors.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_are_described_without_the_illegal_probe() {
        let text = describe(&Config::embedded_default());
        assert!(text.contains("filtering checks: every 7 day(s)"), "{text}");
        assert!(
            text.contains("www.bbc.co.uk, www.gov.uk, en.wikipedia.org"),
            "{text}"
        );
        let config = Config::from_toml_str(
            "[lists]\nillegal_list = \"/etc/hedgerow/iwf.txt\"\n\
             [checks]\nevery = \"24h\"\nillegal_probe = \"secret-probe.example\"\n",
            "t.toml",
        )
        .unwrap();
        let text = describe(&config);
        assert!(text.contains("filtering checks: every 1 day(s)"), "{text}");
        assert!(
            text.contains("illegal-content test entry: set (withheld)"),
            "{text}"
        );
        assert!(!text.contains("secret-probe"), "{text}");
        let config = Config::from_toml_str(
            "[lists]\nillegal_list = \"/etc/hedgerow/iwf.txt\"\n[checks]\nevery = \"off\"\n",
            "t.toml",
        )
        .unwrap();
        let text = describe(&config);
        assert!(text.contains("only when asked"), "{text}");
        assert!(text.contains("NOT set"), "{text}");
    }
}
