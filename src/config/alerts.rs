//! `[alerts]`: instant safeguarding alerts to the Designated Safeguarding Lead.
//!
//! ```toml
//! [alerts]
//! throttle_minutes = 10
//!
//! [alerts.webhook]
//! url = "https://alerts.example.sch.uk/hedgerow"
//! secret_header = "X-Hedgerow-Secret"
//! secret_file = "/etc/hedgerow/webhook.secret"
//!
//! [alerts.email]
//! server = "smtp.example.sch.uk"
//! port = 587
//! starttls = true
//! # tls_ca = "/etc/hedgerow/mail-ca.pem"   # a private CA instead of the web roots
//! username = "hedgerow"
//! password_file = "/etc/hedgerow/smtp.password"
//! from = "Hedgerow <hedgerow@example.sch.uk>"
//! to = ["dsl@example.sch.uk"]
//! ```
//!
//! Secrets live in files (mode 0600), never in the TOML: the configuration is shown in
//! `check-config` output, bug reports and backups.

use std::{path::PathBuf, time::Duration};

use lettre::message::Mailbox;
use serde::Deserialize;
use toml::Spanned;

use super::{identity::Invalid, ConfigError};
use crate::schedule::TimeZone;

/// `[alerts]` exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAlerts {
    throttle_minutes: u64,
    webhook: Option<RawWebhook>,
    email: Option<RawEmail>,
}

impl Default for RawAlerts {
    fn default() -> Self {
        Self {
            throttle_minutes: 10,
            webhook: None,
            email: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Spanned<String>,
    #[serde(default)]
    secret_header: Option<Spanned<String>>,
    #[serde(default)]
    secret_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    server: Spanned<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default = "yes")]
    starttls: bool,
    #[serde(default)]
    tls_ca: Option<Spanned<PathBuf>>,
    #[serde(default)]
    username: Option<Spanned<String>>,
    #[serde(default)]
    password_file: Option<Spanned<PathBuf>>,
    from: Spanned<String>,
    to: Spanned<Vec<String>>,
}

fn yes() -> bool {
    true
}

/// The webhook channel: a JSON `POST` to `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `http://` or `https://` address.
    pub url: String,
    /// A header carrying a shared secret, and the file its value is read from.
    pub secret: Option<(String, PathBuf)>,
}

/// The email channel: SMTP to a relay or the school's mail server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// Host name or address of the SMTP server.
    pub server: String,
    /// Port (default 587 with STARTTLS, 25 without).
    pub port: u16,
    /// `true`: STARTTLS is required before anything is sent; `false`: plain SMTP, for a relay
    /// on the same machine or network.
    pub starttls: bool,
    /// PEM file of CA certificates trusted for STARTTLS instead of the built-in web roots (a
    /// mail server with a local authority's or the school's own CA). Checked when the
    /// configuration is read.
    pub tls_ca: Option<PathBuf>,
    /// User name and the file holding the password, when the server wants authentication.
    pub credentials: Option<(String, PathBuf)>,
    /// The sender.
    pub from: Mailbox,
    /// The recipients (at least one).
    pub to: Vec<Mailbox>,
}

/// Validated `[alerts]`. Alerts are on when at least one channel is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// At most one alert per device in this window; zero sends every alert.
    pub throttle: Duration,
    /// The webhook channel, if configured.
    pub webhook: Option<WebhookConfig>,
    /// The email channel, if configured.
    pub email: Option<EmailConfig>,
    /// Tries per delivery before it is given up (not in the file: a fixed policy).
    pub tries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
    /// The school's zone (from `server.timezone`), for the times written in alerts.
    pub timezone: TimeZone,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            throttle: Duration::from_secs(600),
            webhook: None,
            email: None,
            tries: 4,
            retry_backoff: Duration::from_secs(2),
            timezone: TimeZone::default(),
        }
    }
}

impl AlertsConfig {
    /// Whether any channel is configured.
    pub fn enabled(&self) -> bool {
        self.webhook.is_some() || self.email.is_some()
    }
}

/// Checks that a secret file can be read and is not empty, so a typo shows at start-up with
/// its line rather than as failed alerts later. The value itself is dropped here.
fn check_secret(
    path: &Spanned<PathBuf>,
    key: &str,
    invalid: Invalid<'_>,
) -> Result<PathBuf, ConfigError> {
    let p = path.get_ref();
    match std::fs::read_to_string(p) {
        Ok(s) if !s.trim().is_empty() => Ok(p.clone()),
        Ok(_) => Err(invalid(
            path.span(),
            key,
            format!("`{}` is empty", p.display()),
        )),
        Err(e) => Err(invalid(
            path.span(),
            key,
            format!("cannot read `{}`: {e}", p.display()),
        )),
    }
}

/// Whether `name` is a valid HTTP header name (an RFC 9110 token).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl RawAlerts {
    pub(super) fn validate(
        self,
        timezone: TimeZone,
        invalid: Invalid<'_>,
    ) -> Result<AlertsConfig, ConfigError> {
        let webhook = match self.webhook {
            None => None,
            Some(w) => {
                let url = w.url.get_ref().trim();
                if !(url.starts_with("http://") || url.starts_with("https://"))
                    || url.contains(char::is_whitespace)
                {
                    return Err(invalid(
                        w.url.span(),
                        "alerts.webhook.url",
                        format!("`{url}`: use an http:// or https:// address"),
                    ));
                }
                let secret = match (&w.secret_header, &w.secret_file) {
                    (None, None) => None,
                    (Some(h), Some(f)) => {
                        if !is_header_name(h.get_ref()) {
                            return Err(invalid(
                                h.span(),
                                "alerts.webhook.secret_header",
                                format!("`{}` is not a header name", h.get_ref()),
                            ));
                        }
                        let file = check_secret(f, "alerts.webhook.secret_file", invalid)?;
                        Some((h.get_ref().clone(), file))
                    }
                    (Some(h), None) => {
                        return Err(invalid(
                            h.span(),
                            "alerts.webhook.secret_file",
                            "`secret_header` needs `secret_file` (the secret's value is never written in this file)".into(),
                        ))
                    }
                    (None, Some(f)) => {
                        return Err(invalid(
                            f.span(),
                            "alerts.webhook.secret_header",
                            "`secret_file` needs `secret_header`, the header that carries it"
                                .into(),
                        ))
                    }
                };
                Some(WebhookConfig {
                    url: url.to_string(),
                    secret,
                })
            }
        };

        let email = match self.email {
            None => None,
            Some(e) => {
                let server = e.server.get_ref().trim();
                if server.is_empty() {
                    return Err(invalid(
                        e.server.span(),
                        "alerts.email.server",
                        "empty server name".into(),
                    ));
                }
                let mailbox = |text: &str, span: std::ops::Range<usize>, key: &str| {
                    text.parse::<Mailbox>().map_err(|err| {
                        invalid(
                            span,
                            key,
                            format!("`{text}` is not an email address ({err})"),
                        )
                    })
                };
                let from = mailbox(e.from.get_ref(), e.from.span(), "alerts.email.from")?;
                let to =
                    e.to.get_ref()
                        .iter()
                        .map(|t| mailbox(t, e.to.span(), "alerts.email.to"))
                        .collect::<Result<Vec<_>, _>>()?;
                if to.is_empty() {
                    return Err(invalid(
                        e.to.span(),
                        "alerts.email.to",
                        "at least one recipient is needed".into(),
                    ));
                }
                let credentials = match (&e.username, &e.password_file) {
                    (None, None) => None,
                    (Some(u), Some(p)) => Some((
                        u.get_ref().clone(),
                        check_secret(p, "alerts.email.password_file", invalid)?,
                    )),
                    (Some(u), None) => {
                        return Err(invalid(
                            u.span(),
                            "alerts.email.password_file",
                            "`username` needs `password_file`".into(),
                        ))
                    }
                    (None, Some(p)) => {
                        return Err(invalid(
                            p.span(),
                            "alerts.email.username",
                            "`password_file` needs `username`".into(),
                        ))
                    }
                };
                let tls_ca = match &e.tls_ca {
                    None => None,
                    Some(_) if !e.starttls => {
                        return Err(invalid(
                            e.tls_ca.as_ref().map_or(0..0, |c| c.span()),
                            "alerts.email.tls_ca",
                            "`tls_ca` applies only with `starttls = true`".into(),
                        ))
                    }
                    Some(ca) => {
                        super::TlsRoots::read(ca.get_ref())
                            .map_err(|r| invalid(ca.span(), "alerts.email.tls_ca", r))?;
                        Some(ca.get_ref().clone())
                    }
                };
                Some(EmailConfig {
                    server: server.to_string(),
                    tls_ca,
                    port: e.port.unwrap_or(if e.starttls { 587 } else { 25 }),
                    starttls: e.starttls,
                    credentials,
                    from,
                    to,
                })
            }
        };

        Ok(AlertsConfig {
            throttle: Duration::from_secs(self.throttle_minutes.saturating_mul(60)),
            webhook,
            email,
            timezone,
            ..AlertsConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn channels_defaults_and_errors() {
        let dir =
            std::env::temp_dir().join(format!("hedgerow-alerts-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("webhook.secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let text = format!(
            "[alerts]\n[alerts.webhook]\nurl = \"https://dsl.example/hook\"\nsecret_header = \"X-Hedgerow-Secret\"\nsecret_file = \"{}\"\n[alerts.email]\nserver = \"127.0.0.1\"\nstarttls = false\nfrom = \"Hedgerow <hedgerow@example.sch.uk>\"\nto = [\"dsl@example.sch.uk\"]\n",
            secret.display()
        );
        let c = Config::from_toml_str(&text, "s.toml").unwrap();
        let a = &c.alerts;
        assert!(a.enabled());
        assert_eq!(a.throttle, std::time::Duration::from_secs(600));
        assert_eq!(a.email.as_ref().unwrap().port, 25);
        assert_eq!(
            a.webhook.as_ref().unwrap().secret.as_ref().unwrap().0,
            "X-Hedgerow-Secret"
        );
        assert!(!Config::from_toml_str("", "s.toml")
            .unwrap()
            .alerts
            .enabled());

        let missing = "[alerts.webhook]\nurl = \"https://x\"\nsecret_header = \"X-S\"\nsecret_file = \"/nonexistent/secret\"\n";
        let err = Config::from_toml_str(missing, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("s.toml:4: `alerts.webhook.secret_file`: cannot read"),
            "{err}"
        );

        let bad_to =
            "[alerts.email]\nserver = \"x\"\nfrom = \"a@b.uk\"\nto = [\"not an address\"]\n";
        let err = Config::from_toml_str(bad_to, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.toml:4: `alerts.email.to`"), "{err}");

        let inline_secret = "[alerts.webhook]\nurl = \"https://x\"\nsecret = \"oops\"\n";
        let err = Config::from_toml_str(inline_secret, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("secret"), "{err}");

        let ca_without_tls = "[alerts.email]\nserver = \"x\"\nstarttls = false\ntls_ca = \"/x.pem\"\nfrom = \"a@b.uk\"\nto = [\"c@b.uk\"]\n";
        let err = Config::from_toml_str(ca_without_tls, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("s.toml:4: `alerts.email.tls_ca`: `tls_ca` applies only"),
            "{err}"
        );
        let missing_ca = "[alerts.email]\nserver = \"x\"\ntls_ca = \"/nonexistent/ca.pem\"\nfrom = \"a@b.uk\"\nto = [\"c@b.uk\"]\n";
        let err = Config::from_toml_str(missing_ca, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("s.toml:3: `alerts.email.tls_ca`: cannot read"),
            "{err}"
        );

        let bad_url = "[alerts.webhook]\nurl = \"ftp://x\"\n";
        let err = Config::from_toml_str(bad_url, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.toml:2: `alerts.webhook.url`"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
