//! Hand-built runs, each named after the property it proves. Every scenario also runs the EVS
//! oracle on every event; the explicit assertions here check the specific behaviour the
//! scenario provokes, so that a scenario cannot pass by not exercising it.
//!
//! Replay a scenario with a printed trace: `TOTEM_SIM_TRACE=1 cargo test -p totem-sim --test
//! scenarios -- NAME --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use totem::wire::PacketType;
use totem::{ConfigKind, Event, Guarantee, Instant, NodeId, State};
use totem_sim::net::DropRule;
use totem_sim::oracle::MsgId;
use totem_sim::workload::WorkloadParams;
use totem_sim::{Fault, RunResult, Scenario};

/// The scenario timers: token 200 ms, so a token loss is noticed within 0.2 s.
const TOKEN_MS: u64 = 200;

/// Every pair of nodes delivers the messages they both delivered in the same relative order.
fn assert_same_relative_order(r: &RunResult, nodes: &[NodeId]) {
    let seqs: BTreeMap<NodeId, Vec<MsgId>> = nodes
        .iter()
        .map(|&n| (n, r.deliveries(n).into_iter().map(|(_, m)| m).collect()))
        .collect();
    for (&a, sa) in &seqs {
        for (&b, sb) in &seqs {
            if a >= b {
                continue;
            }
            let in_a: BTreeSet<MsgId> = sa.iter().copied().collect();
            let in_b: BTreeSet<MsgId> = sb.iter().copied().collect();
            let a_common: Vec<MsgId> = sa.iter().copied().filter(|m| in_b.contains(m)).collect();
            let b_common: Vec<MsgId> = sb.iter().copied().filter(|m| in_a.contains(m)).collect();
            assert_eq!(
                a_common, b_common,
                "n{a} and n{b} deliver in different orders"
            );
        }
    }
}

/// Regular configurations `node` installed while `from <= t < to`, as member lists.
fn regular_members_between(r: &RunResult, node: NodeId, from: u64, to: u64) -> Vec<Vec<NodeId>> {
    r.events_of(node)
        .filter(|o| o.at >= Instant::from_millis(from) && o.at < Instant::from_millis(to))
        .filter_map(|o| match &o.event {
            Event::ConfigChange(c) if c.kind == ConfigKind::Regular => Some(c.members.clone()),
            _ => None,
        })
        .collect()
}

fn assert_converged_with(r: &RunResult, members: &[NodeId]) {
    r.assert_passed();
    assert!(r.converged.is_some(), "no convergence recorded");
    let live: Vec<NodeId> = r.live.iter().map(|p| p.node).collect();
    assert_eq!(live, members, "live processes at the end");
}

#[test]
fn agreed_order_under_30_percent_loss() {
    let r = Scenario::new("agreed_order_under_30_percent_loss", 4)
        .loss(0.30)
        .workload(WorkloadParams {
            safe_fraction: 0.0,
            mean_interval: Some(Duration::from_millis(20)),
            ..WorkloadParams::default()
        })
        .heal_at_ms(6_000)
        .run();
    assert_converged_with(&r, &[1, 2, 3, 4]);
    assert!(
        r.summary.net.lost > 1_000,
        "the loss did happen: {:?}",
        r.summary.net
    );
    assert!(r.summary.delivered > 4 * 200, "{:?}", r.summary);
    assert_same_relative_order(&r, &[1, 2, 3, 4]);
}

#[test]
fn token_loss_forms_new_ring() {
    // The ring is formed long before 1.5 s; then every token is dropped for two token timeouts.
    let r = Scenario::new("token_loss_forms_new_ring", 4)
        .at_ms(
            1_500,
            Fault::Drop(
                DropRule::all()
                    .kinds(&[PacketType::OrfToken])
                    .until(Instant::from_millis(1_500 + 2 * TOKEN_MS)),
            ),
        )
        .heal_at_ms(3_000)
        .run();
    assert_converged_with(&r, &[1, 2, 3, 4]);
    for n in 1..=4 {
        let before = r
            .events_of(n)
            .filter(|o| o.at < Instant::from_millis(1_500))
            .filter_map(|o| match &o.event {
                Event::ConfigChange(c) if c.kind == ConfigKind::Regular => Some(c.ring_id),
                _ => None,
            })
            .last()
            .expect("a ring before the token loss");
        let after: Vec<_> = r
            .regular_configs(n)
            .into_iter()
            .filter(|(ring, _)| ring.seq > before.seq)
            .collect();
        assert!(
            !after.is_empty(),
            "n{n} formed no new ring after losing the token"
        );
        assert_eq!(after.last().unwrap().1, vec![1, 2, 3, 4]);
    }
}

#[test]
fn partition_into_two_then_merge() {
    let r = Scenario::new("partition_into_two_then_merge", 5)
        .at_ms(1_000, Fault::Partition(vec![vec![1, 2], vec![3, 4, 5]]))
        .heal_at_ms(4_000)
        .run();
    assert_converged_with(&r, &[1, 2, 3, 4, 5]);
    for (n, side) in [
        (1, vec![1, 2]),
        (2, vec![1, 2]),
        (3, vec![3, 4, 5]),
        (5, vec![3, 4, 5]),
    ] {
        assert!(
            regular_members_between(&r, n, 1_000, 4_000).contains(&side),
            "n{n} never ran in its side of the partition {side:?}"
        );
    }
    assert_same_relative_order(&r, &[1, 2, 3, 4, 5]);
}

#[test]
fn partition_into_three_then_merge() {
    let r = Scenario::new("partition_into_three_then_merge", 7)
        .at_ms(
            1_000,
            Fault::Partition(vec![vec![1, 2], vec![3, 4, 5], vec![6, 7]]),
        )
        .heal_at_ms(4_500)
        .run();
    assert_converged_with(&r, &[1, 2, 3, 4, 5, 6, 7]);
    for (n, side) in [(1, vec![1, 2]), (4, vec![3, 4, 5]), (7, vec![6, 7])] {
        assert!(
            regular_members_between(&r, n, 1_000, 4_500).contains(&side),
            "n{n} never ran in its side of the partition {side:?}"
        );
    }
    assert_same_relative_order(&r, &[1, 2, 3, 4, 5, 6, 7]);
}

/// Forces a new membership round at 1.5 s (every token dropped for a while) and crashes the
/// representative, node 1, as soon as it is seen in `state`.
fn representative_crash(name: &str, state: State) {
    let r = Scenario::new(name, 4)
        .crash_when_ms(1_400, 1, state)
        .at_ms(
            1_500,
            Fault::Drop(
                DropRule::all()
                    .kinds(&[PacketType::OrfToken])
                    .until(Instant::from_millis(1_500 + 2 * TOKEN_MS)),
            ),
        )
        .heal_at_ms(4_000)
        .stay_down(&[1])
        .run();
    let fired: Vec<_> = r.hooks_fired.iter().filter(|h| h.proc.node == 1).collect();
    assert_eq!(fired.len(), 1, "node 1 was never seen in {state:?}");
    assert!(fired[0].at >= Instant::from_millis(1_500));
    assert_converged_with(&r, &[2, 3, 4]);
    for n in 2..=4 {
        let last = r.regular_configs(n).last().cloned().unwrap();
        assert_eq!(last.1, vec![2, 3, 4]);
    }
}

#[test]
fn representative_crash_during_commit() {
    representative_crash("representative_crash_during_commit", State::Commit);
}

#[test]
fn representative_crash_during_recovery() {
    representative_crash("representative_crash_during_recovery", State::Recovery);
}

#[test]
fn sender_failing_mid_send_delivered_by_all_or_none() {
    // Node 4 sends a steady stream, and at 1 s a burst of 64 messages, small and large (about
    // 70 multicasts, several token visits' worth). From 1 s only node 1 hears node 4's multicasts
    // directly, and loses half of them (2 and 3 depend on retransmissions), and node 4 crashes
    // a few milliseconds into the burst: its last messages are held by node 1 only, some whole,
    // some in part, some behind gaps no survivor can fill. Whatever the survivors deliver of
    // node 4 (in the old regular configuration or in the transitional one), they deliver alike.
    for (seed, crash_after_us) in [
        (1, 300),
        (2, 1_000),
        (3, 2_000),
        (4, 4_000),
        (5, 7_000),
        (6, 3_000),
        (7, 5_000),
        (8, 6_000),
    ] {
        let mut s = Scenario::new("sender_failing_mid_send_delivered_by_all_or_none", 4)
            .seed(seed)
            .workload(WorkloadParams {
                senders: Some(vec![4]),
                mean_interval: Some(Duration::from_millis(5)),
                ..WorkloadParams::default()
            })
            .at_ms(
                1_000,
                Fault::Drop(
                    DropRule::all()
                        .from(&[4])
                        .to(&[2, 3])
                        .kinds(&[PacketType::Mcast]),
                ),
            )
            .at_ms(
                1_000,
                Fault::LinkLoss {
                    from: vec![4],
                    to: vec![1],
                    loss: 0.5,
                },
            );
        for i in 0..64 {
            // Mostly single-packet messages (deliverable behind a gap), some multi-fragment
            // ones (cut in the middle), a few SAFE.
            let size = if i % 16 == 5 { 20_000 } else { 400 };
            let guarantee = if i % 8 == 3 {
                Guarantee::Safe
            } else {
                Guarantee::Agreed
            };
            s = s.at_ms(
                1_000,
                Fault::Submit {
                    node: 4,
                    size,
                    guarantee,
                },
            );
        }
        let r = s
            .at(
                Instant::from_millis(1_000) + Duration::from_micros(crash_after_us),
                Fault::Crash(4),
            )
            .heal_at_ms(3_000)
            .stay_down(&[4])
            .run();
        assert_converged_with(&r, &[1, 2, 3]);
        let from_4 = |n: NodeId| -> BTreeSet<MsgId> {
            r.deliveries(n)
                .into_iter()
                .map(|(_, m)| m)
                .filter(|m| m.sender == 4)
                .collect()
        };
        let (d1, d2, d3) = (from_4(1), from_4(2), from_4(3));
        assert!(
            !d1.is_empty(),
            "seed {seed}: nothing of node 4 was delivered"
        );
        assert_eq!(
            d1, d2,
            "seed {seed}: n1 and n2 delivered different messages of n4"
        );
        assert_eq!(
            d1, d3,
            "seed {seed}: n1 and n3 delivered different messages of n4"
        );
        let submitted = r.submissions.iter().filter(|s| s.proc.node == 4).count();
        assert!(
            submitted > d1.len(),
            "seed {seed}: the crash cut nothing off ({submitted} submitted, all delivered)"
        );
        let t: Vec<BTreeSet<MsgId>> = [1, 2, 3]
            .iter()
            .map(|&n| delivered_in_transitional(&r, n, 4))
            .collect();
        assert!(
            t[0] == t[1] && t[1] == t[2],
            "seed {seed}: survivors delivered different messages of n4 in the transitional configuration: {t:?}"
        );
    }
}

/// Messages of `sender` that `node` delivered in a transitional configuration.
fn delivered_in_transitional(r: &RunResult, node: NodeId, sender: NodeId) -> BTreeSet<MsgId> {
    let mut inside = false;
    let mut out = BTreeSet::new();
    for o in r.events_of(node) {
        match &o.event {
            Event::ConfigChange(c) => inside = c.kind == ConfigKind::Transitional,
            Event::Deliver(d) if inside && d.sender == sender => {
                out.insert(MsgId {
                    sender: d.sender,
                    msg_no: d.msg_no,
                });
            }
            Event::Deliver(_) => {}
        }
    }
    out
}

#[test]
fn safe_delivery_waits_while_member_lacks_message() {
    // Node 3 receives no multicast from 1.0 s to 1.4 s (tokens still reach it, so it stays in
    // the ring). Node 1 submits an AGREED message, then a SAFE one, inside that window.
    let unblock = 1_400;
    let r = Scenario::new("safe_delivery_waits_while_member_lacks_message", 3)
        .no_workload()
        .at_ms(
            1_000,
            Fault::Drop(
                DropRule::all()
                    .to(&[3])
                    .kinds(&[PacketType::Mcast])
                    .until(Instant::from_millis(unblock)),
            ),
        )
        .at_ms(
            1_050,
            Fault::Submit {
                node: 1,
                size: 100,
                guarantee: Guarantee::Agreed,
            },
        )
        .at_ms(
            1_100,
            Fault::Submit {
                node: 1,
                size: 100,
                guarantee: Guarantee::Safe,
            },
        )
        .heal_at_ms(2_000)
        .run();
    assert_converged_with(&r, &[1, 2, 3]);
    let id_of = |g: Guarantee| {
        r.submissions
            .iter()
            .find(|s| s.guarantee == g)
            .map(|s| s.id)
            .unwrap()
    };
    let (agreed, safe) = (id_of(Guarantee::Agreed), id_of(Guarantee::Safe));
    let when = |n: NodeId, m: MsgId| r.deliveries(n).into_iter().find(|d| d.1 == m).map(|d| d.0);
    // The block works: agreed delivery at 1 and 2 does not wait for node 3.
    for n in [1, 2] {
        let t = when(n, agreed).expect("agreed message delivered");
        assert!(
            t < Instant::from_millis(unblock),
            "n{n} delivered the agreed message at {t}"
        );
    }
    // Safe delivery does wait, unless node 3 was excluded from the configuration first.
    let excluded_at = |n: NodeId| {
        r.events_of(n).find_map(|o| match &o.event {
            Event::ConfigChange(c)
                if c.kind == ConfigKind::Transitional && !c.members.contains(&3) =>
            {
                Some(o.at)
            }
            _ => None,
        })
    };
    for n in [1, 2] {
        let t = when(n, safe).expect("safe message delivered");
        let excluded_first = excluded_at(n).is_some_and(|x| x <= t);
        assert!(
            t >= Instant::from_millis(unblock) || excluded_first,
            "n{n} delivered the safe message at {t}, while n3 could not have it"
        );
    }
    assert!(
        when(3, safe).is_some(),
        "n3 never delivered the safe message"
    );
}

#[test]
fn one_mib_messages_under_loss() {
    const MIB: usize = 1 << 20;
    let submit = |node, guarantee| Fault::Submit {
        node,
        size: MIB,
        guarantee,
    };
    let r = Scenario::new("one_mib_messages_under_loss", 3)
        .config(|c| {
            c.max_message_size = MIB;
            c.send_queue_bytes = 4 * MIB;
        })
        .loss(0.10)
        .no_workload()
        .at_ms(1_000, submit(1, Guarantee::Agreed))
        .at_ms(1_200, submit(2, Guarantee::Agreed))
        .at_ms(1_400, submit(3, Guarantee::Safe))
        .at_ms(1_600, submit(1, Guarantee::Safe))
        .heal_at_ms(8_000)
        .run();
    assert_converged_with(&r, &[1, 2, 3]);
    assert_eq!(
        r.submissions.len(),
        4,
        "every 1 MiB submission was accepted"
    );
    let sent: BTreeMap<MsgId, &bytes::Bytes> =
        r.submissions.iter().map(|s| (s.id, &s.data)).collect();
    for n in 1..=3 {
        let got: BTreeMap<MsgId, &bytes::Bytes> = r
            .events_of(n)
            .filter_map(|o| match &o.event {
                Event::Deliver(d) => Some((
                    MsgId {
                        sender: d.sender,
                        msg_no: d.msg_no,
                    },
                    &d.data,
                )),
                _ => None,
            })
            .collect();
        assert_eq!(got.len(), 4, "n{n} delivered {} of 4 messages", got.len());
        for (id, data) in &sent {
            assert!(
                got.get(id) == Some(data),
                "n{n}: {id:?} not delivered intact"
            );
        }
    }
    assert!(r.summary.net.lost > 100, "the loss did happen");
}

/// Every ring starts its multicast sequence numbers just below 2^32 (`Config::initial_seq`), ring
/// ids start just below 2^32 (`Start::ring_seq`) and so do message numbers
/// (`Start::first_msg_no`): all three cross the boundary under load and reconfiguration, so no
/// 32-bit arithmetic can hide anywhere.
#[test]
fn seq_numbers_cross_32_bit_boundary() {
    let base = u64::from(u32::MAX);
    let r = Scenario::new("seq_numbers_cross_32_bit_boundary", 3)
        .config(|c| c.initial_seq = base - 50)
        .base_ring_seq(base - 6)
        .base_msg_no(base - 20)
        .workload(WorkloadParams {
            mean_interval: Some(Duration::from_millis(10)),
            ..WorkloadParams::default()
        })
        .at_ms(800, Fault::Partition(vec![vec![1], vec![2, 3]]))
        .at_ms(1_600, Fault::Heal)
        .at_ms(2_400, Fault::Partition(vec![vec![1, 2], vec![3]]))
        .heal_at_ms(3_200)
        .run();
    assert_converged_with(&r, &[1, 2, 3]);
    assert!(
        r.converged.unwrap().seq > base,
        "ring seq stayed below 2^32"
    );
    let seq_above = r.events.iter().any(|o| match &o.event {
        Event::Deliver(d) => d.seq > base,
        _ => false,
    });
    assert!(
        seq_above,
        "no message was ordered above sequence number 2^32"
    );
    for n in 1..=3 {
        assert!(
            r.deliveries(n)
                .iter()
                .any(|(_, m)| m.msg_no > base && m.sender == n),
            "n{n} never delivered its own message numbered above 2^32"
        );
    }
    assert_same_relative_order(&r, &[1, 2, 3]);
}

#[test]
fn restarted_node_rejoins_as_new_incarnation_with_higher_ring_ids() {
    // Disks that hold a ring sequence number (a processor started with none persists none:
    // see `lost_ring_seq.rs`).
    let r = Scenario::new("restarted_node_rejoins_as_new_incarnation", 4)
        .base_ring_seq(1_000)
        .at_ms(1_000, Fault::Crash(2))
        .at_ms(2_000, Fault::Start(2))
        .heal_at_ms(3_000)
        .run();
    assert_converged_with(&r, &[1, 2, 3, 4]);
    let me = r.live.iter().find(|p| p.node == 2).unwrap();
    assert_eq!(me.incarnation, 1);
    // Message numbers of the new incarnation start at 1 << 40: ids never repeat.
    let mine: Vec<_> = r.submissions.iter().filter(|s| s.proc == *me).collect();
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|s| s.id.msg_no >= 1 << 40));
    // The persisted ring sequence number keeps the new incarnation's rings above the old ones.
    let max_before = r
        .events_of(2)
        .filter(|o| o.proc.incarnation == 0)
        .filter_map(|o| match &o.event {
            Event::ConfigChange(c) => Some(c.ring_id.seq),
            _ => None,
        })
        .max()
        .unwrap();
    let first_after = r
        .events_of(2)
        .filter(|o| o.proc.incarnation == 1)
        .find_map(|o| match &o.event {
            Event::ConfigChange(c) => Some(c.ring_id.seq),
            _ => None,
        })
        .unwrap();
    assert!(first_after > max_before, "{first_after} <= {max_before}");
}

#[test]
fn late_starter_joins_the_running_ring() {
    let r = Scenario::new("late_starter_joins_the_running_ring", 4)
        .start_late_ms(4, 1_500)
        .heal_at_ms(2_500)
        .run();
    assert_converged_with(&r, &[1, 2, 3, 4]);
    assert!(regular_members_between(&r, 1, 0, 1_500).contains(&vec![1, 2, 3]));
    assert_same_relative_order(&r, &[1, 2, 3, 4]);
}

#[test]
fn one_way_cut_then_merge() {
    // Nodes 2, 3 and 4 stop hearing node 1, which still hears them.
    let r = Scenario::new("one_way_cut_then_merge", 4)
        .at_ms(
            1_000,
            Fault::OneWay {
                from: vec![1],
                to: vec![2, 3, 4],
            },
        )
        .heal_at_ms(3_000)
        .run();
    assert_converged_with(&r, &[1, 2, 3, 4]);
    assert!(
        regular_members_between(&r, 2, 1_000, 3_000).contains(&vec![2, 3, 4]),
        "the nodes that could not hear node 1 never formed a ring without it"
    );
}

#[test]
fn paused_processor_is_excluded_then_rejoins() {
    // Node 3 is descheduled for three token timeouts: the others must form a ring without it,
    // and it must come back after it wakes up.
    let r = Scenario::new("paused_processor_is_excluded_then_rejoins", 4)
        .at_ms(
            1_000,
            Fault::Pause {
                node: 3,
                duration: Duration::from_millis(3 * TOKEN_MS),
            },
        )
        .heal_at_ms(3_000)
        .run();
    assert_converged_with(&r, &[1, 2, 3, 4]);
    assert!(
        regular_members_between(&r, 1, 1_000, 3_000).contains(&vec![1, 2, 4]),
        "the ring never excluded the paused node"
    );
}
