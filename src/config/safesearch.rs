//! `[group.safesearch]`: which search engines a group gets locked to their safe modes.
//! The engines themselves (names, targets) are the SafeSearch stage's business.

use serde::Deserialize;

/// YouTube Restricted Mode for a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YouTubeMode {
    /// YouTube resolves normally.
    #[default]
    Off,
    /// Restricted Mode "moderate" (`restrictmoderate.youtube.com`).
    Moderate,
    /// Restricted Mode "strict" (`restrict.youtube.com`).
    Strict,
}

/// One group's SafeSearch settings, as written under `[group.safesearch]`.
///
/// Every key is optional and defaults to off, so a group without the section, or with only
/// `google = true`, gets exactly what it names.
///
/// ```
/// use hedgerow::config::{SafeSearchConfig, YouTubeMode};
/// let c: SafeSearchConfig = toml::from_str("google = true\nyoutube = \"strict\"").unwrap();
/// assert!(c.google && !c.bing && c.youtube == YouTubeMode::Strict);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafeSearchConfig {
    /// Google SafeSearch (`www.google.<tld>` and `google.<tld>` for every Google domain).
    pub google: bool,
    /// Bing strict SafeSearch.
    pub bing: bool,
    /// DuckDuckGo strict safe search.
    pub duckduckgo: bool,
    /// Ecosia strict safe search.
    pub ecosia: bool,
    /// Yandex family search.
    pub yandex: bool,
    /// Pixabay SafeSearch.
    pub pixabay: bool,
    /// YouTube Restricted Mode.
    pub youtube: YouTubeMode,
    /// Block search engines that offer no way to lock SafeSearch, answered like the group's
    /// policy blocks (NXDOMAIN unless it uses a block page); the group's `allow` entries
    /// still let a named engine through.
    pub block_unenforceable: bool,
}

impl SafeSearchConfig {
    /// Everything on, YouTube strict, unenforceable engines blocked: the pupils' default.
    pub fn strict() -> SafeSearchConfig {
        SafeSearchConfig {
            google: true,
            bing: true,
            duckduckgo: true,
            ecosia: true,
            yandex: true,
            pixabay: true,
            youtube: YouTubeMode::Strict,
            block_unenforceable: true,
        }
    }

    /// True when this group gets no rewrites and no blocks (the stage passes its queries
    /// straight on, without even looking the name up).
    pub fn is_off(&self) -> bool {
        *self == SafeSearchConfig::default()
    }
}
