//! Lookups: [`SuffixMap`] (one transducer) and [`Blocklists`] (an opened artifact snapshot).
//!
//! A lookup walks the query name's labels from the right (`com`, `.`, `example`, `.`, `ads`)
//! down the raw transducer, summing outputs, and reports every label boundary where the node is
//! final. That is one pass, no allocation, and it finds every listed ancestor of the name.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use fst::raw::Output;
use memmap2::Mmap;

use super::artifact::{
    self, CategoryMeta, Meta, ALLOW_FST, CATEGORIES_FST, ILLEGAL_BIN, PREFILTER_BIN,
};
use super::error::ListError;
use super::illegal::{IllegalHit, IllegalKey, IllegalSet};
use super::keys::{KeySet, MergeStats};
use super::manifest::{Severity, MAX_CATEGORIES};
use super::memo::{Memo, PER_GENERATION};
use super::parse::{normalize_name, EntryKind};
use super::prefilter::{key_anchor_hash, Prefilter, PrefilterBuilder};

/// One listed suffix of a query name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hit {
    /// Labels in the matched suffix (`example.com` = 2).
    pub depth: u8,
    /// Category bits that apply: subtree bits, plus exact bits when the suffix is the whole name.
    pub bits: u32,
}

/// A transducer from label-reversed names to category bits, with the suffix walk.
#[derive(Clone)]
pub struct SuffixMap<D> {
    map: fst::Map<D>,
}

impl<D> fmt::Debug for SuffixMap<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuffixMap").finish_non_exhaustive()
    }
}

impl SuffixMap<Vec<u8>> {
    /// Builds a map in memory from `(name, kind, bits)`. Names are normalised (case, trailing
    /// dot, IDN); an invalid name is an error naming it. Used for configuration allow/deny lists
    /// and tests.
    ///
    /// ```
    /// use hedgerow::lists::{EntryKind, SuffixMap};
    /// let m = SuffixMap::from_entries([("Example.com.", EntryKind::Subtree, 1)]).unwrap();
    /// assert_eq!(m.deepest("a.b.example.com", 1).unwrap().depth, 2);
    /// ```
    pub fn from_entries<I, S>(entries: I) -> Result<Self, ListError>
    where
        I: IntoIterator<Item = (S, EntryKind, u32)>,
        S: AsRef<str>,
    {
        let mut keys = KeySet::new();
        for (name, kind, bits) in entries {
            let name = name.as_ref();
            let norm = normalize_name(name).map_err(|r| ListError::InvalidName {
                name: name.to_string(),
                reason: r.to_string(),
            })?;
            keys.push(&norm, kind, bits)
                .map_err(|_| ListError::InvalidName {
                    name: name.to_string(),
                    reason: "too many names for one map".into(),
                })?;
        }
        Self::from_keys(keys, &mut MergeStats::default())
    }

    pub(crate) fn from_keys(keys: KeySet, stats: &mut MergeStats) -> Result<Self, ListError> {
        let map = keys.build_memory(stats).map_err(|e| ListError::Fst {
            path: PathBuf::from("<memory>"),
            source: e,
        })?;
        Ok(SuffixMap { map })
    }

    /// An empty map.
    pub fn empty() -> Self {
        SuffixMap {
            map: fst::Map::default(),
        }
    }
}

impl<D: AsRef<[u8]>> SuffixMap<D> {
    /// Wraps an existing `fst::Map` whose keys are label-reversed names.
    pub fn new(map: fst::Map<D>) -> Self {
        SuffixMap { map }
    }

    /// Opens serialized transducer bytes (checks the fst header and checksum-free structure).
    pub fn from_bytes(bytes: D) -> Result<Self, fst::Error> {
        Ok(SuffixMap {
            map: fst::Map::new(bytes)?,
        })
    }

    /// The underlying map.
    pub fn as_map(&self) -> &fst::Map<D> {
        &self.map
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map has no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Calls `f` for every listed suffix of `name`, shallowest first. `name` should be ASCII
    /// lower case without a trailing dot; upper case and one trailing dot are tolerated (DNS
    /// 0x20 randomisation). Names longer than 253 bytes match nothing.
    #[inline]
    pub fn walk(&self, name: &str, mut f: impl FnMut(Hit)) {
        let bytes = name.as_bytes();
        let bytes = bytes.strip_suffix(b".").unwrap_or(bytes);
        if bytes.is_empty() || bytes.len() > 253 {
            return;
        }
        let fst = self.map.as_fst();
        let mut node = fst.root();
        let mut out = Output::zero();
        let mut end = bytes.len();
        let mut depth: u8 = 0;
        loop {
            let start = match bytes[..end].iter().rposition(|&b| b == b'.') {
                Some(dot) => dot + 1,
                None => 0,
            };
            if depth > 0 {
                match node.find_input(b'.') {
                    Some(i) => {
                        let t = node.transition(i);
                        out = out.cat(t.out);
                        node = fst.node(t.addr);
                    }
                    None => return,
                }
            }
            for &b in &bytes[start..end] {
                match node.find_input(b.to_ascii_lowercase()) {
                    Some(i) => {
                        let t = node.transition(i);
                        out = out.cat(t.out);
                        node = fst.node(t.addr);
                    }
                    None => return,
                }
            }
            depth += 1;
            if node.is_final() {
                let v = out.cat(node.final_output()).value();
                let mut bits = v as u32;
                if start == 0 {
                    bits |= (v >> 32) as u32;
                }
                if bits != 0 {
                    f(Hit { depth, bits });
                }
            }
            if start == 0 {
                return;
            }
            end = start - 1;
        }
    }

    /// The most specific listed suffix whose bits intersect `mask`, with `bits` masked.
    #[inline]
    pub fn deepest(&self, name: &str, mask: u32) -> Option<Hit> {
        let mut best = None;
        self.walk(name, |h| {
            let bits = h.bits & mask;
            if bits != 0 {
                best = Some(Hit {
                    depth: h.depth,
                    bits,
                });
            }
        });
        best
    }
}

/// The last `depth` labels of `name`, lower-cased without a trailing dot (the listed suffix a
/// [`Hit`] refers to), for explanations and logs.
pub fn matched_suffix(name: &str, depth: u8) -> String {
    suffix_of(name, depth).to_ascii_lowercase()
}

/// The last `depth` labels of `name` as they are spelled there (all of it when it has fewer).
pub(crate) fn suffix_of(name: &str, depth: u8) -> &str {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut start = name.len();
    for _ in 0..depth {
        match name[..start].rfind('.') {
            Some(dot) if start > 0 => start = dot,
            _ => {
                start = 0;
                break;
            }
        }
    }
    if start == 0 || start >= name.len() {
        name
    } else {
        &name[start + 1..]
    }
}

/// Maps a private copy of `path`: the copy is unlinked as soon as it is open, so nothing
/// else can write to, or truncate, the pages the DNS path reads. Mapping the artifact file
/// itself would let an in-place overwrite (a `cp` over it, a bad sync tool) change a live
/// transducer under a lookup, and a truncation would kill the process with SIGBUS. The copy
/// sits beside the original (same filesystem: a reflink where supported, never tmpfs RAM),
/// and the checksum is verified on the copy, i.e. on exactly the bytes served.
fn private_map(path: &Path) -> std::io::Result<Mmap> {
    static SNAPSHOTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SNAPSHOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let copy = path.with_file_name(format!(".{name}.in-use-{}-{n}", std::process::id()));
    std::fs::copy(path, &copy)?;
    let file = File::open(&copy);
    let _ = std::fs::remove_file(&copy);
    let file = file?;
    // SAFETY: the file is unlinked and only this process holds it, read-only, so the mapping
    // cannot change under us.
    unsafe { Mmap::map(&file) }
}

/// Keys walked between two releases of the mappings' pages while `open` checks them.
const RELEASE_KEYS: u64 = 1 << 18;
/// Bytes hashed between two releases while `open` checks a file's checksum.
const RELEASE_BYTES: usize = 1 << 20;

/// Checks a transducer as a whole: its own checksum, a full walk (which must not panic) that
/// finds `names` keys, values naming only `known` category bits, and every key covered by
/// `prefilter` (so the prefilter can never hide a listed name). The pages read are given
/// back as the walk moves on (see [`Backing::release`]).
fn check_structure(
    map: &SuffixMap<Backing>,
    names: u64,
    known: u32,
    prefilter: Option<&Prefilter<Backing>>,
) -> Result<(), String> {
    use fst::Streamer;
    let release = || {
        map.map.as_fst().as_inner().release();
        if let Some(p) = prefilter {
            p.backing().release();
        }
    };
    // The keys' anchors are checked against the prefilter a part at a time, in the filter's
    // own order, so that its pages can be given back behind the probes.
    let missing = |hashes: &mut Vec<u64>| {
        let Some(p) = prefilter else { return 0 };
        let mut from = 0;
        let missing = p.count_missing(hashes, |upto| {
            if let Backing::Mmap(m) = p.backing() {
                release_mapped(m, from, upto - from);
            }
            from = upto;
        });
        hashes.clear();
        missing
    };
    verify_fst(map.map.as_fst().as_inner())?;
    release();
    let walk = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut stream = map.map.stream();
        let (mut keys, mut stray, mut uncovered) = (0u64, 0u32, 0u64);
        let mut hashes = Vec::new();
        while let Some((k, v)) = stream.next() {
            keys += 1;
            stray |= (v as u32 | (v >> 32) as u32) & !known;
            if let Some(p) = prefilter {
                match key_anchor_hash(k) {
                    Some(h) => hashes.push(h),
                    None => uncovered += u64::from(!p.covers_key(k)),
                }
            }
            if keys % RELEASE_KEYS == 0 {
                uncovered += missing(&mut hashes);
                release();
            }
        }
        uncovered += missing(&mut hashes);
        (keys, stray, uncovered)
    }));
    release();
    let (keys, stray, uncovered) =
        walk.map_err(|_| "walking the transducer failed (damaged)".to_string())?;
    if uncovered != 0 {
        return Err(format!(
            "{PREFILTER_BIN} does not cover {uncovered} listed names: recompile the lists"
        ));
    }
    if keys != names {
        return Err(format!("{keys} names, meta.toml says {names}"));
    }
    if stray != 0 {
        return Err(format!(
            "entries carry category bits {stray:#x} that meta.toml does not define"
        ));
    }
    Ok(())
}

/// The transducer's own checksum, as `fst::raw::Fst::verify` computes it — a masked CRC-32C of
/// every byte but the last four, which hold it — a part at a time, each part's pages given
/// back once summed: `verify` reads the whole transducer in one go, so checking a new artifact
/// during a reload held all of it beside the one in force.
fn verify_fst(backing: &Backing) -> Result<(), String> {
    let bytes = backing.as_ref();
    let word = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // fst versions 1 and 2 wrote no checksum (`Fst::new` has already checked the length).
    if word(0).is_none_or(|version| version <= 2) || bytes.len() < 4 {
        return Err("fst checksum: missing (written by an fst older than 0.4)".into());
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let expected = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let mut crc = 0u32;
    for (i, part) in body.chunks(RELEASE_BYTES).enumerate() {
        crc = crc32c::crc32c_append(crc, part);
        if let Backing::Mmap(m) = backing {
            release_mapped(m, i * RELEASE_BYTES, part.len());
        }
    }
    // Snappy's mask, as fst applies it.
    let got = crc.rotate_right(15).wrapping_add(0xA282_EAD8);
    match got == expected {
        true => Ok(()),
        false => Err(format!(
            "fst checksum: expected {expected:#010x}, computed {got:#010x}"
        )),
    }
}

/// A category of the compiled lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryInfo {
    /// Manifest id, used by configuration.
    pub id: String,
    /// Human title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Bit index; the mask is `1 << bit`.
    pub bit: u8,
}

impl CategoryInfo {
    /// `1 << bit`.
    pub fn mask(&self) -> u32 {
        1u32 << self.bit
    }
}

/// Bytes behind a transducer or the prefilter: a read-only mapping or an owned buffer.
enum Backing {
    Mmap(Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    /// Gives a mapping's pages back to the page cache: they leave this process's resident
    /// memory and are mapped again, from the page cache, when a lookup next reads them. `open`
    /// reads every byte (checksum, full walk) and `save_copy` copies them all; without this
    /// the whole artifact would stay resident (174 MB at 20 M names) where lookups of a
    /// school's traffic touch a small part, and a reload would hold two whole artifacts.
    fn release(&self) {
        if let Backing::Mmap(m) = self {
            release_mapped(m, 0, usize::MAX);
        }
    }
}

/// [`Backing::release`] for `len` bytes of `map` from `offset` (clipped to the mapping).
fn release_mapped(map: &Mmap, offset: usize, len: usize) {
    let len = len.min(map.len().saturating_sub(offset));
    if len == 0 {
        return;
    }
    // SAFETY: the mapping is private and read-only (`private_map`), so none of its pages was
    // ever written: after `MADV_DONTNEED` a read maps the file's page again, the same bytes,
    // from an unlinked file nothing else can write. A failure (an offset not on a page
    // boundary) only leaves the pages resident.
    #[cfg(unix)]
    let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
}

impl AsRef<[u8]> for Backing {
    fn as_ref(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// An immutable snapshot of the compiled lists. Cheap to share behind an `Arc`; a reload opens
/// a new one and swaps it in.
pub struct Blocklists {
    blocks: SuffixMap<Backing>,
    /// In front of `blocks`: names it rules out are never walked. `None` for an artifact
    /// compiled before the prefilter existed.
    prefilter: Option<Prefilter<Backing>>,
    allow: SuffixMap<Backing>,
    illegal: Option<IllegalSet>,
    categories: Vec<CategoryInfo>,
    meta: Meta,
    dir: Option<PathBuf>,
    /// The walks of names asked again (the snapshot's own: a reload starts empty).
    memo: Memo,
}

impl fmt::Debug for Blocklists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blocklists")
            .field("dir", &self.dir)
            .field("names", &self.blocks.len())
            .field("allow_names", &self.allow.len())
            .field("prefilter", &self.prefilter.is_some())
            .field("categories", &self.categories.len())
            .field("illegal_tier", &self.illegal.is_some())
            .field("memo", &self.memo.len())
            .finish()
    }
}

impl Blocklists {
    /// No categories, no entries: every lookup misses. For a server started before the first
    /// compile.
    pub fn empty() -> Blocklists {
        Blocklists::in_memory(Vec::new(), SuffixMap::empty(), SuffixMap::empty())
    }

    /// A snapshot from in-memory maps (tests, benches). `categories` must use distinct bits.
    pub fn in_memory(
        categories: Vec<CategoryInfo>,
        blocks: SuffixMap<Vec<u8>>,
        allow: SuffixMap<Vec<u8>>,
    ) -> Blocklists {
        let now = crate::clock::Clock::system().unix_secs();
        let meta = Meta {
            format_version: artifact::FORMAT_VERSION,
            built_unix: now,
            built: artifact::rfc3339(now),
            hedgerow_version: env!("CARGO_PKG_VERSION").to_string(),
            names: blocks.len() as u64,
            allow_names: allow.len() as u64,
            files: Default::default(),
            categories: categories
                .iter()
                .map(|c| CategoryMeta {
                    id: c.id.clone(),
                    title: c.title.clone(),
                    uk_definition: String::new(),
                    severity: c.severity,
                    bit: c.bit,
                    entries: 0,
                    input_entries: 0,
                    duplicates: 0,
                    redundant: 0,
                    allow_entries: 0,
                    rejected_lines: 0,
                    skipped_lines: 0,
                })
                .collect(),
            sources: Vec::new(),
            illegal: None,
            forced: false,
        };
        let prefilter = {
            use fst::Streamer;
            let mut builder = PrefilterBuilder::new();
            let mut keys = blocks.map.stream();
            while let Some((key, _)) = keys.next() {
                builder.add_key(key);
            }
            Prefilter::from_bytes(Backing::Owned(builder.finish()))
                .unwrap_or_else(|_| unreachable!("the builder writes a valid prefilter"))
        };
        Blocklists {
            blocks: SuffixMap::new(into_owned(blocks.map)),
            prefilter: Some(prefilter),
            allow: SuffixMap::new(into_owned(allow.map)),
            illegal: None,
            categories,
            meta,
            dir: None,
            memo: Memo::new(PER_GENERATION),
        }
    }

    /// Adds an illegal-content tier built in memory (tests).
    pub fn with_illegal(mut self, set: IllegalSet) -> Blocklists {
        self.illegal = Some(set);
        self
    }

    /// Opens a compiled artifact folder: reads `meta.toml`, memory-maps each file, and checks
    /// every file against the SHA-256 recorded in `meta.toml` before use.
    ///
    /// `illegal_key` must be given exactly when the artifact has an illegal-content tier (a
    /// mismatch either way is an error, so a misconfiguration cannot silently drop the tier).
    pub fn open(
        dir: impl AsRef<Path>,
        illegal_key: Option<&Path>,
    ) -> Result<Blocklists, ListError> {
        let mut dir = dir.as_ref().to_path_buf();
        if !dir.join(artifact::META_TOML).exists() {
            // A crash between the two renames of a swap leaves only DIR.old.
            let old = artifact::old_path(&dir);
            if old.join(artifact::META_TOML).exists() {
                tracing::warn!(dir = %dir.display(), "artifact missing; using {}", old.display());
                dir = old;
            }
        }
        let meta = Meta::read(&dir)?;
        let load = |name: &str| -> Result<Mmap, ListError> {
            let path = dir.join(name);
            let sum = meta
                .files
                .get(name)
                .ok_or_else(|| ListError::corrupt(&path, "not listed in meta.toml"))?;
            let map = private_map(&path).map_err(|e| ListError::io(&path, e))?;
            if map.len() as u64 != sum.bytes {
                return Err(ListError::corrupt(
                    &path,
                    format!("{} bytes, meta.toml says {}", map.len(), sum.bytes),
                ));
            }
            let sha256 = super::digest::sha256_hex_chunked(&map, RELEASE_BYTES, |at, len| {
                // Hashed: give the pages back (the walk below reads what it needs again).
                release_mapped(&map, at, len)
            });
            if sha256 != sum.sha256 {
                return Err(ListError::corrupt(
                    &path,
                    "SHA-256 does not match meta.toml",
                ));
            }
            Ok(map)
        };
        let open_fst = |name: &str| -> Result<SuffixMap<Backing>, ListError> {
            let map = load(name)?;
            SuffixMap::from_bytes(Backing::Mmap(map))
                .map_err(|e| ListError::corrupt(dir.join(name), e.to_string()))
        };
        let blocks = open_fst(CATEGORIES_FST)?;
        let allow = open_fst(ALLOW_FST)?;
        let prefilter = match meta.files.contains_key(PREFILTER_BIN) {
            true => Some(
                Prefilter::from_bytes(Backing::Mmap(load(PREFILTER_BIN)?))
                    .map_err(|reason| ListError::corrupt(dir.join(PREFILTER_BIN), reason))?,
            ),
            // Compiled before the prefilter existed: every lookup walks, as it did then.
            false => None,
        };
        // The checksums say the files are what the compiler wrote, not that it wrote them
        // right (or that whoever rewrote meta.toml did): walk each transducer once, fully,
        // before it decides anything.
        let known = meta
            .categories
            .iter()
            .filter(|c| usize::from(c.bit) < MAX_CATEGORIES)
            .fold(0u32, |m, c| m | 1 << c.bit);
        check_structure(&blocks, meta.names, known, prefilter.as_ref()).map_err(|reason| {
            let file = match reason.starts_with(PREFILTER_BIN) {
                true => PREFILTER_BIN,
                false => CATEGORIES_FST,
            };
            ListError::corrupt(dir.join(file), reason)
        })?;
        check_structure(&allow, meta.allow_names, known, None)
            .map_err(|reason| ListError::corrupt(dir.join(ALLOW_FST), reason))?;
        let illegal = match (meta.files.contains_key(ILLEGAL_BIN), illegal_key) {
            (true, Some(key_path)) => {
                let key = IllegalKey::load(key_path)?;
                let bytes = load(ILLEGAL_BIN)?;
                let set = IllegalSet::from_bytes(bytes, key, &dir.join(ILLEGAL_BIN))?;
                // The layout was checked above; its count must also be the compile's
                // (meta.toml counts path-only URLs, the file distinct hosts: domains only).
                let (domains, _) = set.counts();
                if let Some(m) = meta.illegal.as_ref().filter(|m| m.domains != domains as u64) {
                    return Err(ListError::corrupt(
                        dir.join(ILLEGAL_BIN),
                        format!("{domains} domains, meta.toml says {}", m.domains),
                    ));
                }
                Some(set)
            }
            (true, None) => {
                return Err(ListError::Illegal {
                    path: dir.join(ILLEGAL_BIN),
                    reason: "the artifact has an illegal-content tier but no key file was configured: set the key path".into(),
                })
            }
            (false, Some(_)) => {
                return Err(ListError::Illegal {
                    path: dir.join(ILLEGAL_BIN),
                    reason: "a key is configured but the artifact has no illegal-content tier: compile with the illegal-content list".into(),
                })
            }
            (false, None) => None,
        };
        let mut categories = Vec::with_capacity(meta.categories.len());
        for c in &meta.categories {
            if usize::from(c.bit) >= MAX_CATEGORIES {
                return Err(ListError::corrupt(
                    dir.join(artifact::META_TOML),
                    format!("category `{}` has bit {}", c.id, c.bit),
                ));
            }
            categories.push(CategoryInfo {
                id: c.id.clone(),
                title: c.title.clone(),
                severity: c.severity,
                bit: c.bit,
            });
        }
        Ok(Blocklists {
            blocks,
            prefilter,
            allow,
            illegal,
            categories,
            meta,
            dir: Some(dir),
            memo: Memo::new(PER_GENERATION),
        })
    }

    /// Writes exactly the bytes in use (the private copies the lookups read) and their
    /// `meta.toml` to a new artifact folder `dir`, replacing it atomically. This is how the
    /// last good artifact is kept (see [`crate::lists::artifact::good_path`]).
    pub fn save_copy(&self, dir: &Path) -> Result<(), ListError> {
        let mut staging = artifact::Staging::begin(dir)?;
        // Written a few MB at a time, each part's pages given back once written: this runs
        // beside a serving snapshot, and must not make the whole artifact resident.
        let mut write = |name: &str, bytes: &[u8], backing: Option<&Backing>| {
            let path = staging.path(name);
            staging.write_file(name, |w| {
                for (i, part) in bytes.chunks(RELEASE_BYTES).enumerate() {
                    std::io::Write::write_all(w, part).map_err(|e| ListError::io(&path, e))?;
                    if let Some(Backing::Mmap(m)) = backing {
                        release_mapped(m, i * RELEASE_BYTES, part.len());
                    }
                }
                Ok(())
            })
        };
        for (name, map) in [(CATEGORIES_FST, &self.blocks), (ALLOW_FST, &self.allow)] {
            let backing = map.map.as_fst().as_inner();
            write(name, backing.as_ref(), Some(backing))?;
        }
        if let Some(prefilter) = &self.prefilter {
            write(
                PREFILTER_BIN,
                prefilter.as_bytes(),
                Some(prefilter.backing()),
            )?;
        }
        if let Some(illegal) = &self.illegal {
            write(ILLEGAL_BIN, illegal.file_bytes(), None)?;
        }
        let meta_path = staging.path(artifact::META_TOML);
        let text = toml::to_string(&self.meta).map_err(|e| ListError::Meta {
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
        File::create(&meta_path)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, text.as_bytes())?;
                f.sync_all()
            })
            .map_err(|e| ListError::io(&meta_path, e))?;
        staging.commit()
    }

    /// The categories, in bit order.
    pub fn categories(&self) -> &[CategoryInfo] {
        &self.categories
    }

    /// The mask (`1 << bit`) of the category with this id.
    pub fn category_bit(&self, id: &str) -> Option<u32> {
        self.categories
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.mask())
    }

    /// The combined mask of several category ids; an unknown id is an error listing the known
    /// ones (for configuration validation).
    pub fn mask_of<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Result<u32, ListError> {
        let mut mask = 0;
        for id in ids {
            mask |= self
                .category_bit(id)
                .ok_or_else(|| ListError::UnknownCategory {
                    id: id.to_string(),
                    known: self
                        .categories
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
        }
        Ok(mask)
    }

    /// The categories set in `bits`.
    pub fn categories_in(&self, bits: u32) -> impl Iterator<Item = &CategoryInfo> + '_ {
        self.categories.iter().filter(move |c| bits & c.mask() != 0)
    }

    /// The most specific block-list match for `name` among the categories in `mask`. Names
    /// the prefilter rules out (most names on no list) are answered without the walk; a name
    /// asked before is answered from the snapshot's memo of walks.
    #[inline]
    pub fn lookup(&self, name: &str, mask: u32) -> Option<Hit> {
        if !self.may_be_listed(name) {
            return None;
        }
        // The walk also notes the deepest hit in `mask`, for a name with more listed suffixes
        // than a memo entry holds (not kept, so that walk's answer is the answer).
        let mut walked = None;
        let walk = |f: &mut dyn FnMut(u8, u32)| {
            self.blocks.walk(name, |h| {
                if h.bits & mask != 0 {
                    walked = Some(Hit {
                        depth: h.depth,
                        bits: h.bits & mask,
                    });
                }
                f(h.depth, h.bits)
            })
        };
        match self.memo.get_or_walk(name, walk) {
            Some(hits) => hits.deepest(mask).map(|(depth, bits)| Hit { depth, bits }),
            None => walked,
        }
    }

    /// [`Blocklists::lookup`] without the memo: the walk itself (benches, and the tests that
    /// hold the memo to the walk).
    pub fn lookup_walking(&self, name: &str, mask: u32) -> Option<Hit> {
        if !self.may_be_listed(name) {
            return None;
        }
        self.blocks.deepest(name, mask)
    }

    /// Names in the memo of walks (for tests and benches).
    pub fn memo_len(&self) -> usize {
        self.memo.len()
    }

    /// Whether the prefilter lets `name` through to the walk: `false` means that no listed
    /// name is `name` or a parent of it; `true` that one may be. Always `true` without a
    /// prefilter.
    #[inline]
    pub fn may_be_listed(&self, name: &str) -> bool {
        self.prefilter.as_ref().is_none_or(|p| p.may_match(name))
    }

    /// The prefilter's distinct anchors and size in bytes, if the artifact has one.
    pub fn prefilter_size(&self) -> Option<(u64, usize)> {
        self.prefilter
            .as_ref()
            .map(|p| (p.anchors(), p.len_bytes()))
    }

    /// The most specific list-level exception (`@@` entry) for `name` in `mask`.
    #[inline]
    pub fn allow_lookup(&self, name: &str, mask: u32) -> Option<Hit> {
        if self.allow.is_empty() {
            return None;
        }
        self.allow.deepest(name, mask)
    }

    /// Whether `name` is covered by the illegal-content tier.
    #[inline]
    pub fn illegal(&self, name: &str) -> Option<IllegalHit> {
        self.illegal.as_ref().and_then(|s| s.lookup(name))
    }

    /// Whether an illegal-content tier is loaded.
    pub fn has_illegal_tier(&self) -> bool {
        self.illegal.is_some()
    }

    /// Every block-list hit for `name` (all categories), shallowest first.
    pub fn walk(&self, name: &str, f: impl FnMut(Hit)) {
        self.blocks.walk(name, f)
    }

    /// Every allow-list hit for `name`, shallowest first.
    pub fn walk_allow(&self, name: &str, f: impl FnMut(Hit)) {
        self.allow.walk(name, f)
    }

    /// Build time, counts and checksums (for metrics and `hedgerow lists status`).
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The folder this snapshot was opened from (`None` for in-memory snapshots).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Up to `count` distinct names listed in a category of `mask`, chosen by `seed` (the
    /// same seed, the same names), each accepted by `accept`; for the filtering checks. See
    /// `sample.rs` for how, and what it costs on millions of names.
    pub fn sample(
        &self,
        mask: u32,
        count: usize,
        seed: u64,
        accept: impl FnMut(&str) -> bool,
    ) -> Vec<String> {
        super::sample::sample(self.blocks.as_map(), mask, count, seed, accept)
    }

    /// The listed suffix of `name` a hit at `depth` refers to.
    pub fn matched_key(&self, name: &str, depth: u8) -> String {
        matched_suffix(name, depth)
    }

    /// [`Blocklists::matched_key`] for a key already in lower case: a slice of it.
    pub fn matched_part<'k>(&self, key: &'k str, depth: u8) -> &'k str {
        suffix_of(key, depth)
    }
}

fn into_owned(map: fst::Map<Vec<u8>>) -> fst::Map<Backing> {
    let bytes = map.into_fst().into_inner();
    // Re-wrapping bytes that were a valid map a moment ago cannot fail.
    fst::Map::new(Backing::Owned(bytes)).unwrap_or_else(|_| unreachable!("valid fst bytes"))
}

/// Builds a [`Blocklists`] in memory, category by category (tests, benches, tools).
///
/// ```
/// use hedgerow::lists::{BlocklistsBuilder, EntryKind, Severity};
/// let mut b = BlocklistsBuilder::new();
/// let games = b.category("games", "Games", Severity::Low).unwrap();
/// b.add(games, "roblox.com", EntryKind::Subtree).unwrap();
/// let lists = b.build().unwrap();
/// assert_eq!(lists.lookup("www.roblox.com", games).unwrap().depth, 2);
/// ```
#[derive(Default)]
pub struct BlocklistsBuilder {
    categories: Vec<CategoryInfo>,
    blocks: KeySet,
    allow: KeySet,
}

impl fmt::Debug for BlocklistsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlocklistsBuilder")
            .field("categories", &self.categories)
            .field("entries", &self.blocks.len())
            .finish()
    }
}

impl BlocklistsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a category and returns its mask.
    pub fn category(
        &mut self,
        id: &str,
        title: &str,
        severity: Severity,
    ) -> Result<u32, ListError> {
        if self.categories.len() >= MAX_CATEGORIES {
            return Err(ListError::Manifest {
                path: PathBuf::from("<memory>"),
                reason: format!("more than {MAX_CATEGORIES} categories"),
            });
        }
        let bit = self.categories.len() as u8;
        self.categories.push(CategoryInfo {
            id: id.to_string(),
            title: title.to_string(),
            severity,
            bit,
        });
        Ok(1 << bit)
    }

    fn push(keys: &mut KeySet, mask: u32, name: &str, kind: EntryKind) -> Result<(), ListError> {
        let norm = normalize_name(name).map_err(|r| ListError::InvalidName {
            name: name.to_string(),
            reason: r.to_string(),
        })?;
        keys.push(&norm, kind, mask)
            .map_err(|_| ListError::InvalidName {
                name: name.to_string(),
                reason: "too many names".into(),
            })
    }

    /// Adds a block entry for the categories in `mask`.
    pub fn add(&mut self, mask: u32, name: &str, kind: EntryKind) -> Result<(), ListError> {
        Self::push(&mut self.blocks, mask, name, kind)
    }

    /// Adds an exception for the categories in `mask`.
    pub fn allow(&mut self, mask: u32, name: &str, kind: EntryKind) -> Result<(), ListError> {
        Self::push(&mut self.allow, mask, name, kind)
    }

    /// Builds the snapshot.
    pub fn build(self) -> Result<Blocklists, ListError> {
        let mut stats = MergeStats::default();
        let blocks = SuffixMap::from_keys(self.blocks, &mut stats)?;
        let mut allow_stats = MergeStats::default();
        let allow = SuffixMap::from_keys(self.allow, &mut allow_stats)?;
        let mut lists = Blocklists::in_memory(self.categories, blocks, allow);
        for c in &mut lists.meta.categories {
            let s = stats.bits[usize::from(c.bit)];
            c.entries = s.kept;
            c.input_entries = s.input;
            c.duplicates = s.duplicates;
            c.redundant = s.redundant;
            c.allow_entries = allow_stats.bits[usize::from(c.bit)].kept;
        }
        Ok(lists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntryKind::*;

    #[test]
    fn the_transducer_checksum_is_the_one_fst_verifies() {
        let names: Vec<String> = (0..20_000).map(|i| format!("n{i}.example.com")).collect();
        let m = SuffixMap::from_entries(names.iter().map(|n| (n.as_str(), Subtree, 1))).unwrap();
        let mut bytes = m.as_map().as_fst().as_bytes().to_vec();
        assert!(m.as_map().as_fst().verify().is_ok());
        assert_eq!(verify_fst(&Backing::Owned(bytes.clone())), Ok(()));
        for at in [0, bytes.len() / 2, bytes.len() - 5] {
            bytes[at] ^= 0x10;
            let fst = fst::raw::Fst::new(bytes.clone());
            let err = verify_fst(&Backing::Owned(bytes.clone())).unwrap_err();
            assert!(err.starts_with("fst checksum"), "{err}");
            // fst agrees (when the damaged header still parses).
            assert!(fst.is_err() || fst.is_ok_and(|f| f.verify().is_err()));
            bytes[at] ^= 0x10;
        }
        // A checksum the file does not carry (an old fst) is refused too.
        bytes[..8].copy_from_slice(&2u64.to_le_bytes());
        assert!(verify_fst(&Backing::Owned(bytes)).is_err());
    }

    fn map(entries: &[(&str, EntryKind, u32)]) -> SuffixMap<Vec<u8>> {
        SuffixMap::from_entries(entries.iter().copied()).unwrap()
    }

    fn hits(m: &SuffixMap<Vec<u8>>, name: &str) -> Vec<(u8, u32)> {
        let mut v = Vec::new();
        m.walk(name, |h| v.push((h.depth, h.bits)));
        v
    }

    #[test]
    fn subtree_and_exact() {
        let m = map(&[
            ("example.com", Subtree, 1),
            ("www.example.com", Exact, 2),
            ("a.b.example.com", Subtree, 4),
        ]);
        assert_eq!(hits(&m, "example.com"), [(2, 1)]);
        assert_eq!(hits(&m, "x.example.com"), [(2, 1)]);
        assert_eq!(hits(&m, "www.example.com"), [(2, 1), (3, 2)]);
        // Exact bits do not apply below the exact name.
        assert_eq!(hits(&m, "x.www.example.com"), [(2, 1)]);
        assert_eq!(hits(&m, "z.a.b.example.com"), [(2, 1), (4, 4)]);
        assert_eq!(hits(&m, "com"), []);
        assert_eq!(hits(&m, "b.example.com"), [(2, 1)]);
        assert_eq!(
            m.deepest("z.a.b.example.com", 1),
            Some(Hit { depth: 2, bits: 1 })
        );
        assert_eq!(
            m.deepest("z.a.b.example.com", 7),
            Some(Hit { depth: 4, bits: 4 })
        );
        assert_eq!(
            m.deepest("www.example.com", 2),
            Some(Hit { depth: 3, bits: 2 })
        );
        assert_eq!(m.deepest("www.example.com", 8), None);
    }

    #[test]
    fn string_prefix_is_not_label_prefix() {
        let m = map(&[("example.co", Subtree, 1), ("ample.com", Subtree, 2)]);
        assert_eq!(hits(&m, "example.com"), []);
        assert_eq!(hits(&m, "www.example.com"), []);
        assert_eq!(hits(&m, "example.co"), [(2, 1)]);
        assert_eq!(hits(&m, "example.co.uk"), []);
        let m = map(&[("example.com", Subtree, 1)]);
        assert_eq!(hits(&m, "example.com.au"), []);
        assert_eq!(hits(&m, "myexample.com"), []);
        assert_eq!(hits(&m, "my-example.com"), []);
        assert_eq!(hits(&m, "example-x.com"), []);
    }

    #[test]
    fn case_and_trailing_dot_tolerated() {
        let m = map(&[("example.com", Subtree, 1)]);
        assert_eq!(hits(&m, "WwW.ExAmPlE.CoM."), [(2, 1)]);
        assert_eq!(hits(&m, ""), []);
        assert_eq!(hits(&m, "."), []);
        assert_eq!(hits(&m, "a..example.com"), [(2, 1)]);
    }

    #[test]
    fn depths_1_to_20_and_253_chars() {
        let m = map(&[("d.c.b.a", Subtree, 1), ("x.y", Subtree, 2)]);
        for n in 1..=20usize {
            let labels: Vec<String> = (0..n).map(|i| format!("l{i}")).collect();
            let name = format!("{}.d.c.b.a", labels.join("."));
            assert_eq!(hits(&m, &name), [(4, 1)], "{n} extra labels");
            assert_eq!(m.deepest(&name, 1).unwrap().depth, 4);
        }
        let single = SuffixMap::from_entries([("ab.cd", Subtree, 1)]).unwrap();
        assert_eq!(hits(&single, "cd"), []);
        // Names of exactly 253 characters: as a key and as a query under a key.
        let label63 = "a".repeat(63);
        let long = format!("{label63}.{label63}.{label63}.{}", "b".repeat(61));
        assert_eq!(long.len(), 253);
        let m = map(&[(long.as_str(), Exact, 1), (&long[64..], Subtree, 2)]);
        assert_eq!(hits(&m, &long), [(3, 2), (4, 1)]);
        assert_eq!(hits(&m, &format!("x.{long}")), []);
        // 127 one-letter labels = 253 characters.
        let many = vec!["a"; 127].join(".");
        assert_eq!(many.len(), 253);
        let m = map(&[("a.a", Subtree, 1)]);
        assert_eq!(m.deepest(&many, 1), Some(Hit { depth: 2, bits: 1 }));
    }

    #[test]
    fn matched_suffixes() {
        assert_eq!(matched_suffix("a.b.Example.com.", 2), "example.com");
        assert_eq!(matched_suffix("a.b.example.com", 4), "a.b.example.com");
        assert_eq!(matched_suffix("a.b.example.com", 9), "a.b.example.com");
        assert_eq!(matched_suffix("example.com", 1), "com");
    }

    #[test]
    fn blocklists_builder_and_masks() {
        let mut b = BlocklistsBuilder::new();
        let porn = b
            .category("pornography", "Pornography", Severity::High)
            .unwrap();
        let games = b.category("games", "Games", Severity::Low).unwrap();
        b.add(porn, "pornhub.com", Subtree).unwrap();
        b.add(games, "roblox.com", Subtree).unwrap();
        b.add(games | porn, "both.example", Subtree).unwrap();
        b.allow(games, "education.roblox.com", Subtree).unwrap();
        let l = b.build().unwrap();
        assert_eq!(l.category_bit("games"), Some(games));
        assert_eq!(l.mask_of(["games", "pornography"]).unwrap(), games | porn);
        assert!(l
            .mask_of(["nope"])
            .unwrap_err()
            .to_string()
            .contains("pornography, games"));
        assert_eq!(l.lookup("www.pornhub.com", porn).unwrap().depth, 2);
        assert_eq!(l.lookup("www.pornhub.com", games), None);
        assert_eq!(l.lookup("x.both.example", games).unwrap().bits, games);
        assert_eq!(
            l.allow_lookup("a.education.roblox.com", games)
                .unwrap()
                .depth,
            3
        );
        assert_eq!(l.allow_lookup("roblox.com", games), None);
        assert_eq!(
            l.meta().category_counts().collect::<Vec<_>>(),
            [("pornography", 2), ("games", 2)]
        );
        assert!(l.illegal("anything.example").is_none());
        let e = Blocklists::empty();
        assert_eq!(e.lookup("pornhub.com", u32::MAX), None);
        assert!(e.categories().is_empty());
    }

    #[test]
    fn snapshots_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Blocklists>();
        assert_send_sync::<SuffixMap<Vec<u8>>>();
    }

    #[test]
    fn invalid_config_names_are_errors() {
        let err = SuffixMap::from_entries([("not a name", Subtree, 1)]).unwrap_err();
        assert!(err.to_string().contains("not a name"));
    }
}
