//! The answer cache: honours TTLs (clamped), caches negative answers for the SOA minimum
//! (RFC 2308), and can serve stale answers when every upstream fails (RFC 8767).
//!
//! The cache is bounded twice: by entries (`[cache] size`) and by memory (`[cache]
//! max_bytes`, each entry's records, pre-encoded bytes and key estimated on the high side by
//! [`SharedSections::approx_bytes`]). Names with large answers would otherwise cost hundreds
//! of KiB each, and a device asking a few thousand of them would grow the process by GiBs.
//! An answer estimated above `max_entry_bytes` is served but never cached.
//!
//! It sits just before the forwarder so that everything it stores is an upstream answer;
//! policy and SafeSearch run before it on every query, so a list change takes effect at once
//! without flushing the cache.

use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hasher},
    sync::{Arc, Mutex},
    time::Instant,
};

use hickory_proto::{op::ResponseCode, rr::RData};

use crate::{
    config::CacheConfig,
    metrics::Metrics,
    pipeline::{Answer, Disposition, Next, Query, SharedSections, Stage, StageFuture, Ttl},
};

const SHARDS: usize = 32;
/// TTL of a stale answer (RFC 8767 recommends 30 s).
const STALE_TTL: u32 = 30;

/// What an entry answers: the question and the flags that change the answer.
struct Key {
    name: String,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    checking_disabled: bool,
}

impl Key {
    fn parts(query: &Query) -> (&str, u16, u16, bool, bool) {
        (
            &query.key,
            query.qtype.into(),
            query.qclass.into(),
            query.dnssec_ok,
            query.checking_disabled,
        )
    }

    fn matches(&self, query: &Query) -> bool {
        (
            self.name.as_str(),
            self.qtype,
            self.qclass,
            self.dnssec_ok,
            self.checking_disabled,
        ) == Key::parts(query)
    }
}

struct Entry {
    key: Key,
    rcode: ResponseCode,
    /// Records with their TTLs clamped and capped at `ttl`, pre-encoded.
    records: Arc<SharedSections>,
    authentic_data: bool,
    stored: Instant,
    ttl: u32,
    /// The memory this entry holds (estimated), counted against the budget.
    bytes: usize,
}

/// The tables are keyed by the key's (keyed, DoS-resistant) hash, computed once per query;
/// the entry keeps its full key, so a colliding hash is a miss, never a wrong answer.
#[derive(Default)]
pub(super) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; anything else still gets a usable hash (FNV-1a).
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// One lock's worth of entries, and the bytes they hold.
#[derive(Default)]
struct Shard {
    map: HashMap<u64, Arc<Entry>, BuildHasherDefault<PreHashed>>,
    bytes: usize,
}

impl Shard {
    fn remove(&mut self, hash: u64) -> Option<Arc<Entry>> {
        let entry = self.map.remove(&hash)?;
        self.bytes = self.bytes.saturating_sub(entry.bytes);
        Some(entry)
    }

    /// Drops entries `keep` refuses; returns (entries, bytes) dropped.
    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) -> (usize, usize) {
        let (len, bytes) = (self.map.len(), self.bytes);
        let mut freed = 0;
        self.map.retain(|_, e| {
            let kept = keep(e);
            if !kept {
                freed += e.bytes;
            }
            kept
        });
        self.bytes = self.bytes.saturating_sub(freed);
        (len - self.map.len(), bytes - self.bytes)
    }
}

/// Per-entry bookkeeping beyond the entry's records: the map slot (hash, pointer, control
/// byte, at most half the table in use), the `Arc`'s counts, the entry struct itself.
const ENTRY_OVERHEAD: usize = 2 * (8 + 8 + 1) + 16 + std::mem::size_of::<Entry>();

/// The cached answers themselves, kept across reloads (the stage is rebuilt, this is not).
pub struct CacheStore {
    shards: Vec<Mutex<Shard>>,
    hasher: std::collections::hash_map::RandomState,
}

impl CacheStore {
    /// An empty store.
    pub fn new() -> CacheStore {
        CacheStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: Default::default(),
        }
    }

    fn hash(&self, query: &Query) -> u64 {
        self.hasher.hash_one(Key::parts(query))
    }

    /// The table holding `hash` (chosen by bits the table itself does not use for buckets).
    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        &self.shards[(hash >> 32) as usize % SHARDS]
    }
}

impl Default for CacheStore {
    fn default() -> Self {
        CacheStore::new()
    }
}

/// The cache stage.
pub struct Cache {
    config: CacheConfig,
    store: Arc<CacheStore>,
    metrics: Arc<Metrics>,
}

enum Lookup {
    Fresh(Answer),
    Stale(Answer),
    Miss,
}

impl Cache {
    /// A cache stage over `store`.
    pub fn new(config: CacheConfig, store: Arc<CacheStore>, metrics: Arc<Metrics>) -> Cache {
        Cache {
            config,
            store,
            metrics,
        }
    }

    fn lookup(&self, query: &Query, hash: u64, now: Instant) -> Lookup {
        let entry = match self.store.shard(hash).lock() {
            Ok(shard) => shard
                .map
                .get(&hash)
                .filter(|e| e.key.matches(query))
                .cloned(),
            Err(_) => None,
        };
        let Some(entry) = entry else {
            return Lookup::Miss;
        };
        let age = now.saturating_duration_since(entry.stored).as_secs();
        let answer = |ttl, disposition| {
            let mut answer = Answer::shared(entry.rcode, entry.records.clone(), ttl, disposition);
            answer.authentic_data = entry.authentic_data;
            answer
        };
        if age < u64::from(entry.ttl) {
            return Lookup::Fresh(answer(Ttl::Aged(age as u32), Disposition::Cached));
        }
        if self.config.serve_stale
            && age < u64::from(entry.ttl) + self.config.stale_max_age.as_secs()
        {
            return Lookup::Stale(answer(Ttl::Fixed(STALE_TTL), Disposition::Stale));
        }
        Lookup::Miss
    }

    /// How long `answer` may be cached, or `None` when it must not be.
    fn ttl_for(&self, answer: &Answer) -> Option<u32> {
        let negative = |answer: &Answer| {
            answer.authorities().iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum).min(self.config.negative_max_ttl)),
                _ => None,
            })
        };
        let ttl = match answer.rcode {
            ResponseCode::NoError if !answer.answers().is_empty() => answer
                .answers()
                .iter()
                .map(|r| r.ttl.clamp(self.config.min_ttl, self.config.max_ttl))
                .min(),
            ResponseCode::NoError | ResponseCode::NXDomain => negative(answer),
            _ => None,
        }?;
        (ttl > 0).then_some(ttl)
    }

    fn store(&self, query: &Query, hash: u64, answer: &Answer, now: Instant) {
        let Some(ttl) = self.ttl_for(answer) else {
            return;
        };
        // Stored as they will be sent (clamped, capped at the entry's life), so a hit only
        // subtracts the entry's age.
        let (min, max) = (self.config.min_ttl, self.config.max_ttl);
        let sections = answer
            .sections_as_sent()
            .with_ttls(|t| t.clamp(min, max).min(ttl));
        let (name, qtype, qclass, dnssec_ok, checking_disabled) = Key::parts(query);
        let records = Arc::new(SharedSections::new(sections, &query.name, dnssec_ok));
        let bytes = ENTRY_OVERHEAD + name.len() + records.approx_bytes();
        // Each shard gets an equal part of the budget, so the total never exceeds it; an
        // entry that would take more than its part, or than `max_entry_bytes`, is not kept.
        let shard_budget = self.config.max_bytes / SHARDS;
        if bytes > self.config.max_entry_bytes.min(shard_budget) {
            self.metrics.cache_too_large.inc();
            return;
        }
        let entry = Arc::new(Entry {
            key: Key {
                name: name.to_owned(),
                qtype,
                qclass,
                dnssec_ok,
                checking_disabled,
            },
            rcode: answer.rcode,
            records,
            authentic_data: answer.authentic_data,
            stored: now,
            ttl,
            bytes,
        });
        let Ok(mut shard) = self.store.shard(hash).lock() else {
            return;
        };
        let (mut dropped, mut freed) = (0, 0);
        if let Some(old) = shard.remove(hash) {
            dropped += 1;
            freed += old.bytes;
        }
        let per_shard = self.config.size.div_ceil(SHARDS).max(1);
        let full =
            |shard: &Shard| shard.map.len() >= per_shard || shard.bytes + bytes > shard_budget;
        if full(&shard) {
            let keep = self.config.stale_max_age.as_secs();
            let (n, b) = shard.retain(|e| {
                now.saturating_duration_since(e.stored).as_secs() < u64::from(e.ttl) + keep
            });
            (dropped, freed) = (dropped + n, freed + b);
            // Still full: drop an arbitrary tenth (HashMap order is effectively random), then
            // more until the new entry fits the byte budget.
            if full(&shard) {
                let mut count = shard.map.len() / 10 + 1;
                let mut need = (shard.bytes + bytes).saturating_sub(shard_budget);
                let victims: Vec<u64> = shard
                    .map
                    .iter()
                    .take_while(|(_, e)| {
                        let take = count > 0 || need > 0;
                        count = count.saturating_sub(1);
                        need = need.saturating_sub(e.bytes);
                        take
                    })
                    .map(|(&k, _)| k)
                    .collect();
                for victim in victims {
                    if let Some(e) = shard.remove(victim) {
                        dropped += 1;
                        freed += e.bytes;
                    }
                }
            }
        }
        shard.bytes += bytes;
        shard.map.insert(hash, entry);
        drop(shard);
        self.metrics.cache_entries.add(1 - dropped as i64);
        self.metrics.cache_bytes.add(bytes as i64 - freed as i64);
    }
}

impl Stage for Cache {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn handle<'a>(&'a self, query: &'a mut Query, next: Next<'a>) -> StageFuture<'a> {
        Box::pin(async move {
            if self.config.size == 0 {
                return next.run(query).await;
            }
            let hash = self.store.hash(query);
            // The arrival time is recent enough to age entries by (and saves a clock read).
            let stale = match self.lookup(query, hash, query.received) {
                Lookup::Fresh(answer) => {
                    self.metrics.observe_cache(true);
                    return answer;
                }
                Lookup::Stale(answer) => Some(answer),
                Lookup::Miss => None,
            };
            self.metrics.observe_cache(false);
            let answer = match stale {
                // With a stale answer at hand, a slow upstream gets only a short wait.
                Some(stale) => {
                    let wait = self.config.stale_answer_timeout;
                    match tokio::time::timeout(wait, next.run(query)).await {
                        Ok(answer) if answer.disposition != Disposition::ServFail => answer,
                        _ => return stale,
                    }
                }
                None => next.run(query).await,
            };
            if answer.disposition == Disposition::Forwarded {
                self.store(query, hash, &answer, Instant::now());
            }
            answer
        })
    }
}
