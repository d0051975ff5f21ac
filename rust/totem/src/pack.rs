//! Packing and fragmentation of application messages into Totem multicast payloads
//! (the `totempg` layer of Corosync).
//!
//! The ring orders opaque payloads. Many small application messages share one payload, and a
//! message larger than one payload is split into fragments carried by consecutive payloads of
//! the same sender. Because the ring delivers each sender's payloads in order, reassembly is per
//! sender. A payload never mixes guarantees, so a SAFE payload holds only SAFE messages.
//!
//! Payload layout (little-endian):
//!
//! | field         | size      | meaning                                                       |
//! |---------------|-----------|---------------------------------------------------------------|
//! | flags         | u8        | bit 0: the first piece continues the sender's previous payload |
//! |               |           | bit 1: the last piece continues in the sender's next payload  |
//! | count         | varint    | number of pieces (≥ 1)                                         |
//! | first_msg_no  | u64       | message number of the first piece; piece i has first_msg_no+i |
//! | lengths       | varint×n  | length of each piece                                           |
//! | bodies        | ...       | the pieces, concatenated; they end exactly at the payload end  |
//!
//! Varints are unsigned LEB128, at most 10 bytes. Message numbers are assigned by the sender at
//! submission and increase by one per message; they identify a message together with its sender.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use crate::types::{Guarantee, NodeId};

/// Why a submission was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The message is larger than the configured maximum.
    TooLarge { size: usize, max: usize },
    /// The send queue has no room for the message now; retry after deliveries drain it.
    Full,
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::TooLarge { size, max } => write!(
                f,
                "message of {size} bytes exceeds the maximum message size of {max} bytes"
            ),
            SubmitError::Full => f.write_str("send queue full, try again"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// Why a received payload could not be unpacked.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum UnpackError {
    /// The payload is malformed (bad varint, lengths not matching, count zero, unknown flags).
    Malformed,
    /// A continuation arrived with no matching partial message (or a new message arrived while
    /// a partial one was pending); the partial message was discarded.
    BadContinuation,
    /// Reassembly would exceed the maximum message size; the partial message was discarded.
    TooLarge,
}

/// One queued application message.
#[derive(Debug)]
struct Pending {
    data: Bytes,
    guarantee: Guarantee,
    msg_no: u64,
    /// Bytes of `data` already placed in payloads.
    offset: usize,
}

/// The sender side: a bounded queue of application messages cut into payloads on demand.
#[derive(Debug)]
pub struct Packer {
    queue: VecDeque<Pending>,
    queued_bytes: usize,
    next_msg_no: u64,
    max_message_size: usize,
    capacity_bytes: usize,
}

impl Packer {
    /// `capacity_bytes` bounds the bytes waiting in the queue; it must be at least
    /// `max_message_size` so that one maximal message always fits into an empty queue.
    pub fn new(max_message_size: usize, capacity_bytes: usize, first_msg_no: u64) -> Self {
        let _ = (max_message_size, capacity_bytes, first_msg_no);
        todo!("Packer::new")
    }

    /// Queues a message; returns its message number.
    pub fn push(&mut self, data: Bytes, guarantee: Guarantee) -> Result<u64, SubmitError> {
        let _ = (data, guarantee);
        todo!("Packer::push")
    }

    /// True when no message (or part of one) waits to be sent.
    pub fn is_empty(&self) -> bool {
        todo!("Packer::is_empty")
    }

    /// Messages waiting (a partially sent message counts as one).
    pub fn queued_messages(&self) -> usize {
        todo!("Packer::queued_messages")
    }

    /// Bytes waiting, counting only the unsent part of a partially sent message.
    pub fn queued_bytes(&self) -> usize {
        todo!("Packer::queued_bytes")
    }

    /// Estimated number of payloads of at most `budget` bytes needed to send the queue.
    pub fn backlog_packets(&self, budget: usize) -> usize {
        let _ = budget;
        todo!("Packer::backlog_packets")
    }

    /// Cuts the next payload of at most `budget` bytes (`budget` ≥ 32). Returns the guarantee of
    /// the messages in it and the payload, or `None` when the queue is empty.
    pub fn next_payload(&mut self, budget: usize) -> Option<(Guarantee, Bytes)> {
        let _ = budget;
        todo!("Packer::next_payload")
    }

    /// Forgets how much of the head message was already sent, so that it is sent again whole.
    /// Called when a configuration change cut a fragmented message in two.
    pub fn restart_partial(&mut self) {
        todo!("Packer::restart_partial")
    }
}

/// A complete application message unpacked from the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    pub msg_no: u64,
    pub data: Bytes,
}

/// The receiver side: per-sender reassembly of fragmented messages.
#[derive(Debug, Default)]
pub struct Reassembler {
    partial: HashMap<NodeId, (u64, Vec<u8>)>,
    max_message_size: usize,
}

impl Reassembler {
    pub fn new(max_message_size: usize) -> Self {
        Reassembler {
            partial: HashMap::new(),
            max_message_size,
        }
    }

    /// Unpacks one delivered payload of `sender`, pushing every completed message to `out` in
    /// order. On error, the messages completed before the error are still pushed, and the
    /// sender's partial message (if any) is discarded.
    pub fn unpack(
        &mut self,
        sender: NodeId,
        payload: &Bytes,
        out: &mut Vec<Unpacked>,
    ) -> Result<(), UnpackError> {
        let _ = (sender, payload, out);
        todo!("Reassembler::unpack")
    }

    /// Drops every partial message (at a configuration change no message spans two rings).
    pub fn reset(&mut self) {
        self.partial.clear();
    }

    /// Number of senders with a partial message pending.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}
