//! `[dashboard]`: the web view for the DSL, approvers, technicians and governors, served on
//! the HTTP listener (`server.http`).
//!
//! ```toml
//! [dashboard]
//! tls_cert = "/etc/hedgerow/dashboard.crt"   # PEM chain
//! tls_key = "/etc/hedgerow/dashboard.key"    # PEM private key
//! require_totp = ["dsl", "approver"]         # roles that must use a second factor
//! session_idle_minutes = 30
//! session_max_hours = 12
//! block_page = "10.0.0.2:80"                 # the address a block answer points browsers to
//! ```

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;
use toml::Spanned;

use crate::accounts::{Role, Roles};

use super::{identity::Invalid, ConfigError};

/// `[dashboard]` exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDashboard {
    enabled: bool,
    tls_cert: Option<Spanned<PathBuf>>,
    tls_key: Option<Spanned<PathBuf>>,
    allow_plain_http: bool,
    require_totp: Vec<Spanned<String>>,
    session_idle_minutes: Spanned<u64>,
    session_max_hours: Spanned<u64>,
    school_name: String,
    block_page: Option<std::net::SocketAddr>,
}

impl Default for RawDashboard {
    fn default() -> Self {
        RawDashboard {
            enabled: true,
            tls_cert: None,
            tls_key: None,
            allow_plain_http: false,
            require_totp: Vec::new(),
            session_idle_minutes: Spanned::new(0..0, 30),
            session_max_hours: Spanned::new(0..0, 12),
            school_name: String::new(),
            block_page: None,
        }
    }
}

/// The certificate and key the dashboard serves HTTPS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Validated `[dashboard]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    /// Served on the HTTP listener (when `server.http` is set).
    pub enabled: bool,
    /// HTTPS with the school's certificate; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Logins over plain HTTP on a non-loopback listener (behind a TLS reverse proxy).
    pub allow_plain_http: bool,
    /// Roles whose users must sign in with a second factor (TOTP).
    pub require_totp: Roles,
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, however busy.
    pub session_max: Duration,
    /// Shown in page headers and reports ("Hedgerow" when empty).
    pub school_name: String,
    /// Where the block page is served (plain HTTP): set a group's `block_answer` to this
    /// address so blocked `http://` sites show it. `None`: no block page.
    pub block_page: Option<std::net::SocketAddr>,
}

impl Default for DashboardConfig {
    /// The same values as an empty `[dashboard]` section.
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            tls: None,
            allow_plain_http: false,
            require_totp: Roles::default(),
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(12 * 3600),
            school_name: String::new(),
            block_page: None,
        }
    }
}

impl RawDashboard {
    pub(super) fn validate(self, invalid: Invalid<'_>) -> Result<DashboardConfig, ConfigError> {
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.into_inner(),
                key: key.into_inner(),
            }),
            (None, None) => None,
            (Some(cert), None) => {
                return Err(invalid(
                    cert.span(),
                    "dashboard.tls_key",
                    "`tls_cert` is set but `tls_key` is not: HTTPS needs both".into(),
                ))
            }
            (None, Some(key)) => {
                return Err(invalid(
                    key.span(),
                    "dashboard.tls_cert",
                    "`tls_key` is set but `tls_cert` is not: HTTPS needs both".into(),
                ))
            }
        };
        let mut require_totp = Roles::default();
        for r in self.require_totp {
            let role = Role::parse(r.get_ref()).ok_or_else(|| {
                invalid(
                    r.span(),
                    "dashboard.require_totp",
                    format!(
                        "`{}` is not a role (dsl, approver, technician, governor)",
                        r.get_ref()
                    ),
                )
            })?;
            require_totp = require_totp.with(role);
        }
        let idle = *self.session_idle_minutes.get_ref();
        if !(1..=24 * 60).contains(&idle) {
            return Err(invalid(
                self.session_idle_minutes.span(),
                "dashboard.session_idle_minutes",
                "must be between 1 and 1440".into(),
            ));
        }
        let max = *self.session_max_hours.get_ref();
        if !(1..=7 * 24).contains(&max) {
            return Err(invalid(
                self.session_max_hours.span(),
                "dashboard.session_max_hours",
                "must be between 1 and 168".into(),
            ));
        }
        Ok(DashboardConfig {
            enabled: self.enabled,
            tls,
            allow_plain_http: self.allow_plain_http,
            require_totp,
            session_idle: Duration::from_secs(idle * 60),
            session_max: Duration::from_secs(max * 3600),
            school_name: self.school_name.trim().to_string(),
            block_page: self.block_page,
        })
    }
}
