//! Ring behaviour on a perfect network.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{fast_config, Net};
use totem::{ConfigKind, Event, Guarantee, Instant};

#[test]
fn three_processors_form_one_ring() {
    let mut net = Net::new(&[1, 2, 3], &fast_config());
    net.run_until(|n| n.all_operational_with(3), Duration::from_secs(5));
    let ring = net.procs[&1].ring_id();
    assert_eq!(ring.rep, 1);
    for p in net.procs.values() {
        assert_eq!(p.ring_id(), ring);
        assert_eq!(p.members(), &[1, 2, 3]);
    }
    // Every processor saw a regular configuration with all three as its last.
    for id in [1, 2, 3] {
        let last = net.events[&id]
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::ConfigChange(c) => Some(c.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(last.kind, ConfigKind::Regular);
        assert_eq!(last.members, vec![1, 2, 3]);
        assert_eq!(last.ring_id, ring);
    }
}

#[test]
fn all_processors_deliver_the_same_total_order_including_their_own() {
    let mut net = Net::new(&[1, 2, 3], &fast_config());
    net.run_until(|n| n.all_operational_with(3), Duration::from_secs(5));
    let mut sent = 0;
    for round in 0..50u32 {
        for id in [1u32, 2, 3] {
            let data = Bytes::from(format!("{id}:{round}").into_bytes());
            let g = if round % 7 == 0 {
                Guarantee::Safe
            } else {
                Guarantee::Agreed
            };
            let now = net.now;
            net.procs
                .get_mut(&id)
                .unwrap()
                .submit(now, data, g)
                .unwrap();
            net.pump(id);
            sent += 1;
        }
        net.run_for(Duration::from_millis(1));
    }
    net.run_until(
        |n| [1, 2, 3].iter().all(|&id| n.deliveries(id).len() == sent),
        Duration::from_secs(5),
    );
    let order = net.deliveries(1);
    assert_eq!(net.deliveries(2), order);
    assert_eq!(net.deliveries(3), order);
    // Per-sender FIFO.
    for id in [1u32, 2, 3] {
        let mine: Vec<u64> = order.iter().filter(|d| d.0 == id).map(|d| d.1).collect();
        assert_eq!(mine, (0..50).collect::<Vec<_>>());
    }
}

#[test]
fn large_message_is_fragmented_and_reassembled() {
    let mut net = Net::new(&[1, 2], &fast_config());
    net.run_until(|n| n.all_operational_with(2), Duration::from_secs(5));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let now = net.now;
    net.procs
        .get_mut(&2)
        .unwrap()
        .submit(now, Bytes::from(big.clone()), Guarantee::Agreed)
        .unwrap();
    net.pump(2);
    net.run_until(
        |n| n.deliveries(1).len() == 1 && n.deliveries(2).len() == 1,
        Duration::from_secs(10),
    );
    assert_eq!(net.deliveries(1)[0].2, big);
    assert_eq!(net.deliveries(2)[0].2, big);
}

#[test]
fn too_large_message_is_refused_with_the_limit() {
    let net = Net::new(&[1], &fast_config());
    let mut p = net.procs.into_values().next().unwrap();
    let err = p
        .submit(
            Instant::ZERO,
            Bytes::from(vec![0u8; (1 << 20) + 1]),
            Guarantee::Agreed,
        )
        .unwrap_err();
    assert!(err.to_string().contains("1048576"), "{err}");
}

#[test]
fn token_loss_of_a_crashed_member_forms_a_new_ring() {
    let mut net = Net::new(&[1, 2, 3], &fast_config());
    net.run_until(|n| n.all_operational_with(3), Duration::from_secs(5));
    net.procs.remove(&3);
    net.run_until(
        |n| n.all_operational_with(2) && n.procs.values().all(|p| p.members() == [1, 2]),
        Duration::from_secs(10),
    );
    // The transitional configuration before the new regular one lists 3 as left.
    let trans = net.events[&1]
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::ConfigChange(c) if c.kind == ConfigKind::Transitional => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(trans.members, vec![1, 2]);
    assert_eq!(trans.left, vec![3]);
}

#[test]
fn idle_ring_holds_the_token() {
    let mut net = Net::new(&[1, 2, 3], &fast_config());
    net.run_until(|n| n.all_operational_with(3), Duration::from_secs(5));
    let before = net.procs[&2].stats().packets_in.total();
    net.run_for(Duration::from_secs(2));
    let after = net.procs[&2].stats().packets_in.total();
    // Without hold the token would make thousands of rotations in 2 s at 100 µs per hop.
    let hold = fast_config().timeouts(3).hold;
    let bound = 2 * (2000 / hold.as_millis() as u64 + 40);
    assert!(
        after - before < bound,
        "{} packets in 2 s on an idle ring",
        after - before
    );
}

#[test]
fn safe_message_waits_for_a_member_that_lacks_it() {
    let mut net = Net::new(&[1, 2, 3], &fast_config());
    net.run_until(|n| n.all_operational_with(3), Duration::from_secs(5));
    net.deaf.push(3);
    let now = net.now;
    net.procs
        .get_mut(&1)
        .unwrap()
        .submit(now, Bytes::from_static(b"safe"), Guarantee::Safe)
        .unwrap();
    net.pump(1);
    // Node 3 hears nothing, so no one may deliver the safe message until 3 is excluded.
    net.run_for(Duration::from_millis(100));
    assert!(net.deliveries(1).is_empty());
    assert!(net.deliveries(2).is_empty());
    net.deaf.clear();
    net.run_until(
        |n| [1, 2, 3].iter().all(|&id| n.deliveries(id).len() == 1),
        Duration::from_secs(10),
    );
}

#[test]
fn message_from_any_member_is_delivered_after_an_idle_period() {
    let mut net = Net::new(&[1, 2, 3], &fast_config());
    net.run_until(|n| n.all_operational_with(3), Duration::from_secs(5));
    for sender in [3u32, 2, 1] {
        net.run_for(Duration::from_secs(2));
        let now = net.now;
        let no = net
            .procs
            .get_mut(&sender)
            .unwrap()
            .submit(now, Bytes::from_static(b"wake up"), Guarantee::Agreed)
            .unwrap();
        net.pump(sender);
        let t0 = net.now;
        let got = |n: &Net, id: u32| {
            n.events[&id]
                .iter()
                .any(|e| matches!(e, Event::Deliver(d) if d.sender == sender && d.msg_no == no))
        };
        net.run_until(
            |n| [1, 2, 3].iter().all(|&id| got(n, id)),
            Duration::from_secs(5),
        );
        // The hold is cancelled: delivery takes far less than a hold period.
        let hold = fast_config().timeouts(3).hold;
        assert!(net.now - t0 < hold, "took {:?}", net.now - t0);
    }
}

#[test]
fn sequence_numbers_cross_the_32_bit_boundary() {
    let start = (1u64 << 32) - 40;
    let cfg = totem::Config {
        initial_seq: start,
        ..fast_config()
    };
    let mut net = Net::new(&[1, 2, 3], &cfg);
    net.run_until(|n| n.all_operational_with(3), Duration::from_secs(5));
    let mut sent = 0;
    for round in 0..100u32 {
        for id in [1u32, 2, 3] {
            // Large enough that every message takes its own packet, so seqs advance per message.
            let data = Bytes::from(vec![round as u8; 1200]);
            let now = net.now;
            net.procs
                .get_mut(&id)
                .unwrap()
                .submit(now, data, Guarantee::Agreed)
                .unwrap();
            net.pump(id);
            sent += 1;
        }
        net.run_for(Duration::from_millis(1));
    }
    net.run_until(
        |n| [1, 2, 3].iter().all(|&id| n.deliveries(id).len() == sent),
        Duration::from_secs(10),
    );
    let order = net.deliveries(1);
    assert_eq!(net.deliveries(2), order);
    assert_eq!(net.deliveries(3), order);
    let seqs: Vec<u64> = net.events[&1]
        .iter()
        .filter_map(|e| match e {
            Event::Deliver(d) => Some(d.seq),
            _ => None,
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs not increasing");
    assert!(*seqs.first().unwrap() < 1 << 32 && *seqs.last().unwrap() > 1 << 32);
}

#[test]
fn every_member_measures_the_token_rotation() {
    let mut net = Net::new(&[1, 2, 3], &fast_config());
    net.run_until(|n| n.all_operational_with(3), Duration::from_secs(5));
    let before: Vec<u64> = [1, 2, 3]
        .iter()
        .map(|id| net.procs[id].stats().token_rotations)
        .collect();
    net.run_for(Duration::from_millis(300));
    for (i, id) in [1u32, 2, 3].iter().enumerate() {
        let s = net.procs[id].stats();
        assert!(s.token_rotations > before[i], "{id}: rotations not counted");
        // A rotation crosses three links of the test network at least.
        assert!(
            s.last_rotation >= common::LATENCY * 3,
            "{id}: {:?}",
            s.last_rotation
        );
        assert!(
            s.mean_rotation >= common::LATENCY * 3,
            "{id}: {:?}",
            s.mean_rotation
        );
    }
}
