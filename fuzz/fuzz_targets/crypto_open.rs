//! Fuzz target `crypto_open`: see `fuzz_harness::crypto::open_raw` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::crypto::open_raw(data));
