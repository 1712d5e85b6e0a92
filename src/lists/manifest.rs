//! `lists/lists.toml`: the categories a school can block and where their lists come from.
//!
//! ```toml
//! [[category]]
//! id = "gambling"
//! title = "Gambling"
//! uk_definition = "Enables gambling"
//! severity = "medium"
//!
//! [[category.source]]
//! path = "samples/gambling.txt"   # relative to the manifest's folder
//! format = "domains"              # domains | hosts | adblock | auto (default)
//!
//! [[category.source]]
//! url = "https://example.org/gambling.txt"   # fetched by `hedgerow lists update`
//! format = "auto"
//! ```
//!
//! The order of categories fixes their bit (0..32) in the compiled artifact; configuration
//! refers to categories by `id`, never by bit.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::digest::hex;
use super::error::ListError;
use super::parse::Format;

/// At most this many categories: one bit each in a `u32`.
pub const MAX_CATEGORIES: usize = 32;

pub use crate::event::Severity;

/// One `[[category]]` table.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CategoryDef {
    /// Stable identifier used by configuration (`[a-z0-9_-]`, ≤ 32 chars).
    pub id: String,
    /// Short human title.
    pub title: String,
    /// The UK Safer Internet Centre wording for the category.
    pub uk_definition: String,
    /// Severity.
    pub severity: Severity,
    /// The lists that make up the category.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceDef>,
}

/// One `[[category.source]]` table: exactly one of `path` and `url`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceDef {
    /// A file, relative to the manifest's folder.
    pub path: Option<PathBuf>,
    /// An `https://` URL (plain `http://` only for loopback hosts, for tests).
    pub url: Option<String>,
    /// Declared syntax.
    #[serde(default)]
    pub format: Format,
}

impl SourceDef {
    /// The path or URL as written in the manifest.
    pub fn location(&self) -> String {
        match (&self.path, &self.url) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(u)) => u.clone(),
            (None, None) => String::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    category: Vec<CategoryDef>,
}

/// A loaded and validated manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Its folder: `path` sources are relative to it.
    pub dir: PathBuf,
    /// Where `url` sources are downloaded (default `DIR/cache`).
    pub cache_dir: PathBuf,
    /// Categories in bit order.
    pub categories: Vec<CategoryDef>,
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: impl AsRef<Path>) -> Result<Manifest, ListError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ListError::io(path, e))?;
        Manifest::parse(&text, path)
    }

    /// Validates manifest text as if read from `path`.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Manifest, ListError> {
        let path = path.as_ref().to_path_buf();
        let bad = |reason: String| ListError::Manifest {
            path: path.clone(),
            reason,
        };
        let file: ManifestFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if file.category.len() > MAX_CATEGORIES {
            return Err(bad(format!(
                "{} categories defined; at most {MAX_CATEGORIES} are supported (merge some)",
                file.category.len()
            )));
        }
        for (i, c) in file.category.iter().enumerate() {
            if c.id.is_empty()
                || c.id.len() > 32
                || !c
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(bad(format!(
                    "category id `{}` must be 1–32 characters of a-z, 0-9, `_` or `-`",
                    c.id
                )));
            }
            if file.category[..i].iter().any(|o| o.id == c.id) {
                return Err(bad(format!("category `{}` is defined twice", c.id)));
            }
            if c.title.trim().is_empty() {
                return Err(bad(format!("category `{}` has an empty title", c.id)));
            }
            for s in &c.sources {
                match (&s.path, &s.url) {
                    (Some(_), None) => {}
                    (None, Some(url)) => check_url(url).map_err(|r| {
                        bad(format!("category `{}`: source url `{url}`: {r}", c.id))
                    })?,
                    _ => {
                        return Err(bad(format!(
                            "category `{}`: each [[category.source]] needs exactly one of `path` or `url`",
                            c.id
                        )))
                    }
                }
            }
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Manifest {
            cache_dir: dir.join("cache"),
            dir,
            path,
            categories: file.category,
        })
    }

    /// Uses `dir` for downloaded `url` sources instead of `DIR/cache`.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Manifest {
        self.cache_dir = dir.into();
        self
    }

    /// The local file a source is read from: its `path` resolved against the manifest's folder,
    /// or its cached download.
    pub fn source_file(&self, category: &CategoryDef, source: &SourceDef) -> PathBuf {
        match (&source.path, &source.url) {
            (Some(p), _) => self.dir.join(p),
            (None, Some(url)) => self.cache_dir.join(cache_file_name(&category.id, url)),
            (None, None) => self.dir.clone(),
        }
    }

    /// The category with this id.
    pub fn category(&self, id: &str) -> Option<&CategoryDef> {
        self.categories.iter().find(|c| c.id == id)
    }
}

/// File name of a cached download: `CATEGORY-HASH.list`, stable per URL.
pub fn cache_file_name(category: &str, url: &str) -> String {
    let h = Sha256::digest(url.as_bytes());
    format!("{category}-{}.list", hex(&h[..8]))
}

/// `https://` anywhere; `http://` only to loopback (tests run a server on 127.0.0.1).
pub(crate) fn check_url(url: &str) -> Result<(), &'static str> {
    if let Some(rest) = url.strip_prefix("https://") {
        return if rest.is_empty() {
            Err("no host")
        } else {
            Ok(())
        };
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let authority = rest.split('/').next().unwrap_or("");
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            authority.rsplit_once(':').map_or(authority, |(h, _)| h)
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        return if loopback {
            Ok(())
        } else {
            Err("must be https:// (plain http:// is allowed only for loopback test servers)")
        };
    }
    Err("must start with https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[category]]
id = "gambling"
title = "Gambling"
uk_definition = "Enables gambling"
severity = "medium"
[[category.source]]
path = "samples/gambling.txt"
format = "domains"
[[category.source]]
url = "https://example.org/g.txt"

[[category]]
id = "selfharm"
title = "Self-harm"
uk_definition = "Promotes or displays deliberate self harm"
severity = "high"
"#;

    #[test]
    fn loads_and_resolves() {
        let m = Manifest::parse(GOOD, "/etc/hedgerow/lists/lists.toml").unwrap();
        assert_eq!(m.categories.len(), 2);
        let c = &m.categories[0];
        assert_eq!(c.sources[1].format, Format::Auto);
        assert_eq!(
            m.source_file(c, &c.sources[0]),
            Path::new("/etc/hedgerow/lists/samples/gambling.txt")
        );
        let cached = m.source_file(c, &c.sources[1]);
        assert!(cached
            .to_string_lossy()
            .starts_with("/etc/hedgerow/lists/cache/gambling-"));
    }

    #[test]
    fn rejects_mistakes() {
        let err = |t: &str| Manifest::parse(t, "l.toml").unwrap_err().to_string();
        assert!(
            err(&GOOD.replace("severity = \"medium\"", "severity = \"severe\"")).contains("severe")
        );
        assert!(err(&GOOD.replace("id = \"selfharm\"", "id = \"gambling\"")).contains("twice"));
        assert!(err(&GOOD.replace("id = \"selfharm\"", "id = \"Self Harm\"")).contains("a-z"));
        assert!(err(&GOOD.replace("https://example.org", "http://example.org")).contains("https"));
        assert!(
            err(&GOOD.replace("format = \"domains\"", "format = \"domain\"")).contains("domain")
        );
        assert!(err(&GOOD.replace("path = ", "paht = ")).contains("paht"));
        assert!(err(&GOOD.replace(
            "url = \"https://example.org/g.txt\"",
            "url = \"https://example.org/g.txt\"\npath = \"x\""
        ))
        .contains("exactly one"));
        let many: String = (0..33)
            .map(|i| format!("[[category]]\nid = \"c{i}\"\ntitle = \"t\"\nuk_definition = \"d\"\nseverity = \"low\"\n"))
            .collect();
        assert!(err(&many).contains("at most 32"));
    }

    #[test]
    fn url_rules() {
        assert!(check_url("https://example.org/x").is_ok());
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("http://[::1]:8080/x").is_ok());
        assert!(check_url("http://localhost/x").is_ok());
        assert!(check_url("http://10.0.0.1/x").is_err());
        assert!(check_url("ftp://example.org/x").is_err());
    }
}
