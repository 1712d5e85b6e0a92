//! **The one place the pipeline is assembled.** Every stage is built here from the
//! configuration, construction errors are collected per stage, and the order below is the
//! order every query takes.

use std::sync::Arc;

use crate::{
    config::Config,
    metrics::Metrics,
    pipeline::{
        cache::Cache,
        forward::Forward,
        identify::{Group, Identify},
        policy::{GroupPolicy, NameSet, Policy},
        ratelimit::RateLimit,
        record::{QuerySink, Record},
        Pipeline, Stage,
    },
};

/// Stages that could not be built, each error prefixed with its stage's name.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the pipeline:\n  {}", .0.join("\n  "))]
pub struct ChainError(pub Vec<String>);

/// What the chain is built from besides the configuration.
pub struct ChainParts {
    /// Shared metric handles.
    pub metrics: Arc<Metrics>,
    /// Where finished queries go (the store), if anywhere.
    pub sink: Option<Arc<dyn QuerySink>>,
}

/// The groups of `config`, with their policies, in file order.
pub fn groups(config: &Config) -> Vec<(Arc<Group>, Vec<ipnet::IpNet>)> {
    config
        .groups
        .iter()
        .enumerate()
        .map(|(index, g)| {
            let group = Group {
                index,
                name: g.name.clone(),
                policy: GroupPolicy {
                    deny: NameSet::new(g.deny.iter().cloned()),
                    allow: NameSet::new(g.allow.iter().cloned()),
                },
            };
            (Arc::new(group), g.networks.clone())
        })
        .collect()
}

/// Builds the pipeline for `config`.
pub fn build(config: &Config, parts: &ChainParts) -> Result<Pipeline, ChainError> {
    let mut errors = Vec::new();
    let forward = Forward::new(&config.upstream, &parts.metrics)
        .map_err(|e| errors.push(format!("forward: {e}")))
        .ok();
    let Some(forward) = forward else {
        return Err(ChainError(errors));
    };

    let stages: Vec<Arc<dyn Stage>> = vec![
        // Outermost, so it sees every answer, including refusals, and times the whole path.
        Arc::new(Record::new(parts.metrics.clone(), parts.sink.clone())),
        // Before anything spends effort: clients outside the school's subnets are REFUSED.
        Arc::new(Identify::new(&groups(config))),
        // Keyed by the real source address, and after identify so outsiders hold no buckets.
        Arc::new(RateLimit::new(config.rate_limit)),
        // Decides on the name as asked, before any rewrite or cached answer can be served.
        Arc::new(Policy),
        // Just before the forwarder, so only upstream answers are cached and policy changes
        // take effect without a flush.
        Arc::new(Cache::new(config.cache.clone(), parts.metrics.clone())),
        // Last: asks the upstreams.
        Arc::new(forward),
    ];
    Ok(Pipeline::new(stages))
}
