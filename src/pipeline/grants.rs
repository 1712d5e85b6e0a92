//! Live allow grants: time-limited unblocks approved while the resolver runs (the unblock-
//! request workflow), applied without a restart or a reload.
//!
//! The table is an immutable snapshot ([`Grants`]) behind [`LiveGrants`], which the wiring
//! replaces as a whole whenever the approved grants change, and which survives reloads (it
//! is one of the chain's long-lived parts). Reading it takes no lock and allocates nothing;
//! when no group has a grant — nearly always — a query pays one atomic load of a flag.
//!
//! A grant lapses on time by itself: every lookup compares its expiry with the query's time,
//! so nothing has to refresh the table for a grant to stop working. The illegal-content tier
//! is checked before any grant is looked at (see [`super::policy::decide`]), so no grant can
//! unblock it.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::SystemTime,
};

use arc_swap::{ArcSwap, Guard};

/// A time-limited allow entry for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The group it applies to.
    pub group: String,
    /// The allowed name (normalised; with subdomains).
    pub name: String,
    /// When the grant lapses.
    pub expires: SystemTime,
}

/// FNV-1a: a few instructions a byte where the standard hasher costs some hundred a probe.
/// The keys are names the school granted, not chosen by clients, so a keyed hash buys
/// nothing here.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// One group's grants: name → when it lapses (the latest, when a name was granted twice).
#[derive(Debug, Default, Clone)]
pub struct GroupGrants {
    names: HashMap<Box<str>, SystemTime, BuildHasherDefault<Fnv>>,
    /// Bit `d` is set when some granted name has `d` labels, so a lookup probes only the
    /// suffixes of the query name that could match (usually one).
    depths: u128,
}

/// A name's number of labels as a bit of `GroupGrants::depths` (a name has at most 127
/// labels).
fn depth_bit(labels: usize) -> u128 {
    1u128 << labels.min(127)
}

impl GroupGrants {
    /// The most specific granted ancestor of `key` (or `key` itself) that has not lapsed at
    /// `now`, as `(depth, entry)` where depth counts the entry's labels.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use hedgerow::pipeline::grants::{Grant, Grants};
    /// let now = SystemTime::now();
    /// let grants = Grants::new([Grant {
    ///     group: "staff".into(),
    ///     name: "example.org".into(),
    ///     expires: now + Duration::from_secs(60),
    /// }]);
    /// let staff = grants.group("staff").unwrap();
    /// assert_eq!(staff.deepest("www.example.org", now), Some((2, "example.org")));
    /// assert_eq!(staff.deepest("www.example.org", now + Duration::from_secs(61)), None);
    /// assert!(grants.group("pupils").is_none());
    /// ```
    pub fn deepest<'k>(&self, key: &'k str, now: SystemTime) -> Option<(usize, &'k str)> {
        if key.is_empty() {
            return None;
        }
        let bytes = key.as_bytes();
        let mut depth = bytes.iter().filter(|&&b| b == b'.').count() + 1;
        // Only granted names no deeper than the key can match; none at all, nothing to do.
        let candidates = self.depths & (depth_bit(depth) | (depth_bit(depth) - 1));
        if candidates == 0 {
            return None;
        }
        let shallowest = candidates.trailing_zeros() as usize;
        let mut start = 0;
        while depth >= shallowest {
            if self.depths & depth_bit(depth) != 0 {
                let suffix = &key[start..];
                if self.names.get(suffix).is_some_and(|&expires| expires > now) {
                    return Some((depth, suffix));
                }
            }
            // A byte search: a dot is never part of a multi-byte character.
            start += bytes[start..].iter().position(|&b| b == b'.')? + 1;
            depth -= 1;
        }
        None
    }

    /// The granted names and when each lapses, sorted by name (for descriptions).
    pub fn sorted(&self) -> Vec<(&str, SystemTime)> {
        let mut v: Vec<(&str, SystemTime)> = self.names.iter().map(|(n, e)| (&**n, *e)).collect();
        v.sort_unstable();
        v
    }
}

/// Every group's grants at one moment: an immutable snapshot.
#[derive(Debug, Default, Clone)]
pub struct Grants {
    /// By group name. Few groups ever hold grants at once, so a short list compared by name
    /// costs less than hashing the name.
    groups: Vec<(Box<str>, GroupGrants)>,
    /// When each name's grant lapses, earliest first: the times a decision can change.
    expiries: Vec<SystemTime>,
}

impl Grants {
    /// A snapshot of `grants`.
    pub fn new(grants: impl IntoIterator<Item = Grant>) -> Grants {
        let mut out = Grants::default();
        for g in grants {
            let index = match out.groups.iter().position(|(name, _)| **name == *g.group) {
                Some(i) => i,
                None => {
                    out.groups
                        .push((g.group.into_boxed_str(), GroupGrants::default()));
                    out.groups.len() - 1
                }
            };
            let group = &mut out.groups[index].1;
            group.depths |= depth_bit(g.name.split('.').count());
            let expires = group
                .names
                .entry(g.name.into_boxed_str())
                .or_insert(g.expires);
            *expires = (*expires).max(g.expires);
        }
        out.expiries = out
            .groups
            .iter()
            .flat_map(|(_, g)| g.names.values().copied())
            .collect();
        out.expiries.sort_unstable();
        out
    }

    /// The grants of the group called `group`, if it has any.
    pub fn group(&self, group: &str) -> Option<&GroupGrants> {
        self.groups
            .iter()
            .find(|(name, _)| **name == *group)
            .map(|(_, g)| g)
    }

    /// Whether no group has a grant.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// When the first grant in the snapshot lapses (after that the snapshot carries a grant
    /// that no longer counts, and is worth replacing).
    pub fn earliest_expiry(&self) -> Option<SystemTime> {
        self.expiries.first().copied()
    }

    /// The first time after `now` at which a grant lapses: until then, every decision made
    /// at `now` with this snapshot stands (as far as grants go).
    pub fn next_expiry_after(&self, now: SystemTime) -> Option<SystemTime> {
        let i = self.expiries.partition_point(|&e| e <= now);
        self.expiries.get(i).copied()
    }
}

/// The grants in force, shared by the policy stage (reads, once per query) and the wiring
/// (replaces the snapshot when grants change). Carried across reloads.
#[derive(Debug)]
pub struct LiveGrants {
    /// Whether the snapshot holds any grant: the one atomic load a query pays when none does.
    any: AtomicBool,
    table: ArcSwap<Grants>,
    /// Bumped after every replacement, so that whatever remembers a decision can tell that
    /// it was made with an older table ([`super::replay`]).
    generation: AtomicU64,
}

impl Default for LiveGrants {
    fn default() -> LiveGrants {
        LiveGrants {
            any: AtomicBool::new(false),
            table: ArcSwap::from_pointee(Grants::default()),
            generation: AtomicU64::new(0),
        }
    }
}

impl LiveGrants {
    /// An empty table.
    pub fn new() -> LiveGrants {
        LiveGrants::default()
    }

    /// Puts `grants` in force for every query that starts after this returns.
    pub fn replace(&self, grants: Grants) {
        if grants.is_empty() {
            // Flag first: a query that still sees it set reads the (older) table, which is
            // harmless; one that sees it clear skips the table.
            self.any.store(false, Ordering::Release);
            self.table.store(Arc::new(grants));
        } else {
            // Table first, so a query that sees the flag set finds the new table.
            self.table.store(Arc::new(grants));
            self.any.store(true, Ordering::Release);
        }
        // Last: a reader that sees the new generation also sees the new table.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many times the table has been replaced; read it before the table.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The snapshot in force, or `None` when no group has a grant. Lock-free and allocation-
    /// free; hold the guard briefly (not across an `.await`).
    pub fn load(&self) -> Option<Guard<Arc<Grants>>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        Some(self.table.load())
    }

    /// The snapshot in force (for descriptions and the wiring; not the per-query path).
    pub fn snapshot(&self) -> Arc<Grants> {
        self.table.load_full()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn grant(group: &str, name: &str, expires: SystemTime) -> Grant {
        Grant {
            group: group.into(),
            name: name.into(),
            expires,
        }
    }

    #[test]
    fn most_specific_unexpired_grant_wins_and_groups_are_separate() {
        let now = SystemTime::now();
        let minute = Duration::from_secs(60);
        let grants = Grants::new([
            grant("staff", "example.org", now + minute),
            grant("staff", "www.example.org", now - minute),
            grant("staff", "example.org", now + 2 * minute),
            grant("pupils", "games.test", now + minute),
        ]);
        let staff = grants.group("staff").unwrap();
        // The deeper grant has lapsed: the shallower one decides.
        assert_eq!(
            staff.deepest("a.www.example.org", now),
            Some((2, "example.org"))
        );
        // The same name granted twice: the later expiry counts.
        assert_eq!(
            staff.deepest("example.org", now + minute + Duration::from_secs(1)),
            Some((2, "example.org"))
        );
        assert_eq!(staff.deepest("notexample.org", now), None);
        assert_eq!(staff.deepest("", now), None);
        assert_eq!(staff.deepest("games.test", now), None);
        assert!(grants.group("guests").is_none());
        assert_eq!(grants.earliest_expiry(), Some(now - minute));
        // games.test lapses next; example.org (granted twice) only at its later expiry.
        assert_eq!(grants.next_expiry_after(now), Some(now + minute));
        assert_eq!(
            grants.next_expiry_after(now + minute),
            Some(now + 2 * minute)
        );
        assert_eq!(grants.next_expiry_after(now + 2 * minute), None);
        // Names of several depths in one group: each is found at its own depth.
        let deep = Grants::new([
            grant("staff", "example.org", now + minute),
            grant("staff", "a.b.c.example.net", now + minute),
        ]);
        let staff = deep.group("staff").unwrap();
        assert_eq!(
            staff.deepest("x.a.b.c.example.net", now),
            Some((5, "a.b.c.example.net"))
        );
        assert_eq!(staff.deepest("b.c.example.net", now), None);
        assert_eq!(
            staff.deepest("x.example.org", now),
            Some((2, "example.org"))
        );
    }

    #[test]
    fn the_flag_follows_the_table() {
        let live = LiveGrants::new();
        assert!(live.load().is_none());
        let now = SystemTime::now();
        live.replace(Grants::new([grant("staff", "example.org", now)]));
        assert!(live.load().is_some_and(|g| g.group("staff").is_some()));
        live.replace(Grants::default());
        assert!(live.load().is_none());
        assert!(live.snapshot().is_empty());
        assert_eq!(live.generation(), 2, "every replacement counted");
    }
}
