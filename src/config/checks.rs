//! `[checks]`: the filtering checks the DfE filtering standard asks schools to make and record.
//!
//! ```toml
//! [checks]
//! every = "7d"            # "24h", "2w", or "off"; default weekly
//! allowed = ["www.bbc.co.uk", "www.gov.uk", "en.wikipedia.org"]   # must resolve for every group
//! illegal_probe = "…"     # a test entry the IWF gives its members (never shown or logged)
//! ```
//!
//! The illegal-content probe is an entry of a licensed, confidential list: it is kept in an
//! [`IllegalProbe`] whose `Debug` withholds it, error messages never quote it, and
//! `check-config` and the audit trail say only whether it is set.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{identity::Invalid, ConfigError};

/// Names every group should reach when `[checks] allowed` is not given: well-known UK
/// education and government sites, whose failure to resolve means over-blocking or a broken
/// upstream, not a site being down.
pub const DEFAULT_ALLOWED: [&str; 3] = ["www.bbc.co.uk", "www.gov.uk", "en.wikipedia.org"];

/// How often the checks run when `[checks] every` is not given.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(7 * 86_400);

/// The shortest period accepted: each run asks the upstreams a few dozen names per group.
const SHORTEST: Duration = Duration::from_secs(3600);

/// `[checks]` exactly as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawChecks {
    every: Option<Spanned<String>>,
    allowed: Option<Spanned<Vec<String>>>,
    illegal_probe: Option<Spanned<String>>,
}

/// A test entry of the illegal-content list: the host a check asks for. Its `Debug` form
/// never shows it; only [`IllegalProbe::name`] does, for the one query that asks it.
#[derive(Clone, PartialEq, Eq)]
pub struct IllegalProbe(String);

impl IllegalProbe {
    /// The normalised host name (lower case, no trailing dot): ask it, never print it.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for IllegalProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IllegalProbe(withheld)")
    }
}

/// Validated `[checks]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksConfig {
    /// How often the server runs the checks; `None`: never on its own (`every = "off"`).
    pub every: Option<Duration>,
    /// Names every group should reach (normalised).
    pub allowed: Vec<String>,
    /// A test entry of the illegal-content list, if the school has one.
    pub illegal_probe: Option<IllegalProbe>,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig {
            every: Some(DEFAULT_EVERY),
            allowed: DEFAULT_ALLOWED.iter().map(|n| n.to_string()).collect(),
            illegal_probe: None,
        }
    }
}

/// `"7d"`, `"24h"`, `"2w"` → a duration; `"off"` → `None`.
fn parse_every(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || format!("`{text}` is not a period like \"7d\", \"24h\" or \"2w\" (or \"off\")");
    let unit = text.chars().last().ok_or_else(bad)?;
    let secs = match unit {
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = text[..text.len() - 1].trim().parse().map_err(|_| bad())?;
    let every = Duration::from_secs(n.checked_mul(secs).ok_or_else(bad)?);
    if every < SHORTEST {
        return Err(format!(
            "`{text}` is too often: run the checks at most hourly (weekly is the usual)"
        ));
    }
    Ok(Some(every))
}

impl RawChecks {
    pub(super) fn validate(self, invalid: Invalid<'_>) -> Result<ChecksConfig, ConfigError> {
        let every = match &self.every {
            Some(s) => {
                parse_every(s.get_ref()).map_err(|r| invalid(s.span(), "checks.every", r))?
            }
            None => Some(DEFAULT_EVERY),
        };
        let allowed = match &self.allowed {
            Some(list) => list
                .get_ref()
                .iter()
                .map(|n| {
                    crate::names::normalise(n)
                        .map_err(|e| invalid(list.span(), "checks.allowed", format!("`{n}`: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => ChecksConfig::default().allowed,
        };
        let illegal_probe = match &self.illegal_probe {
            Some(p) => {
                // A test URL is accepted as given by the IWF: DNS can only ask its host.
                let text = p.get_ref().trim();
                let host = text
                    .split_once("://")
                    .map_or(text, |(_, rest)| rest)
                    .split(['/', '?', '#'])
                    .next()
                    .unwrap_or_default();
                let name = crate::names::normalise(host).map_err(|e| {
                    invalid(
                        p.span(),
                        "checks.illegal_probe",
                        format!("not a usable host name ({e}); the value is not shown"),
                    )
                })?;
                Some(IllegalProbe(name))
            }
            None => None,
        };
        Ok(ChecksConfig {
            every,
            allowed,
            illegal_probe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn defaults_periods_and_names() {
        let c = Config::from_toml_str("", "s.toml").unwrap();
        assert_eq!(c.checks, ChecksConfig::default());
        assert_eq!(c.checks.every, Some(Duration::from_secs(604_800)));
        assert!(c.checks.allowed.contains(&"www.gov.uk".to_string()));

        let c = Config::from_toml_str(
            "[checks]\nevery = \"off\"\nallowed = [\"WWW.Example.TEST.\"]\nillegal_probe = \"https://Secret-Test.example/some/page\"\n",
            "s.toml",
        )
        .unwrap();
        assert_eq!(c.checks.every, None);
        assert_eq!(c.checks.allowed, ["www.example.test"]);
        let probe = c.checks.illegal_probe.as_ref().unwrap();
        assert_eq!(probe.name(), "secret-test.example");
        assert!(
            !format!("{c:?}").contains("secret-test"),
            "Debug withholds it"
        );

        for (text, secs) in [("24h", 86_400), ("7d", 604_800), ("2w", 1_209_600)] {
            assert_eq!(parse_every(text), Ok(Some(Duration::from_secs(secs))));
        }
    }

    #[test]
    fn errors_name_line_and_key_and_never_quote_the_probe() {
        let err = Config::from_toml_str("[checks]\nevery = \"weekly\"\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.toml:2: `checks.every`"), "{err}");
        let err = Config::from_toml_str("[checks]\nevery = \"10m\"\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("checks.every"), "{err}");
        let err = Config::from_toml_str("[checks]\nevery = \"30h\"\nevery2 = 1\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("every2"), "{err}");
        let err = Config::from_toml_str("[checks]\n\nallowed = [\"bad..name\"]\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.toml:3: `checks.allowed`"), "{err}");
        let err = Config::from_toml_str("[checks]\nillegal_probe = \"10.9.8.7\"\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.toml:2: `checks.illegal_probe`"), "{err}");
        assert!(!err.contains("10.9.8.7"), "{err}");
    }
}
