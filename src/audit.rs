//! The policy audit trail: every change to what is filtered, who or what made it, and why
//! (DfE: "decisions on what is blocked or allowed and why", changes logged so nobody can make
//! unilateral changes).
//!
//! This module says, in plain English, what changed between two configurations; the store's
//! tamper-evident audit trail keeps the records (see `app.rs`, which appends them).

use std::collections::BTreeSet;

use crate::config::{
    checks::ChecksConfig,
    identity::{DhcpSource, IdentityConfig},
    Config, DeviceConfig, GroupConfig, ListsConfig, RateLimitConfig, ScheduleConfig, ServerConfig,
    TlsRoots, UpstreamConfig, UpstreamSettings,
};

/// The policy differences between two configurations, in plain English: every setting that
/// changes what a device can reach, or who counts as which device.
///
/// Each configuration struct is taken apart field by field without `..`, so a new field does
/// not compile until it is either compared here or named as not filtering policy.
pub fn diff(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let Config {
        source: _,
        server,
        upstream,
        cache: _, // how long answers are kept, not what is answered
        rate_limit,
        lists,
        groups,
        devices,
        identity,
        alerts: _, // who is told about breaches, not what a device can reach
        store,     // what is recorded and for how long: the school's monitoring policy
        dashboard, // who can see the records and how they sign in
        checks,    // how filtering is checked and recorded: also the school's monitoring policy
    } = new;
    checks_diff(&mut out, &old.checks, checks);
    changed(
        &mut out,
        "dashboard sign-in settings (HTTPS, second factor, session lengths)",
        &old.dashboard,
        dashboard,
    );
    changed(
        &mut out,
        "query log and retention settings",
        &old.store,
        store,
    );
    let ServerConfig {
        listen: _,
        http: _,
        data_dir: _,
        tcp_idle_timeout: _,
        // Connection caps protect the server, not what a device can reach.
        tcp_max_connections: _,
        tcp_max_connections_per_client: _,
        http_max_connections: _,
        shutdown_grace: _,
        udp_sockets: _,
        timezone, // schedules are read in it
        allow_public_clients,
    } = server;
    changed(
        &mut out,
        "answers clients on public networks (allow_public_clients)",
        &old.server.allow_public_clients,
        allow_public_clients,
    );
    changed(
        &mut out,
        "school time zone (for schedules)",
        &old.server.timezone,
        timezone,
    );
    let UpstreamSettings {
        servers,
        attempt_timeout: _,
        deadline: _,
        tls_roots,
    } = upstream;
    let ups = |s: &[UpstreamConfig]| s.iter().map(|u| u.to_string()).collect::<Vec<_>>();
    list_change(
        &mut out,
        "upstreams".into(),
        &ups(&old.upstream.servers),
        &ups(servers),
    );
    let roots = |r: &Option<TlsRoots>| r.as_ref().map(|r| r.path.display().to_string());
    changed(
        &mut out,
        "CA file trusted for DNS-over-TLS upstreams",
        &roots(&old.upstream.tls_roots),
        &roots(tls_roots),
    );
    let RateLimitConfig {
        qps,
        burst,
        ipv6_prefix,
    } = rate_limit;
    changed(
        &mut out,
        "rate limit IPv6 prefix",
        &old.rate_limit.ipv6_prefix,
        ipv6_prefix,
    );
    changed(
        &mut out,
        "rate limit (queries/s per client)",
        &old.rate_limit.qps,
        qps,
    );
    changed(&mut out, "rate limit burst", &old.rate_limit.burst, burst);
    let ListsConfig {
        manifest,
        artifact_dir,
        download_dir: _,
        compile_if_missing: _,
        illegal_list,
        illegal_key_file,
        shrink_threshold: _,
        illegal_proxy,
    } = lists;
    let o = &old.lists;
    changed(&mut out, "list manifest", &o.manifest, manifest);
    changed(
        &mut out,
        "compiled lists folder",
        &o.artifact_dir,
        artifact_dir,
    );
    if o.illegal_list != *illegal_list {
        out.push(match illegal_list {
            Some(_) => "illegal-content list configured".to_string(),
            None => "illegal-content list REMOVED from the configuration".to_string(),
        });
    }
    if o.illegal_key_file != *illegal_key_file {
        out.push("illegal-content list key file changed".to_string());
    }
    changed(
        &mut out,
        "illegal-content URL-filtering proxy",
        &o.illegal_proxy,
        illegal_proxy,
    );
    for g in &old.groups {
        if !groups.iter().any(|n| n.name == g.name) {
            out.push(format!("group `{}` removed", g.name));
        }
    }
    for n in groups {
        match old.groups.iter().find(|o| o.name == n.name) {
            Some(o) => group_diff(&mut out, o, n),
            None => out.push(format!("group `{}` added ({})", n.name, summary(n))),
        }
    }
    let IdentityConfig {
        dhcp,
        sessions_token_file,
    } = identity;
    let leases = |v: &[DhcpSource]| {
        v.iter()
            .map(|d| format!("{} ({:?})", d.path.display(), d.format))
            .collect::<Vec<_>>()
    };
    list_change(
        &mut out,
        "DHCP lease files naming devices".into(),
        &leases(&old.identity.dhcp),
        &leases(dhcp),
    );
    changed(
        &mut out,
        "token file for login sessions",
        &old.identity.sessions_token_file,
        sessions_token_file,
    );
    for d in &old.devices {
        if !devices.iter().any(|n| n.name == d.name) {
            out.push(format!("device `{}` removed (was {})", d.name, device(d)));
        }
    }
    for n in devices {
        let DeviceConfig {
            name,
            ip: _,
            mac: _,
            group: _,
        } = n;
        match old.devices.iter().find(|o| o.name == *name) {
            Some(o) if device(o) != device(n) => {
                out.push(format!("device `{name}`: {} → {}", device(o), device(n)))
            }
            Some(_) => {}
            None => out.push(format!("device `{name}` added ({})", device(n))),
        }
    }
    out
}

/// Changes to the filtering checks: not what a device can reach, but whether and how the
/// school checks that filtering works (DfE), so switching them off is on the record. The
/// illegal-content probe is a confidential list entry: only that it changed is said.
fn checks_diff(out: &mut Vec<String>, o: &ChecksConfig, n: &ChecksConfig) {
    let ChecksConfig {
        every,
        allowed,
        illegal_probe,
    } = n;
    if o.every != *every {
        let period = |e: &Option<std::time::Duration>| match e {
            Some(d) if d.as_secs() % 86_400 == 0 => {
                format!("every {} day(s)", d.as_secs() / 86_400)
            }
            Some(d) => format!("every {} hour(s)", d.as_secs() / 3600),
            None => "OFF".to_string(),
        };
        out.push(format!(
            "filtering checks: {} → {}",
            period(&o.every),
            period(every)
        ));
    }
    list_change(
        out,
        "filtering checks: names every group must reach".into(),
        &o.allowed,
        allowed,
    );
    if o.illegal_probe != *illegal_probe {
        out.push(match illegal_probe {
            Some(_) if o.illegal_probe.is_some() => {
                "filtering checks: illegal-content test entry changed (withheld)".to_string()
            }
            Some(_) => "filtering checks: illegal-content test entry set (withheld)".to_string(),
            None => "filtering checks: illegal-content test entry REMOVED".to_string(),
        });
    }
}

/// One group's changes.
fn group_diff(out: &mut Vec<String>, o: &GroupConfig, n: &GroupConfig) {
    let GroupConfig {
        name,
        networks,
        deny,
        allow,
        block_categories,
        block_answer,
        anti_circumvention,
        strip_ech,
        schedules,
        safesearch,
    } = n;
    let nets = |v: &[ipnet::IpNet]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    list_change(
        out,
        format!("group `{name}` networks"),
        &nets(&o.networks),
        &nets(networks),
    );
    list_change(out, format!("group `{name}` deny"), &o.deny, deny);
    list_change(out, format!("group `{name}` allow"), &o.allow, allow);
    list_change(
        out,
        format!("group `{name}` blocked categories"),
        &o.block_categories,
        block_categories,
    );
    changed(
        out,
        &format!("group `{name}` block answer"),
        &o.block_answer,
        block_answer,
    );
    if o.anti_circumvention != *anti_circumvention {
        out.push(format!(
            "group `{name}` anti-circumvention rules: {}",
            if *anti_circumvention { "on" } else { "OFF" }
        ));
    }
    if o.safesearch != *safesearch {
        out.push(format!(
            "group `{name}` {}",
            crate::pipeline::safesearch::describe(safesearch)
        ));
    }
    if o.strip_ech != *strip_ech {
        out.push(format!("group `{name}` ECH stripping: {strip_ech}"));
    }
    let windows = |v: &[ScheduleConfig]| {
        v.iter()
            .map(|s| format!("{:?} {}", s.window, s.allow_categories.join("+")))
            .collect::<Vec<_>>()
    };
    if windows(&o.schedules) != windows(schedules) {
        out.push(format!(
            "group `{name}` schedules changed ({} now)",
            schedules.len()
        ));
    }
}

/// `what: old → new` when they differ.
fn changed<T: PartialEq + std::fmt::Debug + ?Sized>(
    out: &mut Vec<String>,
    what: &str,
    old: &T,
    new: &T,
) {
    if old != new {
        out.push(format!("{what}: {old:?} → {new:?}"));
    }
}

/// `what: added …` / `what: removed …`.
fn list_change(out: &mut Vec<String>, what: String, old: &[String], new: &[String]) {
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    let (o, n) = (set(old), set(new));
    let added: Vec<&String> = n.difference(&o).collect();
    let removed: Vec<&String> = o.difference(&n).collect();
    if !added.is_empty() {
        out.push(format!("{what}: added {}", join(&added)));
    }
    if !removed.is_empty() {
        out.push(format!("{what}: removed {}", join(&removed)));
    }
}

/// How a device is pinned, and to which group.
fn device(d: &DeviceConfig) -> String {
    let by = match (d.ip, d.mac) {
        (Some(ip), _) => format!("address {ip}"),
        (None, Some(m)) => format!(
            "MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ),
        (None, None) => "not pinned".to_string(),
    };
    format!("{by} in group `{}`", d.group)
}

fn summary(g: &GroupConfig) -> String {
    let nets: Vec<String> = g.networks.iter().map(|n| n.to_string()).collect();
    format!(
        "networks {}; categories {}",
        nets.join(", "),
        if g.block_categories.is_empty() {
            "none".to_string()
        } else {
            g.block_categories.join(", ")
        }
    )
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml_str(
            &format!("[[group]]\nname = \"pupils\"\nnetworks = [\"10.0.0.0/8\"]\n{extra}"),
            "t.toml",
        )
        .unwrap()
    }

    #[test]
    fn describes_each_change() {
        let old = config("deny = [\"a.com\"]\nblock_categories = [\"games\"]\n");
        let new = config("deny = [\"b.com\"]\nblock_categories = [\"games\", \"gambling\"]\nanti_circumvention = false\n[[group]]\nname = \"staff\"\nnetworks = [\"10.1.0.0/16\"]\n");
        let d = diff(&old, &new);
        assert_eq!(
            d,
            [
                "group `pupils` deny: added b.com",
                "group `pupils` deny: removed a.com",
                "group `pupils` blocked categories: added gambling",
                "group `pupils` anti-circumvention rules: OFF",
                "group `staff` added (networks 10.1.0.0/16; categories none)",
            ]
        );
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn filtering_check_changes_are_recorded_without_the_probe() {
        let old = config("");
        let new = config(
            "[checks]\nevery = \"off\"\nallowed = [\"www.gov.uk\", \"school.example\"]\nillegal_probe = \"iwf-test.example\"\n",
        );
        let d = diff(&old, &new);
        assert_eq!(
            d,
            [
                "filtering checks: every 7 day(s) → OFF",
                "filtering checks: names every group must reach: added school.example",
                "filtering checks: names every group must reach: removed en.wikipedia.org, www.bbc.co.uk",
                "filtering checks: illegal-content test entry set (withheld)",
            ]
        );
        assert!(d.iter().all(|c| !c.contains("iwf-test")));
    }
}
