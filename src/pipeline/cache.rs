//! The answer cache: honours TTLs (clamped), caches negative answers for the SOA minimum
//! (RFC 2308), and can serve stale answers when every upstream fails (RFC 8767).
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
}

/// The tables are keyed by the key's (keyed, DoS-resistant) hash, computed once per query;
/// the entry keeps its full key, so a colliding hash is a miss, never a wrong answer.
#[derive(Default)]
struct PreHashed(u64);

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

type Shard = HashMap<u64, Arc<Entry>, BuildHasherDefault<PreHashed>>;

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
            Ok(map) => map.get(&hash).filter(|e| e.key.matches(query)).cloned(),
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
        let entry = Arc::new(Entry {
            key: Key {
                name: name.to_owned(),
                qtype,
                qclass,
                dnssec_ok,
                checking_disabled,
            },
            rcode: answer.rcode,
            records: Arc::new(SharedSections::new(sections, &query.name, dnssec_ok)),
            authentic_data: answer.authentic_data,
            stored: now,
            ttl,
        });
        let Ok(mut map) = self.store.shard(hash).lock() else {
            return;
        };
        let per_shard = self.config.size.div_ceil(SHARDS).max(1);
        if map.len() >= per_shard && !map.contains_key(&hash) {
            let before = map.len();
            let keep = self.config.stale_max_age.as_secs();
            map.retain(|_, e| {
                now.saturating_duration_since(e.stored).as_secs() < u64::from(e.ttl) + keep
            });
            // Still full: drop an arbitrary tenth (HashMap order is effectively random).
            if map.len() >= per_shard {
                let victims: Vec<u64> = map.keys().take(per_shard / 10 + 1).copied().collect();
                for k in victims {
                    map.remove(&k);
                }
            }
            self.metrics.cache_entries.sub((before - map.len()) as i64);
        }
        if map.insert(hash, entry).is_none() {
            self.metrics.cache_entries.inc();
        }
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
