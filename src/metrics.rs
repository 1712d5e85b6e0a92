//! Prometheus metrics: one explicit registry (prefix `hedgerow_`), handles built once.
//!
//! Stages get a shared [`Metrics`] and only increment pre-registered handles on the hot path;
//! labels stay low-cardinality (group, query type, disposition, upstream, category), never a
//! domain name or a client address.

use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::rr::RecordType;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::event::{BlockReason, Disposition};

/// Query types with their own label; everything else is `other`.
const QTYPES: [RecordType; 12] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::HTTPS,
    RecordType::SVCB,
    RecordType::NS,
    RecordType::SOA,
    RecordType::ANY,
];

/// Label for clients outside every group.
pub const NO_GROUP: &str = "none";

/// Why a metric could not be registered.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// One group's pre-registered counters. Built by name when the pipeline is assembled, so a
/// reload that adds, removes or reorders groups keeps every label right.
#[derive(Debug, Clone)]
pub struct GroupMetrics {
    /// `[qtype][disposition]`.
    queries: Vec<IntCounter>,
    /// Indexed by [`BlockReason`] (registered up front so the hot path only increments).
    blocked: Vec<IntCounter>,
}

impl GroupMetrics {
    /// Counts a blocked query under `reason`.
    pub fn blocked(&self, reason: BlockReason) {
        if let Some(c) = self.blocked.get(reason as usize) {
            c.inc();
        }
    }
}

/// Every metric Hedgerow exports.
pub struct Metrics {
    registry: Registry,
    queries_vec: IntCounterVec,
    /// For clients outside every group.
    no_group: GroupMetrics,
    latency: Vec<Histogram>,
    /// Upstream outcomes by upstream address.
    pub upstream: IntCounterVec,
    /// Current number of cached answers.
    pub cache_entries: IntGauge,
    /// Memory the cached answers hold (estimated on the high side), in bytes.
    pub cache_bytes: IntGauge,
    /// Answers served but not cached because they were above the per-entry size.
    pub cache_too_large: IntCounter,
    /// Answers repeated from the replay memo (also counted in the query counts).
    pub answers_replayed: IntCounter,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    /// Fraction of cache lookups that hit, since start (updated at each scrape).
    cache_hit_ratio: prometheus::Gauge,
    blocked: IntCounterVec,
    /// Entries per category in the compiled lists in force.
    pub list_entries: IntGaugeVec,
    /// Unix time the lists in force were built.
    pub lists_built: IntGauge,
    /// List reloads by outcome (`ok`, `error`).
    pub list_reloads: IntCounterVec,
    /// Configuration reloads by outcome.
    pub config_reloads: IntCounterVec,
    /// Panics caught while answering, by listener (`udp`, `tcp`): each cost one query or
    /// one connection, not the listener.
    pub panics: IntCounterVec,
    /// Connections closed at once because a cap was reached, by listener (`tcp`, `http`)
    /// and cap (`total`, `client`, `outsider`).
    pub connections_rejected: IntCounterVec,
    /// Connections open now, by listener (`tcp`, `http`).
    pub connections_open: IntGaugeVec,
    /// List lookups that failed (a panic on damaged list data) and were answered as blocked.
    pub list_lookup_failures: IntCounter,
    hits: AtomicU64,
    lookups: AtomicU64,
}

impl Metrics {
    /// Registers every metric. Group counters are made per group with [`Metrics::group`].
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new_custom(Some("hedgerow".into()), None)?;
        let queries_vec = IntCounterVec::new(
            Opts::new(
                "queries_total",
                "DNS queries answered, by group, type and disposition",
            ),
            &["group", "qtype", "disposition"],
        )?;
        registry.register(Box::new(queries_vec.clone()))?;
        let latency_vec = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "query_duration_seconds",
                "Time from receiving a query to having its answer, by disposition",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
            ]),
            &["disposition"],
        )?;
        registry.register(Box::new(latency_vec.clone()))?;
        let latency = Disposition::ALL
            .iter()
            .map(|d| latency_vec.with_label_values(&[d.label()]))
            .collect();
        let upstream = IntCounterVec::new(
            Opts::new(
                "upstream_responses_total",
                "Upstream exchanges by upstream and outcome",
            ),
            &["upstream", "outcome"],
        )?;
        registry.register(Box::new(upstream.clone()))?;
        let cache_entries = IntGauge::new("cache_entries", "Answers currently cached")?;
        registry.register(Box::new(cache_entries.clone()))?;
        let cache_bytes = IntGauge::new(
            "cache_bytes",
            "Memory the cached answers hold (estimated on the high side), in bytes",
        )?;
        registry.register(Box::new(cache_bytes.clone()))?;
        let cache_too_large = IntCounter::new(
            "cache_uncached_large_total",
            "Answers served but not cached because they were above [cache] max_entry_bytes",
        )?;
        registry.register(Box::new(cache_too_large.clone()))?;
        let answers_replayed = IntCounter::new(
            "answers_replayed_total",
            "Answers repeated from the bytes kept for the same question and group (blocked \
             answers and cache hits; also counted in queries_total)",
        )?;
        registry.register(Box::new(answers_replayed.clone()))?;
        let cache_lookups = IntCounterVec::new(
            Opts::new("cache_lookups_total", "Cache lookups by result"),
            &["result"],
        )?;
        registry.register(Box::new(cache_lookups.clone()))?;
        let cache_hit_ratio =
            prometheus::Gauge::new("cache_hit_ratio", "Fraction of cache lookups that hit")?;
        registry.register(Box::new(cache_hit_ratio.clone()))?;
        let blocked = IntCounterVec::new(
            Opts::new("blocked_total", "Blocked queries by group and reason"),
            &["group", "reason"],
        )?;
        registry.register(Box::new(blocked.clone()))?;
        let list_entries = IntGaugeVec::new(
            Opts::new("list_entries", "Entries per category in the lists in force"),
            &["category"],
        )?;
        registry.register(Box::new(list_entries.clone()))?;
        let lists_built = IntGauge::new(
            "lists_build_timestamp_seconds",
            "Unix time the lists in force were compiled",
        )?;
        registry.register(Box::new(lists_built.clone()))?;
        let list_reloads = IntCounterVec::new(
            Opts::new("list_reloads_total", "List reloads by outcome"),
            &["outcome"],
        )?;
        registry.register(Box::new(list_reloads.clone()))?;
        let config_reloads = IntCounterVec::new(
            Opts::new("config_reloads_total", "Configuration reloads by outcome"),
            &["outcome"],
        )?;
        registry.register(Box::new(config_reloads.clone()))?;
        let list_lookup_failures = IntCounter::new(
            "list_lookup_failures_total",
            "List lookups that failed on damaged list data; each such query was blocked",
        )?;
        registry.register(Box::new(list_lookup_failures.clone()))?;
        let panics = IntCounterVec::new(
            Opts::new(
                "panics_total",
                "Panics caught while answering (each cost one query or connection), by listener",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(panics.clone()))?;
        let connections_rejected = IntCounterVec::new(
            Opts::new(
                "connections_rejected_total",
                "Connections closed on accept because a cap was reached, by listener and cap",
            ),
            &["listener", "cap"],
        )?;
        registry.register(Box::new(connections_rejected.clone()))?;
        let connections_open = IntGaugeVec::new(
            Opts::new("connections_open", "Connections open now, by listener"),
            &["listener"],
        )?;
        registry.register(Box::new(connections_open.clone()))?;
        let no_group = Self::group_handles(&queries_vec, &blocked, NO_GROUP);
        Ok(Metrics {
            registry,
            queries_vec,
            no_group,
            latency,
            upstream,
            cache_entries,
            cache_bytes,
            cache_too_large,
            answers_replayed,
            cache_hits: cache_lookups.with_label_values(&["hit"]),
            cache_misses: cache_lookups.with_label_values(&["miss"]),
            cache_hit_ratio,
            blocked,
            list_entries,
            lists_built,
            list_reloads,
            config_reloads,
            panics,
            connections_rejected,
            connections_open,
            list_lookup_failures,
            hits: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
        })
    }

    fn group_handles(queries: &IntCounterVec, blocked: &IntCounterVec, name: &str) -> GroupMetrics {
        let mut q = Vec::new();
        for qtype in QTYPES
            .iter()
            .map(|t| t.to_string())
            .chain(["other".to_string()])
        {
            for d in Disposition::ALL {
                q.push(queries.with_label_values(&[name, qtype.as_str(), d.label()]));
            }
        }
        GroupMetrics {
            queries: q,
            blocked: BlockReason::ALL
                .iter()
                .map(|r| blocked.with_label_values(&[name, r.label()]))
                .collect(),
        }
    }

    /// The counters of the group called `name` (registered on first use, shared after).
    pub fn group(&self, name: &str) -> GroupMetrics {
        Self::group_handles(&self.queries_vec, &self.blocked, name)
    }

    /// Counts one answered query for `group` (`None`: a client outside every group).
    pub fn observe_query(
        &self,
        group: Option<&GroupMetrics>,
        qtype: RecordType,
        disposition: Disposition,
        seconds: f64,
    ) {
        let g = group.unwrap_or(&self.no_group);
        let t = QTYPES
            .iter()
            .position(|&t| t == qtype)
            .unwrap_or(QTYPES.len());
        let d = disposition as usize;
        if let Some(c) = g.queries.get(t * Disposition::ALL.len() + d) {
            c.inc();
        }
        if let Some(h) = self.latency.get(d) {
            h.observe(seconds);
        }
    }

    /// Publishes the entry counts and build time of the lists in force.
    pub fn publish_lists(&self, meta: &crate::lists::Meta) {
        for (category, count) in meta.category_counts() {
            self.list_entries
                .with_label_values(&[category])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.lists_built
            .set(i64::try_from(meta.built_unix).unwrap_or(i64::MAX));
    }

    /// Counts a cache lookup.
    pub fn observe_cache(&self, hit: bool) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
        }
    }

    /// The registry, for components that register their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let lookups = self.lookups.load(Ordering::Relaxed);
        if lookups > 0 {
            self.cache_hit_ratio
                .set(self.hits.load(Ordering::Relaxed) as f64 / lookups as f64);
        }
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_group_type_and_disposition() {
        let m = Metrics::new().unwrap();
        let (pupils, staff) = (m.group("pupils"), m.group("staff"));
        m.observe_query(Some(&staff), RecordType::AAAA, Disposition::Blocked, 0.0001);
        m.observe_query(None, RecordType::A, Disposition::Refused, 0.0001);
        m.observe_query(
            Some(&pupils),
            RecordType::NULL,
            Disposition::Forwarded,
            0.01,
        );
        staff.blocked(BlockReason::Deny);
        staff.blocked(BlockReason::SafeSearchUnenforceable);
        let text = m.encode();
        assert!(text.contains(
            "hedgerow_queries_total{disposition=\"blocked\",group=\"staff\",qtype=\"AAAA\"} 1"
        ));
        assert!(text.contains(
            "hedgerow_queries_total{disposition=\"refused\",group=\"none\",qtype=\"A\"} 1"
        ));
        assert!(text.contains(
            "hedgerow_queries_total{disposition=\"forwarded\",group=\"pupils\",qtype=\"other\"} 1"
        ));
        assert!(text.contains("hedgerow_blocked_total{group=\"staff\",reason=\"deny\"} 1"));
        assert!(text.contains(
            "hedgerow_blocked_total{group=\"staff\",reason=\"safesearch_unenforceable\"} 1"
        ));
        // Every reason is registered up front, at zero.
        for reason in BlockReason::ALL {
            let line = format!(
                "hedgerow_blocked_total{{group=\"pupils\",reason=\"{}\"}} 0",
                reason.label()
            );
            assert!(text.contains(&line), "{line}");
        }
    }
}
