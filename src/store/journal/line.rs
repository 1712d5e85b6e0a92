//! One journal line, written by hand: the JSON `serde_json` writes for an [`Entry`] (a test
//! holds the two byte for byte equal), without its per-field machinery.
//!
//! Why: the DNS thread journals while the writer is behind, which under saturation is most
//! blocked queries; through `serde_json` a line cost about 4,300 instructions (callgrind,
//! benches/README.md), half what answering the query costs; this writes one in about
//! 1,800. Strings that need escaping (rare: a device or group name with a quote) still go
//! through `serde_json`.
//!
//! [`Entry`]: super::Entry

use std::net::IpAddr;

use crate::{
    clock::unix_millis,
    event::{EventName, QueryEvent},
};

/// Appends the line for `e`, numbered `seq`, with its newline.
pub(super) fn write(buf: &mut Vec<u8>, seq: u64, e: &QueryEvent) -> Result<(), serde_json::Error> {
    // One growth check for the usual line (about 250 bytes), not one per piece.
    buf.reserve(512);
    let mut n = itoa::Buffer::new();
    buf.extend_from_slice(b"{\"seq\":");
    buf.extend_from_slice(n.format(seq).as_bytes());
    buf.extend_from_slice(b",\"at\":");
    buf.extend_from_slice(n.format(unix_millis(e.at)).as_bytes());
    buf.extend_from_slice(b",\"client\":");
    client(buf, e.client)?;
    if let Some(device) = &e.device {
        field(buf, "device", device)?;
    }
    if let Some(group) = &e.group {
        field(buf, "group", group)?;
    }
    match &e.name {
        EventName::Clear(name) => field(buf, "name", name)?,
        EventName::Withheld => buf.extend_from_slice(b",\"name\":null"),
    }
    buf.extend_from_slice(b",\"qtype\":");
    buf.extend_from_slice(n.format(e.qtype).as_bytes());
    label(buf, "transport", e.transport.label());
    label(buf, "disposition", e.disposition.label());
    if let Some(reason) = e.reason {
        label(buf, "reason", reason.label());
    }
    if let Some(category) = &e.category {
        field(buf, "category", category)?;
    }
    if let Some(rule) = &e.rule {
        field(buf, "rule", rule)?;
    }
    if let Some(severity) = e.severity {
        label(buf, "severity", severity.label());
    }
    buf.extend_from_slice(b",\"rcode\":");
    buf.extend_from_slice(n.format(e.rcode).as_bytes());
    buf.extend_from_slice(b",\"us\":");
    let us = u64::try_from(e.duration.as_micros()).unwrap_or(u64::MAX);
    buf.extend_from_slice(n.format(us).as_bytes());
    buf.extend_from_slice(b"}\n");
    Ok(())
}

/// `,"key":"value"`; `key` is one of this file's names, never in need of escaping. Inlined
/// so that the key's pieces are constants the compiler writes without a `memcpy` call (with
/// the one `reserve`: 2,790 → 1,920 instructions a line).
#[inline(always)]
fn field(buf: &mut Vec<u8>, key: &str, value: &str) -> Result<(), serde_json::Error> {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
    string(buf, value)
}

/// `,"key":"value"` for one of this crate's own labels (lower-case words and hyphens: nothing
/// to escape, nothing to scan; the test below writes every one).
#[inline(always)]
fn label(buf: &mut Vec<u8>, key: &str, value: &'static str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":\"");
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'"');
}

/// `value` as a JSON string: copied when it has nothing to escape, else `serde_json`'s.
#[inline(always)]
fn string(buf: &mut Vec<u8>, value: &str) -> Result<(), serde_json::Error> {
    if needs_escape(value.as_bytes()) {
        return serde_json::to_writer(&mut *buf, value);
    }
    buf.push(b'"');
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'"');
    Ok(())
}

/// Whether `text` holds a byte JSON escapes: `"`, `\` or a control character (below 0x20;
/// `serde_json` leaves the rest of UTF-8 as it is).
///
/// Eight bytes at a time (the classic "has a zero byte" / "has a byte less than n" tests on a
/// `u64`, exact as to whether such a byte exists): about 3 instructions a byte, where a
/// byte-at-a-time loop took 14 (callgrind, benches/README.md).
fn needs_escape(text: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0;
    let has = |x: u64, b: u8| below(x ^ (ONES * u64::from(b)), 1);
    let word = |x: u64| below(x, 0x20) || has(x, b'"') || has(x, b'\\');
    let mut words = text.chunks_exact(8);
    for chunk in &mut words {
        let mut w = [0; 8];
        w.copy_from_slice(chunk);
        if word(u64::from_le_bytes(w)) {
            return true;
        }
    }
    // The tail, padded with a letter.
    let tail = words.remainder();
    let mut w = [b'a'; 8];
    w[..tail.len()].copy_from_slice(tail);
    word(u64::from_le_bytes(w))
}

/// The address as `serde` writes it for a human-readable format: its display form, quoted.
fn client(buf: &mut Vec<u8>, ip: IpAddr) -> Result<(), serde_json::Error> {
    match ip {
        IpAddr::V4(v4) => {
            let mut n = itoa::Buffer::new();
            buf.push(b'"');
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                buf.extend_from_slice(n.format(octet).as_bytes());
            }
            buf.push(b'"');
            Ok(())
        }
        // Rare on a school's network and not worth a formatter of its own.
        IpAddr::V6(_) => serde_json::to_writer(&mut *buf, &ip),
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::{
        event::{BlockReason, Disposition, Severity, Transport},
        store::{journal::Entry, test_event},
    };

    /// Events covering every optional field, both address families, a withheld name and text
    /// that needs escaping (quotes, backslashes, control characters) or not (non-ASCII).
    fn events() -> Vec<QueryEvent> {
        let full = test_event(EventName::Clear("a.example".into()));
        let mut out = vec![full.clone(), test_event(EventName::Withheld)];
        out.push(QueryEvent {
            device: None,
            group: None,
            reason: None,
            category: None,
            rule: None,
            severity: None,
            disposition: Disposition::Forwarded,
            transport: Transport::Udp,
            client: "2001:db8::1".parse().unwrap(),
            ..full.clone()
        });
        out.push(QueryEvent {
            device: Some(Arc::from("Mr \"B\"'s laptop\\1")),
            group: Some(Arc::from("staff\troom\u{1}")),
            name: EventName::Clear("xn--bcher-kva.example".into()),
            category: Some("porn,gambling".into()),
            rule: Some("list \u{e9}l\u{e8}ves \u{2014} \"x\"\n".into()),
            reason: Some(BlockReason::Category),
            severity: Some(Severity::Low),
            client: "255.0.10.200".parse().unwrap(),
            duration: Duration::from_micros(u64::MAX),
            at: crate::clock::from_unix_millis(0),
            ..full
        });
        out
    }

    #[test]
    fn escaping_is_found_at_every_position_of_every_length() {
        let naive = |t: &[u8]| t.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut text = vec![b'x'; len];
                    text[at] = b;
                    assert_eq!(needs_escape(&text), naive(&text), "{b:#x} at {at} of {len}");
                    // Bytes that borrow in the word's arithmetic around the one tested.
                    text.iter_mut().for_each(|c| *c = 0xff);
                    text[at] = b;
                    assert_eq!(
                        needs_escape(&text),
                        naive(&text),
                        "{b:#x} at {at} of {len} (0xff)"
                    );
                }
            }
        }
    }

    #[test]
    fn every_label_is_written_as_serde_json_writes_it() {
        let base = test_event(EventName::Clear("a.example".into()));
        let mut all = Vec::new();
        for transport in Transport::ALL {
            for disposition in Disposition::ALL {
                all.push(QueryEvent {
                    transport,
                    disposition,
                    ..base.clone()
                });
            }
        }
        for reason in BlockReason::ALL {
            for severity in Severity::ALL {
                all.push(QueryEvent {
                    reason: Some(reason),
                    severity: Some(severity),
                    ..base.clone()
                });
            }
        }
        for e in all {
            let mut ours = Vec::new();
            write(&mut ours, 1, &e).unwrap();
            let mut theirs = serde_json::to_vec(&Entry::from_event(1, &e)).unwrap();
            theirs.push(b'\n');
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn lines_are_byte_for_byte_what_serde_json_writes_and_read_back_as_the_event() {
        for (seq, e) in events().into_iter().enumerate() {
            let seq = seq as u64 * 1_000_003;
            let mut ours = Vec::new();
            write(&mut ours, seq, &e).unwrap();
            let mut theirs = serde_json::to_vec(&Entry::from_event(seq, &e)).unwrap();
            theirs.push(b'\n');
            assert_eq!(
                String::from_utf8(ours.clone()).unwrap(),
                String::from_utf8(theirs).unwrap()
            );
            let back: Entry = serde_json::from_slice(&ours).unwrap();
            assert_eq!(back.seq, seq);
            assert_eq!(back.to_event().unwrap(), e);
        }
    }
}
