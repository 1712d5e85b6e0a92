//! "Why is this name blocked?" — finds the source file and line behind a match.
//!
//! The artifact stores no provenance (it would double its size for a question asked a few
//! times a day). Instead [`explain`] looks the name up, then re-reads only the sources of the
//! matched categories with the importer and reports every line that produced the matched
//! entry. Illegal-content matches are reported without any detail.

use std::fmt;
use std::fs::File;
use std::io::BufReader;

use super::digest::HashingReader;
use super::error::ListError;
use super::illegal::IllegalHit;
use super::manifest::Manifest;
use super::matcher::{matched_suffix, Blocklists, Hit};
use super::parse::{parse_reader, EntryKind, LineClass};

/// At most this many origins are quoted per matched entry.
const MAX_ORIGINS: usize = 10;

/// A list line that produced a matched entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Category id.
    pub category: String,
    /// Source path or URL as written in the manifest.
    pub source: String,
    /// 1-based line number.
    pub line: u64,
    /// The line as written.
    pub text: String,
    /// Subtree or exact.
    pub kind: EntryKind,
}

/// One listed suffix of the query and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExplainedHit {
    /// The hit (bits already restricted to the mask).
    pub hit: Hit,
    /// The listed suffix, e.g. `example.com` for `ads.example.com`.
    pub matched: String,
    /// Ids of the categories in `hit.bits`.
    pub categories: Vec<String>,
    /// Lines that list `matched`; empty if the sources changed since the compile.
    pub origins: Vec<Origin>,
}

/// The answer to "why": every listed suffix in the mask, deepest (decisive) first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The query as asked.
    pub name: String,
    /// The illegal-content tier matched (no further detail is ever given).
    pub illegal: Option<IllegalHit>,
    /// Block-list hits within the mask, deepest first.
    pub blocks: Vec<ExplainedHit>,
    /// List-level exceptions (`@@` entries) within the mask, deepest first.
    pub exceptions: Vec<ExplainedHit>,
    /// Sources whose content changed since the artifact was compiled (line numbers may be off).
    pub stale_sources: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(hit) = &self.illegal {
            // Nothing about which suffix or entry matched: the list is confidential.
            return writeln!(f, "{}: blocked by the {hit}", self.name);
        }
        if self.blocks.is_empty() && self.exceptions.is_empty() {
            return writeln!(f, "{}: not listed in the selected categories", self.name);
        }
        for (label, hits) in [("listed", &self.blocks), ("exception", &self.exceptions)] {
            for (i, h) in hits.iter().enumerate() {
                let decisive = if i == 0 { "" } else { " (less specific)" };
                writeln!(
                    f,
                    "{}: {label} as `{}` in {}{decisive}",
                    self.name,
                    h.matched,
                    h.categories.join(", ")
                )?;
                for o in &h.origins {
                    writeln!(f, "    {}:{}: {}", o.source, o.line, o.text.trim())?;
                }
                if h.origins.is_empty() {
                    writeln!(
                        f,
                        "    (no source line found: recompile, the sources changed)"
                    )?;
                }
            }
        }
        for s in &self.stale_sources {
            writeln!(f, "note: {s} changed since the lists were compiled")?;
        }
        Ok(())
    }
}

/// Explains how `name` matches `lists` within the categories in `mask`, quoting the source
/// lines from `manifest` (which must be the manifest the artifact was compiled from).
pub fn explain(
    lists: &Blocklists,
    manifest: &Manifest,
    name: &str,
    mask: u32,
) -> Result<Explanation, ListError> {
    let mut exp = Explanation {
        name: name.to_string(),
        illegal: lists.illegal(name),
        blocks: Vec::new(),
        exceptions: Vec::new(),
        stale_sources: Vec::new(),
    };
    if exp.illegal.is_some() {
        return Ok(exp);
    }
    let mut block_hits = Vec::new();
    lists.walk(name, |h| block_hits.push(h));
    let mut allow_hits = Vec::new();
    lists.walk_allow(name, |h| allow_hits.push(h));
    for (hits, allow) in [(block_hits, false), (allow_hits, true)] {
        for h in hits.into_iter().rev() {
            let bits = h.bits & mask;
            if bits == 0 {
                continue;
            }
            let hit = Hit {
                depth: h.depth,
                bits,
            };
            let matched = matched_suffix(name, h.depth);
            let categories: Vec<String> = lists.categories_in(bits).map(|c| c.id.clone()).collect();
            let origins = find_origins(
                lists,
                manifest,
                &categories,
                &matched,
                allow,
                &mut exp.stale_sources,
            )?;
            let explained = ExplainedHit {
                hit,
                matched,
                categories,
                origins,
            };
            if allow {
                exp.exceptions.push(explained);
            } else {
                exp.blocks.push(explained);
            }
        }
    }
    exp.stale_sources.sort();
    exp.stale_sources.dedup();
    Ok(exp)
}

fn find_origins(
    lists: &Blocklists,
    manifest: &Manifest,
    categories: &[String],
    matched: &str,
    allow: bool,
    stale: &mut Vec<String>,
) -> Result<Vec<Origin>, ListError> {
    let mut origins = Vec::new();
    for id in categories {
        let Some(cat) = manifest.category(id) else {
            continue;
        };
        for src in &cat.sources {
            let path = manifest.source_file(cat, src);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    stale.push(src.location());
                    continue;
                }
                Err(e) => return Err(ListError::io(&path, e)),
            };
            let location = src.location();
            let mut hashing = HashingReader::new(file);
            parse_reader(BufReader::new(&mut hashing), src.format, |line| {
                let wanted = if allow {
                    LineClass::Allow
                } else {
                    LineClass::Entry
                };
                if line.class != wanted || origins.len() >= MAX_ORIGINS {
                    return;
                }
                for e in line.entries() {
                    if e.name == matched {
                        origins.push(Origin {
                            category: id.clone(),
                            source: location.clone(),
                            line: line.number,
                            text: line.text.to_string(),
                            kind: e.kind,
                        });
                        break;
                    }
                }
            })
            .map_err(|e| ListError::io(&path, e))?;
            let sum = hashing.hex();
            let recorded = lists
                .meta()
                .sources
                .iter()
                .find(|s| s.category == *id && s.location == location);
            if recorded.is_some_and(|r| r.sha256 != sum) {
                stale.push(location);
            }
        }
    }
    Ok(origins)
}
