//! The Totem processor: ordering ring, flow control, membership and EVS delivery.

use bytes::Bytes;

use crate::config::{Config, ConfigError};
use crate::pack::SubmitError;
use crate::stats::Stats;
use crate::types::{Guarantee, Instant, NodeId, RingId};

/// Where a packet must go.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// To every processor on the network (the sender may receive it too; it ignores its own).
    Multicast,
    /// To one processor (the ring successor), possibly this processor itself.
    Node(NodeId),
}

/// A packet to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub destination: Destination,
    pub data: Bytes,
}

/// Which of the two configuration changes of extended virtual synchrony this is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConfigKind {
    Transitional,
    Regular,
}

/// A configuration change, delivered in the agreed stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigChange {
    pub kind: ConfigKind,
    /// The ring being installed (for a transitional configuration: the ring that follows it).
    pub ring_id: RingId,
    /// Members, ascending.
    pub members: Vec<NodeId>,
    /// Transitional only: members of the previous regular configuration that are gone.
    pub left: Vec<NodeId>,
    /// Regular only: members that were not in the preceding transitional configuration.
    pub joined: Vec<NodeId>,
}

/// An application message, delivered in agreed (or safe) order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub sender: NodeId,
    /// The sender's number for this message (assigned at submission).
    pub msg_no: u64,
    /// The ring on which the message was ordered.
    pub ring_id: RingId,
    /// Sequence number, on `ring_id`, of the multicast that completed this message.
    pub seq: u64,
    pub guarantee: Guarantee,
    pub data: Bytes,
}

/// Output of the processor, in the order the application must see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Deliver(Delivery),
    ConfigChange(ConfigChange),
}

/// Values a processor needs from outside at start, because the core has no clock, disk or
/// randomness of its own.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Start {
    /// A ring sequence number at least as high as any ring this node id took part in before
    /// (persisted, or derived from a wall clock); rings it creates will be numbered above it.
    pub ring_seq: u64,
    /// Number given to the first submitted message.
    pub first_msg_no: u64,
    /// Seed of the processor's private random stream (join jitter).
    pub seed: u64,
}

/// Membership state.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Operational,
    Gather,
    Commit,
    Recovery,
    /// Left the ring on request; ignores all input.
    Left,
}

/// One Totem processor.
#[derive(Debug)]
pub struct Processor {
    _private: (),
}

impl Processor {
    /// Creates a processor that immediately starts a membership round (it forms a ring alone or
    /// joins the processors it hears).
    pub fn new(
        config: Config,
        id: NodeId,
        start: Start,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let _ = (config, id, start, now);
        todo!()
    }

    pub fn id(&self) -> NodeId {
        todo!()
    }

    /// Feeds one received datagram (already authenticated). Never panics on any input.
    pub fn handle_packet(&mut self, now: Instant, data: Bytes) {
        let _ = (now, data);
        todo!()
    }

    /// Runs every timer that expired at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Queues an application message; returns its message number.
    pub fn submit(
        &mut self,
        now: Instant,
        data: Bytes,
        guarantee: Guarantee,
    ) -> Result<u64, SubmitError> {
        let _ = (now, data, guarantee);
        todo!()
    }

    /// Leaves the ring: multicasts a leave message and ignores all further input.
    pub fn leave(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Next packet to send. Poll until `None` after every `handle_*`, `submit` or `leave` call.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }

    /// Next event for the application. Poll until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }

    /// The earliest deadline at which `handle_timeout` must be called, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    pub fn state(&self) -> State {
        todo!()
    }

    /// The ring of the last installed regular configuration.
    pub fn ring_id(&self) -> RingId {
        todo!()
    }

    /// Members of the last installed regular configuration, ascending.
    pub fn members(&self) -> &[NodeId] {
        todo!()
    }

    pub fn stats(&self) -> Stats {
        todo!()
    }
}

impl Processor {
    /// The highest ring sequence number this processor has adopted or seen. A driver persists it
    /// (or otherwise guarantees it never goes down) and hands it back in [`Start::ring_seq`] on
    /// restart, so that a restarted processor never re-creates a ring id that already existed.
    pub fn ring_seq_high_water(&self) -> u64 {
        todo!()
    }
}
