//! Property tests of the wire codec: round trips, robustness against arbitrary and mutated
//! input, and bounded allocation.

use bytes::Bytes;
use proptest::prelude::*;
use totem::wire::{
    decode, encode, encoded_len, CommitMember, CommitToken, DecodeError, Decoded, Join, Mcast,
    OrfToken, Packet, PacketType, COMMIT_FIXED_LEN, COMMIT_MEMBER_LEN, HEADER_LEN, JOIN_FIXED_LEN,
    MAGIC, MAX_PROCESSORS, MAX_RTR_ENTRIES, MCAST_OVERHEAD, TOKEN_FIXED_LEN, VERSION,
};
use totem::{Guarantee, NodeId, RingId};

fn sender() -> impl Strategy<Value = NodeId> {
    1..=u32::MAX
}

fn node() -> impl Strategy<Value = NodeId> {
    1..=u32::MAX
}

fn ring_id() -> impl Strategy<Value = RingId> {
    (any::<u32>(), any::<u64>()).prop_map(|(rep, seq)| RingId::new(rep, seq))
}

fn token() -> impl Strategy<Value = Packet> {
    (
        ring_id(),
        any::<(u64, u64, u64, u32, u32, u32, bool)>(),
        prop::collection::vec(any::<u64>(), 0..=MAX_RTR_ENTRIES),
    )
        .prop_map(
            |(ring_id, (token_seq, seq, aru, aru_addr, backlog, fcc, retrans_flg), rtr)| {
                Packet::Token(OrfToken {
                    ring_id,
                    token_seq,
                    seq,
                    aru,
                    aru_addr,
                    backlog,
                    fcc,
                    retrans_flg,
                    rtr,
                })
            },
        )
}

fn mcast() -> impl Strategy<Value = Packet> {
    (
        ring_id(),
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..1500),
    )
        .prop_map(|(ring_id, seq, safe, encapsulated, payload)| {
            Packet::Mcast(Mcast {
                ring_id,
                seq,
                guarantee: if safe {
                    Guarantee::Safe
                } else {
                    Guarantee::Agreed
                },
                encapsulated,
                payload: Bytes::from(payload),
            })
        })
}

fn join() -> impl Strategy<Value = Packet> {
    (
        (any::<u64>(), any::<u64>(), 0u16..2_000),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        prop::collection::vec(node(), 0..=MAX_PROCESSORS),
        prop::collection::vec(node(), 0..=MAX_PROCESSORS),
        prop::collection::vec(node(), 0..=MAX_PROCESSORS),
    )
        .prop_map(
            |(
                (ring_seq, high_seq, padding),
                (leave, installed, settled, probe),
                proc_list,
                fail_list,
                heard,
            )| {
                Packet::Join(Join {
                    ring_seq,
                    high_seq,
                    leave,
                    installed,
                    settled,
                    probe,
                    proc_list,
                    fail_list,
                    heard,
                    padding,
                })
            },
        )
}

fn member() -> impl Strategy<Value = CommitMember> {
    (node(), ring_id(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
        |(node, old_ring_id, aru, high_delivered, received_flg)| CommitMember {
            node,
            old_ring_id,
            aru,
            high_delivered,
            received_flg,
        },
    )
}

fn commit() -> impl Strategy<Value = Packet> {
    (
        ring_id(),
        any::<u64>(),
        prop::collection::vec(member(), 0..=MAX_PROCESSORS),
    )
        .prop_flat_map(|(ring_id, token_seq, members)| {
            let len = members.len() as u16;
            (0..=len).prop_map(move |memb_index| {
                Packet::Commit(CommitToken {
                    ring_id,
                    token_seq,
                    memb_index,
                    members: members.clone(),
                })
            })
        })
}

fn merge_detect() -> impl Strategy<Value = Packet> {
    ring_id().prop_map(|ring_id| Packet::MergeDetect { ring_id })
}

fn hold_cancel() -> impl Strategy<Value = Packet> {
    ring_id().prop_map(|ring_id| Packet::HoldCancel { ring_id })
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        token(),
        mcast(),
        merge_detect(),
        join(),
        commit(),
        hold_cancel()
    ]
}

/// Every vector of a decoded packet must be allocated for exactly its length: the decoder
/// sizes lists from counts it has already matched against the packet length.
fn assert_exact_allocation(packet: &Packet) {
    match packet {
        Packet::Token(t) => assert_eq!(t.rtr.capacity(), t.rtr.len()),
        Packet::Join(j) => {
            assert_eq!(j.proc_list.capacity(), j.proc_list.len());
            assert_eq!(j.fail_list.capacity(), j.fail_list.len());
        }
        Packet::Commit(c) => assert_eq!(c.members.capacity(), c.members.len()),
        Packet::Mcast(_) | Packet::MergeDetect { .. } | Packet::HoldCancel { .. } => {}
    }
}

fn assert_roundtrip(sender: NodeId, packet: Packet) {
    let encoded = encode(sender, &packet);
    assert_eq!(encoded.len(), encoded_len(&packet));
    let data = Bytes::from(encoded);
    let decoded = decode(&data).expect("valid packet must decode");
    assert_exact_allocation(&decoded.packet);
    if let Packet::Mcast(m) = &decoded.packet {
        assert_eq!(m.payload.as_ptr(), data[MCAST_OVERHEAD..].as_ptr());
    }
    assert_eq!(decoded, Decoded { sender, packet });
}

/// Checks the invariants every decode result must satisfy: success implies the input was the
/// canonical encoding of the result, so re-encoding reproduces it and re-decodes to the same
/// value.
fn check_decode(data: &Bytes) {
    if let Ok(decoded) = decode(data) {
        assert_exact_allocation(&decoded.packet);
        let again = encode(decoded.sender, &decoded.packet);
        assert_eq!(again, data[..]);
        assert_eq!(decode(&Bytes::from(again)), Ok(decoded));
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    /// Writes a little-endian u16, to hit list counts with values around their caps.
    SetU16(usize, u16),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting_u16 = prop_oneof![
        Just(0u16),
        Just(1),
        Just(MAX_PROCESSORS as u16),
        Just(MAX_PROCESSORS as u16 + 1),
        Just(MAX_RTR_ENTRIES as u16),
        Just(MAX_RTR_ENTRIES as u16 + 1),
        Just(u16::MAX),
        any::<u16>(),
    ];
    prop_oneof![
        (any::<usize>(), 1..=u8::MAX).prop_map(|(i, m)| Mutation::Flip(i, m)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), interesting_u16).prop_map(|(i, v)| Mutation::SetU16(i, v)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match *m {
        Mutation::Flip(i, mask) if len > 0 => bytes[i % len] ^= mask,
        Mutation::Set(i, b) if len > 0 => bytes[i % len] = b,
        Mutation::SetU16(i, v) if len > 1 => {
            let at = i % (len - 1);
            bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
        Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
        Mutation::Delete(i) if len > 0 => {
            bytes.remove(i % len);
        }
        Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
        _ => {}
    }
}

fn header(packet_type: PacketType) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&MAGIC.to_le_bytes());
    b.push(VERSION);
    b.push(packet_type as u8);
    b.extend_from_slice(&1u32.to_le_bytes());
    b
}

// Wrapped in a module so that `cargo test -p totem wire` selects these tests too.
mod wire {
    use super::*;

    proptest! {
        #[test]
        fn roundtrip_token(s in sender(), p in token()) {
            assert_roundtrip(s, p);
        }

        #[test]
        fn roundtrip_mcast(s in sender(), p in mcast()) {
            assert_roundtrip(s, p);
        }

        #[test]
        fn roundtrip_merge_detect(s in sender(), p in merge_detect()) {
            assert_roundtrip(s, p);
        }

        #[test]
        fn roundtrip_join(s in sender(), p in join()) {
            assert_roundtrip(s, p);
        }

        #[test]
        fn roundtrip_commit(s in sender(), p in commit()) {
            assert_roundtrip(s, p);
        }

        #[test]
        fn roundtrip_hold_cancel(s in sender(), p in hold_cancel()) {
            assert_roundtrip(s, p);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            check_decode(&Bytes::from(bytes));
        }

        /// Random bytes almost never get past the magic; this variant starts them with a valid
        /// header (or a near-valid type) so the body decoders see arbitrary input too.
        #[test]
        fn arbitrary_bodies_never_panic(
            packet_type in 0u8..=6,
            s in any::<u32>(),
            body in prop::collection::vec(any::<u8>(), 0..4096),
        ) {
            let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
            bytes.extend_from_slice(&MAGIC.to_le_bytes());
            bytes.push(VERSION);
            bytes.push(packet_type);
            bytes.extend_from_slice(&s.to_le_bytes());
            bytes.extend_from_slice(&body);
            check_decode(&Bytes::from(bytes));
        }

        #[test]
        fn mutated_encodings_never_panic_and_reencode(
            s in sender(),
            p in packet(),
            mutations in prop::collection::vec(mutation(), 1..6),
        ) {
            let mut bytes = encode(s, &p);
            for m in &mutations {
                apply(&mut bytes, m);
            }
            check_decode(&Bytes::from(bytes));
        }
    }

    /// Declared counts at and above the cap, on packets far too short to hold them, are rejected
    /// from the fixed part alone.
    ///
    /// Counting allocations directly would need a `#[global_allocator]`, which needs `unsafe`;
    /// instead the join and commit cases carry a witness: their first list entry is node id 0,
    /// which is only seen (as `BadField`) once entries are read, and entries are only read after
    /// the list is allocated. Getting `Truncated` instead shows the length check ran first.
    #[test]
    fn huge_counts_rejected_before_allocating() {
        let over_rtr = MAX_RTR_ENTRIES as u16 + 1;
        let over_procs = MAX_PROCESSORS as u16 + 1;
        let at_procs = MAX_PROCESSORS as u16;

        let token = |count: u16, entries: usize| {
            let mut b = header(PacketType::OrfToken);
            b.resize(TOKEN_FIXED_LEN - 2, 0);
            b.extend_from_slice(&count.to_le_bytes());
            b.resize(b.len() + 8 * entries, 0);
            Bytes::from(b)
        };
        assert_eq!(
            decode(&token(over_rtr, 0)),
            Err(DecodeError::TooManyEntries)
        );
        assert_eq!(
            decode(&token(u16::MAX, 0)),
            Err(DecodeError::TooManyEntries)
        );
        // Over the cap is rejected even when the bytes are all there.
        assert_eq!(
            decode(&token(over_rtr, usize::from(over_rtr))),
            Err(DecodeError::TooManyEntries)
        );
        assert_eq!(
            decode(&token(MAX_RTR_ENTRIES as u16, 1)),
            Err(DecodeError::Truncated)
        );
        assert!(decode(&token(MAX_RTR_ENTRIES as u16, MAX_RTR_ENTRIES)).is_ok());

        // Node-id entries are zero-filled, so reading any of them would give BadField.
        let join = |proc_count: u16, fail_count: u16, entries: usize| {
            let mut b = header(PacketType::Join);
            b.resize(JOIN_FIXED_LEN - 8, 0);
            b.extend_from_slice(&proc_count.to_le_bytes());
            b.extend_from_slice(&fail_count.to_le_bytes());
            // heard_count and pad_len 0.
            b.resize(b.len() + 4 + 4 * entries, 0);
            Bytes::from(b)
        };
        for (p, f) in [(over_procs, 0), (0, over_procs), (u16::MAX, u16::MAX)] {
            assert_eq!(decode(&join(p, f, 0)), Err(DecodeError::TooManyEntries));
        }
        for (p, f) in [(at_procs, 0), (0, at_procs), (at_procs, at_procs)] {
            assert_eq!(decode(&join(p, f, 1)), Err(DecodeError::Truncated));
            let all = usize::from(p) + usize::from(f);
            assert_eq!(decode(&join(p, f, all - 1)), Err(DecodeError::Truncated));
            assert_eq!(decode(&join(p, f, all)), Err(DecodeError::BadField));
        }

        let commit = |count: u16, entry_bytes: usize| {
            let mut b = header(PacketType::CommitToken);
            b.resize(COMMIT_FIXED_LEN - 2, 0);
            b.extend_from_slice(&count.to_le_bytes());
            b.resize(b.len() + entry_bytes, 0);
            Bytes::from(b)
        };
        assert_eq!(
            decode(&commit(over_procs, 0)),
            Err(DecodeError::TooManyEntries)
        );
        assert_eq!(
            decode(&commit(u16::MAX, 0)),
            Err(DecodeError::TooManyEntries)
        );
        assert_eq!(
            decode(&commit(at_procs, COMMIT_MEMBER_LEN)),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(&commit(
                at_procs,
                COMMIT_MEMBER_LEN * usize::from(at_procs) - 1
            )),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(&commit(at_procs, COMMIT_MEMBER_LEN * usize::from(at_procs))),
            Err(DecodeError::BadField)
        );
    }
}
