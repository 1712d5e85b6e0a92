//! The compiled artifact folder: file names, `meta.toml`, checksums and the atomic swap.
//!
//! ```text
//! compiled/
//!   categories.fst   label-reversed name → u64 (low 32 bits subtree categories, high 32 exact)
//!   allow.fst        same keys, value = category bits an `@@` exception exempts
//!   prefilter.bin    filter over the last two/three labels of categories.fst's keys (lookups
//!                    skip the walk for names it rules out; absent in older artifacts)
//!   illegal.bin      keyed hashes only (present when an illegal-content list is configured)
//!   meta.toml        format version, build time, checksums, counts, category table
//! ```
//!
//! A compile writes a sibling `.NAME.tmp-PID` folder, fsyncs it, moves the live folder to
//! `NAME.old`, renames the new one into place and removes `NAME.old`. A crash leaves either the
//! old or the new folder complete; [`crate::lists::Blocklists::open`] also falls back to
//! `NAME.old` if it finds only that.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::digest::HashingWriter;
use super::error::ListError;
use crate::event::Severity;

/// Version of the artifact layout; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;
/// The category transducer.
pub const CATEGORIES_FST: &str = "categories.fst";
/// The allow (exception) transducer.
pub const ALLOW_FST: &str = "allow.fst";
/// The illegal-content tier.
pub const ILLEGAL_BIN: &str = "illegal.bin";
/// The prefilter over the category transducer's keys (see [`crate::lists::prefilter`]);
/// absent in artifacts compiled before it existed, which open and walk for every name.
pub const PREFILTER_BIN: &str = "prefilter.bin";
/// The metadata file.
pub const META_TOML: &str = "meta.toml";

/// Contents of `meta.toml`: what the server needs for metrics, and what `open` verifies.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Build time, seconds since the Unix epoch.
    pub built_unix: u64,
    /// Build time, RFC 3339 UTC.
    pub built: String,
    /// Version of Hedgerow that compiled it.
    pub hedgerow_version: String,
    /// Keys in `categories.fst`.
    pub names: u64,
    /// Keys in `allow.fst`.
    pub allow_names: u64,
    /// SHA-256 and size of each artifact file (not of `meta.toml` itself).
    pub files: BTreeMap<String, FileSum>,
    /// One row per category, in bit order.
    #[serde(default, rename = "category")]
    pub categories: Vec<CategoryMeta>,
    /// One row per list source that was read.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceMeta>,
    /// Counts for the illegal-content tier (never entries).
    #[serde(default)]
    pub illegal: Option<IllegalMeta>,
    /// Compiled with `--force` (see [`shrinkage`]): a server swaps to it even when it shrank. Absent in artifacts written before the guard existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
}

/// A category (or the whole list) that shrank too far between two builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shrink {
    /// The category id, or `None` for all names together.
    pub category: Option<String>,
    /// Names in the build in force.
    pub before: u64,
    /// Names in the new build.
    pub after: u64,
}

impl std::fmt::Display for Shrink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.category {
            Some(id) => format!("category `{id}`"),
            None => "all categories together".to_string(),
        };
        write!(
            f,
            "{what}: {} → {} names",
            group(self.before),
            group(self.after)
        )
    }
}

/// What shrank from `old` (the build in force) to `new` to zero or below `threshold` of its
/// size: each category that had names, and all names together. Empty when `new` may replace
/// `old`. A list that empties is far more often a broken sync, a full disk or a mistake than
/// a decision, and an empty category silently stops blocking; so it needs `--force`.
/// A category that is no longer in the manifest is not counted (removing one is an edit of
/// the manifest, and a group still naming it fails to load).
pub fn shrinkage(old: &Meta, new: &Meta, threshold: f64) -> Vec<Shrink> {
    let shrank = |before: u64, after: u64| {
        before > 0 && (after == 0 || (after as f64) < threshold * before as f64)
    };
    let mut out: Vec<Shrink> = old
        .categories
        .iter()
        .filter_map(|o| {
            let n = new.categories.iter().find(|n| n.id == o.id)?;
            shrank(o.entries, n.entries).then(|| Shrink {
                category: Some(o.id.clone()),
                before: o.entries,
                after: n.entries,
            })
        })
        .collect();
    if shrank(old.names, new.names) {
        out.push(Shrink {
            category: None,
            before: old.names,
            after: new.names,
        });
    }
    out
}

/// `DIR.good`: a copy of the last artifact the server put in force, to fall back on when the
/// artifact is damaged at start-up.
pub fn good_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_os_string();
    s.push(".good");
    PathBuf::from(s)
}

/// Checksum of one artifact file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSum {
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// A category as recorded in `meta.toml`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CategoryMeta {
    /// Manifest id.
    pub id: String,
    /// Human title.
    pub title: String,
    /// UK Safer Internet Centre wording.
    pub uk_definition: String,
    /// Severity.
    pub severity: Severity,
    /// Bit index (0..32) in the transducer values.
    pub bit: u8,
    /// Names in `categories.fst` carrying this category (after merging and pruning).
    pub entries: u64,
    /// Entries read from the sources.
    pub input_entries: u64,
    /// Entries repeated within the category.
    pub duplicates: u64,
    /// Entries dropped because a listed parent already covers them.
    pub redundant: u64,
    /// Names in `allow.fst` exempting this category.
    pub allow_entries: u64,
    /// Lines rejected across the category's sources.
    pub rejected_lines: u64,
    /// Lines skipped with a warning.
    pub skipped_lines: u64,
}

/// A source as recorded in `meta.toml`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceMeta {
    /// Category id.
    pub category: String,
    /// Path (relative to the manifest) or URL.
    pub location: String,
    /// SHA-256 of the bytes read.
    pub sha256: String,
    /// Lines read.
    pub lines: u64,
    /// Block entries read.
    pub entries: u64,
    /// Lines rejected.
    pub rejected: u64,
}

/// Illegal-content tier counts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct IllegalMeta {
    /// Lines read.
    pub lines: u64,
    /// Whole hosts/domains, enforced at DNS level.
    pub domains: u64,
    /// URLs with a path: not enforceable by DNS.
    pub path_only: u64,
    /// Unusable lines.
    pub rejected: u64,
}

impl Meta {
    /// `(category id, names)` pairs for a metrics gauge.
    pub fn category_counts(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.categories.iter().map(|c| (c.id.as_str(), c.entries))
    }

    /// Build time as a [`SystemTime`].
    pub fn built_at(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(self.built_unix)
    }

    pub(crate) fn read(dir: &Path) -> Result<Meta, ListError> {
        let path = dir.join(META_TOML);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ListError::NoArtifact {
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(ListError::io(path, e)),
        };
        // Read the version alone first so an incompatible layout gets the right message.
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let v: Version =
            toml::from_str(&text).map_err(|e| ListError::corrupt(&path, e.to_string()))?;
        if v.format_version != FORMAT_VERSION {
            return Err(ListError::Version {
                path,
                found: v.format_version,
                expected: FORMAT_VERSION,
            });
        }
        toml::from_str(&text).map_err(|e| ListError::corrupt(&path, e.to_string()))
    }
}

/// Thousands separators for counts in reports.
pub(crate) fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds since the epoch to `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339(unix: u64) -> String {
    crate::civil::format_rfc3339(crate::civil::from_unix_secs(
        i64::try_from(unix).unwrap_or(i64::MAX),
    ))
}

/// A temporary folder beside the target that becomes the target on [`Staging::commit`], and is
/// removed if dropped uncommitted.
pub(crate) struct Staging {
    tmp: PathBuf,
    target: PathBuf,
    files: BTreeMap<String, FileSum>,
    committed: bool,
}

impl Staging {
    pub fn begin(target: &Path) -> Result<Staging, ListError> {
        let name = target
            .file_name()
            .ok_or_else(|| ListError::corrupt(target, "artifact path has no folder name"))?
            .to_string_lossy()
            .into_owned();
        let parent = parent_of(target);
        fs::create_dir_all(&parent).map_err(|e| ListError::io(&parent, e))?;
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| ListError::io(&tmp, e))?;
        }
        fs::create_dir(&tmp).map_err(|e| ListError::io(&tmp, e))?;
        Ok(Staging {
            tmp,
            target: target.to_path_buf(),
            files: BTreeMap::new(),
            committed: false,
        })
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.tmp.join(file)
    }

    /// Creates `file`, lets `write` fill it through a hashing buffered writer, fsyncs it and
    /// records its checksum.
    pub fn write_file(
        &mut self,
        file: &str,
        write: impl FnOnce(&mut HashingWriter<io::BufWriter<File>>) -> Result<(), ListError>,
    ) -> Result<(), ListError> {
        let path = self.path(file);
        let f = File::create(&path).map_err(|e| ListError::io(&path, e))?;
        let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, f));
        write(&mut w)?;
        let (buf, sha256, bytes) = w.finish();
        let sum = FileSum { sha256, bytes };
        let f = buf
            .into_inner()
            .map_err(|e| ListError::io(&path, e.into_error()))?;
        f.sync_all().map_err(|e| ListError::io(&path, e))?;
        self.files.insert(file.to_string(), sum);
        Ok(())
    }

    pub fn files(&self) -> &BTreeMap<String, FileSum> {
        &self.files
    }

    /// Total bytes of the files written so far.
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.bytes).sum()
    }

    /// Makes the staged folder the live one.
    pub fn commit(mut self) -> Result<(), ListError> {
        sync_dir(&self.tmp)?;
        let old = old_path(&self.target);
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| ListError::io(&old, e))?;
        }
        let had_previous = self.target.exists();
        if had_previous {
            fs::rename(&self.target, &old).map_err(|e| ListError::io(&self.target, e))?;
        }
        fs::rename(&self.tmp, &self.target).map_err(|e| ListError::io(&self.target, e))?;
        self.committed = true;
        sync_dir(&parent_of(&self.target))?;
        if had_previous {
            // Readers that mmapped the old files keep them: unlinking does not unmap.
            fs::remove_dir_all(&old).map_err(|e| ListError::io(&old, e))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// `DIR.old`, where the previous artifact waits during a swap.
pub(crate) fn old_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_os_string();
    s.push(".old");
    PathBuf::from(s)
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sync_dir(dir: &Path) -> Result<(), ListError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| ListError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(names: u64, categories: &[(&str, u64)]) -> Meta {
        Meta {
            format_version: FORMAT_VERSION,
            built_unix: 0,
            built: String::new(),
            hedgerow_version: String::new(),
            names,
            allow_names: 0,
            files: BTreeMap::new(),
            categories: categories
                .iter()
                .enumerate()
                .map(|(bit, (id, entries))| CategoryMeta {
                    id: id.to_string(),
                    title: String::new(),
                    uk_definition: String::new(),
                    severity: Severity::Low,
                    bit: bit as u8,
                    entries: *entries,
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
        }
    }

    #[test]
    fn shrinkage_rules() {
        let old = meta(1000, &[("games", 600), ("gambling", 400), ("empty", 0)]);
        let ids = |new: &Meta| -> Vec<Option<String>> {
            shrinkage(&old, new, 0.5)
                .into_iter()
                .map(|s| s.category)
                .collect()
        };
        // Growing, or shrinking to exactly half, is fine; an empty category stays allowed
        // to be empty; a category removed from the manifest is not a shrink.
        assert!(ids(&meta(
            1200,
            &[("games", 700), ("gambling", 500), ("empty", 0)]
        ))
        .is_empty());
        assert!(ids(&meta(700, &[("games", 300), ("gambling", 400)])).is_empty());
        // One category emptied: named, even though the whole barely moved.
        assert_eq!(
            ids(&meta(1000, &[("games", 1000), ("gambling", 0)])),
            [Some("gambling".to_string())]
        );
        // Below half, and the whole below half too.
        assert_eq!(
            ids(&meta(499, &[("games", 299), ("gambling", 200)])),
            [Some("games".to_string()), None]
        );
        let shrink = &shrinkage(&old, &meta(0, &[("games", 0), ("gambling", 0)]), 0.5)[0];
        assert_eq!(shrink.to_string(), "category `games`: 600 → 0 names");
        // Threshold 0: only a drop to zero counts.
        assert_eq!(
            shrinkage(&old, &meta(2, &[("games", 1), ("gambling", 1)]), 0.0).len(),
            0
        );
        assert_eq!(
            shrinkage(&old, &meta(1, &[("games", 1), ("gambling", 0)]), 0.0).len(),
            1
        );
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_785_000_000), "2026-07-25T17:20:00Z");
    }
}
