//! Label-reversed keys, and the sort → merge → prune pass that feeds an `fst` builder.
//!
//! `ads.example.com` is stored as `com.example.ads`, so every name under a domain shares the
//! domain's key as a prefix and one walk down the transducer finds every listed ancestor.
//!
//! Keys are kept in one byte arena with a 16-byte record per entry (the first 8 key bytes as a
//! big-endian integer, so most comparisons never touch the arena). No `String` per entry.

use std::io;

use super::parse::EntryKind;

/// Per-bit (per-category) counts from [`KeySet::build`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BitStats {
    /// Entries pushed with this bit.
    pub input: u64,
    /// Entries identical (name, kind, bit) to one already seen.
    pub duplicates: u64,
    /// Entries already covered by a listed ancestor (or by the same name's subtree entry).
    pub redundant: u64,
    /// Keys in the output carrying this bit.
    pub kept: u64,
}

/// Counts from one build.
#[derive(Clone, Debug, Default)]
pub(crate) struct MergeStats {
    pub bits: [BitStats; 32],
    /// Keys written.
    pub keys: u64,
}

#[derive(Clone, Copy)]
struct Rec {
    prefix: u64,
    /// Offset in the arena of `[len][exact][key bytes…]`.
    off: u32,
    bits: u32,
}

/// A growing set of `(label-reversed key, kind, bits)` entries.
#[derive(Default)]
pub(crate) struct KeySet {
    arena: Vec<u8>,
    recs: Vec<Rec>,
}

/// The arena outgrew 32-bit offsets (about 150 M names).
#[derive(Debug)]
pub(crate) struct TooManyNames;

impl KeySet {
    pub fn new() -> Self {
        KeySet::default()
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// Adds a normalised name (ASCII lower case, no trailing dot, ≤ 253 bytes).
    pub fn push(&mut self, name: &str, kind: EntryKind, bits: u32) -> Result<(), TooManyNames> {
        let name = name.as_bytes();
        debug_assert!(!name.is_empty() && name.len() <= 255);
        let off = u32::try_from(self.arena.len()).map_err(|_| TooManyNames)?;
        if self.arena.len() + name.len() + 2 > u32::MAX as usize {
            return Err(TooManyNames);
        }
        self.arena.push(name.len() as u8);
        self.arena.push(u8::from(kind == EntryKind::Exact));
        let key_start = self.arena.len();
        for (i, label) in name.rsplit(|&b| b == b'.').enumerate() {
            if i > 0 {
                self.arena.push(b'.');
            }
            self.arena.extend_from_slice(label);
        }
        let key = &self.arena[key_start..];
        let mut p = [0u8; 8];
        let n = key.len().min(8);
        p[..n].copy_from_slice(&key[..n]);
        self.recs.push(Rec {
            prefix: u64::from_be_bytes(p),
            off,
            bits,
        });
        Ok(())
    }

    fn key<'a>(arena: &'a [u8], r: &Rec) -> &'a [u8] {
        let o = r.off as usize;
        let len = arena[o] as usize;
        &arena[o + 2..o + 2 + len]
    }

    fn exact(arena: &[u8], r: &Rec) -> bool {
        arena[r.off as usize + 1] == 1
    }

    /// Sorts, merges equal keys, drops entries covered by a listed ancestor, and calls `emit`
    /// with every surviving key in order. The value is `subtree bits | exact bits << 32`.
    pub fn build<E>(
        mut self,
        stats: &mut MergeStats,
        mut emit: impl FnMut(&[u8], u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let arena = &self.arena;
        self.recs.sort_unstable_by(|a, b| {
            a.prefix
                .cmp(&b.prefix)
                .then_with(|| Self::key(arena, a).cmp(Self::key(arena, b)))
        });

        // Stack of keys that are string prefixes of the current key, with the subtree bits they
        // contributed. Not every one is a *label* prefix ('-' sorts before '.', so `com.ex-a`
        // falls between `com.ex` and `com.ex.b`); that is checked when summing ancestors.
        let mut stack: Vec<(u32, u32)> = Vec::with_capacity(16);
        let recs = &self.recs;
        let mut i = 0;
        while i < recs.len() {
            let key = Self::key(arena, &recs[i]);
            let (mut sub, mut exact) = (0u32, 0u32);
            let mut j = i;
            while j < recs.len() && Self::key(arena, &recs[j]) == key {
                let r = &recs[j];
                let seen = if Self::exact(arena, r) {
                    &mut exact
                } else {
                    &mut sub
                };
                for_bits(r.bits, |b| stats.bits[b].input += 1);
                for_bits(r.bits & *seen, |b| stats.bits[b].duplicates += 1);
                *seen |= r.bits;
                j += 1;
            }
            i = j;

            while let Some(&(off, _)) = stack.last() {
                let top = Self::key(
                    arena,
                    &Rec {
                        prefix: 0,
                        off,
                        bits: 0,
                    },
                );
                if key.starts_with(top) {
                    break;
                }
                stack.pop();
            }
            let mut ancestors = 0u32;
            for &(off, bits) in &stack {
                let top = Self::key(
                    arena,
                    &Rec {
                        prefix: 0,
                        off,
                        bits: 0,
                    },
                );
                if key.get(top.len()) == Some(&b'.') {
                    ancestors |= bits;
                }
            }
            // An exact entry is also covered by the same name's own subtree entry.
            let covered_exact = exact & (ancestors | sub);
            let covered_sub = sub & ancestors;
            for_bits(covered_exact, |b| stats.bits[b].redundant += 1);
            for_bits(covered_sub, |b| stats.bits[b].redundant += 1);
            exact &= !covered_exact;
            sub &= !covered_sub;
            if sub | exact == 0 {
                continue;
            }
            for_bits(sub | exact, |b| stats.bits[b].kept += 1);
            stats.keys += 1;
            emit(key, u64::from(sub) | (u64::from(exact) << 32))?;
            if sub != 0 {
                let off = recs[i - 1].off;
                stack.push((off, sub));
            }
        }
        Ok(())
    }

    /// Builds an in-memory `fst::Map` (used for tests, benches and config-sized lists).
    pub fn build_memory(self, stats: &mut MergeStats) -> Result<fst::Map<Vec<u8>>, fst::Error> {
        let mut builder = fst::MapBuilder::memory();
        self.build(stats, |k, v| builder.insert(k, v))?;
        fst::Map::new(builder.into_inner()?)
    }

    /// Builds an `fst::Map` into `w`.
    /// As [`KeySet::build_memory`], streaming to `w`; `on_key` sees each key written.
    pub fn build_into<W: io::Write>(
        self,
        w: W,
        stats: &mut MergeStats,
        mut on_key: impl FnMut(&[u8]),
    ) -> Result<W, fst::Error> {
        let mut builder = fst::MapBuilder::new(w)?;
        self.build(stats, |k, v| {
            on_key(k);
            builder.insert(k, v)
        })?;
        builder.into_inner()
    }
}

/// Calls `f` with the index of every set bit.
pub(crate) fn for_bits(mut bits: u32, mut f: impl FnMut(usize)) {
    while bits != 0 {
        f(bits.trailing_zeros() as usize);
        bits &= bits - 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntryKind::*;

    fn run(entries: &[(&str, EntryKind, u32)]) -> (Vec<(String, u64)>, MergeStats) {
        let mut set = KeySet::new();
        for &(n, k, b) in entries {
            set.push(n, k, b).unwrap();
        }
        let mut stats = MergeStats::default();
        let mut out = Vec::new();
        set.build(&mut stats, |k, v| {
            out.push((String::from_utf8(k.to_vec()).unwrap(), v));
            Ok::<_, ()>(())
        })
        .unwrap();
        (out, stats)
    }

    #[test]
    fn reversed_sorted_and_merged() {
        let (out, stats) = run(&[
            ("ads.example.com", Subtree, 1),
            ("example.org", Subtree, 2),
            ("ads.example.com", Subtree, 1),
            ("ads.example.com", Subtree, 4),
            ("www.example.com", Exact, 2),
        ]);
        assert_eq!(
            out,
            [
                ("com.example.ads".to_string(), 5),
                ("com.example.www".to_string(), 2 << 32),
                ("org.example".to_string(), 2),
            ]
        );
        assert_eq!(stats.bits[0].duplicates, 1);
        assert_eq!(stats.bits[0].input, 2);
        assert_eq!(stats.keys, 3);
    }

    #[test]
    fn redundant_children_dropped_per_bit() {
        let (out, stats) = run(&[
            ("example.com", Subtree, 1),
            ("a.example.com", Subtree, 1 | 2),
            ("b.a.example.com", Subtree, 1),
            ("example-x.com", Subtree, 1),
            ("c.example.com", Exact, 1),
            ("examplex.com", Subtree, 1),
            ("same.com", Subtree, 1),
            ("same.com", Exact, 1),
        ]);
        assert_eq!(
            out,
            [
                ("com.example".to_string(), 1),
                ("com.example-x".to_string(), 1),
                ("com.example.a".to_string(), 2),
                ("com.examplex".to_string(), 1),
                ("com.same".to_string(), 1),
            ]
        );
        let s = stats.bits[0];
        assert_eq!(s.redundant, 4);
        assert_eq!(s.input, s.kept + s.duplicates + s.redundant);
    }

    #[test]
    fn string_prefix_is_not_ancestor() {
        let (out, _) = run(&[("example.co", Subtree, 1), ("ads.example.com", Subtree, 1)]);
        assert_eq!(out.len(), 2);
    }
}
