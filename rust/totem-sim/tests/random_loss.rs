//! Random packet loss on every link, no processor failing: the ring must stay the same ring
//! and repair every loss within a few token rotations.
//!
//! The timers are those of the field report that found the problem (`token` 1000 ms with
//! Corosync's default `token_coefficient` of 650 ms, `consensus` 1200 ms): a token lost on a
//! ring of 3 cost Corosync's `token_retransmit` (1650 ms / 4.2 = 393 ms; 702 ms on 5 nodes),
//! and a ring rotating in about a millisecond loses a token every few rotations at 10% loss,
//! so messages waited hundreds of milliseconds. Links take 100-300 µs, so one rotation takes
//! about 1 ms (3 nodes) to 1.5 ms (5 nodes).
//!
//! Every check is in virtual time: a run is deterministic, so a bound is a property of the
//! protocol, not of the machine running the test.

use std::collections::BTreeMap;
use std::time::Duration;

use totem::{ConfigKind, Event, Instant, NodeId};
use totem_sim::oracle::MsgId;
use totem_sim::workload::WorkloadParams;
use totem_sim::{Fault, RunResult, Scenario};

/// Loss starts once the ring is formed (at most 2.2 s after a start where a first membership
/// round failed, with these timers), and lasts ten seconds.
const LOSS_FROM_MS: u64 = 3_000;
const LOSS_UNTIL_MS: u64 = 13_000;

#[derive(Copy, Clone, Debug)]
enum Load {
    /// Node 1 alone submits small messages, 20 per second on average (the field report).
    OneSender,
    /// Every node submits 20 messages per second on average: small ones, some of several
    /// packets (1-5 KB), a fifth of them SAFE.
    AllSenders,
}

fn run(nodes: usize, loss: f64, load: Load, seed: u64) -> RunResult {
    let name = format!("random_loss n={nodes} loss={loss} {load:?} seed={seed}");
    let workload = match load {
        Load::OneSender => WorkloadParams {
            senders: Some(vec![1]),
            mean_interval: Some(Duration::from_millis(50)),
            safe_fraction: 0.0,
            medium_fraction: 0.0,
            large_fraction: 0.0,
            burst_chance: 0.0,
            ..WorkloadParams::default()
        },
        Load::AllSenders => WorkloadParams {
            senders: None,
            mean_interval: Some(Duration::from_millis(50)),
            safe_fraction: 0.2,
            medium_fraction: 0.2,
            large_fraction: 0.0,
            burst_chance: 0.0,
            ..WorkloadParams::default()
        },
    };
    Scenario::new(&name, nodes)
        .seed(seed)
        .config(|c| {
            c.token = Duration::from_millis(1000);
            c.token_coefficient = Duration::from_millis(650);
            c.consensus = Some(Duration::from_millis(1200));
        })
        .workload(workload)
        .at_ms(LOSS_FROM_MS, Fault::SetLoss(loss))
        .heal_at_ms(LOSS_UNTIL_MS)
        .run()
}

/// Delivery latencies (submission to delivery, every node) of the messages submitted while
/// the loss lasted, in ms, sorted; panics if a node did not deliver one of them.
fn latencies(r: &RunResult, nodes: usize) -> Vec<f64> {
    let from = Instant::from_millis(LOSS_FROM_MS);
    let until = Instant::from_millis(LOSS_UNTIL_MS);
    let submitted: BTreeMap<MsgId, Instant> = r
        .submissions
        .iter()
        .filter(|s| s.at >= from && s.at < until)
        .map(|s| (s.id, s.at))
        .collect();
    let mut out = Vec::new();
    for node in 1..=nodes as NodeId {
        let delivered: BTreeMap<MsgId, Instant> = r
            .deliveries(node)
            .into_iter()
            .map(|(at, id)| (id, at))
            .collect();
        for (id, at) in &submitted {
            let Some(d) = delivered.get(id) else {
                panic!("{}: n{node} never delivered {id:?}", r.name);
            };
            out.push((*d - *at).as_secs_f64() * 1e3);
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

/// Configuration changes any node saw while the loss lasted (and for a second after).
fn config_changes_under_loss(r: &RunResult, nodes: usize) -> Vec<String> {
    let from = Instant::from_millis(LOSS_FROM_MS);
    let until = Instant::from_millis(LOSS_UNTIL_MS + 1_000);
    (1..=nodes as NodeId)
        .flat_map(|n| r.events_of(n))
        .filter(|o| o.at >= from && o.at < until)
        .filter_map(|o| match &o.event {
            Event::ConfigChange(c) => Some(format!(
                "n{} at {}: {:?} {:?} members {:?}",
                o.proc.node, o.at, c.kind, c.ring_id, c.members
            )),
            _ => None,
        })
        .collect()
}

/// Runs `seeds` and checks, for each:
/// * the EVS oracle passed and the ring of all `nodes` formed before the loss started;
/// * no configuration change while the loss lasted: no processor failed, so none may be seen;
/// * every message submitted under loss was delivered by every node within `max_ms`, and half
///   of the deliveries within `p50_ms`.
fn check(
    nodes: usize,
    loss: f64,
    load: Load,
    seeds: std::ops::Range<u64>,
    p50_ms: f64,
    max_ms: f64,
) {
    for seed in seeds {
        let r = run(nodes, loss, load, seed);
        r.assert_passed();
        let all: Vec<NodeId> = (1..=nodes as NodeId).collect();
        for n in 1..=nodes as NodeId {
            let before = r
                .events_of(n)
                .filter(|o| o.at < Instant::from_millis(LOSS_FROM_MS))
                .filter_map(|o| match &o.event {
                    Event::ConfigChange(c) if c.kind == ConfigKind::Regular => {
                        Some(c.members.clone())
                    }
                    _ => None,
                })
                .last();
            assert_eq!(
                before.as_ref(),
                Some(&all),
                "{}: n{n} not in the full ring before the loss",
                r.name
            );
        }
        let changes = config_changes_under_loss(&r, nodes);
        assert!(
            changes.is_empty(),
            "{}: configuration changes under loss alone:\n{}",
            r.name,
            changes.join("\n")
        );
        let lat = latencies(&r, nodes);
        assert!(
            lat.len() > 100 * nodes,
            "{}: only {} deliveries",
            r.name,
            lat.len()
        );
        let (p50, max) = (quantile(&lat, 0.5), quantile(&lat, 1.0));
        assert!(
            p50 <= p50_ms && max <= max_ms,
            "{}: delivery latency p50 {p50:.1} ms (bound {p50_ms}), p99 {:.1} ms, max {max:.1} ms (bound {max_ms})",
            r.name,
            quantile(&lat, 0.99),
        );
        // (Checked last: without the fix the stalled ring sent too little to lose much.)
        assert!(
            r.summary.net.lost > 1_000,
            "{}: the loss did happen: {:?}",
            r.name,
            r.summary.net
        );
    }
}

/// Prints the latency figures of many seeds (how the bounds above were chosen):
/// `cargo test --release -p totem-sim --test random_loss -- --ignored --nocapture`.
#[test]
#[ignore]
fn random_loss_latency_survey() {
    for nodes in [3, 5] {
        for loss in [0.1, 0.2] {
            for load in [Load::OneSender, Load::AllSenders] {
                let mut worst_p50 = 0.0f64;
                let mut worst_max = 0.0f64;
                let mut changes = 0;
                for seed in 1..=40 {
                    let r = run(nodes, loss, load, seed);
                    r.assert_passed();
                    changes += config_changes_under_loss(&r, nodes).len();
                    let lat = latencies(&r, nodes);
                    worst_p50 = worst_p50.max(quantile(&lat, 0.5));
                    worst_max = worst_max.max(quantile(&lat, 1.0));
                }
                println!(
                    "n={nodes} loss={loss} {load:?}: 40 seeds, worst p50 {worst_p50:.1} ms, worst max {worst_max:.1} ms, configuration changes {changes}"
                );
            }
        }
    }
}

// The bounds. Half of all deliveries within about ten rotations; every delivery well within
// Corosync's slow token retransmission (393 ms on 3 nodes, 702 ms on 5), which is what every
// lost token cost before: at 10% loss no message may wait even 200 ms. Measured over 40 seeds
// per case (`random_loss_latency_survey`): worst p50 1.9-10.6 ms and worst maximum 64-117 ms
// at 10% loss; worst p50 4.3-42 ms and worst maximum 110-315 ms at 20%. Before the fix every
// case failed: p50 94-3400 ms, maxima of 0.4-7.7 s.

#[test]
fn loss_10_percent_3_nodes_one_sender() {
    check(3, 0.1, Load::OneSender, 1..4, 15.0, 200.0);
}

#[test]
fn loss_10_percent_3_nodes_all_senders() {
    check(3, 0.1, Load::AllSenders, 1..4, 15.0, 200.0);
}

#[test]
fn loss_10_percent_5_nodes_one_sender() {
    check(5, 0.1, Load::OneSender, 1..4, 15.0, 200.0);
}

#[test]
fn loss_10_percent_5_nodes_all_senders() {
    check(5, 0.1, Load::AllSenders, 1..4, 15.0, 200.0);
}

#[test]
fn loss_20_percent_3_nodes_one_sender() {
    check(3, 0.2, Load::OneSender, 1..4, 60.0, 400.0);
}

#[test]
fn loss_20_percent_3_nodes_all_senders() {
    check(3, 0.2, Load::AllSenders, 1..4, 60.0, 400.0);
}

#[test]
fn loss_20_percent_5_nodes_one_sender() {
    check(5, 0.2, Load::OneSender, 1..4, 60.0, 400.0);
}

#[test]
fn loss_20_percent_5_nodes_all_senders() {
    check(5, 0.2, Load::AllSenders, 1..4, 60.0, 400.0);
}
