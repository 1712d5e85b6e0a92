//! Integration tests, one binary (ripgrep's `tests/` layout): one link instead of one per
//! file, which matters on a 2-core machine. Each module is one area; `common` is the harness.

mod accounts;
mod alerts;
mod binary;
mod browser;
mod checks;
mod common;
mod daily;
mod dashboard;
mod fuzz_corpus;
mod grants;
mod guard;
mod hardening;
mod identity;
mod lists_compile;
mod lists_memory;
mod lists_prefilter;
mod lists_real_data;
mod lists_scale;
mod lists_update;
mod policy;
mod querylog;
mod reload;
mod replay;
mod report;
mod resolver;
mod safesearch;
mod seams;
mod store;
mod upstream_tls;
