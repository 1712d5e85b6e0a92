//! Shared harness for integration tests (ripgrep `tests/util.rs` style).
#![allow(dead_code)]

pub mod dns;
pub mod shared_data;
