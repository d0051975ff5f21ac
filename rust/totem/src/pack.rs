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
//! Varints are unsigned LEB128, at most 10 bytes, in their shortest form (a redundant trailing
//! zero byte is malformed). Message numbers are assigned by the sender at submission and increase
//! by one per message (wrapping modulo 2⁶⁴); they identify a message together with its sender.
//!
//! A piece that continues from or into another payload (flag bits 0 and 1) is a fragment; every
//! other piece is a whole message. A single piece with both bits set is a middle fragment.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

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
    /// A message would exceed the maximum message size; it (and its partial, if any) was
    /// discarded.
    TooLarge,
}

/// Smallest budget [`Packer::next_payload`] honours. A smaller budget is raised to this value,
/// because a payload that carries no body byte would never drain the queue.
pub const MIN_BUDGET: usize = 32;

/// Flags and first_msg_no: the part of the header whose size never varies.
const FIXED_HEADER: usize = 1 + 8;

/// Room that must be left in a payload already holding messages before a fragment is started in
/// it. Below this the fragment header costs too much for the body it carries, and the receiver
/// would copy the message into a partial buffer when it could have taken it zero-copy from the
/// next payload.
const MIN_FRAGMENT_ROOM: usize = 64;

const FLAG_CONTINUES_PREVIOUS: u8 = 1 << 0;
const FLAG_CONTINUES_NEXT: u8 = 1 << 1;
const KNOWN_FLAGS: u8 = FLAG_CONTINUES_PREVIOUS | FLAG_CONTINUES_NEXT;

/// Longest LEB128 encoding of a u64.
const MAX_VARINT_LEN: usize = 10;

/// Encoded size of `v` as LEB128.
#[inline]
fn varint_len(v: u64) -> usize {
    // Each byte carries 7 bits; `| 1` makes zero take one byte like any value below 128.
    1 + (63 - (v | 1).leading_zeros() as usize) / 7
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Decodes a minimal LEB128 u64 at `*pos`, advancing `*pos`. `None` when the input ends, the
/// encoding is longer than 10 bytes, overflows 64 bits, or has redundant trailing zero bytes
/// (rejecting those gives every value one encoding, so a payload cannot smuggle padding).
#[inline]
fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    for i in 0..MAX_VARINT_LEN {
        let byte = *buf.get(*pos + i)?;
        let bits = u64::from(byte & 0x7F);
        if i == MAX_VARINT_LEN - 1 && bits > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return None;
            }
            *pos += i + 1;
            return Some(value);
        }
    }
    None
}

/// Largest piece length `l` with `varint_len(l) + l <= avail`.
#[inline]
fn max_piece(avail: usize) -> usize {
    // varint_len(avail) >= varint_len(l) for any l <= avail, so this start always fits, and at
    // most one more byte can be gained when the length varint turns out one byte shorter.
    let mut l = avail.saturating_sub(varint_len(avail as u64));
    if l + 1 + varint_len(l as u64 + 1) <= avail {
        l += 1;
    }
    l
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

impl Pending {
    #[inline]
    fn remaining(&self) -> usize {
        self.data.len() - self.offset
    }
}

/// The sender side: a bounded queue of application messages cut into payloads on demand.
///
/// Message numbers start at `first_msg_no`, increase by one per accepted message and wrap
/// modulo 2⁶⁴. A refused message consumes no number.
#[derive(Debug)]
pub struct Packer {
    queue: VecDeque<Pending>,
    queued_bytes: usize,
    next_msg_no: u64,
    max_message_size: usize,
    capacity_bytes: usize,
}

impl Packer {
    /// `capacity_bytes` bounds the bytes waiting in the queue; it should be at least
    /// `max_message_size`. Whatever its value, an empty queue accepts any message of at most
    /// `max_message_size` bytes, so a maximal message can never be refused forever.
    pub fn new(max_message_size: usize, capacity_bytes: usize, first_msg_no: u64) -> Self {
        Packer {
            queue: VecDeque::new(),
            queued_bytes: 0,
            next_msg_no: first_msg_no,
            max_message_size,
            capacity_bytes,
        }
    }

    /// Queues a message; returns its message number.
    ///
    /// Refused with [`SubmitError::TooLarge`] when `data` exceeds the maximum message size, and
    /// with [`SubmitError::Full`] when the queue is not empty and `queued_bytes() + data.len()`
    /// would exceed the capacity. Zero-length messages are valid.
    pub fn push(&mut self, data: Bytes, guarantee: Guarantee) -> Result<u64, SubmitError> {
        let size = data.len();
        if size > self.max_message_size {
            return Err(SubmitError::TooLarge {
                size,
                max: self.max_message_size,
            });
        }
        if !self.queue.is_empty() && self.queued_bytes.saturating_add(size) > self.capacity_bytes {
            return Err(SubmitError::Full);
        }
        let msg_no = self.next_msg_no;
        self.next_msg_no = msg_no.wrapping_add(1);
        self.queued_bytes += size;
        self.queue.push_back(Pending {
            data,
            guarantee,
            msg_no,
            offset: 0,
        });
        Ok(msg_no)
    }

    /// True when no message (or part of one) waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Messages waiting (a partially sent message counts as one).
    pub fn queued_messages(&self) -> usize {
        self.queue.len()
    }

    /// Bytes waiting, counting only the unsent part of a partially sent message.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Message number the next accepted message will get.
    pub fn next_msg_no(&self) -> u64 {
        self.next_msg_no
    }

    /// Estimated number of payloads of at most `budget` bytes needed to send the queue: zero
    /// when empty, else at least one. It counts one length byte per message and a two-byte
    /// count, and ignores payloads cut short by a guarantee change or by the fragment rule.
    pub fn backlog_packets(&self, budget: usize) -> usize {
        if self.queue.is_empty() {
            return 0;
        }
        let usable = budget.max(MIN_BUDGET) - FIXED_HEADER - 2;
        (self.queued_bytes + self.queue.len())
            .div_ceil(usable)
            .max(1)
    }

    /// Cuts the next payload of at most `budget` bytes. Returns the guarantee of the messages in
    /// it and the payload, or `None` when the queue is empty.
    ///
    /// The payload holds whole messages of the head message's guarantee, in order, and stops at
    /// the first message with another guarantee. A message that does not fit whole is cut, its
    /// rest going to the next payloads, but only if it is the first piece of the payload or at
    /// least 64 bytes of room remain; otherwise the payload ends before it.
    ///
    /// A `budget` below [`MIN_BUDGET`] is treated as [`MIN_BUDGET`], so the payload may then be
    /// larger than asked: every call on a non-empty queue makes progress.
    pub fn next_payload(&mut self, budget: usize) -> Option<(Guarantee, Bytes)> {
        let budget = budget.max(MIN_BUDGET);
        let head = self.queue.front()?;
        let guarantee = head.guarantee;
        let continues_previous = head.offset > 0;
        let first_msg_no = head.msg_no;

        // First pass: decide what goes in, so the payload is written once into an exact buffer.
        let mut count = 0usize;
        let mut variable = 0usize; // length varints and bodies
        let mut cut_len = None;
        for p in &self.queue {
            if p.guarantee != guarantee {
                break;
            }
            let avail =
                budget.saturating_sub(FIXED_HEADER + varint_len(count as u64 + 1) + variable);
            let rem = p.remaining();
            let whole = varint_len(rem as u64) + rem;
            if whole <= avail {
                count += 1;
                variable += whole;
                continue;
            }
            if count > 0 && avail < MIN_FRAGMENT_ROOM {
                break;
            }
            let piece = max_piece(avail);
            if piece > 0 {
                count += 1;
                variable += varint_len(piece as u64) + piece;
                cut_len = Some(piece);
            }
            break;
        }

        let total = FIXED_HEADER + varint_len(count as u64) + variable;
        let mut buf = Vec::with_capacity(total);
        let mut flags = 0;
        if continues_previous {
            flags |= FLAG_CONTINUES_PREVIOUS;
        }
        if cut_len.is_some() {
            flags |= FLAG_CONTINUES_NEXT;
        }
        buf.push(flags);
        put_varint(&mut buf, count as u64);
        buf.extend_from_slice(&first_msg_no.to_le_bytes());
        let piece_len = |i: usize, p: &Pending| match cut_len {
            Some(len) if i + 1 == count => len,
            _ => p.remaining(),
        };
        for (i, p) in self.queue.iter().take(count).enumerate() {
            put_varint(&mut buf, piece_len(i, p) as u64);
        }
        let mut sent = 0;
        for (i, p) in self.queue.iter().take(count).enumerate() {
            let len = piece_len(i, p);
            buf.extend_from_slice(&p.data[p.offset..p.offset + len]);
            sent += len;
        }
        debug_assert_eq!(buf.len(), total);

        let whole = if cut_len.is_some() { count - 1 } else { count };
        self.queue.drain(..whole);
        if let (Some(len), Some(p)) = (cut_len, self.queue.front_mut()) {
            p.offset += len;
        }
        self.queued_bytes -= sent;
        Some((guarantee, Bytes::from(buf)))
    }

    /// Forgets how much of the head message was already sent, so that it is sent again whole
    /// under the same message number. Called when a configuration change cut a fragmented
    /// message in two: receivers drop partial messages at that point.
    pub fn restart_partial(&mut self) {
        if let Some(p) = self.queue.front_mut() {
            self.queued_bytes += p.offset;
            p.offset = 0;
        }
    }
}

/// A complete application message unpacked from the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    pub msg_no: u64,
    pub data: Bytes,
}

/// A payload whose header and length list were checked.
struct Header {
    flags: u8,
    count: usize,
    first_msg_no: u64,
    lengths_at: usize,
    bodies_at: usize,
}

impl Header {
    /// Checks everything but the meaning of the pieces; reads nothing beyond `payload` and
    /// allocates nothing.
    fn parse(payload: &[u8]) -> Option<Header> {
        let flags = *payload.first()?;
        if flags & !KNOWN_FLAGS != 0 {
            return None;
        }
        let mut pos = 1;
        let count = read_varint(payload, &mut pos)?;
        if count == 0 {
            return None;
        }
        let first_msg_no = u64::from_le_bytes(payload.get(pos..pos + 8)?.try_into().ok()?);
        pos += 8;
        let lengths_at = pos;
        // Each length takes at least one byte, so a lying count ends this loop at the payload end.
        let mut sum: u64 = 0;
        for _ in 0..count {
            sum = sum.checked_add(read_varint(payload, &mut pos)?)?;
        }
        if sum != (payload.len() - pos) as u64 {
            return None;
        }
        Some(Header {
            flags,
            count: usize::try_from(count).ok()?,
            first_msg_no,
            lengths_at,
            bodies_at: pos,
        })
    }

    /// Byte ranges of the pieces within the payload, in order.
    fn pieces<'a>(&self, payload: &'a [u8]) -> impl Iterator<Item = Range<usize>> + 'a {
        let mut len_pos = self.lengths_at;
        let mut body_pos = self.bodies_at;
        (0..self.count).map_while(move |_| {
            let len = usize::try_from(read_varint(payload, &mut len_pos)?).ok()?;
            let range = body_pos..body_pos + len;
            body_pos += len;
            Some(range)
        })
    }
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
    /// order. Whole messages are zero-copy slices of `payload`.
    ///
    /// Errors, and what they drop:
    /// * [`UnpackError::Malformed`]: nothing is pushed and the sender's partial message is
    ///   discarded (the lost payload may have carried a piece of it).
    /// * [`UnpackError::BadContinuation`]: the payload continues no pending message (or continues
    ///   another message number), or it starts afresh while one is pending. The pending partial
    ///   and the orphan continuation piece are dropped; every other message of the payload is
    ///   still pushed, and a fragment at its end starts a new partial.
    /// * [`UnpackError::TooLarge`]: a message would exceed the maximum message size. That message
    ///   (the partial and the piece, or the oversized whole piece) is dropped; the other messages
    ///   are still pushed. Its later fragments then meet no partial and report `BadContinuation`.
    ///
    /// When several errors occur in one payload the first is returned.
    pub fn unpack(
        &mut self,
        sender: NodeId,
        payload: &Bytes,
        out: &mut Vec<Unpacked>,
    ) -> Result<(), UnpackError> {
        let Some(header) = Header::parse(payload) else {
            self.partial.remove(&sender);
            return Err(UnpackError::Malformed);
        };
        let continues_previous = header.flags & FLAG_CONTINUES_PREVIOUS != 0;
        let continues_next = header.flags & FLAG_CONTINUES_NEXT != 0;
        let max = self.max_message_size;
        let mut result = Ok(());
        let mut fail = |e| {
            if result.is_ok() {
                result = Err(e);
            }
        };
        // Hashing is skipped in the common case of no sender mid-message.
        let mut pending = if self.partial.is_empty() {
            None
        } else {
            self.partial.remove(&sender)
        };
        if !continues_previous && pending.take().is_some() {
            fail(UnpackError::BadContinuation);
        }

        // Bounded by the payload size: every piece took at least one length byte.
        out.reserve(header.count);
        let last = header.count - 1;
        for (i, range) in header.pieces(payload).enumerate() {
            let msg_no = header.first_msg_no.wrapping_add(i as u64);
            let piece = &payload[range.clone()];
            let continues = i == last && continues_next;
            if i == 0 && continues_previous {
                let Some((_, mut buf)) = pending.take().filter(|(no, _)| *no == msg_no) else {
                    fail(UnpackError::BadContinuation);
                    continue;
                };
                let want = buf.len() + piece.len();
                if want > max {
                    fail(UnpackError::TooLarge);
                    continue;
                }
                if want > buf.capacity() {
                    // Grow geometrically for linear copying, but never past the maximum size.
                    let cap = buf.capacity().saturating_mul(2).clamp(want, max);
                    buf.reserve_exact(cap - buf.len());
                }
                buf.extend_from_slice(piece);
                if continues {
                    self.partial.insert(sender, (msg_no, buf));
                } else {
                    out.push(Unpacked {
                        msg_no,
                        data: Bytes::from(buf),
                    });
                }
            } else if piece.len() > max {
                fail(UnpackError::TooLarge);
            } else if continues {
                self.partial.insert(sender, (msg_no, piece.to_vec()));
            } else {
                out.push(Unpacked {
                    msg_no,
                    data: payload.slice(range),
                });
            }
        }
        result
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

#[cfg(test)]
mod tests {
    use super::*;

    const A: Guarantee = Guarantee::Agreed;
    const S: Guarantee = Guarantee::Safe;

    fn msg(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>()
            .into()
    }

    fn drain(packer: &mut Packer, budget: usize) -> Vec<(Guarantee, Bytes)> {
        std::iter::from_fn(|| packer.next_payload(budget)).collect()
    }

    fn unpack_all(
        r: &mut Reassembler,
        sender: NodeId,
        payloads: &[(Guarantee, Bytes)],
    ) -> Vec<Unpacked> {
        let mut out = Vec::new();
        for (_, p) in payloads {
            r.unpack(sender, p, &mut out).unwrap();
        }
        out
    }

    /// flags, count, first_msg_no, lengths of a payload the packer produced.
    fn header(p: &[u8]) -> (u8, u64, u64, Vec<u64>) {
        let mut pos = 1;
        let count = read_varint(p, &mut pos).unwrap();
        let first = u64::from_le_bytes(p[pos..pos + 8].try_into().unwrap());
        pos += 8;
        let lens = (0..count)
            .map(|_| read_varint(p, &mut pos).unwrap())
            .collect();
        (p[0], count, first, lens)
    }

    #[test]
    fn pack_varint_round_trip_and_length() {
        let values = [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ];
        for v in values {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "{v}");
            let mut pos = 0;
            assert_eq!(read_varint(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
            let mut pos = 0;
            assert_eq!(read_varint(&buf[..buf.len() - 1], &mut pos), None);
        }
    }

    #[test]
    fn pack_varint_rejects_overlong_and_overflow() {
        let reject = |bytes: &[u8]| {
            let mut pos = 0;
            assert_eq!(read_varint(bytes, &mut pos), None, "{bytes:?}");
            assert_eq!(pos, 0);
        };
        reject(&[0x80, 0x00]);
        reject(&[0xFF, 0x80, 0x00]);
        reject(&[0xFF; 10]);
        reject(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]);
        reject(&[0x80; 11]);
    }

    #[test]
    fn pack_max_piece_is_exact() {
        for avail in 0..40_000usize {
            let l = max_piece(avail);
            assert!(
                l + varint_len(l as u64) <= avail || l == 0 && avail == 0,
                "{avail}"
            );
            assert!(l + 1 + varint_len(l as u64 + 1) > avail, "{avail}");
        }
    }

    #[test]
    fn pack_small_messages_share_one_payload() {
        let mut p = Packer::new(1000, 10_000, 7);
        for i in 0..3 {
            assert_eq!(p.push(msg(10 * i, i as u8), A), Ok(7 + i as u64));
        }
        assert_eq!((p.queued_messages(), p.queued_bytes()), (3, 30));
        let (g, payload) = p.next_payload(1300).unwrap();
        assert_eq!(g, A);
        let mut expected = vec![0, 3];
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.extend_from_slice(&[0, 10, 20]);
        expected.extend_from_slice(&msg(10, 1));
        expected.extend_from_slice(&msg(20, 2));
        assert_eq!(&payload[..], &expected[..]);
        assert!(p.is_empty());
        assert_eq!((p.queued_messages(), p.queued_bytes()), (0, 0));
        assert_eq!(p.next_payload(1300), None);
    }

    #[test]
    fn pack_guarantee_change_ends_payload() {
        let mut p = Packer::new(1000, 10_000, 0);
        for g in [A, A, S, S, A] {
            p.push(msg(5, 0), g).unwrap();
        }
        let payloads = drain(&mut p, 1300);
        let shape: Vec<_> = payloads
            .iter()
            .map(|(g, b)| (*g, header(b).1, header(b).2))
            .collect();
        assert_eq!(shape, vec![(A, 2, 0), (S, 2, 2), (A, 1, 4)]);
    }

    #[test]
    fn pack_fragments_large_message_with_continuation_flags() {
        let mut p = Packer::new(10_000, 10_000, 100);
        p.push(msg(3000, 9), S).unwrap();
        p.push(msg(10, 1), S).unwrap();
        let payloads = drain(&mut p, 1300);
        assert!(payloads.iter().all(|(g, b)| *g == S && b.len() <= 1300));
        let headers: Vec<_> = payloads.iter().map(|(_, b)| header(b)).collect();
        assert_eq!(headers.len(), 3);
        assert_eq!((headers[0].0, headers[0].1, headers[0].2), (2, 1, 100));
        assert_eq!((headers[1].0, headers[1].1, headers[1].2), (3, 1, 100));
        assert_eq!((headers[2].0, headers[2].1, headers[2].2), (1, 2, 100));
        // Full payloads: 9 fixed + 1 count + 2 length bytes.
        assert_eq!(headers[0].3, vec![1288]);
        assert_eq!(payloads[0].1.len(), 1300);
        let mut r = Reassembler::new(10_000);
        let out = unpack_all(&mut r, 1, &payloads);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].msg_no, &out[0].data), (100, &msg(3000, 9)));
        assert_eq!((out[1].msg_no, &out[1].data), (101, &msg(10, 1)));
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn pack_no_tiny_fragment_behind_other_messages() {
        // 9 + 1 + 2 + 1200 = 1212 bytes used: 88 bytes left, enough to start the next message.
        let mut p = Packer::new(10_000, 10_000, 0);
        p.push(msg(1200, 0), A).unwrap();
        p.push(msg(500, 1), A).unwrap();
        let (_, first) = p.next_payload(1300).unwrap();
        let (flags, count, _, lens) = header(&first);
        assert_eq!((flags, count, first.len()), (2, 2, 1300));
        assert_eq!(lens[1], 87);

        // 9 + 1 + 2 + 1250 = 1262 bytes used: 38 bytes left, too few to start a fragment.
        let mut p = Packer::new(10_000, 10_000, 0);
        p.push(msg(1250, 0), A).unwrap();
        p.push(msg(500, 1), A).unwrap();
        p.push(msg(0, 1), A).unwrap();
        let (_, first) = p.next_payload(1300).unwrap();
        assert_eq!((header(&first).0, header(&first).1), (0, 1));
        // A whole small message still fills such a gap.
        let mut p = Packer::new(10_000, 10_000, 0);
        p.push(msg(1250, 0), A).unwrap();
        p.push(msg(20, 1), A).unwrap();
        let (_, first) = p.next_payload(1300).unwrap();
        assert_eq!((header(&first).0, header(&first).1), (0, 2));
    }

    #[test]
    fn pack_tiny_budget_still_progresses() {
        let mut p = Packer::new(1000, 10_000, 0);
        p.push(msg(100, 3), A).unwrap();
        p.push(msg(0, 0), A).unwrap();
        let payloads = drain(&mut p, 0);
        assert!(payloads.iter().all(|(_, b)| b.len() <= MIN_BUDGET));
        let mut r = Reassembler::new(1000);
        let out = unpack_all(&mut r, 1, &payloads);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data, msg(100, 3));
        assert!(out[1].data.is_empty());
    }

    #[test]
    fn pack_submit_errors() {
        let mut p = Packer::new(100, 150, 5);
        assert_eq!(
            p.push(msg(101, 0), A),
            Err(SubmitError::TooLarge {
                size: 101,
                max: 100
            })
        );
        assert_eq!(p.push(msg(100, 0), A), Ok(5));
        assert_eq!(p.push(msg(51, 0), A), Err(SubmitError::Full));
        assert_eq!(p.push(msg(50, 0), S), Ok(6));
        assert_eq!(p.push(msg(1, 0), S), Err(SubmitError::Full));
        assert_eq!(p.push(msg(0, 0), S), Ok(7));
        assert_eq!((p.queued_messages(), p.queued_bytes()), (3, 150));
        assert_eq!(p.next_msg_no(), 8);
    }

    #[test]
    fn pack_max_message_accepted_into_empty_queue() {
        // Even a capacity below the maximum must not refuse a maximal message forever.
        let mut p = Packer::new(1000, 10, 0);
        assert_eq!(p.push(msg(1000, 0), A), Ok(0));
        assert_eq!(p.push(msg(1, 0), A), Err(SubmitError::Full));
        let mut p = Packer::new(1000, 1000, 0);
        p.push(msg(1, 0), A).unwrap();
        assert_eq!(p.push(msg(1000, 0), A), Err(SubmitError::Full));
        p.next_payload(1300).unwrap();
        assert_eq!(p.push(msg(1000, 0), A), Ok(1));
    }

    #[test]
    fn pack_backlog_estimate() {
        let mut p = Packer::new(1 << 20, 1 << 20, 0);
        assert_eq!(p.backlog_packets(1300), 0);
        p.push(Bytes::new(), A).unwrap();
        assert_eq!(p.backlog_packets(1300), 1);
        p.next_payload(1300).unwrap();
        for _ in 0..100 {
            p.push(msg(64, 0), A).unwrap();
        }
        let estimate = p.backlog_packets(1300);
        let actual = drain(&mut p, 1300).len();
        assert_eq!(estimate, actual);
        p.push(msg(100_000, 0), A).unwrap();
        let estimate = p.backlog_packets(1300);
        let actual = drain(&mut p, 1300).len();
        assert!(estimate.abs_diff(actual) <= 1, "{estimate} vs {actual}");
    }

    #[test]
    fn pack_restart_partial_resends_whole_message() {
        let big = msg(5000, 4);
        let mut p = Packer::new(10_000, 20_000, 0);
        p.push(big.clone(), A).unwrap();
        p.push(msg(10, 1), A).unwrap();
        let mut r = Reassembler::new(10_000);
        let mut out = Vec::new();
        let (_, first) = p.next_payload(1300).unwrap();
        r.unpack(1, &first, &mut out).unwrap();
        assert_eq!((r.pending(), out.len()), (1, 0));
        assert_eq!(p.queued_bytes(), 5010 - 1288);

        // Configuration change: both sides forget the cut message.
        r.reset();
        p.restart_partial();
        assert_eq!((p.queued_messages(), p.queued_bytes()), (2, 5010));
        let rest = drain(&mut p, 1300);
        assert_eq!(header(&rest[0].1).0 & FLAG_CONTINUES_PREVIOUS, 0);
        for (_, b) in &rest {
            r.unpack(1, b, &mut out).unwrap();
        }
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].msg_no, &out[0].data), (0, &big));
        assert_eq!(out[1].msg_no, 1);
        assert_eq!(p.queued_bytes(), 0);
    }

    #[test]
    fn pack_restart_without_receiver_reset_drops_stale_partial() {
        let big = msg(3000, 4);
        let mut p = Packer::new(10_000, 20_000, 0);
        p.push(big.clone(), A).unwrap();
        let mut r = Reassembler::new(10_000);
        let mut out = Vec::new();
        r.unpack(1, &p.next_payload(1300).unwrap().1, &mut out)
            .unwrap();
        p.restart_partial();
        let rest = drain(&mut p, 1300);
        assert_eq!(
            r.unpack(1, &rest[0].1, &mut out),
            Err(UnpackError::BadContinuation)
        );
        for (_, b) in &rest[1..] {
            r.unpack(1, b, &mut out).unwrap();
        }
        assert_eq!(
            out,
            vec![Unpacked {
                msg_no: 0,
                data: big
            }]
        );
    }

    #[test]
    fn pack_restart_partial_on_unstarted_head_is_noop() {
        let mut p = Packer::new(100, 1000, 0);
        p.restart_partial();
        p.push(msg(50, 0), A).unwrap();
        p.restart_partial();
        assert_eq!(p.queued_bytes(), 50);
    }

    #[test]
    fn pack_whole_messages_are_zero_copy() {
        let mut p = Packer::new(1000, 10_000, 0);
        p.push(msg(40, 1), A).unwrap();
        p.push(msg(40, 2), A).unwrap();
        let (_, payload) = p.next_payload(1300).unwrap();
        let mut out = Vec::new();
        Reassembler::new(1000)
            .unpack(9, &payload, &mut out)
            .unwrap();
        let range = payload.as_ptr_range();
        for m in &out {
            assert!(range.contains(&m.data.as_ptr()));
        }
    }

    #[test]
    fn pack_one_mib_round_trip() {
        let big = msg(1 << 20, 77);
        let mut p = Packer::new(1 << 20, 1 << 20, 0);
        p.push(big.clone(), S).unwrap();
        let payloads = drain(&mut p, 1300);
        assert!(payloads.iter().all(|(g, b)| *g == S && b.len() <= 1300));
        assert_eq!(payloads.len(), (1usize << 20).div_ceil(1288));
        let out = unpack_all(&mut Reassembler::new(1 << 20), 3, &payloads);
        assert_eq!(
            out,
            vec![Unpacked {
                msg_no: 0,
                data: big
            }]
        );
    }

    #[test]
    fn pack_two_senders_interleave() {
        let mut p1 = Packer::new(10_000, 100_000, 0);
        let mut p2 = Packer::new(10_000, 100_000, 50);
        p1.push(msg(4000, 1), A).unwrap();
        p1.push(msg(30, 2), A).unwrap();
        p2.push(msg(6000, 3), A).unwrap();
        let a = drain(&mut p1, 1300);
        let b = drain(&mut p2, 1300);
        let mut r = Reassembler::new(10_000);
        let (mut out1, mut out2) = (Vec::new(), Vec::new());
        for i in 0..a.len().max(b.len()) {
            if let Some((_, x)) = a.get(i) {
                r.unpack(1, x, &mut out1).unwrap();
            }
            if let Some((_, y)) = b.get(i) {
                r.unpack(2, y, &mut out2).unwrap();
            }
        }
        assert_eq!(
            out1.iter()
                .map(|m| (m.msg_no, m.data.clone()))
                .collect::<Vec<_>>(),
            vec![(0, msg(4000, 1)), (1, msg(30, 2))]
        );
        assert_eq!(
            out2,
            vec![Unpacked {
                msg_no: 50,
                data: msg(6000, 3)
            }]
        );
        assert_eq!(r.pending(), 0);
    }

    fn raw(flags: u8, first: u64, lens: &[u64], body: &[u8]) -> Bytes {
        let mut b = vec![flags];
        put_varint(&mut b, lens.len() as u64);
        b.extend_from_slice(&first.to_le_bytes());
        for &l in lens {
            put_varint(&mut b, l);
        }
        b.extend_from_slice(body);
        b.into()
    }

    #[test]
    fn pack_unpack_rejects_malformed() {
        let cases = [
            Bytes::new(),
            raw(4, 0, &[1], b"x"),
            raw(0, 0, &[], b""),
            raw(0, 0, &[2], b"x"),
            raw(0, 0, &[1], b"xy"),
            raw(0, 0, &[u64::MAX, 2], b"x"),
            Bytes::from_static(&[0, 1, 0, 0, 0]),
            Bytes::from_static(&[0, 0x80, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for case in cases {
            let mut r = Reassembler::new(1000);
            let mut out = Vec::new();
            r.unpack(1, &raw(2, 0, &[3], b"abc"), &mut out).unwrap();
            assert_eq!(r.pending(), 1);
            assert_eq!(
                r.unpack(1, &case, &mut out),
                Err(UnpackError::Malformed),
                "{case:?}"
            );
            assert!(out.is_empty());
            assert_eq!(r.pending(), 0, "a malformed payload discards the partial");
        }
    }

    #[test]
    fn pack_unpack_bad_continuation_keeps_deliverable_messages() {
        let mut r = Reassembler::new(1000);
        let mut out = Vec::new();
        // Continuation with nothing pending: the orphan piece is dropped, the rest delivered, and
        // the trailing fragment starts a partial.
        assert_eq!(
            r.unpack(1, &raw(3, 10, &[2, 1, 2], b"aabcc"), &mut out),
            Err(UnpackError::BadContinuation)
        );
        assert_eq!(
            out,
            vec![Unpacked {
                msg_no: 11,
                data: Bytes::from_static(b"b")
            }]
        );
        assert_eq!(r.pending(), 1);
        // A continuation of another message number drops both partial and piece.
        out.clear();
        assert_eq!(
            r.unpack(1, &raw(1, 13, &[1, 1], b"dz"), &mut out),
            Err(UnpackError::BadContinuation)
        );
        assert_eq!(
            out,
            vec![Unpacked {
                msg_no: 14,
                data: Bytes::from_static(b"z")
            }]
        );
        assert_eq!(r.pending(), 0);
        // A fresh payload while a partial is pending drops the partial only.
        r.unpack(1, &raw(2, 20, &[1], b"p"), &mut out).unwrap();
        out.clear();
        assert_eq!(
            r.unpack(1, &raw(0, 30, &[1, 1], b"qr"), &mut out),
            Err(UnpackError::BadContinuation)
        );
        assert_eq!(out.len(), 2);
        assert_eq!(r.pending(), 0);
        // Middle fragment with nothing pending.
        out.clear();
        assert_eq!(
            r.unpack(1, &raw(3, 40, &[1], b"m"), &mut out),
            Err(UnpackError::BadContinuation)
        );
        assert!(out.is_empty());
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn pack_unpack_too_large() {
        let mut r = Reassembler::new(4);
        let mut out = Vec::new();
        r.unpack(1, &raw(2, 0, &[3], b"abc"), &mut out).unwrap();
        assert_eq!(
            r.unpack(1, &raw(1, 0, &[2, 1], b"dex"), &mut out),
            Err(UnpackError::TooLarge)
        );
        assert_eq!(
            out,
            vec![Unpacked {
                msg_no: 1,
                data: Bytes::from_static(b"x")
            }]
        );
        assert_eq!(r.pending(), 0);
        out.clear();
        assert_eq!(
            r.unpack(1, &raw(0, 5, &[5, 1], b"abcdey"), &mut out),
            Err(UnpackError::TooLarge)
        );
        assert_eq!(
            out,
            vec![Unpacked {
                msg_no: 6,
                data: Bytes::from_static(b"y")
            }]
        );
        assert_eq!(
            r.unpack(1, &raw(2, 7, &[5], b"abcde"), &mut out),
            Err(UnpackError::TooLarge)
        );
        assert_eq!(r.pending(), 0);
        // Exactly the maximum completes.
        out.clear();
        r.unpack(1, &raw(2, 8, &[3], b"abc"), &mut out).unwrap();
        r.unpack(1, &raw(1, 8, &[1], b"d"), &mut out).unwrap();
        assert_eq!(
            out,
            vec![Unpacked {
                msg_no: 8,
                data: Bytes::from_static(b"abcd")
            }]
        );
    }

    #[test]
    fn pack_msg_no_wraps() {
        let mut p = Packer::new(100, 1000, u64::MAX);
        assert_eq!(p.push(msg(1, 0), A), Ok(u64::MAX));
        assert_eq!(p.push(msg(1, 0), A), Ok(0));
        let (_, b) = p.next_payload(1300).unwrap();
        let mut out = Vec::new();
        Reassembler::new(100).unpack(1, &b, &mut out).unwrap();
        assert_eq!(
            out.iter().map(|m| m.msg_no).collect::<Vec<_>>(),
            vec![u64::MAX, 0]
        );
    }
}
