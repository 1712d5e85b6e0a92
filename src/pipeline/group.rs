//! The per-client context the identify stage attaches to a query: the client's [`Group`],
//! its [`GroupPolicy`] (deny, allow, categories, schedules, block answer) and its SafeSearch
//! settings. Policy and SafeSearch read it; neither builds it. Time-limited grants change
//! while the resolver runs, so they are not part of it: see [`super::grants`].

use std::{collections::HashSet, sync::Arc};

use ipnet::IpNet;

use crate::{
    config::{BlockAnswer, SafeSearchConfig},
    schedule::Schedule,
};

/// A group of clients and the policy that applies to them.
#[derive(Debug)]
pub struct Group {
    /// Position in the configuration (metrics index).
    pub index: usize,
    /// The group's name (shared with every query event of the group).
    pub name: Arc<str>,
    /// What the group may and may not reach.
    pub policy: GroupPolicy,
    /// SafeSearch and YouTube Restricted Mode for the group.
    pub safesearch: SafeSearchConfig,
    /// Its counters.
    pub metrics: crate::metrics::GroupMetrics,
}

#[cfg(test)]
impl Group {
    /// A group with the default policy and SafeSearch, counted in `metrics`, for tests.
    pub(crate) fn plain(index: usize, name: &str, metrics: &crate::metrics::Metrics) -> Arc<Group> {
        Arc::new(Group {
            index,
            name: name.into(),
            policy: GroupPolicy::default(),
            safesearch: Default::default(),
            metrics: metrics.group(name),
        })
    }
}

/// A group and the networks (and pinned device addresses) that belong to it.
pub type GroupNetworks = (Arc<Group>, Vec<IpNet>);

/// A small set of names matched with their subdomains (configuration overrides).
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
    /// use hedgerow::pipeline::group::NameSet;
    /// let set = NameSet::new(["example.com".to_string()]);
    /// assert_eq!(set.deepest("a.b.example.com"), Some((2, "example.com")));
    /// assert_eq!(set.deepest("notexample.com"), None);
    /// ```
    pub fn deepest<'k>(&self, key: &'k str) -> Option<(usize, &'k str)> {
        if self.names.is_empty() || key.is_empty() {
            return None;
        }
        let mut depth = key.bytes().filter(|&b| b == b'.').count() + 1;
        let mut suffix = key;
        loop {
            if self.names.contains(suffix) {
                return Some((depth, suffix));
            }
            match suffix.split_once('.') {
                Some((_, rest)) => {
                    suffix = rest;
                    depth -= 1;
                }
                None => return None,
            }
        }
    }

    /// Listed names, sorted (for descriptions).
    pub fn sorted(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.names.iter().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// What one group may and may not reach.
#[derive(Debug, Default)]
pub struct GroupPolicy {
    /// Always blocked (with subdomains).
    pub deny: NameSet,
    /// Never blocked (with subdomains), except by the illegal tier.
    pub allow: NameSet,
    /// Bits of the categories this group blocks (against the lists in force).
    pub categories: u32,
    /// Windows during which some of those categories are not blocked.
    pub schedules: Vec<Schedule>,
    /// How blocks are answered.
    pub block_answer: BlockAnswer,
    /// Built-in anti-circumvention names are answered locally.
    pub anti_circumvention: bool,
    /// Remove `ech` from HTTPS/SVCB answers (keeps SNI visible to the school's firewall).
    pub strip_ech: bool,
}
