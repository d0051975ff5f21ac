//! Wire format of every Totem packet.
//!
//! All integers are little-endian. Every packet starts with an 8-byte header:
//!
//! | off | size | field   | meaning                                             |
//! |-----|------|---------|-----------------------------------------------------|
//! | 0   | 2    | magic   | [`MAGIC`]                                           |
//! | 2   | 1    | version | [`VERSION`]; any other value is rejected            |
//! | 3   | 1    | type    | [`PacketType`]                                      |
//! | 4   | 4    | sender  | node id of the processor that sent this packet (≠0) |
//!
//! A ring id is 12 bytes: `rep u32, seq u64`.
//!
//! Bodies (after the header):
//!
//! * `Mcast` (type 1): `ring_id[12] seq u64 flags u8 payload[..]` — flags bit 0 = SAFE,
//!   bit 1 = encapsulated (the payload is a complete old-ring `Mcast` packet, header included,
//!   re-sent during RECOVERY); other bits must be zero. The payload runs to the end of the packet.
//! * `OrfToken` (type 0): `ring_id[12] token_seq u64 seq u64 aru u64 aru_addr u32 backlog u32
//!   fcc u32 flags u8 rtr_count u16 rtr[rtr_count] u64` — flags bit 0 = retrans_flg.
//!   `rtr_count` ≤ [`MAX_RTR_ENTRIES`].
//! * `MergeDetect` (type 2): `ring_id[12]`.
//! * `Join` (type 3): `ring_seq u64 flags u8 proc_count u16 fail_count u16 proc[proc_count] u32
//!   fail[fail_count] u32` — flags bit 0 = leave. Each count ≤ [`MAX_PROCESSORS`].
//! * `CommitToken` (type 4): `ring_id[12] token_seq u64 memb_index u16 count u16` then `count`
//!   entries of `node u32 old_ring_id[12] aru u64 high_delivered u64 flags u8` (flags bit 0 =
//!   received_flg). `count` ≤ [`MAX_PROCESSORS`], `memb_index` ≤ `count`.
//! * `TokenHoldCancel` (type 5): `ring_id[12]`.
//!
//! Decoding checks every length in 64-bit arithmetic, caps every list count before allocating,
//! and rejects trailing bytes (except in `Mcast`, whose payload is the rest of the packet).

use bytes::Bytes;

use crate::types::{Guarantee, NodeId, RingId};

/// First two bytes of every packet.
pub const MAGIC: u16 = 0x7E5A;
/// Wire format version.
pub const VERSION: u8 = 1;
/// Size of the common header.
pub const HEADER_LEN: usize = 8;
/// Size of an encoded ring id.
pub const RING_ID_LEN: usize = 12;
/// Size of an `Mcast` packet without payload (header included).
pub const MCAST_OVERHEAD: usize = HEADER_LEN + RING_ID_LEN + 8 + 1;
/// Size of an `OrfToken` without retransmit entries (header included).
pub const TOKEN_FIXED_LEN: usize = HEADER_LEN + RING_ID_LEN + 8 + 8 + 8 + 4 + 4 + 4 + 1 + 2;
/// Largest number of processors in a join or commit token.
pub const MAX_PROCESSORS: usize = 384;
/// Largest retransmit request list a token may carry.
pub const MAX_RTR_ENTRIES: usize = 256;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    OrfToken = 0,
    Mcast = 1,
    MergeDetect = 2,
    Join = 3,
    CommitToken = 4,
    TokenHoldCancel = 5,
}

/// A regular (or, when `encapsulated`, a recovery) multicast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mcast {
    pub ring_id: RingId,
    pub seq: u64,
    pub guarantee: Guarantee,
    pub encapsulated: bool,
    pub payload: Bytes,
}

/// The ordering, reliability and flow-control token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrfToken {
    pub ring_id: RingId,
    pub token_seq: u64,
    pub seq: u64,
    pub aru: u64,
    pub aru_addr: NodeId,
    pub backlog: u32,
    pub fcc: u32,
    pub retrans_flg: bool,
    pub rtr: Vec<u64>,
}

/// A join (or, when `leave`, a leave) message of the membership protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Join {
    pub ring_seq: u64,
    pub leave: bool,
    pub proc_list: Vec<NodeId>,
    pub fail_list: Vec<NodeId>,
}

/// One member's entry in the commit token.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitMember {
    pub node: NodeId,
    pub old_ring_id: RingId,
    pub aru: u64,
    pub high_delivered: u64,
    pub received_flg: bool,
}

/// The commit token: rotates twice around the ring being formed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitToken {
    pub ring_id: RingId,
    pub token_seq: u64,
    pub memb_index: u16,
    pub members: Vec<CommitMember>,
}

/// Every packet the protocol exchanges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Token(OrfToken),
    Mcast(Mcast),
    MergeDetect { ring_id: RingId },
    Join(Join),
    Commit(CommitToken),
    HoldCancel { ring_id: RingId },
}

impl Packet {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Token(_) => PacketType::OrfToken,
            Packet::Mcast(_) => PacketType::Mcast,
            Packet::MergeDetect { .. } => PacketType::MergeDetect,
            Packet::Join(_) => PacketType::Join,
            Packet::Commit(_) => PacketType::CommitToken,
            Packet::HoldCancel { .. } => PacketType::TokenHoldCancel,
        }
    }
}

/// A decoded packet and the node that sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub sender: NodeId,
    pub packet: Packet,
}

/// Why a packet was rejected by the decoder.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// Shorter than the header.
    TooShort,
    BadMagic,
    BadVersion,
    UnknownType,
    /// The sender field is zero.
    ZeroSender,
    /// The body is shorter than its fixed part or its declared lists.
    Truncated,
    /// A list count exceeds its cap.
    TooManyEntries,
    /// Bytes left over after a fixed-size body.
    TrailingBytes,
    /// A flags byte has unknown bits set, or a field holds an impossible value.
    BadField,
}

impl DecodeError {
    pub const ALL: [DecodeError; 9] = [
        DecodeError::TooShort,
        DecodeError::BadMagic,
        DecodeError::BadVersion,
        DecodeError::UnknownType,
        DecodeError::ZeroSender,
        DecodeError::Truncated,
        DecodeError::TooManyEntries,
        DecodeError::TrailingBytes,
        DecodeError::BadField,
    ];

    /// Stable index into per-reason counters.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DecodeError::TooShort => "too_short",
            DecodeError::BadMagic => "bad_magic",
            DecodeError::BadVersion => "bad_version",
            DecodeError::UnknownType => "unknown_type",
            DecodeError::ZeroSender => "zero_sender",
            DecodeError::Truncated => "truncated",
            DecodeError::TooManyEntries => "too_many_entries",
            DecodeError::TrailingBytes => "trailing_bytes",
            DecodeError::BadField => "bad_field",
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for DecodeError {}

/// Encodes `packet` as sent by `sender`.
pub fn encode(sender: NodeId, packet: &Packet) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(sender, packet, &mut out);
    out
}

/// Appends the encoding of `packet` to `out`.
pub fn encode_into(sender: NodeId, packet: &Packet, out: &mut Vec<u8>) {
    let _ = (sender, packet, out);
    todo!("wire::encode_into")
}

/// Decodes one packet. The `Mcast` payload is a zero-copy slice of `data`.
pub fn decode(data: &Bytes) -> Result<Decoded, DecodeError> {
    let _ = data;
    todo!("wire::decode")
}
