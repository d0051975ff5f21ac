//! Random and mutated bytes fed to the decoder and to a running processor: nothing panics,
//! every packet is accounted for (rejected by reason, or decoded and counted by type), and the
//! ring keeps delivering afterwards.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{fast_config, Net};
use proptest::prelude::*;
use totem::{Event, Guarantee};

/// Valid packets captured from a live ring: the seeds of the mutations.
fn captured_packets(net: &mut Net) -> Vec<Bytes> {
    let mut out = Vec::new();
    for i in 0..40u32 {
        let now = net.now;
        net.procs
            .get_mut(&1)
            .unwrap()
            .submit(
                now,
                Bytes::from(vec![i as u8; (i as usize) * 37]),
                Guarantee::Agreed,
            )
            .unwrap();
        net.pump(1);
        for _ in 0..20 {
            if let Some((_, _, data)) = net.wire.front() {
                out.push(data.clone());
            }
            net.step();
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Delete(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

fn apply(data: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut v = data.to_vec();
    for m in muts {
        let n = v.len().max(1);
        match *m {
            Mutation::Flip(i, b) if !v.is_empty() => v[i % n] ^= b,
            Mutation::Set(i, b) if !v.is_empty() => v[i % n] = b,
            Mutation::Truncate(i) => v.truncate(i % (v.len() + 1)),
            Mutation::Insert(i, b) => v.insert(i % (v.len() + 1), b),
            Mutation::Delete(i) if !v.is_empty() => {
                v.remove(i % n);
            }
            _ => {}
        }
    }
    v
}

proptest! {
    // A fixed seed keeps CI deterministic; new cases found while developing are kept in
    // hostile_input.proptest-regressions and replayed first on every run.
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7073_5eed),
        ..ProptestConfig::default()
    })]

    #[test]
    fn running_processor_survives_and_counts_hostile_packets(
        randoms in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..40),
        mutations in prop::collection::vec((any::<usize>(), prop::collection::vec(mutation(), 1..6)), 0..60),
    ) {
        let mut net = Net::new(&[1, 2, 3], &fast_config());
        net.run_until(|n| n.all_operational_with(3), Duration::from_secs(5));
        let seeds = captured_packets(&mut net);
        let victim = 2;
        let before = net.procs[&victim].stats();
        let mut fed = 0u64;
        let feed = |net: &mut Net, bytes: Vec<u8>| {
            let now = net.now;
            net.procs.get_mut(&victim).unwrap().handle_packet(now, Bytes::from(bytes));
            net.pump(victim);
            net.step();
        };
        for r in randoms {
            feed(&mut net, r);
            fed += 1;
        }
        for (pick, muts) in mutations {
            let base = &seeds[pick % seeds.len()];
            feed(&mut net, apply(base, &muts));
            fed += 1;
        }
        let after = net.procs[&victim].stats();
        // Every injected packet is either rejected (by reason) or decoded (by type); the ring's
        // own traffic adds decoded packets, so the injected ones are a lower bound we can check
        // exactly on the rejected side and as an inequality overall.
        let rejected = after.rejected_total() - before.rejected_total();
        let decoded = after.packets_in.total() - before.packets_in.total();
        prop_assert!(rejected + decoded >= fed);
        prop_assert!(rejected <= fed);

        // The ring still works. A forged-looking token can make a member fail to receive and
        // leave (extended virtual synchrony then delivers around it), so let membership settle
        // first: fail_recv_const visits plus a merge take well under 5 s here.
        net.run_for(Duration::from_secs(5));
        net.run_until(|n| n.all_operational_with(3), Duration::from_secs(30));
        let now = net.now;
        let no = net.procs.get_mut(&3).unwrap().submit(now, Bytes::from_static(b"after"), Guarantee::Agreed).unwrap();
        net.pump(3);
        let got = |net: &Net, id| net.events[&id].iter().any(|e| matches!(e, Event::Deliver(d) if d.sender == 3 && d.msg_no == no));
        net.run_until(|n| [1, 2, 3].iter().all(|&id| got(n, id)), Duration::from_secs(30));
    }

    #[test]
    fn decoder_rejections_are_counted_exactly(
        randoms in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..100),
    ) {
        // A lone processor: no other traffic, so counts must match exactly.
        let net = Net::new(&[7], &fast_config());
        let mut p = net.procs.into_values().next().unwrap();
        let before = p.stats();
        let mut expect_rejected = 0u64;
        let n = randoms.len() as u64;
        for r in randoms {
            let b = Bytes::from(r);
            if totem::wire::decode(&b).is_err() {
                expect_rejected += 1;
            }
            p.handle_packet(totem::Instant::from_millis(1), b);
            while p.poll_transmit().is_some() {}
            while p.poll_event().is_some() {}
        }
        let after = p.stats();
        prop_assert_eq!(after.rejected_total() - before.rejected_total(), expect_rejected);
        prop_assert_eq!(after.packets_in.total() - before.packets_in.total(), n - expect_rejected);
    }
}
