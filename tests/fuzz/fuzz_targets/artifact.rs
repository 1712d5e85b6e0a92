//! A compiled list artifact with one file replaced by the input, opened and looked up.
//! The body is `hedgerow::fuzzing::artifact`, which the corpus replay test runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hedgerow::fuzzing::artifact(data));
