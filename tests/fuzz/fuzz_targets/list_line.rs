//! A list file, in the format its first byte picks, through the list importer.
//! The body is `hedgerow::fuzzing::list_line`, which the corpus replay test runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hedgerow::fuzzing::list_line(data));
