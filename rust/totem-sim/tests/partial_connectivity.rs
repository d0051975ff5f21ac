//! Membership under one-way and non-transitive connectivity, checked while the fault is active.
//!
//! Each scenario holds a fault for tens of seconds of simulated time. After a settling period
//! (token + consensus, several times over), every processor must stay in one configuration
//! (a bounded number of configurations per node for the rest of the fault) and keep
//! delivering its own messages within a bound; when the fault heals, everyone merges into one
//! ring. The oracle checks EVS throughout, as in every run. Classic and Accelerated Ring.
//!
//! `docs/protocol-notes.md`, "Membership under partial connectivity", explains the protocol
//! rules these scenarios exercise.

use std::collections::BTreeMap;
use std::time::Duration;

use totem::{ConfigKind, Event, Instant, NodeId};
use totem_sim::workload::WorkloadParams;
use totem_sim::{Fault, RunResult, Scenario};

const CUT_AT_MS: u64 = 1_000;
const HOLD_MS: u64 = 20_000;
/// The membership must have settled this long after the fault began (scenario timers: token
/// 200 ms, consensus 240 ms, join 40 ms).
const SETTLE_MS: u64 = 5_000;
/// Own messages submitted after the settling point must be delivered back within this bound.
const SELF_DELIVERY_BOUND_MS: u64 = 1_000;

struct Cut {
    name: &'static str,
    nodes: usize,
    faults: Vec<Fault>,
}

fn one_way(from: &[NodeId], to: &[NodeId]) -> Fault {
    Fault::OneWay {
        from: from.to_vec(),
        to: to.to_vec(),
    }
}

fn run(cut: &Cut, accelerated: bool) -> RunResult {
    let heal = CUT_AT_MS + HOLD_MS;
    let mut s = Scenario::new(cut.name, cut.nodes)
        .config(|c| c.accelerated_window = if accelerated { 17 } else { 0 })
        .workload(WorkloadParams {
            mean_interval: Some(Duration::from_millis(50)),
            ..WorkloadParams::default()
        })
        .heal_at_ms(heal);
    for f in &cut.faults {
        s = s.at_ms(CUT_AT_MS, f.clone());
    }
    s.run()
}

/// Regular configurations each node installed in `[from, to)` ms.
fn configs_between(r: &RunResult, from: u64, to: u64) -> BTreeMap<NodeId, usize> {
    let mut out = BTreeMap::new();
    for o in r.all_events() {
        if let Event::ConfigChange(c) = &o.event {
            if c.kind == ConfigKind::Regular
                && o.at >= Instant::from_millis(from)
                && o.at < Instant::from_millis(to)
            {
                *out.entry(o.proc.node).or_insert(0) += 1;
            }
        }
    }
    out
}

/// For each node: the largest delay between submitting one of its own messages in
/// `[from, to)` ms and delivering it itself (a message never delivered counts as delayed to
/// the end of the run).
fn worst_self_delivery(
    r: &RunResult,
    from: u64,
    to: u64,
    end: Instant,
) -> BTreeMap<NodeId, Duration> {
    let mut delivered = std::collections::HashMap::new();
    for o in r.all_events() {
        if let Event::Deliver(d) = &o.event {
            if d.sender == o.proc.node {
                delivered.insert((o.proc, d.msg_no), o.at);
            }
        }
    }
    let mut out = BTreeMap::new();
    for s in &r.submissions {
        if s.at < Instant::from_millis(from) || s.at >= Instant::from_millis(to) {
            continue;
        }
        let at = delivered
            .get(&(s.proc, s.id.msg_no))
            .copied()
            .unwrap_or(end);
        let d = at - s.at;
        let e = out.entry(s.proc.node).or_insert(Duration::ZERO);
        *e = (*e).max(d);
    }
    out
}

fn check(cut: &Cut) {
    for accelerated in [false, true] {
        let r = run(cut, accelerated);
        r.assert_passed();
        let settled = CUT_AT_MS + SETTLE_MS;
        let heal = CUT_AT_MS + HOLD_MS;
        let mode = if accelerated {
            "accelerated"
        } else {
            "classic"
        };
        let configs = configs_between(&r, settled, heal);
        for (node, n) in &configs {
            assert!(
                *n == 0,
                "{} ({mode}): n{node} installed {n} configurations in the {} s after the membership should have settled: {configs:?}",
                cut.name,
                (heal - settled) / 1000
            );
        }
        let end = Instant::from_millis(heal);
        let worst = worst_self_delivery(&r, settled, heal - SELF_DELIVERY_BOUND_MS, end);
        for node in 1..=cut.nodes as NodeId {
            let w = worst.get(&node).copied().unwrap_or(Duration::ZERO);
            assert!(
                w <= Duration::from_millis(SELF_DELIVERY_BOUND_MS),
                "{} ({mode}): n{node} waited {w:?} for one of its own messages during the fault (bound {SELF_DELIVERY_BOUND_MS} ms)",
                cut.name
            );
        }
        assert!(
            worst.len() == cut.nodes,
            "{} ({mode}): only {:?} submitted during the fault",
            cut.name,
            worst.keys().collect::<Vec<_>>()
        );
        assert_eq!(
            r.converged.map(|_| r.live.len()),
            Some(cut.nodes),
            "{} ({mode}): did not merge into one ring after the heal",
            cut.name
        );
    }
}

fn all(n: usize) -> Vec<NodeId> {
    (1..=n as NodeId).collect()
}

#[test]
fn one_link_cut_one_way() {
    for n in [3, 5, 9] {
        check(&Cut {
            name: "1->2 cut",
            nodes: n,
            faults: vec![one_way(&[1], &[2])],
        });
    }
}

#[test]
fn one_host_hears_nobody() {
    for n in [3, 5, 9] {
        check(&Cut {
            name: "{2..N}->1 cut",
            nodes: n,
            faults: vec![one_way(&all(n)[1..], &[1])],
        });
    }
}

#[test]
fn nobody_hears_one_host() {
    for n in [3, 5, 9] {
        check(&Cut {
            name: "1->{2..N} cut",
            nodes: n,
            faults: vec![one_way(&[1], &all(n)[1..])],
        });
    }
}

#[test]
fn halves_cut_one_way() {
    for n in [3, 5, 9] {
        let half = n / 2;
        let ids = all(n);
        check(&Cut {
            name: "first half -> second half cut",
            nodes: n,
            faults: vec![one_way(&ids[..half], &ids[half..])],
        });
    }
}

#[test]
fn two_hosts_cut_from_each_other() {
    for n in [3, 5, 9] {
        check(&Cut {
            name: "1<->2 cut, both reach the rest",
            nodes: n,
            faults: vec![one_way(&[1], &[2]), one_way(&[2], &[1])],
        });
    }
}
