//! Deterministic network simulator and EVS oracle for the `totem` crate.

pub mod oracle;
