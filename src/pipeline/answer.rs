//! What a stage answers: records, a response code, how the answer was made and why.

use std::{borrow::Cow, sync::Arc};

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, Record},
};

use crate::{
    event::{BlockReason, Disposition, Severity},
    wire::Encoded,
};

/// Why a name was blocked, complete: built once by the stage that decided (policy or
/// SafeSearch) and carried unchanged to metrics, the query log and `lists lookup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// What kind of rule decided.
    pub kind: BlockReason,
    /// Full explanation in plain words: group, rule, category, list entry. Never names an
    /// illegal-tier entry.
    pub detail: String,
    /// Safeguarding severity when the attempt is a breach for the DSL (illegal content: high;
    /// circumvention: medium; a category: its manifest severity); `None` otherwise.
    pub severity: Option<Severity>,
    /// The list categories that decided (ids, comma separated), when a category did.
    pub category: Option<String>,
}

/// The records of an answer, section by section.
#[derive(Debug, Clone, Default)]
pub struct Sections {
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authorities: Vec<Record>,
    /// Additional section (never the OPT record; the listener adds its own).
    pub additionals: Vec<Record>,
}

impl Sections {
    /// A copy with every TTL replaced by `ttl(TTL)`.
    pub fn with_ttls(&self, ttl: impl Fn(u32) -> u32) -> Sections {
        let copy = |records: &[Record]| {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = ttl(r.ttl);
                    r
                })
                .collect()
        };
        Sections {
            answers: copy(&self.answers),
            authorities: copy(&self.authorities),
            additionals: copy(&self.additionals),
        }
    }
}

/// Records shared by every answer made from them (a cache entry), also kept pre-encoded so
/// the UDP listener copies bytes instead of encoding records.
#[derive(Debug)]
pub struct SharedSections {
    sections: Sections,
    encoded: Option<Encoded>,
}

impl SharedSections {
    /// Shares `sections`, encoded for responses to `qname` (DNSSEC records kept only when
    /// `dnssec_ok`, as the answers made from them will be sent).
    pub fn new(sections: Sections, qname: &Name, dnssec_ok: bool) -> SharedSections {
        let encoded = Encoded::new(
            qname,
            [
                &sections.answers,
                &sections.authorities,
                &sections.additionals,
            ],
            dnssec_ok,
        )
        .ok();
        SharedSections { sections, encoded }
    }

    /// The records.
    pub fn sections(&self) -> &Sections {
        &self.sections
    }

    /// An upper estimate of the memory these records and their encoding hold, in bytes
    /// (see `record_bytes`), for the cache's memory budget.
    pub fn approx_bytes(&self) -> usize {
        let s = &self.sections;
        std::mem::size_of::<SharedSections>()
            + [&s.answers, &s.authorities, &s.additionals]
                .into_iter()
                .flat_map(|records| records.iter())
                .map(record_bytes)
                .sum::<usize>()
            + self.encoded.as_ref().map_or(0, Encoded::approx_bytes)
    }
}

/// What the allocator adds to each heap block, counted generously (glibc: 8–16 bytes and
/// 16-byte rounding).
const ALLOC_OVERHEAD: usize = 32;

/// Bytes one allocation of `len` bytes really takes.
fn alloc_bytes(len: usize) -> usize {
    len.div_ceil(16) * 16 + ALLOC_OVERHEAD
}

/// An upper estimate of the memory one record holds (inline and heap), in bytes.
///
/// Conservative on purpose: what an upstream sends is chosen by whoever runs the zone, and a
/// hostile zone picks the shape that costs most per wire byte. TXT is counted from its
/// structure (one allocation per character-string, however short); SVCB/HTTPS and CAA hold a
/// heap value per item of as little as two wire bytes, so they are counted at 32 bytes per
/// wire byte; other types hold their wire form at most about twice (names spill out of
/// their inline buffers above 32 bytes).
pub(crate) fn record_bytes(record: &Record) -> usize {
    use hickory_proto::{rr::RData, serialize::binary::BinEncodable};
    let owner = alloc_bytes(record.name.len()) * 2;
    let data = match &record.data {
        RData::TXT(txt) => {
            alloc_bytes(txt.txt_data.len() * std::mem::size_of::<Box<[u8]>>())
                + txt
                    .txt_data
                    .iter()
                    .map(|s| alloc_bytes(s.len()))
                    .sum::<usize>()
        }
        other => {
            // Encoding fails only for data that could not be sent either; count it as large.
            let wire = other.to_bytes().map_or(u16::MAX as usize, |b| b.len());
            match other {
                RData::SVCB(_) | RData::HTTPS(_) | RData::CAA(_) => wire * 32 + ALLOC_OVERHEAD,
                _ => wire * 2 + ALLOC_OVERHEAD * 2,
            }
        }
    };
    std::mem::size_of::<Record>() + owner + data
}

/// How the TTLs of shared records are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Lowered by this many seconds (a cache entry's age), but never below 1.
    Aged(u32),
    /// Every TTL replaced by this value (stale answers).
    Fixed(u32),
}

impl Ttl {
    /// The TTL sent for a record stored with `stored`.
    pub fn apply(self, stored: u32) -> u32 {
        match self {
            Ttl::Aged(age) => stored.saturating_sub(age).max(1),
            Ttl::Fixed(ttl) => ttl,
        }
    }
}

#[derive(Debug, Clone)]
enum Records {
    Owned(Sections),
    Shared(Arc<SharedSections>, Ttl),
}

/// The answer a stage produced.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Response code.
    pub rcode: ResponseCode,
    /// The upstream vouched for the data (AD bit), passed through.
    pub authentic_data: bool,
    /// How it was made.
    pub disposition: Disposition,
    /// Why the name was blocked, when it was (policy or SafeSearch).
    pub reason: Option<Reason>,
    /// How an answer that blocks nothing was made, in plain words: a SafeSearch rewrite, why
    /// a rewrite or the upstreams failed, why a client was refused.
    pub note: Option<Cow<'static, str>>,
    records: Records,
}

impl Answer {
    /// An answer made of `sections`.
    pub fn new(rcode: ResponseCode, sections: Sections, disposition: Disposition) -> Answer {
        Answer {
            rcode,
            authentic_data: false,
            disposition,
            reason: None,
            note: None,
            records: Records::Owned(sections),
        }
    }

    /// An answer made of shared records, their TTLs sent as `ttl` says.
    pub fn shared(
        rcode: ResponseCode,
        records: Arc<SharedSections>,
        ttl: Ttl,
        disposition: Disposition,
    ) -> Answer {
        Answer {
            rcode,
            authentic_data: false,
            disposition,
            reason: None,
            note: None,
            records: Records::Shared(records, ttl),
        }
    }

    /// An empty answer with `rcode`.
    pub fn empty(rcode: ResponseCode, disposition: Disposition) -> Answer {
        Answer::new(rcode, Sections::default(), disposition)
    }

    /// SERVFAIL, e.g. when every upstream failed.
    pub fn servfail() -> Answer {
        Answer::empty(ResponseCode::ServFail, Disposition::ServFail)
    }

    /// Attaches a note on how the answer was made.
    pub fn with_note(mut self, note: impl Into<Cow<'static, str>>) -> Answer {
        self.note = Some(note.into());
        self
    }

    fn stored(&self) -> &Sections {
        match &self.records {
            Records::Owned(sections) => sections,
            Records::Shared(shared, _) => &shared.sections,
        }
    }

    /// The answer section, for looking at names and data. Shared records carry their stored
    /// TTLs here; the TTLs sent are those of [`Answer::into_sections`].
    pub fn answers(&self) -> &[Record] {
        &self.stored().answers
    }

    /// The authority section (TTLs as for [`Answer::answers`]).
    pub fn authorities(&self) -> &[Record] {
        &self.stored().authorities
    }

    /// The additional section (TTLs as for [`Answer::answers`]).
    pub fn additionals(&self) -> &[Record] {
        &self.stored().additionals
    }

    /// The records for changing them (shared records are copied first, TTLs as sent).
    pub fn sections_mut(&mut self) -> &mut Sections {
        if let Records::Shared(shared, ttl) = &self.records {
            self.records = Records::Owned(shared.sections.with_ttls(|t| ttl.apply(t)));
        }
        match &mut self.records {
            Records::Owned(sections) => sections,
            Records::Shared(..) => unreachable!("made owned above"),
        }
    }

    /// The records with their TTLs as sent, copied only when shared.
    pub fn sections_as_sent(&self) -> Cow<'_, Sections> {
        match &self.records {
            Records::Owned(sections) => Cow::Borrowed(sections),
            Records::Shared(shared, ttl) => Cow::Owned(shared.sections.with_ttls(|t| ttl.apply(t))),
        }
    }

    /// The records with their TTLs as sent.
    pub fn into_sections(self) -> Sections {
        match self.records {
            Records::Owned(sections) => sections,
            Records::Shared(shared, ttl) => shared.sections.with_ttls(|t| ttl.apply(t)),
        }
    }

    /// The pre-encoded records and how to set their TTLs, when this answer has them.
    pub fn encoded(&self) -> Option<(&Encoded, Ttl)> {
        match &self.records {
            Records::Shared(shared, ttl) => shared.encoded.as_ref().map(|e| (e, *ttl)),
            Records::Owned(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        alloc::{GlobalAlloc, Layout, System},
        cell::Cell,
    };

    use hickory_proto::rr::{
        rdata::{
            svcb::{Alpn, SvcParamKey, SvcParamValue},
            A, HTTPS, SVCB, TXT,
        },
        RData,
    };

    use super::*;

    /// Counts this thread's live heap bytes (plus a malloc header per block), so the estimate
    /// can be checked against what the allocator really hands out.
    struct Counting;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }

    // SAFETY: forwards to the system allocator unchanged; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = LIVE.try_with(|l| l.set(l.get() + layout.size() as isize + 16));
            System.alloc(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let _ = LIVE.try_with(|l| l.set(l.get() - layout.size() as isize - 16));
            System.dealloc(ptr, layout)
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
            let _ = LIVE.try_with(|l| l.set(l.get() + new as isize - layout.size() as isize));
            System.realloc(ptr, layout, new)
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    /// Live bytes of a cache entry's records built from `answers` (as the cache builds them:
    /// a TTL-adjusted copy, then encoded), and the estimate for them.
    fn measure(qname: &Name, answers: Vec<Record>) -> (isize, usize) {
        let source = Sections {
            answers,
            ..Sections::default()
        };
        let before = LIVE.with(Cell::get);
        let shared = SharedSections::new(source.with_ttls(|t| t), qname, false);
        let live = LIVE.with(Cell::get) - before;
        (live, shared.approx_bytes())
    }

    #[test]
    fn estimate_is_never_below_real_memory() {
        let q = name("a-rather-long-owner-name-to-spill-the-inline-buffer.example.test.");
        let shapes: Vec<(&str, Vec<Record>)> = vec![
            (
                "one TXT of 4,000 one-byte strings",
                vec![Record::from_rdata(
                    q.clone(),
                    300,
                    RData::TXT(TXT::new((0..4000).map(|_| "x".to_string()).collect())),
                )],
            ),
            (
                "40 TXT records of 250 bytes",
                (0..40)
                    .map(|i| {
                        let text = format!("{i:03}{}", "y".repeat(247));
                        Record::from_rdata(q.clone(), 300, RData::TXT(TXT::new(vec![text])))
                    })
                    .collect(),
            ),
            (
                "200 A records",
                (0..200u8)
                    .map(|i| Record::from_rdata(q.clone(), 300, RData::A(A::new(192, 0, 2, i))))
                    .collect(),
            ),
            (
                "HTTPS with 300 one-letter ALPN ids",
                vec![Record::from_rdata(
                    q.clone(),
                    300,
                    RData::HTTPS(HTTPS(SVCB::new(
                        1,
                        name("svc.example.test."),
                        vec![(
                            SvcParamKey::Alpn,
                            SvcParamValue::Alpn(Alpn((0..300).map(|_| "h".into()).collect())),
                        )],
                    ))),
                )],
            ),
        ];
        for (what, records) in shapes {
            let (live, estimate) = measure(&q, records);
            eprintln!("{what}: estimated {estimate} bytes, really {live}");
            assert!(
                estimate as isize >= live,
                "{what}: estimated {estimate} bytes, really {live}"
            );
            // Not wildly pessimistic either (the budget would then hold few entries).
            assert!(
                (estimate as isize) < live * 8,
                "{what}: estimated {estimate} bytes, really {live}"
            );
        }
    }
}
