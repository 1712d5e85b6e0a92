//! The compiler: manifest + list files → artifact folder (see [`crate::lists::artifact`]).
//!
//! All categories go into ONE transducer keyed by label-reversed name; the value's low 32 bits
//! are the categories whose entry covers the subtree, the high 32 bits those whose entry is for
//! the exact name only. Memory stays near 16 bytes per entry plus the key bytes: names are
//! streamed from the importer into a byte arena, sorted as bytes, merged, pruned and streamed
//! into the `fst` builder, which writes straight to disk.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::artifact::{
    self, group, CategoryMeta, IllegalMeta, Meta, SourceMeta, Staging, ALLOW_FST, CATEGORIES_FST,
    ILLEGAL_BIN, META_TOML, PREFILTER_BIN,
};
use super::digest::HashingReader;
use super::error::ListError;
use super::illegal::{import_illegal, IllegalKey, IllegalStats};
use super::keys::{KeySet, MergeStats};
use super::manifest::Manifest;
use super::parse::{parse_reader, LineClass};
use super::prefilter::PrefilterBuilder;

/// How many problem lines each category's report quotes.
const QUOTED_ISSUES: usize = 5;

/// The confidential illegal-content list and its key (both outside the artifact).
#[derive(Clone, Debug)]
pub struct IllegalSource {
    /// The list file (one URL per line).
    pub list: PathBuf,
    /// The HMAC key file (≥ 32 bytes; see [`crate::lists::generate_key_file`]).
    pub key: PathBuf,
}

/// What to compile and where.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// The loaded manifest (its `cache_dir` locates downloaded `url` sources).
    pub manifest: Manifest,
    /// The artifact folder to create or replace.
    pub out_dir: PathBuf,
    /// The illegal-content tier, if the school has one.
    pub illegal: Option<IllegalSource>,
}

/// Per-category results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CategoryReport {
    /// Category id.
    pub id: String,
    /// Bit index.
    pub bit: u8,
    /// Sources read.
    pub sources: usize,
    /// Lines read.
    pub lines: u64,
    /// Entries read.
    pub input_entries: u64,
    /// Names in the artifact carrying this category.
    pub entries: u64,
    /// Entries repeated within the category.
    pub duplicates: u64,
    /// Entries dropped because a listed parent covers them.
    pub redundant: u64,
    /// Exception names exempting this category.
    pub allow_entries: u64,
    /// Rejected lines.
    pub rejected_lines: u64,
    /// Lines skipped with a warning (rules that do not mean "block").
    pub skipped_lines: u64,
    /// Entry lines that carried a warning.
    pub warnings: u64,
    /// The first few rejected lines as `file:line: reason`.
    pub first_rejections: Vec<String>,
    /// The first few skipped or warned lines as `file:line: reason`.
    pub first_warnings: Vec<String>,
}

/// What a compile did.
#[derive(Clone, Debug)]
pub struct CompileReport {
    /// The artifact folder.
    pub out_dir: PathBuf,
    /// Per category, in bit order.
    pub categories: Vec<CategoryReport>,
    /// Keys in `categories.fst`.
    pub names: u64,
    /// Keys in `allow.fst`.
    pub allow_names: u64,
    /// Total artifact size in bytes.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Illegal-content tier counts (never entries).
    pub illegal: Option<IllegalStats>,
    /// What was written to `meta.toml`.
    pub meta: Meta,
}

impl fmt::Display for CompileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_name = if self.names > 0 {
            self.bytes as f64 / self.names as f64
        } else {
            0.0
        };
        writeln!(
            f,
            "compiled {} categories: {} names, {} exceptions into {} ({} bytes, {:.1} bytes/name) in {:.2} s",
            self.categories.len(),
            group(self.names),
            group(self.allow_names),
            self.out_dir.display(),
            group(self.bytes),
            per_name,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "{:<20} {:>3} {:>11} {:>11} {:>10} {:>10} {:>7} {:>9} {:>8}",
            "category",
            "bit",
            "entries",
            "read",
            "duplicate",
            "redundant",
            "allow",
            "rejected",
            "skipped"
        )?;
        for c in &self.categories {
            writeln!(
                f,
                "{:<20} {:>3} {:>11} {:>11} {:>10} {:>10} {:>7} {:>9} {:>8}",
                c.id,
                c.bit,
                group(c.entries),
                group(c.input_entries),
                group(c.duplicates),
                group(c.redundant),
                group(c.allow_entries),
                group(c.rejected_lines),
                group(c.skipped_lines)
            )?;
            if c.sources == 0 {
                writeln!(f, "  (no sources: this category blocks nothing yet)")?;
            }
            for r in c.first_rejections.iter().chain(&c.first_warnings) {
                writeln!(f, "  {r}")?;
            }
        }
        if let Some(ill) = &self.illegal {
            write!(f, "{ill}")?;
        }
        Ok(())
    }
}

/// Whether a compile may replace the build in force when it shrank (see
/// [`artifact::shrinkage`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShrinkGuard {
    /// `lists.shrink_threshold`: a category, or the whole, below this fraction of the build
    /// in force (or at zero) is refused.
    pub threshold: f64,
    /// `--force`: replace anyway, and mark the build as forced so servers take it too.
    pub force: bool,
}

/// Compiles every category of the manifest (and the illegal-content tier, if configured) into
/// a new artifact folder, replacing the previous one atomically. No shrink guard: see
/// [`compile_with`].
///
/// Errors only for problems that make the result untrustworthy (a missing source, an
/// unreadable file, a bad key); bad lines are counted and quoted in the report.
pub fn compile(opts: &CompileOptions) -> Result<CompileReport, ListError> {
    compile_with(opts, None)
}

/// As [`compile`]; with a `guard`, a build that shrank against the artifact in force (its
/// `meta.toml`) is refused with [`ListError::Shrunk`] and the artifact in force is kept,
/// unless the guard forces it (then the new `meta.toml` carries `forced = true`).
pub fn compile_with(
    opts: &CompileOptions,
    guard: Option<ShrinkGuard>,
) -> Result<CompileReport, ListError> {
    let started = Instant::now();
    let manifest = &opts.manifest;
    let mut blocks = KeySet::new();
    let mut allow = KeySet::new();
    let mut reports = Vec::with_capacity(manifest.categories.len());
    let mut sources = Vec::new();

    for (bit, cat) in manifest.categories.iter().enumerate() {
        let mask = 1u32 << bit;
        let mut rep = CategoryReport {
            id: cat.id.clone(),
            bit: bit as u8,
            sources: cat.sources.len(),
            ..Default::default()
        };
        for src in &cat.sources {
            let path = manifest.source_file(cat, src);
            let location = src.location();
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(match &src.url {
                        Some(url) => ListError::NotDownloaded {
                            category: cat.id.clone(),
                            url: url.clone(),
                            path,
                        },
                        None => ListError::MissingSource {
                            category: cat.id.clone(),
                            path,
                            manifest: manifest.path.clone(),
                        },
                    })
                }
                Err(e) => return Err(ListError::io(path, e)),
            };
            let mut hashing = HashingReader::new(file);
            let mut overflow = false;
            let stats = parse_reader(
                BufReader::with_capacity(1 << 20, &mut hashing),
                src.format,
                |line| {
                    let quote =
                        |issue: &dyn fmt::Display| format!("{location}:{}: {issue}", line.number);
                    match line.class {
                        LineClass::Entry | LineClass::Allow => {
                            let set = if line.is_allow() {
                                &mut allow
                            } else {
                                &mut blocks
                            };
                            for e in line.entries() {
                                overflow |= set.push(e.name, e.kind, mask).is_err();
                            }
                            if let Some(issue) = line.issue {
                                if rep.first_warnings.len() < QUOTED_ISSUES {
                                    rep.first_warnings.push(quote(&issue));
                                }
                            }
                        }
                        LineClass::Rejected => {
                            if let Some(issue) = line.issue {
                                if rep.first_rejections.len() < QUOTED_ISSUES {
                                    rep.first_rejections.push(quote(&issue));
                                }
                            }
                        }
                        LineClass::Skipped => {
                            if let Some(issue) = line.issue {
                                if rep.first_warnings.len() < QUOTED_ISSUES {
                                    rep.first_warnings.push(quote(&issue));
                                }
                            }
                        }
                        LineClass::CommentOrBlank | LineClass::Preamble => {}
                    }
                },
            )
            .map_err(|e| ListError::io(&path, e))?;
            if overflow {
                return Err(ListError::Io {
                    path,
                    source: std::io::Error::other("more than 4 GiB of names: split the lists"),
                });
            }
            rep.lines += stats.lines;
            rep.rejected_lines += stats.rejected;
            rep.skipped_lines += stats.skipped;
            rep.warnings += stats.warnings;
            sources.push(SourceMeta {
                category: cat.id.clone(),
                location,
                sha256: hashing.hex(),
                lines: stats.lines,
                entries: stats.entries,
                rejected: stats.rejected,
            });
        }
        reports.push(rep);
    }

    let mut staging = Staging::begin(&opts.out_dir)?;
    let mut stats = MergeStats::default();
    let fst_path = staging.path(CATEGORIES_FST);
    let mut prefilter = PrefilterBuilder::new();
    staging.write_file(CATEGORIES_FST, |w| {
        blocks
            .build_into(&mut *w, &mut stats, |key| prefilter.add_key(key))
            .map(drop)
            .map_err(|e| ListError::Fst {
                path: fst_path,
                source: e,
            })
    })?;
    let prefilter = prefilter.finish();
    let prefilter_path = staging.path(PREFILTER_BIN);
    staging.write_file(PREFILTER_BIN, |w| {
        w.write_all(&prefilter)
            .map_err(|e| ListError::io(&prefilter_path, e))
    })?;
    drop(prefilter);
    let mut allow_stats = MergeStats::default();
    let allow_path = staging.path(ALLOW_FST);
    staging.write_file(ALLOW_FST, |w| {
        allow
            .build_into(&mut *w, &mut allow_stats, |_| {})
            .map(drop)
            .map_err(|e| ListError::Fst {
                path: allow_path,
                source: e,
            })
    })?;

    let illegal = match &opts.illegal {
        None => None,
        Some(src) => {
            let key = IllegalKey::load(&src.key)?;
            let file = File::open(&src.list).map_err(|e| ListError::Illegal {
                path: src.list.clone(),
                reason: format!("cannot read the illegal-content list: {e}"),
            })?;
            let import = import_illegal(BufReader::new(file), &key)?;
            let bin = staging.path(ILLEGAL_BIN);
            staging.write_file(ILLEGAL_BIN, |w| {
                import.write_to(w).map_err(|e| ListError::io(&bin, e))
            })?;
            Some(import.stats)
        }
    };

    for rep in &mut reports {
        let s = stats.bits[usize::from(rep.bit)];
        rep.input_entries = s.input;
        rep.entries = s.kept;
        rep.duplicates = s.duplicates;
        rep.redundant = s.redundant;
        rep.allow_entries = allow_stats.bits[usize::from(rep.bit)].kept;
    }

    let now = crate::clock::Clock::system().unix_secs();
    let mut meta = Meta {
        format_version: artifact::FORMAT_VERSION,
        built_unix: now,
        built: artifact::rfc3339(now),
        hedgerow_version: env!("CARGO_PKG_VERSION").to_string(),
        names: stats.keys,
        allow_names: allow_stats.keys,
        files: staging.files().clone(),
        categories: manifest
            .categories
            .iter()
            .zip(&reports)
            .map(|(c, r)| CategoryMeta {
                id: c.id.clone(),
                title: c.title.clone(),
                uk_definition: c.uk_definition.clone(),
                severity: c.severity,
                bit: r.bit,
                entries: r.entries,
                input_entries: r.input_entries,
                duplicates: r.duplicates,
                redundant: r.redundant,
                allow_entries: r.allow_entries,
                rejected_lines: r.rejected_lines,
                skipped_lines: r.skipped_lines,
            })
            .collect(),
        sources,
        illegal: illegal.as_ref().map(|s| IllegalMeta {
            lines: s.lines,
            domains: s.domains,
            path_only: s.path_only_urls,
            rejected: s.rejected,
        }),
        forced: false,
    };
    if let Some(guard) = guard {
        // The builds in force: the live folder (or `.old`, if a crash left only that), and
        // the copy of the last one a server put in force (the live folder may hold a build a
        // server refused). An unreadable one (damaged, older format) is no baseline.
        let out = &opts.out_dir;
        let live = Meta::read(out).or_else(|_| Meta::read(&artifact::old_path(out)));
        let mut shrinks: Vec<String> = [live, Meta::read(&artifact::good_path(out))]
            .into_iter()
            .flatten()
            .flat_map(|in_force| artifact::shrinkage(&in_force, &meta, guard.threshold))
            .map(|s| s.to_string())
            .collect();
        shrinks.dedup();
        if !shrinks.is_empty() && !guard.force {
            return Err(ListError::Shrunk {
                dir: opts.out_dir.clone(),
                shrinks: shrinks.join("; "),
                threshold: guard.threshold,
            });
        }
        if !shrinks.is_empty() {
            tracing::warn!(shrinks = %shrinks.join("; "), "forced: replacing the lists in force with a smaller build");
        }
        // Every forced build is marked, shrunk or not: a server compares it with the lists
        // it has in force, which this compile cannot see.
        meta.forced = guard.force;
    }
    let meta_path = staging.path(META_TOML);
    let text = toml::to_string(&meta).map_err(|e| ListError::Meta {
        path: meta_path.clone(),
        reason: e.to_string(),
    })?;
    File::create(&meta_path)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| ListError::io(&meta_path, e))?;
    let bytes = staging.bytes() + text.len() as u64;
    staging.commit()?;

    Ok(CompileReport {
        out_dir: opts.out_dir.clone(),
        categories: reports,
        names: stats.keys,
        allow_names: allow_stats.keys,
        bytes,
        elapsed: started.elapsed(),
        illegal,
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(26029), "26,029");
        assert_eq!(group(1234567), "1,234,567");
    }
}
