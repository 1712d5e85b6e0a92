//! A datagram as the UDP listener reads it (fast-path reader vs hickory, response writer).
//! The body is `hedgerow::fuzzing::wire_reader`, which the corpus replay test runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hedgerow::fuzzing::wire_reader(data));
