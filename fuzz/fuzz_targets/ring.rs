//! Fuzz target `ring`: see `fuzz_harness::ring::run` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::ring::run(data));
