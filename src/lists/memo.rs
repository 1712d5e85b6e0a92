//! The walk's memo: the transducer's answer for names asked again, behind the prefilter.
//!
//! A name the prefilter lets through (a listed name, or one that shares a listed name's last
//! labels) costs a walk, and the walk of a listed name is a chain of cache misses that grows
//! with the list: 0.4 µs at 1 M names, 1.2–1.6 µs at 20 M (`benches/README.md`). Blocked
//! names are asked for again and again (a blocked app retries, every page carries the same
//! trackers) and a blocked answer is never in the answer cache, so without the memo every one
//! of those queries walks again.
//!
//! The memo keeps what the walk found for a name — every listed suffix, all categories — so
//! one entry serves every group, schedule and grant (those are applied to the hits afterwards,
//! by the policy, on every query). It belongs to its [`super::Blocklists`] snapshot: a reload
//! opens a new snapshot with an empty memo, so an entry can never outlive the lists it came
//! from.
//!
//! Bounded: [`SHARDS`] shards, each two generations of at most `per_generation` names; when
//! the young generation is full the old one is dropped and the young one becomes old (a name
//! found in the old generation moves to the young one). A name with more than [`MAX_HITS`]
//! listed suffixes is not kept (it walks each time; real lists rarely nest that deep).

use std::hash::BuildHasher;
use std::sync::Mutex;

use foldhash::HashMap;

/// Shards, each behind its own lock, so that workers on several cores rarely meet.
const SHARDS: usize = 16;
/// Listed suffixes an entry holds.
pub const MAX_HITS: usize = 3;
/// Names per generation per shard in a server's memo: at most 2 × 16 × 1,024 = 32,768 names,
/// about 3 MB (estimated, not measured) when full of names of common length (per name 16 bytes of hits, the table's
/// slot and the name's own allocation), 10 MB if every name had the DNS's 253 bytes.
pub const PER_GENERATION: usize = 1024;

/// What the walk found for one name: up to [`MAX_HITS`] hits, shallowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hits {
    len: u8,
    depth: [u8; MAX_HITS],
    bits: [u32; MAX_HITS],
}

impl Hits {
    /// Collects the hits `walk` reports as (depth, bits); `None` when there are more than
    /// [`MAX_HITS`].
    pub fn collect(walk: impl FnOnce(&mut dyn FnMut(u8, u32))) -> Option<Hits> {
        let mut hits = Hits {
            len: 0,
            depth: [0; MAX_HITS],
            bits: [0; MAX_HITS],
        };
        let mut overflow = false;
        walk(&mut |depth, bits| match usize::from(hits.len) {
            i if i < MAX_HITS => {
                hits.depth[i] = depth;
                hits.bits[i] = bits;
                hits.len += 1;
            }
            _ => overflow = true,
        });
        (!overflow).then_some(hits)
    }

    /// The most specific hit whose bits intersect `mask`, as (depth, bits masked): what
    /// [`super::SuffixMap::deepest`] answers for the same walk.
    pub fn deepest(&self, mask: u32) -> Option<(u8, u32)> {
        (0..usize::from(self.len)).rev().find_map(|i| {
            let bits = self.bits[i] & mask;
            (bits != 0).then_some((self.depth[i], bits))
        })
    }
}

#[derive(Default)]
struct Shard {
    young: HashMap<Box<str>, Hits>,
    old: HashMap<Box<str>, Hits>,
}

/// The memo of one snapshot.
pub struct Memo {
    shards: Box<[Mutex<Shard>]>,
    per_generation: usize,
    hasher: foldhash::fast::RandomState,
}

impl Memo {
    /// An empty memo keeping at most `per_generation` names per generation per shard.
    pub fn new(per_generation: usize) -> Memo {
        Memo {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_generation: per_generation.max(1),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn shard(&self, name: &str) -> &Mutex<Shard> {
        // The high bits: the table inside the shard indexes by the low ones of its own hash.
        let h = self.hasher.hash_one(name);
        &self.shards[(h >> 60) as usize % SHARDS]
    }

    /// `name`'s hits: from the memo when it has them, else from `walk` (kept for next time).
    /// `None` when the walk found more hits than an entry holds; the caller walks itself.
    pub fn get_or_walk(
        &self,
        name: &str,
        walk: impl FnOnce(&mut dyn FnMut(u8, u32)),
    ) -> Option<Hits> {
        let shard = self.shard(name);
        {
            // A panic cannot happen with the lock held (map operations only), but a poisoned
            // lock must not stop lookups either.
            let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hits) = s.young.get(name) {
                return Some(*hits);
            }
            if let Some((key, hits)) = s.old.remove_entry(name) {
                s.insert(key, hits, self.per_generation);
                return Some(hits);
            }
        }
        // Walk without the lock: another worker may walk the same name meanwhile, and both
        // insert the same hits.
        let hits = Hits::collect(walk)?;
        let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
        s.insert(name.into(), hits, self.per_generation);
        Some(hits)
    }

    /// Names held (for tests and reports).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.young.len() + s.old.len()
            })
            .sum()
    }

    /// Whether the memo holds no name.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most names it can hold.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        2 * SHARDS * self.per_generation
    }
}

impl Shard {
    fn insert(&mut self, name: Box<str>, hits: Hits, per_generation: usize) {
        if self.young.len() >= per_generation {
            // The old generation's table, emptied, becomes the young one: dropping it and
            // growing a new one from nothing (a rehash at every doubling) cost the DNS
            // thread a burst of frees and large allocations at each rotation, which glibc
            // answers by merging every small chunk freed since (`malloc_consolidate`; perf
            // on the DNS thread, benches/README.md).
            self.old.clear();
            std::mem::swap(&mut self.old, &mut self.young);
        }
        self.young.insert(name, hits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Hit = (u8, u32);

    fn walk_of(hits: &[Hit]) -> impl FnOnce(&mut dyn FnMut(u8, u32)) + '_ {
        move |f: &mut dyn FnMut(u8, u32)| hits.iter().for_each(|&(d, b)| f(d, b))
    }

    #[test]
    fn deepest_matches_the_walks_rule() {
        let hits = [(2, 0b011), (3, 0b100)];
        let memo = Hits::collect(walk_of(&hits)).unwrap();
        assert_eq!(memo.deepest(0b001), Some((2, 0b001)));
        assert_eq!(memo.deepest(0b110), Some((3, 0b100)));
        assert_eq!(memo.deepest(0b111), Some((3, 0b100)));
        assert_eq!(memo.deepest(0b1000), None);
        assert_eq!(Hits::collect(walk_of(&[])).unwrap().deepest(!0), None);
    }

    #[test]
    fn more_hits_than_an_entry_holds_are_not_kept() {
        let hits: Vec<Hit> = (1..=MAX_HITS as u8 + 1).map(|depth| (depth, 1)).collect();
        assert!(Hits::collect(walk_of(&hits)).is_none());
        let memo = Memo::new(8);
        assert!(memo.get_or_walk("a.b.c.d", walk_of(&hits)).is_none());
        assert!(memo.is_empty());
    }

    #[test]
    fn a_kept_name_is_not_walked_again_and_the_memo_stays_bounded() {
        static HIT: [Hit; 1] = [(2, 1)];
        let memo = Memo::new(4);
        let walks = std::cell::Cell::new(0);
        let counted = |hits: &'static [Hit]| {
            let walks = &walks;
            move |f: &mut dyn FnMut(u8, u32)| {
                walks.set(walks.get() + 1);
                hits.iter().for_each(|&(d, b)| f(d, b))
            }
        };
        for _ in 0..2 {
            let hits = memo.get_or_walk("x.example.com", counted(&HIT)).unwrap();
            assert_eq!(hits.deepest(1), Some(HIT[0]));
        }
        assert_eq!(walks.get(), 1);
        for i in 0..10_000 {
            memo.get_or_walk(&format!("n{i}.example.com"), counted(&[]));
            assert!(memo.len() <= memo.capacity());
        }
        // Each shard holds a full old generation and 1..=4 young names.
        assert!(memo.len() > memo.capacity() / 2, "{}", memo.len());
        // Long since evicted: walked again, same answer.
        let before = walks.get();
        let hits = memo.get_or_walk("x.example.com", counted(&HIT)).unwrap();
        assert_eq!(hits.deepest(1), Some(HIT[0]));
        assert_eq!(walks.get(), before + 1);
    }

    #[test]
    fn a_name_in_the_old_generation_survives_the_next_rotation() {
        // One shard's worth of names would be needed to aim at a shard; instead keep asking
        // for one name while filling: it must never be walked twice, since every use moves
        // it to the young generation before the young one can be dropped.
        let memo = Memo::new(2);
        let walks = std::cell::Cell::new(0);
        static HIT: [Hit; 1] = [(1, 4)];
        for i in 0..5_000 {
            memo.get_or_walk("kept.example", |f: &mut dyn FnMut(u8, u32)| {
                walks.set(walks.get() + 1);
                HIT.iter().for_each(|&(d, b)| f(d, b))
            });
            memo.get_or_walk(
                &format!("other{i}.example"),
                |_: &mut dyn FnMut(u8, u32)| {},
            );
        }
        assert_eq!(walks.get(), 1);
    }
}
