//! Per-client rate limit: a token bucket per source address (per IPv6 network of
//! `[rate_limit] ipv6_prefix`, /64 by default: a device can use any address of its /64), so one
//! misbehaving device or a spoofed flood cannot starve the others. Over-limit queries get REFUSED (as small as the
//! query, so no amplification).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use hickory_proto::op::ResponseCode;

use crate::{
    config::RateLimitConfig,
    pipeline::{Admission, Answer, Disposition, Next, Origin, Query, Stage, StageFuture},
};

/// Buckets are spread over shards so concurrent clients rarely share a lock.
const SHARDS: usize = 16;
/// Above this many tracked clients per shard, full (idle) buckets are forgotten.
const MAX_CLIENTS_PER_SHARD: usize = 4096;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Every client's bucket, kept across reloads (the stage is rebuilt, this is not), so a
/// configuration reload does not hand a flooding device a fresh burst.
pub struct Buckets {
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

/// The rate-limit stage.
pub struct RateLimit {
    qps: f64,
    burst: f64,
    ipv6_prefix: u8,
    buckets: Arc<Buckets>,
}

impl RateLimit {
    /// A limiter allowing `qps` per client with bursts of `burst`, over `buckets`.
    pub fn new(config: RateLimitConfig, buckets: Arc<Buckets>) -> RateLimit {
        RateLimit {
            qps: f64::from(config.qps),
            burst: f64::from(config.burst.max(1)),
            ipv6_prefix: config.ipv6_prefix.min(128),
            buckets,
        }
    }

    /// The bucket `client` draws from: its IPv4 address, or its IPv6 network.
    fn bucket_of(&self, client: IpAddr) -> IpAddr {
        match client {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let bits = u128::from(v6);
                    let mask = u128::MAX
                        .checked_shl(128 - u32::from(self.ipv6_prefix))
                        .unwrap_or(0);
                    IpAddr::V6((bits & mask).into())
                }
            },
            v4 => v4,
        }
    }

    /// Takes one token for `client`; false when the client is over its limit.
    pub fn admit(&self, client: IpAddr, now: Instant) -> bool {
        if self.qps == 0.0 {
            return true;
        }
        let client = self.bucket_of(client);
        // Spread by the bytes that differ between buckets (a /64's low bytes are all zero).
        let shard = match client {
            IpAddr::V4(v4) => v4.octets()[3] as usize,
            IpAddr::V6(v6) => v6
                .octets()
                .iter()
                .fold(0usize, |h, &b| h.wrapping_mul(31) ^ b as usize),
        } % SHARDS;
        let Ok(mut buckets) = self.buckets.shards[shard].lock() else {
            return true;
        };
        if buckets.len() >= MAX_CLIENTS_PER_SHARD && !buckets.contains_key(&client) {
            let (qps, burst) = (self.qps, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * qps < burst
            });
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.qps;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Stage for RateLimit {
    fn name(&self) -> &'static str {
        "ratelimit"
    }

    fn handle<'a>(&'a self, query: &'a mut Query, next: Next<'a>) -> StageFuture<'a> {
        // A filtering check borrows a device's address: it must neither spend that device's
        // tokens nor be refused because the device (or a pupil's flood) spent them.
        let admitted = match query.admission {
            _ if query.origin == Origin::Check => true,
            Admission::Unchecked => self.admit(query.client, query.received),
            Admission::Admitted => true,
            Admission::OverLimit => false,
        };
        if admitted {
            next.run(query)
        } else {
            Box::pin(async {
                Answer::empty(ResponseCode::Refused, Disposition::RateLimited)
                    .with_note("client exceeded its query rate limit")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let rl = RateLimit::new(
            RateLimitConfig {
                qps: 10,
                burst: 5,
                ipv6_prefix: 64,
            },
            Default::default(),
        );
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!((0..8).filter(|_| rl.admit(ip, t0)).count(), 5);
        // Another client is unaffected.
        assert!(rl.admit("10.0.0.2".parse().unwrap(), t0));
        // 100 ms at 10 qps refills one token.
        assert!(rl.admit(ip, t0 + Duration::from_millis(100)));
        assert!(!rl.admit(ip, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn buckets_outlive_a_rebuilt_stage() {
        let buckets = Arc::new(Buckets::default());
        let config = RateLimitConfig {
            qps: 1,
            burst: 3,
            ipv6_prefix: 64,
        };
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        let before = RateLimit::new(config, buckets.clone());
        assert_eq!((0..5).filter(|_| before.admit(ip, t0)).count(), 3);
        let after = RateLimit::new(config, buckets);
        assert!(!after.admit(ip, t0), "a reload gives no fresh burst");
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_prefix() {
        let config = RateLimitConfig {
            qps: 1,
            burst: 3,
            ipv6_prefix: 64,
        };
        let rl = RateLimit::new(config, Default::default());
        let t0 = Instant::now();
        // A device rotating through privacy addresses in its /64 gets one burst, not one each.
        let admitted = (0..10u16)
            .filter(|i| {
                let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
                rl.admit(ip, t0)
            })
            .count();
        assert_eq!(admitted, 3);
        // Another /64 is another device.
        assert!(rl.admit("2001:db8:1:3::1".parse().unwrap(), t0));
        // IPv4 stays per address, also when it arrives as ::ffff:a.b.c.d.
        assert_eq!(
            (0..5)
                .filter(|_| rl.admit("10.0.0.1".parse().unwrap(), t0))
                .count(),
            3
        );
        assert!(!rl.admit("::ffff:10.0.0.1".parse().unwrap(), t0));
        assert!(rl.admit("10.0.0.2".parse().unwrap(), t0));
        // A /128 prefix limits each address on its own.
        let per_address = RateLimit::new(
            RateLimitConfig {
                ipv6_prefix: 128,
                ..config
            },
            Default::default(),
        );
        let admitted = (0..10u16)
            .filter(|i| {
                let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
                per_address.admit(ip, t0)
            })
            .count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn zero_qps_means_no_limit() {
        let rl = RateLimit::new(
            RateLimitConfig {
                qps: 0,
                burst: 0,
                ipv6_prefix: 64,
            },
            Default::default(),
        );
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!((0..10_000).all(|_| rl.admit(ip, Instant::now())));
    }
}
