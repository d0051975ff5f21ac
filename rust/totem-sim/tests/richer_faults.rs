//! The fault kinds of issue 12's "richer simulator": each scenario shows that its fault takes
//! effect (the network's counters or the trace show the packets it affected) and that the run
//! still passes the EVS oracle and converges once the fault ends.

use std::time::Duration;

use totem::NodeId;
use totem_sim::net::Burst;
use totem_sim::workload::WorkloadParams;
use totem_sim::{Fault, RunResult, Scenario};

fn assert_converged_with(r: &RunResult, members: &[NodeId]) {
    r.assert_passed();
    assert!(r.converged.is_some(), "no convergence recorded");
    let live: Vec<NodeId> = r.live.iter().map(|p| p.node).collect();
    assert_eq!(live, members, "live processes at the end");
}

fn busy() -> WorkloadParams {
    WorkloadParams {
        mean_interval: Some(Duration::from_millis(10)),
        ..WorkloadParams::default()
    }
}

#[test]
fn burst_loss_on_every_link() {
    let all = vec![1, 2, 3, 4];
    let r = Scenario::new("burst_loss_on_every_link", 4)
        .workload(busy())
        .at_ms(
            1_000,
            Fault::BurstLoss {
                from: all.clone(),
                to: all.clone(),
                burst: Burst {
                    enter: 0.05,
                    exit: 0.2,
                    loss: 1.0,
                },
                duration: Duration::from_millis(3_000),
            },
        )
        .heal_at_ms(5_000)
        .run();
    assert_converged_with(&r, &all);
    let net = r.summary.net;
    assert!(net.burst_lost > 500, "{net:?}");
    assert_eq!(net.lost, net.burst_lost, "only the bursts lose: {net:?}");
}

#[test]
fn delays_over_100_ms_into_one_processor() {
    let all = vec![1, 2, 3, 4];
    let r = Scenario::new("delays_over_100_ms_into_one_processor", 4)
        .workload(busy())
        .at_ms(
            1_000,
            Fault::SlowLink {
                from: all.clone(),
                to: vec![3],
                min: Duration::from_millis(100),
                max: Duration::from_millis(800),
                duration: Duration::from_millis(2_000),
            },
        )
        .heal_at_ms(4_000)
        .run();
    assert_converged_with(&r, &all);
    assert!(r.summary.net.delayed > 100, "{:?}", r.summary.net);
}

#[test]
fn slow_receiver_with_a_bounded_buffer() {
    let all = vec![1, 2, 3, 4];
    let r = Scenario::new("slow_receiver_with_a_bounded_buffer", 4)
        .workload(WorkloadParams {
            mean_interval: Some(Duration::from_millis(10)),
            medium_fraction: 0.5,
            ..WorkloadParams::default()
        })
        .at_ms(
            1_000,
            Fault::Bandwidth {
                node: 2,
                bytes_per_sec: 200_000,
                buffer: 16 << 10,
                duration: Duration::from_millis(2_000),
            },
        )
        .heal_at_ms(4_000)
        .run();
    assert_converged_with(&r, &all);
    let net = r.summary.net;
    assert!(net.shaped > 100, "{net:?}");
    assert!(net.rx_overflow > 100, "{net:?}");
}

#[test]
fn busy_processor_falls_behind_and_catches_up() {
    let all = vec![1, 2, 3, 4];
    let r = Scenario::new("busy_processor_falls_behind_and_catches_up", 4)
        .workload(busy())
        .at_ms(
            1_000,
            Fault::Processing {
                node: 3,
                per_packet: Duration::from_millis(2),
                duration: Duration::from_millis(2_000),
            },
        )
        .at_ms(
            2_000,
            Fault::Pause {
                node: 3,
                duration: Duration::from_millis(150),
            },
        )
        .heal_at_ms(4_000)
        .run();
    assert_converged_with(&r, &all);
    let s = &r.summary;
    assert!(s.busy_waited > 200, "{s:?}");
}

#[test]
fn restart_alone_after_losing_the_persisted_ring_seq() {
    let all = vec![1, 2, 3, 4];
    let r = Scenario::new("restart_alone_after_losing_the_persisted_ring_seq", 4)
        .workload(busy())
        .at_ms(1_000, Fault::Partition(vec![vec![3], vec![1, 2, 4]]))
        .at_ms(1_200, Fault::CrashLosingDisk(3))
        .at_ms(1_500, Fault::Start(3))
        .at_ms(2_500, Fault::Heal)
        .at_ms(3_000, Fault::CrashLosingDisk(3))
        .at_ms(3_300, Fault::Start(3))
        .heal_at_ms(4_000)
        .run();
    assert_converged_with(&r, &all);
    assert_eq!(r.summary.restarts, 2);
    // Every incarnation of n3 installed rings of its own, and none repeats an earlier one's.
    let mut seen = std::collections::BTreeMap::new();
    for o in r.events_of(3) {
        if let totem::Event::ConfigChange(c) = &o.event {
            if c.kind == totem::ConfigKind::Regular {
                let first = seen.entry(c.ring_id).or_insert(o.proc.incarnation);
                assert_eq!(*first, o.proc.incarnation, "ring {} reused", c.ring_id);
            }
        }
    }
    let incarnations: std::collections::BTreeSet<u32> = seen.values().copied().collect();
    assert_eq!(incarnations.len(), 3, "{seen:?}");
}

fn crash_mid_send(accelerated_window: u32, after_token: bool) -> RunResult {
    Scenario::new("crash_mid_send", 4)
        .config(|c| c.accelerated_window = accelerated_window)
        .workload(WorkloadParams {
            mean_interval: Some(Duration::from_millis(5)),
            burst_chance: 0.1,
            ..WorkloadParams::default()
        })
        .at_ms(
            1_500,
            Fault::CrashMidSend {
                node: 2,
                after_token,
                fraction: 0.5,
            },
        )
        .at_ms(2_500, Fault::Start(2))
        .heal_at_ms(3_500)
        .run()
}

#[test]
fn crash_between_the_token_and_the_post_token_multicasts() {
    let r = crash_mid_send(17, true);
    assert_converged_with(&r, &[1, 2, 3, 4]);
    let [m] = &r.mid_send_crashes[..] else {
        panic!("{:?}", r.mid_send_crashes);
    };
    assert_eq!(m.proc.node, 2);
    // The token left, and some of the multicasts after it did not.
    assert!(m.sent > m.token && m.withheld > 0, "{m:?}");
}

#[test]
fn crash_part_way_through_the_multicasts_before_the_token() {
    let r = crash_mid_send(0, false);
    assert_converged_with(&r, &[1, 2, 3, 4]);
    let [m] = &r.mid_send_crashes[..] else {
        panic!("{:?}", r.mid_send_crashes);
    };
    // The token did not leave, nor everything before it.
    assert!(m.sent < m.token && m.withheld > 1, "{m:?}");
}

#[test]
fn clocks_that_drift_fast_and_slow() {
    let all = vec![1, 2, 3, 4];
    let r = Scenario::new("clocks_that_drift_fast_and_slow", 4)
        .workload(busy())
        .at_ms(
            0,
            Fault::ClockDrift {
                node: 2,
                ppm: 20_000,
            },
        )
        .at_ms(
            0,
            Fault::ClockDrift {
                node: 3,
                ppm: -20_000,
            },
        )
        .at_ms(1_000, Fault::Crash(4))
        .at_ms(2_000, Fault::Start(4))
        .heal_at_ms(3_000)
        .run();
    assert_converged_with(&r, &all);
    let end = r.summary.end.as_micros() as f64;
    let off: std::collections::BTreeMap<NodeId, i64> = r.clock_offsets.iter().copied().collect();
    assert!(
        (off[&2] as f64 - end * 0.02).abs() < 10.0,
        "{off:?} at {end}"
    );
    assert!(
        (off[&3] as f64 + end * 0.02).abs() < 10.0,
        "{off:?} at {end}"
    );
    assert_eq!((off[&1], off[&4]), (0, 0));
}

fn clock_jump(forward: bool) -> RunResult {
    Scenario::new("clock_jump", 4)
        .workload(busy())
        .at_ms(
            3_200,
            Fault::ClockJump {
                node: 3,
                forward,
                by: Duration::from_millis(3_000),
            },
        )
        .at_ms(
            3_500,
            Fault::ClockJump {
                node: 1,
                forward,
                by: Duration::from_millis(500),
            },
        )
        .at_ms(3_600, Fault::Crash(2))
        .heal_at_ms(5_000)
        .run()
}

#[test]
fn clocks_that_jump_forward() {
    let r = clock_jump(true);
    assert_converged_with(&r, &[1, 2, 3, 4]);
    let off: std::collections::BTreeMap<NodeId, i64> = r.clock_offsets.iter().copied().collect();
    assert_eq!((off[&3], off[&1]), (3_000_000, 500_000));
}

#[test]
fn clocks_that_jump_back() {
    let r = clock_jump(false);
    assert_converged_with(&r, &[1, 2, 3, 4]);
    let off: std::collections::BTreeMap<NodeId, i64> = r.clock_offsets.iter().copied().collect();
    assert_eq!((off[&3], off[&1]), (-3_000_000, -500_000));
}
