//! The bodies of the fuzz targets, as ordinary library functions.
//!
//! `fuzz/` (a cargo-fuzz crate outside the workspace, built with libFuzzer) calls these; the
//! `corpus` integration test calls the same functions on every file of `fuzz/corpus/`, so the
//! corpus the fuzzer built is replayed by `cargo test` on stable Rust, without cargo-fuzz.
//!
//! Each function takes the raw fuzzer input, must never panic on any input, and panics (with a
//! message naming the broken invariant) only when the code under test misbehaves.
//!
//! | target          | function              | code under test                                         |
//! |-----------------|-----------------------|---------------------------------------------------------|
//! | `wire_decode`   | [`decode::run`]       | `totem::wire::decode`, `totem::pack::Reassembler`, `evs::groups::decode` and `GroupView` |
//! | `crypto_open`   | [`crypto::open_raw`]  | `evs::crypto::Opener::open` on arbitrary frames         |
//! | `crypto_tamper` | [`crypto::tamper`]    | `Opener::open` on sealed frames with fuzzer-chosen edits |
//! | `ring`          | [`ring::run`]         | three `totem::Processor`s on a fuzzer-driven network     |

pub mod crypto;
pub mod decode;
pub mod ring;

/// A target's body: takes the raw fuzzer input.
pub type Harness = fn(&[u8]);

/// The fuzz targets, by the name of their `fuzz/fuzz_targets/<name>.rs` file and corpus
/// directory, with the function each one runs.
pub const TARGETS: [(&str, Harness); 4] = [
    ("wire_decode", decode::run),
    ("crypto_open", crypto::open_raw),
    ("crypto_tamper", crypto::tamper),
    ("ring", ring::run),
];
