//! What a node reports about itself: [`NodeStats`] (the answer to `Node::stats`) and, for
//! tests, the frames it sent ([`CapturedFrame`]).

use std::time::Duration;

use totem::wire::DecodeError;

use crate::crypto::RejectCounters;
use crate::event::{HandleId, NodeId, RingId};
use crate::transport::TransportStats;

/// Counters of a node, like Corosync's `corosync-cmapctl stats`: the protocol's (messages and
/// packets in and out, retransmits, token rotation), the transport's, every rejected packet by
/// reason, and the depths of its queues.
#[derive(Clone, Debug)]
pub struct NodeStats {
    pub node_id: NodeId,
    /// Last regular configuration.
    pub ring_id: RingId,
    pub members: Vec<NodeId>,
    pub state: totem::State,
    /// The processor's counters (packets by type in and out, messages submitted and delivered,
    /// retransmits, token rotation times, decoder rejections, ...).
    pub totem: totem::Stats,
    /// Datagrams and bytes in and out, system calls, send errors by kind.
    pub transport: TransportStats,
    /// Frames refused by authentication or replay checks, by reason.
    pub crypto_rejected: RejectCounters,
    /// Frames that passed authentication.
    pub crypto_accepted: u64,
    /// Our own frames seen again (multicast loopback where the transport cannot filter them in
    /// the kernel: IPv6 or a wildcard bind address), dropped before authentication.
    pub own_frames_dropped: u64,
    /// Authentic frames dropped because their sender is isolated (`Node::isolate_from`).
    pub isolated_dropped: u64,
    /// Datagrams dropped by injected receive loss (`Node::set_receive_loss`).
    pub loss_injected: u64,
    /// Authentic frames whose Totem header names another sender than the crypto header.
    pub sender_mismatch: u64,
    /// Delivered payloads that did not decode as a ring message (dropped).
    pub malformed_payloads: u64,
    /// Frames that could not be sealed (and were not sent).
    pub seal_errors: u64,
    /// Packets the processor addressed to this node itself (a one-node ring's token).
    pub self_packets: u64,
    /// Events put into handle queues.
    pub events_queued: u64,
    /// Handles closed because their queue overflowed.
    pub handles_overflowed: u64,
    /// Open handles and the events waiting in each.
    pub queue_depths: Vec<(HandleId, usize)>,
    /// Bytes of events held in handles' delivery buffers now (queues full), the most held at
    /// once since the node started, and each handle's bound (`delivery_buffer_bytes`, with
    /// "auto" computed for the largest ring seen so far).
    pub delivery_buffered: usize,
    pub delivery_buffered_peak: usize,
    pub delivery_buffer_limit: usize,
    /// Bytes charged to the send budget, and its cap.
    pub send_budget_used: usize,
    pub send_budget_cap: usize,
    /// Messages accepted from handles but not yet taken by the processor.
    pub pending_submits: usize,
}

impl NodeStats {
    /// Mean time of a full token rotation.
    pub fn token_rotation(&self) -> Duration {
        self.totem.mean_rotation
    }

    /// Every rejected packet by reason: `crypto.*` (authentication and replay), `decode.*`
    /// (authentic but not a Totem packet), `node.sender_mismatch`, `node.malformed_payload`,
    /// and `send.*` (datagrams the transport failed to send). Zero counts included.
    pub fn rejected(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .crypto_rejected
            .iter()
            .map(|(r, n)| (format!("crypto.{}", r.as_str()), n))
            .collect();
        out.extend(
            DecodeError::ALL
                .iter()
                .map(|e| (format!("decode.{}", e.as_str()), self.totem.rejected(*e))),
        );
        out.push(("node.sender_mismatch".into(), self.sender_mismatch));
        out.push(("node.malformed_payload".into(), self.malformed_payloads));
        let s = &self.transport.send_errors;
        for (k, n) in [
            ("would_block", s.would_block),
            ("no_buffers", s.no_buffers),
            ("permission", s.permission),
            ("unreachable", s.unreachable),
            ("too_big", s.too_big),
            ("other", s.other),
        ] {
            out.push((format!("send.{k}"), n));
        }
        out
    }
}

/// A sealed frame the driver sent, kept for tests (see `Node::debug_capture`).
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct CapturedFrame {
    /// `None`: to everyone; `Some(n)`: to node `n`.
    pub to: Option<NodeId>,
    pub frame: Vec<u8>,
}
