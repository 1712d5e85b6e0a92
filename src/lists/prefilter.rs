//! The prefilter: a compact filter over the listed names' last labels, in front of the
//! transducer walk.
//!
//! Most of a school's traffic is on no list, and for such a name the walk reads transducer
//! nodes that are cold in memory once the lists outgrow the CPU's cache (tens of MB at a few
//! million names). The prefilter answers "could a listed name be this name or a parent of
//! it?" from one or two 32-byte blocks; when it says no, [`super::Blocklists::lookup`]
//! returns at once.
//!
//! What it holds, per key of the transducer, is the key's *anchor*: its last two labels when
//! it has two (`example.com`), its last three when it has more (`ads.example.com`). A listed
//! name `K` matches a query `Q` only when `K` is `Q` or a parent of it, so `Q` ends in `K`'s
//! anchor: a query asks for its own last two labels, then (with three or more) its last
//! three. Two labels alone would let every name under a listed name's registrable domain
//! through (`www.google.com` because `ads.google.com` is listed), and every name under a
//! shared suffix (`co.uk`, `com.br`); three keep those to the names that share a listed
//! name's last three labels. Single-label keys (refused by the importer) set a flag that
//! sends every name to the walk.
//!
//! The filter never says no for a name a key matches (no false negatives): the compiler adds
//! every key it writes, and [`super::Blocklists::open`] checks every key's anchor against the
//! filter before the lists serve a query. It says yes for some anchors it never saw (false
//! positives, about 1 % per probe at [`BITS_PER_ANCHOR`]): those names take the walk, as
//! every name did before.
//!
//! The filter is a split-block Bloom filter (the layout of Apache Parquet's): 256-bit blocks
//! of eight 32-bit words; an anchor's hash picks one block and one bit in each word. A probe
//! reads one block, i.e. one cache line.
//!
//! # File layout (`prefilter.bin`, little-endian)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `HRPREF01` (the last two bytes are the layout's version) |
//! | 8 | 4 | flags: bit 0 set when some key has a single label (every lookup then walks) |
//! | 12 | 4 | zero |
//! | 16 | 8 | number of blocks (at least 1, at most 2³²) |
//! | 24 | 8 | anchors added (distinct adjacent ones: for reports) |
//! | 32 | 32 × blocks | the blocks, eight `u32` words each |
//!
//! The file is optional: an artifact compiled before the prefilter existed has none, opens
//! as before, and walks for every name.

use std::fmt;

/// Magic and layout version at the start of `prefilter.bin`.
const MAGIC: &[u8; 8] = b"HRPREF01";
/// Header size; the blocks follow, 32-byte aligned within a page-aligned mapping.
const HEADER: usize = 32;
/// Bytes per block.
const BLOCK: usize = 32;
/// Flag: some key has a single label.
const FLAG_SINGLE_LABEL: u32 = 1;

/// Filter bits per distinct anchor. 10 bits (1.25 bytes) lets about 1 % of the anchors it
/// never saw through per probe (names of three labels or more probe twice), measured in the
/// tests below and on real traffic (`benches/README.md`); 8 bits let 3 % through, 12 bits
/// 0.6 %. A filter for 20 M anchors (25 MB) still fits a server's last-level cache.
pub const BITS_PER_ANCHOR: u32 = 10;

/// Parquet's salts: one odd multiplier per word of a block.
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// A prefilter over the bytes of a `prefilter.bin` (mapped or owned).
#[derive(Clone)]
pub struct Prefilter<D> {
    bytes: D,
    blocks: u64,
    single_label: bool,
}

impl<D> fmt::Debug for Prefilter<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prefilter")
            .field("blocks", &self.blocks)
            .field("single_label", &self.single_label)
            .finish()
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl<D: AsRef<[u8]>> Prefilter<D> {
    /// Checks the header and size of a `prefilter.bin`; the error says what is wrong.
    pub fn from_bytes(bytes: D) -> Result<Prefilter<D>, String> {
        let b = bytes.as_ref();
        if b.len() < HEADER || &b[..8] != MAGIC {
            return Err("not a prefilter file of this version (recompile the lists)".into());
        }
        let flags = le_u32(b, 8);
        if flags & !FLAG_SINGLE_LABEL != 0 || le_u32(b, 12) != 0 {
            return Err(format!("unknown prefilter flags {flags:#x}"));
        }
        let blocks = le_u64(b, 16);
        if blocks == 0 || blocks > 1 << 32 {
            return Err(format!("{blocks} prefilter blocks"));
        }
        let want = blocks
            .checked_mul(BLOCK as u64)
            .and_then(|n| n.checked_add(HEADER as u64));
        if want != Some(b.len() as u64) {
            return Err(format!("{} bytes for {blocks} prefilter blocks", b.len()));
        }
        Ok(Prefilter {
            single_label: flags & FLAG_SINGLE_LABEL != 0,
            blocks,
            bytes,
        })
    }

    /// The file's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// What holds the bytes (a mapping or a buffer).
    pub(super) fn backing(&self) -> &D {
        &self.bytes
    }

    /// Distinct anchors the compiler added (as recorded in the header).
    pub fn anchors(&self) -> u64 {
        le_u64(self.bytes.as_ref(), 24)
    }

    /// Size of the filter in bytes.
    pub fn len_bytes(&self) -> usize {
        self.bytes.as_ref().len()
    }

    /// Whether a listed name could match `name` (same tolerance as the walk: ASCII upper case
    /// and one trailing dot). `false` is certain: no listed name is `name` or a parent of it.
    #[inline]
    pub fn may_match(&self, name: &str) -> bool {
        let bytes = name.as_bytes();
        let bytes = bytes.strip_suffix(b".").unwrap_or(bytes);
        if bytes.is_empty() || bytes.len() > 253 {
            // The walk matches nothing here either.
            return false;
        }
        if self.single_label {
            return true;
        }
        let Some(last) = bytes.iter().rposition(|&b| b == b'.') else {
            // One label: only a single-label key could match it, and there is none.
            return false;
        };
        // A two-label key listed for this name ends in the same two labels; a deeper one in
        // the same three.
        let second = bytes[..last].iter().rposition(|&b| b == b'.');
        let start = second.map_or(0, |d| d + 1);
        if self.contains_hash(anchor_hash(&bytes[start..])) {
            return true;
        }
        let Some(second) = second else {
            return false;
        };
        let start = bytes[..second]
            .iter()
            .rposition(|&b| b == b'.')
            .map_or(0, |d| d + 1);
        self.contains_hash(anchor_hash(&bytes[start..]))
    }

    /// Whether the filter holds a key's anchor (the key as stored in the transducer:
    /// label-reversed, `com.example.www`). A key with one label needs the single-label flag.
    pub fn covers_key(&self, key: &[u8]) -> bool {
        match key_anchor_hash(key) {
            Some(h) => self.contains_hash(h),
            None => self.single_label,
        }
    }

    /// Counts the anchor hashes in `hashes` (see [`key_anchor_hash`]) that the filter does
    /// not hold. It probes them in the order of their blocks (sorting `hashes` so) and calls
    /// `behind(upto)` each time the probes have moved past another [`CHECK_STRIDE`] bytes of
    /// the file, so that the caller can give back the pages before `upto`: checking every key
    /// of a large artifact then keeps only a little of the filter resident, where probing in
    /// the keys' order touched all of it (24 MB at 20 M names) beside the filter in use.
    pub(super) fn count_missing(&self, hashes: &mut [u64], mut behind: impl FnMut(usize)) -> u64 {
        hashes.sort_unstable_by_key(|&h| self.block_offset(h));
        let mut missing = 0;
        let mut stride_end = CHECK_STRIDE;
        for &h in hashes.iter() {
            let offset = self.block_offset(h);
            if offset >= stride_end {
                let upto = offset - offset % CHECK_STRIDE;
                behind(upto);
                stride_end = upto + CHECK_STRIDE;
            }
            missing += u64::from(!self.contains_hash(h));
        }
        missing
    }

    /// Where in the file the block `h` picks starts.
    #[inline]
    fn block_offset(&self, h: u64) -> usize {
        // In bounds: the block is below `blocks`, and the length was checked against `blocks`.
        HEADER + (((h >> 32) * self.blocks) >> 32) as usize * BLOCK
    }

    #[inline]
    fn contains_hash(&self, h: u64) -> bool {
        let b = self.bytes.as_ref();
        let base = self.block_offset(h);
        let words = &b[base..base + BLOCK];
        let key = h as u32;
        SALT.iter().enumerate().all(|(i, salt)| {
            let bit = key.wrapping_mul(*salt) >> 27;
            le_u32(words, i * 4) & (1 << bit) != 0
        })
    }
}

/// The bytes of the filter [`Prefilter::count_missing`] probes between two calls of its
/// `behind` (a multiple of any page size, so the caller can give them back as they are).
pub(super) const CHECK_STRIDE: usize = 1 << 20;

/// The hash of a transducer key's anchor (see [`Prefilter::covers_key`]); `None` for a key
/// with a single label.
pub(super) fn key_anchor_hash(key: &[u8]) -> Option<u64> {
    let mut buf = [0u8; 256];
    forward_anchor(key, &mut buf).map(anchor_hash)
}

/// A label-reversed key's anchor in forward text, written into `buf`: its last two labels
/// for a two-label key (`com.example` → `example.com`), its last three for a deeper one
/// (`com.example.ads.x` → `ads.example.com`); `None` for a single-label key.
fn forward_anchor<'a>(key: &[u8], buf: &'a mut [u8; 256]) -> Option<&'a [u8]> {
    let mut labels = key.splitn(4, |&b| b == b'.');
    let tld = labels.next()?;
    let second = labels.next()?;
    let third = labels.next();
    let mut len = 0;
    for part in third.into_iter().chain([second, tld]) {
        if len > 0 {
            *buf.get_mut(len)? = b'.';
            len += 1;
        }
        buf.get_mut(len..len + part.len())?.copy_from_slice(part);
        len += part.len();
    }
    Some(&buf[..len])
}

/// ASCII lower case of eight bytes at once (bytes ≥ 0x80 unchanged), as
/// `u8::to_ascii_lowercase` does byte by byte.
#[inline]
fn lower8(x: u64) -> u64 {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HI: u64 = 0x8080_8080_8080_8080;
    let low = x & LO7;
    // Per byte (no carries: each is at most 0x7f + 0x3f): high bit set when ≥ 'A', and when
    // > 'Z'.
    let ge_a = low + 0x3f3f_3f3f_3f3f_3f3f;
    let gt_z = low + 0x2525_2525_2525_2525;
    let upper = (ge_a & !gt_z) & !x & HI;
    x | (upper >> 2)
}

#[inline]
fn mix(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

/// The hash of an anchor's text, ASCII case folded. Part of the file format: changing it needs
/// a new magic.
#[inline]
fn anchor_hash(bytes: &[u8]) -> u64 {
    const K0: u64 = 0xa076_1d64_78bd_642f;
    const K1: u64 = 0xe703_7ed1_a0b4_28db;
    let mut h = (bytes.len() as u64) ^ K0;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h ^ lower8(u64::from_le_bytes(w)), K1);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut w = [0u8; 8];
        w[..tail.len()].copy_from_slice(tail);
        h = mix(h ^ lower8(u64::from_le_bytes(w)), K1);
    }
    mix(h ^ (h >> 32), K0 ^ K1)
}

/// Collects the anchors of the keys a compile writes, and writes the filter.
#[derive(Debug, Default)]
pub struct PrefilterBuilder {
    hashes: Vec<u64>,
    single_label: bool,
}

impl PrefilterBuilder {
    /// An empty builder.
    pub fn new() -> PrefilterBuilder {
        PrefilterBuilder::default()
    }

    /// Adds a key as stored in the transducer (label-reversed: `com.example.www`). Keys arrive
    /// sorted, so the same anchor usually comes several times in a row: it is kept once.
    pub fn add_key(&mut self, key: &[u8]) {
        match key_anchor_hash(key) {
            Some(h) => {
                if self.hashes.last() != Some(&h) {
                    self.hashes.push(h);
                }
            }
            None => self.single_label = true,
        }
    }

    /// The `prefilter.bin` bytes at [`BITS_PER_ANCHOR`].
    pub fn finish(self) -> Vec<u8> {
        self.finish_with(BITS_PER_ANCHOR)
    }

    /// The `prefilter.bin` bytes at `bits` filter bits per anchor (at least 1).
    pub fn finish_with(self, bits: u32) -> Vec<u8> {
        let want_bits = (self.hashes.len() as u64).saturating_mul(u64::from(bits.max(1)));
        let blocks = want_bits.div_ceil(BLOCK as u64 * 8).clamp(1, 1 << 32);
        let mut out = vec![0u8; HEADER + blocks as usize * BLOCK];
        out[..8].copy_from_slice(MAGIC);
        let flags = if self.single_label {
            FLAG_SINGLE_LABEL
        } else {
            0
        };
        out[8..12].copy_from_slice(&flags.to_le_bytes());
        out[16..24].copy_from_slice(&blocks.to_le_bytes());
        out[24..32].copy_from_slice(&(self.hashes.len() as u64).to_le_bytes());
        for h in self.hashes {
            let block = ((h >> 32) * blocks) >> 32;
            let base = HEADER + block as usize * BLOCK;
            let key = h as u32;
            for (i, salt) in SALT.iter().enumerate() {
                let bit = key.wrapping_mul(*salt) >> 27;
                let at = base + i * 4;
                let w = le_u32(&out, at) | 1 << bit;
                out[at..at + 4].copy_from_slice(&w.to_le_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reversed(name: &str) -> Vec<u8> {
        name.rsplit('.').collect::<Vec<_>>().join(".").into_bytes()
    }

    fn filter(names: &[&str]) -> Prefilter<Vec<u8>> {
        let mut b = PrefilterBuilder::new();
        for n in names {
            b.add_key(&reversed(n));
        }
        Prefilter::from_bytes(b.finish()).unwrap()
    }

    #[test]
    fn lower8_is_to_ascii_lowercase() {
        for b in 0..=255u8 {
            let x = u64::from_le_bytes([b, b'A', b'Z', b'@', b'[', 0x80 | b'A', b, 0xff]);
            let want = u64::from_le_bytes(
                [b, b'A', b'Z', b'@', b'[', 0x80 | b'A', b, 0xff].map(|c| c.to_ascii_lowercase()),
            );
            assert_eq!(lower8(x), want, "{b:#x}");
        }
    }

    #[test]
    fn anchors_of_keys_and_queries_agree() {
        let f = filter(&["example.com", "ads.tracker.co.uk", "x.y.z.example.org"]);
        for q in [
            "example.com",
            "WWW.Example.COM.",
            "a.b.example.com",
            "a..example.com",
            "ads.tracker.co.uk",
            "www.ads.tracker.co.uk",
            "z.example.org",
            "x.y.z.example.org",
        ] {
            assert!(f.may_match(q), "{q}");
        }
        // The filter holds three anchors in one block: nothing else gets through by chance.
        for q in [
            "co.uk",
            "bbc.co.uk",
            "www.bbc.co.uk",
            "example.org",
            "y.example.org",
            "example.net",
        ] {
            assert!(!f.may_match(q), "{q}");
        }
        assert!(f.covers_key(b"com.example"));
        assert!(f.covers_key(b"uk.co.tracker.ads"));
        assert!(f.covers_key(b"org.example.z.y.x"));
        assert!(!f.covers_key(b"com.example.www"));
        // One label, nothing, too long: the walk finds nothing either.
        assert!(!f.may_match("com"));
        assert!(!f.may_match(""));
        assert!(!f.may_match("."));
        assert!(!f.may_match(&format!("{}.example.com", "a".repeat(250))));
        assert!(!f.covers_key(b"com"));
        // A single-label key makes every name a candidate.
        let mut b = PrefilterBuilder::new();
        b.add_key(b"localhost");
        let f = Prefilter::from_bytes(b.finish()).unwrap();
        assert!(f.may_match("localhost") && f.may_match("anything.example"));
        assert!(f.covers_key(b"localhost"));
    }

    /// 100k listed names (two, three and four labels) and 100k others from a simple generator.
    fn generated() -> (Vec<String>, Vec<String>) {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut name = |i: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Single-label TLDs: a shared suffix such as `co.uk` is one anchor, either a
            // false positive for every name under it or for none (so says nothing about the
            // rate).
            let tld = ["com", "net", "org", "uk"][(x % 4) as usize];
            let base = format!("n{i}x{:x}.{tld}", x % 1_000_000);
            match (x >> 8) % 4 {
                0 => format!("www.{base}"),
                1 => format!("a.cdn.{base}"),
                _ => base,
            }
        };
        let listed = (0..100_000).map(&mut name).collect();
        let others = (0..100_000).map(|i| name(i + 1_000_000)).collect();
        (listed, others)
    }

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let (listed, others) = generated();
        for bits in [6, 8, 10, 12, 16] {
            let mut b = PrefilterBuilder::new();
            for n in &listed {
                b.add_key(&reversed(n));
            }
            let f = Prefilter::from_bytes(b.finish_with(bits)).unwrap();
            assert!(listed.iter().all(|n| f.may_match(n)));
            assert!(listed.iter().all(|n| f.may_match(&format!("x.{n}"))));
            let fp = others.iter().filter(|n| f.may_match(n)).count();
            eprintln!("{bits} bits per anchor: {fp} of 100,000 others pass");
            if bits == BITS_PER_ANCHOR {
                // About 1 % per probe, 1.5 probes a name here; well below 3 % whatever the
                // hash's luck.
                assert!(fp < 3_000, "{fp} false positives in 100,000");
                assert!(fp > 0, "a filter this small must have some");
            }
        }
    }

    /// The check in the filter's order counts exactly the anchors a probe in any order finds
    /// missing, and says as it goes which whole strides lie behind the probes.
    #[test]
    fn counting_missing_anchors_in_block_order_agrees_with_probing_each() {
        let (listed, others) = generated();
        let mut b = PrefilterBuilder::new();
        for n in &listed {
            b.add_key(&reversed(n));
        }
        // 400 bits per anchor: a filter of 5 MB, several strides.
        let f = Prefilter::from_bytes(b.finish_with(400)).unwrap();
        assert!(f.as_bytes().len() > 4 * CHECK_STRIDE);
        let keys: Vec<Vec<u8>> = listed.iter().chain(&others).map(|n| reversed(n)).collect();
        let want = keys.iter().filter(|k| !f.covers_key(k)).count() as u64;
        assert!(want > 90_000, "{want}");
        let mut hashes: Vec<u64> = keys.iter().filter_map(|k| key_anchor_hash(k)).collect();
        let mut strides = Vec::new();
        assert_eq!(
            f.count_missing(&mut hashes, |upto| strides.push(upto)),
            want
        );
        let expected: Vec<usize> = (1..=f.as_bytes().len() / CHECK_STRIDE)
            .map(|i| i * CHECK_STRIDE)
            .collect();
        assert_eq!(strides, expected);
    }

    #[test]
    fn damaged_headers_are_refused() {
        let good = filter(&["example.com"]).as_bytes().to_vec();
        assert!(Prefilter::from_bytes(&good[..]).is_ok());
        assert!(Prefilter::from_bytes(&good[..good.len() - 1]).is_err());
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(Prefilter::from_bytes(&bad[..]).is_err());
        let mut bad = good.clone();
        bad[8] = 2;
        assert!(Prefilter::from_bytes(&bad[..]).is_err());
        let mut bad = good.clone();
        bad[16..24].copy_from_slice(&0u64.to_le_bytes());
        assert!(Prefilter::from_bytes(&bad[..]).is_err());
        let mut bad = good;
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Prefilter::from_bytes(&bad[..]).is_err());
    }
}
