//! Wire format of every Totem packet.
//!
//! All integers are little-endian. Every packet starts with an 8-byte header:
//!
//! | off | size | field   | meaning                                             |
//! |-----|------|---------|-----------------------------------------------------|
//! | 0   | 2    | magic   | [`MAGIC`]                                           |
//! | 2   | 1    | version | [`VERSION`]; any other value is rejected            |
//! | 3   | 1    | type    | [`PacketType`]                                      |
//! | 4   | 4    | sender  | node id of the processor that sent this packet (≠0); |
//! |     |      |         | for `Mcast`, of the message's originator, also when |
//! |     |      |         | another member retransmits it unchanged             |
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
//! * `Join` (type 3): `ring_seq u64 high_seq u64 flags u8 proc_count u16 fail_count u16
//!   heard_count u16 pad_len u16 proc[proc_count] u32 fail[fail_count] u32 heard[heard_count]
//!   u32 pad[pad_len] u8` — `pad` must be zeros (else `BadField`): a probe is padded
//!   to the largest packet the ring sends, so that a path that loses big datagrams (an MTU
//!   black hole) cannot show two-way contact with small ones; flags
//!   bit 0 = leave, bit 1 = installed (the sender installed the ring numbered `ring_seq`), bit 2
//!   = settled (the sender's consensus timer expired at least once in its current membership
//!   round, so its `heard` list is final evidence of whom it cannot hear), bit 3 = probe (sent
//!   while operational in the ring numbered `ring_seq`, whose members `proc` lists, to a
//!   processor that ring excluded: see `docs/protocol-notes.md`). `heard` lists the
//!   processors the sender received a membership or token packet from directly in its current
//!   round (or, for a join sent while operational, recently). Each count ≤ [`MAX_PROCESSORS`].
//! * `CommitToken` (type 4): `ring_id[12] token_seq u64 memb_index u16 count u16` then `count`
//!   entries of `node u32 old_ring_id[12] aru u64 high_delivered u64 flags u8` (flags bit 0 =
//!   received_flg). `count` ≤ [`MAX_PROCESSORS`], `memb_index` ≤ `count`.
//! * `TokenHoldCancel` (type 5): `ring_id[12]`.
//!
//! Decoding checks every length in 64-bit arithmetic, caps every list count before allocating,
//! and rejects trailing bytes (except in `Mcast`, whose payload is the rest of the packet).
//! [`decode`] documents the order of its checks, which decides the error a bad packet gets.

use bytes::Bytes;

use crate::types::{Guarantee, NodeId, RingId};

/// First two bytes of every packet.
pub const MAGIC: u16 = 0x7E5A;
/// Wire format version.
/// Version 2: joins carry the `heard` list and the `settled` flag.
/// Version 3: joins carry padding (`pad_len`).
pub const VERSION: u8 = 3;
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
    /// Sequence number of the sender's current ring.
    pub ring_seq: u64,
    /// Highest ring sequence number the sender has seen. A join whose `high_seq` is below the
    /// receiver's installed ring was sent before its sender knew that ring: its fail list
    /// judges an older configuration of the receiver.
    pub high_seq: u64,
    pub leave: bool,
    /// The sender installed (reached OPERATIONAL in) the ring numbered `ring_seq`: a member
    /// still recovering that ring knows from this that its recovery is complete everywhere.
    pub installed: bool,
    /// The sender's consensus timer expired at least once in its current round: processors
    /// missing from `heard` are ones it could not hear for a whole consensus period.
    pub settled: bool,
    /// Sent while operational, to show a quarantined processor two-way contact; not a request
    /// to start a membership round for the sender's ring-mates.
    pub probe: bool,
    pub proc_list: Vec<NodeId>,
    pub fail_list: Vec<NodeId>,
    /// Processors the sender heard directly (see the module docs): what a receiver needs to
    /// tell a two-way link from a one-way one.
    pub heard: Vec<NodeId>,
    /// Zero bytes appended to the packet (see the module docs): a padded probe that arrives
    /// shows that the path from its sender carries full-size datagrams.
    pub padding: u16,
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

impl TryFrom<u8> for PacketType {
    type Error = DecodeError;

    fn try_from(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            0 => PacketType::OrfToken,
            1 => PacketType::Mcast,
            2 => PacketType::MergeDetect,
            3 => PacketType::Join,
            4 => PacketType::CommitToken,
            5 => PacketType::TokenHoldCancel,
            _ => return Err(DecodeError::UnknownType),
        })
    }
}

/// Size of a `MergeDetect` or `TokenHoldCancel` packet (header included).
pub const RING_ONLY_LEN: usize = HEADER_LEN + RING_ID_LEN;
/// Size of a `Join` without list entries or padding (header included).
pub const JOIN_FIXED_LEN: usize = HEADER_LEN + 8 + 8 + 1 + 2 + 2 + 2 + 2;
/// Size of a `CommitToken` without member entries (header included).
pub const COMMIT_FIXED_LEN: usize = HEADER_LEN + RING_ID_LEN + 8 + 2 + 2;
/// Size of one member entry of a `CommitToken`.
pub const COMMIT_MEMBER_LEN: usize = 4 + RING_ID_LEN + 8 + 8 + 1;

const MCAST_FLAG_SAFE: u8 = 1 << 0;
const MCAST_FLAG_ENCAPSULATED: u8 = 1 << 1;
const TOKEN_FLAG_RETRANS: u8 = 1 << 0;
const JOIN_FLAG_LEAVE: u8 = 1 << 0;
const JOIN_FLAG_INSTALLED: u8 = 1 << 1;
const JOIN_FLAG_SETTLED: u8 = 1 << 2;
const JOIN_FLAG_PROBE: u8 = 1 << 3;
const MEMBER_FLAG_RECEIVED: u8 = 1 << 0;

/// Exact number of bytes [`encode_into`] appends for `packet`.
pub fn encoded_len(packet: &Packet) -> usize {
    match packet {
        Packet::Token(t) => TOKEN_FIXED_LEN + 8 * t.rtr.len(),
        Packet::Mcast(m) => MCAST_OVERHEAD + m.payload.len(),
        Packet::MergeDetect { .. } | Packet::HoldCancel { .. } => RING_ONLY_LEN,
        Packet::Join(j) => {
            JOIN_FIXED_LEN
                + 4 * (j.proc_list.len() + j.fail_list.len() + j.heard.len())
                + usize::from(j.padding)
        }
        Packet::Commit(c) => COMMIT_FIXED_LEN + COMMIT_MEMBER_LEN * c.members.len(),
    }
}

/// Encodes `packet` as sent by `sender`.
pub fn encode(sender: NodeId, packet: &Packet) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(packet));
    encode_into(sender, packet, &mut out);
    out
}

/// Appends the encoding of `packet` to `out`.
///
/// The encoder is total and faithful: it writes exactly the values it is given, even ones
/// [`decode`] rejects (sender 0, node id 0 in a list, `memb_index` > member count, lists over
/// their cap), so tests can forge bad packets with it. The one thing the layout cannot carry is
/// a list longer than `u16::MAX`; its count is then written as `u16::MAX`, which exceeds every
/// cap, so receivers reject the packet instead of misreading it.
pub fn encode_into(sender: NodeId, packet: &Packet, out: &mut Vec<u8>) {
    // `reserve` rather than `reserve_exact`: on an empty vector both allocate exactly the
    // packet size, but when a caller appends many packets to one buffer `reserve` keeps growth
    // amortized.
    out.reserve(encoded_len(packet));
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(VERSION);
    out.push(packet.packet_type() as u8);
    out.extend_from_slice(&sender.to_le_bytes());
    match packet {
        Packet::Token(t) => {
            put_ring_id(out, t.ring_id);
            out.extend_from_slice(&t.token_seq.to_le_bytes());
            out.extend_from_slice(&t.seq.to_le_bytes());
            out.extend_from_slice(&t.aru.to_le_bytes());
            out.extend_from_slice(&t.aru_addr.to_le_bytes());
            out.extend_from_slice(&t.backlog.to_le_bytes());
            out.extend_from_slice(&t.fcc.to_le_bytes());
            out.push(flag(t.retrans_flg, TOKEN_FLAG_RETRANS));
            out.extend_from_slice(&count_u16(t.rtr.len()));
            for seq in &t.rtr {
                out.extend_from_slice(&seq.to_le_bytes());
            }
        }
        Packet::Mcast(m) => {
            put_ring_id(out, m.ring_id);
            out.extend_from_slice(&m.seq.to_le_bytes());
            out.push(
                flag(m.guarantee == Guarantee::Safe, MCAST_FLAG_SAFE)
                    | flag(m.encapsulated, MCAST_FLAG_ENCAPSULATED),
            );
            out.extend_from_slice(&m.payload);
        }
        Packet::MergeDetect { ring_id } | Packet::HoldCancel { ring_id } => {
            put_ring_id(out, *ring_id);
        }
        Packet::Join(j) => {
            out.extend_from_slice(&j.ring_seq.to_le_bytes());
            out.extend_from_slice(&j.high_seq.to_le_bytes());
            out.push(
                flag(j.leave, JOIN_FLAG_LEAVE)
                    | flag(j.installed, JOIN_FLAG_INSTALLED)
                    | flag(j.settled, JOIN_FLAG_SETTLED)
                    | flag(j.probe, JOIN_FLAG_PROBE),
            );
            out.extend_from_slice(&count_u16(j.proc_list.len()));
            out.extend_from_slice(&count_u16(j.fail_list.len()));
            out.extend_from_slice(&count_u16(j.heard.len()));
            out.extend_from_slice(&j.padding.to_le_bytes());
            for node in j.proc_list.iter().chain(&j.fail_list).chain(&j.heard) {
                out.extend_from_slice(&node.to_le_bytes());
            }
            out.resize(out.len() + usize::from(j.padding), 0);
        }
        Packet::Commit(c) => {
            put_ring_id(out, c.ring_id);
            out.extend_from_slice(&c.token_seq.to_le_bytes());
            out.extend_from_slice(&c.memb_index.to_le_bytes());
            out.extend_from_slice(&count_u16(c.members.len()));
            for m in &c.members {
                out.extend_from_slice(&m.node.to_le_bytes());
                put_ring_id(out, m.old_ring_id);
                out.extend_from_slice(&m.aru.to_le_bytes());
                out.extend_from_slice(&m.high_delivered.to_le_bytes());
                out.push(flag(m.received_flg, MEMBER_FLAG_RECEIVED));
            }
        }
    }
}

fn put_ring_id(out: &mut Vec<u8>, ring_id: RingId) {
    out.extend_from_slice(&ring_id.rep.to_le_bytes());
    out.extend_from_slice(&ring_id.seq.to_le_bytes());
}

fn flag(set: bool, bit: u8) -> u8 {
    if set {
        bit
    } else {
        0
    }
}

fn count_u16(len: usize) -> [u8; 2] {
    u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes()
}

/// Checks the header of `data` exactly as [`decode`] does and returns the packet type, without
/// looking at the body. Lets a receiver count or route packets by type cheaply; a packet that
/// passes here may still fail [`decode`].
pub fn peek_type(data: &[u8]) -> Result<PacketType, DecodeError> {
    decode_header(data).map(|(_, packet_type)| packet_type)
}

/// Decodes one packet. The `Mcast` payload is a zero-copy slice of `data`.
///
/// Checks run in this order and the first failure is returned:
///
/// 1. header, in byte order: length (`TooShort`), magic (`BadMagic`), version (`BadVersion`),
///    type (`UnknownType`), sender (`ZeroSender`) — so a foreign or future-format packet is
///    classified by the first field that identifies it, not by its (meaningless) body;
/// 2. body shape: fixed part present (`Truncated`), each list count within its cap
///    (`TooManyEntries`), then the bytes left against the bytes the counts declare (`Truncated`
///    if fewer, `TrailingBytes` if more). The cap comes before the length so that a count no
///    honest sender could write is reported as such however long the packet is, and both come
///    before any allocation, so a list is only allocated once the packet is known to hold it;
/// 3. field values (`BadField`): flag bytes with unknown bits, `memb_index` > member count, and
///    node id 0 in a join or commit list. These come last because they are only meaningful once
///    the framing is known to be right.
///
/// An encapsulated `Mcast` payload is not inspected: the receiver decodes it with this same
/// function when it unwraps it, which validates it fully.
///
/// Accepted packets are canonical: [`encode`] of the result reproduces `data` byte for byte.
pub fn decode(data: &Bytes) -> Result<Decoded, DecodeError> {
    let (sender, packet_type) = decode_header(data)?;
    let mut r = Reader(&data[HEADER_LEN..]);
    let packet = match packet_type {
        PacketType::OrfToken => Packet::Token(decode_token(&mut r)?),
        PacketType::Mcast => {
            let ring_id = r.ring_id()?;
            let seq = r.u64()?;
            let flags = r.u8()?;
            check_flags(flags, MCAST_FLAG_SAFE | MCAST_FLAG_ENCAPSULATED)?;
            Packet::Mcast(Mcast {
                ring_id,
                seq,
                guarantee: if flags & MCAST_FLAG_SAFE != 0 {
                    Guarantee::Safe
                } else {
                    Guarantee::Agreed
                },
                encapsulated: flags & MCAST_FLAG_ENCAPSULATED != 0,
                payload: data.slice(MCAST_OVERHEAD..),
            })
        }
        PacketType::MergeDetect => {
            let ring_id = r.ring_id()?;
            r.expect_exhausted()?;
            Packet::MergeDetect { ring_id }
        }
        PacketType::TokenHoldCancel => {
            let ring_id = r.ring_id()?;
            r.expect_exhausted()?;
            Packet::HoldCancel { ring_id }
        }
        PacketType::Join => Packet::Join(decode_join(&mut r)?),
        PacketType::CommitToken => Packet::Commit(decode_commit(&mut r)?),
    };
    Ok(Decoded { sender, packet })
}

fn decode_header(data: &[u8]) -> Result<(NodeId, PacketType), DecodeError> {
    let h: &[u8; HEADER_LEN] = data.first_chunk().ok_or(DecodeError::TooShort)?;
    if u16::from_le_bytes([h[0], h[1]]) != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if h[2] != VERSION {
        return Err(DecodeError::BadVersion);
    }
    let packet_type = PacketType::try_from(h[3])?;
    let sender = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if sender == 0 {
        return Err(DecodeError::ZeroSender);
    }
    Ok((sender, packet_type))
}

fn decode_token(r: &mut Reader<'_>) -> Result<OrfToken, DecodeError> {
    let ring_id = r.ring_id()?;
    let token_seq = r.u64()?;
    let seq = r.u64()?;
    let aru = r.u64()?;
    let aru_addr = r.u32()?;
    let backlog = r.u32()?;
    let fcc = r.u32()?;
    let flags = r.u8()?;
    let rtr_count = r.count(MAX_RTR_ENTRIES)?;
    r.expect_entries(rtr_count, 8)?;
    check_flags(flags, TOKEN_FLAG_RETRANS)?;
    let mut rtr = Vec::with_capacity(rtr_count);
    for _ in 0..rtr_count {
        rtr.push(r.u64()?);
    }
    Ok(OrfToken {
        ring_id,
        token_seq,
        seq,
        aru,
        aru_addr,
        backlog,
        fcc,
        retrans_flg: flags & TOKEN_FLAG_RETRANS != 0,
        rtr,
    })
}

fn decode_join(r: &mut Reader<'_>) -> Result<Join, DecodeError> {
    let ring_seq = r.u64()?;
    let high_seq = r.u64()?;
    let flags = r.u8()?;
    let proc_count = r.count(MAX_PROCESSORS)?;
    let fail_count = r.count(MAX_PROCESSORS)?;
    let heard_count = r.count(MAX_PROCESSORS)?;
    let padding = r.u16()?;
    // Every count is capped, so the sum cannot overflow; `expect_entries` still multiplies
    // in checked 64-bit arithmetic.
    r.expect_entries_then(
        proc_count + fail_count + heard_count,
        4,
        usize::from(padding),
    )?;
    check_flags(
        flags,
        JOIN_FLAG_LEAVE | JOIN_FLAG_INSTALLED | JOIN_FLAG_SETTLED | JOIN_FLAG_PROBE,
    )?;
    let proc_list = r.node_list(proc_count)?;
    let fail_list = r.node_list(fail_count)?;
    let heard = r.node_list(heard_count)?;
    r.zeros(usize::from(padding))?;
    Ok(Join {
        ring_seq,
        high_seq,
        leave: flags & JOIN_FLAG_LEAVE != 0,
        installed: flags & JOIN_FLAG_INSTALLED != 0,
        settled: flags & JOIN_FLAG_SETTLED != 0,
        probe: flags & JOIN_FLAG_PROBE != 0,
        proc_list,
        fail_list,
        heard,
        padding,
    })
}

fn decode_commit(r: &mut Reader<'_>) -> Result<CommitToken, DecodeError> {
    let ring_id = r.ring_id()?;
    let token_seq = r.u64()?;
    let memb_index = r.u16()?;
    let count = r.count(MAX_PROCESSORS)?;
    r.expect_entries(count, COMMIT_MEMBER_LEN)?;
    if usize::from(memb_index) > count {
        return Err(DecodeError::BadField);
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let node = r.node()?;
        let old_ring_id = r.ring_id()?;
        let aru = r.u64()?;
        let high_delivered = r.u64()?;
        let flags = r.u8()?;
        check_flags(flags, MEMBER_FLAG_RECEIVED)?;
        members.push(CommitMember {
            node,
            old_ring_id,
            aru,
            high_delivered,
            received_flg: flags & MEMBER_FLAG_RECEIVED != 0,
        });
    }
    Ok(CommitToken {
        ring_id,
        token_seq,
        memb_index,
        members,
    })
}

fn check_flags(flags: u8, known: u8) -> Result<(), DecodeError> {
    if flags & !known == 0 {
        Ok(())
    } else {
        Err(DecodeError::BadField)
    }
}

/// Cursor over the not yet decoded part of a packet. Every read is bounds-checked and fails
/// with `Truncated`, so no input can make decoding index out of range.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    fn ring_id(&mut self) -> Result<RingId, DecodeError> {
        let rep = self.u32()?;
        let seq = self.u64()?;
        Ok(RingId { rep, seq })
    }

    /// A node id inside a membership list, where 0 cannot name a processor.
    fn node(&mut self) -> Result<NodeId, DecodeError> {
        match self.u32()? {
            0 => Err(DecodeError::BadField),
            node => Ok(node),
        }
    }

    /// A u16 list count, rejected if above `cap`.
    fn count(&mut self, cap: usize) -> Result<usize, DecodeError> {
        let n = usize::from(self.u16()?);
        if n > cap {
            return Err(DecodeError::TooManyEntries);
        }
        Ok(n)
    }

    /// Requires the rest of the packet to be exactly `count` entries of `entry_len` bytes.
    fn expect_entries(&self, count: usize, entry_len: usize) -> Result<(), DecodeError> {
        self.expect_entries_then(count, entry_len, 0)
    }

    /// Requires the rest of the packet to be exactly `count` entries of `entry_len` bytes
    /// followed by `tail` more bytes.
    fn expect_entries_then(
        &self,
        count: usize,
        entry_len: usize,
        tail: usize,
    ) -> Result<(), DecodeError> {
        // Both conversions and the product cannot fail for capped counts on any real target;
        // they are checked anyway so that no future cap change can turn into an overflow.
        let need = u64::try_from(count)
            .ok()
            .zip(u64::try_from(entry_len).ok())
            .and_then(|(c, l)| c.checked_mul(l))
            .zip(u64::try_from(tail).ok())
            .and_then(|(a, b)| a.checked_add(b))
            .ok_or(DecodeError::TooManyEntries)?;
        let have = u64::try_from(self.0.len()).map_err(|_| DecodeError::TrailingBytes)?;
        match have.cmp(&need) {
            std::cmp::Ordering::Less => Err(DecodeError::Truncated),
            std::cmp::Ordering::Greater => Err(DecodeError::TrailingBytes),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// Skips `n` zero bytes (whose presence `expect_entries_then` checked): padding. Anything
    /// else is `BadField`, so that every accepted packet is the canonical encoding of what it
    /// decodes to.
    fn zeros(&mut self, n: usize) -> Result<(), DecodeError> {
        let Some((pad, rest)) = self.0.split_at_checked(n) else {
            return Err(DecodeError::Truncated);
        };
        // (An OR over the whole slice, not `any`: no early exit, so it vectorizes; every
        // join of a membership round goes through here.)
        if pad.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return Err(DecodeError::BadField);
        }
        self.0 = rest;
        Ok(())
    }

    fn expect_exhausted(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    /// Reads `count` node ids; the caller has already checked that the bytes are there, so the
    /// allocation is bounded by the packet length.
    fn node_list(&mut self, count: usize) -> Result<Vec<NodeId>, DecodeError> {
        let mut list = Vec::with_capacity(count);
        for _ in 0..count {
            list.push(self.node()?);
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn dec(bytes: Vec<u8>) -> Result<Decoded, DecodeError> {
        decode(&Bytes::from(bytes))
    }

    fn token() -> Packet {
        Packet::Token(OrfToken {
            ring_id: RingId::new(7, 0x0102_0304_0506_0708),
            token_seq: 9,
            seq: 10,
            aru: 11,
            aru_addr: 12,
            backlog: 13,
            fcc: 14,
            retrans_flg: true,
            rtr: vec![0x1122_3344_5566_7788],
        })
    }

    fn mcast() -> Packet {
        Packet::Mcast(Mcast {
            ring_id: RingId::new(1, 5),
            seq: 3,
            guarantee: Guarantee::Safe,
            encapsulated: false,
            payload: Bytes::from_static(b"hi"),
        })
    }

    fn join() -> Packet {
        Packet::Join(Join {
            ring_seq: 4,
            high_seq: 9,
            leave: true,
            installed: false,
            settled: true,
            probe: false,
            proc_list: vec![1, 2],
            fail_list: vec![2],
            heard: vec![2],
            padding: 0,
        })
    }

    #[test]
    fn padded_join_round_trips_and_is_length_checked() {
        let Packet::Join(mut j) = join() else {
            unreachable!()
        };
        j.probe = true;
        j.padding = 1_000;
        let p = Packet::Join(j);
        let b = encode(7, &p);
        assert_eq!(b.len(), encoded_len(&p));
        assert_eq!(b.len(), JOIN_FIXED_LEN + 4 * 4 + 1_000);
        assert_eq!(
            dec(b.clone()),
            Ok(Decoded {
                sender: 7,
                packet: p
            })
        );
        let mut short = b.clone();
        short.pop();
        assert_eq!(dec(short), Err(DecodeError::Truncated));
        let mut long = b.clone();
        long.push(0);
        assert_eq!(dec(long), Err(DecodeError::TrailingBytes));
        // Padding is zeros: anything else would decode to the same join from different bytes.
        let mut dirty = b;
        let last = dirty.len() - 1;
        dirty[last] = 1;
        assert_eq!(dec(dirty), Err(DecodeError::BadField));
    }

    fn commit() -> Packet {
        Packet::Commit(CommitToken {
            ring_id: RingId::new(1, 8),
            token_seq: 2,
            memb_index: 1,
            members: vec![CommitMember {
                node: 1,
                old_ring_id: RingId::new(1, 4),
                aru: 5,
                high_delivered: 6,
                received_flg: true,
            }],
        })
    }

    fn all_samples() -> Vec<Packet> {
        vec![
            token(),
            mcast(),
            Packet::MergeDetect {
                ring_id: RingId::new(3, 4),
            },
            join(),
            commit(),
            Packet::HoldCancel {
                ring_id: RingId::new(5, 6),
            },
        ]
    }

    /// Offsets of fields that the forging tests patch.
    const TOKEN_FLAGS: usize = TOKEN_FIXED_LEN - 3;
    const TOKEN_RTR_COUNT: usize = TOKEN_FIXED_LEN - 2;
    const MCAST_FLAGS: usize = MCAST_OVERHEAD - 1;
    const JOIN_FLAGS: usize = HEADER_LEN + 16;
    const JOIN_PROC_COUNT: usize = JOIN_FLAGS + 1;
    const JOIN_FAIL_COUNT: usize = JOIN_FLAGS + 3;
    const COMMIT_MEMB_INDEX: usize = COMMIT_FIXED_LEN - 4;
    const COMMIT_COUNT: usize = COMMIT_FIXED_LEN - 2;
    const COMMIT_MEMBER_FLAGS: usize = COMMIT_FIXED_LEN + COMMIT_MEMBER_LEN - 1;

    fn patch_u16(bytes: &mut [u8], at: usize, v: u16) {
        bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    // Known-answer tests pin the layout to the module doc; round trips alone would accept any
    // self-consistent layout.

    #[test]
    fn layout_token() {
        let want = hex("5A7E 03 00 04030201
             07000000 0807060504030201
             0900000000000000 0A00000000000000 0B00000000000000
             0C000000 0D000000 0E000000 01 0100
             8877665544332211");
        assert_eq!(want.len(), TOKEN_FIXED_LEN + 8);
        assert_eq!(encode(0x0102_0304, &token()), want);
        let d = dec(want).unwrap();
        assert_eq!((d.sender, d.packet), (0x0102_0304, token()));
    }

    #[test]
    fn layout_mcast() {
        let want = hex("5A7E 03 01 02000000
             01000000 0500000000000000 0300000000000000 01 6869");
        assert_eq!(encode(2, &mcast()), want);
        assert_eq!(dec(want).unwrap().packet, mcast());

        let Packet::Mcast(mut m) = mcast() else {
            unreachable!()
        };
        m.guarantee = Guarantee::Agreed;
        m.encapsulated = true;
        assert_eq!(encode(2, &Packet::Mcast(m))[MCAST_FLAGS], 0b10);
    }

    #[test]
    fn layout_ring_only() {
        let ring_id = RingId::new(3, 4);
        let md = hex("5A7E 03 02 09000000 03000000 0400000000000000");
        assert_eq!(encode(9, &Packet::MergeDetect { ring_id }), md);
        assert_eq!(dec(md).unwrap().packet, Packet::MergeDetect { ring_id });
        let hc = hex("5A7E 03 05 09000000 03000000 0400000000000000");
        assert_eq!(encode(9, &Packet::HoldCancel { ring_id }), hc);
        assert_eq!(dec(hc).unwrap().packet, Packet::HoldCancel { ring_id });
    }

    #[test]
    fn layout_join() {
        let want = hex("5A7E 03 03 03000000
             0400000000000000 0900000000000000 05 0200 0100 0100 0000
             01000000 02000000 02000000 02000000");
        assert_eq!(encode(3, &join()), want);
        assert_eq!(dec(want).unwrap().packet, join());
    }

    #[test]
    fn layout_commit() {
        let want = hex("5A7E 03 04 01000000
             01000000 0800000000000000 0200000000000000 0100 0100
             01000000 01000000 0400000000000000 0500000000000000 0600000000000000 01");
        assert_eq!(encode(1, &commit()), want);
        assert_eq!(dec(want).unwrap().packet, commit());
    }

    #[test]
    fn encoded_len_is_exact_and_encode_into_appends() {
        let mut out = vec![0xAA];
        for p in all_samples() {
            let start = out.len();
            encode_into(4, &p, &mut out);
            assert_eq!(out.len() - start, encoded_len(&p));
            assert_eq!(encode(4, &p), out[start..]);
        }
        assert_eq!(out[0], 0xAA);
        for p in all_samples() {
            let v = encode(4, &p);
            assert_eq!(v.capacity(), v.len());
        }
    }

    #[test]
    fn mcast_payload_is_zero_copy() {
        let data = Bytes::from(encode(2, &mcast()));
        let Packet::Mcast(m) = decode(&data).unwrap().packet else {
            panic!("not an mcast")
        };
        assert_eq!(m.payload.as_ptr(), data[MCAST_OVERHEAD..].as_ptr());
    }

    #[test]
    fn peek_type_matches_header_checks() {
        for p in all_samples() {
            assert_eq!(peek_type(&encode(1, &p)), Ok(p.packet_type()));
        }
        assert_eq!(peek_type(&[]), Err(DecodeError::TooShort));
        assert_eq!(peek_type(&encode(0, &join())), Err(DecodeError::ZeroSender));
        // A header-only packet passes peek_type but not decode.
        let header = &encode(1, &join())[..HEADER_LEN];
        assert_eq!(peek_type(header), Ok(PacketType::Join));
        assert_eq!(dec(header.to_vec()).unwrap_err(), DecodeError::Truncated);
    }

    #[test]
    fn packet_type_try_from() {
        for v in 0..=5u8 {
            assert_eq!(PacketType::try_from(v).map(|t| t as u8), Ok(v));
        }
        assert_eq!(PacketType::try_from(6), Err(DecodeError::UnknownType));
    }

    // One test per DecodeError variant.

    #[test]
    fn rejects_too_short() {
        assert_eq!(dec(vec![]), Err(DecodeError::TooShort));
        let full = encode(1, &mcast());
        for len in 0..HEADER_LEN {
            assert_eq!(dec(full[..len].to_vec()), Err(DecodeError::TooShort));
        }
    }

    #[test]
    fn rejects_bad_magic() {
        let mut b = encode(1, &token());
        b[0] ^= 1;
        assert_eq!(dec(b), Err(DecodeError::BadMagic));
        // The magic written big-endian must not be accepted.
        let mut b = encode(1, &token());
        b[..2].copy_from_slice(&MAGIC.to_be_bytes());
        assert_eq!(dec(b), Err(DecodeError::BadMagic));
    }

    #[test]
    fn rejects_bad_version() {
        for v in [0, VERSION + 1, 0xFF] {
            let mut b = encode(1, &token());
            b[2] = v;
            assert_eq!(dec(b), Err(DecodeError::BadVersion));
        }
    }

    #[test]
    fn rejects_unknown_type() {
        for t in [6, 0x80, 0xFF] {
            let mut b = encode(1, &token());
            b[3] = t;
            assert_eq!(dec(b), Err(DecodeError::UnknownType));
        }
    }

    #[test]
    fn rejects_zero_sender() {
        for p in all_samples() {
            assert_eq!(dec(encode(0, &p)), Err(DecodeError::ZeroSender));
        }
    }

    #[test]
    fn rejects_truncated() {
        for p in all_samples() {
            let b = encode(1, &p);
            let shortest_ok = match p {
                Packet::Mcast(_) => MCAST_OVERHEAD,
                _ => b.len(),
            };
            for len in HEADER_LEN..shortest_ok {
                assert_eq!(
                    dec(b[..len].to_vec()),
                    Err(DecodeError::Truncated),
                    "{p:?} cut to {len}"
                );
            }
        }
        // A count declaring more entries than the packet holds.
        let mut b = encode(1, &token());
        patch_u16(&mut b, TOKEN_RTR_COUNT, 2);
        assert_eq!(dec(b), Err(DecodeError::Truncated));
    }

    #[test]
    fn rejects_too_many_entries() {
        let mut b = encode(1, &token());
        patch_u16(&mut b, TOKEN_RTR_COUNT, MAX_RTR_ENTRIES as u16 + 1);
        assert_eq!(dec(b), Err(DecodeError::TooManyEntries));

        for at in [JOIN_PROC_COUNT, JOIN_FAIL_COUNT] {
            let mut b = encode(1, &join());
            patch_u16(&mut b, at, MAX_PROCESSORS as u16 + 1);
            assert_eq!(dec(b), Err(DecodeError::TooManyEntries));
        }

        let mut b = encode(1, &commit());
        patch_u16(&mut b, COMMIT_COUNT, u16::MAX);
        assert_eq!(dec(b), Err(DecodeError::TooManyEntries));
    }

    #[test]
    fn rejects_trailing_bytes() {
        for p in all_samples() {
            let mut b = encode(1, &p);
            b.push(0);
            match p {
                // The payload runs to the end, so an extra byte is payload.
                Packet::Mcast(_) => assert!(dec(b).is_ok()),
                _ => assert_eq!(dec(b), Err(DecodeError::TrailingBytes), "{p:?}"),
            }
        }
        // A count declaring fewer entries than the packet holds.
        let mut b = encode(1, &join());
        patch_u16(&mut b, JOIN_FAIL_COUNT, 0);
        assert_eq!(dec(b), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn rejects_bad_field() {
        let cases: [(Packet, usize, u8); 5] = [
            (mcast(), MCAST_FLAGS, 0b100),
            (mcast(), MCAST_FLAGS, 0x80),
            (token(), TOKEN_FLAGS, 0b10),
            (join(), JOIN_FLAGS, 0b1_0000),
            (commit(), COMMIT_MEMBER_FLAGS, 0b10),
        ];
        for (p, at, bits) in cases {
            let mut b = encode(1, &p);
            b[at] |= bits;
            assert_eq!(dec(b), Err(DecodeError::BadField), "{p:?} flags {bits:#x}");
        }

        // memb_index == count is allowed, count + 1 is not.
        let mut b = encode(1, &commit());
        patch_u16(&mut b, COMMIT_MEMB_INDEX, 1);
        assert!(dec(b.clone()).is_ok());
        patch_u16(&mut b, COMMIT_MEMB_INDEX, 2);
        assert_eq!(dec(b), Err(DecodeError::BadField));

        let Packet::Join(j) = join() else {
            unreachable!()
        };
        let with_zero_proc = Join {
            proc_list: vec![1, 0],
            ..j.clone()
        };
        let with_zero_fail = Join {
            fail_list: vec![0],
            ..j.clone()
        };
        let with_zero_heard = Join {
            heard: vec![3, 0],
            ..j
        };
        for bad in [with_zero_proc, with_zero_fail, with_zero_heard] {
            assert_eq!(
                dec(encode(1, &Packet::Join(bad))),
                Err(DecodeError::BadField)
            );
        }

        let Packet::Commit(mut c) = commit() else {
            unreachable!()
        };
        c.members[0].node = 0;
        assert_eq!(
            dec(encode(1, &Packet::Commit(c))),
            Err(DecodeError::BadField)
        );
    }

    #[test]
    fn check_order() {
        // Header fields are checked in byte order.
        let mut b = encode(0, &token());
        b[0] = 0;
        b[2] = 0;
        b[3] = 0xFF;
        assert_eq!(dec(b.clone()), Err(DecodeError::BadMagic));
        b[..2].copy_from_slice(&MAGIC.to_le_bytes());
        assert_eq!(dec(b.clone()), Err(DecodeError::BadVersion));
        b[2] = VERSION;
        assert_eq!(dec(b.clone()), Err(DecodeError::UnknownType));
        b[3] = 0;
        assert_eq!(dec(b), Err(DecodeError::ZeroSender));

        // The cap is checked before the length: a short packet with an over-cap count.
        let mut b = encode(1, &token());
        patch_u16(&mut b, TOKEN_RTR_COUNT, u16::MAX);
        b.truncate(TOKEN_FIXED_LEN);
        assert_eq!(dec(b), Err(DecodeError::TooManyEntries));

        // Shape before values: bad flags in a truncated or overlong body are not reported.
        let mut b = encode(1, &join());
        b[JOIN_FLAGS] = 0xFF;
        let mut long = b.clone();
        long.push(0);
        b.pop();
        assert_eq!(dec(b), Err(DecodeError::Truncated));
        assert_eq!(dec(long), Err(DecodeError::TrailingBytes));

        let mut b = encode(1, &commit());
        patch_u16(&mut b, COMMIT_MEMB_INDEX, 9);
        b.push(0);
        assert_eq!(dec(b), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn faithful_encoder_over_u16_lists_are_rejected() {
        let p = Packet::Token(OrfToken {
            rtr: vec![0; usize::from(u16::MAX) + 1],
            ..OrfToken::default()
        });
        let b = encode(1, &p);
        assert_eq!(b.len(), encoded_len(&p));
        assert_eq!(dec(b), Err(DecodeError::TooManyEntries));
    }
}
