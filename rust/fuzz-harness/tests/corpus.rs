//! Replays every file of `fuzz/corpus/<target>/` through the target's harness function, so the
//! corpus the fuzzer built is exercised by `cargo test` on stable Rust, without cargo-fuzz or
//! libFuzzer. A failure names the file; `cargo fuzz run <target> <file>` reproduces it under
//! the fuzzer, and so does `FUZZ_REPLAY=<file> cargo test -p fuzz-harness --test corpus`.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use fuzz_harness::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn replay(target: &str, run: fn(&[u8])) {
    let dir = corpus_dir(target);
    let files = files(&dir);
    // An empty or missing corpus would make this test pass vacuously.
    assert!(
        files.len() >= 10,
        "{}: only {} corpus files",
        dir.display(),
        files.len()
    );
    let mut failed = Vec::new();
    for f in &files {
        let data = fs::read(f).expect("read corpus file");
        if panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: failing inputs: {failed:#?}");
}

#[test]
fn wire_decode_corpus() {
    replay("wire_decode", fuzz_harness::decode::run);
}

#[test]
fn crypto_open_corpus() {
    replay("crypto_open", fuzz_harness::crypto::open_raw);
}

#[test]
fn crypto_tamper_corpus() {
    replay("crypto_tamper", fuzz_harness::crypto::tamper);
}

#[test]
fn ring_corpus() {
    replay("ring", fuzz_harness::ring::run);
}

#[test]
fn every_target_has_a_corpus_test() {
    let tested = ["wire_decode", "crypto_open", "crypto_tamper", "ring"];
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, tested);
}

/// `FUZZ_REPLAY=path [FUZZ_TARGET=name]` runs one input outside catch_unwind, for a backtrace.
#[test]
fn replay_one_from_env() {
    let Some(path) = std::env::var_os("FUZZ_REPLAY") else {
        return;
    };
    let data = fs::read(&path).expect("read FUZZ_REPLAY");
    let target = std::env::var("FUZZ_TARGET").unwrap_or_else(|_| {
        Path::new(&path)
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .expect("FUZZ_TARGET, or a file inside a directory named after the target")
            .to_string()
    });
    let (_, run) = TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .unwrap_or_else(|| panic!("unknown target {target}"));
    run(&data);
}
