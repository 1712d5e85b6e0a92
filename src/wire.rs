//! DNS wire format for the UDP hot path: reading one plain query and writing resource records
//! straight into a response, without building hickory `Message`s.
//!
//! hickory's full message codec (decode into a `Message`, encode with a compression table that
//! allocates per label) was a third of a cached answer's user time under load. Almost every
//! query a school network sends is the same shape — one question, class IN, at most an OPT
//! record — so [`WireQuery::read`] accepts exactly that shape and returns `None` for anything
//! else; the caller then hands the datagram to hickory, which is right about the rare cases.
//!
//! Records are written with the owner name compressed to the question (`0xC00C`) when it is
//! the question name, and every other name uncompressed (always valid, RFC 1035 §4.1.4). The
//! same writer fills the cache's pre-encoded answers ([`Encoded`]), which a cache hit copies
//! and patches (ID, TTLs) instead of encoding again.
//!
//! ```
//! use hedgerow::wire::WireQuery;
//! // dig-style query for example.com A with EDNS (payload 1232, DO clear).
//! let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
//! q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
//! q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
//! let query = WireQuery::read(&q).unwrap();
//! assert_eq!(query.name.to_ascii(), "example.com.");
//! assert_eq!(query.edns.unwrap().payload, 1232);
//! ```

use hickory_proto::{
    op::ResponseCode,
    rr::{
        rdata::{CNAME, NS, PTR},
        DNSClass, Name, RData, Record, RecordType,
    },
    serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding},
    ProtoError,
};

/// Offset of the question name in every DNS message (right after the header).
const QUESTION_OFFSET: u16 = 12;
/// A compression pointer to the question name.
const POINTER_TO_QUESTION: [u8; 2] = [0xC0 | (QUESTION_OFFSET >> 8) as u8, QUESTION_OFFSET as u8];

/// What the client's OPT record said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEdns {
    /// The UDP payload size the client can receive.
    pub payload: u16,
    /// The DO bit (DNSSEC records wanted).
    pub dnssec_ok: bool,
}

/// A plain query read straight from a datagram (it borrows nothing, so a query that waits
/// for an upstream can outlive the receive buffer).
#[derive(Debug)]
pub struct WireQuery {
    /// The message ID.
    pub id: u16,
    flags: u16,
    /// The question name, in the client's letter case (echoed as sent).
    pub name: Name,
    /// The question type.
    pub qtype: RecordType,
    /// The client's EDNS, when it sent an OPT record (version 0).
    pub edns: Option<ClientEdns>,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// A plain query seen in place: the shape [`WireQuery::read`] accepts, checked without
/// building anything, so that a repeat can be recognised by its bytes
/// ([`crate::pipeline::replay`]) before any name is decoded.
#[derive(Debug, Clone, Copy)]
pub struct RawQuery<'a> {
    bytes: &'a [u8],
    /// Where the question (name, type, class) ends.
    question_end: usize,
    flags: u16,
    qtype: u16,
    /// The client's EDNS, when it sent an OPT record (version 0).
    pub edns: Option<ClientEdns>,
}

impl<'a> RawQuery<'a> {
    /// Checks that `bytes` is a standard query (opcode QUERY, one class-IN question, no
    /// answer or authority records, at most one OPT record of EDNS version 0, nothing after
    /// it). `None` for anything else, including every malformed datagram: the caller falls
    /// back to hickory.
    pub fn scan(bytes: &'a [u8]) -> Option<RawQuery<'a>> {
        let flags = u16_at(bytes, 2)?;
        // QR clear, opcode 0 (QUERY), TC clear.
        if flags & 0xFA00 != 0 {
            return None;
        }
        let counts = [
            u16_at(bytes, 4)?,
            u16_at(bytes, 6)?,
            u16_at(bytes, 8)?,
            u16_at(bytes, 10)?,
        ];
        if counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1 {
            return None;
        }
        let start = usize::from(QUESTION_OFFSET);
        let mut at = start;
        loop {
            let len = usize::from(*bytes.get(at)?);
            at += 1;
            if len == 0 {
                break;
            }
            // A pointer or extended label type in a question: not the common shape.
            if len > 63 || at + len - start >= 255 {
                return None;
            }
            at += len;
        }
        let qtype = u16_at(bytes, at)?;
        if DNSClass::from(u16_at(bytes, at + 2)?) != DNSClass::IN {
            return None;
        }
        at += 4;
        let question_end = at;
        let edns = if counts[3] == 1 {
            // OPT: root owner, TYPE 41, CLASS = payload, TTL = ext-rcode, version, flags.
            if bytes.get(at) != Some(&0) || u16_at(bytes, at + 1)? != 41 {
                return None;
            }
            let payload = u16_at(bytes, at + 3)?;
            let version = *bytes.get(at + 6)?;
            let opt_flags = u16_at(bytes, at + 7)?;
            let rdlen = usize::from(u16_at(bytes, at + 9)?);
            at += 11;
            if version != 0 {
                return None;
            }
            // Options (a cookie, padding, …) are not used, but must be well formed.
            let end = at + rdlen;
            while at < end {
                at += 4 + usize::from(u16_at(bytes, at + 2)?);
            }
            if at != end {
                return None;
            }
            Some(ClientEdns {
                payload,
                dnssec_ok: opt_flags & 0x8000 != 0,
            })
        } else {
            None
        };
        if at != bytes.len() {
            return None;
        }
        Some(RawQuery {
            bytes,
            question_end,
            flags,
            qtype,
            edns,
        })
    }

    /// The message ID.
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.bytes[0], self.bytes[1]])
    }

    /// The question as sent: name (in the client's letter case), type and class. A response
    /// to this query repeats these bytes right after its header.
    pub fn question(&self) -> &'a [u8] {
        &self.bytes[usize::from(QUESTION_OFFSET)..self.question_end]
    }

    /// The header bits a response echoes (RD, CD); nothing else in the query's flags changes
    /// what [`write_response`] writes.
    pub fn echoed_flags(&self) -> u16 {
        self.flags & 0x0110
    }

    /// The query with its name decoded, for the pipeline.
    pub fn read(&self) -> Option<WireQuery> {
        let name_end = self.question_end - 4;
        let qname = &self.bytes[usize::from(QUESTION_OFFSET)..name_end];
        let name = Name::read(&mut BinDecoder::new(qname)).ok()?;
        Some(WireQuery {
            id: self.id(),
            flags: self.flags,
            name,
            qtype: RecordType::from(self.qtype),
            edns: self.edns,
        })
    }
}

impl WireQuery {
    /// Reads a standard query (the shape [`RawQuery::scan`] accepts). `None` for anything
    /// else, including every malformed datagram: the caller falls back to hickory.
    pub fn read(bytes: &[u8]) -> Option<WireQuery> {
        RawQuery::scan(bytes)?.read()
    }

    /// The RD bit.
    pub fn recursion_desired(&self) -> bool {
        self.flags & 0x0100 != 0
    }

    /// The CD bit.
    pub fn checking_disabled(&self) -> bool {
        self.flags & 0x0010 != 0
    }

    /// The largest response the client accepts over UDP (RFC 6891 §6.2.5: at least 512),
    /// capped at `ours`.
    pub fn max_response(&self, ours: u16) -> usize {
        usize::from(
            self.edns
                .map_or(512, |e| e.payload.clamp(512, ours.max(512))),
        )
    }
}

/// The header fields of a response that are not echoed from the query.
#[derive(Debug, Clone, Copy)]
struct ResponseFlags {
    /// The response code (values above 15 need EDNS; they become SERVFAIL without it).
    rcode: ResponseCode,
    /// The AD bit.
    authentic_data: bool,
    /// The TC bit.
    truncated: bool,
}

/// Writes a response header and the question (`qname` is the query's name, which
/// [`WireQuery::read`] hands over) into `out` (cleared first); the record counts start at zero
/// and are set by [`finish_response`].
fn start_response(query: &WireQuery, qname: &Name, flags: ResponseFlags, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&query.id.to_be_bytes());
    let rcode = u16::from(flags.rcode);
    let low = if rcode > 0xF && query.edns.is_none() {
        u16::from(ResponseCode::ServFail)
    } else {
        rcode & 0xF
    };
    // QR, RD echoed, RA; AD, CD echoed; TC on request.
    let mut bits = 0x8000 | (query.flags & 0x0100) | 0x0080 | (query.flags & 0x0010) | low;
    if flags.authentic_data {
        bits |= 0x0020;
    }
    if flags.truncated {
        bits |= 0x0200;
    }
    out.extend_from_slice(&bits.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    write_name(out, qname);
    out.extend_from_slice(&u16::from(query.qtype).to_be_bytes());
    out.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
}

/// Sets the answer, authority and additional counts, and appends our OPT record when the
/// client sent one (`payload` is ours; `rcode` supplies the extended bits).
fn finish_response(
    query: &WireQuery,
    counts: [u16; 3],
    rcode: ResponseCode,
    payload: u16,
    out: &mut Vec<u8>,
) {
    let mut additional = counts[2];
    if let Some(edns) = query.edns {
        let ext = (u16::from(rcode) >> 4) as u8;
        let do_bit = if edns.dnssec_ok { 0x80 } else { 0 };
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&payload.to_be_bytes());
        out.extend_from_slice(&[ext, 0, do_bit, 0, 0, 0]);
        additional += 1;
    }
    out[6..8].copy_from_slice(&counts[0].to_be_bytes());
    out[8..10].copy_from_slice(&counts[1].to_be_bytes());
    out[10..12].copy_from_slice(&additional.to_be_bytes());
}

/// Writes a response to `query` (whose name, handed over by [`WireQuery::read`], is
/// `qname`) into `out`: the header, the question, whatever `body` appends (it returns the
/// section counts), and our OPT record. TC and no records when it does not fit the client's
/// size or `ours`; SERVFAIL when `body` cannot encode a record.
pub fn write_response(
    query: &WireQuery,
    qname: &Name,
    rcode: ResponseCode,
    authentic_data: bool,
    ours: u16,
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> Result<[u16; 3], EncodeError>,
) {
    let mut flags = ResponseFlags {
        rcode,
        authentic_data,
        truncated: false,
    };
    start_response(query, qname, flags, out);
    let counts = body(out);
    const OPT_LEN: usize = 11;
    let opt_len = if query.edns.is_some() { OPT_LEN } else { 0 };
    let counts = match counts {
        Ok(counts) if out.len() + opt_len <= query.max_response(ours) => counts,
        Ok(_) => {
            // RFC 2181 §9: too big for UDP; the client asks again over TCP.
            flags.truncated = true;
            start_response(query, qname, flags, out);
            [0; 3]
        }
        Err(error) => {
            // Rate-limited: a client can ask for the same odd answer over and over.
            static NOT_ENCODABLE: crate::log_limit::LogLimit =
                crate::log_limit::LogLimit::new("answer not encodable", 10);
            crate::warn_limited!(
                NOT_ENCODABLE,
                %error,
                name = %qname,
                "answer not encodable, sending SERVFAIL"
            );
            flags.rcode = ResponseCode::ServFail;
            flags.authentic_data = false;
            start_response(query, qname, flags, out);
            [0; 3]
        }
    };
    finish_response(query, counts, flags.rcode, ours, out);
}

/// Appends the answer, authority and additional records to a response whose question is
/// `qname`; returns the section counts. DNSSEC records are left out unless `dnssec_ok`.
pub fn write_records(
    out: &mut Vec<u8>,
    qname: &Name,
    sections: [&[Record]; 3],
    dnssec_ok: bool,
) -> Result<[u16; 3], EncodeError> {
    write_sections(out, qname, sections, dnssec_ok, None)
}

/// A record could not be written (an RDATA hickory cannot encode, or over 64 KiB).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode a {0} record")]
pub struct EncodeError(RecordType);

/// Appends the three sections to `out` (a response whose question is `qname`, or a buffer of
/// pre-encoded sections), noting where each TTL field sits when `ttl_offsets` is given;
/// returns the record counts. DNSSEC records are left out unless `dnssec_ok`.
fn write_sections(
    out: &mut Vec<u8>,
    qname: &Name,
    sections: [&[Record]; 3],
    dnssec_ok: bool,
    mut ttl_offsets: Option<&mut Vec<u16>>,
) -> Result<[u16; 3], EncodeError> {
    let mut counts = [0u16; 3];
    for (count, records) in counts.iter_mut().zip(sections) {
        *count = write_section(out, qname, records, dnssec_ok, ttl_offsets.as_deref_mut())?;
    }
    Ok(counts)
}

fn write_section(
    out: &mut Vec<u8>,
    qname: &Name,
    records: &[Record],
    dnssec_ok: bool,
    mut ttl_offsets: Option<&mut Vec<u16>>,
) -> Result<u16, EncodeError> {
    let mut count = 0u16;
    for record in records {
        let rtype = record.record_type();
        if !dnssec_ok && rtype.is_dnssec() {
            continue;
        }
        let failed = || EncodeError(rtype);
        if same_name(&record.name, qname) {
            out.extend_from_slice(&POINTER_TO_QUESTION);
        } else {
            write_name(out, &record.name);
        }
        out.extend_from_slice(&u16::from(rtype).to_be_bytes());
        out.extend_from_slice(&u16::from(record.dns_class).to_be_bytes());
        if let Some(offsets) = ttl_offsets.as_deref_mut() {
            offsets.push(u16::try_from(out.len()).map_err(|_| failed())?);
        }
        out.extend_from_slice(&record.ttl.to_be_bytes());
        let rdlen_at = out.len();
        out.extend_from_slice(&[0, 0]);
        let rdata_at = out.len();
        write_rdata(out, &record.data).map_err(|_| failed())?;
        let rdlen = u16::try_from(out.len() - rdata_at).map_err(|_| failed())?;
        out[rdlen_at..rdata_at].copy_from_slice(&rdlen.to_be_bytes());
        count += 1;
    }
    Ok(count)
}

/// `a == b` (names compare without regard to ASCII case), cheaper when the two are spelled
/// alike: a record's owner is usually the query's own name, cloned (a block answer's SOA
/// always is), and hickory's case-insensitive comparison cost ~700 instructions a blocked
/// answer (callgrind, benches/README.md). Names of different lengths are never equal, and
/// byte-equal labels are equal in any case; anything else gets hickory's comparison.
fn same_name(a: &Name, b: &Name) -> bool {
    a.len() == b.len() && ((a.is_fqdn() == b.is_fqdn() && a.iter().eq(b.iter())) || a == b)
}

fn write_name(out: &mut Vec<u8>, name: &Name) {
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

/// The common types by hand; hickory's encoder for the rest. (hickory's name writer keeps a
/// compression table that allocates per label even when compression is off, and block
/// answers carry an SOA on every query.)
fn write_rdata(out: &mut Vec<u8>, data: &RData) -> Result<(), ProtoError> {
    match data {
        RData::A(a) => out.extend_from_slice(&a.0.octets()),
        RData::AAAA(aaaa) => out.extend_from_slice(&aaaa.0.octets()),
        RData::CNAME(CNAME(name)) | RData::NS(NS(name)) | RData::PTR(PTR(name)) => {
            write_name(out, name)
        }
        RData::MX(mx) => {
            out.extend_from_slice(&mx.preference.to_be_bytes());
            write_name(out, &mx.exchange);
        }
        RData::SOA(soa) => {
            write_name(out, &soa.mname);
            write_name(out, &soa.rname);
            for value in [
                soa.serial,
                soa.refresh as u32,
                soa.retry as u32,
                soa.expire as u32,
                soa.minimum,
            ] {
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
        other => {
            let at = out.len() as u32;
            let mut encoder = BinEncoder::with_offset(out, at);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            other.emit(&mut encoder)?;
        }
    }
    Ok(())
}

/// Three answer sections encoded once, to be copied into many responses with their TTLs
/// lowered by the entry's age.
///
/// Valid for any response whose question is the same name (in any letter case): the only
/// compression pointer is to the question at offset 12, and the question's length does not
/// depend on its case.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The question name it was encoded for, as a matching key (lower case, no final dot).
    key: String,
    bytes: Vec<u8>,
    counts: [u16; 3],
    /// Where each TTL sits in `bytes`.
    ttl_offsets: Vec<u16>,
}

impl Encoded {
    /// Encodes `sections` for responses to `qname`.
    pub fn new(
        qname: &Name,
        sections: [&[Record]; 3],
        dnssec_ok: bool,
    ) -> Result<Encoded, EncodeError> {
        let mut bytes = Vec::new();
        let mut ttl_offsets = Vec::new();
        let counts = write_sections(
            &mut bytes,
            qname,
            sections,
            dnssec_ok,
            Some(&mut ttl_offsets),
        )?;
        Ok(Encoded {
            key: crate::names::key(qname),
            bytes,
            counts,
            ttl_offsets,
        })
    }

    /// Heap and inline bytes this encoding holds, rounded up (buffers may have grown to twice
    /// their length), for the cache's memory budget.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Encoded>()
            + self.key.capacity()
            + self.bytes.capacity().max(self.bytes.len())
            + self.ttl_offsets.capacity() * std::mem::size_of::<u16>()
    }

    /// Whether these bytes are valid in a response to the name whose matching key is `key`
    /// (see [`crate::names::key`]: the same name, in any case).
    pub fn is_for(&self, key: &str) -> bool {
        self.key == key
    }

    /// Appends the records to `out` with each TTL replaced by `ttl(stored TTL)`; returns the
    /// section counts. Only valid in a response whose question [`Encoded::is_for`].
    pub fn write(&self, out: &mut Vec<u8>, ttl: impl Fn(u32) -> u32) -> [u16; 3] {
        let base = out.len();
        out.extend_from_slice(&self.bytes);
        for &offset in &self.ttl_offsets {
            let at = base + usize::from(offset);
            let stored = u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
            out[at..at + 4].copy_from_slice(&ttl(stored).to_be_bytes());
        }
        self.counts
    }
}

/// Where the TTL of each record in `response` sits (the OPT record's is its flags, and is
/// left out), for serving the same bytes again with the TTLs lowered by their age. `None`
/// when the message does not parse to its end.
pub fn ttl_offsets(response: &[u8]) -> Option<Vec<u16>> {
    let count = |at| u16_at(response, at).map(usize::from);
    let (question, records) = (count(4)?, count(6)? + count(8)? + count(10)?);
    let skip_name = |mut at: usize| -> Option<usize> {
        loop {
            let len = *response.get(at)?;
            match len {
                0 => return Some(at + 1),
                // A compression pointer ends the name.
                l if l & 0xC0 == 0xC0 => return Some(at + 2),
                l if l > 63 => return None,
                l => at += 1 + usize::from(l),
            }
        }
    };
    let mut at = usize::from(QUESTION_OFFSET);
    for _ in 0..question {
        at = skip_name(at)? + 4;
    }
    let mut offsets = Vec::with_capacity(records);
    for _ in 0..records {
        at = skip_name(at)?;
        let rtype = u16_at(response, at)?;
        if rtype != u16::from(RecordType::OPT) {
            offsets.push(u16::try_from(at + 4).ok()?);
        }
        at += 10 + usize::from(u16_at(response, at + 8)?);
    }
    (at == response.len()).then_some(offsets)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::{
        op::{Message, MessageType, OpCode, Query},
        rr::{
            rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, TXT},
            RData,
        },
        serialize::binary::BinEncodable,
    };

    use super::*;

    fn query_bytes(name: &str, edns: bool) -> Vec<u8> {
        let mut m = Message::new(0xBEEF, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.metadata.checking_disabled = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        if edns {
            let mut e = hickory_proto::op::Edns::new();
            e.set_max_payload(4096);
            e.set_dnssec_ok(true);
            m.edns = Some(e);
        }
        m.to_bytes().unwrap()
    }

    #[test]
    fn reads_what_hickory_writes() {
        let bytes = query_bytes("WwW.Example.COM.", true);
        let q = WireQuery::read(&bytes).unwrap();
        assert_eq!(q.id, 0xBEEF);
        assert_eq!(q.name.to_ascii(), "WwW.Example.COM.");
        assert_eq!(q.qtype, RecordType::A);
        assert!(q.recursion_desired() && q.checking_disabled());
        assert_eq!(
            q.edns,
            Some(ClientEdns {
                payload: 4096,
                dnssec_ok: true
            })
        );
        assert_eq!(q.max_response(1232), 1232);
        let plain = query_bytes("example.com.", false);
        assert_eq!(WireQuery::read(&plain).unwrap().max_response(1232), 512);
    }

    #[test]
    fn leaves_unusual_shapes_to_hickory() {
        let good = query_bytes("example.com.", true);
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            good[..11].to_vec(),
            good[..good.len() - 1].to_vec(),
            [good.as_slice(), &[0]].concat(),
        ];
        let mut response = good.clone();
        response[2] |= 0x80;
        cases.push(response);
        let mut notify = good.clone();
        notify[2] |= 4 << 3;
        cases.push(notify);
        let mut two_questions = good.clone();
        two_questions[5] = 2;
        cases.push(two_questions);
        let mut chaos = query_bytes("version.bind.", false);
        let n = chaos.len();
        chaos[n - 1] = 3;
        cases.push(chaos);
        let mut edns1 = good.clone();
        let n = edns1.len();
        edns1[n - 5] = 1; // OPT version byte
        cases.push(edns1);
        let mut pointer = good.clone();
        pointer[12] = 0xC0;
        cases.push(pointer);
        for (i, case) in cases.iter().enumerate() {
            assert!(WireQuery::read(case).is_none(), "case {i} was accepted");
        }
    }

    /// The bytes we write parse back (with hickory) to the records we were given.
    #[test]
    fn responses_parse_back() {
        let bytes = query_bytes("WWW.example.com.", true);
        let q = WireQuery::read(&bytes).unwrap();
        let qname = Name::from_ascii("www.example.com.").unwrap();
        let target = Name::from_ascii("cdn.example.net.").unwrap();
        let answers = vec![
            Record::from_rdata(qname.clone(), 300, RData::CNAME(CNAME(target.clone()))),
            Record::from_rdata(target.clone(), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))),
            // Every type written by hand, and one (TXT) written by hickory.
            Record::from_rdata(
                target.clone(),
                60,
                RData::AAAA(AAAA("2001:db8::1".parse().unwrap())),
            ),
            Record::from_rdata(target.clone(), 60, RData::MX(MX::new(10, qname.clone()))),
            Record::from_rdata(target.clone(), 60, RData::NS(NS(qname.clone()))),
            Record::from_rdata(target.clone(), 60, RData::PTR(PTR(qname.clone()))),
            Record::from_rdata(target.clone(), 60, RData::TXT(TXT::new(vec!["a b".into()]))),
        ];
        let soa = SOA::new(
            Name::from_ascii("ns.example.net.").unwrap(),
            Name::from_ascii("admin.example.net.").unwrap(),
            1,
            2,
            3,
            4,
            5,
        );
        let authorities = vec![Record::from_rdata(
            Name::from_ascii("example.net.").unwrap(),
            30,
            RData::SOA(soa),
        )];
        let encoded = Encoded::new(&qname, [&answers, &authorities, &[]], false).unwrap();

        let mut out = Vec::new();
        let flags = ResponseFlags {
            rcode: ResponseCode::NoError,
            authentic_data: true,
            truncated: false,
        };
        start_response(&q, &q.name, flags, &mut out);
        let counts = encoded.write(&mut out, |ttl| ttl - 10);
        finish_response(&q, counts, ResponseCode::NoError, 1232, &mut out);

        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0xBEEF);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
        assert!(m.metadata.authentic_data && m.metadata.checking_disabled);
        assert_eq!(m.queries[0].name().to_ascii(), "WWW.example.com.");
        // The owner points at the question, so it comes back in the client's case.
        assert_eq!(m.answers[0].name.to_ascii(), "WWW.example.com.");
        let aged = |r: &Record| {
            let mut r = r.clone();
            r.ttl -= 10;
            r
        };
        let expected: Vec<Record> = answers.iter().map(aged).collect();
        assert_eq!(m.answers, expected);
        assert_eq!(m.authorities, [aged(&authorities[0])]);
        let edns = m.edns.unwrap();
        assert_eq!(edns.max_payload(), 1232);
        assert!(edns.flags().dnssec_ok);

        // Written directly, the same records give the same bytes.
        let mut direct = Vec::new();
        start_response(&q, &q.name, flags, &mut direct);
        let counts = write_sections(
            &mut direct,
            &qname,
            [&answers, &authorities, &[]],
            false,
            None,
        )
        .unwrap();
        finish_response(&q, counts, ResponseCode::NoError, 1232, &mut direct);
        let reparsed = Message::from_vec(&direct).unwrap();
        assert_eq!(reparsed.answers[1].ttl, 60);
        assert_eq!(direct.len(), out.len());

        // Every record's TTL is found (names compressed or not), the OPT record's flags not.
        let offsets = ttl_offsets(&out).unwrap();
        let ttls: Vec<u32> = offsets
            .iter()
            .map(|&at| u32::from_be_bytes(out[usize::from(at)..][..4].try_into().unwrap()))
            .collect();
        let mut expected: Vec<u32> = m.answers.iter().map(|r| r.ttl).collect();
        expected.push(m.authorities[0].ttl);
        assert_eq!(ttls, expected);
        for cut in [out.len() - 1, out.len() - 12, 20] {
            assert_eq!(ttl_offsets(&out[..cut]), None, "cut at {cut}");
        }
        assert_eq!(ttl_offsets(&[out.as_slice(), &[0]].concat()), None);
    }

    /// The scan sees what the reader sees: the question's bytes (as sent), the bits a
    /// response echoes, and the same accept/refuse answer as [`WireQuery::read`].
    #[test]
    fn a_scan_shows_the_question_as_sent() {
        let bytes = query_bytes("WwW.Example.COM.", true);
        let raw = RawQuery::scan(&bytes).unwrap();
        assert_eq!(raw.id(), 0xBEEF);
        assert_eq!(
            raw.question(),
            b"\x03WwW\x07Example\x03COM\x00\x00\x01\x00\x01"
        );
        // RD and CD set by `query_bytes`; nothing else of the flags.
        assert_eq!(raw.echoed_flags(), 0x0110);
        let read = raw.read().unwrap();
        assert_eq!(read.name.to_ascii(), "WwW.Example.COM.");
        assert_eq!(read.qtype, RecordType::A);
    }

    /// Differential check on mutated queries: the reader never panics, and whatever it
    /// accepts hickory reads the same way (ID, name in its case, type, class, EDNS).
    #[test]
    fn accepts_only_what_hickory_reads_the_same() {
        let seeds = [
            query_bytes("www.Example.com.", true),
            query_bytes("a.b.c.d.e.f.example.co.uk.", false),
            query_bytes(".", true),
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for i in 0..30_000u32 {
            let mut bytes = seeds[i as usize % seeds.len()].clone();
            for _ in 0..=next() % 3 {
                let at = next() as usize % bytes.len();
                match next() % 4 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes[at] ^= 1 << (next() % 8),
                    2 => bytes.truncate(at),
                    _ => bytes.insert(at, next() as u8),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let Some(ours) = WireQuery::read(&bytes) else {
                continue;
            };
            accepted += 1;
            let theirs = Message::from_vec(&bytes)
                .unwrap_or_else(|e| panic!("accepted what hickory rejects ({e}): {bytes:02x?}"));
            assert_eq!(ours.id, theirs.metadata.id);
            assert!(ours.name.eq_case(theirs.queries[0].name()), "{bytes:02x?}");
            assert_eq!(ours.qtype, theirs.queries[0].query_type());
            assert_eq!(theirs.queries[0].query_class(), DNSClass::IN);
            assert_eq!(ours.recursion_desired(), theirs.metadata.recursion_desired);
            assert_eq!(ours.checking_disabled(), theirs.metadata.checking_disabled);
            assert_eq!(ours.edns.is_some(), theirs.edns.is_some(), "{bytes:02x?}");
            if let (Some(o), Some(t)) = (ours.edns, theirs.edns.as_ref()) {
                // hickory raises payloads below 512 to 512, as `max_response` does.
                assert_eq!(o.payload.max(512), t.max_payload());
                assert_eq!(o.dnssec_ok, t.flags().dnssec_ok);
            }
        }
        // The mutations must leave plenty of accepted inputs, or this checks nothing.
        assert!(accepted > 3_000, "only {accepted} accepted");
    }

    #[test]
    fn extended_rcode_needs_edns() {
        let with = query_bytes("example.com.", true);
        let without = query_bytes("example.com.", false);
        for (bytes, expect) in [
            (with, ResponseCode::BADCOOKIE),
            (without, ResponseCode::ServFail),
        ] {
            let q = WireQuery::read(&bytes).unwrap();
            let mut out = Vec::new();
            let flags = ResponseFlags {
                rcode: ResponseCode::BADCOOKIE,
                authentic_data: false,
                truncated: false,
            };
            start_response(&q, &q.name, flags, &mut out);
            finish_response(&q, [0; 3], ResponseCode::BADCOOKIE, 1232, &mut out);
            let m = Message::from_vec(&out).unwrap();
            assert_eq!(m.metadata.response_code, expect);
        }
    }

    #[test]
    fn same_name_is_hickorys_equality() {
        let names = [
            "www.example.test.",
            "WWW.Example.TEST.",
            "www.example.test",
            "www.examplf.test.",
            "xyz.example.test.",
            "ww.wexample.test.",
            "example.test.",
            "*.example.test.",
            ".",
            "",
        ];
        let names: Vec<Name> = names.iter().map(|s| Name::from_ascii(s).unwrap()).collect();
        let mut equal = 0;
        for a in &names {
            for b in &names {
                assert_eq!(same_name(a, b), a == b, "{a:?} vs {b:?}");
                equal += usize::from(a == b);
            }
        }
        // The pairs above that are equal: each name with itself, and the two spellings of
        // www.example.test. both ways.
        assert_eq!(equal, names.len() + 2);
    }
}
