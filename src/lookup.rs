//! `hedgerow lists lookup NAME`: the decision every group (or one client's group) gets for a
//! name, with the rule, category and list entry that decided it, and any SafeSearch rewrite.
//! Over-blocking complaints are answered with this; it runs the same decisions as the DNS
//! path. [`verdicts`] makes the decisions (the dashboard's "test a name" shows them);
//! [`report`] is the same verdicts as the command's text.

use std::{collections::HashMap, fmt::Write, net::IpAddr, time::SystemTime};

use crate::{
    config::Config,
    event::BlockReason,
    lists::{explain, Blocklists, Explanation, Manifest},
    pipeline::{
        chain,
        identify::Identify,
        policy::{decide, Context, Decision, LocalAnswer},
        safesearch::{
            decide_for_group, rewrite_note, unenforceable_reason, Decision as SafeSearch,
        },
        Reason,
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

/// What a group gets for a name.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Blocked: by policy (illegal tier, anti-circumvention, deny entry, category) or by
    /// SafeSearch (an engine that cannot lock it).
    Blocked {
        /// Why, as the DNS path records it (never names an illegal-tier entry).
        reason: Reason,
        /// Which source file and line listed the name, for a category block when the
        /// manifest was at hand.
        explanation: Option<Explanation>,
    },
    /// Answered by Hedgerow itself with no data (a device's designated-resolver discovery):
    /// stops the device looking for another DNS server, blocks nothing a person asked for.
    AnsweredLocally {
        /// The built-in rule, in plain words.
        reason: Reason,
    },
    /// Answered with the search engine's SafeSearch (or YouTube's Restricted Mode) address.
    Rewritten {
        /// The engine (`google`, `youtube`, …).
        engine: &'static str,
        /// The rewrite, worded like policy's reasons.
        note: String,
    },
    /// Resolved normally.
    Allowed {
        /// The allow entry or grant that decided, if one did.
        by: Option<String>,
    },
}

/// The decision one group gets for a name.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The group's name.
    pub group: String,
    /// What it gets.
    pub outcome: Outcome,
}

impl Verdict {
    /// Blocked (an answer locally with no data is not a block).
    pub fn blocked(&self) -> bool {
        matches!(self.outcome, Outcome::Blocked { .. })
    }

    /// Decided by the illegal-content (IWF) tier, about which nothing more may be said.
    pub fn illegal_tier(&self) -> bool {
        matches!(&self.outcome, Outcome::Blocked { reason, .. } if reason.kind.is_illegal_tier())
    }

    /// The list category (ids, comma separated) that blocked the name, when one did.
    pub fn category(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Blocked { reason, .. } if reason.kind == BlockReason::Category => {
                reason.category.as_deref().filter(|c| !c.is_empty())
            }
            _ => None,
        }
    }

    /// The verdict in plain words for a teacher ("blocked: gambling", "allowed").
    pub fn summary(&self) -> String {
        match &self.outcome {
            Outcome::Blocked { reason, .. } => match reason.kind {
                BlockReason::Illegal | BlockReason::IllegalProxy => {
                    "blocked: on the child-abuse (IWF) list".into()
                }
                BlockReason::Circumvention => "blocked: a way round the filter".into(),
                BlockReason::Deny => "blocked by the school's own list".into(),
                BlockReason::Category => match &reason.category {
                    Some(c) if !c.is_empty() => format!("blocked: {c}"),
                    _ => "blocked to be safe".into(),
                },
                BlockReason::SafeSearchUnenforceable => {
                    "blocked: a search engine that cannot lock SafeSearch".into()
                }
            },
            Outcome::AnsweredLocally { .. } => "answered by Hedgerow (nothing to block)".into(),
            Outcome::Rewritten { engine, .. } if *engine == "youtube" => {
                "allowed with YouTube Restricted Mode".into()
            }
            Outcome::Rewritten { .. } => "allowed with SafeSearch".into(),
            Outcome::Allowed { by: Some(_) } => "allowed by the school's allow list".into(),
            Outcome::Allowed { by: None } => "allowed".into(),
        }
    }

    /// What decided, as the command's line says it after the verdict word; empty for the
    /// illegal tier.
    pub fn detail(&self) -> String {
        match &self.outcome {
            _ if self.illegal_tier() => String::new(),
            Outcome::Blocked { reason, .. } | Outcome::AnsweredLocally { reason } => {
                reason.detail.clone()
            }
            Outcome::Rewritten { note, .. } => note.clone(),
            Outcome::Allowed { by: Some(entry) } => format!("allow entry `{entry}`"),
            Outcome::Allowed { by: None } => "no rule matches".into(),
        }
    }

    /// The explanation's lines (source file and line of a category block); none for the
    /// illegal tier, and none when the name is also on that list (which would say so).
    pub fn explanation_lines(&self) -> Vec<String> {
        match &self.outcome {
            Outcome::Blocked {
                explanation: Some(e),
                ..
            } if e.illegal.is_none() && !self.illegal_tier() => {
                e.to_string().lines().map(str::to_string).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The command's line for this group, without the group's name.
    fn line(&self) -> String {
        match &self.outcome {
            Outcome::Blocked { reason, .. } => format!("BLOCKED — {}", reason.detail),
            Outcome::AnsweredLocally { reason } => {
                format!("ANSWERED LOCALLY (no data) — {}", reason.detail)
            }
            Outcome::Rewritten { note, .. } => format!("REWRITTEN — {note}"),
            Outcome::Allowed { by: Some(entry) } => format!("allowed by allow entry `{entry}`"),
            Outcome::Allowed { by: None } => "allowed (no rule matches)".into(),
        }
    }
}

/// The decisions for `name`, for every group (in configuration order) or for `client`'s
/// group only, with the name as Hedgerow reads it (lower case, no trailing dot).
///
/// It asks exactly what the DNS path asks, in the same order: policy's [`decide`] (illegal
/// tier, anti-circumvention, deny/allow/grants, categories), then SafeSearch's
/// [`decide_for_group`] (rewrites and unenforceable engines). With a `manifest`, category
/// blocks are explained (the source lines are re-read, once per set of categories).
pub fn verdicts(
    config: &Config,
    lists: &Blocklists,
    manifest: Option<&Manifest>,
    grants: Option<&crate::pipeline::grants::Grants>,
    name: &str,
    client: Option<IpAddr>,
    now: SystemTime,
) -> Result<(String, Vec<Verdict>), LookupError> {
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
    // Groups blocking by the same categories share one explanation (it re-reads sources).
    let mut explained: HashMap<u32, Option<Explanation>> = HashMap::new();
    let mut out = Vec::with_capacity(selected.len());
    for g in selected {
        let cx = Context {
            group: &g.name,
            policy: &g.policy,
            // The grants in force when the running server asks; the command line shows the
            // standing policy.
            grants: grants.and_then(|all| all.group(&g.name)),
            lists,
            now,
            illegal_proxy: config.lists.illegal_proxy,
        };
        let outcome = match decide(&cx, &key) {
            Decision::Block(block) if block.answer == LocalAnswer::NoData => {
                Outcome::AnsweredLocally {
                    reason: block.reason,
                }
            }
            Decision::Block(block) => {
                let explanation = match (block.reason.kind, manifest) {
                    (BlockReason::Category, Some(m)) => explained
                        .entry(block.categories)
                        .or_insert_with(|| explain(lists, m, &key, block.categories).ok())
                        .clone(),
                    _ => None,
                };
                Outcome::Blocked {
                    reason: block.reason,
                    explanation,
                }
            }
            Decision::Allow { by } => match decide_for_group(&g, &key) {
                SafeSearch::Rewrite { engine, target } => Outcome::Rewritten {
                    engine,
                    note: rewrite_note(&g.name, engine, target),
                },
                SafeSearch::Unenforceable { engine, entry } => Outcome::Blocked {
                    reason: unenforceable_reason(&g.name, engine, entry),
                    explanation: None,
                },
                SafeSearch::Pass => Outcome::Allowed { by },
            },
        };
        out.push(Verdict {
            group: g.name.to_string(),
            outcome,
        });
    }
    Ok((key, out))
}

/// The plain-text report for `name`, for every group or for `client`'s group only: the
/// [`verdicts`], a line each, category blocks followed by their explanation.
pub fn report(
    config: &Config,
    lists: &Blocklists,
    manifest: Option<&Manifest>,
    name: &str,
    client: Option<IpAddr>,
    now: SystemTime,
) -> Result<String, LookupError> {
    let (key, verdicts) = verdicts(config, lists, manifest, None, name, client, now)?;
    let mut out = String::new();
    let _ = writeln!(out, "{key}");
    for v in &verdicts {
        let _ = writeln!(out, "  {}: {}", v.group, v.line());
        if let Outcome::Blocked {
            explanation: Some(e),
            ..
        } = &v.outcome
        {
            for line in e.to_string().lines() {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    Ok(out)
}

/// Why `name` is blocked now for the device at `client` (its group's policy, the lists and
/// the grants in force), or `None` when it is not blocked (or the client is in no group).
/// The block page asks this; SafeSearch rewrites and local answers are not blocks.
pub fn blocked_for(
    config: &Config,
    lists: &Blocklists,
    grants: &crate::pipeline::grants::Grants,
    name: &str,
    client: IpAddr,
    now: SystemTime,
) -> Option<crate::pipeline::Reason> {
    let (_, verdicts) =
        verdicts(config, lists, None, Some(grants), name, Some(client), now).ok()?;
    match verdicts.into_iter().next()?.outcome {
        Outcome::Blocked { reason, .. } => Some(reason),
        _ => None,
    }
}
