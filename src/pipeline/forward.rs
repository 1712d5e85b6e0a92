//! Forwarding to upstream resolvers with hickory-resolver's name-server pools.
//!
//! Each upstream has its own pool (UDP with TCP fallback on truncation, or DNS-over-TLS), so
//! outcomes are counted per upstream. Upstreams are tried in order, healthy ones first; the
//! whole exchange has a hard deadline after which the client gets SERVFAIL.

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::StreamExt;
use hickory_proto::{
    op::{DnsRequest, DnsRequestOptions, Edns, Message, ResponseCode},
    rr::{DNSClass, Name, RData, RecordType},
};
use hickory_resolver::{
    config::{ConnectionConfig, NameServerConfig, ResolverOpts},
    net::{runtime::TokioRuntimeProvider, DnsError, DnsHandle, NetError},
    NameServerPool, PoolContext, TlsConfig,
};
use prometheus::IntCounter;

use crate::{
    config::{TlsRoots, UpstreamConfig, UpstreamSettings},
    metrics::Metrics,
    pipeline::{Answer, Disposition, Next, Query, Sections, Stage, StageFuture},
};

/// EDNS payload size we advertise upstream (DNS flag day 2020).
const UPSTREAM_PAYLOAD: u16 = 1232;

/// Why the forwarder could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No upstream configured.
    #[error("no upstream resolvers configured: set [upstream] servers or pass --upstream")]
    NoUpstreams,
    /// TLS set-up failed.
    #[error("upstream {upstream}: cannot set up DNS-over-TLS: {reason}")]
    Tls {
        /// The upstream.
        upstream: String,
        /// hickory's message.
        reason: String,
    },
}

struct Upstream {
    label: String,
    pool: NameServerPool<TokioRuntimeProvider>,
    /// Consecutive failures; a failing upstream is tried after healthy ones.
    failures: AtomicU32,
    answered: IntCounter,
    errors: IntCounter,
    timeouts: IntCounter,
}

/// A TLS client trusting only `roots` (hickory's settings otherwise: ring, safe versions).
fn client_config(roots: &TlsRoots) -> Result<rustls::ClientConfig, String> {
    let mut store = rustls::RootCertStore::empty();
    for cert in &roots.certs {
        store
            .add(cert.clone())
            .map_err(|e| format!("`{}`: {e}", roots.path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth())
}

/// How one round over the upstreams ended.
enum Round {
    Answered(Answer),
    /// No answer, and at least one attempt timed out (worth sending again).
    TimedOut,
    /// Every upstream answered with an error or could not be reached.
    Failed,
}

/// The forward stage: always the last in the chain.
pub struct Forward {
    upstreams: Vec<Upstream>,
    attempt_timeout: Duration,
    deadline: Duration,
}

impl Forward {
    /// Builds one pool per configured upstream.
    pub fn new(settings: &UpstreamSettings, metrics: &Metrics) -> Result<Forward, ForwardError> {
        if settings.servers.is_empty() {
            return Err(ForwardError::NoUpstreams);
        }
        let mut upstreams = Vec::new();
        for server in &settings.servers {
            let label = server.to_string();
            let pool = Self::pool(server, settings).map_err(|reason| ForwardError::Tls {
                upstream: label.clone(),
                reason,
            })?;
            let outcome = |o: &str| metrics.upstream.with_label_values(&[label.as_str(), o]);
            upstreams.push(Upstream {
                answered: outcome("answer"),
                errors: outcome("error"),
                timeouts: outcome("timeout"),
                label,
                pool,
                failures: AtomicU32::new(0),
            });
        }
        Ok(Forward {
            upstreams,
            attempt_timeout: settings.attempt_timeout,
            deadline: settings.deadline,
        })
    }

    fn pool(
        server: &UpstreamConfig,
        settings: &UpstreamSettings,
    ) -> Result<NameServerPool<TokioRuntimeProvider>, String> {
        let connections = match &server.tls_name {
            Some(name) => {
                let mut c = ConnectionConfig::tls(Arc::from(name.as_str()));
                c.port = server.addr.port();
                vec![c]
            }
            None => {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.addr.port();
                vec![udp, tcp]
            }
        };
        let ns = NameServerConfig::new(server.addr.ip(), true, connections);
        let mut opts = ResolverOpts::default();
        opts.timeout = settings.attempt_timeout;
        opts.attempts = 1;
        opts.edns_payload_len = UPSTREAM_PAYLOAD;
        opts.num_concurrent_reqs = 1;
        let mut tls = TlsConfig::new().map_err(|e| e.to_string())?;
        if let Some(roots) = &settings.tls_roots {
            tls.config = client_config(roots)?;
        }
        let cx = Arc::new(PoolContext::new(opts, tls));
        Ok(NameServerPool::from_config(
            [ns],
            cx,
            TokioRuntimeProvider::new(),
        ))
    }

    fn request(query: &Query) -> DnsRequest {
        let mut message = Message::query();
        message.add_query(hickory_proto::op::Query::query(
            query.name.clone(),
            query.qtype,
        ));
        if let Some(q) = message.queries.first_mut() {
            q.query_class = query.qclass;
        }
        message.metadata.recursion_desired = true;
        message.metadata.checking_disabled = query.checking_disabled;
        let mut edns = Edns::new();
        edns.set_max_payload(UPSTREAM_PAYLOAD)
            .set_dnssec_ok(query.dnssec_ok);
        message.set_edns(edns);
        let mut options = DnsRequestOptions::default();
        options.edns_payload_len = UPSTREAM_PAYLOAD;
        options.edns_set_dnssec_ok = query.dnssec_ok;
        DnsRequest::new(message, options)
    }

    /// Upstream indices, healthy first, in configured order otherwise.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.upstreams.len()).collect();
        order.sort_by_key(|&i| self.upstreams[i].failures.load(Ordering::Relaxed).min(1));
        order
    }

    /// Asks the upstreams in turn. A lost datagram is the common failure (a busy upstream
    /// drops some): while a round had a timeout, another round is sent (fresh message ids),
    /// as stub resolvers retransmit, until an answer or the caller's deadline. Without
    /// this one dropped datagram was a SERVFAIL to the device (the soak's in-group probe
    /// failed 61 of 3,360 queries so). A round in which every upstream answered with an
    /// error ends at once.
    ///
    /// Rounds start at most one attempt timeout apart. A round can report a timeout at once:
    /// hickory shares one lookup among identical questions, and a question that joins a
    /// shared lookup which has just timed out gets that timeout without waiting. Sent again
    /// at once, such a round came back at once, again and again, without ever yielding, so
    /// the task that owned the shared lookup (and would have retired it) never ran again:
    /// the worker spun at 100 % CPU and answered nothing more, not even SIGTERM. Waiting
    /// out the attempt lets that task run, and lets the caller's deadline fire.
    async fn exchange(&self, query: &Query) -> Answer {
        let request = Self::request(query);
        loop {
            let started = tokio::time::Instant::now();
            match self.round(&request, &query.name, query.dnssec_ok).await {
                Round::Answered(answer) => return answer,
                Round::TimedOut => {
                    tokio::time::sleep_until(started + self.attempt_timeout).await;
                    tokio::task::yield_now().await;
                }
                Round::Failed => {
                    return Answer::servfail().with_note("every upstream failed");
                }
            }
        }
    }

    /// One attempt at each upstream, until one answers.
    async fn round(&self, request: &DnsRequest, qname: &Name, dnssec_ok: bool) -> Round {
        let mut timed_out = false;
        for i in self.order() {
            let upstream = &self.upstreams[i];
            let mut responses = upstream.pool.send(request.clone());
            let outcome = tokio::time::timeout(self.attempt_timeout, responses.next()).await;
            match outcome {
                Ok(Some(Ok(response))) => {
                    let message = response.into_message();
                    let rcode = message.metadata.response_code;
                    if matches!(rcode, ResponseCode::ServFail | ResponseCode::Refused) {
                        upstream.errors.inc();
                        upstream.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(upstream = %upstream.label, %rcode, "upstream failed, trying next");
                        continue;
                    }
                    upstream.answered.inc();
                    upstream.failures.store(0, Ordering::Relaxed);
                    return Round::Answered(Self::answer(message, qname, dnssec_ok));
                }
                // hickory reports NXDOMAIN and NODATA as errors; to a forwarder they are answers.
                Ok(Some(Err(NetError::Dns(DnsError::NoRecordsFound(no_records))))) => {
                    upstream.answered.inc();
                    upstream.failures.store(0, Ordering::Relaxed);
                    let sections = Sections {
                        authorities: no_records
                            .authorities
                            .map(|a| a.to_vec())
                            .unwrap_or_default(),
                        ..Sections::default()
                    };
                    return Round::Answered(Answer::new(
                        no_records.response_code,
                        sections,
                        Disposition::Forwarded,
                    ));
                }
                Ok(Some(Err(error))) => {
                    if matches!(error, NetError::Timeout) {
                        upstream.timeouts.inc();
                        timed_out = true;
                    } else {
                        upstream.errors.inc();
                    }
                    upstream.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(upstream = %upstream.label, %error, "upstream error");
                }
                Ok(None) => {
                    upstream.errors.inc();
                    upstream.failures.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    upstream.timeouts.inc();
                    upstream.failures.fetch_add(1, Ordering::Relaxed);
                    timed_out = true;
                    tracing::debug!(upstream = %upstream.label, "upstream timed out");
                }
            }
        }
        if timed_out {
            Round::TimedOut
        } else {
            Round::Failed
        }
    }

    fn answer(mut message: Message, qname: &Name, dnssec_ok: bool) -> Answer {
        // The listener writes its own OPT record; upstream's must not be passed through.
        message
            .additionals
            .retain(|r| r.record_type() != RecordType::OPT);
        drop_unrelated(&mut message, qname);
        // Minimal responses (unbound's default): a positive answer needs no referral NS or
        // glue (an SOA stays: it caches a CNAME target's NODATA). With DO set the authority may
        // hold wildcard proofs, so it all stays.
        if !dnssec_ok && !message.answers.is_empty() {
            message
                .authorities
                .retain(|r| r.record_type() == RecordType::SOA);
            message.additionals.clear();
        }
        let sections = Sections {
            answers: message.answers,
            authorities: message.authorities,
            additionals: message.additionals,
        };
        let mut answer = Answer::new(
            message.metadata.response_code,
            sections,
            Disposition::Forwarded,
        );
        answer.authentic_data = message.metadata.authentic_data;
        answer
    }
}

/// Drops records a hostile (or broken) upstream added for names it was not asked about, so
/// they reach neither the cache nor a device's own cache. Answer records must be owned by the
/// query name or a name on its CNAME chain (DNAME records by an ancestor of one). Authority
/// and additional records must lie inside the zone the answer came from: the owner of an SOA
/// or NS record there that is an ancestor of a chain name (so NSEC/NSEC3 proofs, owned by
/// other names of that zone, stay for DNSSEC-validating clients); without such a record, only
/// ancestors of the chain are kept.
fn drop_unrelated(message: &mut Message, qname: &Name) {
    let mut chain = vec![qname.clone()];
    // Follow CNAMEs in any order they come; a loop or a very long chain stops at 16 links.
    for _ in 0..16 {
        let Some(last) = chain.last() else { break };
        let next = message.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name == *last && !chain.contains(&target.0) => {
                Some(target.0.clone())
            }
            _ => None,
        });
        match next {
            Some(target) => chain.push(target),
            None => break,
        }
    }
    let on_chain = |name: &Name| chain.iter().any(|c| c == name);
    let above_chain = |name: &Name| chain.iter().any(|c| name.zone_of(c));
    message.answers.retain(|r| match r.record_type() {
        RecordType::DNAME => above_chain(&r.name),
        _ => on_chain(&r.name),
    });
    let apexes: Vec<Name> = message
        .authorities
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::SOA | RecordType::NS))
        .filter(|r| above_chain(&r.name))
        .map(|r| r.name.clone())
        .collect();
    let in_zone = |name: &Name| above_chain(name) || apexes.iter().any(|a| a.zone_of(name));
    message.authorities.retain(|r| in_zone(&r.name));
    message.additionals.retain(|r| in_zone(&r.name));
}

impl Stage for Forward {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn handle<'a>(&'a self, query: &'a mut Query, _next: Next<'a>) -> StageFuture<'a> {
        Box::pin(async move {
            // CHAOS-class queries (`version.bind`, `hostname.bind`, `id.server`) ask about the
            // server that answers: the upstream's identity and version are not a device's
            // business, and nothing but IN is resolvable data. Refused here, never forwarded.
            if query.qclass != DNSClass::IN {
                return Answer::empty(ResponseCode::Refused, Disposition::Local)
                    .with_note("not an Internet-class query: answered locally, never forwarded");
            }
            match tokio::time::timeout(self.deadline, self.exchange(query)).await {
                Ok(answer) => answer,
                Err(_) => Answer::servfail().with_note("upstream deadline passed"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::{
        rdata::{A, CNAME, NS, SOA},
        Record,
    };

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn only_the_chain_and_its_zone_survive() {
        let rec = |owner: &str, data: RData| Record::from_rdata(name(owner), 300, data);
        let mut m = Message::query();
        m.answers = vec![
            rec("a.school.test.", RData::CNAME(CNAME(name("b.cdn.test.")))),
            rec("b.cdn.test.", RData::A(A::new(192, 0, 2, 1))),
            rec("www.bank.test.", RData::A(A::new(203, 0, 113, 1))),
            rec("B.CDN.TEST.", RData::A(A::new(192, 0, 2, 2))),
        ];
        m.authorities = vec![
            rec("cdn.test.", RData::NS(NS(name("ns.cdn.test.")))),
            rec("zz.cdn.test.", RData::A(A::new(192, 0, 2, 9))),
            rec("bank.test.", RData::NS(NS(name("ns.evil.test.")))),
            rec(
                "test.",
                RData::SOA(SOA::new(name("ns.test."), name("h.test."), 1, 1, 1, 1, 1)),
            ),
        ];
        m.additionals = vec![
            rec("ns.cdn.test.", RData::A(A::new(192, 0, 2, 53))),
            rec("ns.evil.test.", RData::A(A::new(203, 0, 113, 53))),
        ];
        drop_unrelated(&mut m, &name("A.School.Test."));
        let owners = |rs: &[Record]| rs.iter().map(|r| r.name.to_ascii()).collect::<Vec<_>>();
        assert_eq!(
            owners(&m.answers),
            ["a.school.test.", "b.cdn.test.", "B.CDN.TEST."]
        );
        // `test.` is an ancestor with an SOA: the whole `test.` zone is in bailiwick here,
        // as it would be for a resolver asking that zone's server.
        assert_eq!(m.authorities.len(), 4);
        let mut m2 = m.clone();
        m2.authorities
            .retain(|r| r.record_type() != RecordType::SOA);
        m2.additionals = vec![
            rec("ns.cdn.test.", RData::A(A::new(192, 0, 2, 53))),
            rec("ns.evil.test.", RData::A(A::new(203, 0, 113, 53))),
        ];
        drop_unrelated(&mut m2, &name("a.school.test."));
        assert_eq!(owners(&m2.authorities), ["cdn.test.", "zz.cdn.test."]);
        assert_eq!(owners(&m2.additionals), ["ns.cdn.test."]);
    }
}
