//! Hedgerow: a DNS-level filtering resolver for schools.
//!
//! Hedgerow is the DNS server a school sets on its router. It answers the school's own
//! subnets only (never an open resolver), applies each group's policy (pupils, staff,
//! guests…), and forwards everything else to upstream resolvers through a cache.
//!
//! # How a query flows
//!
//! Every query runs through one pipeline, assembled in [`pipeline::chain`]:
//!
//! ```text
//!  UDP ─▶ server's UDP loop (wire codec) ───────────────────┐
//!  TCP ─▶ server's TCP loop (caps, framing) ─▶ server::Handler ┴─▶ record ─▶ identify ─▶ ratelimit ─▶ policy ─▶ safesearch ─▶ cache ─▶ forward ─▶ upstreams
//!                                                                │
//!                                                                └─▶ metrics, and one event::QueryEvent per query to the query log's sink
//! ```
//!
//! Plain UDP queries are read and answered by the listener's own loop with [`wire`]'s codec;
//! TCP (our own accept loop, under connection caps) and unusual UDP queries go through
//! hickory's request type and [`server::Handler`].
//!
//! # Layers, and who may import whom
//!
//! ```text
//!  main.rs (CLI, anyhow)          app (wiring: config → lists → pipeline → listeners; reload; drain)
//!        │                          │
//!        ├── lookup, describe, audit ── the technician's views of a configuration
//!        ├── checks ── asks each group's names through the pipeline (filtering checks)
//!        │                          │
//!  DNS path:  server ─▶ pipeline ─▶ lists        wire (codec, imports no pipeline type)
//!        │                          │
//!  leaves:    config ─▶ names, schedule, neighbours, event, clock        metrics ─▶ event, lists
//! ```
//!
//! - **Leaves** import nothing above them: [`event`] (the plain data the DNS path hands to the
//!   query log: [`event::QueryEvent`], [`event::BlockReason`], [`event::Disposition`],
//!   [`event::Severity`]), [`clock`] (the one "now"), [`names`] (the one name normaliser),
//!   [`schedule`], [`neighbours`], [`log_limit`] (rate-limited warnings about client
//!   traffic), [`accounts`] (dashboard roles, password hashing and strength, TOTP codes).
//! - [`config`] is the TOML schema, validated; it imports only leaves, and owns the value types
//!   the file spells out (block answers, SafeSearch settings).
//! - **The DNS path** — [`server`], [`wire`], [`pipeline`], [`lists`] — never imports the
//!   store, the dashboard or [`app`]. The pipeline's per-client context (group, policy,
//!   SafeSearch) is [`pipeline::group`]; the trait and the types that flow are in
//!   [`pipeline`].
//! - [`store`] is the query log, device identity, breaches and the audit trail in SQLite:
//!   the only place with SQL. It imports [`event`], [`clock`], [`config`] and [`accounts`]
//!   only.
//! - **Off the DNS path**: [`identity`] (who an address was: DHCP lease files, user
//!   sessions) and [`alerts`] (instant safeguarding alerts to the DSL) import only leaves and
//!   `config`; [`civil`] is UTC calendar time (a leaf).
//! - [`checks`] (the filtering checks: each group's names asked through the pipeline in force,
//!   as a device of the group) imports config, lists and pipeline, like [`lookup`]; `app`
//!   records its runs in the store and alerts on failures.
//! - [`report`] (the DSL's weekly summary), [`sessions`] (recording user sessions from a
//!   CSV file or the sessions API), [`users`] (the `hedgerow user` commands: dashboard
//!   accounts) and [`unblock`] (deciding unblock requests and managing grants from the
//!   command line; it also opens the lists, to refuse the illegal tier) read and write
//!   through the store, never its SQL.
//! - [`app`] is the only module that wires parts together; the binary only parses arguments.
//!   Approved grants reach the resolver through it: it loads them from the store into the
//!   live table ([`pipeline::grants`]) that policy reads.
//! - `fuzzing` (hidden from these docs, not an API) holds the bodies of the fuzz targets in
//!   `tests/fuzz`, so the corpus replay test runs them on stable; nothing else imports it.
//!
//! `python3 ../shared/tools/modcycles.py src` checks that no two files import each other,
//! directly or around a loop.

#![warn(missing_docs)]

pub mod accounts;
pub mod alerts;
pub mod app;
pub mod audit;
pub mod checks;
pub mod civil;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod describe;
pub mod event;
#[doc(hidden)]
pub mod fuzzing;
pub mod heap;
mod http;
pub mod identity;
pub mod lists;
pub mod log_limit;
pub mod lookup;
pub mod metrics;
pub mod names;
pub mod neighbours;
pub mod pipeline;
pub mod report;
pub mod schedule;
pub mod server;
pub mod sessions;
pub mod store;
pub mod unblock;
pub mod users;
pub mod wire;
