//! The illegal-content tier (IWF / CTIRU lists): licensed, confidential, URL-based.
//!
//! * Each line is a URL (scheme optional) or a host. A whole host (no path, or `/`) is enforced
//!   at DNS level for the host and everything below it ([`IllegalKind::Domain`]). A URL with a
//!   path cannot be enforced by DNS: it is counted and reported ("needs a URL-filtering proxy or
//!   a filtered upstream"), and its host is kept in a second set so the server can optionally
//!   send that exact host to a URL-filtering proxy ([`IllegalKind::PathOnly`]).
//! * Entries are stored **only** as HMAC-SHA-256 of the normalised host under a secret key that
//!   lives outside the artifact, truncated to 16 bytes, sorted, and binary-searched per ancestor
//!   of the query. Without the key the file cannot be turned back into a list (no dictionary
//!   attack on popular names either).
//! * No entry is ever printed, logged or formatted: [`IllegalHit`] displays as
//!   "illegal-content list (entry withheld)" and reports carry counts and line numbers only.
//!
//! `illegal.bin` layout (little endian):
//! `magic "HRILLEG1" | version u32 | reserved u32 | domains u64 | path_only u64 |
//!  domain depth mask u128 | path-only depth mask u128 | key check [16] | domains [16]… |
//!  path_only [16]…`. Bit `d` of a depth mask is set when some entry has `d` labels, so a
//! lookup hashes only the ancestors at those depths (usually 2–4 of them).

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, Read, Write};
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::ListError;
use super::parse::normalize_name;

const MAGIC: &[u8; 8] = b"HRILLEG1";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 8 + 8 + 16 + 16 + 16;
/// Minimum key length in bytes.
pub const MIN_KEY_BYTES: usize = 32;
/// Input to the key check: contains a NUL so it can never be a normalised host name.
const KEY_CHECK_INPUT: &[u8] = b"\0hedgerow illegal-content key check";

type Digest16 = [u8; 16];

/// A loaded HMAC key, with the keyed state precomputed once (cloned per hash).
#[derive(Clone)]
pub struct IllegalKey {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for IllegalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IllegalKey(withheld)")
    }
}

impl IllegalKey {
    /// Reads a key file: at least 32 bytes, used as is.
    pub fn load(path: &Path) -> Result<IllegalKey, ListError> {
        let bytes = fs::read(path).map_err(|e| ListError::Key {
            path: path.to_path_buf(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "file not found".into()
            } else {
                e.to_string()
            },
        })?;
        IllegalKey::from_bytes(&bytes).map_err(|reason| ListError::Key {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// A key from bytes (at least [`MIN_KEY_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<IllegalKey, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "{} bytes; at least {MIN_KEY_BYTES} are required",
                bytes.len()
            ));
        }
        let mac = Hmac::<Sha256>::new_from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(IllegalKey { mac })
    }

    fn hash(&self, data: &[u8]) -> Digest16 {
        let mut m = self.mac.clone();
        m.update(data);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
}

/// Writes 32 random bytes from `/dev/urandom` to a new file with mode 0600. Refuses to
/// overwrite an existing key (that would silently invalidate the compiled tier).
pub fn generate_key_file(path: &Path) -> Result<(), ListError> {
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| ListError::io("/dev/urandom", e))?;
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| ListError::Key {
        path: path.to_path_buf(),
        reason: if e.kind() == std::io::ErrorKind::AlreadyExists {
            "already exists; remove it first if you really want a new key (then recompile)".into()
        } else {
            e.to_string()
        },
    })?;
    f.write_all(&key)
        .and_then(|()| f.sync_all())
        .map_err(|e| ListError::io(path, e))
}

/// How an illegal-content match can be enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IllegalKind {
    /// A listed host or domain: block the name and everything below it.
    Domain,
    /// The host has listed URLs with paths: DNS cannot block only those, but the server may
    /// answer with a URL-filtering proxy's address.
    PathOnly,
}

/// A match in the illegal-content tier. Holds no name; displays without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IllegalHit {
    /// Domain or path-only.
    pub kind: IllegalKind,
}

impl fmt::Display for IllegalHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("illegal-content list (entry withheld)")
    }
}

/// Counts from importing an illegal-content list. Never holds entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IllegalStats {
    /// Lines read.
    pub lines: u64,
    /// Comments and blank lines.
    pub comments: u64,
    /// Whole-host entries (enforced by DNS), after removing duplicates.
    pub domains: u64,
    /// URLs with a path (not enforceable by DNS), counted per line.
    pub path_only_urls: u64,
    /// Distinct hosts of those URLs.
    pub path_only_hosts: u64,
    /// Unusable lines.
    pub rejected: u64,
    /// The first few rejected lines as `line N: reason` (no entry text).
    pub first_rejections: Vec<String>,
}

impl fmt::Display for IllegalStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "illegal-content list: {} lines, {} domains enforced by DNS, {} rejected",
            self.lines, self.domains, self.rejected
        )?;
        if self.path_only_urls > 0 {
            writeln!(
                f,
                "  {} URLs with a path on {} hosts are not enforceable by DNS — needs a URL-filtering proxy or a filtered upstream",
                self.path_only_urls, self.path_only_hosts
            )?;
        }
        for r in &self.first_rejections {
            writeln!(f, "  {r}")?;
        }
        Ok(())
    }
}

/// An imported list: sorted keyed hashes, ready to write as `illegal.bin`.
pub struct IllegalImport {
    domains: Vec<Digest16>,
    path_only: Vec<Digest16>,
    domain_depths: u128,
    path_depths: u128,
    key_check: Digest16,
    /// Counts.
    pub stats: IllegalStats,
}

impl fmt::Debug for IllegalImport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IllegalImport")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

enum UrlLine {
    Skip,
    Host(String, bool),
    Bad(&'static str),
}

/// Splits `[scheme://][userinfo@]host[:port][/path]` and normalises the host.
fn parse_url_line(line: &str) -> UrlLine {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return UrlLine::Skip;
    }
    let rest = match line.find("://") {
        Some(i) => &line[i + 3..],
        None => line,
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = if host.starts_with('[') {
        return UrlLine::Bad("IP address: cannot be blocked by DNS");
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let whole_host = path.is_empty() || path == "/";
    match normalize_name(host) {
        Ok(h) => UrlLine::Host(h, whole_host),
        Err(super::parse::Reason::IpAddress) => {
            UrlLine::Bad("IP address: cannot be blocked by DNS")
        }
        Err(_) => UrlLine::Bad("not a valid host name"),
    }
}

fn depth_of(name: &str) -> u32 {
    name.bytes().filter(|&b| b == b'.').count() as u32 + 1
}

/// Imports a list (one URL or host per line, `#` comments).
pub fn import_illegal<R: BufRead>(
    mut reader: R,
    key: &IllegalKey,
) -> Result<IllegalImport, ListError> {
    let mut stats = IllegalStats::default();
    let (mut domains, mut path_only) = (Vec::new(), Vec::new());
    let (mut domain_depths, mut path_depths) = (0u128, 0u128);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| ListError::io("<illegal-content list>", e))?;
        if n == 0 {
            break;
        }
        stats.lines += 1;
        let mut bytes = &buf[..];
        if stats.lines == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let parsed = match std::str::from_utf8(bytes) {
            Ok(text) => parse_url_line(text),
            Err(_) => UrlLine::Bad("not UTF-8"),
        };
        match parsed {
            UrlLine::Skip => stats.comments += 1,
            UrlLine::Host(host, true) => {
                domain_depths |= 1u128 << depth_of(&host).min(127);
                domains.push(key.hash(host.as_bytes()));
            }
            UrlLine::Host(host, false) => {
                stats.path_only_urls += 1;
                path_depths |= 1u128 << depth_of(&host).min(127);
                path_only.push(key.hash(host.as_bytes()));
            }
            UrlLine::Bad(reason) => {
                stats.rejected += 1;
                if stats.first_rejections.len() < 5 {
                    stats
                        .first_rejections
                        .push(format!("line {}: {reason}", stats.lines));
                }
            }
        }
    }
    domains.sort_unstable();
    domains.dedup();
    path_only.sort_unstable();
    path_only.dedup();
    stats.domains = domains.len() as u64;
    stats.path_only_hosts = path_only.len() as u64;
    Ok(IllegalImport {
        domains,
        path_only,
        domain_depths,
        path_depths,
        key_check: key.hash(KEY_CHECK_INPUT),
        stats,
    })
}

impl IllegalImport {
    /// Serialises to the `illegal.bin` layout.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&0u32.to_le_bytes())?;
        w.write_all(&(self.domains.len() as u64).to_le_bytes())?;
        w.write_all(&(self.path_only.len() as u64).to_le_bytes())?;
        w.write_all(&self.domain_depths.to_le_bytes())?;
        w.write_all(&self.path_depths.to_le_bytes())?;
        w.write_all(&self.key_check)?;
        for d in self.domains.iter().chain(&self.path_only) {
            w.write_all(d)?;
        }
        Ok(())
    }

    /// The serialised bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER + 16 * (self.domains.len() + self.path_only.len()));
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut v);
        v
    }
}

/// An opened `illegal.bin` with its key: answers [`IllegalSet::lookup`].
pub struct IllegalSet {
    data: Box<dyn AsRef<[u8]> + Send + Sync>,
    key: IllegalKey,
    domains: usize,
    path_only: usize,
    domain_depths: u128,
    path_depths: u128,
}

impl fmt::Debug for IllegalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IllegalSet")
            .field("domains", &self.domains)
            .field("path_only", &self.path_only)
            .finish_non_exhaustive()
    }
}

impl IllegalSet {
    /// Checks the header, sizes, order and key check; `path` is only used in errors.
    pub fn from_bytes<D>(data: D, key: IllegalKey, path: &Path) -> Result<IllegalSet, ListError>
    where
        D: AsRef<[u8]> + Send + Sync + 'static,
    {
        let bad = |reason: &str| ListError::corrupt(path, reason.to_string());
        let b = data.as_ref();
        if b.len() < HEADER || &b[..8] != MAGIC {
            return Err(bad(
                "not an illegal-content file (bad magic or truncated header)",
            ));
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        let u128_at = |o: usize| u128::from_le_bytes(b[o..o + 16].try_into().unwrap_or([0; 16]));
        if u32_at(8) != VERSION {
            return Err(bad("unknown version"));
        }
        let domains = usize::try_from(u64_at(16)).map_err(|_| bad("count too large"))?;
        let path_only = usize::try_from(u64_at(24)).map_err(|_| bad("count too large"))?;
        let expected = domains
            .checked_add(path_only)
            .and_then(|n| n.checked_mul(16))
            .and_then(|n| n.checked_add(HEADER));
        if expected != Some(b.len()) {
            return Err(bad(
                "size does not match the counts in its header (truncated?)",
            ));
        }
        if b[64..80] != key.hash(KEY_CHECK_INPUT) {
            return Err(ListError::Illegal {
                path: path.to_path_buf(),
                reason: "compiled with a different key than the one configured: use the same key file for compile and serve".into(),
            });
        }
        let set = IllegalSet {
            domain_depths: u128_at(32),
            path_depths: u128_at(48),
            data: Box::new(data),
            key,
            domains,
            path_only,
        };
        let sorted = |v: &[u8]| {
            v.chunks_exact(16)
                .zip(v.chunks_exact(16).skip(1))
                .all(|(a, b)| a < b)
        };
        if !sorted(set.domain_bytes()) || !sorted(set.path_bytes()) {
            return Err(bad("hashes out of order"));
        }
        Ok(set)
    }

    /// Builds a set in memory from an import (tests).
    pub fn from_import(import: &IllegalImport, key: IllegalKey) -> Result<IllegalSet, ListError> {
        IllegalSet::from_bytes(import.to_bytes(), key, Path::new("<memory>"))
    }

    /// `(domains, path-only hosts)` held.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.domains, self.path_only)
    }

    /// The whole file as loaded (to keep a copy of exactly what is served).
    pub(crate) fn file_bytes(&self) -> &[u8] {
        (*self.data).as_ref()
    }

    fn domain_bytes(&self) -> &[u8] {
        let b = (*self.data).as_ref();
        &b[HEADER..HEADER + 16 * self.domains]
    }

    fn path_bytes(&self) -> &[u8] {
        let b = (*self.data).as_ref();
        let start = HEADER + 16 * self.domains;
        &b[start..start + 16 * self.path_only]
    }

    fn contains(table: &[u8], h: &Digest16) -> bool {
        let n = table.len() / 16;
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match table[mid * 16..mid * 16 + 16].cmp(&h[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// Whether `name` or an ancestor is listed (Domain), or `name` itself has listed URLs
    /// (PathOnly). Domain wins.
    pub fn lookup(&self, name: &str) -> Option<IllegalHit> {
        if self.domains == 0 && self.path_only == 0 {
            return None;
        }
        let raw = name.strip_suffix('.').unwrap_or(name).as_bytes();
        if raw.is_empty() || raw.len() > 253 {
            return None;
        }
        let mut buf = [0u8; 253];
        let name = &mut buf[..raw.len()];
        name.copy_from_slice(raw);
        name.make_ascii_lowercase();
        // Walk suffixes from the shortest (depth 1 is the TLD) to the whole name.
        let mut end = name.len();
        let mut depth = 0usize;
        loop {
            let dot = name[..end].iter().rposition(|&b| b == b'.');
            let start = dot.map_or(0, |d| d + 1);
            depth += 1;
            if self.domain_depths & (1u128 << depth.min(127)) != 0
                && Self::contains(self.domain_bytes(), &self.key.hash(&name[start..]))
            {
                return Some(IllegalHit {
                    kind: IllegalKind::Domain,
                });
            }
            match dot {
                Some(d) => end = d,
                None => break,
            }
        }
        let labels = depth;
        if self.path_depths & (1u128 << labels.min(127)) != 0
            && Self::contains(self.path_bytes(), &self.key.hash(name))
        {
            return Some(IllegalHit {
                kind: IllegalKind::PathOnly,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> IllegalKey {
        IllegalKey::from_bytes(&[7u8; 32]).unwrap()
    }

    const LIST: &str = "# synthetic stand-in\n\
        http://csam-test-1.invalid/\n\
        csam-test-2.invalid\n\
        https://www.csam-test-3.invalid/some/page.html\n\
        csam-test-4.invalid:8080/?q=1\n\
        https://user@sub.csam-test-5.invalid\n\
        http://192.0.2.1/bad\n\
        \n\
        http://bad name.invalid/\n\
        CSAM-TEST-2.INVALID.\n";

    #[test]
    fn import_and_lookup() {
        let imp = import_illegal(LIST.as_bytes(), &key()).unwrap();
        let s = &imp.stats;
        assert_eq!(
            (s.lines, s.comments, s.domains, s.path_only_urls, s.rejected),
            (10, 2, 3, 2, 2)
        );
        assert_eq!(
            s.first_rejections,
            [
                "line 7: IP address: cannot be blocked by DNS",
                "line 9: not a valid host name"
            ]
        );
        let set = IllegalSet::from_import(&imp, key()).unwrap();
        let d = Some(IllegalHit {
            kind: IllegalKind::Domain,
        });
        let p = Some(IllegalHit {
            kind: IllegalKind::PathOnly,
        });
        assert_eq!(set.lookup("csam-test-1.invalid"), d);
        assert_eq!(set.lookup("a.b.csam-test-1.invalid"), d);
        assert_eq!(set.lookup("CSAM-test-2.invalid."), d);
        assert_eq!(set.lookup("www.csam-test-3.invalid"), p);
        assert_eq!(set.lookup("csam-test-3.invalid"), None);
        assert_eq!(set.lookup("x.www.csam-test-3.invalid"), None);
        assert_eq!(set.lookup("csam-test-4.invalid"), p);
        assert_eq!(set.lookup("sub.csam-test-5.invalid"), d);
        assert_eq!(set.lookup("csam-test-5.invalid"), None);
        assert_eq!(set.lookup("invalid"), None);
        assert_eq!(set.lookup("other.invalid"), None);
        let shown = IllegalHit {
            kind: IllegalKind::Domain,
        }
        .to_string();
        assert_eq!(shown, "illegal-content list (entry withheld)");
    }

    #[test]
    fn artifact_holds_no_clear_text() {
        let imp = import_illegal(LIST.as_bytes(), &key()).unwrap();
        let bytes = imp.to_bytes();
        for needle in ["csam", "invalid", "CSAM"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()));
        }
        let dbg = format!(
            "{imp:?} {:?}",
            IllegalSet::from_import(&imp, key()).unwrap()
        );
        assert!(!dbg.contains("csam"), "{dbg}");
        assert!(!imp.stats.to_string().contains("csam"));
    }

    #[test]
    fn wrong_key_and_corruption_detected() {
        let imp = import_illegal(LIST.as_bytes(), &key()).unwrap();
        let other = IllegalKey::from_bytes(&[8u8; 32]).unwrap();
        let err = IllegalSet::from_import(&imp, other)
            .unwrap_err()
            .to_string();
        assert!(err.contains("different key"), "{err}");
        let mut bytes = imp.to_bytes();
        bytes.truncate(bytes.len() - 3);
        let err = IllegalSet::from_bytes(bytes, key(), Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
        assert!(IllegalKey::from_bytes(&[1u8; 31]).is_err());
        assert_eq!(format!("{:?}", key()), "IllegalKey(withheld)");
    }

    #[test]
    fn key_file_generation() {
        let dir = std::env::temp_dir().join(format!("hedgerow-key-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("illegal.key");
        generate_key_file(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(generate_key_file(&path)
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        IllegalKey::load(&path).unwrap();
        let err = IllegalKey::load(&dir.join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not found") && err.contains("keygen"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
