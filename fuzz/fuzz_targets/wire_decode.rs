//! Fuzz target `wire_decode`: see `fuzz_harness::decode::run` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::decode::run(data));
