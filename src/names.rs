//! Domain names: the one place where a name becomes the lower-case matching key that lists,
//! policy, the cache and the store compare.
//!
//! Two entry points, for two kinds of input:
//!
//! * [`key`] — a name read off the wire (a hickory [`Name`]). It is already a valid DNS name,
//!   so it is only lowered and joined, without the trailing dot; the root is `""`. This runs
//!   once per query, so it does no validation and no IDNA.
//! * [`normalise`] — a name typed by a person (configuration, `hedgerow lists lookup`) or read
//!   from a list line: ASCII lower case, no trailing dot, internationalised names to punycode
//!   (UTS-46), and it must be a usable multi-label host name. Underscores are allowed (they
//!   occur in real lists and in real DNS names). What it refuses says why, so list imports
//!   and configuration errors can tell the technician.
//!
//! ```
//! use hedgerow::names::{normalise, NameError};
//! assert_eq!(normalise("WWW.Example.COM.").unwrap(), "www.example.com");
//! assert_eq!(normalise("bücher.de").unwrap(), "xn--bcher-kva.de");
//! assert_eq!(normalise("10.0.0.1"), Err(NameError::IpAddress));
//! assert_eq!(normalise("com"), Err(NameError::SingleLabel));
//! ```

use std::net::Ipv6Addr;

use hickory_proto::rr::Name;

/// Why a name cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing but dots or spaces.
    #[error("empty name")]
    Empty,
    /// An IPv4 or IPv6 address where a name was expected.
    #[error("IP address, not a name (DNS filtering blocks names, not addresses)")]
    IpAddress,
    /// A URL or a name with a path.
    #[error("URL or path: only whole host names can be blocked by DNS")]
    Url,
    /// `name:port`.
    #[error("name with a port: only the name can be blocked")]
    Port,
    /// An empty label (`a..b`, leading dot).
    #[error("empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    /// A label longer than 63 bytes.
    #[error("label longer than 63 characters")]
    LabelTooLong,
    /// A name longer than 253 bytes.
    #[error("name longer than 253 characters")]
    NameTooLong,
    /// A single label (`localdomain`, `com`): would block a whole TLD or is junk.
    #[error("single label: a whole top-level domain or a local name")]
    SingleLabel,
    /// A character that cannot occur in a host name.
    #[error("character {0:?} cannot occur in a host name")]
    BadChar(char),
    /// A `*` inside a name (`ads*.example.com`).
    #[error("`*` inside a name is not supported")]
    InnerWildcard,
    /// An internationalised name that UTS-46 refuses.
    #[error("internationalised name refused by UTS-46 (IDNA)")]
    Idna,
}

/// The matching key of a name off the wire: lower case, no trailing dot; the root is `""`.
///
/// ```
/// use hickory_proto::rr::Name;
/// assert_eq!(hedgerow::names::key(&Name::from_ascii("WWW.Example.com.").unwrap()), "www.example.com");
/// ```
pub fn key(name: &Name) -> String {
    let mut key = String::with_capacity(name.len());
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            key.push('.');
        }
        for &b in label {
            key.push(b.to_ascii_lowercase() as char);
        }
    }
    key
}

/// Normalises a name typed by a person or read from a list (see the module doc).
pub fn normalise(name: &str) -> Result<String, NameError> {
    let mut out = String::with_capacity(name.len());
    normalise_into(name.trim(), &mut out)?;
    Ok(out)
}

/// Appends the normalised form of `token` to `out` (list import reuses one buffer); on error
/// `out` may hold a partial name.
pub(crate) fn normalise_into(token: &str, out: &mut String) -> Result<(), NameError> {
    let t = token.strip_suffix('.').unwrap_or(token);
    if t.is_empty() {
        return Err(NameError::Empty);
    }
    if t.contains("://") || t.contains('/') {
        return Err(NameError::Url);
    }
    if t.contains(':') {
        let addr = t.trim_start_matches('[').split(']').next().unwrap_or(t);
        return Err(if addr.parse::<Ipv6Addr>().is_ok() {
            NameError::IpAddress
        } else {
            NameError::Port
        });
    }
    if t.is_ascii() && !has_punycode_label(t.as_bytes()) {
        return push_ascii(t.as_bytes(), out);
    }
    // Non-ASCII, or `xn--` labels that must decode to valid UTS-46 (e.g. NFC) labels.
    match idna::domain_to_ascii_cow(t.as_bytes(), idna::AsciiDenyList::URL) {
        Ok(ascii) => {
            let a = ascii.strip_suffix('.').unwrap_or(&ascii);
            push_ascii(a.as_bytes(), out)
        }
        Err(_) => Err(NameError::Idna),
    }
}

fn has_punycode_label(name: &[u8]) -> bool {
    name.split(|&b| b == b'.')
        .any(|l| l.len() >= 4 && l[..4].eq_ignore_ascii_case(b"xn--"))
}

fn push_ascii(name: &[u8], out: &mut String) -> Result<(), NameError> {
    if name.len() > 253 {
        return Err(NameError::NameTooLong);
    }
    let mut labels = 0usize;
    let mut label_len = 0usize;
    let mut last_label_numeric = true;
    for &b in name {
        let c = b.to_ascii_lowercase();
        match c {
            b'.' => {
                if label_len == 0 {
                    return Err(NameError::EmptyLabel);
                }
                labels += 1;
                label_len = 0;
                last_label_numeric = true;
            }
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {
                label_len += 1;
                if label_len > 63 {
                    return Err(NameError::LabelTooLong);
                }
                last_label_numeric &= c.is_ascii_digit();
            }
            b'*' => return Err(NameError::InnerWildcard),
            _ => return Err(NameError::BadChar(c as char)),
        }
        // Only ASCII bytes reach here.
        out.push(c as char);
    }
    if label_len == 0 {
        return Err(NameError::EmptyLabel);
    }
    labels += 1;
    if last_label_numeric {
        // No TLD is numeric: `1.2.3.4`, `10.0.0`, `85.17.187.83`.
        return Err(NameError::IpAddress);
    }
    if labels < 2 {
        return Err(NameError::SingleLabel);
    }
    Ok(())
}

/// Whether `name` (normalised) is exactly a public suffix run by a registry (the Public
/// Suffix List's ICANN section: `com`, `co.uk`, `ac.uk`), which no list entry may be: it
/// would block every site under it. Suffixes in the list's private section (`github.io`,
/// `cloudfront.net`, dynamic-DNS roots) are companies' own domains, which a category may well
/// mean to block whole.
///
/// ```
/// assert!(hedgerow::names::is_public_suffix("co.uk"));
/// assert!(!hedgerow::names::is_public_suffix("bbc.co.uk"));
/// assert!(!hedgerow::names::is_public_suffix("servegame.com"));
/// ```
pub fn is_public_suffix(name: &str) -> bool {
    use psl::Psl;
    psl::List
        .suffix(name.as_bytes())
        .is_some_and(|s| s.typ() == Some(psl::Type::Icann) && s.as_bytes() == name.as_bytes())
}

/// The site a name belongs to: its registrable domain on the Public Suffix List (both
/// sections, so `a.github.io` and `b.github.io` are different sites), or the name itself.
///
/// ```
/// assert_eq!(hedgerow::names::registrable_domain("cdn.www.bbc.co.uk"), "bbc.co.uk");
/// ```
pub fn registrable_domain(name: &str) -> &str {
    use psl::Psl;
    psl::List
        .domain(name.as_bytes())
        .and_then(|d| std::str::from_utf8(d.as_bytes()).ok())
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_key_and_typed_names_agree() {
        for typed in ["Example.COM", "www.example.com.", "a_b.example.org"] {
            let wire = Name::from_ascii(typed).unwrap();
            assert_eq!(key(&wire), normalise(typed).unwrap());
        }
        assert_eq!(key(&Name::root()), "");
        // Bytes outside ASCII (a label off the wire may hold any) each become the character
        // of that code point, so two spellings differing only there never share a key.
        let raw = Name::from_labels([&b"X\xc3\xa9Y"[..], b"Test"]).unwrap();
        assert_eq!(key(&raw), "x\u{c3}\u{a9}y.test");
        let other = Name::from_labels([&b"x\xc3\x89y"[..], b"test"]).unwrap();
        assert_ne!(key(&raw), key(&other));
        assert_eq!(normalise("  "), Err(NameError::Empty));
        assert_eq!(normalise("a..b"), Err(NameError::EmptyLabel));
    }
}
