//! Deterministic network simulator and EVS oracle for the `totem` crate.
//!
//! One seed reproduces one run exactly: [`plan::Plan::from_seed`] expands it into a printed
//! option set (ring size, timers, network, workload, fault schedule), [`sim::run_plan`] executes
//! it against real [`totem::Processor`]s on a virtual clock, and the [`oracle`] checks every
//! event against the EVS properties as the run goes. Scenario tests build plans by hand with
//! [`scenario::Scenario`].
//!
//! Modules: [`rng`] (the only randomness), [`net`] (links, partitions, the in-flight queue),
//! [`workload`] (what processors submit), [`plan`] (what a run is), [`sim`] (the executor),
//! [`scenario`] (the test builder), [`oracle`] (the checker), [`trace_check`] (the same checklist
//! over the JSON-lines traces of real node processes: `totem-sim check-trace`).

pub mod groups_check;
pub mod net;
pub mod oracle;
pub mod plan;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod trace_check;
pub mod workload;

pub use plan::{Fault, FaultKinds, Options, Plan, TraceMode};

pub use scenario::Scenario;
pub use sim::{run_plan, run_seed, Failure, FailureKind, RunResult};
