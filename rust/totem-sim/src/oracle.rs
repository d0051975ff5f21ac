//! The EVS oracle: checks the extended virtual synchrony properties of
//! `shared/docs/totem-reference.md` §4.6 (C1-C6, D1-D9) over the event streams of every
//! processor, as the run goes, and fails at the first bad step.
//!
//! A *process* is one incarnation of a node: a crash ends it for good, and a restart of the same
//! node id is a new process with a higher incarnation. Membership lists name node ids.

use std::fmt;

use totem::{Event, Guarantee, Instant, NodeId, RingId};

/// One incarnation of a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId {
    pub node: NodeId,
    pub incarnation: u32,
}

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}#{}", self.node, self.incarnation)
    }
}

/// Identifies an application message: its sender and the sender's message number.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId {
    pub sender: NodeId,
    pub msg_no: u64,
}

/// The checklist items.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Property {
    C1SelfInclusion,
    C2UniqueIds,
    C3MonotoneIds,
    C4Alternation,
    C5AgreementOnInstalls,
    C6TransitionalConsistency,
    D1Integrity,
    D2SendingConfiguration,
    D3SelfDelivery,
    D4FailureAtomicity,
    D5TotalOrder,
    D6Causal,
    D7ConfigurationOrder,
    D8Safe,
    D9Liveness,
}

/// A broken property, with enough detail to start debugging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub property: Property,
    pub at: Instant,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} violated at {}: {}",
            self.property, self.at, self.detail
        )
    }
}

/// Checks every process's events against one canonical history.
#[derive(Debug, Default)]
pub struct Oracle {
    _private: (),
}

impl Oracle {
    pub fn new() -> Self {
        Oracle::default()
    }

    /// A process started (first incarnation or restart).
    pub fn started(&mut self, p: ProcId, now: Instant) {
        let _ = (p, now);
        todo!()
    }

    /// `p` submitted a message; `data` is its payload (the oracle keeps a digest).
    pub fn submitted(
        &mut self,
        p: ProcId,
        now: Instant,
        id: MsgId,
        guarantee: Guarantee,
        data: &[u8],
    ) {
        let _ = (p, now, id, guarantee, data);
        todo!()
    }

    /// `p` emitted `ev`. Returns the first property this step breaks.
    pub fn observe(&mut self, p: ProcId, now: Instant, ev: &Event) -> Result<(), Violation> {
        let _ = (p, now, ev);
        todo!()
    }

    /// `p` crashed: it emits nothing more.
    pub fn crashed(&mut self, p: ProcId, now: Instant) {
        let _ = (p, now);
        todo!()
    }

    /// End-of-run checks of the properties that need whole histories (C5, D3, D4, D8, ...).
    pub fn finish(&mut self, now: Instant) -> Result<(), Violation> {
        let _ = now;
        todo!()
    }

    /// Liveness (D9), once faults have stopped and traffic has drained: every process in `live`
    /// has installed the same last regular configuration, whose members are exactly the nodes of
    /// `live`; every message ordered in it was delivered by all of them; and every message a live
    /// process submitted was delivered by that process.
    pub fn check_converged(&self, now: Instant, live: &[ProcId]) -> Result<RingId, Violation> {
        let _ = (now, live);
        todo!()
    }
}
