//! Property tests of the packing layer: whatever the messages and budget, the receiver gets
//! exactly what was sent, and no input makes it panic.

mod pack {
    use bytes::Bytes;
    use proptest::prelude::*;
    use totem::pack::{Packer, Reassembler, UnpackError, Unpacked};
    use totem::Guarantee;

    const MAX: usize = 100_000;

    /// Message contents derived from the message number, so a mix-up between messages shows.
    fn body(len: usize, msg_no: u64) -> Bytes {
        let seed = msg_no.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (0..len)
            .map(|i| (seed >> ((i % 8) * 8)) as u8 ^ (i as u8))
            .collect::<Vec<u8>>()
            .into()
    }

    fn guarantee() -> impl Strategy<Value = Guarantee> {
        prop_oneof![Just(Guarantee::Agreed), Just(Guarantee::Safe)]
    }

    fn size() -> impl Strategy<Value = usize> {
        prop_oneof![12 => 0..=5000usize, 1 => 5001..=MAX]
    }

    fn read_varint(p: &[u8], pos: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = p[*pos];
            *pos += 1;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }

    /// Flags, first_msg_no and piece lengths, read independently of the crate.
    fn header(p: &[u8]) -> (u8, u64, Vec<usize>) {
        let mut pos = 1;
        let count = read_varint(p, &mut pos);
        let first = u64::from_le_bytes(p[pos..pos + 8].try_into().unwrap());
        pos += 8;
        let lens = (0..count)
            .map(|_| read_varint(p, &mut pos) as usize)
            .collect();
        (p[0], first, lens)
    }

    /// Pushes every message (numbering from `first`) and drains the packer.
    fn pack_all(msgs: &[(usize, Guarantee)], first: u64, budget: usize) -> Vec<(Guarantee, Bytes)> {
        let mut p = Packer::new(MAX, usize::MAX, first);
        for (i, &(len, g)) in msgs.iter().enumerate() {
            let no = first + i as u64;
            assert_eq!(p.push(body(len, no), g), Ok(no));
        }
        let out: Vec<_> = std::iter::from_fn(|| p.next_payload(budget)).collect();
        assert!(p.is_empty());
        assert_eq!(p.queued_bytes(), 0);
        out
    }

    fn expected(msgs: &[(usize, Guarantee)], first: u64) -> Vec<Unpacked> {
        msgs.iter()
            .enumerate()
            .map(|(i, &(len, _))| {
                let msg_no = first + i as u64;
                Unpacked {
                    msg_no,
                    data: body(len, msg_no),
                }
            })
            .collect()
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(usize, Guarantee),
        Pull(usize),
        Restart,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn round_trip(
            msgs in prop::collection::vec((size(), guarantee()), 0..40),
            budget in 64..=2000usize,
            first in 0..1000u64,
        ) {
            let payloads = pack_all(&msgs, first, budget);
            let mut r = Reassembler::new(MAX);
            let mut out = Vec::new();
            for (g, payload) in &payloads {
                prop_assert!(payload.len() <= budget);
                let (flags, first_no, lens) = header(payload);
                for i in 0..lens.len() as u64 {
                    prop_assert_eq!(msgs[(first_no + i - first) as usize].1, *g);
                }
                // A fragment behind other messages is never tiny.
                if lens.len() > 1 && flags & 2 != 0 {
                    prop_assert!(*lens.last().unwrap() >= 60, "{:?}", lens);
                }
                prop_assert_eq!(r.unpack(7, payload, &mut out), Ok(()));
            }
            prop_assert_eq!(out, expected(&msgs, first));
            prop_assert_eq!(r.pending(), 0);
        }

        /// Pushes, pulls with varying budgets and configuration changes in any order: every
        /// accepted message is delivered exactly once, in order.
        #[test]
        fn interleaved_with_restarts(
            ops in prop::collection::vec(
                prop_oneof![
                    4 => (size(), guarantee()).prop_map(|(s, g)| Op::Push(s, g)),
                    6 => (32..=2000usize).prop_map(Op::Pull),
                    1 => Just(Op::Restart),
                ],
                0..120,
            ),
            capacity in 0..300_000usize,
        ) {
            let mut p = Packer::new(MAX, capacity, 0);
            let mut r = Reassembler::new(MAX);
            let mut accepted = Vec::new();
            let mut out = Vec::new();
            for op in ops {
                match op {
                    Op::Push(len, g) => {
                        let before = p.queued_bytes();
                        let no = accepted.len() as u64;
                        match p.push(body(len, no), g) {
                            Ok(n) => {
                                prop_assert_eq!(n, no);
                                accepted.push(Unpacked { msg_no: no, data: body(len, no) });
                            }
                            Err(e) => {
                                prop_assert_eq!(e, totem::SubmitError::Full);
                                prop_assert!(!p.is_empty() && before + len > capacity);
                            }
                        }
                    }
                    Op::Pull(budget) => {
                        if let Some((_, payload)) = p.next_payload(budget) {
                            prop_assert!(payload.len() <= budget);
                            prop_assert_eq!(r.unpack(1, &payload, &mut out), Ok(()));
                        } else {
                            prop_assert!(p.is_empty());
                        }
                    }
                    Op::Restart => {
                        p.restart_partial();
                        r.reset();
                        let undelivered: usize =
                            accepted[out.len()..].iter().map(|m| m.data.len()).sum();
                        prop_assert_eq!(p.queued_bytes(), undelivered);
                        prop_assert_eq!(p.queued_messages(), accepted.len() - out.len());
                    }
                }
            }
            while let Some((_, payload)) = p.next_payload(1300) {
                prop_assert_eq!(r.unpack(1, &payload, &mut out), Ok(()));
            }
            prop_assert_eq!(out, accepted);
            prop_assert_eq!((p.queued_bytes(), p.queued_messages()), (0, 0));
        }

        /// Each sender's payloads arrive in order, but the two streams interleave arbitrarily.
        #[test]
        fn two_senders_interleaved(
            a in prop::collection::vec((size(), guarantee()), 0..12),
            b in prop::collection::vec((size(), guarantee()), 0..12),
            budget in 64..=2000usize,
            order in prop::collection::vec(any::<bool>(), 0..400),
        ) {
            let pa = pack_all(&a, 0, budget);
            let pb = pack_all(&b, 1_000_000, budget);
            let (mut ia, mut ib) = (pa.iter().peekable(), pb.iter().peekable());
            let mut order = order.into_iter();
            let mut r = Reassembler::new(MAX);
            let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
            loop {
                let want_a = order.next().unwrap_or(true);
                if (want_a || ib.peek().is_none()) && ia.peek().is_some() {
                    let (_, payload) = ia.next().unwrap();
                    prop_assert_eq!(r.unpack(1, payload, &mut out_a), Ok(()));
                } else if let Some((_, payload)) = ib.next() {
                    prop_assert_eq!(r.unpack(2, payload, &mut out_b), Ok(()));
                } else {
                    break;
                }
            }
            prop_assert_eq!(out_a, expected(&a, 0));
            prop_assert_eq!(out_b, expected(&b, 1_000_000));
            prop_assert_eq!(r.pending(), 0);
        }

        #[test]
        fn unpack_random_bytes_never_panics(
            prefix in prop::collection::vec(any::<u8>(), 0..200),
            data in prop::collection::vec(any::<u8>(), 0..300),
            max in 0..500usize,
        ) {
            let mut r = Reassembler::new(max);
            let mut out = Vec::new();
            let _ = r.unpack(3, &Bytes::from(prefix), &mut out);
            // Leave a partial pending (msg 0, 3 bytes) so the continuation paths are reachable.
            let mut fragment = vec![2u8, 1];
            fragment.extend_from_slice(&0u64.to_le_bytes());
            fragment.extend_from_slice(&[3, 1, 2, 3]);
            let _ = r.unpack(3, &Bytes::from(fragment), &mut out);
            out.clear();
            let payload = Bytes::from(data);
            match r.unpack(3, &payload, &mut out) {
                Err(UnpackError::Malformed) => prop_assert!(out.is_empty()),
                _ => {
                    let delivered: usize = out.iter().map(|m| m.data.len()).sum();
                    prop_assert!(delivered <= payload.len() + 3);
                    prop_assert!(out.iter().all(|m| m.data.len() <= max));
                }
            }
        }

        #[test]
        fn unpack_mutated_payloads_never_panics(
            msgs in prop::collection::vec((0..3000usize, guarantee()), 1..12),
            budget in 64..=1500usize,
            mutations in prop::collection::vec(
                (any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0..4u8, any::<u8>()),
                1..8,
            ),
        ) {
            let mut payloads: Vec<Vec<u8>> =
                pack_all(&msgs, 0, budget).into_iter().map(|(_, b)| b.to_vec()).collect();
            for (which, at, kind, byte) in mutations {
                let target = which.index(payloads.len());
                let p = &mut payloads[target];
                match kind {
                    0 if !p.is_empty() => {
                        let i = at.index(p.len());
                        p[i] ^= byte | 1;
                    }
                    1 => p.truncate(at.index(p.len() + 1)),
                    2 => p.push(byte),
                    _ if !p.is_empty() => {
                        let i = at.index(p.len());
                        p[i] = byte;
                    }
                    _ => {}
                }
            }
            let mut r = Reassembler::new(3000);
            for p in payloads {
                let mut out = Vec::new();
                if r.unpack(5, &Bytes::from(p), &mut out) == Err(UnpackError::Malformed) {
                    prop_assert!(out.is_empty());
                }
                prop_assert!(out.iter().all(|m| m.data.len() <= 3000));
            }
        }
    }
}
