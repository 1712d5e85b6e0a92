//! DHCP lease files: dnsmasq's `dnsmasq.leases`, ISC dhcpd's `dhcpd.leases` and Kea's memfile
//! CSV, read into one [`Lease`] shape.
//!
//! Each parser returns the leases in force when the file was written, one per address, in
//! address order. A line that cannot be used becomes a [`LineError`] naming the file and line;
//! the good lines are kept ([`LeaseError::Partial`]), because one odd line must not hide every
//! device in the school.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::civil;
pub use crate::config::identity::LeaseFormat;

use super::{summarise, LineError};

/// Which DHCP server a lease came from (the configured format of its file).
pub type LeaseSource = LeaseFormat;

/// The `ends` of a lease that never expires (dnsmasq's expiry 0, ISC's `ends never;`, Kea's
/// infinite lifetime): 9999-12-31T23:59:59Z, far enough to compare as "still leased" and small
/// enough for the store's millisecond columns.
pub fn never() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(253_402_300_799)
}

/// One address lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The leased address.
    pub ip: IpAddr,
    /// The client's Ethernet address, lower case `aa:bb:cc:dd:ee:ff` (`None` for DHCPv6 and
    /// non-Ethernet hardware).
    pub mac: Option<String>,
    /// The host name the client sent, if any.
    pub hostname: Option<String>,
    /// When the lease started, when the server records it (dnsmasq does not).
    pub starts: Option<SystemTime>,
    /// When the lease ends ([`never()`] for an infinite lease).
    pub ends: SystemTime,
    /// The server that wrote it.
    pub source: LeaseSource,
}

impl Lease {
    /// Whether the lease never expires.
    pub fn is_infinite(&self) -> bool {
        self.ends >= never()
    }
}

/// Why a lease file could not be (wholly) read.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The file could not be read at all.
    #[error("{}: cannot read the lease file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Some lines could not be used; the leases from the others are here.
    #[error("{} ({} leases read from the good lines)", summarise(errors), leases.len())]
    Partial {
        /// The leases from the good lines.
        leases: Vec<Lease>,
        /// One error per bad line.
        errors: Vec<LineError>,
    },
}

impl LeaseError {
    /// The leases that could be read (none when the file could not be read at all).
    pub fn into_leases(self) -> Vec<Lease> {
        match self {
            LeaseError::Read { .. } => Vec::new(),
            LeaseError::Partial { leases, .. } => leases,
        }
    }
}

/// Reads a file's text; host names are whatever clients sent, so a stray non-UTF-8 byte
/// must not lose the whole file.
fn read_text(path: &Path) -> std::io::Result<String> {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Reads and parses the lease file at `path` (for Kea, with the files its lease file cleanup
/// leaves beside it: see [`kea_files`]).
pub fn read(path: &Path, format: LeaseFormat) -> Result<Vec<Lease>, LeaseError> {
    let read_error = |path: &Path, source| LeaseError::Read {
        path: path.to_path_buf(),
        source,
    };
    if format != LeaseFormat::Kea {
        let text = read_text(path).map_err(|e| read_error(path, e))?;
        return parse(format, &text, path);
    }
    let files = kea_files(path);
    let mut texts = Vec::with_capacity(files.len());
    for file in &files {
        match read_text(file) {
            Ok(t) => texts.push(t),
            // Only the lease file itself must exist; the others come and go with cleanups.
            Err(e) if file.as_path() != path && e.kind() == std::io::ErrorKind::NotFound => {
                texts.push(String::new())
            }
            Err(e) => return Err(read_error(file, e)),
        }
    }
    let mut c = Collected::new(path);
    for (file, text) in files.iter().zip(&texts) {
        c.file = file;
        kea_rows(&mut c, text);
    }
    c.finish()
}

/// The files Kea's memfile backend loads for the lease file at `path`, in its own order:
/// `PATH.completed` (the output of a finished lease file cleanup) if it exists, otherwise
/// `PATH.2` and `PATH.1` (the inputs of an unfinished one), then `PATH`, which Kea starts
/// afresh at each cleanup and so holds only the changes since. Reading `PATH` alone would
/// lose every lease not renewed since the last cleanup (by default, an hour).
pub fn kea_files(path: &Path) -> Vec<PathBuf> {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    let completed = with(".completed");
    let mut files = if completed.exists() {
        vec![completed]
    } else {
        vec![with(".2"), with(".1")]
    };
    files.push(path.to_path_buf());
    files
}

/// Parses lease file text in `format`; `file` names it in errors.
pub fn parse(format: LeaseFormat, text: &str, file: &Path) -> Result<Vec<Lease>, LeaseError> {
    match format {
        LeaseFormat::Dnsmasq => parse_dnsmasq(text, file),
        LeaseFormat::Isc => parse_isc(text, file),
        LeaseFormat::Kea => parse_kea(text, file),
    }
}

/// What a parser has so far: the leases in force by address, and the bad lines.
struct Collected<'a> {
    file: &'a Path,
    leases: BTreeMap<IpAddr, Lease>,
    errors: Vec<LineError>,
}

impl<'a> Collected<'a> {
    fn new(file: &'a Path) -> Self {
        Collected {
            file,
            leases: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    fn error(&mut self, line: usize, reason: impl Into<String>) {
        self.errors.push(LineError {
            file: self.file.to_path_buf(),
            line,
            reason: reason.into(),
        });
    }

    fn finish(self) -> Result<Vec<Lease>, LeaseError> {
        let leases = self.leases.into_values().collect();
        if self.errors.is_empty() {
            Ok(leases)
        } else {
            Err(LeaseError::Partial {
                leases,
                errors: self.errors,
            })
        }
    }
}

/// `aa:bb:cc:dd:ee:ff` (or with `-`, any case, ISC's leading-zero-less `0:c:29:…`) → lower
/// case with two digits per byte; `None` unless it is exactly six bytes.
pub fn normalise_mac(text: &str) -> Option<String> {
    let mut out = String::with_capacity(17);
    let mut n = 0;
    for part in text.split([':', '-']) {
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        let byte = u8::from_str_radix(part, 16).ok()?;
        if n > 0 {
            out.push(':');
        }
        out.push_str(&format!("{byte:02x}"));
        n += 1;
    }
    (n == 6).then_some(out)
}

/// A host name as recorded: trimmed, without a trailing dot; `None` when empty or `*`.
fn hostname(text: &str) -> Option<String> {
    let name = text.trim().trim_end_matches('.');
    (!name.is_empty() && name != "*").then(|| name.to_string())
}

/// dnsmasq's lease file: one lease per line,
/// `<expiry> <mac> <ip> <hostname|*> <client-id|*>` for DHCPv4 and
/// `<expiry> <iaid> <ipv6> <hostname|*> <duid|*>` for DHCPv6, after a `duid <server duid>`
/// line. Expiry 0 means the lease never ends.
pub fn parse_dnsmasq(text: &str, file: &Path) -> Result<Vec<Lease>, LeaseError> {
    let mut c = Collected::new(file);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        // The server's own DUID, written before the DHCPv6 leases.
        if line.is_empty() || line.starts_with("duid ") || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if !(4..=5).contains(&f.len()) {
            c.error(
                n,
                format!(
                    "expected `expiry mac ip hostname client-id`, found {} fields",
                    f.len()
                ),
            );
            continue;
        }
        let Ok(expiry) = f[0].parse::<u64>() else {
            c.error(
                n,
                format!("`{}` is not an expiry time (Unix seconds)", f[0]),
            );
            continue;
        };
        let Ok(ip) = f[2].parse::<IpAddr>() else {
            c.error(n, format!("`{}` is not an IP address", f[2]));
            continue;
        };
        // For DHCPv6 the second field is the IAID, not a hardware address; for DHCPv4 a
        // non-Ethernet address carries a `type-` prefix and is not a MAC address.
        let mac = match ip {
            IpAddr::V4(_) => normalise_mac(f[1]),
            IpAddr::V6(_) => None,
        };
        let ends = if expiry == 0 {
            never()
        } else {
            UNIX_EPOCH + Duration::from_secs(expiry)
        };
        c.leases.insert(
            ip,
            Lease {
                ip,
                mac,
                hostname: hostname(f[3]),
                starts: None,
                ends,
                source: LeaseSource::Dnsmasq,
            },
        );
    }
    c.finish()
}

/// One token of ISC dhcpd's lease file grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    Semi,
}

/// Splits ISC dhcpd's lease file into tokens with their 1-based lines. Quoted strings may
/// hold `;`, `{`, `}` and `#` (a client's `uid` is written as a quoted byte string), so this
/// is a real tokenizer rather than a line splitter.
fn isc_tokens(text: &str) -> Vec<(usize, Tok)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '{' => out.push((line, Tok::Open)),
            '}' => out.push((line, Tok::Close)),
            ';' => out.push((line, Tok::Semi)),
            '"' => {
                let start = line;
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(d @ '0'..='7') => {
                                // Octal escape: up to three digits for one byte.
                                let mut v = d as u32 - '0' as u32;
                                for _ in 0..2 {
                                    match chars.peek() {
                                        Some(&o @ '0'..='7') => {
                                            v = v * 8 + (o as u32 - '0' as u32);
                                            chars.next();
                                        }
                                        _ => break,
                                    }
                                }
                                s.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                            }
                            Some('\n') => line += 1,
                            Some(o) => s.push(o),
                            None => {}
                        },
                        '\n' => {
                            line += 1;
                            s.push(c);
                        }
                        c => s.push(c),
                    }
                }
                out.push((start, Tok::Str(s)));
            }
            c => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"' | '#') {
                        break;
                    }
                    w.push(n);
                    chars.next();
                }
                out.push((line, Tok::Word(w)));
            }
        }
    }
    out
}

/// A lease block's time: `<weekday> YYYY/MM/DD HH:MM:SS` (UTC), `epoch <secs>` (with
/// `db-time-format local;`) or `never`. `Ok(None)` is `never`.
fn isc_time(words: &[&str]) -> Result<Option<SystemTime>, String> {
    match words {
        ["never"] => Ok(None),
        ["epoch", secs, ..] => secs
            .parse::<u64>()
            .map(|s| Some(UNIX_EPOCH + Duration::from_secs(s)))
            .map_err(|_| format!("`{secs}` is not a Unix time")),
        [_weekday, date, time] => civil::parse_slash_utc(date, time)
            .map(Some)
            .ok_or_else(|| format!("`{date} {time}` is not a date like 2026/11/26 08:01:02")),
        other => Err(format!("`{}` is not a lease time", other.join(" "))),
    }
}

/// ISC dhcpd's `dhcpd.leases`: `lease ADDR { … }` blocks, appended as leases change, so a
/// later block for an address supersedes an earlier one. Only `binding state active` (or a
/// block with no binding state, as old versions write) is a lease in force; `free`,
/// `backup`, `abandoned`, `expired` and `released` blocks end it. Times are UTC. Other
/// statements (`server-duid`, `failover peer … state { … }`, `authoring-byte-order`) are
/// skipped.
pub fn parse_isc(text: &str, file: &Path) -> Result<Vec<Lease>, LeaseError> {
    let mut c = Collected::new(file);
    let toks = isc_tokens(text);
    let mut i = 0;
    while i < toks.len() {
        let (line, tok) = &toks[i];
        let is_lease = matches!(tok, Tok::Word(w) if w == "lease")
            && matches!(toks.get(i + 2), Some((_, Tok::Open)));
        if !is_lease {
            let next = skip_statement(&toks, i);
            if next == i {
                // A `}` closing nothing: a damaged or hand-edited file.
                c.error(*line, "`}` without a block to close");
                i += 1;
            } else {
                i = next;
            }
            continue;
        }
        let addr = match &toks[i + 1].1 {
            Tok::Word(w) => w.parse::<IpAddr>().ok(),
            _ => None,
        };
        // Statements of the block, up to its closing brace.
        let mut j = i + 3;
        let mut lease = IscLease::default();
        let mut closed = false;
        while j < toks.len() {
            if toks[j].1 == Tok::Close {
                closed = true;
                j += 1;
                break;
            }
            let end = skip_statement(&toks, j);
            lease.statement(&toks[j..end]);
            j = end;
        }
        i = j;
        let Some(ip) = addr else {
            c.error(*line, "`lease` is not followed by an IP address");
            continue;
        };
        if !closed {
            c.error(
                *line,
                format!("lease {ip}: the block is not closed with `}}`"),
            );
            continue;
        }
        match lease.finish(ip) {
            Ok(Some(l)) => {
                c.leases.insert(ip, l);
            }
            Ok(None) => {
                c.leases.remove(&ip);
            }
            Err(reason) => c.error(
                lease.error_line.unwrap_or(*line),
                format!("lease {ip}: {reason}"),
            ),
        }
    }
    c.finish()
}

/// The index after the statement starting at `i`: after its `;`, or after the `}` that
/// closes a block it opens (nested blocks included), or at a `}` that closes the caller's
/// block.
fn skip_statement(toks: &[(usize, Tok)], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < toks.len() {
        match toks[i].1 {
            Tok::Semi if depth == 0 => return i + 1,
            Tok::Open => depth += 1,
            Tok::Close if depth == 0 => return i,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    // A block statement may still end with `;` (rare); take it too.
                    return if matches!(toks.get(i + 1), Some((_, Tok::Semi))) {
                        i + 2
                    } else {
                        i + 1
                    };
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// What one `lease { … }` block said.
#[derive(Default)]
struct IscLease {
    starts: Option<Option<SystemTime>>,
    ends: Option<Option<SystemTime>>,
    state: Option<String>,
    mac: Option<String>,
    hostname: Option<String>,
    error: Option<String>,
    error_line: Option<usize>,
}

impl IscLease {
    fn statement(&mut self, toks: &[(usize, Tok)]) {
        let words: Vec<&str> = toks
            .iter()
            .filter_map(|(_, t)| match t {
                Tok::Word(w) | Tok::Str(w) => Some(w.as_str()),
                _ => None,
            })
            .collect();
        let line = toks.first().map_or(0, |t| t.0);
        let mut fail = |e: String| {
            if self.error.is_none() {
                self.error = Some(e);
                self.error_line = Some(line);
            }
        };
        match words.as_slice() {
            ["starts", rest @ ..] => match isc_time(rest) {
                Ok(t) => self.starts = Some(t),
                Err(e) => fail(format!("starts: {e}")),
            },
            ["ends", rest @ ..] => match isc_time(rest) {
                Ok(t) => self.ends = Some(t),
                Err(e) => fail(format!("ends: {e}")),
            },
            ["binding", "state", state] => self.state = Some(state.to_string()),
            ["hardware", _kind, mac] => self.mac = normalise_mac(mac),
            ["client-hostname", name] => self.hostname = hostname(name),
            _ => {}
        }
    }

    /// The lease in force, `None` when the block ends it, or why the block is unusable.
    fn finish(&self, ip: IpAddr) -> Result<Option<Lease>, String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.state.as_deref().is_some_and(|s| s != "active") {
            return Ok(None);
        }
        let Some(ends) = self.ends else {
            return Err("no `ends` time".into());
        };
        Ok(Some(Lease {
            ip,
            mac: self.mac.clone(),
            hostname: self.hostname.clone(),
            starts: self.starts.flatten(),
            ends: ends.unwrap_or_else(never),
            source: LeaseSource::Isc,
        }))
    }
}

/// Kea's text escaping in CSV fields: `&#x2c` for a comma (and any `&#xNN`).
fn kea_unescape(field: &str) -> String {
    if !field.contains("&#x") {
        return field.to_string();
    }
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find("&#x") {
        out.push_str(&rest[..at]);
        let hex = rest.get(at + 3..at + 5);
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[at + 5..];
            }
            None => {
                out.push_str("&#x");
                rest = &rest[at + 3..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Kea's memfile CSV (`kea-leases4.csv`, and `kea-leases6.csv`, which has the same named
/// columns that matter here). The header names the columns; the file is append-only, so a
/// later row for an address supersedes earlier ones. `state` 0 is a lease in force, 1
/// (declined) and 2 (expired-reclaimed) end it, and so does a row with `valid_lifetime` 0
/// (a release). A lifetime of 4294967295 is infinite.
pub fn parse_kea(text: &str, file: &Path) -> Result<Vec<Lease>, LeaseError> {
    let mut c = Collected::new(file);
    kea_rows(&mut c, text);
    c.finish()
}

/// Applies the rows of one Kea lease file to `c`, in order.
fn kea_rows(c: &mut Collected<'_>, text: &str) {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((hn, header)) = lines.next() else {
        return;
    };
    let cols: Vec<&str> = header.trim().split(',').map(str::trim).collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(address), Some(lifetime), Some(expire)) =
        (col("address"), col("valid_lifetime"), col("expire"))
    else {
        c.error(
            hn + 1,
            "not a Kea lease file header: `address`, `valid_lifetime` and `expire` are needed",
        );
        return;
    };
    let (hwaddr, host, state) = (col("hwaddr"), col("hostname"), col("state"));
    for (i, line) in lines {
        let n = i + 1;
        let f: Vec<&str> = line.trim().split(',').collect();
        let get = |i: Option<usize>| i.and_then(|i| f.get(i)).map(|s| s.trim());
        let Some(addr) = get(Some(address)) else {
            c.error(n, "missing the `address` column");
            continue;
        };
        let Ok(ip) = addr.parse::<IpAddr>() else {
            c.error(n, format!("`{addr}` is not an IP address"));
            continue;
        };
        let (Some(Ok(valid)), Some(Ok(exp))) = (
            get(Some(lifetime)).map(str::parse::<u64>),
            get(Some(expire)).map(str::parse::<u64>),
        ) else {
            c.error(n, "`valid_lifetime` and `expire` must be whole numbers");
            continue;
        };
        let state = match get(state) {
            None | Some("") => 0,
            Some(s) => match s.parse::<u32>() {
                Ok(s) => s,
                Err(_) => {
                    c.error(n, format!("`{s}` is not a lease state"));
                    continue;
                }
            },
        };
        if valid == 0 || state != 0 {
            c.leases.remove(&ip);
            continue;
        }
        let (starts, ends) = if valid == u64::from(u32::MAX) {
            (None, never())
        } else {
            (
                Some(UNIX_EPOCH + Duration::from_secs(exp.saturating_sub(valid))),
                UNIX_EPOCH + Duration::from_secs(exp),
            )
        };
        c.leases.insert(
            ip,
            Lease {
                ip,
                mac: get(hwaddr).and_then(normalise_mac),
                hostname: get(host).and_then(|h| hostname(&kea_unescape(h))),
                starts,
                ends,
                source: LeaseSource::Kea,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("t")
    }

    #[test]
    fn macs_are_normalised() {
        assert_eq!(
            normalise_mac("AA-BB-cc-0-e:1").as_deref(),
            Some("aa:bb:cc:00:0e:01")
        );
        assert_eq!(normalise_mac("06-aa:bb:cc:dd:ee:ff"), None);
        assert_eq!(normalise_mac("aa:bb:cc:dd:ee"), None);
        assert_eq!(normalise_mac("aa:bb:cc:dd:ee:fff"), None);
    }

    #[test]
    fn dnsmasq_lines_and_errors() {
        let text = "1764187262 AA:bb:cc:dd:ee:01 10.0.0.5 pc-12 01:aa:bb:cc:dd:ee:01\n\
                    0 aa:bb:cc:dd:ee:02 10.0.0.6 * *\n\
                    garbage line\n\
                    duid 00:01:00:01:2c:bb:46:9a:52:54:00:12:34:56\n\
                    1764187262 8123456 fd00::5 pc-12 00:01:00:01:2c:bb:46:9a:aa:bb:cc:dd:ee:01\n";
        let err = parse_dnsmasq(text, p()).unwrap_err();
        assert_eq!(err.to_string(), "t:3: expected `expiry mac ip hostname client-id`, found 2 fields (3 leases read from the good lines)");
        let leases = err.into_leases();
        assert_eq!(leases.len(), 3);
        assert_eq!(leases[0].mac.as_deref(), Some("aa:bb:cc:dd:ee:01"));
        assert_eq!(leases[0].hostname.as_deref(), Some("pc-12"));
        assert!(leases[1].is_infinite() && leases[1].hostname.is_none());
        assert_eq!(leases[2].mac, None);
    }

    #[test]
    fn isc_blocks_supersede_and_free_ends() {
        let text = r#"
lease 10.0.0.5 { starts 4 2026/11/26 08:01:02; ends 4 2026/11/26 20:01:02; binding state active; hardware ethernet aa:bb:cc:dd:ee:01; uid "\001;}{#"; client-hostname "pc-12"; }
lease 10.0.0.6 { starts 4 2026/11/26 08:01:02; ends never; binding state active; }
lease 10.0.0.5 { starts 4 2026/11/26 09:00:00; ends 4 2026/11/26 21:00:00; binding state active; hardware ethernet aa:bb:cc:dd:ee:01; client-hostname "pc-12b"; }
lease 10.0.0.6 { starts 4 2026/11/26 08:01:02; ends 4 2026/11/26 08:05:00; binding state free; }
lease 10.0.0.7 { starts 4 2026/13/26 08:01:02; ends 4 2026/11/26 08:05:00; }
"#;
        let err = parse_isc(text, p()).unwrap_err();
        assert!(
            err.to_string().starts_with("t:6: lease 10.0.0.7: starts:"),
            "{err}"
        );
        let leases = err.into_leases();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].hostname.as_deref(), Some("pc-12b"));

        // A stray `}` and a block cut short (a file read while being written).
        let text = "}\nlease 10.0.0.9 { starts 4 2026/11/26 08:01:02; ends never; binding state active; }\nlease 10.0.0.8 {\n  starts 4 2026/11/26 08:01:02;\n  ends 4 2026/11/";
        let LeaseError::Partial {
            leases: cut,
            errors,
        } = parse_isc(text, p()).unwrap_err()
        else {
            panic!("not partial");
        };
        assert_eq!(cut.len(), 1);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 3], "{errors:?}");
        assert_eq!(
            leases[0].starts.map(civil::format_rfc3339).as_deref(),
            Some("2026-11-26T09:00:00Z")
        );
    }

    #[test]
    fn kea_rows_supersede_release_and_decline() {
        let text = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n\
                    10.0.0.5,aa:bb:cc:dd:ee:01,,4000,1764187262,1,0,0,pc-12.school.lan.,0,\n\
                    10.0.0.6,aa:bb:cc:dd:ee:02,,4000,1764187262,1,0,0,a&#x2cb,0,\n\
                    10.0.0.5,aa:bb:cc:dd:ee:01,,0,1764187262,1,0,0,pc-12,0,\n\
                    10.0.0.7,,,4000,1764187262,1,0,0,,1,\n\
                    10.0.0.8,,,4000,soon,1,0,0,,0,\n";
        let err = parse_kea(text, p()).unwrap_err();
        assert!(err.to_string().starts_with("t:6:"), "{err}");
        let leases = err.into_leases();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].hostname.as_deref(), Some("a,b"));
        assert_eq!(
            leases[0].starts,
            Some(UNIX_EPOCH + Duration::from_secs(1_764_187_262 - 4000))
        );
    }
}
