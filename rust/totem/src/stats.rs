//! Counters kept by a processor. A [`Stats`] value is a snapshot: cheap to copy, never shared.

use std::time::Duration;

use crate::types::RingId;
use crate::wire::{DecodeError, PacketType};

/// Packets counted per packet type, indexed by `PacketType as usize`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PerType(pub [u64; 6]);

impl PerType {
    pub fn add(&mut self, t: PacketType) {
        self.0[t as usize] += 1;
    }
    pub fn get(&self, t: PacketType) -> u64 {
        self.0[t as usize]
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Why a packet that decoded correctly was still not used.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// A multicast, merge detect or hold cancel that this processor sent itself.
    OwnPacket,
    /// Belongs to another ring and is not a reason to start a membership round.
    ForeignRing,
    /// A token older than the last one accepted (duplicate or retransmission).
    DuplicateToken,
    /// A multicast whose sequence number was already held.
    DuplicateMcast,
    /// A multicast outside the sort queue window.
    OutOfWindow,
    /// A membership message filtered by state (stale join, token while gathering, ...).
    WrongState,
    /// A payload that could not be unpacked into application messages.
    BadPayload,
    /// A token of this ring whose fields contradict what this processor holds (its `seq` is
    /// below a sequence number already ordered, its `aru` above its `seq`, its `aru_addr` not a
    /// member, or it reaches beyond the sort queue), or one that does not come from this
    /// processor's predecessor on the ring: a replayed, redirected or forged token.
    InconsistentToken,
    /// Traffic from a processor excluded from this processor's ring for lack of two-way
    /// contact, which has not shown two-way contact since (see `docs/protocol-notes.md`,
    /// "Membership under partial connectivity").
    Quarantined,
}

impl Ignored {
    pub const ALL: [Ignored; 9] = [
        Ignored::OwnPacket,
        Ignored::ForeignRing,
        Ignored::DuplicateToken,
        Ignored::DuplicateMcast,
        Ignored::OutOfWindow,
        Ignored::WrongState,
        Ignored::BadPayload,
        Ignored::InconsistentToken,
        Ignored::Quarantined,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::OwnPacket => "own_packet",
            Ignored::ForeignRing => "foreign_ring",
            Ignored::DuplicateToken => "duplicate_token",
            Ignored::DuplicateMcast => "duplicate_mcast",
            Ignored::OutOfWindow => "out_of_window",
            Ignored::WrongState => "wrong_state",
            Ignored::BadPayload => "bad_payload",
            Ignored::InconsistentToken => "inconsistent_token",
            Ignored::Quarantined => "quarantined",
        }
    }
}

/// A snapshot of a processor's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub ring_id: RingId,
    pub members: usize,
    pub packets_in: PerType,
    pub packets_out: PerType,
    /// Packets rejected by the decoder, indexed by `DecodeError::index()`.
    pub rejected: [u64; DecodeError::ALL.len()],
    /// Packets decoded but not used, indexed like `Ignored::ALL`.
    pub ignored: [u64; Ignored::ALL.len()],
    pub messages_submitted: u64,
    pub messages_delivered: u64,
    pub bytes_delivered: u64,
    /// Sequence numbers this processor asked others to retransmit.
    pub retransmits_requested: u64,
    /// Multicasts this processor re-sent on request.
    pub retransmits_sent: u64,
    pub token_retransmits: u64,
    /// Full token rotations this processor measured (between two of its own visits on one
    /// ring; every member measures, not only the representative).
    pub token_rotations: u64,
    /// Duration of the last full token rotation seen by this processor.
    pub last_rotation: Duration,
    /// Exponentially averaged rotation time.
    pub mean_rotation: Duration,
    pub rings_formed: u64,
    pub gather_entered: u64,
    pub token_lost: u64,
    pub consensus_timeouts: u64,
    /// Processors taken back out of the fail set because their joins named a newer ring than
    /// when they were failed and showed that they hear every processor we propose.
    pub unfailed: u64,
    pub stale_timers: u64,
    pub token_warnings: u64,
    pub recovery_messages_originated: u64,
    pub partial_messages_dropped: u64,
    /// Joins sent while operational to a quarantined processor's ring, asking it to show
    /// two-way contact.
    pub probes_sent: u64,
    /// Of `probes_sent`, those that answered a quarantined processor's join or probe that did
    /// not show two-way contact.
    pub presence_sent: u64,
    /// Processors quarantined now.
    pub quarantined: usize,
    /// Times this processor held the ring's aru down for `fail_recv_const` rotations and
    /// split itself off (see `docs/protocol-notes.md`, "Size-dependent loss").
    pub failed_to_receive: u64,
    pub send_queue_messages: usize,
    pub send_queue_bytes: usize,
    pub sort_queue_len: usize,
}

impl Stats {
    pub fn rejected(&self, e: DecodeError) -> u64 {
        self.rejected[e.index()]
    }
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
    pub fn ignored(&self, r: Ignored) -> u64 {
        self.ignored[r as usize]
    }
}
