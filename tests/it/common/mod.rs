//! Shared harness for integration tests (ripgrep `tests/util.rs` style).
#![allow(dead_code)]

pub mod dns;
pub mod games;
pub mod rng;
pub mod shared_data;
pub mod tempdir;
pub mod tools;
pub mod webhook;
