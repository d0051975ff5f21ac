//! A run's complete description: the *plan*. A seed expands into one (`Plan::from_seed`), a
//! scenario test writes one by hand (`crate::scenario`), and the simulator executes it.
//!
//! Everything that decides what happens in a run is in the plan or derived from its seed, and
//! `Display` prints all of it, so a failing seed's output says which faults it exercised.
//!
//! A run has three phases:
//! 1. *faults*, from time zero to `heal_at`: the schedule's faults happen;
//! 2. at `heal_at` every fault stops (partitions heal, loss stops, links unclog, paused nodes
//!    wake, state-triggered crashes are disarmed, crashed nodes restart unless in `stay_down`);
//! 3. *liveness*: the load continues until `stop_submit_at`; then the simulator waits for every
//!    live processor to settle in one ring and checks convergence, failing with D9 if that has
//!    not happened by `deadline`.

use std::fmt;
use std::time::Duration;

use evs_engine::EngineFaults;
use totem::wire::PacketType;
use totem::{Config, FaultInjection, Guarantee, Instant, NodeId, State};

use crate::net::{fmt_ms, fmt_nodes, Burst, DropRule, LinkParams, NetParams};
use crate::rng::Rng;
use crate::workload::WorkloadParams;

/// One thing that happens to the system at a scheduled time.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Starts a node: its first start, a late start, or a restart as a new incarnation after a
    /// crash or leave. Nothing happens if it is up.
    Start(NodeId),
    /// The node stops at once; its packets in flight still arrive.
    Crash(NodeId),
    /// The node leaves the ring on request (`Processor::leave`) and stops.
    Leave(NodeId),
    /// Cuts every link between different groups (nodes in no group form one more group).
    Partition(Vec<Vec<NodeId>>),
    /// Nodes in `to` stop hearing nodes in `from`; the other direction still works.
    OneWay { from: Vec<NodeId>, to: Vec<NodeId> },
    /// Links from every node of `from` to every node of `to` drop datagrams longer than `max`
    /// bytes (`None` lifts the limit): an MTU black hole. `Heal` lifts it too.
    SizeLimit {
        from: Vec<NodeId>,
        to: Vec<NodeId>,
        max: Option<usize>,
    },
    /// Restores every cut link and lifts every size limit.
    Heal,
    /// Packets on `from → to` take `extra` longer, for `duration`.
    Clog {
        from: NodeId,
        to: NodeId,
        extra: Duration,
        duration: Duration,
    },
    /// Drops packets matching a rule.
    Drop(DropRule),
    /// The node is descheduled for `duration`: no timers fire, packets wait, then everything is
    /// handled at once (the CPU starvation of totem-reference.md §8.1).
    Pause { node: NodeId, duration: Duration },
    /// Arms a one-shot trigger: crash `node` `delay` after its `state()` is seen to be `state`
    /// (checked after every call into it).
    CrashOnState {
        node: NodeId,
        state: State,
        delay: Duration,
    },
    /// Sets the loss probability of every link.
    SetLoss(f64),
    /// Sets the loss probability of the links from every node of `from` to every node of `to`.
    LinkLoss {
        from: Vec<NodeId>,
        to: Vec<NodeId>,
        loss: f64,
    },
    /// Correlated (Gilbert-Elliott) loss on the links from every node of `from` to every node
    /// of `to`, for `duration`.
    BurstLoss {
        from: Vec<NodeId>,
        to: Vec<NodeId>,
        burst: Burst,
        duration: Duration,
    },
    /// Every packet on the links from every node of `from` to every node of `to` takes an extra
    /// delay drawn from `min..max` (each its own, so they overtake each other), for `duration`.
    SlowLink {
        from: Vec<NodeId>,
        to: Vec<NodeId>,
        min: Duration,
        max: Duration,
        duration: Duration,
    },
    /// `node`'s receiving interface takes in `bytes_per_sec` and queues at most `buffer` bytes
    /// (its receive buffer); what arrives at a full buffer is dropped. For `duration`.
    Bandwidth {
        node: NodeId,
        bytes_per_sec: u64,
        buffer: usize,
        duration: Duration,
    },
    /// Processing time: for `duration`, `node` needs `per_packet` for every packet it handles;
    /// packets arriving meanwhile wait in its receive buffer (256 KiB; beyond it they are
    /// dropped) and its timers fire late.
    Processing {
        node: NodeId,
        per_packet: Duration,
        duration: Duration,
    },
    /// The node crashes and loses its persisted ring sequence number: its next start gets
    /// `Start::ring_seq` 0, as after a wiped disk, and so does every later one (a processor
    /// started with 0 persists 0: its history stays unknown).
    CrashLosingDisk(NodeId),
    /// Arms a one-shot trigger: the next call into `node` that passes the token crashes it in
    /// the middle of sending what that call produced. With `after_token` the token leaves and
    /// then `fraction` of what follows it (the Accelerated Ring's post-token multicasts);
    /// without, `fraction` of the multicasts before the token leave and the token does not.
    CrashMidSend {
        node: NodeId,
        after_token: bool,
        fraction: f64,
    },
    /// From now on the node's clock runs `ppm` parts per million fast (negative: slow); the
    /// processor's timers follow it. Lasts past the heal (clocks drift for good).
    ClockDrift { node: NodeId, ppm: i32 },
    /// The node's clock jumps `by` forward or back (it is no longer monotonic then).
    ClockJump {
        node: NodeId,
        forward: bool,
        by: Duration,
    },
    /// A scripted submission of `size` pseudo-random bytes.
    Submit {
        node: NodeId,
        size: usize,
        guarantee: Guarantee,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Start(n) => write!(f, "start n{n}"),
            Fault::Crash(n) => write!(f, "crash n{n}"),
            Fault::Leave(n) => write!(f, "leave n{n}"),
            Fault::Partition(groups) => {
                let g: Vec<String> = groups.iter().map(|g| fmt_nodes(g)).collect();
                write!(f, "partition {}", g.join(" | "))
            }
            Fault::OneWay { from, to } => {
                write!(f, "one-way cut {} ↛ {}", fmt_nodes(from), fmt_nodes(to))
            }
            Fault::SizeLimit { from, to, max } => match max {
                Some(m) => write!(
                    f,
                    "black hole {}→{}: datagrams over {m}B dropped",
                    fmt_nodes(from),
                    fmt_nodes(to)
                ),
                None => write!(f, "size limit lifted {}→{}", fmt_nodes(from), fmt_nodes(to)),
            },
            Fault::Heal => write!(f, "heal partitions"),
            Fault::Clog {
                from,
                to,
                extra,
                duration,
            } => write!(f, "clog n{from}→n{to} +{extra:?} for {duration:?}"),
            Fault::Drop(rule) => write!(f, "{rule}"),
            Fault::Pause { node, duration } => write!(f, "pause n{node} for {duration:?}"),
            Fault::CrashOnState { node, state, delay } => {
                write!(f, "crash n{node} {delay:?} after it is seen in {state:?}")
            }
            Fault::SetLoss(p) => write!(f, "loss {:.1}% on every link", p * 100.0),
            Fault::LinkLoss { from, to, loss } => write!(
                f,
                "loss {:.1}% on {}→{}",
                loss * 100.0,
                fmt_nodes(from),
                fmt_nodes(to)
            ),
            Fault::BurstLoss {
                from,
                to,
                burst,
                duration,
            } => write!(
                f,
                "burst loss {}→{} for {duration:?}: bad state entered w.p. {:.3}, left w.p. {:.3}, loses {:.0}%",
                fmt_nodes(from),
                fmt_nodes(to),
                burst.enter,
                burst.exit,
                burst.loss * 100.0
            ),
            Fault::SlowLink {
                from,
                to,
                min,
                max,
                duration,
            } => write!(
                f,
                "slow {}→{}: +{}..{} per packet for {duration:?}",
                fmt_nodes(from),
                fmt_nodes(to),
                fmt_ms(*min),
                fmt_ms(*max)
            ),
            Fault::Bandwidth {
                node,
                bytes_per_sec,
                buffer,
                duration,
            } => write!(
                f,
                "n{node} receives at {} KB/s with a {} KiB buffer for {duration:?}",
                bytes_per_sec / 1_000,
                buffer >> 10
            ),
            Fault::Processing {
                node,
                per_packet,
                duration,
            } => write!(
                f,
                "n{node} takes {}us per packet for {duration:?}",
                per_packet.as_micros()
            ),
            Fault::CrashLosingDisk(n) => write!(f, "crash n{n}, losing its persisted ring_seq"),
            Fault::ClockDrift { node, ppm } => write!(
                f,
                "n{node}'s clock runs {:.2}% {}",
                f64::from(ppm.unsigned_abs()) / 1e4,
                if *ppm >= 0 { "fast" } else { "slow" }
            ),
            Fault::ClockJump { node, forward, by } => write!(
                f,
                "n{node}'s clock jumps {} {}",
                if *forward { "forward" } else { "back" },
                fmt_ms(*by)
            ),
            Fault::CrashMidSend {
                node,
                after_token,
                fraction,
            } => write!(
                f,
                "crash n{node} in its next send of the token, {} ({:.0}% of them sent)",
                if *after_token {
                    "after the token, among the packets that follow it"
                } else {
                    "among the multicasts before the token"
                },
                fraction * 100.0
            ),
            Fault::Submit {
                node,
                size,
                guarantee,
            } => write!(f, "n{node} submits {size}B {guarantee:?}"),
        }
    }
}

/// A fault at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Scheduled {
    pub at: Instant,
    pub fault: Fault,
}

/// Fault kinds a random plan may use; the CLI's `--no-*` flags clear them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FaultKinds {
    pub loss: bool,
    pub dup: bool,
    pub crash: bool,
    pub leave: bool,
    pub partition: bool,
    pub one_way: bool,
    pub clog: bool,
    pub pause: bool,
    pub token_drop: bool,
    pub late_start: bool,
    pub burst: bool,
    pub slow_link: bool,
    pub bandwidth: bool,
    pub processing: bool,
    pub lost_disk: bool,
    pub crash_mid_send: bool,
    pub clock: bool,
}

impl FaultKinds {
    pub const ALL: FaultKinds = FaultKinds {
        loss: true,
        dup: true,
        crash: true,
        leave: true,
        partition: true,
        one_way: true,
        clog: true,
        pause: true,
        token_drop: true,
        late_start: true,
        burst: true,
        slow_link: true,
        bandwidth: true,
        processing: true,
        lost_disk: true,
        crash_mid_send: true,
        clock: true,
    };
    pub const NONE: FaultKinds = FaultKinds {
        loss: false,
        dup: false,
        crash: false,
        leave: false,
        partition: false,
        one_way: false,
        clog: false,
        pause: false,
        token_drop: false,
        late_start: false,
        burst: false,
        slow_link: false,
        bandwidth: false,
        processing: false,
        lost_disk: false,
        crash_mid_send: false,
        clock: false,
    };

    /// `(flag name, field)` pairs, for the CLI and for replay commands.
    pub fn flags(&mut self) -> [(&'static str, &mut bool); 17] {
        [
            ("loss", &mut self.loss),
            ("dup", &mut self.dup),
            ("crash", &mut self.crash),
            ("leave", &mut self.leave),
            ("partition", &mut self.partition),
            ("one-way", &mut self.one_way),
            ("clog", &mut self.clog),
            ("pause", &mut self.pause),
            ("token-drop", &mut self.token_drop),
            ("late-start", &mut self.late_start),
            ("burst", &mut self.burst),
            ("slow-link", &mut self.slow_link),
            ("bandwidth", &mut self.bandwidth),
            ("processing", &mut self.processing),
            ("lost-disk", &mut self.lost_disk),
            ("crash-mid-send", &mut self.crash_mid_send),
            ("clock", &mut self.clock),
        ]
    }
}

impl Default for FaultKinds {
    fn default() -> Self {
        FaultKinds::ALL
    }
}

/// How a run reports what it does.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum TraceMode {
    #[default]
    Off,
    /// Print every step to stdout as it happens (survives a panic).
    Print,
    /// Keep the lines in the result (for tests).
    Record,
}

/// What the caller asks of a seeded run (the CLI's flags).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// Number of processors; by default 2..=9 chosen by the seed.
    pub nodes: Option<usize>,
    pub faults: FaultKinds,
    /// Fixed loss probability on every link during the fault phase.
    pub loss: Option<f64>,
    /// Fixed duplication probability on every link.
    pub dup: Option<f64>,
    pub trace: TraceMode,
    /// Keep every event, submission and trace line in the result (tests).
    pub record: bool,
    /// Run the Accelerated Ring: every processor's `accelerated_window` is set from the seed
    /// (1..=max_messages), nothing else of the seed's plan changes. Without it the seed runs
    /// classic Totem (`accelerated_window` 0).
    pub accelerated: bool,
    /// Long-run mode: instead of many short overlapping faults, a sequence of connectivity
    /// faults (one-way cuts, non-transitive cuts, partitions, a crashed node) each held for
    /// tens of seconds, with little or no loss; after each fault's settling time a steady
    /// window in which the simulator checks S1-S3 (see [`Plan::steady`]).
    pub long: bool,
    /// With `long`: episodes follow each other until this many simulated minutes of faults
    /// have passed (instead of 3-6 episodes).
    pub minutes: Option<u64>,
    /// Deliberate protocol bugs to run with (`--inject`), to test the oracle: copied into
    /// every processor's configuration; nothing else of the seed's plan changes.
    pub inject: FaultInjection,
    /// Run every node's processor inside an `evs_engine::Engine`, with a workload of handles
    /// (opened and closed, joining and leaving groups, sending to joined and other groups),
    /// and check the group properties G1-G4 besides the EVS ones. Nothing else of the seed's
    /// plan changes.
    pub groups: bool,
    /// Deliberate service-layer bugs (`--inject group-...`, with `groups`), to test the group
    /// checker: switched on in every node's engine.
    pub engine_bugs: EngineFaults,
}

/// The service-layer bugs `--inject` knows, by name.
fn engine_bug<'a>(f: &'a mut EngineFaults, name: &str) -> Option<&'a mut bool> {
    Some(match name {
        "group-misroute" => &mut f.misroute,
        "group-drop-last-target" => &mut f.drop_last_target,
        "group-ignore-leaves" => &mut f.ignore_leaves,
        "group-keep-departed" => &mut f.keep_departed,
        "group-stale-report" => &mut f.stale_report,
        "group-silent-close" => &mut f.silent_close,
        _ => return None,
    })
}

/// Switches on the service-layer bug `--inject name` names; false if there is no such bug.
pub fn inject_engine_by_name(f: &mut EngineFaults, name: &str) -> bool {
    engine_bug(f, name).map(|flag| *flag = true).is_some()
}

/// The `--inject` names of the service-layer bugs switched on in `f`.
pub fn injected_engine_names(f: &EngineFaults) -> Vec<&'static str> {
    [
        (f.misroute, "group-misroute"),
        (f.drop_last_target, "group-drop-last-target"),
        (f.ignore_leaves, "group-ignore-leaves"),
        (f.keep_departed, "group-keep-departed"),
        (f.stale_report, "group-stale-report"),
        (f.silent_close, "group-silent-close"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect()
}

/// Switches on the bug `--inject name` names; false if there is no such bug.
pub fn inject_by_name(f: &mut FaultInjection, name: &str) -> bool {
    let flag = match name {
        "safe-as-agreed" => &mut f.safe_as_agreed,
        "safe-one-visit" => &mut f.safe_one_visit,
        "no-install-holdback" => &mut f.no_install_holdback,
        _ => return false,
    };
    *flag = true;
    true
}

/// The `--inject` names of the bugs switched on in `f`.
pub fn injected_names(f: &FaultInjection) -> Vec<&'static str> {
    [
        (f.safe_as_agreed, "safe-as-agreed"),
        (f.safe_one_visit, "safe-one-visit"),
        (f.no_install_holdback, "no-install-holdback"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect()
}

impl Options {
    /// The flags that reproduce this option set's plans (everything but trace and seeds).
    pub fn replay_args(&self) -> String {
        let mut out = String::new();
        if let Some(n) = self.nodes {
            out += &format!(" --nodes {n}");
        }
        let mut kinds = self.faults;
        for (name, on) in kinds.flags() {
            if !*on {
                out += &format!(" --no-{name}");
            }
        }
        if let Some(p) = self.loss {
            out += &format!(" --loss {p}");
        }
        if let Some(p) = self.dup {
            out += &format!(" --dup {p}");
        }
        if self.accelerated {
            out += " --accelerated";
        }
        if self.long {
            out += " --long";
        }
        if self.groups {
            out += " --groups";
        }
        if let Some(m) = self.minutes {
            out += &format!(" --minutes {m}");
        }
        for name in injected_names(&self.inject) {
            out += &format!(" --inject {name}");
        }
        for name in injected_engine_names(&self.engine_bugs) {
            out += &format!(" --inject {name}");
        }
        out
    }

    /// The command that replays `seed` with a full trace.
    pub fn replay_command(&self, seed: u64) -> String {
        format!(
            "cargo run --release -p totem-sim -- --seed {seed}{} --trace",
            self.replay_args()
        )
    }
}

/// Everything that decides a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Name shown in the header (the scenario's name, or "seed").
    pub name: String,
    /// Seed of every random stream of the run (network, workload, processors).
    pub seed: u64,
    /// Node ids, ascending.
    pub nodes: Vec<NodeId>,
    pub config: Config,
    pub net: NetParams,
    pub workload: WorkloadParams,
    /// Sorted by time; faults at the same time happen in list order.
    pub schedule: Vec<Scheduled>,
    pub heal_at: Instant,
    pub stop_submit_at: Instant,
    pub deadline: Instant,
    /// Nodes that are not restarted at `heal_at` if they are down then.
    pub stay_down: Vec<NodeId>,
    /// Lowest `Start::ring_seq` handed to a processor (the node's persisted value is used when
    /// higher).
    pub base_ring_seq: u64,
    /// First message number of incarnation 0; incarnation `i` starts at `base + (i << 40)` so
    /// that message ids never repeat across restarts.
    pub base_msg_no: u64,
    /// Windows in which the network is held as it is and the membership must have settled
    /// (properties S1-S3 of the oracle's list, checked by the simulator).
    pub steady: Vec<Steady>,
}

/// A window of a run in which no fault starts or ends: from `from` (the fault's start plus a
/// settling time) to `until` the membership must stay put and every processor must deliver
/// its own messages within `own_delivery`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Steady {
    pub from: Instant,
    pub until: Instant,
    pub own_delivery: Duration,
}

impl fmt::Display for Steady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "steady {}..{}: no reconfiguration, own messages back within {}",
            self.from,
            self.until,
            fmt_ms(self.own_delivery)
        )
    }
}

/// The convergence bound: after the faults stop, every live processor must be in one ring by
/// `heal_at + 4 × (token + consensus) + slack`, with the timers of a full ring. Four rounds
/// cover a token loss, a failed consensus round, and the two commit-token rotations plus
/// recovery of the round that succeeds.
pub fn convergence_deadline(
    config: &Config,
    nodes: usize,
    from: Instant,
    slack: Duration,
) -> Instant {
    let t = config.timeouts(nodes);
    from + (t.token + t.consensus) * 4 + slack
}

/// A pessimistic estimate of the bytes per second a ring of `nodes` can order: per rotation a
/// full window of full packets, or fewer when `max_messages` per member caps it, a rotation
/// taking one worst-case hop (latency plus all the jitter) per member, and every lost packet
/// sent again.
pub fn ring_capacity(config: &Config, net: &NetParams, nodes: usize) -> f64 {
    let worst = net
        .links
        .values()
        .map(|l| (l.latency + l.jitter).as_secs_f64() + 20e-6)
        .fold(20e-6, f64::max);
    let loss = net.links.values().map(|l| l.loss).fold(0.0, f64::max);
    let rotation = worst * nodes.max(1) as f64;
    let packets = config
        .window_size
        .min(config.max_messages.saturating_mul(nodes.max(1) as u32));
    let per_rotation = f64::from(packets) * config.payload_budget() as f64;
    per_rotation / rotation * (1.0 - loss) * (1.0 - loss)
}

/// Time to order, at `capacity`, everything the load may have queued by `until` had nothing
/// been delivered before, plus one burst per node: added to the liveness bound so that a ring
/// draining its backlog is not mistaken for a stuck one.
pub fn drain_time(
    w: &WorkloadParams,
    config: &Config,
    nodes: usize,
    capacity: f64,
    until: Instant,
) -> Duration {
    let Some(interval) = w.mean_interval else {
        return Duration::ZERO;
    };
    let mean = w.mean_size(config.max_message_size);
    let per_node = mean / interval.as_secs_f64().max(1e-6) * until.as_micros() as f64 / 1e6;
    let burst = if w.burst_chance > 0.0 {
        f64::from(w.burst_max) * mean
    } else {
        0.0
    };
    let queued = (per_node + burst).min(config.send_queue_bytes as f64) * nodes as f64;
    Duration::from_secs_f64(queued / capacity.max(1.0))
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl Plan {
    /// The plan of a seeded run.
    pub fn from_seed(seed: u64, opts: &Options) -> Plan {
        if opts.long {
            return Plan::from_seed_long(seed, opts);
        }
        let mut rng = Rng::fork(seed, "plan", 0);
        let n = opts
            .nodes
            .unwrap_or_else(|| rng.range(2, 9) as usize)
            .max(1);
        let nodes = seeded_nodes(&mut rng, n);
        let mut config = seeded_config(&mut rng, seed, opts);
        let kinds = opts.faults;

        // Network.
        let loss = opts.loss.unwrap_or_else(|| {
            if kinds.loss && rng.chance(0.6) {
                rng.unit() * 0.3
            } else {
                0.0
            }
        });
        let dup = opts.dup.unwrap_or_else(|| {
            if kinds.dup && rng.chance(0.5) {
                rng.unit() * 0.05
            } else {
                0.0
            }
        });
        let jitter = Duration::from_micros(*rng.pick(&[0, 50, 200, 1_000, 3_000]));
        let per_link_loss = opts.loss.is_none() && rng.chance(0.3);
        let mut net = NetParams::uniform(
            &nodes,
            LinkParams {
                latency: Duration::ZERO,
                jitter,
                loss,
                dup,
            },
        );
        for l in net.links.values_mut() {
            l.latency = Duration::from_micros(rng.range(50, 500));
            if per_link_loss {
                l.loss = rng.unit() * loss;
            }
        }

        // Load: a random rate, but never more than a third of what this ring can carry, so
        // that a backlog left by the faults drains within the liveness bound (an overloaded
        // ring is a workload problem, not a protocol one).
        let mut workload = WorkloadParams {
            mean_interval: Some(ms(rng.range(10, 60))),
            safe_fraction: *rng.pick(&[0.0, 0.2, 0.2, 0.2, 0.5]),
            burst_chance: *rng.pick(&[0.0, 0.01, 0.03]),
            ..WorkloadParams::default()
        };
        scale_timers(&mut config, &net, n);
        let capacity = cap_workload(&mut workload, &config, &net, n);

        // Phases.
        let heal_at = Instant::from_millis(rng.range(2_000, 6_000));
        let stop_submit_at = heal_at + ms(1_000);
        let deadline = convergence_deadline(&config, n, stop_submit_at, ms(3_000))
            + drain_time(&workload, &config, n, capacity, stop_submit_at);

        // Schedule.
        let mut schedule = Vec::new();
        let late = kinds.late_start && rng.chance(0.5);
        for &node in &nodes {
            let at = if late && rng.chance(0.3) {
                Instant::from_millis(rng.range(100, heal_at.as_micros() / 2000))
            } else {
                Instant::ZERO
            };
            schedule.push(Scheduled {
                at,
                fault: Fault::Start(node),
            });
        }
        let t_eff = config.timeouts(n).token;
        let mut events: Vec<EventKind> = Vec::new();
        let swarm = |rng: &mut Rng, on: bool| on && rng.chance(0.5);
        if swarm(&mut rng, kinds.crash) {
            events.push(EventKind::Crash);
            events.push(EventKind::CrashOnState);
        }
        if swarm(&mut rng, kinds.leave) {
            events.push(EventKind::Leave);
        }
        if swarm(&mut rng, kinds.partition && n >= 2) {
            events.push(EventKind::Partition);
        }
        if swarm(&mut rng, kinds.one_way && n >= 2) {
            events.push(EventKind::OneWay);
        }
        if swarm(&mut rng, kinds.clog && n >= 2) {
            events.push(EventKind::Clog);
        }
        if swarm(&mut rng, kinds.pause) {
            events.push(EventKind::Pause);
        }
        if swarm(&mut rng, kinds.token_drop && n >= 2) {
            events.push(EventKind::TokenDrop);
        }
        let mut stay_down = Vec::new();
        if !events.is_empty() {
            let mut g = Gen {
                rng: &mut rng,
                nodes: &nodes,
                heal_at,
                t_eff,
                at: Instant::ZERO,
                out: &mut schedule,
            };
            let mean_gap = g.rng.range(150, 800) as f64;
            loop {
                g.at = g.at + ms(g.rng.exp(mean_gap) as u64 + 1);
                if g.at + ms(50) >= heal_at {
                    break;
                }
                match *g.rng.pick(&events) {
                    EventKind::Crash => g.crash(),
                    EventKind::CrashOnState => g.crash_on_state(),
                    EventKind::Leave => g.leave(),
                    EventKind::Partition => g.partition(),
                    EventKind::OneWay => g.one_way(),
                    EventKind::Clog => g.clog(),
                    EventKind::Pause => g.pause(),
                    EventKind::TokenDrop => g.token_drop(),
                }
            }
            if kinds.crash || kinds.leave {
                for &node in &nodes {
                    if rng.chance(0.15) {
                        stay_down.push(node);
                    }
                }
                if stay_down.len() == nodes.len() {
                    stay_down.pop();
                }
            }
        }
        more_faults(seed, kinds, &nodes, heal_at, &mut schedule);
        schedule.sort_by_key(|s| s.at);

        let plan = Plan {
            name: "seed".into(),
            seed,
            nodes,
            config,
            net,
            workload,
            schedule,
            heal_at,
            stop_submit_at,
            deadline,
            stay_down,
            base_ring_seq: seeded_base_ring_seq(seed),
            base_msg_no: 0,
            steady: Vec::new(),
        };
        debug_assert!(plan.config.validate().is_ok());
        plan
    }
}

impl Plan {
    /// The plan of a seeded long run (`Options::long`): 3 to 6 episodes, each one fault held
    /// for its settling time plus 3-15 s, then healed when the next begins.
    fn from_seed_long(seed: u64, opts: &Options) -> Plan {
        let mut rng = Rng::fork(seed, "long-plan", 0);
        let n = opts
            .nodes
            .unwrap_or_else(|| rng.range(3, 9) as usize)
            .max(2);
        let nodes = seeded_nodes(&mut rng, n);
        let mut config = seeded_config(&mut rng, seed, opts);
        // Little or no loss: the steady windows assert that nothing reconfigures.
        let loss = opts.loss.unwrap_or_else(|| {
            if rng.chance(0.5) {
                0.0
            } else {
                rng.unit() * 0.02
            }
        });
        let dup = opts.dup.unwrap_or_else(|| {
            if rng.chance(0.5) {
                0.0
            } else {
                rng.unit() * 0.02
            }
        });
        let jitter = Duration::from_micros(*rng.pick(&[0, 50, 200, 1_000]));
        let mut net = NetParams::uniform(
            &nodes,
            LinkParams {
                latency: Duration::ZERO,
                jitter,
                loss,
                dup,
            },
        );
        for l in net.links.values_mut() {
            l.latency = Duration::from_micros(rng.range(50, 500));
        }
        let mut workload = WorkloadParams {
            mean_interval: Some(ms(rng.range(20, 80))),
            safe_fraction: *rng.pick(&[0.0, 0.2, 0.5]),
            burst_chance: 0.0,
            ..WorkloadParams::default()
        };
        scale_timers(&mut config, &net, n);
        let capacity = cap_workload(&mut workload, &config, &net, n);

        // A fault is noticed within a token timeout, and the rounds that exclude the processors
        // behind it take a few consensus periods each; the settling time covers several.
        let t = config.timeouts(n);
        let round = t.token + t.consensus;
        let settle = round * 8 + config.join * 4;
        let own_delivery = round * 2 + ms(500);
        // A black hole is noticed only once a processor's aru has been stuck for
        // `fail_recv_const` rotations of a ring that is never held (someone misses a message).
        let slowest_link = net
            .links
            .values()
            .map(|l| l.latency + l.jitter)
            .max()
            .unwrap_or_default();
        let stuck_rotations = slowest_link * n as u32 * config.fail_recv_const;
        let settle_black_hole = settle * 2 + stuck_rotations * 2;

        let mut schedule: Vec<Scheduled> = nodes
            .iter()
            .map(|&node| Scheduled {
                at: Instant::ZERO,
                fault: Fault::Start(node),
            })
            .collect();
        let mut steady = Vec::new();
        let mut at = Instant::from_millis(rng.range(500, 2_000));
        let mut down: Option<NodeId> = None;
        let episodes = rng.range(3, 6);
        let fault_end = opts
            .minutes
            .map(|m| at + Duration::from_secs(m.saturating_mul(60)));
        let mut g = Gen {
            rng: &mut rng,
            nodes: &nodes,
            heal_at: Instant::from_micros(u64::MAX),
            t_eff: t.token,
            at,
            out: &mut schedule,
        };
        let mut episode = 0;
        while fault_end.map_or(episode < episodes, |end| at < end) {
            episode += 1;
            g.at = at;
            g.push(Duration::ZERO, Fault::Heal);
            if let Some(node) = down.take() {
                g.push(Duration::ZERO, Fault::Start(node));
            }
            let mut episode_settle = settle;
            match g.rng.below(6) {
                0 => {}
                5 => {
                    g.black_hole_held(config.max_packet_size);
                    episode_settle = settle_black_hole;
                }
                1 => g.one_way_held(),
                2 => g.non_transitive(),
                3 => {
                    if let Some(groups) = g.groups() {
                        g.push(Duration::ZERO, Fault::Partition(groups));
                    }
                }
                _ => {
                    g.one_way_held();
                    if g.rng.chance(0.5) {
                        let node = g.node();
                        g.push(Duration::ZERO, Fault::Crash(node));
                        down = Some(node);
                    }
                }
            }
            let len = episode_settle + ms(g.rng.range(3_000, 15_000));
            steady.push(Steady {
                from: at + episode_settle,
                until: at + len,
                own_delivery,
            });
            at = at + len;
        }
        schedule.sort_by_key(|s| s.at);
        let heal_at = at;
        let stop_submit_at = heal_at + ms(1_000);
        let deadline = convergence_deadline(&config, n, stop_submit_at, ms(3_000))
            + drain_time(&workload, &config, n, capacity, stop_submit_at);
        Plan {
            name: "long".into(),
            seed,
            nodes,
            config,
            net,
            workload,
            schedule,
            heal_at,
            stop_submit_at,
            deadline,
            stay_down: Vec::new(),
            base_ring_seq: seeded_base_ring_seq(seed),
            base_msg_no: 0,
            steady,
        }
    }
}

/// `n` node ids: `1..=n`, or (half the time) sparse ids from 1..=250, because the protocol must
/// not assume ids are dense or start at 1.
fn seeded_nodes(rng: &mut Rng, n: usize) -> Vec<NodeId> {
    if rng.chance(0.5) {
        (1..=n as NodeId).collect()
    } else {
        let mut all: Vec<NodeId> = (1..=250).collect();
        rng.shuffle(&mut all);
        sorted(all[..n].to_vec())
    }
}

/// A random valid configuration, classic Totem unless `opts.accelerated`. The window comes from
/// the seed alone, so the plan's random streams (and so the rest of the plan) are the same in
/// both modes.
fn seeded_config(rng: &mut Rng, seed: u64, opts: &Options) -> Config {
    let mut config = random_config(rng);
    config.accelerated_window = if opts.accelerated {
        let mix = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        1 + (mix % u64::from(config.max_messages.max(1))) as u32
    } else {
        0
    };
    config.faults = opts.inject;
    config
}

/// The ring sequence number every processor's disk holds when a seeded run starts: 0 (a
/// first start: the processors number their rings with random steps) for half the seeds, a
/// persisted or clock-derived value (plain steps of 4) for the other half. Drawn from a stream
/// of its own, so the rest of the plan does not move.
fn seeded_base_ring_seq(seed: u64) -> u64 {
    let mut rng = Rng::fork(seed, "base_ring_seq", 0);
    if rng.chance(0.5) {
        0
    } else {
        rng.range(1, 1 << 40)
    }
}

/// Rotations of the slowest token path the effective token timeout covers.
pub const TOKEN_ROTATIONS: u32 = 3;

/// The longest a token rotation of `n` processors may take without loss: every hop at its
/// link's worst latency plus all of its jitter.
pub fn worst_rotation(net: &NetParams, n: usize) -> Duration {
    let hop = net
        .links
        .values()
        .map(|l| l.latency + l.jitter)
        .max()
        .unwrap_or_default();
    hop * n as u32
}

/// Scales the token timeout with the ring size the way an operator would: through
/// `token_coefficient` (Corosync's token timeout is token + (nodes - 2) × token_coefficient),
/// raised until the effective timeout covers [`TOKEN_ROTATIONS`] of the slowest rotation.
/// Without it a large ring's token timeout can be shorter than one rotation (96 processors:
/// 122 ms against about 170 ms), and every rotation looks like a token loss to someone: the
/// harness's fault, not the protocol's. Small rings already have room (9 × 3.5 ms × 3 is below
/// the smallest token of 100 ms), so their plans are unchanged; no random draw is made.
fn scale_timers(config: &mut Config, net: &NetParams, n: usize) {
    if n < 3 {
        return;
    }
    let need = worst_rotation(net, n) * TOKEN_ROTATIONS;
    let have = config.effective_token(n);
    if have >= need {
        return;
    }
    let per_node = (need - config.token).as_micros().div_ceil((n - 2) as u128);
    let per_node_ms = per_node.div_ceil(1_000) as u64;
    config.token_coefficient = config.token_coefficient.max(ms(per_node_ms));
    debug_assert!(config.effective_token(n) >= need);
}

/// Caps the load at a third of what the ring can carry, so that a backlog left by the faults
/// drains within the liveness bound (an overloaded ring is a workload problem, not a protocol
/// one); returns the ring's capacity.
fn cap_workload(w: &mut WorkloadParams, config: &Config, net: &NetParams, n: usize) -> f64 {
    let capacity = ring_capacity(config, net, n);
    let mean_size = w.mean_size(config.max_message_size);
    let min_interval = Duration::from_secs_f64(n as f64 * mean_size / (capacity / 3.0));
    w.mean_interval = w.mean_interval.map(|i| i.max(min_interval));
    capacity
}

/// Timers small enough for fast runs but valid (Config::validate), varied by seed so that the
/// protocol is tested away from its defaults too.
fn random_config(rng: &mut Rng) -> Config {
    let token = ms(rng.range(100, 300));
    let window_size = if rng.chance(0.7) {
        50
    } else {
        rng.range(5, 200) as u32
    };
    let max_messages = if rng.chance(0.7) {
        17.min(window_size)
    } else {
        rng.range(1, u64::from(window_size)) as u32
    };
    let config = Config {
        token,
        token_coefficient: if rng.chance(0.5) {
            Duration::ZERO
        } else {
            ms(rng.range(10, 50))
        },
        token_retransmits_before_loss_const: if rng.chance(0.7) {
            4
        } else {
            rng.range(2, 6) as u32
        },
        join: ms(rng.range(30, 60)),
        send_join: if rng.chance(0.8) {
            Duration::ZERO
        } else {
            ms(rng.range(1, 20))
        },
        merge: ms(rng.range(30, 60)),
        seqno_unchanged_const: if rng.chance(0.6) {
            30
        } else {
            rng.range(3, 50) as u32
        },
        miss_count_const: if rng.chance(0.6) {
            5
        } else {
            rng.range(1, 10) as u32
        },
        fail_recv_const: if rng.chance(0.8) {
            2500
        } else {
            rng.range(50, 1000) as u32
        },
        window_size,
        max_messages,
        max_packet_size: if rng.chance(0.8) {
            1400
        } else {
            rng.range(400, 1400) as usize
        },
        max_message_size: 64 << 10,
        send_queue_bytes: *rng.pick(&[64 << 10, 128 << 10, 256 << 10, 1 << 20]),
        // Sometimes every ring starts just below 2^32, so sequence numbers cross it.
        initial_seq: if rng.chance(0.2) {
            u64::from(u32::MAX) - rng.range(0, 2_000)
        } else {
            0
        },
        ..Config::default()
    };
    if let Err(e) = config.validate() {
        panic!("simulator chose an invalid config: {e}: {config:?}");
    }
    config
}

/// The fault kinds added after the first ones, drawn from a stream of their own ("more-faults")
/// so that the faults of the earlier kinds, and everything else of a seed's plan, stay what
/// they were: each kind is enabled or not per seed (swarm testing), then its episodes are
/// drawn at random times of the fault phase.
fn more_faults(
    seed: u64,
    kinds: FaultKinds,
    nodes: &[NodeId],
    heal_at: Instant,
    schedule: &mut Vec<Scheduled>,
) {
    let mut rng = Rng::fork(seed, "more-faults", 0);
    let n = nodes.len();
    let mut events: Vec<MoreKind> = Vec::new();
    let mut swarm = |on: bool, kind: MoreKind| {
        if rng.chance(0.5) && on {
            events.push(kind);
        }
    };
    swarm(kinds.burst && n >= 2, MoreKind::Burst);
    swarm(kinds.slow_link && n >= 2, MoreKind::SlowLink);
    swarm(kinds.bandwidth && n >= 2, MoreKind::Bandwidth);
    swarm(kinds.processing, MoreKind::Processing);
    swarm(kinds.lost_disk, MoreKind::LostDisk);
    swarm(kinds.crash_mid_send && n >= 2, MoreKind::CrashMidSend);
    swarm(kinds.clock, MoreKind::Clock);
    if events.is_empty() {
        return;
    }
    let mut g = Gen {
        rng: &mut rng,
        nodes,
        heal_at,
        t_eff: Duration::ZERO,
        at: Instant::ZERO,
        out: schedule,
    };
    let mean_gap = g.rng.range(400, 1_500) as f64;
    loop {
        g.at = g.at + ms(g.rng.exp(mean_gap) as u64 + 1);
        if g.at + ms(50) >= heal_at {
            break;
        }
        match *g.rng.pick(&events) {
            MoreKind::Burst => g.burst(),
            MoreKind::SlowLink => g.slow_link(),
            MoreKind::Bandwidth => g.bandwidth(),
            MoreKind::Processing => g.processing(),
            MoreKind::LostDisk => g.lost_disk(),
            MoreKind::CrashMidSend => g.crash_mid_send(),
            MoreKind::Clock => g.clock(),
        }
    }
}

#[derive(Copy, Clone, Debug)]
enum MoreKind {
    Burst,
    SlowLink,
    Bandwidth,
    Processing,
    LostDisk,
    CrashMidSend,
    Clock,
}

/// Fault episodes a seed may draw from.
#[derive(Copy, Clone, Debug)]
enum EventKind {
    Crash,
    CrashOnState,
    Leave,
    Partition,
    OneWay,
    Clog,
    Pause,
    TokenDrop,
}

/// Random fault generation, one episode at a time.
struct Gen<'a> {
    rng: &'a mut Rng,
    nodes: &'a [NodeId],
    heal_at: Instant,
    t_eff: Duration,
    at: Instant,
    out: &'a mut Vec<Scheduled>,
}

impl Gen<'_> {
    fn push(&mut self, after: Duration, fault: Fault) {
        let at = self.at + after;
        // Anything that would happen after the heal is the heal's job.
        if at < self.heal_at {
            self.out.push(Scheduled { at, fault });
        }
    }

    fn node(&mut self) -> NodeId {
        *self.rng.pick(self.nodes)
    }

    /// Two or three non-empty groups.
    fn groups(&mut self) -> Option<Vec<Vec<NodeId>>> {
        let k = self.rng.range(2, 3.min(self.nodes.len() as u64)) as usize;
        let mut groups = vec![Vec::new(); k];
        for &n in self.nodes {
            groups[self.rng.below(k as u64) as usize].push(n);
        }
        groups.retain(|g| !g.is_empty());
        (groups.len() >= 2).then_some(groups)
    }

    fn crash(&mut self) {
        let n = self.node();
        self.push(Duration::ZERO, Fault::Crash(n));
        if self.rng.chance(0.6) {
            let back = ms(self.rng.range(100, 2_000));
            self.push(back, Fault::Start(n));
        }
    }

    fn crash_on_state(&mut self) {
        let node = self.node();
        let state = *self
            .rng
            .pick(&[State::Gather, State::Commit, State::Recovery]);
        let delay = if self.rng.chance(0.5) {
            Duration::ZERO
        } else {
            Duration::from_micros(self.rng.range(0, 5_000))
        };
        self.push(Duration::ZERO, Fault::CrashOnState { node, state, delay });
        // Unknown when it fires; a restart later often finds it down.
        if self.rng.chance(0.6) {
            let back = ms(self.rng.range(500, 2_500));
            self.push(back, Fault::Start(node));
        }
    }

    fn leave(&mut self) {
        let n = self.node();
        self.push(Duration::ZERO, Fault::Leave(n));
        if self.rng.chance(0.4) {
            let back = ms(self.rng.range(300, 2_000));
            self.push(back, Fault::Start(n));
        }
    }

    fn partition(&mut self) {
        if let Some(groups) = self.groups() {
            self.push(Duration::ZERO, Fault::Partition(groups));
            let len = ms(self.rng.range(200, 2_500));
            self.push(len, Fault::Heal);
        }
    }

    fn one_way(&mut self) {
        let mut v = self.nodes.to_vec();
        self.rng.shuffle(&mut v);
        let k = self.rng.range(1, v.len() as u64 - 1) as usize;
        let from = sorted(v[..k].to_vec());
        let rest = &v[k..];
        let m = self.rng.range(1, rest.len() as u64) as usize;
        let to = sorted(rest[..m].to_vec());
        self.push(Duration::ZERO, Fault::OneWay { from, to });
        let len = ms(self.rng.range(200, 2_500));
        self.push(len, Fault::Heal);
    }

    fn clog(&mut self) {
        let from = self.node();
        let mut to = self.node();
        while to == from {
            to = self.node();
        }
        let extra = ms(self.rng.range(10, 100));
        let duration = ms(self.rng.range(50, 1_500));
        self.push(
            Duration::ZERO,
            Fault::Clog {
                from,
                to,
                extra,
                duration,
            },
        );
    }

    fn pause(&mut self) {
        let node = self.node();
        let max = (self.t_eff.as_millis() as u64 * 2).max(20);
        let duration = ms(self.rng.range(10, max));
        self.push(Duration::ZERO, Fault::Pause { node, duration });
    }

    /// A one-way cut held until the next heal: some processors stop hearing others.
    fn one_way_held(&mut self) {
        let mut v = self.nodes.to_vec();
        self.rng.shuffle(&mut v);
        let k = self.rng.range(1, v.len() as u64 - 1) as usize;
        let from = sorted(v[..k].to_vec());
        let rest = &v[k..];
        let m = self.rng.range(1, rest.len() as u64) as usize;
        let to = sorted(rest[..m].to_vec());
        self.push(Duration::ZERO, Fault::OneWay { from, to });
    }

    /// An MTU black hole held until the next heal: datagrams over `max` bytes are lost into one
    /// processor, out of one, on one link, or from some processors to others; smaller ones
    /// (tokens, small multicasts) pass. `max` stays above what a commit token of the ring
    /// needs, so that the ring can still form where the links carry full-size datagrams.
    fn black_hole_held(&mut self, max_packet_size: usize) {
        let low = (max_packet_size / 2).max(350);
        let max = if low + 1 >= max_packet_size {
            low
        } else {
            self.rng.range(low as u64, max_packet_size as u64 - 1) as usize
        };
        let mut v = self.nodes.to_vec();
        self.rng.shuffle(&mut v);
        let (from, to) = match self.rng.below(4) {
            0 => (v[1..].to_vec(), vec![v[0]]),
            1 => (vec![v[0]], v[1..].to_vec()),
            2 => (vec![v[0]], vec![v[1]]),
            _ => {
                let k = self.rng.range(1, v.len() as u64 - 1) as usize;
                (v[..k].to_vec(), v[k..].to_vec())
            }
        };
        self.push(
            Duration::ZERO,
            Fault::SizeLimit {
                from: sorted(from),
                to: sorted(to),
                max: Some(max),
            },
        );
    }

    /// One to three pairs of processors cut from each other both ways, each still reaching
    /// the others: connectivity that is not transitive.
    fn non_transitive(&mut self) {
        let pairs = self.rng.range(1, 3);
        for _ in 0..pairs {
            let a = self.node();
            let b = self.node();
            if a != b {
                self.push(
                    Duration::ZERO,
                    Fault::OneWay {
                        from: vec![a],
                        to: vec![b],
                    },
                );
                self.push(
                    Duration::ZERO,
                    Fault::OneWay {
                        from: vec![b],
                        to: vec![a],
                    },
                );
            }
        }
    }

    /// Correlated loss for 0.2-3 s, on one link (sometimes both ways), out of one processor,
    /// or on every link.
    fn burst(&mut self) {
        let burst = Burst {
            enter: 0.005 + self.rng.unit() * 0.1,
            exit: 0.05 + self.rng.unit() * 0.45,
            loss: 0.5 + self.rng.unit() * 0.5,
        };
        let duration = ms(self.rng.range(200, 3_000));
        let a = self.node();
        let mut b = self.node();
        while b == a {
            b = self.node();
        }
        let all = self.nodes.to_vec();
        let paths: Vec<(Vec<NodeId>, Vec<NodeId>)> = match self.rng.below(4) {
            0 => vec![(vec![a], vec![b])],
            1 => vec![(vec![a], vec![b]), (vec![b], vec![a])],
            2 => vec![(vec![a], all)],
            _ => vec![(all.clone(), all)],
        };
        for (from, to) in paths {
            self.push(
                Duration::ZERO,
                Fault::BurstLoss {
                    from,
                    to,
                    burst,
                    duration,
                },
            );
        }
    }

    /// Delays over 100 ms: for 0.3-3 s every packet on one link, one link both ways, out of
    /// one processor or into one takes 100-800 ms more, drawn per packet (so they reorder).
    fn slow_link(&mut self) {
        let min = ms(self.rng.range(100, 400));
        let max = (min + ms(self.rng.range(50, 500))).min(ms(800));
        let duration = ms(self.rng.range(300, 3_000));
        let a = self.node();
        let mut b = self.node();
        while b == a {
            b = self.node();
        }
        let all = self.nodes.to_vec();
        let paths: Vec<(Vec<NodeId>, Vec<NodeId>)> = match self.rng.below(4) {
            0 => vec![(vec![a], vec![b])],
            1 => vec![(vec![a], vec![b]), (vec![b], vec![a])],
            2 => vec![(vec![a], all)],
            _ => vec![(all, vec![a])],
        };
        for (from, to) in paths {
            self.push(
                Duration::ZERO,
                Fault::SlowLink {
                    from,
                    to,
                    min,
                    max,
                    duration,
                },
            );
        }
    }

    /// A receiving interface of 0.2-20 MB/s with a 64-256 KiB buffer, for 0.3-3 s: a node
    /// falls behind a busy ring, and a burst of full packets overflows its buffer.
    fn bandwidth(&mut self) {
        let node = self.node();
        let bytes_per_sec = *self
            .rng
            .pick(&[200_000, 1_000_000, 2_000_000, 5_000_000, 20_000_000]);
        let buffer = *self.rng.pick(&[64 << 10, 128 << 10, 256 << 10]);
        let duration = ms(self.rng.range(300, 3_000));
        self.push(
            Duration::ZERO,
            Fault::Bandwidth {
                node,
                bytes_per_sec,
                buffer,
                duration,
            },
        );
    }

    /// A busy processor for 0.5-3 s: 20 us to 2 ms per packet (it falls behind a busy ring
    /// and its receive buffer fills), sometimes with a stall (a pause of 20-300 ms) in the
    /// middle.
    fn processing(&mut self) {
        let node = self.node();
        let per_packet = Duration::from_micros(*self.rng.pick(&[20, 100, 300, 1_000, 2_000]));
        let duration = ms(self.rng.range(500, 3_000));
        self.push(
            Duration::ZERO,
            Fault::Processing {
                node,
                per_packet,
                duration,
            },
        );
        if self.rng.chance(0.3) {
            let after = ms(self.rng.range(0, duration.as_millis() as u64));
            let stall = ms(self.rng.range(20, 300));
            self.push(
                after,
                Fault::Pause {
                    node,
                    duration: stall,
                },
            );
        }
    }

    /// A crash that loses the persisted ring sequence number, mostly followed by a restart
    /// 0.1-2 s later (otherwise the heal restarts it).
    fn lost_disk(&mut self) {
        let n = self.node();
        self.push(Duration::ZERO, Fault::CrashLosingDisk(n));
        if self.rng.chance(0.7) {
            let back = ms(self.rng.range(100, 2_000));
            self.push(back, Fault::Start(n));
        }
    }

    /// A crash in the middle of a send of the token, mostly followed by a restart 0.1-2 s
    /// later.
    fn crash_mid_send(&mut self) {
        let node = self.node();
        let after_token = self.rng.chance(0.6);
        let fraction = self.rng.unit();
        self.push(
            Duration::ZERO,
            Fault::CrashMidSend {
                node,
                after_token,
                fraction,
            },
        );
        if self.rng.chance(0.6) {
            let back = ms(self.rng.range(100, 2_000));
            self.push(back, Fault::Start(node));
        }
    }

    /// A clock fault: a drift of 0.5-2 % fast or slow (from then on), or a jump forward or
    /// back by 10 ms to 3 s.
    fn clock(&mut self) {
        let node = self.node();
        if self.rng.chance(0.5) {
            let ppm = self.rng.range(5_000, 20_000) as i32;
            let ppm = if self.rng.chance(0.5) { ppm } else { -ppm };
            self.push(Duration::ZERO, Fault::ClockDrift { node, ppm });
        } else {
            let forward = self.rng.chance(0.5);
            let by = ms(*self.rng.pick(&[10, 100, 500, 1_000, 3_000]));
            self.push(Duration::ZERO, Fault::ClockJump { node, forward, by });
        }
    }

    fn token_drop(&mut self) {
        let kinds: &[PacketType] = match self.rng.below(3) {
            0 => &[PacketType::OrfToken],
            1 => &[PacketType::CommitToken],
            _ => &[PacketType::OrfToken, PacketType::CommitToken],
        };
        let mut rule = DropRule::all()
            .kinds(kinds)
            .count(self.rng.range(1, 8) as u32);
        if self.rng.chance(0.5) {
            let n = self.node();
            rule = rule.to(&[n]);
        }
        self.push(Duration::ZERO, Fault::Drop(rule));
    }
}

fn sorted(mut v: Vec<NodeId>) -> Vec<NodeId> {
    v.sort_unstable();
    v
}

/// One line describing the timers and knobs of a configuration at a ring size.
pub fn config_summary(c: &Config, nodes: usize) -> String {
    let t = c.timeouts(nodes);
    format!(
        "token {} (+{}/node beyond 2: {} at {nodes} nodes), token_retransmit {} (x{}), hold {}, consensus {}, join {}, send_join {}, merge {}, window {}/{}, seqno_unchanged {}, miss_count {}, fail_recv {}, packet {}B, message {}B, send queue {}B, initial seq {:#x}",
        fmt_ms(c.token),
        fmt_ms(c.token_coefficient),
        fmt_ms(t.token),
        fmt_ms(t.token_retransmit),
        c.token_retransmits_before_loss_const,
        fmt_ms(t.hold),
        fmt_ms(t.consensus),
        fmt_ms(c.join),
        fmt_ms(c.send_join),
        fmt_ms(c.merge),
        c.window_size,
        c.max_messages,
        c.seqno_unchanged_const,
        c.miss_count_const,
        c.fail_recv_const,
        c.max_packet_size,
        c.max_message_size,
        c.send_queue_bytes,
        c.initial_seq,
    )
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {}: {} nodes {}",
            self.name,
            self.seed,
            self.nodes.len(),
            fmt_nodes(&self.nodes)
        )?;
        writeln!(
            f,
            "  config:   {}",
            config_summary(&self.config, self.nodes.len())
        )?;
        let bugs = injected_names(&self.config.faults);
        if !bugs.is_empty() {
            writeln!(f, "  INJECTED BUGS: {}", bugs.join(", "))?;
        }
        writeln!(f, "  network:  {}", self.net.summary())?;
        writeln!(f, "  workload: {}", self.workload.summary())?;
        writeln!(
            f,
            "  phases:   faults until {}, submissions until {}, convergence bound {}",
            self.heal_at, self.stop_submit_at, self.deadline
        )?;
        if self.base_ring_seq != 0 || self.base_msg_no != 0 {
            writeln!(
                f,
                "  start:    ring_seq ≥ {:#x}, first msg_no {:#x}",
                self.base_ring_seq, self.base_msg_no
            )?;
        }
        if !self.stay_down.is_empty() {
            writeln!(
                f,
                "  at heal:  {} stay down if down",
                fmt_nodes(&self.stay_down)
            )?;
        }
        for w in &self.steady {
            writeln!(f, "  {w}")?;
        }
        writeln!(f, "  schedule:")?;
        for s in &self.schedule {
            writeln!(f, "    {:>12} {}", s.at.to_string(), s.fault)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_plan() {
        let o = Options::default();
        for seed in 0..50 {
            assert_eq!(Plan::from_seed(seed, &o), Plan::from_seed(seed, &o));
            assert_eq!(
                Plan::from_seed(seed, &o).to_string(),
                Plan::from_seed(seed, &o).to_string()
            );
        }
        assert_ne!(Plan::from_seed(1, &o), Plan::from_seed(2, &o));
    }

    #[test]
    fn plans_are_valid_and_within_bounds() {
        let o = Options::default();
        let mut sizes = std::collections::BTreeSet::new();
        for seed in 0..2_000 {
            let p = Plan::from_seed(seed, &o);
            p.config.validate().unwrap();
            let n = p.nodes.len();
            sizes.insert(n);
            assert!((2..=9).contains(&n));
            assert!(p.nodes.windows(2).all(|w| w[0] < w[1]) && p.nodes[0] > 0);
            assert!(p.schedule.windows(2).all(|w| w[0].at <= w[1].at));
            assert!(p.schedule.iter().all(|s| s.at < p.heal_at));
            assert!(p.heal_at < p.stop_submit_at && p.stop_submit_at < p.deadline);
            assert!(p.stay_down.len() < n);
            for l in p.net.links.values() {
                assert!(l.loss <= 0.3 && l.dup <= 0.05);
            }
            let t = p.config.timeouts(n);
            assert!(t.hold < t.token_retransmit && t.token_retransmit < t.token);
        }
        assert_eq!(sizes.len(), 8);
    }

    #[test]
    fn offered_load_stays_within_a_third_of_ring_capacity() {
        let o = Options::default();
        let mut throttled = 0;
        for seed in 0..1_000 {
            let p = Plan::from_seed(seed, &o);
            let n = p.nodes.len();
            let cap = ring_capacity(&p.config, &p.net, n);
            let interval = p.workload.mean_interval.unwrap();
            let offered =
                n as f64 * p.workload.mean_size(p.config.max_message_size) / interval.as_secs_f64();
            assert!(
                offered <= cap / 3.0 * 1.001,
                "seed {seed}: {offered} B/s offered, {cap} B/s capacity"
            );
            throttled += usize::from(interval > ms(60));
            // The bound leaves room to drain what the load could have queued.
            let base = convergence_deadline(&p.config, n, p.stop_submit_at, ms(3_000));
            assert!(p.deadline >= base);
        }
        // Most seeds keep their random rate; only slow rings are throttled.
        assert!(throttled < 300, "{throttled} of 1000 seeds throttled");
    }

    #[test]
    fn token_timeout_covers_rotations_at_every_ring_size() {
        for long in [false, true] {
            for n in [3, 9, 32, 96, 128] {
                let o = Options {
                    nodes: Some(n),
                    long,
                    ..Options::default()
                };
                for seed in 0..100 {
                    let p = Plan::from_seed(seed, &o);
                    let t = p.config.effective_token(n);
                    let rotation = worst_rotation(&p.net, n);
                    assert!(
                        t >= rotation * TOKEN_ROTATIONS,
                        "seed {seed} at {n} nodes: token timeout {t:?}, worst rotation {rotation:?}"
                    );
                    p.config.validate().unwrap();
                }
            }
        }
    }

    #[test]
    fn long_minutes_hold_faults_for_that_long() {
        let plain = Options {
            long: true,
            ..Options::default()
        };
        let minutes = Options {
            minutes: Some(5),
            ..plain.clone()
        };
        for seed in 0..20 {
            let p = Plan::from_seed(seed, &minutes);
            assert!(
                p.heal_at >= Instant::from_millis(5 * 60_000),
                "{}",
                p.heal_at
            );
            // Back to back: each episode's steady window ends where the next begins.
            assert!(p.steady.len() >= 5 * 60 / 40, "{} episodes", p.steady.len());
            let faults = p
                .schedule
                .iter()
                .filter(|s| !matches!(s.fault, Fault::Start(_) | Fault::Heal))
                .count();
            assert!(faults >= p.steady.len() / 2, "{faults} faults");
            // The same seed without --minutes is what it always was: its first episodes.
            let q = Plan::from_seed(seed, &plain);
            assert_eq!(p.steady[..q.steady.len()], q.steady[..]);
            assert!(q.heal_at < Instant::from_millis(5 * 60_000));
        }
    }

    #[test]
    fn disabled_kinds_never_appear() {
        let o = Options {
            nodes: Some(4),
            faults: FaultKinds {
                crash: false,
                leave: false,
                partition: false,
                burst: false,
                slow_link: false,
                bandwidth: false,
                processing: false,
                lost_disk: false,
                crash_mid_send: false,
                clock: false,
                ..FaultKinds::ALL
            },
            loss: Some(0.05),
            ..Options::default()
        };
        for seed in 0..500 {
            let p = Plan::from_seed(seed, &o);
            assert_eq!(p.nodes.len(), 4);
            for s in &p.schedule {
                assert!(!matches!(
                    s.fault,
                    Fault::Crash(_)
                        | Fault::CrashOnState { .. }
                        | Fault::Leave(_)
                        | Fault::Partition(_)
                        | Fault::BurstLoss { .. }
                        | Fault::SlowLink { .. }
                        | Fault::Bandwidth { .. }
                        | Fault::Processing { .. }
                        | Fault::CrashLosingDisk(_)
                        | Fault::CrashMidSend { .. }
                        | Fault::ClockDrift { .. }
                        | Fault::ClockJump { .. }
                ));
            }
            assert!(p.net.links.values().all(|l| l.loss == 0.05));
        }
    }

    #[test]
    fn every_kind_shows_up_across_seeds() {
        let o = Options::default();
        let mut seen = [false; 17];
        for seed in 0..300 {
            for s in Plan::from_seed(seed, &o).schedule {
                let i = match s.fault {
                    Fault::Crash(_) => 0,
                    Fault::Leave(_) => 1,
                    Fault::Partition(_) => 2,
                    Fault::OneWay { .. } => 3,
                    Fault::Clog { .. } => 4,
                    Fault::Pause { .. } => 5,
                    Fault::Drop(_) => 6,
                    Fault::CrashOnState { .. } => 7,
                    Fault::Start(_) if s.at > Instant::ZERO => 8,
                    Fault::BurstLoss { .. } => 9,
                    Fault::SlowLink { .. } => 10,
                    Fault::Bandwidth { .. } => 11,
                    Fault::Processing { .. } => 12,
                    Fault::CrashLosingDisk(_) => 13,
                    Fault::CrashMidSend { .. } => 14,
                    Fault::ClockDrift { .. } => 15,
                    Fault::ClockJump { .. } => 16,
                    _ => continue,
                };
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
    }

    #[test]
    fn replay_command_reproduces_the_options() {
        let mut o = Options {
            nodes: Some(3),
            loss: Some(0.1),
            ..Options::default()
        };
        o.faults.crash = false;
        o.faults.one_way = false;
        assert_eq!(
            o.replay_command(77),
            "cargo run --release -p totem-sim -- --seed 77 --nodes 3 --no-crash --no-one-way --loss 0.1 --trace"
        );
    }
}
