//! Policy: the block/allow decision for a client's group, in one readable function.
//!
//! Order: group deny → group allow, the most specific entry winning between them (a deny of
//! `ads.example.com` beats an allow of `example.com`; at equal depth deny wins).

use std::{collections::HashSet, sync::Arc};

use hickory_proto::{
    op::ResponseCode,
    rr::{rdata::SOA, Name, RData, Record},
};

use crate::pipeline::{Answer, Disposition, Next, Query, Stage, StageFuture};

/// TTL of block answers and of their SOA minimum (how long clients cache the block).
pub const BLOCK_TTL: u32 = 300;

/// A small set of names matched with their subdomains (config overrides).
#[derive(Debug, Default, Clone)]
pub struct NameSet {
    names: HashSet<String>,
}

impl NameSet {
    /// A set of normalised names (lower case, no trailing dot).
    pub fn new(names: impl IntoIterator<Item = String>) -> NameSet {
        NameSet {
            names: names.into_iter().collect(),
        }
    }

    /// The most specific listed ancestor of `key` (or `key` itself) as `(depth, entry)`,
    /// where depth counts the labels of the entry.
    ///
    /// ```
    /// use hedgerow::pipeline::policy::NameSet;
    /// let set = NameSet::new(["example.com".to_string()]);
    /// assert_eq!(set.deepest("a.b.example.com"), Some((2, "example.com")));
    /// assert_eq!(set.deepest("notexample.com"), None);
    /// ```
    pub fn deepest<'k>(&self, key: &'k str) -> Option<(usize, &'k str)> {
        if self.names.is_empty() {
            return None;
        }
        let labels = key.split('.').count();
        let mut suffix = key;
        for depth in (1..=labels).rev() {
            if self.names.contains(suffix) {
                return Some((depth, suffix));
            }
            suffix = suffix.split_once('.').map_or("", |(_, rest)| rest);
        }
        None
    }

    /// True when no names are listed.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// What one group may and may not reach.
#[derive(Debug, Default)]
pub struct GroupPolicy {
    /// Always blocked (with subdomains).
    pub deny: NameSet,
    /// Never blocked (with subdomains).
    pub allow: NameSet,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Resolve normally.
    Allow,
    /// Block, with a low-cardinality label and a full reason.
    Block {
        /// Metrics label.
        label: &'static str,
        /// Explanation for logs and `lists lookup`.
        detail: String,
    },
}

/// The decision for `key` under `group`'s policy.
pub fn decide(group_name: &str, policy: &GroupPolicy, key: &str) -> Decision {
    let deny = policy.deny.deepest(key);
    let allow = policy.allow.deepest(key);
    match (deny, allow) {
        (Some((d, entry)), Some((a, _))) if d >= a => Decision::Block {
            label: "deny",
            detail: format!("group `{group_name}` deny entry `{entry}`"),
        },
        (Some((_, entry)), None) => Decision::Block {
            label: "deny",
            detail: format!("group `{group_name}` deny entry `{entry}`"),
        },
        _ => Decision::Allow,
    }
}

/// NXDOMAIN with an SOA whose minimum is the block TTL, so resolvers cache the block.
pub fn nxdomain(query: &Query) -> Answer {
    let mut answer = Answer::empty(ResponseCode::NXDomain, Disposition::Blocked);
    answer.authorities.push(block_soa(&query.name));
    answer
}

fn block_soa(owner: &Name) -> Record {
    let mname = Name::from_ascii("hedgerow.invalid.").unwrap_or_else(|_| Name::root());
    let rname = Name::from_ascii("blocked.hedgerow.invalid.").unwrap_or_else(|_| Name::root());
    Record::from_rdata(
        owner.clone(),
        BLOCK_TTL,
        RData::SOA(SOA::new(mname, rname, 1, 3600, 600, 86_400, BLOCK_TTL)),
    )
}

/// The policy stage.
pub struct Policy;

impl Stage for Policy {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn handle<'a>(&'a self, query: &'a mut Query, next: Next<'a>) -> StageFuture<'a> {
        let Some(group) = query.group.clone() else {
            // identify runs first; a query without a group must not be resolved.
            return Box::pin(async { Answer::empty(ResponseCode::Refused, Disposition::Refused) });
        };
        match decide(&group.name, &group.policy, &query.key) {
            Decision::Allow => next.run(query),
            Decision::Block { label, detail } => {
                let answer = nxdomain(query).with_reason(label, detail);
                Box::pin(async move { answer })
            }
        }
    }
}

/// Shared handle type for groups.
pub type SharedGroup = Arc<crate::pipeline::identify::Group>;

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(deny: &[&str], allow: &[&str]) -> GroupPolicy {
        GroupPolicy {
            deny: NameSet::new(deny.iter().map(|s| s.to_string())),
            allow: NameSet::new(allow.iter().map(|s| s.to_string())),
        }
    }

    #[test]
    fn most_specific_wins_deny_on_tie() {
        let p = policy(
            &["example.com", "ads.good.org"],
            &["good.org", "ok.example.com"],
        );
        assert!(matches!(
            decide("g", &p, "a.example.com"),
            Decision::Block { .. }
        ));
        assert_eq!(decide("g", &p, "x.ok.example.com"), Decision::Allow);
        assert_eq!(decide("g", &p, "good.org"), Decision::Allow);
        assert!(matches!(
            decide("g", &p, "x.ads.good.org"),
            Decision::Block { .. }
        ));
        assert_eq!(decide("g", &p, "example.org"), Decision::Allow);
        let p = policy(&["example.com"], &["example.com"]);
        assert!(matches!(
            decide("g", &p, "example.com"),
            Decision::Block { .. }
        ));
    }
}
