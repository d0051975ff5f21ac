//! The Totem single-ring protocol with extended virtual synchrony, as a sans-IO state machine.
//!
//! This crate reads no clock, opens no socket, spawns no thread and draws no randomness it was
//! not handed. A caller (the tokio runtime in `evs`, or the simulator in `totem-sim`) feeds a
//! [`Processor`] with received packets, expired timers and application submissions, and pulls out
//! packets to transmit ([`Processor::poll_transmit`]), events in agreed order
//! ([`Processor::poll_event`]) and the next deadline ([`Processor::poll_timeout`]).
//!
//! Layers inside the crate: [`wire`] (the packet codec), [`pack`] (packing and fragmentation of
//! application messages, Corosync's `totempg`), and [`processor`] (ordering, flow control,
//! membership and the EVS delivery rules).
//!
//! The processor's invariants (aru <= high seq, delivered <= aru, install preconditions, ...)
//! are checked like `debug_assert!` in debug builds, and in every build with the `invariants`
//! feature, which the simulator (`totem-sim`) and the fuzz harness enable; the runtime (`evs`)
//! does not, so its release build carries no checks.

pub mod config;
pub mod pack;
pub mod processor;
pub mod stats;
pub mod types;
pub mod wire;

#[cfg(feature = "fault-injection")]
pub use config::FaultInjection;
pub use config::{Config, ConfigError, Timeouts};
pub use pack::SubmitError;
pub use processor::{
    ConfigChange, ConfigKind, Delivery, Destination, Event, Processor, Start, State, Transmit,
};
pub use stats::Stats;
pub use types::{Guarantee, Instant, NodeId, RingId};
