//! Every item of the EVS checklist (totem-reference.md §4.6) broken on purpose: each test feeds
//! the oracle a doctored event trace that violates one property and asserts the oracle names that
//! property; the `*_passes` tests feed the matching correct traces.

use std::collections::HashMap;

use bytes::Bytes;
use totem::{ConfigChange, ConfigKind, Delivery, Event, Guarantee, Instant, NodeId, RingId};
use totem_sim::oracle::{MsgId, Oracle, ProcId, Property, Violation};

const A: RingId = RingId::new(1, 4);
const B: RingId = RingId::new(1, 8);
const C: RingId = RingId::new(3, 8);
const D: RingId = RingId::new(1, 12);
const E: RingId = RingId::new(1, 16);
const F: RingId = RingId::new(1, 20);
const G: RingId = RingId::new(2, 16);

const AGREED: Guarantee = Guarantee::Agreed;
const SAFE: Guarantee = Guarantee::Safe;

fn p(node: NodeId) -> ProcId {
    ProcId {
        node,
        incarnation: 0,
    }
}

fn payload(sender: NodeId, msg_no: u64) -> Bytes {
    Bytes::from(format!("payload of m{sender}:{msg_no}"))
}

/// A scripted run: a virtual clock that ticks once per call, and shorthands for events.
struct Run {
    oracle: Oracle,
    clock: u64,
    guarantees: HashMap<MsgId, Guarantee>,
}

impl Run {
    fn new(nodes: &[NodeId]) -> Self {
        let mut run = Run {
            oracle: Oracle::new(),
            clock: 0,
            guarantees: HashMap::new(),
        };
        for &n in nodes {
            run.start(p(n));
        }
        run
    }

    fn now(&mut self) -> Instant {
        self.clock += 1;
        Instant::from_millis(self.clock)
    }

    fn start(&mut self, who: ProcId) {
        let now = self.now();
        self.oracle.started(who, now);
    }

    fn crash(&mut self, who: ProcId) {
        let now = self.now();
        self.oracle.crashed(who, now);
    }

    fn submit_as(&mut self, who: ProcId, msg_no: u64, g: Guarantee) {
        let now = self.now();
        let id = MsgId {
            sender: who.node,
            msg_no,
        };
        self.guarantees.insert(id, g);
        self.oracle
            .submitted(who, now, id, g, &payload(who.node, msg_no));
    }

    fn submit(&mut self, node: NodeId, msg_no: u64, g: Guarantee) {
        self.submit_as(p(node), msg_no, g);
    }

    /// `sender` multicasts ring `ring`'s seq `seq`, completing messages `msg_nos`.
    fn mcast(&mut self, ring: RingId, seq: u64, sender: NodeId, msg_nos: &[u64]) {
        let now = self.now();
        self.oracle.multicast(now, ring, seq, sender, msg_nos);
    }

    fn event(&mut self, who: ProcId, ev: Event) -> Result<(), Violation> {
        let now = self.now();
        self.oracle.observe(who, now, &ev)
    }

    fn config(
        &mut self,
        who: ProcId,
        kind: ConfigKind,
        ring_id: RingId,
        members: &[NodeId],
        left: &[NodeId],
        joined: &[NodeId],
    ) -> Result<(), Violation> {
        self.event(
            who,
            Event::ConfigChange(ConfigChange {
                kind,
                ring_id,
                members: members.to_vec(),
                left: left.to_vec(),
                joined: joined.to_vec(),
            }),
        )
    }

    fn reg(
        &mut self,
        who: ProcId,
        ring: RingId,
        members: &[NodeId],
        joined: &[NodeId],
    ) -> Result<(), Violation> {
        self.config(who, ConfigKind::Regular, ring, members, &[], joined)
    }

    fn trans(
        &mut self,
        who: ProcId,
        next: RingId,
        members: &[NodeId],
        left: &[NodeId],
    ) -> Result<(), Violation> {
        self.config(who, ConfigKind::Transitional, next, members, left, &[])
    }

    /// `who` delivers m<sender>:<msg_no>, ordered on `ring` at `seq`, intact.
    fn dlv(
        &mut self,
        who: ProcId,
        sender: NodeId,
        msg_no: u64,
        ring: RingId,
        seq: u64,
    ) -> Result<(), Violation> {
        let id = MsgId { sender, msg_no };
        let guarantee = self.guarantees.get(&id).copied().unwrap_or_default();
        self.event(
            who,
            Event::Deliver(Delivery {
                sender,
                msg_no,
                ring_id: ring,
                seq,
                index: 0,
                guarantee,
                data: payload(sender, msg_no),
            }),
        )
    }

    /// Every process in `whos` delivers the same message.
    fn dlv_all(
        &mut self,
        whos: &[ProcId],
        sender: NodeId,
        msg_no: u64,
        ring: RingId,
        seq: u64,
    ) -> Result<(), Violation> {
        for &who in whos {
            self.dlv(who, sender, msg_no, ring, seq)?;
        }
        Ok(())
    }

    /// Every node of `members` installs `ring` as its first configuration.
    fn form(&mut self, ring: RingId, members: &[NodeId]) {
        for &n in members {
            self.reg(p(n), ring, members, members).unwrap();
        }
    }

    fn finish(&mut self) -> Result<(), Violation> {
        let now = self.now();
        self.oracle.finish(now)
    }

    fn converged(&mut self, live: &[ProcId]) -> Result<RingId, Violation> {
        let now = self.now();
        self.oracle.check_converged(now, live)
    }
}

#[track_caller]
fn caught<T: std::fmt::Debug>(result: Result<T, Violation>, property: Property) {
    match result {
        Err(v) => {
            assert_eq!(v.property, property, "wrong property: {v}");
            assert!(!v.detail.is_empty());
            println!("caught as expected: {v}");
        }
        Ok(x) => panic!("expected a {property:?} violation, got Ok({x:?})"),
    }
}

// ------------------------------------------------------------------------ clean traces

/// Three nodes; a partition cuts node 3 off while messages are in flight (node 1 and 2 deliver
/// past a gap in their transitional configuration); the partitions merge; node 2 crashes and
/// restarts; everyone converges.
#[test]
fn clean_partition_merge_crash_restart_trace_passes() {
    let mut run = Run::new(&[1, 2, 3]);
    let all = [p(1), p(2), p(3)];
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, AGREED);
    run.submit(2, 1, AGREED);
    run.submit(3, 1, AGREED);
    run.submit(1, 2, AGREED);
    run.submit(1, 3, AGREED);
    run.submit(3, 2, AGREED);
    run.submit(2, 2, AGREED);
    run.dlv_all(&all, 1, 1, A, 1).unwrap();
    run.dlv_all(&all, 2, 1, A, 2).unwrap();
    run.dlv_all(&all, 3, 1, A, 3).unwrap();
    // m1:2 and m1:3 were packed into one multicast.
    for who in all {
        run.dlv(who, 1, 2, A, 4).unwrap();
        run.dlv(who, 1, 3, A, 4).unwrap();
    }

    // Partition {1,2} | {3}: seq 5 (from 3) reached only 3, seq 6 (from 2) only 1 and 2.
    run.trans(p(1), B, &[1, 2], &[3]).unwrap();
    run.dlv(p(1), 2, 2, A, 6).unwrap(); // past the gap: sender 3 is not in the transitional conf
    run.dlv(p(3), 3, 2, A, 5).unwrap(); // node 3 has no gap up to 5: regular configuration
    run.trans(p(3), C, &[3], &[1, 2]).unwrap();
    run.reg(p(3), C, &[3], &[]).unwrap();
    run.trans(p(2), B, &[1, 2], &[3]).unwrap();
    run.dlv(p(2), 2, 2, A, 6).unwrap();
    run.reg(p(1), B, &[1, 2], &[]).unwrap();
    run.reg(p(2), B, &[1, 2], &[]).unwrap();

    run.submit(1, 4, AGREED);
    run.submit(2, 3, SAFE);
    run.submit(3, 3, AGREED);
    run.dlv_all(&[p(1), p(2)], 1, 4, B, 1).unwrap();
    run.dlv_all(&[p(2), p(1)], 2, 3, B, 2).unwrap();
    run.dlv(p(3), 3, 3, C, 1).unwrap();

    // Merge: each side installs its own transitional configuration into ring D.
    run.trans(p(3), D, &[3], &[]).unwrap();
    run.trans(p(1), D, &[1, 2], &[]).unwrap();
    run.reg(p(1), D, &[1, 2, 3], &[3]).unwrap();
    run.reg(p(3), D, &[1, 2, 3], &[1, 2]).unwrap();
    run.trans(p(2), D, &[1, 2], &[]).unwrap();
    run.reg(p(2), D, &[1, 2, 3], &[3]).unwrap();

    run.submit(3, 4, AGREED);
    run.submit(1, 5, AGREED);
    run.submit(2, 4, SAFE);
    run.submit(2, 5, AGREED);
    run.dlv_all(&all, 3, 4, D, 1).unwrap();
    run.dlv_all(&all, 1, 5, D, 2).unwrap();
    run.dlv_all(&[p(3), p(1), p(2)], 2, 4, D, 3).unwrap();
    run.dlv_all(&[p(1), p(3)], 2, 5, D, 4).unwrap();

    // Node 2 crashes before delivering its own m2:5 (exempt: it failed) and restarts.
    run.crash(p(2));
    run.trans(p(1), E, &[1, 3], &[2]).unwrap();
    run.trans(p(3), E, &[1, 3], &[2]).unwrap();
    run.reg(p(3), E, &[1, 3], &[]).unwrap();
    run.reg(p(1), E, &[1, 3], &[]).unwrap();
    let p2b = ProcId {
        node: 2,
        incarnation: 1,
    };
    run.start(p2b);
    run.reg(p2b, G, &[2], &[2]).unwrap();
    run.submit(1, 6, AGREED);
    run.dlv_all(&[p(1), p(3)], 1, 6, E, 1).unwrap();
    assert!(run.finish().is_ok(), "a cut run must not be blamed");

    run.trans(p(1), F, &[1, 3], &[]).unwrap();
    run.trans(p2b, F, &[2], &[]).unwrap();
    run.reg(p2b, F, &[1, 2, 3], &[1, 3]).unwrap();
    run.trans(p(3), F, &[1, 3], &[]).unwrap();
    run.reg(p(3), F, &[1, 2, 3], &[2]).unwrap();
    run.reg(p(1), F, &[1, 2, 3], &[2]).unwrap();
    run.submit_as(p2b, 100, AGREED);
    run.dlv_all(&[p2b, p(1), p(3)], 2, 100, F, 1).unwrap();

    assert_eq!(run.converged(&[p(1), p2b, p(3)]), Ok(F));
    run.finish().unwrap();
}

/// Several messages packed into one multicast share a seq; all deliver them in packet order.
#[test]
fn clean_packed_multicast_passes() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    for no in 1..=5 {
        run.submit(2, no, AGREED);
    }
    for no in 1..=3 {
        run.dlv(p(1), 2, no, A, 1).unwrap();
    }
    for no in 1..=3 {
        run.dlv(p(2), 2, no, A, 1).unwrap();
    }
    run.dlv_all(&[p(2), p(1)], 2, 4, A, 2).unwrap();
    run.dlv_all(&[p(1), p(2)], 2, 5, A, 2).unwrap();
    assert_eq!(run.converged(&[p(1), p(2)]), Ok(A));
    run.finish().unwrap();
}

// ------------------------------------------------------------------------ C1 - C6

#[test]
fn c1_member_list_without_self_is_caught() {
    let mut run = Run::new(&[1, 2]);
    caught(run.reg(p(1), A, &[2], &[2]), Property::C1SelfInclusion);
}

#[test]
fn c1_transitional_without_self_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    caught(run.trans(p(1), B, &[2], &[1]), Property::C1SelfInclusion);
}

#[test]
fn c2_same_ring_id_different_members_is_caught() {
    let mut run = Run::new(&[1, 2, 3]);
    run.reg(p(1), A, &[1, 2, 3], &[1, 2, 3]).unwrap();
    run.reg(p(2), A, &[1, 2, 3], &[1, 2, 3]).unwrap();
    caught(run.reg(p(3), A, &[1, 3], &[1, 3]), Property::C2UniqueIds);
}

#[test]
fn c2_representative_outside_the_ring_is_caught() {
    let mut run = Run::new(&[2, 3]);
    caught(run.reg(p(2), A, &[2, 3], &[2, 3]), Property::C2UniqueIds);
}

#[test]
fn c3_next_ring_with_lower_seq_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(B, &[1, 2]);
    caught(run.trans(p(1), A, &[1, 2], &[]), Property::C3MonotoneIds);
}

#[test]
fn c3_restart_reusing_an_old_ring_id_is_caught() {
    let mut run = Run::new(&[1]);
    run.form(A, &[1]);
    run.crash(p(1));
    let again = ProcId {
        node: 1,
        incarnation: 1,
    };
    run.start(again);
    caught(run.reg(again, A, &[1], &[1]), Property::C3MonotoneIds);
}

#[test]
fn c2_ring_id_reused_after_a_lost_disk_is_caught() {
    let mut run = Run::new(&[1]);
    run.form(A, &[1]);
    run.crash(p(1));
    run.oracle.lost_disk(1);
    let again = ProcId {
        node: 1,
        incarnation: 1,
    };
    run.start(again);
    // The same members, the same id, a different configuration: not C3 (the node's earlier
    // rings are unknown to it), but a reused ring id.
    caught(run.reg(again, A, &[1], &[1]), Property::C2UniqueIds);
}

#[test]
fn c2_ring_id_reused_with_a_survivor_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(B, &[1, 2]);
    run.crash(p(1));
    run.oracle.lost_disk(1);
    let again = ProcId {
        node: 1,
        incarnation: 1,
    };
    run.start(again);
    caught(run.reg(again, B, &[1, 2], &[1, 2]), Property::C2UniqueIds);
}

#[test]
fn restart_after_a_lost_disk_with_a_fresh_lower_ring_passes() {
    let mut run = Run::new(&[1]);
    run.form(B, &[1]);
    run.crash(p(1));
    run.oracle.lost_disk(1);
    let again = ProcId {
        node: 1,
        incarnation: 1,
    };
    run.start(again);
    run.reg(again, A, &[1], &[1]).unwrap();
    assert_eq!(run.converged(&[again]), Ok(A));
}

#[test]
fn c3_restart_with_higher_ring_passes() {
    let mut run = Run::new(&[1]);
    run.form(A, &[1]);
    run.crash(p(1));
    let again = ProcId {
        node: 1,
        incarnation: 1,
    };
    run.start(again);
    run.reg(again, B, &[1], &[1]).unwrap();
    assert_eq!(run.converged(&[again]), Ok(B));
}

#[test]
fn c4_regular_after_regular_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    caught(run.reg(p(1), B, &[1, 2], &[]), Property::C4Alternation);
}

#[test]
fn c4_transitional_first_is_caught() {
    let mut run = Run::new(&[1]);
    caught(run.trans(p(1), A, &[1], &[]), Property::C4Alternation);
}

#[test]
fn c4_regular_other_than_announced_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.trans(p(1), B, &[1, 2], &[]).unwrap();
    caught(run.reg(p(1), D, &[1, 2], &[]), Property::C4Alternation);
}

#[test]
fn c4_transitional_member_outside_previous_ring_is_caught() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2]);
    run.form(C, &[3]);
    caught(run.trans(p(1), D, &[1, 2, 3], &[]), Property::C4Alternation);
}

#[test]
fn c4_wrong_left_and_joined_lists_are_caught() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    caught(run.trans(p(1), B, &[1, 2], &[]), Property::C4Alternation);
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.trans(p(1), B, &[1, 2], &[3]).unwrap();
    caught(run.reg(p(1), B, &[1, 2], &[2]), Property::C4Alternation);
}

#[test]
fn c5_transitional_keeping_a_member_that_never_installed_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.reg(p(1), A, &[1, 2], &[1, 2]).unwrap();
    // Node 2 never installed A, so it cannot have come from A into B with node 1.
    caught(
        run.trans(p(1), B, &[1, 2], &[]),
        Property::C5AgreementOnInstalls,
    );
}

#[test]
fn c5_member_that_never_installs_is_caught_at_convergence() {
    let mut run = Run::new(&[1, 2]);
    run.reg(p(1), A, &[1, 2], &[1, 2]).unwrap();
    run.reg(p(2), G, &[2], &[2]).unwrap();
    // The run may have been cut while node 2 was about to install A: finish gives it the
    // benefit of the doubt, convergence does not.
    run.finish().unwrap();
    caught(
        run.converged(&[p(1), p(2)]),
        Property::C5AgreementOnInstalls,
    );
}

#[test]
fn c5_member_that_fails_before_installing_passes() {
    let mut run = Run::new(&[1, 2]);
    run.reg(p(1), A, &[1, 2], &[1, 2]).unwrap();
    run.crash(p(2));
    run.finish().unwrap();
    run.trans(p(1), B, &[1], &[2]).unwrap();
    run.reg(p(1), B, &[1], &[]).unwrap();
    assert_eq!(run.converged(&[p(1)]), Ok(B));
}

#[test]
fn c6_different_transitional_between_same_rings_is_caught() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.trans(p(1), D, &[1, 2, 3], &[]).unwrap();
    caught(
        run.trans(p(2), D, &[1, 2], &[3]),
        Property::C6TransitionalConsistency,
    );
}

#[test]
fn c6_merge_with_one_transitional_per_side_passes() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2]);
    run.form(C, &[3]);
    run.trans(p(1), D, &[1, 2], &[]).unwrap();
    run.trans(p(3), D, &[3], &[]).unwrap();
    run.trans(p(2), D, &[1, 2], &[]).unwrap();
    for n in [1, 2, 3] {
        let joined: Vec<NodeId> = if n == 3 { vec![1, 2] } else { vec![3] };
        run.reg(p(n), D, &[1, 2, 3], &joined).unwrap();
    }
    assert_eq!(run.converged(&[p(1), p(2), p(3)]), Ok(D));
}

// ------------------------------------------------------------------------ D1 - D9

#[test]
fn d1_never_submitted_message_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    caught(run.dlv(p(1), 2, 7, A, 1), Property::D1Integrity);
}

#[test]
fn d1_corrupted_payload_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(2, 1, AGREED);
    run.dlv(p(2), 2, 1, A, 1).unwrap();
    let ev = Event::Deliver(Delivery {
        sender: 2,
        msg_no: 1,
        ring_id: A,
        seq: 1,
        index: 0,
        guarantee: AGREED,
        data: Bytes::from_static(b"payload of m2:2"),
    });
    caught(run.event(p(1), ev), Property::D1Integrity);
}

#[test]
fn d1_changed_guarantee_is_caught() {
    let mut run = Run::new(&[1]);
    run.form(A, &[1]);
    run.submit(1, 1, SAFE);
    let ev = Event::Deliver(Delivery {
        sender: 1,
        msg_no: 1,
        ring_id: A,
        seq: 1,
        index: 0,
        guarantee: AGREED,
        data: payload(1, 1),
    });
    caught(run.event(p(1), ev), Property::D1Integrity);
}

#[test]
fn d1_duplicate_delivery_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(2, 1, AGREED);
    run.dlv(p(1), 2, 1, A, 1).unwrap();
    caught(run.dlv(p(1), 2, 1, A, 1), Property::D1Integrity);
}

#[test]
fn d1_reused_message_id_is_caught() {
    let mut run = Run::new(&[1]);
    run.form(A, &[1]);
    run.submit(1, 1, AGREED);
    run.submit(1, 1, AGREED);
    caught(run.dlv(p(1), 1, 1, A, 1), Property::D1Integrity);
    caught(run.finish(), Property::D1Integrity);
}

#[test]
fn d2_delivery_in_a_later_regular_configuration_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(2, 1, AGREED);
    run.trans(p(1), B, &[1, 2], &[]).unwrap();
    run.reg(p(1), B, &[1, 2], &[]).unwrap();
    caught(run.dlv(p(1), 2, 1, A, 1), Property::D2SendingConfiguration);
}

#[test]
fn d2_delivery_by_a_process_outside_the_ring_is_caught() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2]);
    run.form(C, &[3]);
    run.submit(1, 1, AGREED);
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    caught(run.dlv(p(3), 1, 1, A, 1), Property::D2SendingConfiguration);
}

#[test]
fn d2_message_from_a_sender_outside_the_ring_is_caught() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2]);
    run.form(C, &[3]);
    run.submit(3, 1, AGREED);
    caught(run.dlv(p(1), 3, 1, A, 1), Property::D2SendingConfiguration);
}

#[test]
fn d2_one_message_ordered_on_two_rings_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    run.trans(p(2), G, &[2], &[1]).unwrap();
    run.reg(p(2), G, &[2], &[]).unwrap();
    caught(run.dlv(p(2), 1, 1, G, 1), Property::D2SendingConfiguration);
}

#[test]
fn d3_own_message_skipped_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.submit(1, 2, AGREED);
    caught(run.dlv(p(1), 1, 2, A, 1), Property::D3SelfDelivery);
}

#[test]
fn d3_own_message_never_delivered_is_caught_at_convergence() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.submit(2, 1, AGREED);
    run.dlv_all(&[p(1), p(2)], 2, 1, A, 1).unwrap();
    run.finish().unwrap();
    caught(run.converged(&[p(1), p(2)]), Property::D3SelfDelivery);
}

#[test]
fn d3_own_message_left_behind_on_its_ring_is_caught_at_the_senders_next_ring() {
    // Node 1's m1:1 was ordered on A (node 2 delivered it there); node 1 goes on to B without
    // delivering it. Decided at that install, so it holds for a process that crashes later.
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.dlv(p(2), 1, 1, A, 1).unwrap();
    run.trans(p(1), B, &[1], &[2]).unwrap();
    caught(run.reg(p(1), B, &[1], &[]), Property::D3SelfDelivery);
}

#[test]
fn d3_own_message_delivered_after_its_sender_moved_on_is_caught() {
    // The same heard the other way round: node 1 has already moved on (and crashed since) when
    // node 2 delivers m1:1 as ordered on A.
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.trans(p(1), B, &[1], &[2]).unwrap();
    run.reg(p(1), B, &[1], &[]).unwrap();
    run.crash(p(1));
    caught(run.dlv(p(2), 1, 1, A, 1), Property::D3SelfDelivery);
}

#[test]
fn d3_own_message_of_a_sender_that_crashed_in_the_ring_passes() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.trans(p(1), B, &[1], &[2]).unwrap();
    run.crash(p(1)); // before installing B: it failed
    run.dlv(p(2), 1, 1, A, 1).unwrap();
    run.trans(p(2), G, &[2], &[1]).unwrap();
    run.reg(p(2), G, &[2], &[]).unwrap();
    assert_eq!(run.converged(&[p(2)]), Ok(G));
}

#[test]
fn d3_own_message_not_yet_ordered_may_follow_its_sender_to_the_next_ring_passes() {
    // Submitted in A but never sent there: it is sent (ordered) on B and delivered there.
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    for who in [p(1), p(2)] {
        run.trans(who, B, &[1, 2], &[]).unwrap();
    }
    for who in [p(1), p(2)] {
        run.reg(who, B, &[1, 2], &[]).unwrap();
    }
    run.dlv_all(&[p(1), p(2)], 1, 1, B, 1).unwrap();
    assert_eq!(run.converged(&[p(1), p(2)]), Ok(B));
}

#[test]
fn d4_different_sets_in_the_regular_configuration_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    run.trans(p(1), B, &[1, 2], &[]).unwrap();
    caught(
        run.trans(p(2), B, &[1, 2], &[]),
        Property::D4FailureAtomicity,
    );
}

#[test]
fn d4_different_sets_in_the_transitional_configuration_is_caught() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, AGREED);
    run.trans(p(1), B, &[1, 2], &[3]).unwrap();
    run.trans(p(2), B, &[1, 2], &[3]).unwrap();
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    run.reg(p(1), B, &[1, 2], &[]).unwrap();
    caught(run.reg(p(2), B, &[1, 2], &[]), Property::D4FailureAtomicity);
}

#[test]
fn d4_different_transitional_configurations_may_differ_passes() {
    // Node 3 goes its own way: it need not deliver what 1 and 2 delivered in their
    // transitional configuration.
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, AGREED);
    run.trans(p(1), B, &[1, 2], &[3]).unwrap();
    run.trans(p(2), B, &[1, 2], &[3]).unwrap();
    run.trans(p(3), C, &[3], &[1, 2]).unwrap();
    run.dlv_all(&[p(1), p(2)], 1, 1, A, 1).unwrap();
    run.reg(p(1), B, &[1, 2], &[]).unwrap();
    run.reg(p(2), B, &[1, 2], &[]).unwrap();
    run.reg(p(3), C, &[3], &[]).unwrap();
    run.finish().unwrap();
}

#[test]
fn d5_gap_in_the_regular_configuration_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.submit(2, 1, AGREED);
    run.dlv_all(&[p(1)], 1, 1, A, 1).unwrap();
    run.dlv_all(&[p(1)], 2, 1, A, 2).unwrap();
    caught(run.dlv(p(2), 2, 1, A, 2), Property::D5TotalOrder);
}

#[test]
fn d5_gap_seen_after_the_later_message_is_caught() {
    // Node 2 delivered seq 2 first; only then does anyone deliver seq 1.
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.submit(2, 1, AGREED);
    run.dlv(p(2), 2, 1, A, 2).unwrap();
    caught(run.dlv(p(1), 1, 1, A, 1), Property::D5TotalOrder);
}

#[test]
fn d5_opposite_order_is_caught() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, AGREED);
    run.submit(2, 1, AGREED);
    run.dlv_all(&[p(1), p(2)], 1, 1, A, 1).unwrap();
    run.dlv_all(&[p(1), p(2)], 2, 1, A, 2).unwrap();
    run.trans(p(3), C, &[3], &[1, 2]).unwrap();
    run.dlv(p(3), 2, 1, A, 2).unwrap(); // fine: m1:1's sender is not with 3
    caught(run.dlv(p(3), 1, 1, A, 1), Property::D5TotalOrder);
}

#[test]
fn d5_same_message_at_two_seqs_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    caught(run.dlv(p(2), 1, 1, A, 2), Property::D5TotalOrder);
}

#[test]
fn d5_packed_messages_in_another_order_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.submit(1, 2, AGREED);
    run.dlv(p(1), 1, 1, A, 3).unwrap();
    run.dlv(p(1), 1, 2, A, 3).unwrap();
    caught(run.dlv(p(2), 1, 2, A, 3), Property::D5TotalOrder);
}

#[test]
fn d5_transitional_gap_from_a_member_sender_is_caught() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(2, 1, AGREED);
    run.submit(1, 1, AGREED);
    run.dlv(p(3), 2, 1, A, 1).unwrap();
    run.trans(p(1), B, &[1, 2], &[3]).unwrap();
    // m2:1 at seq 1 comes from node 2, which is in the transitional configuration: no excuse.
    caught(run.dlv(p(1), 1, 1, A, 2), Property::D5TotalOrder);
}

#[test]
fn d5_transitional_gap_from_a_member_sender_seen_late_is_caught() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(2, 1, AGREED);
    run.submit(1, 1, AGREED);
    run.trans(p(1), B, &[1, 2], &[3]).unwrap();
    run.dlv(p(1), 1, 1, A, 2).unwrap();
    caught(run.dlv(p(3), 2, 1, A, 1), Property::D5TotalOrder);
}

#[test]
fn d5_transitional_gap_from_a_departed_sender_passes() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(3, 1, AGREED);
    run.submit(1, 1, AGREED);
    run.trans(p(1), B, &[1, 2], &[3]).unwrap();
    run.dlv(p(1), 1, 1, A, 2).unwrap();
    run.dlv(p(3), 3, 1, A, 1).unwrap();
    run.trans(p(2), B, &[1, 2], &[3]).unwrap();
    run.dlv(p(2), 1, 1, A, 2).unwrap();
    run.finish().unwrap();
}

// D5 and D3 from the multicasts themselves: the simulator reports each first multicast, so a
// message's place is known before (and whether or not) anyone delivers it.

#[test]
fn d5_gap_of_a_message_nobody_delivered_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.submit(2, 1, AGREED);
    run.mcast(A, 1, 1, &[1]);
    run.mcast(A, 2, 2, &[1]);
    // Without the multicast reports nobody delivered m1:1, so no one could tell it was skipped.
    caught(run.dlv(p(2), 2, 1, A, 2), Property::D5TotalOrder);
}

#[test]
fn d5_multicast_below_what_a_process_already_delivered_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.submit(2, 1, AGREED);
    run.dlv(p(2), 2, 1, A, 2).unwrap();
    run.mcast(A, 1, 1, &[1]);
    caught(run.finish(), Property::D5TotalOrder);
}

#[test]
fn d5_delivery_the_multicast_does_not_carry_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.submit(1, 2, AGREED);
    run.mcast(A, 1, 1, &[1]);
    caught(run.dlv(p(2), 1, 2, A, 1), Property::D5TotalOrder);
}

#[test]
fn d5_undelivered_multicast_of_a_departed_sender_skipped_in_transitional_passes() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(3, 1, AGREED);
    run.submit(1, 1, AGREED);
    run.mcast(A, 1, 3, &[1]);
    run.mcast(A, 2, 1, &[1]);
    run.crash(p(3));
    for who in [p(1), p(2)] {
        run.trans(who, B, &[1, 2], &[3]).unwrap();
        run.dlv(who, 1, 1, A, 2).unwrap();
    }
    for who in [p(1), p(2)] {
        run.reg(who, B, &[1, 2], &[]).unwrap();
    }
    assert_eq!(run.converged(&[p(1), p(2)]), Ok(B));
}

#[test]
fn d3_own_multicast_nobody_delivered_is_caught_when_its_sender_moves_on() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.mcast(A, 1, 1, &[1]);
    run.trans(p(1), B, &[1], &[2]).unwrap();
    caught(run.reg(p(1), B, &[1], &[]), Property::D3SelfDelivery);
}

#[test]
fn d6_multicast_below_a_later_message_of_the_same_sender_is_caught() {
    // Node 2 delivered m1:2 in a transitional configuration without node 1 (no gap rule
    // applies to it then); the multicast of the earlier m1:1 on the same ring comes later.
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.submit(1, 2, AGREED);
    run.trans(p(2), G, &[2], &[1]).unwrap();
    run.dlv(p(2), 1, 2, A, 1).unwrap();
    run.mcast(A, 2, 1, &[1]);
    caught(run.finish(), Property::D6Causal);
}

#[test]
fn d6_sender_order_reversed_is_caught() {
    // Node 1 submitted m1:1 before m1:2, but m1:2 was ordered first: no gap, one total order,
    // yet causality is broken.
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.submit(1, 2, AGREED);
    run.dlv(p(2), 1, 2, A, 1).unwrap();
    caught(run.dlv(p(2), 1, 1, A, 2), Property::D6Causal);
}

#[test]
fn d6_earlier_message_skipped_in_transitional_configuration_is_caught() {
    // Node 3 delivered m1:1 at seq 2; node 2, in a transitional configuration without node 1,
    // then delivers m1:2 at seq 3 without m1:1. The gap rule lets it skip a departed sender's
    // message by position; causality does not.
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, AGREED);
    run.submit(1, 2, AGREED);
    run.trans(p(2), G, &[2], &[1, 3]).unwrap();
    run.dlv(p(3), 1, 1, A, 2).unwrap();
    caught(run.dlv(p(2), 1, 2, A, 3), Property::D6Causal);
}

#[test]
fn d6_earlier_message_skipped_seen_late_is_caught() {
    // The same, heard in the other order: node 2 delivers m1:2 first, then node 3 delivers the
    // earlier m1:1 on the same ring.
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, AGREED);
    run.submit(1, 2, AGREED);
    run.trans(p(2), G, &[2], &[1, 3]).unwrap();
    run.dlv(p(2), 1, 2, A, 3).unwrap();
    caught(run.dlv(p(3), 1, 1, A, 2), Property::D6Causal);
}

#[test]
fn d6_message_ordered_before_what_its_sender_had_delivered_is_caught() {
    // Node 2 delivered m1:1 (seq 2) before submitting m2:1, yet m2:1 is ordered at seq 1.
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, AGREED);
    run.dlv(p(2), 1, 1, A, 2).unwrap();
    run.submit(2, 1, AGREED);
    caught(run.dlv(p(3), 2, 1, A, 1), Property::D6Causal);
}

#[test]
fn d6_causal_predecessor_from_another_sender_skipped_in_transitional_is_caught() {
    // Node 2 delivered m1:1 and then sent m2:1. Node 3, in a transitional configuration without
    // node 1, may skip m1:1 by the gap rule of D5, but not while delivering m2:1, which causally
    // follows it.
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, AGREED);
    run.dlv(p(2), 1, 1, A, 1).unwrap();
    run.submit(2, 1, AGREED);
    run.dlv(p(2), 2, 1, A, 2).unwrap();
    run.trans(p(3), C, &[3], &[1, 2]).unwrap();
    caught(run.dlv(p(3), 2, 1, A, 2), Property::D6Causal);
}

#[test]
fn d6_causal_predecessor_on_a_newer_ring_is_caught() {
    // Node 2 delivered m1:2 on ring B, then submitted m2:1; m2:1 cannot be ordered on the
    // older ring A.
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    for who in [p(1), p(2)] {
        run.trans(who, B, &[1, 2], &[3]).unwrap();
    }
    for who in [p(1), p(2)] {
        run.reg(who, B, &[1, 2], &[]).unwrap();
    }
    run.submit(1, 2, AGREED);
    run.dlv(p(2), 1, 2, B, 1).unwrap();
    run.submit(2, 1, AGREED);
    caught(run.dlv(p(3), 2, 1, A, 1), Property::D6Causal);
}

#[test]
fn d6_causal_order_across_senders_kept_passes() {
    let mut run = Run::new(&[1, 2, 3]);
    let all = [p(1), p(2), p(3)];
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, AGREED);
    run.dlv_all(&all, 1, 1, A, 1).unwrap();
    run.submit(2, 1, AGREED);
    run.submit(3, 1, AGREED); // after m1:1 at node 3
    run.dlv_all(&all, 3, 1, A, 2).unwrap();
    run.dlv_all(&all, 2, 1, A, 3).unwrap();
    assert_eq!(run.converged(&all), Ok(A));
}

#[test]
fn d6_sender_order_kept_passes() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.submit(1, 2, AGREED);
    run.dlv_all(&[p(2), p(1)], 1, 1, A, 1).unwrap();
    run.dlv_all(&[p(1), p(2)], 1, 2, A, 2).unwrap();
    assert_eq!(run.converged(&[p(1), p(2)]), Ok(A));
}

#[test]
fn d7_message_on_both_sides_of_a_transitional_configuration_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.trans(p(2), B, &[1, 2], &[]).unwrap();
    run.dlv(p(2), 1, 1, A, 1).unwrap(); // after the transitional configuration at 2
    run.dlv(p(1), 1, 1, A, 1).unwrap(); // before it at 1
    caught(
        run.trans(p(1), B, &[1, 2], &[]),
        Property::D7ConfigurationOrder,
    );
}

// D8 in the form of EVS (Moser, Amir, Melliar-Smith, Agarwal 1994): a safe message delivered in
// regular configuration c is delivered by every member of c, in c or in the transitional
// configuration after it, unless that member fails. A partition does not excuse a member: the
// safe bound means it holds the message, so it delivers it in its own transitional
// configuration.

#[test]
fn d8_safe_message_missing_at_a_member_kept_in_the_next_transitional_is_caught() {
    // Node 1 delivers safe m1:1 in regular A; node 2 moves on without it.
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, SAFE);
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    run.trans(p(2), G, &[2], &[1]).unwrap();
    caught(run.reg(p(2), G, &[2], &[]), Property::D8Safe);
}

#[test]
fn d8_safe_message_delivered_after_a_member_moved_on_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, SAFE);
    run.trans(p(2), G, &[2], &[1]).unwrap();
    run.reg(p(2), G, &[2], &[]).unwrap();
    caught(run.dlv(p(1), 1, 1, A, 1), Property::D8Safe);
}

#[test]
fn d8_safe_message_missing_at_a_partitioned_member_is_caught_even_when_it_is_excluded() {
    // The reference's weaker form accepted this (node 1 excludes node 2 from its next
    // transitional configuration); EVS does not: node 2 did not fail, so it must deliver m1:1
    // in A or in its transitional configuration G.
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, SAFE);
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    run.trans(p(1), B, &[1], &[2]).unwrap();
    run.reg(p(1), B, &[1], &[]).unwrap();
    run.trans(p(2), G, &[2], &[1]).unwrap();
    caught(run.reg(p(2), G, &[2], &[]), Property::D8Safe);
}

#[test]
fn d8_safe_message_delivered_by_a_partitioned_member_in_its_transitional_passes() {
    // The correct outcome of the same partition: node 2 holds m1:1 (the safe bound says every
    // member does) and delivers it in its transitional configuration.
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, SAFE);
    run.submit(3, 1, AGREED);
    run.dlv_all(&[p(1), p(2)], 1, 1, A, 1).unwrap();
    run.trans(p(1), B, &[1, 2], &[3]).unwrap();
    run.trans(p(2), B, &[1, 2], &[3]).unwrap();
    run.reg(p(1), B, &[1, 2], &[]).unwrap();
    run.reg(p(2), B, &[1, 2], &[]).unwrap();
    run.trans(p(3), C, &[3], &[1, 2]).unwrap();
    run.dlv(p(3), 1, 1, A, 1).unwrap();
    run.dlv(p(3), 3, 1, A, 2).unwrap();
    run.reg(p(3), C, &[3], &[]).unwrap();
    run.finish().unwrap();
}

#[test]
fn d8_safe_message_missing_at_a_member_that_crashes_before_moving_on_passes() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, SAFE);
    run.trans(p(2), G, &[2], &[1]).unwrap();
    run.crash(p(2)); // in its transitional configuration, before the next regular one
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    run.trans(p(1), B, &[1], &[2]).unwrap();
    run.reg(p(1), B, &[1], &[]).unwrap();
    assert_eq!(run.converged(&[p(1)]), Ok(B));
}

#[test]
fn d8_safe_message_missing_at_a_member_that_moved_on_and_then_crashed_is_caught() {
    // Moving on without the message is the violation; a later crash does not undo it.
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, SAFE);
    run.trans(p(2), G, &[2], &[1]).unwrap();
    run.reg(p(2), G, &[2], &[]).unwrap();
    run.crash(p(2));
    caught(run.dlv(p(1), 1, 1, A, 1), Property::D8Safe);
}

#[test]
fn d8_safe_message_in_a_ring_a_member_never_installed_is_caught() {
    // Node 2 is a member of A, never installs it and does not fail: it cannot deliver m1:1.
    // A cut run gives it the benefit of the doubt while it may still install A; once it is on
    // a later ring (or at convergence) it cannot.
    let mut run = Run::new(&[1, 2]);
    run.reg(p(1), A, &[1, 2], &[1, 2]).unwrap();
    run.submit(1, 1, SAFE);
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    run.trans(p(1), B, &[1], &[2]).unwrap();
    run.reg(p(1), B, &[1], &[]).unwrap();
    run.finish().unwrap();
    run.reg(p(2), G, &[2], &[2]).unwrap();
    caught(run.finish(), Property::D8Safe);
}

#[test]
fn d8_safe_message_in_a_ring_a_member_never_installed_passes_when_it_fails() {
    let mut run = Run::new(&[1, 2]);
    run.reg(p(1), A, &[1, 2], &[1, 2]).unwrap();
    run.submit(1, 1, SAFE);
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    run.crash(p(2));
    run.trans(p(1), B, &[1], &[2]).unwrap();
    run.reg(p(1), B, &[1], &[]).unwrap();
    assert_eq!(run.converged(&[p(1)]), Ok(B));
    run.finish().unwrap();
}

#[test]
fn d8_safe_message_in_transitional_configuration_missing_at_a_member_is_caught() {
    // Node 1 delivers safe m1:1 in transitional {1,2} and crashes; node 2 is a member of that
    // transitional configuration and moves on without it.
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, SAFE);
    run.trans(p(1), B, &[1, 2], &[3]).unwrap();
    run.trans(p(2), B, &[1, 2], &[3]).unwrap();
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    run.crash(p(1));
    // Node 3 is not in the transitional configuration: it owes nothing.
    run.trans(p(3), C, &[3], &[1, 2]).unwrap();
    run.reg(p(3), C, &[3], &[]).unwrap();
    caught(run.reg(p(2), B, &[1, 2], &[]), Property::D8Safe);
}

#[test]
fn d8_safe_message_in_transitional_configuration_after_a_member_moved_on_is_caught() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, SAFE);
    run.trans(p(1), B, &[1, 2], &[3]).unwrap();
    run.trans(p(2), B, &[1, 2], &[3]).unwrap();
    run.reg(p(2), B, &[1, 2], &[]).unwrap();
    caught(run.dlv(p(1), 1, 1, A, 1), Property::D8Safe);
}

#[test]
fn d8_safe_message_in_transitional_configuration_passes() {
    let mut run = Run::new(&[1, 2, 3]);
    run.form(A, &[1, 2, 3]);
    run.submit(1, 1, SAFE);
    run.trans(p(1), B, &[1, 2], &[3]).unwrap();
    run.trans(p(2), B, &[1, 2], &[3]).unwrap();
    run.dlv_all(&[p(1), p(2)], 1, 1, A, 1).unwrap();
    run.trans(p(3), C, &[3], &[1, 2]).unwrap();
    run.reg(p(3), C, &[3], &[]).unwrap();
    run.reg(p(1), B, &[1, 2], &[]).unwrap();
    run.reg(p(2), B, &[1, 2], &[]).unwrap();
    run.finish().unwrap();
}

#[test]
fn d8_safe_message_with_crashed_member_passes() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, SAFE);
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    run.crash(p(2));
    run.trans(p(1), B, &[1], &[2]).unwrap();
    run.reg(p(1), B, &[1], &[]).unwrap();
    assert_eq!(run.converged(&[p(1)]), Ok(B));
}

#[test]
fn d9_processes_on_different_rings_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1]);
    run.form(G, &[2]);
    run.finish().unwrap();
    caught(run.converged(&[p(1), p(2)]), Property::D9Liveness);
}

#[test]
fn d9_ring_still_holding_a_crashed_node_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.crash(p(2));
    caught(run.converged(&[p(1)]), Property::D9Liveness);
}

#[test]
fn d9_process_stuck_in_transitional_configuration_is_caught() {
    let mut run = Run::new(&[1]);
    run.form(A, &[1]);
    run.trans(p(1), B, &[1], &[]).unwrap();
    caught(run.converged(&[p(1)]), Property::D9Liveness);
}

#[test]
fn d9_message_not_delivered_by_every_member_is_caught() {
    let mut run = Run::new(&[1, 2]);
    run.form(A, &[1, 2]);
    run.submit(1, 1, AGREED);
    run.dlv(p(1), 1, 1, A, 1).unwrap();
    run.finish().unwrap();
    caught(run.converged(&[p(1), p(2)]), Property::D9Liveness);
}

// ------------------------------------------------------------------------ oracle behaviour

#[test]
fn finish_repeats_the_first_violation() {
    let mut run = Run::new(&[1, 2]);
    caught(run.reg(p(1), A, &[2], &[2]), Property::C1SelfInclusion);
    run.form(A, &[1, 2]);
    caught(run.finish(), Property::C1SelfInclusion);
    assert_eq!(
        run.oracle.first_violation().map(|v| v.property),
        Some(Property::C1SelfInclusion)
    );
}

#[test]
#[should_panic(expected = "never started")]
fn events_from_unknown_processes_panic() {
    let mut run = Run::new(&[1]);
    let _ = run.reg(p(2), G, &[2], &[2]);
}

/// Ten thousand messages from three senders, packed ten to a multicast, on three processes:
/// the per-event work must stay flat.
#[test]
fn many_messages_are_checked_quickly() {
    let mut run = Run::new(&[1, 2, 3]);
    let all = [p(1), p(2), p(3)];
    run.form(A, &[1, 2, 3]);
    let started = std::time::Instant::now();
    let mut seq = 0;
    for batch in 0..1000u64 {
        let sender = (batch % 3) as NodeId + 1;
        seq += 1;
        for k in 0..10 {
            run.submit(sender, batch * 10 + k, AGREED);
        }
        for who in all {
            for k in 0..10 {
                run.dlv(who, sender, batch * 10 + k, A, seq).unwrap();
            }
        }
    }
    for who in all {
        run.trans(who, B, &[1, 2, 3], &[]).unwrap();
    }
    for who in all {
        run.reg(who, B, &[1, 2, 3], &[]).unwrap();
    }
    assert_eq!(run.converged(&all), Ok(B));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
