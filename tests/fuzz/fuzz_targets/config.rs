//! TOML text through the configuration loader.
//! The body is `hedgerow::fuzzing::config`, which the corpus replay test runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hedgerow::fuzzing::config(data));
