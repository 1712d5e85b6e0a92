//! **The one place the pipeline is assembled.** Every stage is built here from the
//! configuration, construction errors are collected per stage, and the order below is the
//! order every query takes.

use std::sync::Arc;

use crate::{
    clock::Clock,
    config::{Config, GroupConfig},
    event::QuerySink,
    lists::Blocklists,
    metrics::Metrics,
    neighbours::Neighbours,
    pipeline::{
        cache::{Cache, CacheStore},
        forward::Forward,
        grants::LiveGrants,
        group::{Group, GroupPolicy, NameSet},
        identify::{Devices, GroupNetworks, Identify},
        policy::Policy,
        ratelimit::{Buckets, RateLimit},
        record::Record,
        replay::Replay,
        safesearch::SafeSearch,
        Pipeline, Stage,
    },
    schedule::Schedule,
};

/// Stages that could not be built, each error prefixed with its stage's name.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the pipeline:\n  {}", .0.join("\n  "))]
pub struct ChainError(pub Vec<String>);

/// What the chain is built from besides the configuration: long-lived parts that survive
/// reloads.
#[derive(Clone)]
pub struct ChainParts {
    /// Shared metric handles.
    pub metrics: Arc<Metrics>,
    /// Where finished queries go (the store), if anywhere.
    pub sink: Option<Arc<dyn QuerySink>>,
    /// The compiled lists in force.
    pub lists: Arc<Blocklists>,
    /// Time-limited allow grants, replaced while the resolver runs (kept across reloads, so
    /// a reload never drops a grant).
    pub grants: Arc<LiveGrants>,
    /// Cached answers (kept across reloads).
    pub cache: Arc<CacheStore>,
    /// Rate-limit buckets (kept across reloads).
    pub buckets: Arc<Buckets>,
    /// The clock schedules and grants are judged by.
    pub clock: Clock,
    /// The neighbour table, for devices pinned by MAC address.
    pub neighbours: Neighbours,
}

/// The configured devices, by address and by MAC address, with their names and groups.
pub fn devices(config: &Config, groups: &[GroupNetworks]) -> Devices {
    let mut devices = Devices::default();
    for d in &config.devices {
        let name: Arc<str> = d.name.as_str().into();
        if let Some(ip) = d.ip {
            devices.by_ip.insert(ip, name.clone());
        }
        let group = groups.iter().find(|(g, _)| *g.name == *d.group);
        if let (Some(mac), Some((group, _))) = (d.mac, group) {
            devices.by_mac.insert(mac, (group.clone(), name));
        }
    }
    devices
}

/// One group's policy against the lists in force.
fn group_policy(g: &GroupConfig, lists: &Blocklists) -> Result<GroupPolicy, String> {
    let mask = |ids: &[String], key: &str| {
        ids.iter()
            .try_fold(0u32, |acc, id| match lists.category_bit(id) {
                Some(bit) => Ok(acc | bit),
                None => {
                    let known: Vec<&str> =
                        lists.categories().iter().map(|c| c.id.as_str()).collect();
                    Err(format!(
                    "group `{}`: {key} names unknown category `{id}` (the lists in force have: {})",
                    g.name,
                    known.join(", ")
                ))
                }
            })
    };
    let mut schedules = Vec::new();
    for s in &g.schedules {
        schedules.push(Schedule {
            window: s.window.clone(),
            categories: mask(&s.allow_categories, "a schedule")?,
        });
    }
    Ok(GroupPolicy {
        deny: NameSet::new(g.deny.iter().cloned()),
        allow: NameSet::new(g.allow.iter().cloned()),
        categories: mask(&g.block_categories, "block_categories")?,
        schedules,
        block_answer: g.block_answer,
        anti_circumvention: g.anti_circumvention,
        strip_ech: g.strip_ech,
    })
}

/// The groups of `config` with their policies against `lists`, and each group's networks
/// (devices pinned as single-address networks).
pub fn groups(
    config: &Config,
    lists: &Blocklists,
    metrics: &Metrics,
) -> Result<Vec<GroupNetworks>, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (index, g) in config.groups.iter().enumerate() {
        match group_policy(g, lists) {
            Ok(policy) => {
                let mut networks = g.networks.clone();
                networks.extend(
                    config
                        .devices
                        .iter()
                        .filter(|d| d.group == g.name)
                        .filter_map(|d| d.ip.map(ipnet::IpNet::from)),
                );
                out.push((
                    Arc::new(Group {
                        index,
                        name: g.name.as_str().into(),
                        policy,
                        safesearch: g.safesearch.clone(),
                        metrics: metrics.group(&g.name),
                    }),
                    networks,
                ));
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Builds the pipeline for `config`.
pub fn build(config: &Config, parts: &ChainParts) -> Result<Pipeline, ChainError> {
    let mut errors = Vec::new();
    let forward = Forward::new(&config.upstream, &parts.metrics)
        .map_err(|e| errors.push(format!("forward: {e}")))
        .ok();
    let groups = groups(config, &parts.lists, &parts.metrics)
        .map_err(|e| errors.extend(e.into_iter().map(|e| format!("policy: {e}"))))
        .ok();
    let (Some(forward), Some(groups)) = (forward, groups) else {
        return Err(ChainError(errors));
    };

    let identify = Arc::new(
        Identify::new(&groups).with_devices(devices(config, &groups), parts.neighbours.clone()),
    );
    let gate = {
        let identify = identify.clone();
        Arc::new(move |ip| identify.client(ip).is_some())
    };
    let record = Arc::new(Record::new(
        parts.metrics.clone(),
        parts.sink.clone(),
        parts.clock.clone(),
    ));
    let ratelimit = Arc::new(RateLimit::new(config.rate_limit, parts.buckets.clone()));
    // A repeat goes through these three, called directly, and gets the bytes kept from the
    // chain's answer; it is built with the chain, so a reload starts it empty. Off with the
    // cache, and as large.
    let replay = (config.cache.size > 0).then(|| {
        Arc::new(Replay::new(
            config.cache.size,
            identify.clone(),
            ratelimit.clone(),
            record.clone(),
            parts.metrics.clone(),
            parts.grants.clone(),
            parts.clock.clone(),
        ))
    });
    let stages: Vec<Arc<dyn Stage>> = vec![
        // Outermost, so it sees every answer, including refusals, and times the whole path.
        record,
        // Before anything spends effort: clients outside the school's subnets are REFUSED.
        identify,
        // Keyed by the real source address, and after identify so outsiders hold no buckets.
        ratelimit,
        // Decides on the name as asked, before any rewrite or cached answer can be served;
        // it also checks CNAME targets in what comes back from below.
        Arc::new(
            Policy::new(
                parts.lists.clone(),
                parts.grants.clone(),
                parts.clock.clone(),
                config.lists.illegal_proxy,
            )
            .with_failure_counter(parts.metrics.list_lookup_failures.clone()),
        ),
        // After policy (which decides on the name as asked, and vets CNAME targets on the way
        // back) and before the cache, so the cache stores the targets, never a rewrite, and a
        // change to a group's SafeSearch takes effect without a flush.
        Arc::new(SafeSearch::new()),
        // Just before the forwarder, so only upstream answers are cached and policy changes
        // take effect without a flush.
        Arc::new(Cache::new(
            config.cache.clone(),
            parts.cache.clone(),
            parts.metrics.clone(),
        )),
        // Last: asks the upstreams.
        Arc::new(forward),
    ];
    let pipeline = Pipeline::new(stages).with_gate(gate);
    Ok(match replay {
        Some(replay) => pipeline.with_replay(replay),
        None => pipeline,
    })
}
