//! `[identity]`: where to learn who a client address was (DHCP lease files, user sessions).
//!
//! ```toml
//! [identity]
//! sessions_token_file = "/etc/hedgerow/sessions.token"
//!
//! [[identity.dhcp]]
//! path = "/var/lib/misc/dnsmasq.leases"
//! format = "dnsmasq"
//! ```

use std::{ops::Range, path::PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;

/// Which DHCP server wrote a lease file. Defined here (not in `identity`) so the configuration
/// depends on nothing but leaf modules; `identity::leases` re-exports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseFormat {
    /// dnsmasq's `dnsmasq.leases`.
    Dnsmasq,
    /// ISC dhcpd's `dhcpd.leases`.
    Isc,
    /// Kea's memfile CSV (`kea-leases4.csv`).
    Kea,
}

impl LeaseFormat {
    /// The configured form.
    pub fn label(self) -> &'static str {
        match self {
            LeaseFormat::Dnsmasq => "dnsmasq",
            LeaseFormat::Isc => "isc",
            LeaseFormat::Kea => "kea",
        }
    }
}

impl std::fmt::Display for LeaseFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// `[identity]` exactly as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    #[serde(default)]
    dhcp: Vec<RawDhcp>,
    #[serde(default)]
    sessions_token_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDhcp {
    path: Spanned<PathBuf>,
    format: LeaseFormat,
}

/// One DHCP lease file to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpSource {
    /// The lease file.
    pub path: PathBuf,
    /// The server that writes it.
    pub format: LeaseFormat,
}

/// Validated `[identity]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Lease files to follow, in file order.
    pub dhcp: Vec<DhcpSource>,
    /// The file holding the bearer token login scripts use for `POST /api/v1/sessions`
    /// (`None`: the endpoint is off). Read by whoever serves the endpoint, so the token never
    /// sits in the parsed configuration.
    pub sessions_token_file: Option<PathBuf>,
}

/// Makes a [`ConfigError::Invalid`] from a value's span, its dotted key and the reason.
pub(super) type Invalid<'a> = &'a dyn Fn(Range<usize>, &str, String) -> ConfigError;

impl RawIdentity {
    pub(super) fn validate(self, invalid: Invalid<'_>) -> Result<IdentityConfig, ConfigError> {
        let mut dhcp: Vec<DhcpSource> = Vec::new();
        for d in self.dhcp {
            let path = d.path.get_ref();
            if path.as_os_str().is_empty() {
                return Err(invalid(
                    d.path.span(),
                    "identity.dhcp.path",
                    "empty path".into(),
                ));
            }
            // Two followers of one file would report every change twice.
            if dhcp.iter().any(|s| &s.path == path) {
                return Err(invalid(
                    d.path.span(),
                    "identity.dhcp.path",
                    format!("`{}` is listed twice", path.display()),
                ));
            }
            dhcp.push(DhcpSource {
                path: path.clone(),
                format: d.format,
            });
        }
        let sessions_token_file = match self.sessions_token_file {
            Some(p) if p.get_ref().as_os_str().is_empty() => {
                return Err(invalid(
                    p.span(),
                    "identity.sessions_token_file",
                    "empty path".into(),
                ))
            }
            Some(p) => Some(p.into_inner()),
            None => None,
        };
        Ok(IdentityConfig {
            dhcp,
            sessions_token_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use super::*;

    #[test]
    fn dhcp_sources_and_errors_name_line_and_key() {
        let text = "[identity]\nsessions_token_file = \"/etc/hedgerow/sessions.token\"\n\n[[identity.dhcp]]\npath = \"/var/lib/misc/dnsmasq.leases\"\nformat = \"dnsmasq\"\n\n[[identity.dhcp]]\npath = \"/var/lib/kea/kea-leases4.csv\"\nformat = \"kea\"\n";
        let c = Config::from_toml_str(text, "s.toml").unwrap();
        assert_eq!(c.identity.dhcp.len(), 2);
        assert_eq!(c.identity.dhcp[1].format, LeaseFormat::Kea);
        assert_eq!(
            c.identity.sessions_token_file.as_deref(),
            Some(std::path::Path::new("/etc/hedgerow/sessions.token"))
        );

        let bad = "[[identity.dhcp]]\npath = \"/x\"\nformat = \"windows\"\n";
        let err = Config::from_toml_str(bad, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("windows"), "{err}");

        let twice = "[[identity.dhcp]]\npath = \"/x\"\nformat = \"isc\"\n[[identity.dhcp]]\npath = \"/x\"\nformat = \"kea\"\n";
        let err = Config::from_toml_str(twice, "s.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "s.toml:5: `identity.dhcp.path`: `/x` is listed twice");

        let unknown = "[identity]\ntoken = \"secret\"\n";
        let err = Config::from_toml_str(unknown, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("token"), "{err}");

        assert_eq!(
            Config::from_toml_str("", "s.toml").unwrap().identity,
            IdentityConfig::default()
        );
    }
}
