//! `hedgerow lists update`: downloads the manifest's `url` sources into the cache folder.
//!
//! * Conditional requests: the `ETag` and `Last-Modified` of the last good copy are kept in
//!   `NAME.http` beside the cached `NAME.list` and sent back as `If-None-Match` /
//!   `If-Modified-Since`; a `304` costs nothing.
//! * The last good copy is kept when a download fails, or when the new copy has fewer than
//!   `shrink_threshold` × the old copy's non-blank lines (a truncated transfer, an error page
//!   served with `200`, an upstream accident). A school would rather filter with yesterday's list
//!   than with half of today's.
//! * `https://` only (plain `http://` is accepted for loopback test servers), no downgrade on
//!   redirect. Downloads go to `NAME.part`, are fsynced, then renamed over the old copy.
//!
//! Compiling is a separate step ([`crate::lists::compile()`]), so a caller can update, compile,
//! and only then swap the lists in.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ListError;
use super::manifest::{check_url, Manifest};

/// What to update and how cautiously.
#[derive(Clone, Debug)]
pub struct UpdateOptions {
    /// The manifest; its `cache_dir` receives the downloads.
    pub manifest: Manifest,
    /// Refuse a new copy with fewer than this fraction of the old copy's lines (default 0.5).
    pub shrink_threshold: f64,
    /// Per-request timeout (default 120 s).
    pub timeout: Duration,
    /// Refuse bodies larger than this (default 512 MiB).
    pub max_bytes: u64,
}

impl UpdateOptions {
    /// Defaults: threshold 0.5, timeout 120 s, 512 MiB limit.
    pub fn new(manifest: Manifest) -> UpdateOptions {
        UpdateOptions {
            manifest,
            shrink_threshold: 0.5,
            timeout: Duration::from_secs(120),
            max_bytes: 512 << 20,
        }
    }
}

/// What happened to one source.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateOutcome {
    /// A new copy replaced the cached one (or is the first copy).
    Downloaded {
        /// Body size.
        bytes: u64,
        /// Non-blank lines in the new copy.
        lines: u64,
        /// Non-blank lines in the copy it replaced.
        previous_lines: Option<u64>,
    },
    /// The server answered `304 Not Modified`.
    NotModified,
    /// The download failed or looked wrong; the last good copy stays in use.
    KeptPrevious {
        /// Why the new copy was not taken.
        reason: String,
    },
    /// The download failed and there is no earlier copy: compiling will fail until it works.
    Failed {
        /// Why.
        reason: String,
    },
}

/// One `url` source's result.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceUpdate {
    /// Category id.
    pub category: String,
    /// The URL.
    pub url: String,
    /// The cached file.
    pub path: PathBuf,
    /// What happened.
    pub outcome: UpdateOutcome,
}

/// Results for every `url` source in the manifest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdateReport {
    /// In manifest order.
    pub sources: Vec<SourceUpdate>,
}

impl UpdateReport {
    /// Whether any cached file changed (so a compile is worth running).
    pub fn changed(&self) -> bool {
        self.sources
            .iter()
            .any(|s| matches!(s.outcome, UpdateOutcome::Downloaded { .. }))
    }

    /// Sources with no usable copy at all.
    pub fn failed(&self) -> usize {
        self.sources
            .iter()
            .filter(|s| matches!(s.outcome, UpdateOutcome::Failed { .. }))
            .count()
    }
}

impl fmt::Display for UpdateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sources.is_empty() {
            return writeln!(f, "no url sources in the manifest");
        }
        for s in &self.sources {
            match &s.outcome {
                UpdateOutcome::Downloaded {
                    bytes,
                    lines,
                    previous_lines,
                } => {
                    write!(f, "updated   {} {}: {bytes} bytes, {lines} lines", s.category, s.url)?;
                    match previous_lines {
                        Some(p) => writeln!(f, " (was {p})")?,
                        None => writeln!(f, " (first copy)")?,
                    }
                }
                UpdateOutcome::NotModified => writeln!(f, "unchanged {} {}", s.category, s.url)?,
                UpdateOutcome::KeptPrevious { reason } => writeln!(
                    f,
                    "KEPT OLD  {} {}: {reason}; the last good copy stays in use",
                    s.category, s.url
                )?,
                UpdateOutcome::Failed { reason } => writeln!(
                    f,
                    "FAILED    {} {}: {reason}; no earlier copy, compile will fail until this works",
                    s.category, s.url
                )?,
            }
        }
        Ok(())
    }
}

/// Validators and size of the cached copy, stored as `NAME.http`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct CacheMeta {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    lines: u64,
    bytes: u64,
    fetched_unix: u64,
}

fn sidecar(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(ext);
    PathBuf::from(s)
}

fn read_meta(path: &Path) -> Option<CacheMeta> {
    let text = fs::read_to_string(sidecar(path, ".http")).ok()?;
    toml::from_str(&text).ok()
}

fn write_meta(path: &Path, meta: &CacheMeta) -> Result<(), ListError> {
    let p = sidecar(path, ".http");
    let text = toml::to_string(meta).map_err(|e| ListError::Meta {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    let tmp = sidecar(path, ".http.part");
    File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, &p))
        .map_err(|e| ListError::io(&p, e))
}

/// Counts non-blank lines in text fed to it in pieces.
struct LineCounter {
    lines: u64,
    /// Whether the current line has nothing but whitespace so far.
    blank: bool,
}

impl LineCounter {
    fn new() -> LineCounter {
        LineCounter {
            lines: 0,
            blank: true,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.lines += u64::from(!self.blank);
                self.blank = true;
            } else if !b.is_ascii_whitespace() {
                self.blank = false;
            }
        }
    }

    fn finish(self) -> u64 {
        self.lines + u64::from(!self.blank)
    }
}

/// Non-blank lines in a reader.
fn count_lines(mut r: impl Read) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 << 10];
    let mut counter = LineCounter::new();
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(counter.finish());
        }
        counter.feed(&buf[..n]);
    }
}

/// Downloads every `url` source of the manifest into its cache folder.
///
/// Only local problems (the cache folder cannot be created or written) are errors; a failed
/// or suspicious download is reported per source in the [`UpdateReport`].
pub fn update(opts: &UpdateOptions) -> Result<UpdateReport, ListError> {
    let manifest = &opts.manifest;
    fs::create_dir_all(&manifest.cache_dir).map_err(|e| ListError::io(&manifest.cache_dir, e))?;
    let user_agent = concat!("hedgerow/", env!("CARGO_PKG_VERSION"), " (lists update)");
    let agent = |https_only: bool| {
        ureq::AgentBuilder::new()
            .timeout(opts.timeout)
            .user_agent(user_agent)
            .https_only(https_only)
            .build()
    };
    let (secure, loopback) = (agent(true), agent(false));
    let mut report = UpdateReport::default();
    for cat in &manifest.categories {
        for src in &cat.sources {
            let Some(url) = &src.url else { continue };
            let path = manifest.source_file(cat, src);
            let agent = if url.starts_with("https://") {
                &secure
            } else {
                &loopback
            };
            let outcome = fetch_one(agent, url, &path, opts)?;
            report.sources.push(SourceUpdate {
                category: cat.id.clone(),
                url: url.clone(),
                path,
                outcome,
            });
        }
    }
    Ok(report)
}

fn fetch_one(
    agent: &ureq::Agent,
    url: &str,
    path: &Path,
    opts: &UpdateOptions,
) -> Result<UpdateOutcome, ListError> {
    let have_copy = path.is_file();
    let fail = |reason: String| {
        Ok(if have_copy {
            UpdateOutcome::KeptPrevious { reason }
        } else {
            UpdateOutcome::Failed { reason }
        })
    };
    if let Err(reason) = check_url(url) {
        return fail(reason.to_string());
    }
    let old = if have_copy {
        // A copy without a sidecar (copied in by hand) still counts as the last good copy.
        Some(read_meta(path).unwrap_or_else(|| CacheMeta {
            url: url.to_string(),
            lines: File::open(path).and_then(count_lines).unwrap_or(0),
            ..CacheMeta::default()
        }))
    } else {
        None
    };

    let mut req = agent.get(url);
    if let Some(m) = old.as_ref().filter(|m| m.url == url) {
        if let Some(etag) = &m.etag {
            req = req.set("If-None-Match", etag);
        }
        if let Some(lm) = &m.last_modified {
            req = req.set("If-Modified-Since", lm);
        }
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            return fail(format!("HTTP {code} {}", r.status_text()));
        }
        Err(e) => return fail(e.to_string()),
    };
    if resp.status() == 304 {
        if let Some(mut m) = old {
            m.fetched_unix = crate::clock::Clock::system().unix_secs();
            write_meta(path, &m)?;
            return Ok(UpdateOutcome::NotModified);
        }
        return fail("HTTP 304 without a cached copy".into());
    }
    if resp.status() != 200 {
        return fail(format!("HTTP {} {}", resp.status(), resp.status_text()));
    }
    let etag = resp.header("ETag").map(str::to_string);
    let last_modified = resp.header("Last-Modified").map(str::to_string);

    let part = sidecar(path, ".part");
    let (bytes, lines) = match save_body(resp.into_reader(), &part, opts.max_bytes) {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_file(&part);
            return fail(format!("download interrupted: {e}"));
        }
    };
    if let Some(o) = &old {
        let floor = o.lines as f64 * opts.shrink_threshold;
        if (lines as f64) < floor {
            let _ = fs::remove_file(&part);
            return fail(format!(
                "new copy has {lines} lines, the last good copy {} (below the shrink threshold {})",
                o.lines, opts.shrink_threshold
            ));
        }
    }
    fs::rename(&part, path).map_err(|e| ListError::io(path, e))?;
    write_meta(
        path,
        &CacheMeta {
            url: url.to_string(),
            etag,
            last_modified,
            lines,
            bytes,
            fetched_unix: crate::clock::Clock::system().unix_secs(),
        },
    )?;
    Ok(UpdateOutcome::Downloaded {
        bytes,
        lines,
        previous_lines: old.map(|o| o.lines),
    })
}

/// Streams the body to `part`, counting bytes and non-blank lines; fsyncs.
fn save_body(body: impl Read, part: &Path, max: u64) -> io::Result<(u64, u64)> {
    let mut body = body.take(max + 1);
    let mut f = File::create(part)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut bytes = 0u64;
    let mut lines = LineCounter::new();
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        if bytes > max {
            return Err(io::Error::other(format!("larger than {max} bytes")));
        }
        lines.feed(&buf[..n]);
        f.write_all(&buf[..n])?;
    }
    f.sync_all()?;
    Ok((bytes, lines.finish()))
}

/// The file, in the download folder, where `hedgerow lists update` records how its last run
/// went (the dashboard's policy page reads it). Not in the artifact folder: every compile
/// replaces that folder whole.
pub const LAST_UPDATE: &str = "last-update.toml";

/// What happened to one source at the last update, as recorded.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceResult {
    /// A new copy was downloaded.
    Downloaded,
    /// The server said the copy held is current.
    NotModified,
    /// The download failed or looked wrong; the last good copy stays in use.
    KeptPrevious,
    /// The download failed and there is no copy at all.
    Failed,
}

impl SourceResult {
    /// The source is in a usable state.
    pub fn ok(self) -> bool {
        matches!(self, SourceResult::Downloaded | SourceResult::NotModified)
    }
}

/// One source's result at the last update.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceStatus {
    /// Category id.
    pub category: String,
    /// The URL (the source's location in the compiled lists' metadata).
    pub url: String,
    /// What happened.
    pub result: SourceResult,
    /// In plain words ("a new copy, 1,204 lines (was 1,180)", "HTTP 500 …").
    pub detail: String,
}

/// How the last `hedgerow lists update` went: each download, and the compile after them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastUpdate {
    /// When it finished, seconds since the Unix epoch.
    pub finished_unix: u64,
    /// Each `url` source, in manifest order.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceStatus>,
    /// Why the run failed before or while compiling (the lists in force did not change);
    /// `None` when the new lists were compiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LastUpdate {
    /// The record of a run: `report` (none when the downloads could not start) and how the
    /// compile after it went.
    pub fn new(
        finished: std::time::SystemTime,
        report: Option<&UpdateReport>,
        error: Option<String>,
    ) -> LastUpdate {
        let sources = report
            .map(|r| {
                r.sources
                    .iter()
                    .map(|s| {
                        let (result, detail) = match &s.outcome {
                            UpdateOutcome::Downloaded {
                                lines,
                                previous_lines,
                                ..
                            } => (
                                SourceResult::Downloaded,
                                match previous_lines {
                                    Some(p) => format!(
                                        "a new copy, {} lines (was {})",
                                        super::artifact::group(*lines),
                                        super::artifact::group(*p)
                                    ),
                                    None => format!(
                                        "the first copy, {} lines",
                                        super::artifact::group(*lines)
                                    ),
                                },
                            ),
                            UpdateOutcome::NotModified => (
                                SourceResult::NotModified,
                                "unchanged since the last download".into(),
                            ),
                            UpdateOutcome::KeptPrevious { reason } => (
                                SourceResult::KeptPrevious,
                                format!("{reason}; the last good copy stays in use"),
                            ),
                            UpdateOutcome::Failed { reason } => (
                                SourceResult::Failed,
                                format!("{reason}; there is no earlier copy"),
                            ),
                        };
                        SourceStatus {
                            category: s.category.clone(),
                            url: s.url.clone(),
                            result,
                            detail,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        LastUpdate {
            finished_unix: finished
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            sources,
            error,
        }
    }

    /// Every download worked (or was not needed) and the lists were compiled.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.sources.iter().all(|s| s.result.ok())
    }

    /// When it finished.
    pub fn finished(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(self.finished_unix)
    }

    /// The run in one line of plain words.
    pub fn summary(&self) -> String {
        let count = |r: SourceResult| self.sources.iter().filter(|s| s.result == r).count();
        let mut parts = Vec::new();
        for (r, words) in [
            (SourceResult::Downloaded, "downloaded"),
            (SourceResult::NotModified, "unchanged"),
            (SourceResult::KeptPrevious, "failed (last good copy kept)"),
            (SourceResult::Failed, "failed (no copy at all)"),
        ] {
            let n = count(r);
            if n > 0 {
                parts.push(format!("{n} {words}"));
            }
        }
        let sources = if parts.is_empty() {
            "no downloaded sources".to_string()
        } else {
            format!("sources: {}", parts.join(", "))
        };
        match &self.error {
            None => format!("{sources}; the lists were compiled"),
            Some(why) => format!("{sources}; the lists in force did not change: {why}"),
        }
    }

    /// Writes the record to `dir` (the download folder), replacing the last one.
    pub fn write(&self, dir: &Path) -> Result<(), ListError> {
        let path = dir.join(LAST_UPDATE);
        let text = toml::to_string(self).map_err(|e| ListError::Meta {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        fs::create_dir_all(dir).map_err(|e| ListError::io(dir, e))?;
        let tmp = dir.join(format!("{LAST_UPDATE}.part"));
        File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| ListError::io(&path, e))
    }

    /// The record in `dir`, if there is a readable one (none before the first update).
    pub fn read(dir: &Path) -> Option<LastUpdate> {
        toml::from_str(&fs::read_to_string(dir.join(LAST_UPDATE)).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_update_is_recorded_and_read_back() {
        let dir = std::env::temp_dir().join(format!("hedgerow-last-update-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(LastUpdate::read(&dir), None);
        let report = UpdateReport {
            sources: vec![
                SourceUpdate {
                    category: "gambling".into(),
                    url: "https://lists.example/gambling.txt".into(),
                    path: dir.join("g.list"),
                    outcome: UpdateOutcome::NotModified,
                },
                SourceUpdate {
                    category: "games".into(),
                    url: "https://lists.example/games.txt".into(),
                    path: dir.join("h.list"),
                    outcome: UpdateOutcome::KeptPrevious {
                        reason: "HTTP 500 Internal Server Error".into(),
                    },
                },
            ],
        };
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let record = LastUpdate::new(at, Some(&report), None);
        record.write(&dir).unwrap();
        let read = LastUpdate::read(&dir).unwrap();
        assert_eq!(read, record);
        assert_eq!(read.finished(), at);
        assert!(!read.ok(), "a source kept its old copy");
        assert_eq!(read.sources[1].result, SourceResult::KeptPrevious);
        assert!(read.sources[1].detail.contains("HTTP 500"));
        assert_eq!(
            read.summary(),
            "sources: 1 unchanged, 1 failed (last good copy kept); the lists were compiled"
        );
        let failed = LastUpdate::new(at, None, Some("disk full".into()));
        assert!(!failed.ok());
        assert!(failed.summary().ends_with("did not change: disk full"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn line_counting() {
        assert_eq!(count_lines(&b""[..]).unwrap(), 0);
        assert_eq!(count_lines(&b"a\n\n  \nb"[..]).unwrap(), 2);
        assert_eq!(count_lines(&b"a\r\nb\r\n"[..]).unwrap(), 2);
    }
}
