//! `hedgerow lists lookup NAME`: the decision every group (or one client's group) gets for a
//! name, with the rule, category and list entry that decided it, and any SafeSearch rewrite.
//! Over-blocking complaints are answered with this; it runs the same decisions as the DNS
//! path.

use std::{fmt::Write, net::IpAddr, time::SystemTime};

use crate::{
    config::Config,
    event::BlockReason,
    lists::{explain, Blocklists, Manifest},
    pipeline::{
        chain,
        identify::Identify,
        policy::{decide, Context, Decision, LocalAnswer},
        safesearch::{
            decide_for_group, rewrite_note, unenforceable_reason, Decision as SafeSearch,
        },
    },
};

/// Why a lookup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The name is not a DNS name.
    #[error("`{0}` is not a valid domain name: {1}")]
    BadName(String, crate::names::NameError),
    /// The configuration does not fit the lists.
    #[error("{}", .0.join("\n"))]
    Policy(Vec<String>),
    /// The client is in no group.
    #[error("{0} is outside every group: Hedgerow answers it REFUSED")]
    NoGroup(IpAddr),
}

/// The plain-text report for `name`, for every group or for `client`'s group only.
///
/// It asks exactly what the DNS path asks, in the same order: policy's [`decide`] (illegal
/// tier, anti-circumvention, deny/allow/grants, categories), then SafeSearch's
/// [`decide_for_group`] (rewrites and unenforceable engines).
pub fn report(
    config: &Config,
    lists: &Blocklists,
    manifest: Option<&Manifest>,
    name: &str,
    client: Option<IpAddr>,
    now: SystemTime,
) -> Result<String, LookupError> {
    let key = crate::names::normalise(name).map_err(|e| LookupError::BadName(name.into(), e))?;
    // Counters of a one-off registry: a lookup answers no query.
    let metrics =
        crate::metrics::Metrics::new().map_err(|e| LookupError::Policy(vec![e.to_string()]))?;
    let groups = chain::groups(config, lists, &metrics).map_err(LookupError::Policy)?;
    let selected: Vec<_> = match client {
        Some(ip) => {
            let identify = Identify::new(&groups)
                .with_devices(chain::devices(config, &groups), Default::default());
            let c = identify.client(ip).ok_or(LookupError::NoGroup(ip))?;
            vec![c.group.clone()]
        }
        None => groups.iter().map(|(g, _)| g.clone()).collect(),
    };
    let mut out = String::new();
    let _ = writeln!(out, "{key}");
    for g in selected {
        let cx = Context {
            group: &g.name,
            policy: &g.policy,
            // Grants live in the store and the running server; this offline view shows the
            // standing policy.
            grants: None,
            lists,
            now,
            illegal_proxy: config.lists.illegal_proxy,
        };
        let by = match decide(&cx, &key) {
            Decision::Block(block) => {
                let what = match block.answer {
                    LocalAnswer::NoData => "ANSWERED LOCALLY (no data)",
                    _ => "BLOCKED",
                };
                let _ = writeln!(out, "  {}: {what} — {}", g.name, block.reason.detail);
                if block.reason.kind == BlockReason::Category {
                    // Which source file and line put the name on the list.
                    let explained = manifest.map(|m| explain(lists, m, &key, block.categories));
                    if let Some(Ok(explanation)) = explained {
                        for line in explanation.to_string().lines() {
                            let _ = writeln!(out, "      {line}");
                        }
                    }
                }
                continue;
            }
            Decision::Allow { by } => by,
        };
        match decide_for_group(&g, &key) {
            SafeSearch::Rewrite { engine, target } => {
                let _ = writeln!(
                    out,
                    "  {}: REWRITTEN — {}",
                    g.name,
                    rewrite_note(&g.name, engine, target)
                );
            }
            SafeSearch::Unenforceable { engine, entry } => {
                let reason = unenforceable_reason(&g.name, engine, entry);
                let _ = writeln!(out, "  {}: BLOCKED — {}", g.name, reason.detail);
            }
            SafeSearch::Pass => match by {
                Some(entry) => {
                    let _ = writeln!(out, "  {}: allowed by allow entry `{entry}`", g.name);
                }
                None => {
                    let _ = writeln!(out, "  {}: allowed (no rule matches)", g.name);
                }
            },
        }
    }
    Ok(out)
}

/// Why `name` is blocked now for the device at `client` (its group's policy, the lists and
/// the grants in force), or `None` when it is not blocked (or the client is in no group).
/// The block page asks this; SafeSearch rewrites are not blocks.
pub fn blocked_for(
    config: &Config,
    lists: &Blocklists,
    grants: &crate::pipeline::grants::Grants,
    name: &str,
    client: IpAddr,
    now: SystemTime,
) -> Option<crate::pipeline::Reason> {
    let key = crate::names::normalise(name).ok()?;
    let metrics = crate::metrics::Metrics::new().ok()?;
    let groups = chain::groups(config, lists, &metrics).ok()?;
    let identify =
        Identify::new(&groups).with_devices(chain::devices(config, &groups), Default::default());
    let group = identify.client(client)?.group.clone();
    let cx = Context {
        group: &group.name,
        policy: &group.policy,
        grants: grants.group(&group.name),
        lists,
        now,
        illegal_proxy: config.lists.illegal_proxy,
    };
    match decide(&cx, &key) {
        Decision::Block(block) if block.answer != LocalAnswer::NoData => Some(block.reason),
        Decision::Block(_) => None,
        Decision::Allow { .. } => match decide_for_group(&group, &key) {
            SafeSearch::Unenforceable { engine, entry } => {
                Some(unenforceable_reason(&group.name, engine, entry))
            }
            _ => None,
        },
    }
}
