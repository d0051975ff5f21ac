//! Fuzz target `crypto_tamper`: see `fuzz_harness::crypto::tamper` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::crypto::tamper(data));
