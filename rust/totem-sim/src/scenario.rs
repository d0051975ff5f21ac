//! Hand-written runs for tests: a builder over [`Plan`] so that a scenario reads like a script.
//!
//! ```no_run
//! use totem_sim::{Fault, Scenario};
//! let r = Scenario::new("partition_into_two_then_merge", 5)
//!     .at_ms(1_000, Fault::Partition(vec![vec![1, 2], vec![3, 4, 5]]))
//!     .heal_at_ms(4_000)
//!     .run();
//! r.assert_passed();
//! ```
//!
//! Defaults: nodes `1..=n` all started at time zero, fixed small timers (token 200 ms, join
//! 40 ms, merge 50 ms, consensus derived), links of 100-300 µs with 100 µs of jitter and no
//! loss, the default random workload from every node, faults healed at 5 s. Every run records
//! its events and submissions for the test's own assertions, and the oracle checks it as always.
//! Set `TOTEM_SIM_TRACE=1` to print the plan and a full trace.

use std::time::Duration;

use totem::{Config, Instant, NodeId, State};

use crate::net::{LinkParams, NetParams};
use crate::oracle::MsgId;
use crate::plan::{convergence_deadline, Fault, Options, Plan, Scheduled, TraceMode};
use crate::rng::Rng;
use crate::sim::{run_plan, Observed, RunResult};
use crate::workload::WorkloadParams;

/// Small timers that keep scenario runs short and valid.
pub fn scenario_config() -> Config {
    Config {
        token: Duration::from_millis(200),
        token_coefficient: Duration::ZERO,
        join: Duration::from_millis(40),
        merge: Duration::from_millis(50),
        max_message_size: 64 << 10,
        send_queue_bytes: 1 << 20,
        ..Config::default()
    }
}

/// A scenario under construction.
#[derive(Clone, Debug)]
pub struct Scenario {
    plan: Plan,
    stop_submit_at: Option<Instant>,
    deadline: Option<Instant>,
    late: Vec<(NodeId, Instant)>,
    loss: f64,
    dup: f64,
    latency_us: (u64, u64),
}

impl Scenario {
    pub fn new(name: &str, nodes: usize) -> Self {
        let ids: Vec<NodeId> = (1..=nodes as NodeId).collect();
        Scenario::with_ids(name, &ids)
    }

    /// Nodes with the given ids (ascending).
    pub fn with_ids(name: &str, ids: &[NodeId]) -> Self {
        let config = scenario_config();
        Scenario {
            plan: Plan {
                name: name.to_string(),
                seed: 1,
                nodes: ids.to_vec(),
                config,
                net: NetParams::uniform(
                    ids,
                    LinkParams {
                        latency: Duration::ZERO,
                        jitter: Duration::from_micros(100),
                        loss: 0.0,
                        dup: 0.0,
                    },
                ),
                workload: WorkloadParams::default(),
                schedule: Vec::new(),
                heal_at: Instant::from_millis(5_000),
                stop_submit_at: Instant::ZERO,
                deadline: Instant::ZERO,
                stay_down: Vec::new(),
                base_ring_seq: 0,
                base_msg_no: 0,
                steady: Vec::new(),
            },
            stop_submit_at: None,
            deadline: None,
            late: Vec::new(),
            loss: 0.0,
            dup: 0.0,
            latency_us: (100, 300),
        }
    }

    /// Seed of every random stream (latencies, loss, workload, processors).
    pub fn seed(mut self, seed: u64) -> Self {
        self.plan.seed = seed;
        self
    }

    /// One-way latency of every link, drawn per link (from the seed) in `lo..=hi` µs.
    pub fn latency_us(mut self, lo: u64, hi: u64) -> Self {
        self.latency_us = (lo, hi);
        self
    }

    pub fn jitter_us(mut self, us: u64) -> Self {
        for l in self.plan.net.links.values_mut() {
            l.jitter = Duration::from_micros(us);
        }
        self
    }

    /// Loss probability of every link during the fault phase.
    pub fn loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    pub fn dup(mut self, p: f64) -> Self {
        self.dup = p;
        self
    }

    /// Adjusts the protocol configuration.
    pub fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.plan.config);
        self
    }

    pub fn workload(mut self, w: WorkloadParams) -> Self {
        self.plan.workload = w;
        self
    }

    /// Only scripted submissions.
    pub fn no_workload(self) -> Self {
        self.workload(WorkloadParams::none())
    }

    /// Only these nodes submit.
    pub fn senders(mut self, nodes: &[NodeId]) -> Self {
        self.plan.workload.senders = Some(nodes.to_vec());
        self
    }

    /// `fault` at `ms` milliseconds.
    pub fn at_ms(mut self, ms: u64, fault: Fault) -> Self {
        self.plan.schedule.push(Scheduled {
            at: Instant::from_millis(ms),
            fault,
        });
        self
    }

    /// `fault` at a precise instant.
    pub fn at(mut self, at: Instant, fault: Fault) -> Self {
        self.plan.schedule.push(Scheduled { at, fault });
        self
    }

    /// Crash `node` as soon as its `state()` is seen to be `state`, from `ms` on.
    pub fn crash_when_ms(self, ms: u64, node: NodeId, state: State) -> Self {
        self.at_ms(
            ms,
            Fault::CrashOnState {
                node,
                state,
                delay: Duration::ZERO,
            },
        )
    }

    /// `node` starts at `ms` instead of time zero.
    pub fn start_late_ms(mut self, node: NodeId, ms: u64) -> Self {
        self.late.push((node, Instant::from_millis(ms)));
        self
    }

    /// End of the fault phase.
    pub fn heal_at_ms(mut self, ms: u64) -> Self {
        self.plan.heal_at = Instant::from_millis(ms);
        self
    }

    /// End of the random workload (default: one second after the heal).
    pub fn stop_submit_at_ms(mut self, ms: u64) -> Self {
        self.stop_submit_at = Some(Instant::from_millis(ms));
        self
    }

    /// Convergence bound (default: derived from the timers, as for seeded runs).
    pub fn deadline_ms(mut self, ms: u64) -> Self {
        self.deadline = Some(Instant::from_millis(ms));
        self
    }

    /// Nodes not restarted at the heal.
    pub fn stay_down(mut self, nodes: &[NodeId]) -> Self {
        self.plan.stay_down = nodes.to_vec();
        self
    }

    /// From `from_ms` to `until_ms` the network is held as it is: the simulator checks that
    /// the membership has settled (S1), stays put (S2) and delivers every processor's own
    /// messages within `own_delivery_ms` (S3).
    pub fn steady_ms(mut self, from_ms: u64, until_ms: u64, own_delivery_ms: u64) -> Self {
        self.plan.steady.push(crate::plan::Steady {
            from: Instant::from_millis(from_ms),
            until: Instant::from_millis(until_ms),
            own_delivery: Duration::from_millis(own_delivery_ms),
        });
        self
    }

    /// Lowest ring sequence number handed to processors at start.
    pub fn base_ring_seq(mut self, seq: u64) -> Self {
        self.plan.base_ring_seq = seq;
        self
    }

    /// First message number of every node's first incarnation.
    pub fn base_msg_no(mut self, n: u64) -> Self {
        self.plan.base_msg_no = n;
        self
    }

    /// The finished plan.
    pub fn plan(&self) -> Plan {
        let mut plan = self.plan.clone();
        let mut rng = Rng::fork(plan.seed, "scenario-latency", 0);
        for l in plan.net.links.values_mut() {
            l.latency = Duration::from_micros(rng.range(self.latency_us.0, self.latency_us.1));
            l.loss = self.loss;
            l.dup = self.dup;
        }
        let mut starts: Vec<Scheduled> = plan
            .nodes
            .iter()
            .map(|&n| Scheduled {
                at: self
                    .late
                    .iter()
                    .find(|(m, _)| *m == n)
                    .map_or(Instant::ZERO, |(_, t)| *t),
                fault: Fault::Start(n),
            })
            .collect();
        starts.append(&mut plan.schedule);
        plan.schedule = starts;
        plan.schedule.sort_by_key(|s| s.at);
        plan.stop_submit_at = self
            .stop_submit_at
            .unwrap_or(plan.heal_at + Duration::from_millis(1_000));
        let last = plan
            .schedule
            .last()
            .map_or(plan.stop_submit_at, |s| s.at.max(plan.stop_submit_at));
        plan.deadline = self.deadline.unwrap_or_else(|| {
            convergence_deadline(&plan.config, plan.nodes.len(), last, Duration::from_secs(3))
        });
        plan
    }

    /// Runs the scenario (recording events and submissions).
    pub fn run(&self) -> RunResult {
        let plan = self.plan();
        if let Err(e) = plan.config.validate() {
            panic!("scenario {} has an invalid config: {e}", plan.name);
        }
        let print = std::env::var_os("TOTEM_SIM_TRACE").is_some_and(|v| v != "0");
        if print {
            print!("{plan}");
        }
        let opts = Options {
            trace: if print {
                TraceMode::Print
            } else {
                TraceMode::Off
            },
            record: true,
            ..Options::default()
        };
        run_plan(&plan, &opts)
    }
}

impl RunResult {
    /// Regular configurations `node` installed (all incarnations): ring id and members.
    pub fn regular_configs(&self, node: NodeId) -> Vec<(totem::RingId, Vec<NodeId>)> {
        self.events_of(node)
            .filter_map(|o| match &o.event {
                totem::Event::ConfigChange(c) if c.kind == totem::ConfigKind::Regular => {
                    Some((c.ring_id, c.members.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Messages `node` delivered, in order, with the time.
    pub fn deliveries(&self, node: NodeId) -> Vec<(Instant, MsgId)> {
        self.events_of(node)
            .filter_map(|o| match &o.event {
                totem::Event::Deliver(d) => Some((
                    o.at,
                    MsgId {
                        sender: d.sender,
                        msg_no: d.msg_no,
                    },
                )),
                _ => None,
            })
            .collect()
    }

    /// Every event of every process, for custom checks.
    pub fn all_events(&self) -> &[Observed] {
        &self.events
    }
}
