//! A processor whose driver lost its persisted ring sequence number (`Start::ring_seq` 0)
//! must not re-create a ring id an earlier incarnation of the same node created.

mod common;

use std::time::Duration;

use common::{fast_config, Net};
use totem::{NodeId, Processor, RingId, Start};

/// Starts `ids` with the given starts and runs until they are operational in one ring of all
/// of them; returns the ring id of `ids[0]`.
fn form(ids: &[NodeId], starts: &[Start]) -> RingId {
    let mut net = Net::new(&[], &fast_config());
    for (&id, &start) in ids.iter().zip(starts) {
        let p = Processor::new(fast_config(), id, start, net.now).unwrap();
        net.procs.insert(id, p);
        net.events.insert(id, Vec::new());
        net.pump(id);
    }
    let n = ids.len();
    net.run_until(|net| net.all_operational_with(n), Duration::from_secs(5));
    net.procs[&ids[0]].ring_id()
}

fn fresh(seed: u64) -> Start {
    Start {
        ring_seq: 0,
        first_msg_no: 0,
        seed,
    }
}

#[test]
fn incarnations_alone_without_a_persisted_ring_seq_create_different_ring_ids() {
    // Each seed is one incarnation of node 1 that knows nothing of its past.
    let rings: Vec<RingId> = (0..20).map(|seed| form(&[1], &[fresh(seed)])).collect();
    for (i, a) in rings.iter().enumerate() {
        assert_eq!(a.rep, 1);
        for b in &rings[i + 1..] {
            assert_ne!(a, b, "two incarnations of n1 created the same ring id");
        }
    }
}

#[test]
fn incarnations_joining_the_same_survivor_create_different_ring_ids() {
    // Node 2 keeps its persisted value (1000); node 1 restarts twice with nothing persisted
    // and forms a ring with node 2 each time, from the same high-water mark.
    let survivor = Start {
        ring_seq: 1_000,
        first_msg_no: 0,
        seed: 99,
    };
    let a = form(&[1, 2], &[fresh(1), survivor]);
    let b = form(&[1, 2], &[fresh(2), survivor]);
    assert!(a.seq > 1_000 && b.seq > 1_000, "{a} {b}");
    assert_ne!(a, b);
}

#[test]
fn a_persisted_ring_seq_keeps_the_plain_step() {
    let start = Start {
        ring_seq: 1_000,
        first_msg_no: 0,
        seed: 5,
    };
    assert_eq!(form(&[1], &[start]), RingId::new(1, 1_004));
}

#[test]
fn a_processor_that_knows_no_ring_seq_persists_none() {
    // What it learns from others bounds only the rings they saw, not the ones an incarnation
    // before the loss formed alone: handing that back as a bound would let the next
    // incarnation step by 4 into one of them.
    let mut net = Net::new(&[], &fast_config());
    let survivor = Start {
        ring_seq: 1_000,
        first_msg_no: 0,
        seed: 99,
    };
    for (id, start) in [(1, fresh(7)), (2, survivor)] {
        let p = Processor::new(fast_config(), id, start, net.now).unwrap();
        net.procs.insert(id, p);
        net.events.insert(id, Vec::new());
        net.pump(id);
    }
    net.run_until(|net| net.all_operational_with(2), Duration::from_secs(5));
    assert!(net.procs[&1].ring_seq_high_water() > 1_000);
    assert_eq!(net.procs[&1].ring_seq_to_persist(), 0);
    assert_eq!(
        net.procs[&2].ring_seq_to_persist(),
        net.procs[&2].ring_seq_high_water()
    );
}
