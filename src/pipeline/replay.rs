//! The replay memo: a finished answer kept as the bytes that were sent, so that the same
//! question from the same group is answered again by copying them.
//!
//! Most of a school's queries repeat a question asked moments before: the same blocked
//! tracker, the same cached CDN name. Down the chain, each repeat still decodes its name,
//! runs policy, looks up the cache and encodes the answer again — about 8,000 instructions
//! a query under load, against a kernel cost of a datagram in and out that is smaller than
//! that (benches/README.md). The listener asks [`Replay::answer`] first: it identifies the
//! client, charges its rate limit, finds the bytes kept for the question and counts and logs
//! the query exactly as the record stage would ([`Record::count`], [`Record::log`]); only a
//! miss goes down the chain, which then [`Replay::keep`]s what it answered.
//!
//! What is kept, and for how long — a repeat must get what the chain would give it:
//!
//! - only blocked answers and cache hits, the two answers whose bytes depend on nothing but
//!   the question, the group and the time (forwarded answers are kept once the cache holds
//!   them; SafeSearch rewrites, refusals and failures are never kept);
//! - per group, question as sent (name in the client's letter case, type), the echoed header
//!   bits and the client's EDNS: everything [`crate::wire::write_response`] reads;
//! - a decision stands until the next lapse of a grant or a change of the grants table, and
//!   for a group with schedules until the end of the wall-clock minute it was made in
//!   (schedules are minute windows); a reload builds a new pipeline, and with it an empty
//!   memo;
//! - a cache hit's TTLs are lowered by the seconds since it was kept, rounded up (so never
//!   above what the cache would send, at most a second below), and it is kept no longer
//!   than its shortest TTL; a block no longer than its own TTL (five minutes), since a block
//!   of a CNAME into a listed name rests on upstream data the chain would ask for again.

use std::{
    hash::{BuildHasher, BuildHasherDefault, Hasher},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use hickory_proto::rr::RecordType;

use crate::{
    clock::{unix_secs, Clock},
    event::{BlockReason, QueryEvent, Severity, Transport},
    heap::HugePages,
    metrics::Metrics,
    pipeline::{
        cache::PreHashed,
        grants::LiveGrants,
        identify::Identify,
        policy::BLOCK_TTL,
        ratelimit::RateLimit,
        record::{self, Record, Shared, Wanted},
        Admission, Answer, Disposition, Origin, Query,
    },
    wire::{self, RawQuery},
};

/// Locks, so that workers rarely wait on one another. Eight rather than more: a shard's table
/// is held in whole huge pages, and a default memo of 100,000 answers then fills eight tables
/// of 16,384 slots (5.4 MB in 6 MiB each) where sixteen of 8,192 (2.7 MB in 4 MiB) would
/// leave a third of each mapping empty.
const SHARDS: usize = 8;

/// The moment a batch of datagrams is answered at, read once for the batch.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    instant: Instant,
    wall: SystemTime,
    /// `wall` in whole seconds since the Unix epoch.
    unix: u64,
}

/// What a decision is made under, read before the chain runs: the grants table's generation
/// and the span of wall-clock seconds the decision stands for.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    generation: u64,
    from: u64,
    until: u64,
}

/// What [`Replay::answer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// The response is in the buffer, and the query is counted and logged.
    Answered,
    /// Nothing kept answers it: the query goes down the chain, charged to the rate limit
    /// as this says.
    Miss(Admission),
}

/// Where a text sits in an entry's buffer (`None`: the event has none).
type Span = Option<(u16, u16)>;

/// One kept answer: its fixed parts and its bytes (the response, the TTLs' places and the
/// event's texts), all in the map's slot when the bytes fit ([`Bytes`]). A repeat then
/// reads one run of cache lines; each pointer followed to another allocation was a cache
/// miss of its own, most of a repeat's user-space time (`perf annotate`, benches/README.md).
struct Entry {
    group: usize,
    /// The query's echoed flags and EDNS ([`shape`]).
    shape: u64,
    /// The response without its ID, then where the TTLs to lower by age sit in the response
    /// with its ID (two bytes each), then the event's name, category and rule.
    bytes: Bytes,
    response_len: u16,
    /// Where the TTLs' places end (the texts start).
    ttls_end: u16,
    question_len: u16,
    name: Span,
    category: Span,
    rule: Span,
    /// Seconds after `kept` it stays valid (its shortest TTL; a block's TTL for a block).
    life: u32,
    kept: Instant,
    stamp: Stamp,
    /// The event's other shared fields.
    group_name: Option<Arc<str>>,
    qtype: u16,
    transport: Transport,
    disposition: Disposition,
    reason: Option<BlockReason>,
    severity: Option<Severity>,
    rcode: u16,
}

impl Entry {
    /// The entry for `response` (its TTLs at `ttls`) and the event `template`; `None` when
    /// a part is too long to place (never, for anything a UDP listener sends).
    fn new(
        head: Head,
        response: &[u8],
        question_len: usize,
        ttls: &[u16],
        template: &QueryEvent,
    ) -> Option<Entry> {
        let response = response.get(2..)?;
        let shared = Shared::of(template);
        let mut bytes = Vec::with_capacity(response.len() + 2 * ttls.len() + 128);
        bytes.extend_from_slice(response);
        for offset in ttls {
            bytes.extend_from_slice(&offset.to_be_bytes());
        }
        let ttls_end = u16::try_from(bytes.len()).ok()?;
        let mut place = |text: Option<&str>| -> Option<Span> {
            let Some(text) = text else {
                return Some(None);
            };
            let start = u16::try_from(bytes.len()).ok()?;
            bytes.extend_from_slice(text.as_bytes());
            Some(Some((start, u16::try_from(bytes.len()).ok()?)))
        };
        let (name, category, rule) = (
            place(shared.name)?,
            place(shared.category)?,
            place(shared.rule)?,
        );
        Some(Entry {
            group: head.group,
            shape: head.shape,
            bytes: Bytes::from(bytes),
            response_len: u16::try_from(response.len()).ok()?,
            ttls_end,
            question_len: u16::try_from(question_len).ok()?,
            name,
            category,
            rule,
            life: head.life,
            kept: head.kept,
            stamp: head.stamp,
            group_name: shared.group.cloned(),
            qtype: shared.qtype,
            transport: shared.transport,
            disposition: shared.disposition,
            reason: shared.reason,
            severity: shared.severity,
            rcode: shared.rcode,
        })
    }

    fn response(&self) -> &[u8] {
        &self.bytes[..usize::from(self.response_len)]
    }

    fn text(&self, span: Span) -> Option<&str> {
        let (start, end) = span?;
        // Placed from a `str`, so this never fails; checked all the same (no `unsafe`),
        // at a few instructions for these short ASCII texts.
        std::str::from_utf8(self.bytes.get(usize::from(start)..usize::from(end))?).ok()
    }

    /// The TTLs' places in the response with its ID.
    fn ttls(&self) -> impl Iterator<Item = usize> + '_ {
        self.bytes[usize::from(self.response_len)..usize::from(self.ttls_end)]
            .chunks_exact(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn shared(&self) -> Shared<'_> {
        Shared {
            group: self.group_name.as_ref(),
            name: self.text(self.name),
            qtype: self.qtype,
            transport: self.transport,
            disposition: self.disposition,
            reason: self.reason,
            category: self.text(self.category),
            rule: self.text(self.rule),
            severity: self.severity,
            rcode: self.rcode,
        }
    }

    fn answers(&self, group: usize, shape: u64, question: &[u8]) -> bool {
        self.group == group
            && self.shape == shape
            && usize::from(self.question_len) == question.len()
            && self.bytes.get(10..10 + question.len()) == Some(question)
    }

    /// Its age in whole seconds rounded up, while it is valid at `now` under `generation`.
    fn age(&self, now: Now, generation: u64) -> Option<u32> {
        if self.stamp.generation != generation
            || !(self.stamp.from..self.stamp.until).contains(&now.unix)
        {
            return None;
        }
        let elapsed = now.instant.saturating_duration_since(self.kept);
        let age = elapsed.as_secs() + u64::from(elapsed.subsec_nanos() > 0);
        u32::try_from(age).ok().filter(|&age| age < self.life)
    }

    fn write(&self, id: u16, age: u32, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(self.response());
        if age == 0 {
            return;
        }
        for at in self.ttls() {
            if let Some(field) = out.get_mut(at..at + 4) {
                let stored = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
                field.copy_from_slice(&stored.saturating_sub(age).max(1).to_be_bytes());
            }
        }
    }
}

/// How many bytes an entry holds in its slot: a cached answer with a few records, or a
/// blocked answer with its event's texts unless its rule is long (about 87 % of the entries
/// for the harness's workload at 1M names). An entry is then 320 bytes, five cache lines;
/// 248 (360) held about 99 % and measured no better (benches/README.md).
const INLINE: usize = 200;

/// An entry's bytes: in the map's slot itself when they fit, so that a repeat reads one run
/// of cache lines and follows no pointer to another; in an allocation of their own when they
/// do not.
enum Bytes {
    Inline { len: u8, data: [u8; INLINE] },
    Apart(Box<[u8]>),
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Bytes {
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= INLINE => {
                let mut data = [0; INLINE];
                data[..bytes.len()].copy_from_slice(&bytes);
                Bytes::Inline { len, data }
            }
            _ => Bytes::Apart(bytes.into()),
        }
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, data } => &data[..usize::from(*len)],
            Bytes::Apart(bytes) => bytes,
        }
    }
}

/// An entry's fixed-size parts, as [`Replay::keep`] works them out.
struct Head {
    group: usize,
    shape: u64,
    life: u32,
    kept: Instant,
    stamp: Stamp,
}

/// The part of the key besides the group and the question: the echoed header bits and the
/// client's EDNS (presence, DO bit, payload size, which decides truncation).
fn shape(query: &RawQuery<'_>) -> u64 {
    let edns = query.edns.map_or(0, |e| {
        1 << 17 | u64::from(e.dnssec_ok) << 16 | u64::from(e.payload)
    });
    u64::from(query.echoed_flags()) << 32 | edns
}

/// A shard's table, in huge pages once it is big enough for them to matter: a repeat's
/// probe then costs a cache miss, not a TLB miss and a cache miss ([`HugePages`]).
type Shard = hashbrown::HashMap<u64, Entry, BuildHasherDefault<PreHashed>, HugePages>;

/// The memo, with the parts of the chain a repeat still goes through: identification, the
/// rate limit and the record stage's counting and logging. One per pipeline.
pub struct Replay {
    identify: Arc<Identify>,
    ratelimit: Arc<RateLimit>,
    record: Arc<Record>,
    metrics: Arc<Metrics>,
    grants: Arc<LiveGrants>,
    clock: Clock,
    /// Keyed (random per process), so nobody can choose names that collide.
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl Replay {
    /// A memo of at most about `entries` answers, answering for the chain's own stages.
    pub fn new(
        entries: usize,
        identify: Arc<Identify>,
        ratelimit: Arc<RateLimit>,
        record: Arc<Record>,
        metrics: Arc<Metrics>,
        grants: Arc<LiveGrants>,
        clock: Clock,
    ) -> Replay {
        Replay {
            identify,
            ratelimit,
            record,
            metrics,
            grants,
            clock,
            hasher: Default::default(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard::with_hasher_in(Default::default(), HugePages)))
                .collect(),
            per_shard: entries.div_ceil(SHARDS).max(1),
        }
    }

    /// Now, for a batch of datagrams.
    pub fn now(&self) -> Now {
        let wall = self.clock.now();
        Now {
            instant: Instant::now(),
            wall,
            unix: unix_secs(wall),
        }
    }

    /// The key's hash: the group and shape in one word, then the question's bytes (no
    /// length prefix needed: only the last part varies in length). Half the instructions of
    /// hashing the three as a tuple (callgrind, benches/README.md).
    fn hash(&self, group: usize, shape: u64, question: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write_u64(shape ^ (group as u64).rotate_right(16));
        hasher.write(question);
        hasher.finish()
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    /// Answers `query` from `client` into `out` when an answer is kept for it, doing what
    /// the chain does around it: identify, rate limit, count, log.
    pub fn answer(
        &self,
        query: &RawQuery<'_>,
        client: IpAddr,
        now: Now,
        out: &mut Vec<u8>,
    ) -> Replayed {
        // Outsiders are refused down the chain, which needs no help with that.
        let Some(who) = self.identify.client(client) else {
            return Replayed::Miss(Admission::Unchecked);
        };
        if !self.ratelimit.admit(client, now.instant) {
            return Replayed::Miss(Admission::OverLimit);
        }
        let (group, shape, question) = (who.group.index, shape(query), query.question());
        let hash = self.hash(group, shape, question);
        let generation = self.grants.generation();
        // Answered and its event built while the entry is borrowed under its shard's lock
        // (a copy of the 320-byte entry cost more); the event is logged after.
        let event = {
            let Ok(shard) = self.shard(hash).lock() else {
                return Replayed::Miss(Admission::Admitted);
            };
            let found = shard
                .get(&hash)
                .filter(|e| e.answers(group, shape, question))
                .and_then(|e| e.age(now, generation).map(|age| (e, age)));
            let Some((entry, age)) = found else {
                return Replayed::Miss(Admission::Admitted);
            };
            entry.write(query.id(), age, out);
            if entry.disposition == Disposition::Cached {
                self.metrics.observe_cache(true);
            }
            self.metrics.answers_replayed.inc();
            let elapsed = now.instant.elapsed();
            self.record
                .count(
                    Some(who.group),
                    RecordType::from(entry.qtype),
                    entry.disposition,
                    entry.reason,
                    entry.severity,
                    elapsed,
                    // Stamped with the batch's time, when the query was read: no clock read more.
                    now.wall,
                )
                .map(|Wanted(spare)| {
                    record::repeat_event(
                        spare,
                        entry.shared(),
                        client,
                        who.device,
                        now.wall,
                        elapsed,
                    )
                })
        };
        if let Some(event) = event {
            self.record.log(event);
        }
        Replayed::Answered
    }

    /// What a decision made from now on is made under; take it before the chain runs.
    pub fn stamp(&self, now: Now) -> Stamp {
        let generation = self.grants.generation();
        let until = self
            .grants
            .load()
            .and_then(|grants| grants.next_expiry_after(now.wall))
            .map_or(u64::MAX, unix_secs);
        Stamp {
            generation,
            from: now.unix,
            until,
        }
    }

    /// Keeps `response` (the chain's `answer` to `query`, read from `raw` under `stamp`) for
    /// repeats, when it is an answer that may be repeated.
    pub fn keep(
        &self,
        stamp: Stamp,
        raw: &RawQuery<'_>,
        query: &Query,
        answer: &Answer,
        response: &[u8],
        now: Now,
    ) {
        let Some(group) = &query.group else { return };
        if query.origin != Origin::Client || query.admission == Admission::OverLimit {
            return;
        }
        let question = raw.question();
        if response.get(12..12 + question.len()) != Some(question) {
            return;
        }
        let (ttls, life) = match answer.disposition {
            // As long as the block tells devices to keep it: a block can rest on upstream
            // data (a CNAME into a listed name) that the chain would ask for again later.
            Disposition::Blocked => (Vec::new(), BLOCK_TTL),
            Disposition::Cached => {
                let Some(offsets) = wire::ttl_offsets(response) else {
                    return;
                };
                let ttl = |&at: &u16| {
                    let at = usize::from(at);
                    response
                        .get(at..at + 4)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                };
                // No records (truncated, or SERVFAIL for an answer that would not encode):
                // nothing here says how long the cache will hold it, so it is not kept.
                let Some(life) = offsets.iter().map(ttl).min() else {
                    return;
                };
                // A TTL already at its floor would be sent as 1 for the rest of the
                // entry's life; the chain knows that life, the memo does not.
                if life <= 1 {
                    return;
                }
                (offsets, life)
            }
            _ => return,
        };
        let mut stamp = stamp;
        if !group.policy.schedules.is_empty() {
            // A schedule can free a category at the next minute.
            stamp.until = stamp.until.min((stamp.from / 60 + 1) * 60);
        }
        let shape = shape(raw);
        let hash = self.hash(group.index, shape, question);
        let head = Head {
            group: group.index,
            shape,
            life,
            kept: now.instant,
            stamp,
        };
        let template = record::event(None, query, answer, now.wall, Duration::ZERO);
        let Some(entry) = Entry::new(head, response, question.len(), &ttls, &template) else {
            return;
        };
        let Ok(mut shard) = self.shard(hash).lock() else {
            return;
        };
        if shard.len() >= self.per_shard && !shard.contains_key(&hash) {
            let generation = self.grants.generation();
            shard.retain(|_, e| e.age(now, generation).is_some());
            if shard.len() >= self.per_shard {
                // Still full: drop an arbitrary tenth (map order is effectively random).
                let victims: Vec<u64> = shard
                    .keys()
                    .take(self.per_shard / 10 + 1)
                    .copied()
                    .collect();
                for victim in victims {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(hash, entry);
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::{op::ResponseCode, rr::Name};

    use super::*;
    use crate::{
        config::RateLimitConfig,
        event::EventName,
        pipeline::{group::Group, Reason, Transport as QueryTransport},
    };

    /// A memo for one group (`pupils`, 127.0.0.0/8) holding at most `entries` answers.
    fn memo(entries: usize) -> (Replay, Arc<Group>) {
        let metrics = Arc::new(Metrics::new().unwrap());
        let group = Group::plain(0, "pupils", &metrics);
        let identify = Identify::new(&[(group.clone(), vec!["127.0.0.0/8".parse().unwrap()])]);
        let limit = RateLimitConfig {
            qps: 0,
            burst: 0,
            ipv6_prefix: 64,
        };
        let replay = Replay::new(
            entries,
            Arc::new(identify),
            Arc::new(RateLimit::new(limit, Default::default())),
            Arc::new(Record::new(metrics.clone(), None, Clock::system())),
            metrics,
            Arc::new(LiveGrants::new()),
            Clock::system(),
        );
        (replay, group)
    }

    /// A query for `name` (A, no EDNS) and, as its blocked answer's bytes, the query with the
    /// response bit set (what matters here is that the question is repeated at offset 12).
    fn blocked(name: &str) -> (Vec<u8>, Vec<u8>) {
        let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut response = query.clone();
        response[2] |= 0x80;
        response[3] = 0x83;
        (query, response)
    }

    /// However many names are kept, the memo holds at most about its size (each shard its
    /// part), and what it holds is answered.
    #[test]
    fn the_memo_holds_at_most_its_size() {
        let (replay, group) = memo(160);
        let client = IpAddr::from([127, 0, 0, 1]);
        let mut answer = Answer::empty(ResponseCode::NXDomain, Disposition::Blocked);
        answer.reason = Some(Reason {
            kind: BlockReason::Category,
            detail: "test".into(),
            severity: None,
            category: Some("games".into()),
        });
        let names: Vec<String> = (0..2_000).map(|i| format!("n{i}.games.test")).collect();
        for name in &names {
            let (query, response) = blocked(name);
            let raw = RawQuery::scan(&query).unwrap();
            let now = replay.now();
            let stamp = replay.stamp(now);
            let mut q = Query::new(
                client,
                QueryTransport::Udp,
                Name::from_ascii(name).unwrap(),
                RecordType::A,
            );
            q.group = Some(group.clone());
            replay.keep(stamp, &raw, &q, &answer, &response, now);
            let held: Vec<usize> = replay
                .shards
                .iter()
                .map(|s| s.lock().unwrap().len())
                .collect();
            assert!(held.iter().all(|&n| n <= replay.per_shard), "{held:?}");
        }
        let held: usize = replay.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!((100..=160).contains(&held), "{held} kept");
        // A block is kept as long as it tells devices to keep it, no longer.
        assert!(replay.shards.iter().all(|s| s
            .lock()
            .unwrap()
            .values()
            .all(|e| e.life == BLOCK_TTL)));
        // What is held is answered, under the query's ID; what was dropped is not.
        let (mut answered, mut out) = (0, Vec::new());
        for name in &names {
            let (query, response) = blocked(name);
            let raw = RawQuery::scan(&query).unwrap();
            if replay.answer(&raw, client, replay.now(), &mut out) == Replayed::Answered {
                assert_eq!(out, response);
                answered += 1;
            }
        }
        assert_eq!(answered, held);
    }

    /// An entry gives back the response, the TTLs' places and the event's texts it was made
    /// from, held in its slot or, when too long for it, in an allocation of its own; a
    /// withheld name stays withheld.
    #[test]
    fn an_entry_keeps_its_parts_in_its_slot_or_apart_when_long() {
        let mut response = vec![0xAB, 0xCD];
        response.extend_from_slice(&[0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0]);
        response.extend_from_slice(b"\x04play\x05games\x04test\x00\x00\x01\x00\x01");
        let head = || Head {
            group: 3,
            shape: 0,
            life: 60,
            kept: Instant::now(),
            stamp: Stamp {
                generation: 0,
                from: 0,
                until: u64::MAX,
            },
        };
        let mut template = QueryEvent {
            at: SystemTime::UNIX_EPOCH,
            client: IpAddr::from([127, 0, 0, 1]),
            device: None,
            group: Some("pupils".into()),
            name: EventName::Clear("play.games.test".into()),
            qtype: 1,
            transport: Transport::Udp,
            disposition: Disposition::Blocked,
            reason: Some(BlockReason::Category),
            category: Some("games".into()),
            rule: Some("group `pupils`: category games (list entry `games.test`)".into()),
            severity: Some(Severity::Low),
            rcode: 3,
            duration: Duration::ZERO,
        };
        let short = template.rule.clone();
        // A rule that fills the slot to the byte besides the response, name and category.
        let room = INLINE - (response.len() - 2) - "play.games.test".len() - "games".len();
        let long = Some("x".repeat(room));
        for (rule, ttls, inline) in [
            (&short, vec![], true),
            (&short, vec![40u16, 62], true),
            (&long, vec![], true),
            (&long, vec![40u16], false),
        ] {
            template.rule = rule.clone();
            let entry = Entry::new(head(), &response, 21, &ttls, &template).unwrap();
            assert_eq!(matches!(entry.bytes, Bytes::Inline { .. }), inline);
            assert_eq!(entry.response(), &response[2..]);
            assert_eq!(
                entry.ttls().collect::<Vec<_>>(),
                ttls.iter().map(|&t| usize::from(t)).collect::<Vec<_>>()
            );
            assert!(entry.answers(3, 0, &response[12..]));
            assert!(!entry.answers(2, 0, &response[12..]));
            let (shared, expected) = (entry.shared(), Shared::of(&template));
            assert_eq!(format!("{shared:?}"), format!("{expected:?}"));
        }
        // Ages in whole seconds rounded up, TTLs lowered by the age (never below 1), and
        // lapses when the age reaches its life.
        let ttl_at = 14;
        let mut with_ttl = response.clone();
        with_ttl[ttl_at..ttl_at + 4].copy_from_slice(&30u32.to_be_bytes());
        let ago = |secs: f64| Instant::now() - Duration::from_secs_f64(secs);
        let entry = |kept| {
            let head = Head { kept, ..head() };
            Entry::new(head, &with_ttl, 21, &[ttl_at as u16], &template).unwrap()
        };
        let now = Now {
            instant: Instant::now(),
            wall: SystemTime::now(),
            unix: unix_secs(SystemTime::now()),
        };
        let ttl = |out: &[u8]| u32::from_be_bytes(out[ttl_at..ttl_at + 4].try_into().unwrap());
        let mut out = Vec::new();
        let aged = entry(ago(2.5));
        assert_eq!(aged.age(now, 0), Some(3));
        aged.write(0x0102, 3, &mut out);
        assert_eq!((&out[..2], ttl(&out)), (&[1u8, 2][..], 27));
        aged.write(0x0102, 40, &mut out);
        assert_eq!(ttl(&out), 1);
        assert_eq!(entry(ago(59.5)).age(now, 0), None, "life 60: lapsed at 60");
        assert_eq!(aged.age(now, 1), None, "another grants table");

        template.name = EventName::Withheld;
        template.category = None;
        let entry = Entry::new(head(), &response, 21, &[], &template).unwrap();
        assert_eq!(entry.shared().name, None);
        assert_eq!(entry.shared().category, None);
        assert_eq!(entry.shared().rule, template.rule.as_deref());
    }
}
