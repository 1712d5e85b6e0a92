//! `hedgerow check-config`: what the configuration does, in plain English — per group, what
//! is blocked, what is rewritten (SafeSearch), when, and for which devices.

use crate::{
    config::{BlockAnswer, Config},
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
            "rate limit: {} queries/s per client, bursts of {}",
            config.rate_limit.qps, config.rate_limit.burst
        );
    }
    let _ = writeln!(
        out,
        "clients outside every group below are REFUSED (never an open resolver)"
    );
    for g in &config.groups {
        let nets: Vec<String> = g.networks.iter().map(|n| n.to_string()).collect();
        let _ = writeln!(out, "\ngroup `{}`: clients in {}", g.name, nets.join(", "));
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
                BlockAnswer::NxDomain =>
                    "NXDOMAIN (\"no such name\", cached 5 minutes)".to_string(),
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
