//! User sessions: which person used a client address, and when.
//!
//! Two ways in: a CSV export for `hedgerow sessions import FILE.csv` (from a MIS, a network
//! login audit or a spreadsheet), and the JSON body a login script sends to
//! `POST /api/v1/sessions` ([`SessionRequest`]). Both end as [`Session`]s, checked the same
//! way. Usernames are personal data: they are never logged here, and errors name lines and
//! fields, not the values of usernames.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

use super::{summarise, LineError};
use crate::civil;

/// Longest username or device name accepted (directory services allow far less).
pub const MAX_NAME_LEN: usize = 256;

/// How far in the future a session posted "now" may start (clock skew between the login
/// machine and this one).
pub const MAX_FUTURE_START: Duration = Duration::from_secs(300);

/// One person's use of one client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The client address.
    pub ip: IpAddr,
    /// The person's login name.
    pub username: String,
    /// The device's name, if known.
    pub device: Option<String>,
    /// When the session started.
    pub starts: SystemTime,
    /// When it ended (`None`: still going, or not known).
    pub ends: Option<SystemTime>,
}

/// Why a session import could not be (wholly) used.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The file could not be read.
    #[error("{}: cannot read the sessions file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The header line is missing or lacks a needed column.
    #[error("{}:{line}: {reason}", file.display())]
    Header {
        /// The file.
        file: PathBuf,
        /// 1-based line of the header (1 when the file is empty).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The sessions API token file is unusable.
    #[error("{}: {reason}", path.display())]
    Token {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Some rows could not be used; the sessions from the others are here.
    #[error("{} ({} sessions read from the good lines)", summarise(errors), sessions.len())]
    Partial {
        /// The sessions from the good rows.
        sessions: Vec<Session>,
        /// One error per bad row.
        errors: Vec<LineError>,
    },
}

/// What is wrong with a [`SessionRequest`]: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {reason}")]
pub struct InvalidSession {
    /// The JSON field (or CSV column).
    pub field: &'static str,
    /// What is wrong and what is expected.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidSession {
    InvalidSession {
        field,
        reason: reason.into(),
    }
}

/// A name as recorded: trimmed, not empty, not too long, no control characters.
fn name(field: &'static str, text: &str) -> Result<String, InvalidSession> {
    let t = text.trim();
    if t.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if t.chars().count() > MAX_NAME_LEN {
        return Err(invalid(
            field,
            format!("longer than {MAX_NAME_LEN} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(t.to_string())
}

/// A client address; IPv4-mapped IPv6 addresses become IPv4 so they match DNS clients.
fn address(text: &str) -> Result<IpAddr, InvalidSession> {
    let ip: IpAddr = text
        .trim()
        .parse()
        .map_err(|_| invalid("ip", format!("`{}` is not an IP address", text.trim())))?;
    let ip = ip.to_canonical();
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(invalid("ip", format!("`{ip}` is not a client address")));
    }
    Ok(ip)
}

/// The checks both ways in share.
fn session(
    ip: &str,
    username: &str,
    device: Option<&str>,
    starts: SystemTime,
    ends: Option<SystemTime>,
) -> Result<Session, InvalidSession> {
    let ip = address(ip)?;
    let username = name("username", username)?;
    let device = match device.map(str::trim) {
        None | Some("") => None,
        Some(d) => Some(name("device", d)?),
    };
    if ends.is_some_and(|e| e < starts) {
        return Err(invalid("end", "is before `start`"));
    }
    Ok(Session {
        ip,
        username,
        device,
        starts,
        ends,
    })
}

/// The JSON body of `POST /api/v1/sessions`, as a login or logout script sends it:
///
/// ```json
/// {"ip": "10.1.2.34", "username": "jsmith", "device": "PC-12", "start": "2026-11-26T08:01:02Z"}
/// ```
///
/// `start` defaults to the time the request arrives; `end` is sent at logout (with the same
/// `ip` and `username`) or left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The client address.
    pub ip: String,
    /// The person's login name.
    pub username: String,
    /// The device's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// RFC 3339 start time (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// RFC 3339 end time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

impl SessionRequest {
    /// Checks the request and makes the session; `now` is the time it arrived (the one
    /// clock's). A start more than [`MAX_FUTURE_START`] after `now` is refused: it means the
    /// sender's clock is wrong, and its sessions would be attributed to the wrong times.
    pub fn validate(&self, now: SystemTime) -> Result<Session, InvalidSession> {
        let starts = match &self.start {
            Some(s) => civil::parse_datetime(s).map_err(|r| invalid("start", r))?,
            None => now,
        };
        if starts > now + MAX_FUTURE_START {
            return Err(invalid(
                "start",
                "is in the future: check the sending machine's clock",
            ));
        }
        let ends = match &self.end {
            Some(e) => Some(civil::parse_datetime(e).map_err(|r| invalid("end", r))?),
            None => None,
        };
        session(
            &self.ip,
            &self.username,
            self.device.as_deref(),
            starts,
            ends,
        )
    }
}

/// Shortest sessions API token accepted: a guessable token would let anyone on the network
/// attribute browsing to another person.
pub const MIN_TOKEN_LEN: usize = 16;

/// The bearer token login scripts present to `POST /api/v1/sessions`, read from
/// `identity.sessions_token_file`. Only its SHA-256 digest is kept, and comparison is over
/// digests in constant time, so neither memory dumps nor response timing give it away.
#[derive(Clone)]
pub struct SessionsToken([u8; 32]);

impl SessionsToken {
    /// Reads the token from `path` (surrounding white space ignored).
    pub fn read(path: &Path) -> Result<SessionsToken, SessionError> {
        let text = std::fs::read_to_string(path).map_err(|source| SessionError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let token = text.trim();
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(SessionError::Token {
                path: path.to_path_buf(),
                reason: format!(
                    "the token is shorter than {MIN_TOKEN_LEN} characters: make one with `openssl rand -hex 32`"
                ),
            });
        }
        Ok(SessionsToken(Self::digest(token)))
    }

    fn digest(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    /// Whether `presented` (the `Authorization` header's value after `Bearer `) is the token.
    pub fn matches(&self, presented: &str) -> bool {
        let other = Self::digest(presented.trim());
        self.0
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for SessionsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionsToken(..)")
    }
}

/// Splits one CSV line into fields: commas, double-quoted fields with `""` for a quote
/// (what spreadsheets write). `None` when a quote is not closed.
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return None;
    }
    fields.push(field);
    Some(fields)
}

/// Reads and parses a sessions CSV file (see [`parse_csv`]).
pub fn read_csv(path: &Path) -> Result<Vec<Session>, SessionError> {
    let text = std::fs::read_to_string(path).map_err(|source| SessionError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_csv(&text, path)
}

/// Parses a sessions CSV export: a header naming the columns `ip,username,device,start,end`
/// (any order; `device` and `end` may be left out or empty), then one session per line.
/// Times are RFC 3339 or `YYYY-MM-DD HH:MM[:SS]` in UTC. `file` names it in errors; bad rows
/// are reported by line and the good ones kept ([`SessionError::Partial`]).
pub fn parse_csv(text: &str, file: &Path) -> Result<Vec<Session>, SessionError> {
    // Spreadsheets save UTF-8 with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header_error = |line: usize, reason: String| SessionError::Header {
        file: file.to_path_buf(),
        line,
        reason,
    };
    let Some((hn, header)) = lines.next() else {
        return Err(header_error(
            1,
            "empty file: expected the header `ip,username,device,start,end`".into(),
        ));
    };
    let cols: Vec<String> = csv_fields(header)
        .unwrap_or_default()
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| cols.iter().position(|c| c == name);
    let (Some(ip), Some(user), Some(start)) = (col("ip"), col("username"), col("start")) else {
        return Err(header_error(
            hn + 1,
            "expected the header `ip,username,device,start,end` (`ip`, `username` and `start` are needed)".into(),
        ));
    };
    if let Some(unknown) = cols
        .iter()
        .find(|c| !["ip", "username", "device", "start", "end"].contains(&c.as_str()))
    {
        return Err(header_error(
            hn + 1,
            format!("unknown column `{unknown}`: expected `ip,username,device,start,end`"),
        ));
    }
    let (device, end) = (col("device"), col("end"));

    let mut sessions = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in lines {
        let row = csv_fields(line)
            .ok_or_else(|| invalid("line", "a quoted field is not closed"))
            .and_then(|f| {
                if f.len() != cols.len() {
                    return Err(invalid(
                        "line",
                        format!("{} fields, but the header has {}", f.len(), cols.len()),
                    ));
                }
                let at = |i: Option<usize>| i.and_then(|i| f.get(i)).map(|s| s.trim());
                let starts = civil::parse_datetime(at(Some(start)).unwrap_or_default())
                    .map_err(|r| invalid("start", r))?;
                let ends = match at(end) {
                    None | Some("") => None,
                    Some(e) => Some(civil::parse_datetime(e).map_err(|r| invalid("end", r))?),
                };
                session(
                    at(Some(ip)).unwrap_or_default(),
                    at(Some(user)).unwrap_or_default(),
                    at(device),
                    starts,
                    ends,
                )
            });
        match row {
            Ok(s) => sessions.push(s),
            Err(e) => errors.push(LineError {
                file: file.to_path_buf(),
                line: i + 1,
                reason: e.to_string(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(sessions)
    } else {
        Err(SessionError::Partial { sessions, errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_quotes_and_line_errors() {
        let text = "\u{feff}ip,username,device,start,end\n\
                    10.1.2.34,jsmith,PC-12,2026-11-26T08:01:02Z,2026-11-26 09:00\n\
                    ::ffff:10.1.2.35,\"Smith, Jo\",\"Lab \"\"A\"\" 3\",2026-11-26 08:05,\n\
                    10.1.2.36,,PC-14,2026-11-26 08:05,\n\
                    10.1.2.37,akhan,,2026-11-26 10:00,2026-11-26 09:00\n\
                    \n\
                    10.1.2.38,bjones,PC-9,yesterday,\n";
        let err = parse_csv(text, Path::new("s.csv")).unwrap_err();
        let SessionError::Partial { sessions, errors } = err else {
            panic!("not partial");
        };
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions[1].ip, "10.1.2.35".parse::<IpAddr>().unwrap());
        assert_eq!(sessions[1].username, "Smith, Jo");
        assert_eq!(sessions[1].device.as_deref(), Some("Lab \"A\" 3"));
        assert_eq!(sessions[1].ends, None);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [4, 5, 7]);
        assert_eq!(
            errors[0].to_string(),
            "s.csv:4: `username`: must not be empty"
        );
        assert!(
            errors[2].reason.starts_with("`start`: `yesterday`"),
            "{}",
            errors[2]
        );

        let bad = parse_csv("address,user\n", Path::new("s.csv")).unwrap_err();
        assert!(
            bad.to_string().starts_with("s.csv:1: expected the header"),
            "{bad}"
        );
    }

    #[test]
    fn token_from_file() {
        let dir = std::env::temp_dir().join(format!("hedgerow-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sessions.token");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let token = SessionsToken::read(&path).unwrap();
        assert!(token.matches("0123456789abcdef0123"));
        assert!(!token.matches("0123456789abcdef012"));
        assert_eq!(format!("{token:?}"), "SessionsToken(..)");
        std::fs::write(&path, "short\n").unwrap();
        let err = SessionsToken::read(&path).unwrap_err().to_string();
        assert!(err.contains("shorter than 16"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn json_request_validation() {
        let now = civil::parse_datetime("2026-11-26T08:00:00Z").unwrap();
        let req: SessionRequest =
            serde_json::from_str(r#"{"ip":"10.1.2.34","username":" jsmith ","device":"PC-12"}"#)
                .unwrap();
        let s = req.validate(now).unwrap();
        assert_eq!((s.username.as_str(), s.starts), ("jsmith", now));

        let err = |json: &str| {
            serde_json::from_str::<SessionRequest>(json)
                .unwrap()
                .validate(now)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(r#"{"ip":"10.1.2","username":"a"}"#),
            "`ip`: `10.1.2` is not an IP address"
        );
        assert!(
            err(r#"{"ip":"10.1.2.3","username":"a","start":"2026-11-26T09:00:00Z"}"#)
                .starts_with("`start`: is in the future")
        );
        assert!(
            err(r#"{"ip":"10.1.2.3","username":"a","end":"2026-11-26T07:00:00Z"}"#)
                .starts_with("`end`: is before")
        );
        assert!(serde_json::from_str::<SessionRequest>(
            r#"{"ip":"10.1.2.3","username":"a","pw":1}"#
        )
        .is_err());
    }
}
