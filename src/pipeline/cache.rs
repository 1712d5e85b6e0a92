//! The answer cache: honours TTLs (clamped), caches negative answers for the SOA minimum
//! (RFC 2308), and can serve stale answers when every upstream fails (RFC 8767).
//!
//! It sits just before the forwarder so that everything it stores is an upstream answer;
//! policy and SafeSearch run before it on every query, so a list change takes effect at once
//! without flushing the cache.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{Arc, Mutex},
    time::Instant,
};

use hickory_proto::{
    op::ResponseCode,
    rr::{RData, Record},
};

use crate::{
    config::CacheConfig,
    metrics::Metrics,
    pipeline::{Answer, Disposition, Next, Query, Stage, StageFuture},
};

const SHARDS: usize = 32;
/// TTL of a stale answer (RFC 8767 recommends 30 s).
const STALE_TTL: u32 = 30;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    name: String,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    checking_disabled: bool,
}

struct Entry {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    authentic_data: bool,
    stored: Instant,
    ttl: u32,
}

/// The cached answers themselves, kept across reloads (the stage is rebuilt, this is not).
pub struct CacheStore {
    shards: Vec<Mutex<HashMap<Key, Arc<Entry>>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl CacheStore {
    /// An empty store.
    pub fn new() -> CacheStore {
        CacheStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
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

    fn key(query: &Query) -> Key {
        Key {
            name: query.key.clone(),
            qtype: query.qtype.into(),
            qclass: query.qclass.into(),
            dnssec_ok: query.dnssec_ok,
            checking_disabled: query.checking_disabled,
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Arc<Entry>>> {
        &self.store.shards[self.store.hasher.hash_one(key) as usize % SHARDS]
    }

    fn lookup(&self, key: &Key, now: Instant) -> Lookup {
        let entry = match self.shard(key).lock() {
            Ok(map) => map.get(key).cloned(),
            Err(_) => None,
        };
        let Some(entry) = entry else {
            return Lookup::Miss;
        };
        let age = now.saturating_duration_since(entry.stored).as_secs();
        if age < u64::from(entry.ttl) {
            let age = age as u32;
            let ttl = |r: &Record| {
                r.ttl
                    .clamp(self.config.min_ttl, self.config.max_ttl)
                    .min(entry.ttl)
                    .saturating_sub(age)
                    .max(1)
            };
            return Lookup::Fresh(Self::answer(&entry, ttl, Disposition::Cached));
        }
        if self.config.serve_stale
            && age < u64::from(entry.ttl) + self.config.stale_max_age.as_secs()
        {
            return Lookup::Stale(Self::answer(&entry, |_| STALE_TTL, Disposition::Stale));
        }
        Lookup::Miss
    }

    /// A copy of the entry with each record's TTL from `ttl`.
    fn answer(entry: &Entry, ttl: impl Fn(&Record) -> u32, disposition: Disposition) -> Answer {
        let copy = |records: &[Record]| {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = ttl(&r);
                    r
                })
                .collect()
        };
        Answer {
            rcode: entry.rcode,
            answers: copy(&entry.answers),
            authorities: copy(&entry.authorities),
            additionals: copy(&entry.additionals),
            authentic_data: entry.authentic_data,
            disposition,
            reason: None,
        }
    }

    /// How long `answer` may be cached, or `None` when it must not be.
    fn ttl_for(&self, answer: &Answer) -> Option<u32> {
        let negative = |answer: &Answer| {
            answer.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum).min(self.config.negative_max_ttl)),
                _ => None,
            })
        };
        let ttl = match answer.rcode {
            ResponseCode::NoError if !answer.answers.is_empty() => answer
                .answers
                .iter()
                .map(|r| r.ttl.clamp(self.config.min_ttl, self.config.max_ttl))
                .min(),
            ResponseCode::NoError | ResponseCode::NXDomain => negative(answer),
            _ => None,
        }?;
        (ttl > 0).then_some(ttl)
    }

    fn store(&self, key: Key, answer: &Answer, now: Instant) {
        let Some(ttl) = self.ttl_for(answer) else {
            return;
        };
        let entry = Arc::new(Entry {
            rcode: answer.rcode,
            answers: answer.answers.clone(),
            authorities: answer.authorities.clone(),
            additionals: answer.additionals.clone(),
            authentic_data: answer.authentic_data,
            stored: now,
            ttl,
        });
        let Ok(mut map) = self.shard(&key).lock() else {
            return;
        };
        let per_shard = self.config.size.div_ceil(SHARDS).max(1);
        if map.len() >= per_shard && !map.contains_key(&key) {
            let before = map.len();
            let keep = self.config.stale_max_age.as_secs();
            map.retain(|_, e| {
                now.saturating_duration_since(e.stored).as_secs() < u64::from(e.ttl) + keep
            });
            // Still full: drop an arbitrary tenth (HashMap order is effectively random).
            if map.len() >= per_shard {
                let victims: Vec<Key> = map.keys().take(per_shard / 10 + 1).cloned().collect();
                for k in victims {
                    map.remove(&k);
                }
            }
            self.metrics.cache_entries.sub((before - map.len()) as i64);
        }
        if map.insert(key, entry).is_none() {
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
            let key = Self::key(query);
            let stale = match self.lookup(&key, Instant::now()) {
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
                self.store(key, &answer, Instant::now());
            }
            answer
        })
    }
}
