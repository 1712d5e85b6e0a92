//! Hedgerow: a DNS-level filtering resolver for schools.
//!
//! Hedgerow is the DNS server a school sets on its router. It answers the school's own
//! subnets only (never an open resolver), applies each group's policy (pupils, staff,
//! guests…), and forwards everything else to upstream resolvers through a cache.
//!
//! # Layout
//!
//! Every query flows through one pipeline, assembled in [`pipeline::chain`]:
//!
//! ```text
//!  UDP/TCP ─▶ server::Handler ─▶ record ─▶ identify ─▶ ratelimit ─▶ policy ─▶ safesearch ─▶ cache ─▶ forward ─▶ upstreams
//!                                  │
//!                                  └─▶ metrics (and the query log)
//! ```
//!
//! - [`config`]: the TOML schema, validated, with file/line/key errors.
//! - [`pipeline`]: the [`pipeline::Stage`] trait and one file per stage.
//! - [`server`]: sockets and the bridge from hickory-server into the pipeline; [`wire`]: the
//!   UDP hot path's own reader and writer for plain queries.
//! - [`metrics`]: the Prometheus registry; [`http`]: `/metrics`.
//! - [`store`]: the query log, device identity, breaches and the audit trail in SQLite; the
//!   only place with SQL. It depends on [`event`], [`clock`] and [`config`] only.
//! - [`app`]: wiring, reload and graceful shutdown; the binary only parses arguments.

pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod event;
pub mod http;
pub mod lists;
pub mod lookup;
pub mod metrics;
pub mod neighbours;
pub mod pipeline;
pub mod schedule;
pub mod server;
pub mod store;
pub mod wire;
