//! The importer: reads third-party block lists line by line, in whatever syntax they come.
//!
//! Every line is put in exactly one [`LineClass`]. A line that cannot be used is reported with
//! its number and a [`Reason`] and skipped; the rest of the file is kept (a partial error, as
//! ripgrep's `ignore` crate does for bad ignore-file lines).
//!
//! # Syntaxes understood
//!
//! | syntax | example | entry |
//! |---|---|---|
//! | plain | `example.com` | subtree |
//! | wildcard | `*.example.com` | subtree, **including** `example.com` itself (see below) |
//! | hosts | `0.0.0.0 a.com b.com # note` | subtree for each name; preamble names skipped |
//! | adblock | `\|\|example.com^` | subtree |
//! | adblock exact | `\|example.com^` | this name only |
//! | adblock exception | `@@\|\|example.com^` | allow entry |
//! | adblock NXDOMAIN | `\|\|example.com^$dnsrewrite=NXDOMAIN;;` | subtree (other `$dnsrewrite`, `$dnstype`, `$client` rules are skipped with a warning) |
//! | dnsmasq | `address=/example.com/#`, `server=/example.com/` | subtree |
//! | unbound | `local-zone: "example.com." always_null` | subtree |
//! | RPZ | `example.com CNAME .` / `*.example.com CNAME .` | exact / subtree |
//!
//! Plain, hosts and dnsmasq entries are subtrees because that is what the tools that consume
//! those lists do (Pi-hole's gravity, dnsmasq, and the ground truth of the shared workload).
//!
//! `*.example.com` formally names only the children of `example.com`. We treat it as the whole
//! subtree *including* `example.com`: lists that use it (HaGeZi "wildcard") mean "block this
//! domain", and a category list that blocks every child but not the parent would be a surprise.
//!
//! Which syntaxes a source accepts depends on its declared [`Format`]:
//! `domains` = plain and wildcard; `hosts` = hosts and plain (many hosts files mix them);
//! `adblock` = adblock, hosts, plain and wildcard (as AdGuard Home accepts); `auto` = all of the
//! above plus dnsmasq, unbound and RPZ.

use std::fmt;
use std::io::BufRead;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::names::NameError;
use serde::{Deserialize, Serialize};

/// The declared syntax of a list source (`format` in `lists.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One name per line (`*.name` allowed).
    Domains,
    /// `ADDRESS name [name…]` lines (bare names allowed).
    Hosts,
    /// AdGuard/uBlock DNS rules: `||name^`, `|name^`, `@@||name^`.
    Adblock,
    /// Recognise every syntax line by line.
    #[default]
    Auto,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Domains => "domains",
            Format::Hosts => "hosts",
            Format::Adblock => "adblock",
            Format::Auto => "auto",
        })
    }
}

/// What an entry covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// The name and every name below it.
    Subtree,
    /// This name only.
    Exact,
}

/// The syntax a line was recognised as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// A bare name.
    Plain,
    /// `*.name`.
    Wildcard,
    /// `ADDRESS name…`.
    Hosts,
    /// `||name^`, `|name^`, `@@…`.
    Adblock,
    /// `address=/name/…`, `server=/name/`.
    Dnsmasq,
    /// `local-zone: "name." type`.
    Unbound,
    /// Zone-file lines: `name CNAME .`.
    Rpz,
}

impl Syntax {
    fn accepted_by(self, format: Format) -> bool {
        match format {
            Format::Auto => true,
            Format::Domains => matches!(self, Syntax::Plain | Syntax::Wildcard),
            Format::Hosts => matches!(self, Syntax::Plain | Syntax::Hosts),
            Format::Adblock => matches!(
                self,
                Syntax::Plain | Syntax::Wildcard | Syntax::Hosts | Syntax::Adblock
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Syntax::Plain => "a bare name",
            Syntax::Wildcard => "a `*.name` wildcard",
            Syntax::Hosts => "hosts syntax",
            Syntax::Adblock => "adblock syntax",
            Syntax::Dnsmasq => "dnsmasq syntax",
            Syntax::Unbound => "unbound syntax",
            Syntax::Rpz => "RPZ zone syntax",
        }
    }
}

/// How one line of a list was classified. Every line gets exactly one class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineClass {
    /// One or more block entries (possibly with a [`Reason`] warning, e.g. ignored modifiers).
    Entry,
    /// One or more allow (exception) entries from `@@` or RPZ `rpz-passthru.`.
    Allow,
    /// Blank line, comment, or a header such as `[Adblock Plus 2.0]` or unbound's `server:`.
    CommentOrBlank,
    /// Hosts-file boilerplate (`127.0.0.1 localhost`, `broadcasthost`, …) or a zone header.
    Preamble,
    /// A valid rule that does not mean "block" (`$dnsrewrite`, `server=/d/1.2.3.4`, …): skipped
    /// with a warning.
    Skipped,
    /// Unusable: skipped and reported as `file:line: reason`.
    Rejected,
}

/// Why a line (or one name on it) was rejected or skipped, or what a warning is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Not valid UTF-8.
    NotUtf8,
    /// An IPv4 or IPv6 address where a name was expected.
    IpAddress,
    /// A URL or a name with a path.
    Url,
    /// `name:port`.
    Port,
    /// An empty label (`a..b`, leading dot) or an empty name.
    EmptyLabel,
    /// A label longer than 63 bytes.
    LabelTooLong,
    /// A name longer than 253 bytes.
    NameTooLong,
    /// A single label (`localdomain`, `com`): would block a whole TLD or is junk.
    SingleLabel,
    /// A character that cannot occur in a host name.
    BadChar(char),
    /// A `*` inside a name (`ads*.example.com`).
    InnerWildcard,
    /// An internationalised name that UTS-46 refuses.
    Idna,
    /// Extra words after the name.
    TrailingText,
    /// A syntax this source's declared format does not accept.
    WrongFormat(Format, &'static str),
    /// An adblock regular-expression rule.
    AdblockRegex,
    /// An adblock cosmetic (element-hiding) rule: browser only.
    AdblockCosmetic,
    /// An adblock pattern not anchored with `||` or `|`: matches inside names.
    AdblockUnanchored,
    /// `$dnsrewrite` (other than NXDOMAIN/REFUSED), `$dnstype`, `$client`, `$ctag` or
    /// `$badfilter`: not a plain block.
    ModifierNotBlock(&'static str),
    /// Other `$modifiers`: the rule is kept as a plain block and the modifiers ignored.
    ModifiersIgnored,
    /// `$denyallow=a|b`: the domain is blocked but the listed exceptions are not applied.
    DenyallowIgnored,
    /// A hosts line with an address but no name.
    HostsWithoutName,
    /// dnsmasq `server=/d/ADDR`: forwards the name, does not block it.
    DnsmasqForward,
    /// A dnsmasq line that is neither `address=` nor `server=` with a domain.
    DnsmasqOther,
    /// An unbound local-zone type that does not block (`transparent`, …), or `local-data`.
    UnboundNotBlock,
    /// A zone record that is not an RPZ block action.
    RpzNotBlock,
    /// A registry's public suffix (`co.uk`, `ac.uk`): listing it would block (or, as an
    /// exception, allow) every site registered under it. See [`crate::names::is_public_suffix`].
    PublicSuffix,
    /// A line longer than [`MAX_LINE_BYTES`]: not a list entry, and not read into memory.
    LineTooLong,
}

/// Lines longer than this are rejected unread: no list entry comes near it (a name is at most
/// 253 bytes; the longest adblock or RPZ rules are a few hundred), and reading an unbounded
/// line would let a broken or hostile source take the compiler's memory.
pub const MAX_LINE_BYTES: usize = 4096;

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotUtf8 => f.write_str("not UTF-8 text"),
            Reason::IpAddress => {
                f.write_str("IP address, not a name (DNS filtering blocks names, not addresses)")
            }
            Reason::Url => f.write_str("URL or path: only whole host names can be blocked by DNS"),
            Reason::Port => f.write_str("name with a port: only the name can be blocked"),
            Reason::EmptyLabel => f.write_str("empty label (two dots in a row, or a leading dot)"),
            Reason::LabelTooLong => f.write_str("label longer than 63 characters"),
            Reason::NameTooLong => f.write_str("name longer than 253 characters"),
            Reason::SingleLabel => {
                f.write_str("single-label name: not a domain (a TLD here would block a country)")
            }
            Reason::PublicSuffix => f.write_str(
                "public suffix (Public Suffix List): would cover every site registered under it",
            ),
            Reason::LineTooLong => write!(f, "line longer than {MAX_LINE_BYTES} bytes: not read"),
            Reason::BadChar(c) => write!(f, "character {c:?} cannot occur in a host name"),
            Reason::InnerWildcard => f.write_str("`*` inside a name is not supported"),
            Reason::Idna => f.write_str("internationalised name refused by UTS-46 (IDNA)"),
            Reason::TrailingText => f.write_str("unexpected text after the name"),
            Reason::WrongFormat(format, syntax) => write!(
                f,
                "{syntax} in a source declared `format = \"{format}\"`: set the right format or \"auto\" in lists.toml"
            ),
            Reason::AdblockRegex => f.write_str("adblock regular-expression rule: not supported"),
            Reason::AdblockCosmetic => {
                f.write_str("adblock cosmetic rule: applies in browsers only")
            }
            Reason::AdblockUnanchored => f.write_str(
                "adblock pattern without `||` or `|`: matches inside names, not supported",
            ),
            Reason::ModifierNotBlock(m) => {
                write!(f, "rule with `${m}` does not mean \"block\": skipped")
            }
            Reason::DenyallowIgnored => f.write_str(
                "`$denyallow` exceptions not applied: the whole domain is blocked (add allow entries if needed)",
            ),
            Reason::ModifiersIgnored => {
                f.write_str("adblock `$modifiers` ignored: kept as a plain block")
            }
            Reason::HostsWithoutName => f.write_str("hosts line with an address but no name"),
            Reason::DnsmasqForward => {
                f.write_str("dnsmasq `server=` with an upstream forwards, does not block: skipped")
            }
            Reason::DnsmasqOther => f.write_str("dnsmasq line without `/domain/`"),
            Reason::UnboundNotBlock => {
                f.write_str("unbound rule that does not block (transparent zone or local-data): skipped")
            }
            Reason::RpzNotBlock => f.write_str("zone record that is not an RPZ block: skipped"),
        }
    }
}

/// A reason together with the text it is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issue<'a> {
    /// What is wrong.
    pub reason: Reason,
    /// The offending token (may be the whole line).
    pub token: &'a str,
}

impl fmt::Display for Issue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 80;
        let token = self.token;
        if token.is_empty() {
            return write!(f, "{}", self.reason);
        }
        if token.len() > MAX {
            let mut end = MAX;
            while !token.is_char_boundary(end) {
                end -= 1;
            }
            write!(f, "{}: `{}…`", self.reason, &token[..end])
        } else {
            write!(f, "{}: `{}`", self.reason, token)
        }
    }
}

/// One entry produced by a line: a normalised name (ASCII, lower case, no trailing dot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The normalised name.
    pub name: &'a str,
    /// Subtree or exact.
    pub kind: EntryKind,
}

/// The result of parsing one line.
#[derive(Debug)]
pub struct ParsedLine<'a> {
    /// 1-based line number.
    pub number: u64,
    /// The line as read (BOM, CR and LF removed); empty if it was not UTF-8.
    pub text: &'a str,
    /// The class of the line.
    pub class: LineClass,
    /// For `Rejected`/`Skipped` lines the reason; for entry lines an optional warning.
    pub issue: Option<Issue<'a>>,
    names: &'a str,
    spans: &'a [(u32, u32, EntryKind)],
}

impl<'a> ParsedLine<'a> {
    /// The entries this line produced (block entries for `Entry`, allow entries for `Allow`).
    pub fn entries(&self) -> impl Iterator<Item = Entry<'a>> + '_ {
        let names = self.names;
        self.spans.iter().map(move |&(s, e, kind)| Entry {
            name: &names[s as usize..e as usize],
            kind,
        })
    }

    /// Whether this line produced allow entries rather than block entries.
    pub fn is_allow(&self) -> bool {
        self.class == LineClass::Allow
    }
}

/// Line and entry counts for one parsed file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseStats {
    /// Lines read.
    pub lines: u64,
    /// Lines classed `Entry`.
    pub entry_lines: u64,
    /// Lines classed `Allow`.
    pub allow_lines: u64,
    /// Lines classed `CommentOrBlank`.
    pub comment_or_blank: u64,
    /// Lines classed `Preamble`.
    pub preamble: u64,
    /// Lines classed `Skipped`.
    pub skipped: u64,
    /// Lines classed `Rejected`.
    pub rejected: u64,
    /// Entry or allow lines that also carried a warning.
    pub warnings: u64,
    /// Block entries produced (a hosts line may produce several).
    pub entries: u64,
    /// Allow entries produced.
    pub allow_entries: u64,
}

impl ParseStats {
    fn count(&mut self, line: &ParsedLine<'_>) {
        self.lines += 1;
        let n = line.spans.len() as u64;
        match line.class {
            LineClass::Entry => {
                self.entry_lines += 1;
                self.entries += n;
            }
            LineClass::Allow => {
                self.allow_lines += 1;
                self.allow_entries += n;
            }
            LineClass::CommentOrBlank => self.comment_or_blank += 1,
            LineClass::Preamble => self.preamble += 1,
            LineClass::Skipped => self.skipped += 1,
            LineClass::Rejected => self.rejected += 1,
        }
        if matches!(line.class, LineClass::Entry | LineClass::Allow) && line.issue.is_some() {
            self.warnings += 1;
        }
    }

    /// Sum of the per-class line counts; always equals `lines`.
    pub fn classified(&self) -> u64 {
        self.entry_lines
            + self.allow_lines
            + self.comment_or_blank
            + self.preamble
            + self.skipped
            + self.rejected
    }
}

/// Reads a whole list, calling `f` for every line, and returns the counts.
///
/// Only I/O errors stop it; bad lines are passed to `f` as [`LineClass::Rejected`].
///
/// ```
/// use hedgerow::lists::parse::{parse_reader, Format, LineClass};
/// let list = "# comment\n0.0.0.0 ads.example.com\n127.0.0.1 localhost\n1.2.3.4\n";
/// let mut names = Vec::new();
/// let stats = parse_reader(list.as_bytes(), Format::Auto, |line| {
///     names.extend(line.entries().map(|e| e.name.to_string()));
/// })
/// .unwrap();
/// assert_eq!(names, ["ads.example.com"]);
/// assert_eq!((stats.entries, stats.preamble, stats.rejected), (1, 1, 1));
/// ```
pub fn parse_reader<R: BufRead>(
    mut reader: R,
    format: Format,
    mut f: impl FnMut(&ParsedLine<'_>),
) -> std::io::Result<ParseStats> {
    let mut parser = LineParser::new(format);
    let mut stats = ParseStats::default();
    let mut buf = Vec::with_capacity(256);
    let mut number = 0u64;
    loop {
        buf.clear();
        // At most one byte past the limit is read into `buf`; the rest of a longer line is
        // skipped through the reader's own buffer.
        let limit = (MAX_LINE_BYTES + 3) as u64; // BOM, CR and LF do not count
        let mut bounded = std::io::Read::take(&mut reader, limit);
        if bounded.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        number += 1;
        if buf.len() as u64 == limit && buf.last() != Some(&b'\n') {
            skip_line(&mut reader)?;
            let line = ParsedLine {
                number,
                text: "",
                class: LineClass::Rejected,
                issue: Some(Issue {
                    reason: Reason::LineTooLong,
                    token: "",
                }),
                names: "",
                spans: &[],
            };
            stats.count(&line);
            f(&line);
            continue;
        }
        let mut bytes = &buf[..];
        if number == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = parser.parse_bytes(number, bytes);
        stats.count(&line);
        f(&line);
    }
    Ok(stats)
}

/// Consumes the rest of the current line without keeping it.
fn skip_line<R: BufRead>(reader: &mut R) -> std::io::Result<()> {
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

/// A reusable line parser: keeps its buffers between lines so parsing allocates nothing per
/// line for ASCII input.
#[derive(Debug)]
pub struct LineParser {
    format: Format,
    names: String,
    spans: Vec<(u32, u32, EntryKind)>,
}

/// Names a hosts file maps to loopback addresses for the machine's own use.
const PREAMBLE_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Adblock modifiers that change the answer instead of blocking: such rules are skipped.
const NOT_BLOCK_MODIFIERS: &[&str] = &["dnsrewrite", "dnstype", "client", "ctag", "badfilter"];

/// unbound `local-zone` types that refuse or null the answer.
const UNBOUND_BLOCK_TYPES: &[&str] = &[
    "always_null",
    "always_nxdomain",
    "always_refuse",
    "always_deny",
    "refuse",
    "deny",
    "static",
    "redirect",
    "inform_deny",
];

/// Outcome of parsing the body of a line (before the names are attached).
struct Outcome<'a> {
    class: LineClass,
    issue: Option<Issue<'a>>,
}

impl<'a> Outcome<'a> {
    fn class(class: LineClass) -> Self {
        Outcome { class, issue: None }
    }
    fn reject(reason: Reason, token: &'a str) -> Self {
        Outcome {
            class: LineClass::Rejected,
            issue: Some(Issue { reason, token }),
        }
    }
    fn skip(reason: Reason, token: &'a str) -> Self {
        Outcome {
            class: LineClass::Skipped,
            issue: Some(Issue { reason, token }),
        }
    }
}

impl LineParser {
    /// A parser for sources of the given declared format.
    pub fn new(format: Format) -> Self {
        LineParser {
            format,
            names: String::with_capacity(256),
            spans: Vec::with_capacity(8),
        }
    }

    /// Parses one line given as bytes (without its line ending).
    pub fn parse_bytes<'s>(&'s mut self, number: u64, bytes: &'s [u8]) -> ParsedLine<'s> {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.parse_line(number, text),
            Err(_) => {
                self.names.clear();
                self.spans.clear();
                ParsedLine {
                    number,
                    text: "",
                    class: LineClass::Rejected,
                    issue: Some(Issue {
                        reason: Reason::NotUtf8,
                        token: "",
                    }),
                    names: &self.names,
                    spans: &self.spans,
                }
            }
        }
    }

    /// Parses one line of text (without its line ending).
    pub fn parse_line<'s>(&'s mut self, number: u64, text: &'s str) -> ParsedLine<'s> {
        self.names.clear();
        self.spans.clear();
        let outcome = self.classify(text);
        ParsedLine {
            number,
            text,
            class: outcome.class,
            issue: outcome.issue,
            names: &self.names,
            spans: &self.spans,
        }
    }

    fn push(&mut self, token: &str, kind: EntryKind) -> Result<(), Reason> {
        let start = self.names.len();
        match crate::names::normalise_into(token, &mut self.names).map_err(Reason::from) {
            Ok(()) if crate::names::is_public_suffix(&self.names[start..]) => {
                self.names.truncate(start);
                Err(Reason::PublicSuffix)
            }
            Ok(()) => {
                self.spans
                    .push((start as u32, self.names.len() as u32, kind));
                Ok(())
            }
            Err(reason) => {
                self.names.truncate(start);
                Err(reason)
            }
        }
    }

    /// Adds one name (entry, or rejection) and returns the outcome for a single-name line.
    fn single<'a>(&mut self, token: &'a str, kind: EntryKind, class: LineClass) -> Outcome<'a> {
        if is_preamble(token) {
            return Outcome::class(LineClass::Preamble);
        }
        match self.push(token, kind) {
            Ok(()) => Outcome::class(class),
            Err(reason) => Outcome::reject(reason, token),
        }
    }

    fn gate<'a>(&self, syntax: Syntax, line: &'a str) -> Option<Outcome<'a>> {
        if syntax.accepted_by(self.format) {
            None
        } else {
            Some(Outcome::reject(
                Reason::WrongFormat(self.format, syntax.name()),
                line,
            ))
        }
    }

    fn classify<'a>(&mut self, raw: &'a str) -> Outcome<'a> {
        let line = raw.trim();
        if line.is_empty()
            || line.starts_with('#')
            || line.starts_with('!')
            || line.starts_with("//")
            || line.starts_with(';')
            || (line.starts_with('[') && line.ends_with(']'))
            || line == "server:"
        {
            return Outcome::class(LineClass::CommentOrBlank);
        }
        // Cosmetic rules contain `##`, `#@#`, `#?#`, `#$#`; check before stripping comments.
        if let Some(pos) = line.find('#') {
            let rest = &line[pos + 1..];
            if pos > 0
                && !line[..pos].ends_with(char::is_whitespace)
                && !line[..pos].ends_with('/')
                && (rest.starts_with('#')
                    || rest.starts_with("@#")
                    || rest.starts_with("?#")
                    || rest.starts_with("$#"))
            {
                return self
                    .gate(Syntax::Adblock, line)
                    .unwrap_or(Outcome::reject(Reason::AdblockCosmetic, line));
            }
        }
        let line = strip_inline_comment(line);
        if line.is_empty() {
            return Outcome::class(LineClass::CommentOrBlank);
        }

        if line.len() > 2 && line.starts_with('/') && line.ends_with('/') {
            return self
                .gate(Syntax::Adblock, line)
                .unwrap_or(Outcome::reject(Reason::AdblockRegex, line));
        }
        if line.starts_with("@@") || line.starts_with('|') {
            if let Some(o) = self.gate(Syntax::Adblock, line) {
                return o;
            }
            return self.adblock(line);
        }
        if let Some(rest) = line
            .strip_prefix("address=/")
            .or_else(|| line.strip_prefix("server=/"))
            .or_else(|| line.strip_prefix("local=/"))
        {
            if let Some(o) = self.gate(Syntax::Dnsmasq, line) {
                return o;
            }
            return self.dnsmasq(line, rest);
        }
        if let Some(rest) = line.strip_prefix("local-zone:") {
            if let Some(o) = self.gate(Syntax::Unbound, line) {
                return o;
            }
            return self.unbound(rest);
        }
        if line.starts_with("local-data:") || line.starts_with("local-data-ptr:") {
            if let Some(o) = self.gate(Syntax::Unbound, line) {
                return o;
            }
            return Outcome::skip(Reason::UnboundNotBlock, line);
        }

        let mut tokens = line.split_whitespace();
        let first = tokens.next().unwrap_or("");
        let second = tokens.next();
        if is_ip_token(first) {
            if second.is_none() {
                // A lone address: an IP literal in a domain list, or a hosts line with no name.
                return Outcome::reject(Reason::IpAddress, first);
            }
            if let Some(o) = self.gate(Syntax::Hosts, line) {
                return o;
            }
            return self.hosts(line, first);
        }
        if first.starts_with('$') || first == "@" || is_rpz_record(line) {
            if let Some(o) = self.gate(Syntax::Rpz, line) {
                return o;
            }
            return self.rpz(line);
        }
        if second.is_some() {
            return Outcome::reject(Reason::TrailingText, line);
        }
        if let Some(parent) = first.strip_prefix("*.") {
            if let Some(o) = self.gate(Syntax::Wildcard, line) {
                return o;
            }
            return self.single(parent, EntryKind::Subtree, LineClass::Entry);
        }
        if let Some(o) = self.gate(Syntax::Plain, line) {
            return o;
        }
        self.single(first, EntryKind::Subtree, LineClass::Entry)
    }

    fn hosts<'a>(&mut self, line: &'a str, address: &'a str) -> Outcome<'a> {
        let mut first_bad: Option<Issue<'a>> = None;
        let mut any_preamble = false;
        for token in line.split_whitespace().skip(1) {
            if is_preamble(token) {
                any_preamble = true;
                continue;
            }
            if let Err(reason) = self.push(token, EntryKind::Subtree) {
                first_bad.get_or_insert(Issue { reason, token });
            }
        }
        if !self.spans.is_empty() {
            return Outcome {
                class: LineClass::Entry,
                issue: first_bad,
            };
        }
        match first_bad {
            Some(issue) => Outcome {
                class: LineClass::Rejected,
                issue: Some(issue),
            },
            None if any_preamble => Outcome::class(LineClass::Preamble),
            None => Outcome::reject(Reason::HostsWithoutName, address),
        }
    }

    fn adblock<'a>(&mut self, line: &'a str) -> Outcome<'a> {
        let (allow, rule) = match line.strip_prefix("@@") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let class = if allow {
            LineClass::Allow
        } else {
            LineClass::Entry
        };
        if rule.len() > 1 && rule.starts_with('/') && rule.ends_with('/') {
            return Outcome::reject(Reason::AdblockRegex, line);
        }
        let (pattern, modifiers) = match rule.split_once('$') {
            Some((p, m)) => (p, Some(m)),
            None => (rule, None),
        };
        let mut warning = None;
        if let Some(mods) = modifiers {
            for m in mods.split(',') {
                let (name, value) = m.split_once('=').unwrap_or((m, ""));
                let name = name.trim_start_matches('~');
                if name == "dnsrewrite" && is_blocking_rewrite(value) {
                    // `$dnsrewrite=NXDOMAIN;;` answers NXDOMAIN: that is a block.
                    continue;
                }
                if let Some(&skip) = NOT_BLOCK_MODIFIERS.iter().find(|&&n| n == name) {
                    return Outcome::skip(Reason::ModifierNotBlock(skip), line);
                }
                if name == "denyallow" {
                    warning = Some(Issue {
                        reason: Reason::DenyallowIgnored,
                        token: mods,
                    });
                    continue;
                }
                if name != "important" && !name.is_empty() && warning.is_none() {
                    warning = Some(Issue {
                        reason: Reason::ModifiersIgnored,
                        token: mods,
                    });
                }
            }
        }
        let (kind, rest) = if let Some(r) = pattern.strip_prefix("||") {
            (EntryKind::Subtree, r)
        } else if let Some(r) = pattern.strip_prefix('|') {
            (EntryKind::Exact, r)
        } else {
            return Outcome::reject(Reason::AdblockUnanchored, line);
        };
        // `^` is the separator anchor, a trailing `|` the end anchor; both end the name.
        let name = rest.trim_end_matches('|');
        // Tolerate `||name ^` (a typo in AdGuard's own services list).
        let name = name.strip_suffix('^').unwrap_or(name).trim_end();
        if name.contains('^') || name.contains('/') {
            return Outcome::reject(Reason::Url, line);
        }
        let (name, kind) = match name.strip_prefix("*.") {
            Some(parent) => (parent, EntryKind::Subtree),
            None => (name, kind),
        };
        let mut o = self.single(name, kind, class);
        if o.class == class {
            o.issue = warning;
        }
        o
    }

    fn dnsmasq<'a>(&mut self, line: &'a str, rest: &'a str) -> Outcome<'a> {
        // rest = "d1/d2/target" (address=) or "d/" / "d/upstream" (server=, local=).
        let Some((domains, target)) = rest.rsplit_once('/') else {
            return Outcome::reject(Reason::DnsmasqOther, line);
        };
        if line.starts_with("server=") && !target.is_empty() {
            return Outcome::skip(Reason::DnsmasqForward, line);
        }
        if line.starts_with("address=") && target.is_empty() {
            // `address=/d/` with no target restores normal resolution.
            return Outcome::skip(Reason::DnsmasqForward, line);
        }
        let mut first_bad = None;
        for d in domains.split('/').filter(|d| !d.is_empty()) {
            if let Err(reason) = self.push(d, EntryKind::Subtree) {
                first_bad.get_or_insert(Issue { reason, token: d });
            }
        }
        if self.spans.is_empty() {
            return Outcome {
                class: LineClass::Rejected,
                issue: first_bad.or(Some(Issue {
                    reason: Reason::DnsmasqOther,
                    token: line,
                })),
            };
        }
        Outcome {
            class: LineClass::Entry,
            issue: first_bad,
        }
    }

    fn unbound<'a>(&mut self, rest: &'a str) -> Outcome<'a> {
        let mut tokens = rest.split_whitespace();
        let name = tokens.next().unwrap_or("").trim_matches('"');
        let zone_type = tokens.next().unwrap_or("");
        if !UNBOUND_BLOCK_TYPES.contains(&zone_type) {
            return Outcome::skip(Reason::UnboundNotBlock, rest);
        }
        self.single(name, EntryKind::Subtree, LineClass::Entry)
    }

    fn rpz<'a>(&mut self, line: &'a str) -> Outcome<'a> {
        let tokens: [&str; 6] = {
            let mut t = [""; 6];
            for (slot, tok) in t.iter_mut().zip(line.split_whitespace()) {
                *slot = tok;
            }
            t
        };
        let owner = tokens[0];
        if owner.starts_with('$') || owner == "@" {
            return Outcome::class(LineClass::Preamble);
        }
        // owner [ttl] [IN] CNAME target
        let mut i = 1;
        while i < 3 && !tokens[i].eq_ignore_ascii_case("CNAME") {
            i += 1;
        }
        if !tokens[i].eq_ignore_ascii_case("CNAME") {
            return Outcome::skip(Reason::RpzNotBlock, line);
        }
        let target = tokens[i + 1];
        let class = match target {
            "." | "*." => LineClass::Entry,
            "rpz-passthru." => LineClass::Allow,
            _ => return Outcome::skip(Reason::RpzNotBlock, line),
        };
        match owner.strip_prefix("*.") {
            Some(parent) => self.single(parent, EntryKind::Subtree, class),
            None => self.single(owner, EntryKind::Exact, class),
        }
    }
}

/// `$dnsrewrite` values that refuse the name instead of rewriting it: an rcode other than
/// NOERROR with no record (`NXDOMAIN;;`, `REFUSED`, `SERVFAIL;;`).
fn is_blocking_rewrite(value: &str) -> bool {
    let mut parts = value.split(';');
    let rcode = parts.next().unwrap_or("");
    ["NXDOMAIN", "REFUSED", "SERVFAIL"]
        .iter()
        .any(|r| r.eq_ignore_ascii_case(rcode))
        && parts.all(str::is_empty)
}

/// Cuts `name # comment` and `name<TAB># comment`; a `#` glued to text (`address=/d/#`) stays.
fn strip_inline_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && i > 0 && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
            return line[..i].trim_end();
        }
    }
    line
}

fn is_preamble(token: &str) -> bool {
    let t = token.strip_suffix('.').unwrap_or(token);
    PREAMBLE_NAMES.iter().any(|p| p.eq_ignore_ascii_case(t))
}

/// Whether the first token of a line is an address (`0.0.0.0`, `::`, `fe80::1%lo0`).
fn is_ip_token(token: &str) -> bool {
    if token.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let addr = token.split_once('%').map_or(token, |(a, _)| a);
    addr.contains(':') && addr.parse::<Ipv6Addr>().is_ok()
}

/// `name [ttl] [IN] CNAME target` (only CNAME records matter for RPZ; other records in such
/// zones are recognised by a class or type word in the second or third position).
fn is_rpz_record(line: &str) -> bool {
    let mut t = line.split_whitespace().skip(1);
    let (a, b) = (t.next().unwrap_or(""), t.next().unwrap_or(""));
    [a, b].iter().any(|w| {
        ["CNAME", "IN", "A", "AAAA", "NS", "SOA", "TXT"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
    })
}

/// Normalises a list entry's name ([`crate::names::normalise`]); the error is the line's
/// rejection reason.
///
/// ```
/// use hedgerow::lists::parse::{normalize_name, Reason};
/// assert_eq!(normalize_name("WWW.Example.COM.").unwrap(), "www.example.com");
/// assert_eq!(normalize_name("10.0.0.1"), Err(Reason::IpAddress));
/// ```
pub fn normalize_name(name: &str) -> Result<String, Reason> {
    crate::names::normalise(name).map_err(Reason::from)
}

impl From<NameError> for Reason {
    fn from(e: NameError) -> Reason {
        match e {
            NameError::Empty | NameError::EmptyLabel => Reason::EmptyLabel,
            NameError::IpAddress => Reason::IpAddress,
            NameError::Url => Reason::Url,
            NameError::Port => Reason::Port,
            NameError::LabelTooLong => Reason::LabelTooLong,
            NameError::NameTooLong => Reason::NameTooLong,
            NameError::SingleLabel => Reason::SingleLabel,
            NameError::BadChar(c) => Reason::BadChar(c),
            NameError::InnerWildcard => Reason::InnerWildcard,
            NameError::Idna => Reason::Idna,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Line = (LineClass, Vec<(String, EntryKind)>, Option<Reason>);

    fn parse(format: Format, text: &str) -> Vec<Line> {
        let mut out = Vec::new();
        parse_reader(text.as_bytes(), format, |l| {
            out.push((
                l.class,
                l.entries().map(|e| (e.name.to_string(), e.kind)).collect(),
                l.issue.map(|i| i.reason),
            ))
        })
        .unwrap();
        out
    }

    fn one(format: Format, line: &str) -> Line {
        let mut v = parse(format, line);
        assert_eq!(v.len(), 1, "{line}");
        v.remove(0)
    }

    fn names(format: Format, line: &str) -> Vec<String> {
        one(format, line).1.into_iter().map(|(n, _)| n).collect()
    }

    use EntryKind::*;
    use LineClass::*;

    #[test]
    fn plain_and_normalisation() {
        assert_eq!(names(Format::Domains, "Example.COM."), ["example.com"]);
        assert_eq!(
            names(Format::Domains, "  a_b.example.com  "),
            ["a_b.example.com"]
        );
        assert_eq!(names(Format::Domains, "bücher.de"), ["xn--bcher-kva.de"]);
        assert_eq!(
            names(Format::Domains, "xn--d1acpjx3f.xn--p1ai"),
            ["xn--d1acpjx3f.xn--p1ai"]
        );
        assert_eq!(one(Format::Domains, "x.com").0, Entry);
    }

    #[test]
    fn public_suffixes_are_rejected_names_below_them_are_not() {
        let lines = parse(
            Format::Auto,
            "co.uk\ncom.\n@@||ac.uk^\n||github.io^\nbbc.co.uk\nuser.github.io\nCO.UK\n",
        );
        let reasons: Vec<Option<Reason>> = lines.iter().map(|l| l.2).collect();
        // A company's own suffix (github.io, on the list's private section) may be listed
        // whole: a category can mean every site on it.
        assert_eq!(
            reasons,
            [
                Some(Reason::PublicSuffix),
                Some(Reason::SingleLabel),
                Some(Reason::PublicSuffix),
                None,
                None,
                None,
                Some(Reason::PublicSuffix),
            ]
        );
        assert_eq!(lines[4].1, [("bbc.co.uk".to_string(), EntryKind::Subtree)]);
        assert!(Reason::PublicSuffix
            .to_string()
            .contains("Public Suffix List"));
    }

    #[test]
    fn overlong_lines_are_rejected_without_being_read() {
        let long = "a".repeat(1 << 20);
        let text = format!(
            "one.example\n{long}.example\ntwo.example\n{}\n",
            "b".repeat(MAX_LINE_BYTES)
        );
        let lines = parse(Format::Auto, &text);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].1[0].0, "one.example");
        assert_eq!(lines[1].0, LineClass::Rejected);
        assert_eq!(lines[1].2, Some(Reason::LineTooLong));
        assert_eq!(
            lines[2].1[0].0, "two.example",
            "the next line is read whole"
        );
        // At the limit: read (and rejected for what it is, not for its length).
        assert_ne!(lines[3].2, Some(Reason::LineTooLong));
    }

    #[test]
    fn rejections() {
        let r = |s: &str| one(Format::Auto, s).2;
        assert_eq!(r("85.17.187.83"), Some(Reason::IpAddress));
        assert_eq!(r("http://example.com/x"), Some(Reason::Url));
        assert_eq!(r("example.com/path"), Some(Reason::Url));
        assert_eq!(r("example.com:8080"), Some(Reason::Port));
        assert_eq!(r("a..example.com"), Some(Reason::EmptyLabel));
        assert_eq!(r(".example.com"), Some(Reason::EmptyLabel));
        assert_eq!(
            r(&format!("{}.com", "a".repeat(64))),
            Some(Reason::LabelTooLong)
        );
        let long = vec!["abcdefghi"; 26].join(".");
        assert_eq!(r(&long), Some(Reason::NameTooLong));
        assert_eq!(r("intranet"), Some(Reason::SingleLabel));
        assert_eq!(r("ads*.example.com"), Some(Reason::InnerWildcard));
        assert_eq!(r("a b"), Some(Reason::TrailingText));
        assert_eq!(r("ex ample.com$"), Some(Reason::TrailingText));
        assert_eq!(r("exa%mple.com"), Some(Reason::BadChar('%')));
        for s in ["85.17.187.83", "intranet", "a b"] {
            assert_eq!(one(Format::Auto, s).0, Rejected);
        }
    }

    #[test]
    fn length_limits_exact() {
        let label63 = "a".repeat(63);
        assert_eq!(names(Format::Auto, &format!("{label63}.com")).len(), 1);
        // 253 characters exactly is allowed.
        let name = format!("{}.{}.{}.{}", label63, label63, label63, "b".repeat(61));
        assert_eq!(name.len(), 253);
        assert_eq!(names(Format::Auto, &name), std::slice::from_ref(&name));
        assert_eq!(
            names(Format::Auto, &format!("{name}.")),
            std::slice::from_ref(&name)
        );
        assert_eq!(
            one(Format::Auto, &format!("x{name}")).2,
            Some(Reason::NameTooLong)
        );
    }

    #[test]
    fn hosts_lines() {
        assert_eq!(
            one(Format::Hosts, "0.0.0.0 ads.example.com"),
            (Entry, vec![("ads.example.com".into(), Subtree)], None)
        );
        assert_eq!(
            names(Format::Hosts, "127.0.0.1\ta.com  b.com\tc.com # several"),
            ["a.com", "b.com", "c.com"]
        );
        assert_eq!(
            names(Format::Hosts, ":: v6.example.com"),
            ["v6.example.com"]
        );
        assert_eq!(
            names(Format::Hosts, "0.0.0.0 x.com\t# Porn domain"),
            ["x.com"]
        );
        for pre in [
            "127.0.0.1 localhost",
            "127.0.0.1  localhost.localdomain",
            "127.0.0.1 local",
            "255.255.255.255 broadcasthost",
            "::1 localhost ip6-localhost ip6-loopback",
            "fe80::1%lo0 localhost",
            "ff02::2 ip6-allrouters",
            "0.0.0.0 0.0.0.0",
        ] {
            assert_eq!(one(Format::Hosts, pre).0, Preamble, "{pre}");
        }
        // A hosts line mixing good and bad names keeps the good one, with a warning.
        let (class, entries, issue) = one(Format::Hosts, "0.0.0.0 good.com 1.2.3.4");
        assert_eq!(
            (class, entries.len(), issue),
            (Entry, 1, Some(Reason::IpAddress))
        );
        assert_eq!(
            one(Format::Hosts, "0.0.0.0 85.17.187.83").2,
            Some(Reason::IpAddress)
        );
        assert_eq!(one(Format::Hosts, "0.0.0.0").2, Some(Reason::IpAddress));
        assert_eq!(
            one(Format::Domains, "85.17.187.83").2,
            Some(Reason::IpAddress)
        );
        assert_eq!(one(Format::Hosts, "bare.example.com").0, Entry);
    }

    #[test]
    fn adblock_rules() {
        assert_eq!(
            one(Format::Adblock, "||ads.example.com^").1,
            [("ads.example.com".into(), Subtree)]
        );
        assert_eq!(
            one(Format::Adblock, "|www.example.com^").1,
            [("www.example.com".into(), Exact)]
        );
        assert_eq!(
            one(Format::Adblock, "||espn.in").1,
            [("espn.in".into(), Subtree)]
        );
        assert_eq!(
            one(Format::Adblock, "||x.example.com^|").1,
            [("x.example.com".into(), Subtree)]
        );
        let (class, e, issue) = one(Format::Adblock, "@@||good.example.com^");
        assert_eq!(
            (class, e, issue),
            (Allow, vec![("good.example.com".into(), Subtree)], None)
        );
        let (class, e, issue) = one(Format::Adblock, "||t.example.com^$third-party");
        assert_eq!(class, Entry);
        assert_eq!(e.len(), 1);
        assert_eq!(issue, Some(Reason::ModifiersIgnored));
        assert_eq!(one(Format::Adblock, "||a.example.com^$important").2, None);
        let (class, e, issue) = one(
            Format::Adblock,
            "||qq.com^$denyallow=wx.qq.com|weixin.qq.com",
        );
        assert_eq!(
            (class, e.len(), issue),
            (Entry, 1, Some(Reason::DenyallowIgnored))
        );
        assert_eq!(
            one(Format::Adblock, "||slack-files.com ^").1,
            [("slack-files.com".into(), Subtree)]
        );
        for (rule, m) in [
            (
                "|www.google.com^$dnsrewrite=NOERROR;CNAME;forcesafesearch.google.com",
                "dnsrewrite",
            ),
            ("||example.org^$dnstype=~CNAME", "dnstype"),
            ("||example.org^$client=127.0.0.1", "client"),
            ("||example.org^$dnsrewrite=NOERROR;A;1.2.3.4", "dnsrewrite"),
            ("||example.org^$dnsrewrite=1.2.3.4", "dnsrewrite"),
        ] {
            assert_eq!(
                one(Format::Adblock, rule),
                (Skipped, vec![], Some(Reason::ModifierNotBlock(m)))
            );
        }
        // An NXDOMAIN rewrite is a block (AdGuard's iCloud Private Relay service rules).
        assert_eq!(
            one(Format::Adblock, "||mask.icloud.com^$dnsrewrite=NXDOMAIN;;"),
            (Entry, vec![("mask.icloud.com".into(), Subtree)], None)
        );
        assert_eq!(
            one(Format::Adblock, "||x.example^$dnsrewrite=REFUSED").0,
            Entry
        );
        assert_eq!(
            one(Format::Adblock, "/ads[0-9]+\\.com/").2,
            Some(Reason::AdblockRegex)
        );
        assert_eq!(
            one(Format::Adblock, "example.com##.ad-banner").2,
            Some(Reason::AdblockCosmetic)
        );
        assert_eq!(
            one(Format::Adblock, "||ads*.example.com^").2,
            Some(Reason::InnerWildcard)
        );
        assert_eq!(
            one(Format::Adblock, "||example.com/path^").2,
            Some(Reason::Url)
        );
        assert_eq!(one(Format::Adblock, "! comment").0, CommentOrBlank);
        assert_eq!(one(Format::Adblock, "[Adblock Plus 2.0]").0, CommentOrBlank);
        assert_eq!(
            one(Format::Adblock, "||*.wild.example.com^").1,
            [("wild.example.com".into(), Subtree)]
        );
    }

    #[test]
    fn wildcard_dnsmasq_unbound_rpz() {
        assert_eq!(
            one(Format::Domains, "*.example.com").1,
            [("example.com".into(), Subtree)]
        );
        assert_eq!(
            names(Format::Auto, "address=/012proxy.ga/#"),
            ["012proxy.ga"]
        );
        assert_eq!(
            names(Format::Auto, "address=/a.com/b.com/127.0.0.1"),
            ["a.com", "b.com"]
        );
        assert_eq!(
            names(Format::Auto, "server=/drugs.example/"),
            ["drugs.example"]
        );
        assert_eq!(
            one(Format::Auto, "server=/corp.example/10.0.0.1").0,
            Skipped
        );
        assert_eq!(
            names(Format::Auto, "local-zone: \"012proxy.ga.\" always_null"),
            ["012proxy.ga"]
        );
        assert_eq!(
            one(Format::Auto, "local-zone: \"x.com.\" transparent").0,
            Skipped
        );
        assert_eq!(one(Format::Auto, "server:").0, CommentOrBlank);
        assert_eq!(
            one(Format::Auto, "4chan.org CNAME .").1,
            [("4chan.org".into(), Exact)]
        );
        assert_eq!(
            one(Format::Auto, "*.4chan.org CNAME .").1,
            [("4chan.org".into(), Subtree)]
        );
        assert_eq!(
            one(Format::Auto, "ok.org 300 IN CNAME rpz-passthru.").0,
            Allow
        );
        assert_eq!(one(Format::Auto, "$TTL 5").0, Preamble);
        assert_eq!(
            one(
                Format::Auto,
                "@ IN SOA LOCALHOST. postmaster.no.email.please. ( 1 3600 600 2592000 3600 )"
            )
            .0,
            Preamble
        );
        assert_eq!(one(Format::Auto, "@ IN NS LOCALHOST.").0, Preamble);
        assert_eq!(one(Format::Auto, "LOCALHOST. IN A 127.0.0.1").0, Skipped);
    }

    #[test]
    fn format_gating() {
        let (class, _, issue) = one(Format::Domains, "0.0.0.0 a.com");
        assert_eq!(class, Rejected);
        assert!(matches!(
            issue,
            Some(Reason::WrongFormat(Format::Domains, _))
        ));
        assert_eq!(one(Format::Hosts, "||a.com^").0, Rejected);
        assert_eq!(one(Format::Adblock, "address=/a.com/#").0, Rejected);
        assert_eq!(one(Format::Auto, "||a.com^").0, Entry);
    }

    #[test]
    fn comments_bom_crlf_and_bad_utf8() {
        let text = "\u{feff}# c\r\n! c\r\n// c\r\n\r\nA.Example.COM\r\n   \r\n";
        let lines = parse(Format::Domains, text);
        let classes: Vec<_> = lines.iter().map(|l| l.0).collect();
        assert_eq!(
            classes,
            [
                CommentOrBlank,
                CommentOrBlank,
                CommentOrBlank,
                CommentOrBlank,
                Entry,
                CommentOrBlank
            ]
        );
        assert_eq!(lines[4].1, [("a.example.com".into(), Subtree)]);
        // BOM directly before a name.
        assert_eq!(parse(Format::Domains, "\u{feff}x.com\n")[0].1[0].0, "x.com");
        let mut classes = vec![];
        let stats = parse_reader(
            &b"ok.com\n\xff\xfe.com\nlast.com"[..],
            Format::Domains,
            |l| classes.push((l.number, l.class)),
        )
        .unwrap();
        assert_eq!(classes, [(1, Entry), (2, Rejected), (3, Entry)]);
        assert_eq!(stats.lines, 3);
        assert_eq!(stats.classified(), 3);
    }

    #[test]
    fn normalize_public() {
        assert_eq!(normalize_name("ÉCOLE.fr").unwrap(), "xn--cole-9oa.fr");
        assert_eq!(normalize_name("a.b"), Ok("a.b".to_string()));
        assert_eq!(normalize_name("com"), Err(Reason::SingleLabel));
        assert_eq!(normalize_name("::1"), Err(Reason::IpAddress));
        // Punycode that does not decode is refused; valid punycode is kept as is.
        assert_eq!(normalize_name("xn--zz.example.com"), Err(Reason::Idna));
        assert_eq!(normalize_name("xn--abc.com"), Err(Reason::Idna));
        // Labels starting or ending with '-' occur in real DNS (Blogger, Tumblr): kept.
        assert_eq!(
            normalize_name("preview-.stripchat.com").unwrap(),
            "preview-.stripchat.com"
        );
        assert_eq!(
            normalize_name("XN--15qt0wcuw.example.com").unwrap(),
            "xn--15qt0wcuw.example.com"
        );
        assert_eq!(normalize_name(""), Err(Reason::EmptyLabel));
    }
}
