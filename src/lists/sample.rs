//! Sampling names of one category from a compiled transducer, for the filtering checks: "is a
//! name from this blocked category really blocked?" needs a few names that are listed in it.
//!
//! The sample is deterministic for a seed (run a failed check again and it asks the same
//! names) and moves with the seed (the checks seed it with the day, so week by week different
//! corners of a list are tried, not the same three names for ever).
//!
//! How: a random walk down the transducer (a random edge at each node, stopping at a random
//! depth) gives a starting key somewhere inside the key space; from there the keys are read
//! in order, wrapping round at the end, until one carries the category and is accepted by the
//! caller. Each sampled name takes its own walk, so the names come from different places.
//! Nothing is allocated per key read, and a scan stops at the first acceptable key, so the
//! cost is about (names in the map / names in the category) keys per sample: small for big
//! categories, at worst one pass over the map for a tiny one (and then no more: a pass that
//! finds nothing new ends the sampling).
//!
//! Measured with `cargo test --test it measure_category_sampling -- --ignored --nocapture`
//! (debug build on the shared 2-core machine, so an upper bound: no release build was run):
//!
//! - an artifact compiled from every list in `../shared/data` (779,009 names, 17 categories):
//!   three names of a big category in under a millisecond, of a small one (58–865 names) in
//!   0.01–0.37 s; one full pass over the map 2.3 s;
//! - 4.39 M names (`../shared/bench/gen_lists.py --sizes 5M`) plus the 489 names of the
//!   hategroup list as a second category: three of the bulk category in 0.1 ms, three of the
//!   489 in 0.4–1.7 s; one full pass 17 s, the worst case, paid at most `count + 1` times per
//!   group and category, and only when fewer names than asked for are left to find.
//!
//! The checks plan on tokio's blocking pool, off the DNS path; for a weekly run this is cheap.

use fst::{raw::Fst, IntoStreamer, Streamer};

/// The deepest a random walk goes before it stops (keys are at most 253 bytes; a start a
/// few labels deep is as good as any).
const MAX_WALK: usize = 40;

/// Walks tried per name asked for: a walk can land on a name already taken or rejected.
const WALKS_PER_NAME: usize = 4;

/// A small deterministic generator (SplitMix64): the same seed gives the same sample.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A random key prefix inside the transducer's key space.
fn random_start<D: AsRef<[u8]>>(fst: &Fst<D>, mix: &mut Mix) -> Vec<u8> {
    let mut key = Vec::new();
    let mut node = fst.root();
    let stop_at = 1 + mix.below(MAX_WALK);
    while key.len() < stop_at && !node.is_empty() {
        let t = node.transition(mix.below(node.len()));
        key.push(t.inp);
        node = fst.node(t.addr);
    }
    key
}

/// The name of a label-reversed key (`com.example.www` → `www.example.com`).
fn name_of(key: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(key).ok()?;
    let mut labels: Vec<&str> = text.split('.').collect();
    labels.reverse();
    Some(labels.join("."))
}

/// Whether a key's value carries any bit of `mask` (subtree bits, or exact bits: the listed
/// name itself is blocked either way).
fn carries(value: u64, mask: u32) -> bool {
    (value as u32 | (value >> 32) as u32) & mask != 0
}

/// The first key from `start` on (wrapping round) that carries `mask`, is not in `taken` and
/// that `accept` takes. `None` after a whole pass without one.
fn scan<D: AsRef<[u8]>>(
    map: &fst::Map<D>,
    start: &[u8],
    mask: u32,
    taken: &[String],
    accept: &mut impl FnMut(&str) -> bool,
) -> Option<String> {
    let mut try_key = |key: &[u8], value: u64| -> Option<String> {
        if !carries(value, mask) {
            return None;
        }
        let name = name_of(key)?;
        (!taken.contains(&name) && accept(&name)).then_some(name)
    };
    let mut after = map.range().ge(start).into_stream();
    while let Some((key, value)) = after.next() {
        if let Some(name) = try_key(key, value) {
            return Some(name);
        }
    }
    let mut before = map.range().lt(start).into_stream();
    while let Some((key, value)) = before.next() {
        if let Some(name) = try_key(key, value) {
            return Some(name);
        }
    }
    None
}

/// Up to `count` distinct listed names carrying a bit of `mask` in `map` (label-reversed
/// keys, category bits as the compiler writes them), chosen by `seed`, each one accepted by
/// `accept` (the caller's "would this really be blocked for the group?").
pub fn sample<D: AsRef<[u8]>>(
    map: &fst::Map<D>,
    mask: u32,
    count: usize,
    seed: u64,
    mut accept: impl FnMut(&str) -> bool,
) -> Vec<String> {
    let mut out = Vec::with_capacity(count);
    if map.is_empty() || mask == 0 {
        return out;
    }
    let mut mix = Mix(seed ^ u64::from(mask).rotate_left(32));
    for _ in 0..count.saturating_mul(WALKS_PER_NAME) {
        if out.len() >= count {
            break;
        }
        let start = random_start(map.as_fst(), &mut mix);
        match scan(map, &start, mask, &out, &mut accept) {
            Some(name) => out.push(name),
            // A whole pass found nothing new: there is nothing more to find.
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::{EntryKind, SuffixMap};

    fn sample(
        m: &SuffixMap<Vec<u8>>,
        mask: u32,
        count: usize,
        seed: u64,
        accept: impl FnMut(&str) -> bool,
    ) -> Vec<String> {
        super::sample(m.as_map(), mask, count, seed, accept)
    }

    fn map() -> SuffixMap<Vec<u8>> {
        let mut entries = Vec::new();
        for i in 0..200 {
            entries.push((format!("game{i}.example.com"), EntryKind::Subtree, 1u32));
        }
        for i in 0..50 {
            entries.push((format!("bet{i}.example.net"), EntryKind::Exact, 2u32));
        }
        entries.push(("both.example.org".to_string(), EntryKind::Subtree, 3u32));
        SuffixMap::from_entries(entries).unwrap()
    }

    #[test]
    fn names_carry_the_category_and_are_distinct() {
        let m = map();
        for seed in 0..20 {
            let games = sample(&m, 1, 3, seed, |_| true);
            assert_eq!(games.len(), 3, "seed {seed}");
            for name in &games {
                assert!(m.deepest(name, 1).is_some(), "{name} is not in category 1");
            }
            let mut unique = games.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 3, "{games:?}");
            // Exact entries are names too.
            for name in sample(&m, 2, 3, seed, |_| true) {
                assert!(m.deepest(&name, 2).is_some(), "{name}");
            }
        }
    }

    #[test]
    fn deterministic_for_a_seed_and_moving_with_it() {
        let m = map();
        assert_eq!(sample(&m, 1, 3, 7, |_| true), sample(&m, 1, 3, 7, |_| true));
        let seen: std::collections::BTreeSet<String> = (0..10)
            .flat_map(|seed| sample(&m, 1, 3, seed, |_| true))
            .collect();
        assert!(seen.len() > 6, "ten seeds gave only {seen:?}");
    }

    #[test]
    fn small_categories_and_refusals() {
        let m = map();
        let rare = sample(&m, 1 << 5, 3, 1, |_| true);
        assert!(rare.is_empty(), "no such category");
        // Fewer acceptable names than asked for: those, and the sampling ends.
        let mut only = sample(&m, 2, 3, 1, |n| {
            n == "both.example.org" || n == "bet7.example.net"
        });
        only.sort();
        assert_eq!(only, ["bet7.example.net", "both.example.org"]);
        assert!(sample(&m, 1, 3, 1, |_| false).is_empty());
        assert!(sample(&SuffixMap::empty(), 1, 3, 1, |_| true).is_empty());
    }

    #[test]
    fn keys_turn_back_into_names() {
        assert_eq!(name_of(b"uk.co.bbc.www").as_deref(), Some("www.bbc.co.uk"));
        assert_eq!(name_of(b"com").as_deref(), Some("com"));
    }
}
