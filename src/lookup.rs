//! `hedgerow lists lookup NAME`: the decision every group (or one client's group) gets for a
//! name, with the rule, category and list entry that decided it. Over-blocking complaints
//! are answered with this; it runs the same [`decide`] as the DNS path.

use std::{fmt::Write, net::IpAddr, time::SystemTime};

use crate::{
    config::Config,
    lists::{explain, Blocklists, Manifest},
    pipeline::{
        chain,
        identify::Identify,
        policy::{decide, Context, Decision},
    },
};

/// Why a lookup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The name is not a DNS name.
    #[error("`{0}` is not a valid domain name")]
    BadName(String),
    /// The configuration does not fit the lists.
    #[error("{}", .0.join("\n"))]
    Policy(Vec<String>),
    /// The client is in no group.
    #[error("{0} is outside every group: Hedgerow answers it REFUSED")]
    NoGroup(IpAddr),
}

/// The plain-text report for `name`, for every group or for `client`'s group only.
pub fn report(
    config: &Config,
    lists: &Blocklists,
    manifest: Option<&Manifest>,
    name: &str,
    client: Option<IpAddr>,
) -> Result<String, LookupError> {
    let key = crate::config::normalise_name(name).map_err(|_| LookupError::BadName(name.into()))?;
    // Counters of a one-off registry: a lookup answers no query.
    let metrics =
        crate::metrics::Metrics::new().map_err(|e| LookupError::Policy(vec![e.to_string()]))?;
    let groups = chain::groups(config, lists, &metrics).map_err(LookupError::Policy)?;
    let selected: Vec<_> = match client {
        Some(ip) => {
            let identify = Identify::new(&groups);
            let g = identify.group_for(ip).ok_or(LookupError::NoGroup(ip))?;
            vec![g.clone()]
        }
        None => groups.iter().map(|(g, _)| g.clone()).collect(),
    };
    let mut out = String::new();
    let _ = writeln!(out, "{key}");
    for g in selected {
        let cx = Context {
            group: &g.name,
            policy: &g.policy,
            lists,
            now: SystemTime::now(),
            illegal_proxy: config.lists.illegal_proxy,
        };
        match decide(&cx, &key) {
            Decision::Allow { by: Some(entry) } => {
                let _ = writeln!(out, "  {}: allowed by allow entry `{entry}`", g.name);
            }
            Decision::Allow { by: None } => {
                let _ = writeln!(out, "  {}: allowed (no rule matches)", g.name);
            }
            Decision::Block(block) => {
                let _ = writeln!(out, "  {}: BLOCKED — {}", g.name, block.detail);
                if block.label == "category" {
                    // Which source file and line put the name on the list.
                    let explained = manifest.map(|m| explain(lists, m, &key, block.categories));
                    if let Some(Ok(explanation)) = explained {
                        for line in explanation.to_string().lines() {
                            let _ = writeln!(out, "      {line}");
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}
