//! The executor: runs a [`Plan`] against real [`totem::Processor`]s on a virtual clock, feeds
//! every event to the oracle, and decides whether the run passed.
//!
//! Owns the virtual clock, the processors and their "disks" (the persisted ring sequence
//! number), the pump that moves packets and events out of a processor after every call into it,
//! fault injection, the workload, and the end-of-run convergence check. It may not look inside a
//! processor beyond its public API: what the protocol does is judged only by the events it
//! emits, and only the oracle judges them.
//!
//! Determinism: the next step is the earliest of (scheduled action, packet arrival, processor
//! timer, workload submission, settle check); equal times are ordered by that rank, then by node
//! index, then by insertion order. Nothing iterates a hash map.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use bytes::Bytes;
use totem::pack::Reassembler;
use totem::wire::{self, Packet, PacketType};
use totem::{
    ConfigKind, Destination, Event, Guarantee, Instant, NodeId, Processor, RingId, Start, State,
    SubmitError,
};

use evs_engine::{Engine, HandleId, Intent, Output};

use crate::groups_check::GroupChecker;
use crate::net::{Fate, InFlight, NetStats, Network};
use crate::oracle::{MsgId, Oracle, ProcId, Property, Violation};
use crate::plan::{Fault, Options, Plan, TraceMode};
use crate::rng::Rng;
use crate::workload::{payload, NodeWorkload};

/// How often, once submissions stopped, the simulator looks whether the system has settled.
const SETTLE_CHECK_PERIOD: Duration = Duration::from_millis(5);
/// Receive buffer of a processor's socket: packets that arrive while it is busy wait here; what
/// does not fit is dropped.
const RECEIVE_BUFFER: usize = 256 << 10;
/// A processor asking for its timer again and again at the same instant is stuck.
const MAX_TIMEOUTS_AT_ONE_INSTANT: u32 = 10_000;
/// More packets in flight than this is a packet storm, not a protocol at work.
const MAX_IN_FLIGHT: usize = 250_000;
/// Upper bound on steps of one run (a run normally takes well under a million).
const MAX_STEPS: u64 = 200_000_000;
/// A processor sending more than this many packets within `STORM_WINDOW` of virtual time is in
/// a packet storm (a feedback loop between processors). The workload offers at most a few
/// thousand packets per second per node, and the token paces everything else, so a healthy
/// processor stays far below.
const STORM_TRANSMITS: u32 = 20_000;
const STORM_WINDOW: Duration = Duration::from_millis(100);

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The oracle (or the simulator's own liveness bound, D9) found a broken EVS property.
    Violation(Violation),
    /// A processor (or the oracle) panicked.
    Panic(String),
    /// No progress: a timer livelock, a packet storm, or the step limit.
    Stuck(String),
    /// The processor refused to start or refused a well-formed submission.
    Setup(String),
}

/// A failed run: what and when (virtual time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub at: Instant,
    pub kind: FailureKind,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FailureKind::Violation(v) => write!(f, "{v}"),
            FailureKind::Panic(m) => write!(f, "panic at {}: {m}", self.at),
            FailureKind::Stuck(m) => write!(f, "stuck at {}: {m}", self.at),
            FailureKind::Setup(m) => write!(f, "setup failed at {}: {m}", self.at),
        }
    }
}

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Deliver events over all processes.
    pub delivered: u64,
    /// Distinct regular configurations installed (by ring id).
    pub configurations: u64,
    /// Submissions accepted by a processor.
    pub submitted: u64,
    /// Submissions refused with `SubmitError::Full` (dropped by the workload, never reported).
    pub refused_full: u64,
    pub crashes: u64,
    /// Starts after the first one of a node.
    pub restarts: u64,
    pub transmits: u64,
    /// Packets that waited because their processor was busy (processing time), and packets
    /// dropped because its receive buffer was full then (also in `net.rx_overflow`).
    pub busy_waited: u64,
    pub busy_overflow: u64,
    pub net: NetStats,
    pub steps: u64,
    /// Virtual time at which the run ended.
    pub end: Instant,
    /// With `--groups`: messages handed to handles, and group changes reported to handles
    /// (each checked by the group checker).
    pub handle_messages: u64,
    pub group_changes: u64,
}

/// One event a process emitted (kept when `Options::record` is set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub at: Instant,
    pub proc: ProcId,
    pub event: Event,
}

/// One accepted submission (kept when `Options::record` is set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    pub at: Instant,
    pub proc: ProcId,
    pub id: MsgId,
    pub guarantee: Guarantee,
    pub data: Bytes,
}

/// A state-triggered crash that fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookFired {
    pub proc: ProcId,
    pub state: State,
    pub at: Instant,
}

/// A crash in the middle of a send that fired: of the packets one call produced (the token at
/// index `token`), the first `sent` left, `withheld` did not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MidSendCrash {
    pub proc: ProcId,
    pub at: Instant,
    pub token: usize,
    pub sent: usize,
    pub withheld: usize,
}

/// An armed crash-in-the-middle-of-a-send trigger.
#[derive(Debug)]
struct MidSend {
    slot: usize,
    after_token: bool,
    fraction: f64,
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub name: String,
    pub seed: u64,
    pub nodes: usize,
    pub outcome: Result<(), Failure>,
    pub summary: Summary,
    /// The ring every live process converged to.
    pub converged: Option<RingId>,
    /// Processes up at the end.
    pub live: Vec<ProcId>,
    pub trace: Vec<String>,
    pub events: Vec<Observed>,
    pub submissions: Vec<Submission>,
    pub hooks_fired: Vec<HookFired>,
    pub mid_send_crashes: Vec<MidSendCrash>,
    /// Per node, what its clock read at the end minus the virtual time (drift and jumps), in
    /// microseconds.
    pub clock_offsets: Vec<(NodeId, i64)>,
}

impl RunResult {
    pub fn passed(&self) -> bool {
        self.outcome.is_ok()
    }

    /// Events of one node (all incarnations), in order.
    pub fn events_of(&self, node: NodeId) -> impl Iterator<Item = &Observed> {
        self.events.iter().filter(move |o| o.proc.node == node)
    }

    /// Panics with the failure and the tail of the trace; for tests.
    #[track_caller]
    pub fn assert_passed(&self) {
        if let Err(f) = &self.outcome {
            let tail: Vec<&String> = self.trace.iter().rev().take(60).rev().collect();
            let tail: Vec<&str> = tail.iter().map(|s| s.as_str()).collect();
            panic!(
                "{} (seed {}) failed: {f}\n--- last trace lines ---\n{}",
                self.name,
                self.seed,
                tail.join("\n")
            );
        }
    }
}

/// Runs a seeded plan.
pub fn run_seed(seed: u64, opts: &Options) -> RunResult {
    run_plan(&Plan::from_seed(seed, opts), opts)
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the panic hook with one that records the message and location for the failing run's
/// report instead of printing it (parallel runs would interleave their stderr).
pub fn install_quiet_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let msg = panic_message(info.payload());
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{loc}")));
    }));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs a plan to its end and reports.
pub fn run_plan(plan: &Plan, opts: &Options) -> RunResult {
    let mut sim = Sim::new(plan, opts);
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let outcome = match panic::catch_unwind(AssertUnwindSafe(|| sim.run())) {
        Ok(r) => r,
        Err(payload) => {
            let msg = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| panic_message(payload.as_ref()));
            let ctx = sim.context.clone();
            Err(Failure {
                at: sim.now,
                kind: FailureKind::Panic(format!("{ctx}: {msg}")),
            })
        }
    };
    if let Err(f) = &outcome {
        sim.trace_line(format!("{} FAILED: {f}", sim.now));
    }
    sim.summary.net = sim.net.stats;
    sim.summary.end = sim.now;
    sim.summary.configurations = sim.configurations.len() as u64;
    if let Some(g) = &sim.groups {
        sim.summary.handle_messages = g.routed;
        sim.summary.group_changes = g.reported;
    }
    let live = sim.live();
    let clock_offsets = sim
        .slots
        .iter()
        .map(|s| {
            let local = s.clock.local(sim.now).as_micros() as i64;
            (s.id, local - sim.now.as_micros() as i64)
        })
        .collect();
    RunResult {
        name: plan.name.clone(),
        seed: plan.seed,
        nodes: plan.nodes.len(),
        outcome,
        summary: sim.summary,
        converged: sim.converged,
        live,
        trace: sim.trace,
        events: sim.events,
        submissions: sim.submissions,
        hooks_fired: sim.hooks_fired,
        mid_send_crashes: sim.mid_send_crashes,
        clock_offsets,
    }
}

/// A node's clock: `local(t) = base_local + (t - base) × rate`. It survives restarts (it is
/// the machine's, not the process's). Drift changes `rate`, a jump moves `base_local`; both
/// re-base at the moment they happen, so the clock is continuous except at jumps.
#[derive(Copy, Clone, Debug)]
struct Clock {
    base: Instant,
    base_local: Instant,
    rate: f64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            base: Instant::ZERO,
            base_local: Instant::ZERO,
            rate: 1.0,
        }
    }
}

impl Clock {
    fn exact(&self) -> bool {
        self.rate == 1.0 && self.base == self.base_local
    }

    /// What the clock reads at virtual time `t` (not before `base`).
    fn local(&self, t: Instant) -> Instant {
        if self.exact() {
            return t;
        }
        let elapsed = (t - self.base).as_micros() as f64 * self.rate;
        self.base_local + Duration::from_micros(elapsed.floor() as u64)
    }

    /// The first virtual time at which the clock reads at least `l` (now, if it already does).
    fn global(&self, l: Instant) -> Instant {
        if self.exact() {
            return l;
        }
        let ahead = (l - self.base_local).as_micros() as f64 / self.rate;
        let mut t = self.base + Duration::from_micros(ahead.ceil() as u64);
        // Rounding: step forward until the clock reads l.
        while self.local(t) < l {
            t = t + Duration::from_micros(1);
        }
        t
    }

    fn rebase(&mut self, now: Instant) {
        self.base_local = self.local(now);
        self.base = now;
    }
}

/// One node: its current processor (if up) and what survives a crash.
/// The groups of the `--groups` workload: few, so that handles share them.
const GROUPS: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];
/// Most handles the `--groups` workload keeps open on one node.
const MAX_HANDLES: usize = 3;

#[derive(Debug)]
struct Slot {
    id: NodeId,
    /// The node's engine around its processor, while it is up. Without `--groups` only its
    /// processor is used: the engine is never polled, so it adds nothing to the run.
    proc: Option<Engine>,
    /// With `--groups`: the handles the workload has open, the next handle id, and the
    /// workload's choices of handles and groups.
    handles: Vec<HandleId>,
    /// The groups each open handle joined and did not leave, as the workload asked (what every
    /// view must hold for this node once the run converges).
    intents: BTreeMap<HandleId, BTreeSet<Bytes>>,
    next_handle: HandleId,
    group_rng: Option<Rng>,
    started: bool,
    incarnation: u32,
    /// The persisted ring sequence number (`ring_seq_high_water`), kept across crashes.
    disk_ring_seq: u64,
    /// The persisted value was lost since the last start (the oracle is told at the next).
    disk_lost: bool,
    /// The processor's timer, on its own clock.
    timer: Option<Instant>,
    /// The node's clock: what it reads at each virtual instant (drift and jumps).
    clock: Clock,
    timeouts_at_now: (Instant, u32),
    /// Packets sent since the start of the current storm-detection window.
    transmit_window: (Instant, u32),
    paused_until: Option<Instant>,
    deferred: VecDeque<InFlight>,
    /// Processing time: each packet handled costs `cost` of the processor's time until `until`.
    cost: Option<(Duration, Instant)>,
    /// The processor is busy handling a packet until then; packets wait in `backlog`.
    busy_until: Instant,
    backlog: VecDeque<InFlight>,
    backlog_bytes: usize,
    drain_scheduled: bool,
    workload: Option<NodeWorkload>,
    /// Own submissions not yet delivered to self.
    own_pending: BTreeSet<u64>,
    /// Own submissions made in the current steady window and not yet delivered to self, with
    /// the time of submission (S3).
    own_steady: BTreeMap<u64, Instant>,
    /// Last regular configuration installed, and whether a transitional one followed it.
    regular: Option<(RingId, Vec<NodeId>)>,
    last_kind: Option<ConfigKind>,
    delivered_since_regular: u64,
}

impl Slot {
    fn pid(&self) -> ProcId {
        ProcId {
            node: self.id,
            incarnation: self.incarnation,
        }
    }
}

#[derive(Debug)]
enum ActionKind {
    Fault(Fault),
    Heal,
    /// A steady window of the plan begins (index into `Plan::steady`): check S1.
    SteadyFrom(usize),
    /// It ends: check S3 for what is still undelivered.
    SteadyUntil(usize),
    Unpause(usize),
    HookCrash(usize),
    /// A busy processor handles the next packet of its backlog.
    Drain(usize),
}

#[derive(Debug)]
struct Action {
    at: Instant,
    order: u64,
    what: ActionKind,
}

impl PartialEq for Action {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for Action {}
impl PartialOrd for Action {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Action {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.order).cmp(&(self.at, self.order))
    }
}

#[derive(Debug)]
struct Hook {
    slot: usize,
    state: State,
    delay: Duration,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Action,
    Packet,
    Timer(usize),
    Submit(usize),
    Check,
}

struct Sim<'p> {
    plan: &'p Plan,
    opts: Options,
    now: Instant,
    net: Network,
    oracle: Oracle,
    slots: Vec<Slot>,
    index: BTreeMap<NodeId, usize>,
    actions: BinaryHeap<Action>,
    action_order: u64,
    hooks: Vec<Hook>,
    heal_rng: Rng,
    script_rng: Rng,
    healed: bool,
    next_check: Instant,
    fates: Vec<(NodeId, Fate)>,
    /// What the simulator was doing, for panic reports.
    context: String,
    configurations: BTreeSet<RingId>,
    converged: Option<RingId>,
    summary: Summary,
    trace: Vec<String>,
    events: Vec<Observed>,
    submissions: Vec<Submission>,
    hooks_fired: Vec<HookFired>,
    mid_send: Vec<MidSend>,
    mid_send_crashes: Vec<MidSendCrash>,
    tx_buf: Vec<totem::Transmit>,
    /// (ring, seq) of every regular multicast seen, so only the first transmission is reported
    /// to the oracle ([`Oracle::multicast`]).
    multicasts: HashSet<(RingId, u64)>,
    /// Per sender: the ring of its last multicast and the reassembly of its fragments, to know
    /// which messages each multicast completes.
    reassembly: HashMap<NodeId, (RingId, Reassembler)>,
    unpacked: Vec<totem::pack::Unpacked>,
    /// The steady window in progress, if any (index into `Plan::steady`).
    steady: Option<usize>,
    /// With `--groups`: the checker of G1-G4.
    groups: Option<GroupChecker>,
    out_buf: Vec<Output>,
    ev_buf: Vec<Event>,
}

impl<'p> Sim<'p> {
    fn new(plan: &'p Plan, opts: &Options) -> Self {
        let slots: Vec<Slot> = plan
            .nodes
            .iter()
            .map(|&id| Slot {
                id,
                proc: None,
                handles: Vec::new(),
                intents: BTreeMap::new(),
                next_handle: 1,
                group_rng: None,
                started: false,
                incarnation: 0,
                disk_ring_seq: plan.base_ring_seq,
                disk_lost: false,
                timer: None,
                clock: Clock::default(),
                timeouts_at_now: (Instant::ZERO, 0),
                transmit_window: (Instant::ZERO, 0),
                paused_until: None,
                deferred: VecDeque::new(),
                cost: None,
                busy_until: Instant::ZERO,
                backlog: VecDeque::new(),
                backlog_bytes: 0,
                drain_scheduled: false,
                workload: None,
                own_pending: BTreeSet::new(),
                own_steady: BTreeMap::new(),
                regular: None,
                last_kind: None,
                delivered_since_regular: 0,
            })
            .collect();
        let index = plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, i))
            .collect();
        let mut sim = Sim {
            plan,
            opts: opts.clone(),
            now: Instant::ZERO,
            net: Network::new(plan.net.clone(), Rng::fork(plan.seed, "net", 0)),
            oracle: Oracle::new(),
            slots,
            index,
            actions: BinaryHeap::new(),
            action_order: 0,
            hooks: Vec::new(),
            heal_rng: Rng::fork(plan.seed, "heal", 0),
            script_rng: Rng::fork(plan.seed, "script", 0),
            healed: false,
            next_check: plan.stop_submit_at,
            fates: Vec::new(),
            context: "setup".into(),
            configurations: BTreeSet::new(),
            converged: None,
            summary: Summary::default(),
            trace: Vec::new(),
            events: Vec::new(),
            submissions: Vec::new(),
            hooks_fired: Vec::new(),
            mid_send: Vec::new(),
            mid_send_crashes: Vec::new(),
            tx_buf: Vec::new(),
            multicasts: HashSet::new(),
            reassembly: HashMap::new(),
            unpacked: Vec::new(),
            steady: None,
            groups: opts.groups.then(GroupChecker::default),
            out_buf: Vec::new(),
            ev_buf: Vec::new(),
        };
        for s in &plan.schedule {
            sim.push_action(s.at, ActionKind::Fault(s.fault.clone()));
        }
        for (k, w) in plan.steady.iter().enumerate() {
            sim.push_action(w.from, ActionKind::SteadyFrom(k));
            sim.push_action(w.until, ActionKind::SteadyUntil(k));
        }
        sim.push_action(plan.heal_at, ActionKind::Heal);
        sim
    }

    fn tracing(&self) -> bool {
        self.opts.trace != TraceMode::Off
    }

    fn trace_line(&mut self, line: String) {
        match self.opts.trace {
            TraceMode::Off => {}
            TraceMode::Print => println!("{line}"),
            TraceMode::Record => self.trace.push(line),
        }
    }

    fn push_action(&mut self, at: Instant, what: ActionKind) {
        self.action_order += 1;
        self.actions.push(Action {
            at,
            order: self.action_order,
            what,
        });
    }

    fn live(&self) -> Vec<ProcId> {
        self.slots
            .iter()
            .filter(|s| s.proc.is_some())
            .map(Slot::pid)
            .collect()
    }

    fn fail(&self, kind: FailureKind) -> Failure {
        Failure { at: self.now, kind }
    }

    fn violation(&self, v: Violation) -> Failure {
        Failure {
            at: v.at,
            kind: FailureKind::Violation(v),
        }
    }

    fn run(&mut self) -> Result<(), Failure> {
        loop {
            self.summary.steps += 1;
            if self.summary.steps > MAX_STEPS {
                return Err(self.fail(FailureKind::Stuck(format!("more than {MAX_STEPS} steps"))));
            }
            if self.net.in_flight() > MAX_IN_FLIGHT {
                return Err(self.fail(FailureKind::Stuck(format!(
                    "packet storm: {} packets in flight",
                    self.net.in_flight()
                ))));
            }
            let Some((at, step)) = self.next_step() else {
                return self.at_deadline();
            };
            if at > self.plan.deadline {
                self.now = self.plan.deadline;
                return self.at_deadline();
            }
            self.now = self.now.max(at);
            match step {
                Step::Action => {
                    let a = self.actions.pop().expect("peeked");
                    self.apply(a.what)?;
                }
                Step::Packet => {
                    // (None when the packet met a bandwidth limit: put back for later, or
                    // dropped at a full receive buffer.)
                    if let Some(p) = self.net.pop_due(self.now) {
                        self.arrive(p)?;
                    }
                }
                Step::Timer(i) => self.timeout(i)?,
                Step::Submit(i) => self.workload(i)?,
                Step::Check => {
                    self.next_check = self.now + SETTLE_CHECK_PERIOD;
                    if let Ok(live) = self.settled() {
                        return self.finish(live);
                    }
                }
            }
        }
    }

    fn next_step(&self) -> Option<(Instant, Step)> {
        let mut best: Option<(Instant, Step)> = None;
        let mut consider = |at: Instant, step: Step| {
            if best.is_none_or(|b| (at, step) < b) {
                best = Some((at, step));
            }
        };
        if let Some(a) = self.actions.peek() {
            consider(a.at, Step::Action);
        }
        if let Some(at) = self.net.next_arrival() {
            consider(at, Step::Packet);
        }
        for (i, s) in self.slots.iter().enumerate() {
            if s.proc.is_none() || s.paused_until.is_some() {
                continue;
            }
            if let Some(t) = s.timer.map(|l| s.clock.global(l)) {
                // A busy processor's timers fire once it is done with the packet at hand.
                consider(t.max(self.now).max(s.busy_until), Step::Timer(i));
            }
            if let Some(w) = &s.workload {
                if w.next_at < self.plan.stop_submit_at {
                    consider(w.next_at.max(self.now), Step::Submit(i));
                }
            }
        }
        if self.healed {
            consider(self.next_check.max(self.now), Step::Check);
        }
        best
    }

    // ---- calls into processors, each followed by the pump ----

    /// The pump: after every call into a processor, move its packets to the network and its
    /// events to the oracle, persist its ring sequence number, re-read its timer, and fire any
    /// state-triggered crash.
    /// After every call into a processor: sends its packets, hands its events to the checkers,
    /// then reads its timer and fires state-triggered crashes. With engines (`--groups`) this
    /// is the engine's pump: it goes on while a pass sent or output anything (an output may
    /// submit, and a submission may send).
    fn after_call(&mut self, i: usize) -> Result<(), Failure> {
        let mut mid_send = None;
        loop {
            if self.slots[i].proc.is_none() {
                return Ok(());
            }
            let (sent, crash) = self.transmit_phase(i)?;
            let outputs = self.event_phase(i)?;
            if crash.is_some() {
                mid_send = crash;
                break;
            }
            if self.groups.is_none() || (sent == 0 && outputs == 0) {
                break;
            }
        }
        self.post_call(i, mid_send)
    }

    /// Sends what the processor has to send (the first `cut` of it when a crash in the middle
    /// of a send fires); returns how many packets left, and that crash.
    fn transmit_phase(&mut self, i: usize) -> Result<(usize, Option<MidSendCrash>), Failure> {
        let now = self.now;
        let tracing = self.tracing();
        let slot = &mut self.slots[i];
        let pid = slot.pid();
        let Some(p) = slot.proc.as_mut() else {
            return Ok((0, None));
        };
        self.context = format!("{pid} poll_transmit");
        let mut txs = std::mem::take(&mut self.tx_buf);
        while let Some(t) = p.poll_transmit() {
            txs.push(t);
        }
        // A crash in the middle of a send: the trigger fires on a call that passes the token,
        // and only the first `cut` of its packets leave.
        let mut cut = txs.len();
        let mut mid_send = None;
        if let Some(k) = self.mid_send.iter().position(|m| m.slot == i) {
            let token = txs
                .iter()
                .position(|t| wire::peek_type(&t.data) == Ok(PacketType::OrfToken));
            // Only a send with packets on the chosen side of the token will do.
            let token = token.filter(|&t| {
                if self.mid_send[k].after_token {
                    t + 1 < txs.len()
                } else {
                    t > 0
                }
            });
            if let Some(token) = token {
                let m = self.mid_send.remove(k);
                cut = if m.after_token {
                    // The token and part of what follows it (the Accelerated Ring's
                    // post-token multicasts, or nothing in classic mode).
                    let after = txs.len() - token - 1;
                    token + 1 + (m.fraction * after as f64) as usize
                } else {
                    // Part of the multicasts before the token, never the token.
                    (m.fraction * token as f64) as usize
                }
                .min(txs.len());
                if !m.after_token {
                    cut = cut.min(token);
                }
                mid_send = Some(MidSendCrash {
                    proc: pid,
                    at: now,
                    token,
                    sent: cut,
                    withheld: txs.len() - cut,
                });
            }
        }
        for t in txs.drain(..).take(cut) {
            self.summary.transmits += 1;
            if now - slot.transmit_window.0 >= STORM_WINDOW {
                slot.transmit_window = (now, 0);
            }
            slot.transmit_window.1 += 1;
            if slot.transmit_window.1 > STORM_TRANSMITS {
                return Err(Failure {
                    at: now,
                    kind: FailureKind::Stuck(format!(
                        "packet storm: {pid} sent more than {STORM_TRANSMITS} packets within {STORM_WINDOW:?} (the last: {})",
                        describe(&t.data)
                    )),
                });
            }
            if wire::peek_type(&t.data) == Ok(PacketType::Mcast) {
                if let Ok(wire::Decoded {
                    sender,
                    packet: Packet::Mcast(m),
                }) = wire::decode(&t.data)
                {
                    if !m.encapsulated && self.multicasts.insert((m.ring_id, m.seq)) {
                        // The first transmission of a regular multicast is its sender's own,
                        // and each sender's come in seq order: reassemble them per sender.
                        let max = self.plan.config.max_message_size;
                        let (ring, reasm) = self
                            .reassembly
                            .entry(sender)
                            .or_insert_with(|| (m.ring_id, Reassembler::new(max)));
                        if *ring != m.ring_id {
                            *ring = m.ring_id;
                            reasm.reset();
                        }
                        self.unpacked.clear();
                        let _ = reasm.unpack(sender, &m.payload, &mut self.unpacked);
                        let completed: Vec<u64> = self.unpacked.iter().map(|u| u.msg_no).collect();
                        self.context = format!("oracle.multicast({pid})");
                        self.oracle
                            .multicast(now, m.ring_id, m.seq, sender, &completed);
                        self.context = format!("{pid} poll_transmit");
                    }
                }
            }
            let line = tracing.then(|| {
                let dest = match t.destination {
                    Destination::Multicast => "*".to_string(),
                    Destination::Node(n) => format!("n{n}"),
                };
                format!("{now} {pid} → {dest} {}", describe(&t.data))
            });
            self.net
                .send(now, slot.id, t.destination, t.data, &mut self.fates);
            if let Some(mut line) = line {
                let dropped: Vec<String> = self
                    .fates
                    .iter()
                    .filter_map(|(to, f)| match f {
                        Fate::Lost => Some(format!("lost→n{to}")),
                        Fate::Cut => Some(format!("cut→n{to}")),
                        Fate::Dropped => Some(format!("dropped→n{to}")),
                        Fate::Oversize => Some(format!("too-big→n{to}")),
                        Fate::Duplicated(..) => Some(format!("dup→n{to}")),
                        Fate::Queued(_) => None,
                    })
                    .collect();
                if !dropped.is_empty() {
                    line += &format!("  [{}]", dropped.join(" "));
                }
                match self.opts.trace {
                    TraceMode::Print => println!("{line}"),
                    _ => self.trace.push(line),
                }
            }
        }
        txs.clear();
        self.tx_buf = txs;
        Ok((cut, mid_send))
    }

    /// Hands the processor's events (or, with engines, every output of the engine) to the
    /// checkers; returns how many there were.
    fn event_phase(&mut self, i: usize) -> Result<usize, Failure> {
        let now = self.now;
        let pid = self.slots[i].pid();
        self.context = format!("{pid} poll_event");
        let mut steady_violation = None;
        let n;
        if self.groups.is_some() {
            let local = self.slots[i].clock.local(now);
            let mut outs = std::mem::take(&mut self.out_buf);
            if let Some(e) = self.slots[i].proc.as_mut() {
                while let Some(o) = e.poll_event(local) {
                    outs.push(o);
                }
            }
            n = outs.len();
            for o in outs.drain(..) {
                match o {
                    Output::Core(ev) => self.observe(i, ev, &mut steady_violation)?,
                    Output::Submitted {
                        msg_no,
                        guarantee,
                        data,
                    } => self.accepted(i, msg_no, guarantee, data),
                    other => {
                        if self.tracing() {
                            if let Output::Handle(h, ev) = &other {
                                let line =
                                    format!("{now} {pid} h{h} {}", describe_handle_event(ev));
                                self.trace_line(line);
                            }
                        }
                        self.context = format!("groups.output({pid})");
                        let checker = self.groups.as_mut().expect("groups mode");
                        if let Err(v) = checker.output(pid, now, &other) {
                            return Err(self.violation(v));
                        }
                    }
                }
            }
            self.out_buf = outs;
            let checker = self.groups.as_mut().expect("groups mode");
            if let Err(v) = checker.drained(pid, now) {
                return Err(self.violation(v));
            }
            // The engine documents that a copy following its group changes is its view
            // whenever `poll_event` has returned `None`.
            if let Some(e) = self.slots[i].proc.as_ref() {
                let copy = checker.view_of(pid).unwrap_or_default();
                if copy != e.view().snapshot() {
                    let detail = format!(
                        "{pid}'s view {:?} is not what its group changes led to: {copy:?}",
                        e.view().snapshot()
                    );
                    return Err(self.violation(Violation {
                        property: Property::G1ViewAgreement,
                        at: now,
                        detail,
                    }));
                }
            }
        } else {
            let mut evs = std::mem::take(&mut self.ev_buf);
            if let Some(e) = self.slots[i].proc.as_mut() {
                let p = e.processor_mut();
                while let Some(ev) = p.poll_event() {
                    evs.push(ev);
                }
            }
            n = evs.len();
            for ev in evs.drain(..) {
                self.observe(i, ev, &mut steady_violation)?;
            }
            self.ev_buf = evs;
        }
        if let Some(v) = steady_violation {
            return Err(self.violation(v));
        }
        Ok(n)
    }

    /// One event of the processor: the steady-window checks and the EVS oracle.
    fn observe(
        &mut self,
        i: usize,
        ev: Event,
        steady_violation: &mut Option<Violation>,
    ) -> Result<(), Failure> {
        let now = self.now;
        let tracing = self.tracing();
        let plan = self.plan;
        let steady = self.steady.map(|k| &plan.steady[k]);
        let slot = &mut self.slots[i];
        let pid = slot.pid();
        match &ev {
            Event::Deliver(d) => {
                self.summary.delivered += 1;
                slot.delivered_since_regular += 1;
                if d.sender == slot.id {
                    slot.own_pending.remove(&d.msg_no);
                    if let (Some(w), Some(at)) = (steady, slot.own_steady.remove(&d.msg_no)) {
                        if now - at > w.own_delivery && steady_violation.is_none() {
                            *steady_violation = Some(Violation {
                                property: Property::S3OwnDelivery,
                                at: now,
                                detail: format!(
                                    "{pid} delivered its own m{}:{} {:?} after it was submitted, in a steady window ({w})",
                                    slot.id,
                                    d.msg_no,
                                    now - at
                                ),
                            });
                        }
                    }
                }
            }
            Event::ConfigChange(c) => {
                if let Some(w) = steady {
                    if steady_violation.is_none() {
                        *steady_violation = Some(Violation {
                            property: Property::S2NoReconfiguration,
                            at: now,
                            detail: format!(
                                "{pid} installed {} in a steady window ({w})",
                                describe_event(&ev)
                            ),
                        });
                    }
                }
                slot.last_kind = Some(c.kind);
                if c.kind == ConfigKind::Regular {
                    slot.regular = Some((c.ring_id, c.members.clone()));
                    slot.delivered_since_regular = 0;
                    self.configurations.insert(c.ring_id);
                }
            }
        }
        if tracing {
            let line = format!("{now} {pid} {}", describe_event(&ev));
            match self.opts.trace {
                TraceMode::Print => println!("{line}"),
                _ => self.trace.push(line),
            }
        }
        self.context = format!("oracle.observe({pid})");
        let verdict = self.oracle.observe(pid, now, &ev);
        if self.opts.record {
            self.events.push(Observed {
                at: now,
                proc: pid,
                event: ev.clone(),
            });
        }
        // (A protocol violation is reported as such, before what it does to the groups.)
        if let Err(v) = verdict {
            return Err(Failure {
                at: v.at,
                kind: FailureKind::Violation(v),
            });
        }
        if let Some(g) = self.groups.as_mut() {
            self.context = format!("groups.output({pid})");
            if let Err(v) = g.output(pid, now, &Output::Core(ev)) {
                return Err(self.violation(v));
            }
        }
        self.context = format!("{pid} poll_event");
        Ok(())
    }

    /// After the outputs of a call: the processor's timer and persisted ring sequence number,
    /// and the crashes the call triggers.
    fn post_call(&mut self, i: usize, mid_send: Option<MidSendCrash>) -> Result<(), Failure> {
        let now = self.now;
        let tracing = self.tracing();
        let slot = &mut self.slots[i];
        let pid = slot.pid();
        let Some(e) = slot.proc.as_mut() else {
            return Ok(());
        };
        let p = e.processor();
        self.context = format!("{pid} poll_timeout");
        // (Kept on the processor's clock: a clock jump moves it in virtual time.)
        slot.timer = p.poll_timeout();
        slot.disk_ring_seq = slot.disk_ring_seq.max(p.ring_seq_to_persist());
        let state = p.state();
        // State-triggered crashes: one-shot, checked after every call.
        let mut crash_now = false;
        let mut k = 0;
        while k < self.hooks.len() {
            if self.hooks[k].slot == i && self.hooks[k].state == state {
                let h = self.hooks.remove(k);
                self.hooks_fired.push(HookFired {
                    proc: pid,
                    state,
                    at: now,
                });
                if h.delay.is_zero() {
                    crash_now = true;
                } else {
                    self.push_action(now + h.delay, ActionKind::HookCrash(i));
                }
                if tracing {
                    self.trace_line(format!(
                        "{now} {pid} seen in {state:?}: crash in {:?}",
                        h.delay
                    ));
                }
            } else {
                k += 1;
            }
        }
        if crash_now {
            self.crash(i, "in the state its trigger waited for");
        }
        if let Some(m) = mid_send {
            if tracing {
                self.trace_line(format!(
                    "{now} {pid} crashes in the middle of a send: {} of {} packets left (token at {})",
                    m.sent,
                    m.sent + m.withheld,
                    m.token
                ));
            }
            self.mid_send_crashes.push(m);
            self.crash(i, "in the middle of a send");
        }
        Ok(())
    }

    fn start(&mut self, i: usize) -> Result<(), Failure> {
        let now = self.now;
        let plan = self.plan;
        let slot = &mut self.slots[i];
        if slot.proc.is_some() {
            let line = format!("{now} n{} start: already up", slot.id);
            self.trace_line(line);
            return Ok(());
        }
        let inc = if slot.started {
            slot.incarnation + 1
        } else {
            0
        };
        let mut seed_rng = Rng::fork(
            plan.seed,
            "processor",
            (u64::from(slot.id) << 32) | u64::from(inc),
        );
        let start = Start {
            // The disk starts at the plan's base; a lost disk holds 0 ("unknown") from then
            // on, as the processors started from it persist 0 (`ring_seq_to_persist`).
            ring_seq: slot.disk_ring_seq,
            first_msg_no: plan.base_msg_no + (u64::from(inc) << 40),
            seed: seed_rng.next_u64(),
        };
        let pid = ProcId {
            node: slot.id,
            incarnation: inc,
        };
        self.context = format!("{pid} Processor::new");
        let proc = Processor::new(plan.config.clone(), slot.id, start, slot.clock.local(now))
            .map_err(|e| Failure {
                at: now,
                kind: FailureKind::Setup(format!("Processor::new({pid}): {e}")),
            })?;
        let max_payload = plan
            .config
            .max_message_size
            .saturating_sub(evs_engine::groups::MAX_APP_HEADER)
            .max(1);
        let mut proc = Engine::new(proc, max_payload);
        proc.set_core_events(self.opts.groups);
        proc.inject(self.opts.engine_bugs);
        if slot.started {
            self.summary.restarts += 1;
        }
        slot.started = true;
        slot.incarnation = inc;
        slot.proc = Some(proc);
        slot.handles.clear();
        slot.intents.clear();
        slot.next_handle = 1;
        slot.group_rng = self.opts.groups.then(|| {
            Rng::fork(
                plan.seed,
                "groups",
                (u64::from(slot.id) << 32) | u64::from(inc),
            )
        });
        slot.timer = None;
        slot.timeouts_at_now = (now, 0);
        slot.own_pending.clear();
        slot.regular = None;
        slot.last_kind = None;
        slot.delivered_since_regular = 0;
        slot.workload = plan
            .workload
            .mean_interval
            .filter(|_| plan.workload.sends(slot.id))
            .map(|mean| NodeWorkload::new(plan.seed, slot.id, inc, mean, now));
        self.context = format!("oracle.started({pid})");
        // An incarnation that starts knowing no ring sequence number (a wiped disk, or a
        // history that stayed unknown since) has no bound to keep C3 across restarts with.
        if std::mem::take(&mut slot.disk_lost) || start.ring_seq == 0 {
            self.oracle.lost_disk(slot.id);
        }
        self.oracle.started(pid, now);
        if let Some(g) = self.groups.as_mut() {
            g.started(pid);
        }
        if self.tracing() {
            self.trace_line(format!(
                "{now} {pid} start (ring_seq {}, first msg_no {:#x})",
                start.ring_seq, start.first_msg_no
            ));
        }
        self.after_call(i)
    }

    /// Removes the node's processor (if up); its packets in flight still arrive.
    fn crash(&mut self, i: usize, why: &str) {
        let now = self.now;
        let slot = &mut self.slots[i];
        if slot.proc.take().is_none() {
            return;
        }
        let pid = slot.pid();
        slot.timer = None;
        slot.paused_until = None;
        slot.deferred.clear();
        slot.cost = None;
        slot.backlog.clear();
        slot.backlog_bytes = 0;
        slot.workload = None;
        slot.own_pending.clear();
        slot.regular = None;
        slot.last_kind = None;
        slot.handles.clear();
        slot.intents.clear();
        self.summary.crashes += 1;
        self.context = format!("oracle.crashed({pid})");
        self.oracle.crashed(pid, now);
        if let Some(g) = self.groups.as_mut() {
            g.crashed(pid);
        }
        if self.tracing() {
            self.trace_line(format!("{now} {pid} CRASH ({why})"));
        }
    }

    fn arrive(&mut self, p: InFlight) -> Result<(), Failure> {
        let now = self.now;
        let i = self.index[&p.to];
        let slot = &mut self.slots[i];
        if slot.proc.is_none() {
            if self.tracing() {
                let line = format!("{now} n{} ← n{} (down) {}", p.to, p.from, describe(&p.data));
                self.trace_line(line);
            }
            return Ok(());
        }
        if slot.paused_until.is_some() {
            slot.deferred.push_back(p);
            return Ok(());
        }
        if slot.busy_until > now || !slot.backlog.is_empty() {
            // Busy with earlier packets: this one waits in the socket's receive buffer, or is
            // dropped if that is full.
            if slot.backlog_bytes + p.data.len() > RECEIVE_BUFFER {
                self.net.stats.rx_overflow += 1;
                self.summary.busy_overflow += 1;
                return Ok(());
            }
            slot.backlog_bytes += p.data.len();
            slot.backlog.push_back(p);
            self.summary.busy_waited += 1;
            if !slot.drain_scheduled {
                slot.drain_scheduled = true;
                let at = slot.busy_until.max(now);
                self.push_action(at, ActionKind::Drain(i));
            }
            return Ok(());
        }
        self.handle(i, p)
    }

    /// Hands one packet to the processor; with a processing cost in force, the processor is
    /// busy for that long afterwards.
    fn handle(&mut self, i: usize, p: InFlight) -> Result<(), Failure> {
        let now = self.now;
        let slot = &mut self.slots[i];
        let pid = slot.pid();
        if let Some((cost, until)) = slot.cost {
            if now < until {
                slot.busy_until = now + cost;
            } else {
                slot.cost = None;
            }
        }
        if self.tracing() {
            let line = format!("{now} {pid} ← n{} {}", p.from, describe(&p.data));
            self.trace_line(line);
        }
        self.context = format!("{pid} handle_packet");
        let local = self.slots[i].clock.local(now);
        self.slots[i]
            .proc
            .as_mut()
            .expect("up")
            .handle_packet(local, p.data);
        self.after_call(i)
    }

    fn timeout(&mut self, i: usize) -> Result<(), Failure> {
        let now = self.now;
        let slot = &mut self.slots[i];
        let pid = slot.pid();
        if slot.timeouts_at_now.0 == now {
            slot.timeouts_at_now.1 += 1;
            if slot.timeouts_at_now.1 > MAX_TIMEOUTS_AT_ONE_INSTANT {
                return Err(self.fail(FailureKind::Stuck(format!(
                    "{pid}: poll_timeout stays at or before {now} after {MAX_TIMEOUTS_AT_ONE_INSTANT} handle_timeout calls"
                ))));
            }
        } else {
            slot.timeouts_at_now = (now, 1);
        }
        self.context = format!("{pid} handle_timeout");
        let local = slot.clock.local(now);
        slot.proc.as_mut().expect("up").handle_timeout(local);
        self.after_call(i)
    }

    fn workload(&mut self, i: usize) -> Result<(), Failure> {
        let now = self.now;
        let max = if self.groups.is_some() {
            // Room for the group header of an App message naming every group of the workload.
            let names: Vec<Bytes> = GROUPS.iter().map(|g| Bytes::from_static(g)).collect();
            self.plan.config.max_message_size
                - evs_engine::groups::APP_FIXED_OVERHEAD
                - evs_engine::groups::group_list_len(&names)
        } else {
            self.plan.config.max_message_size
        };
        let batch = match self.slots[i].workload.as_mut() {
            Some(w) => w.next_batch(&self.plan.workload, max, now),
            None => return Ok(()),
        };
        if self.groups.is_some() && !batch.is_empty() {
            self.group_op(i)?;
        }
        for (data, g) in batch {
            if self.slots[i].proc.is_none() {
                break; // a state-triggered crash during the burst
            }
            self.submit(i, data, g)?;
        }
        Ok(())
    }

    /// With `--groups`, once per workload tick: opens, closes, joins or leaves, as an
    /// application would, through the engine's own calls.
    fn group_op(&mut self, i: usize) -> Result<(), Failure> {
        let now = self.now;
        let slot = &mut self.slots[i];
        let pid = slot.pid();
        let local = slot.clock.local(now);
        let (Some(e), Some(rng)) = (slot.proc.as_mut(), slot.group_rng.as_mut()) else {
            return Ok(());
        };
        let roll = rng.below(100);
        let mut line = None;
        if slot.handles.is_empty() || (roll < 4 && slot.handles.len() < MAX_HANDLES) {
            let id = slot.next_handle;
            slot.next_handle += 1;
            e.open_handle(id);
            slot.handles.push(id);
            if let Some(g) = self.groups.as_mut() {
                g.opened(pid, id);
            }
            let group = *rng.pick(&GROUPS);
            if e.join(local, id, [group]).is_ok() {
                slot.intents
                    .entry(id)
                    .or_default()
                    .insert(Bytes::from_static(group));
            }
            line = Some(format!(
                "h{id} open, join {:?}",
                String::from_utf8_lossy(group)
            ));
        } else if roll < 7 && slot.handles.len() > 1 {
            // Closed (as a handle that stops reading is, when its queue overflows).
            let k = rng.below(slot.handles.len() as u64) as usize;
            let id = slot.handles.swap_remove(k);
            e.close_handle(local, id);
            slot.intents.remove(&id);
            if let Some(g) = self.groups.as_mut() {
                g.closed(pid, id);
            }
            line = Some(format!("h{id} close"));
        } else if roll < 17 {
            let id = *rng.pick(&slot.handles);
            let group = *rng.pick(&GROUPS);
            let set = slot.intents.entry(id).or_default();
            let g = Bytes::from_static(group);
            if set.contains(&g) {
                if e.leave(local, id, [group]).is_ok() {
                    set.remove(&g);
                }
                line = Some(format!("h{id} leave {:?}", String::from_utf8_lossy(group)));
            } else {
                if e.join(local, id, [group]).is_ok() {
                    set.insert(g);
                }
                line = Some(format!("h{id} join {:?}", String::from_utf8_lossy(group)));
            }
            if set.is_empty() {
                slot.intents.remove(&id);
            }
        }
        if let Some(l) = line {
            if self.tracing() {
                self.trace_line(format!("{now} {pid} {l}"));
            }
            return self.after_call(i);
        }
        Ok(())
    }

    fn submit(&mut self, i: usize, data: Bytes, g: Guarantee) -> Result<(), Failure> {
        if self.groups.is_some() && self.slots[i].handles.is_empty() {
            // (A scripted submission before the workload opened a handle.)
            self.group_op(i)?;
        }
        let now = self.now;
        let slot = &mut self.slots[i];
        let pid = slot.pid();
        let len = data.len();
        self.context = format!("{pid} submit");
        let local = slot.clock.local(now);
        let e = slot.proc.as_mut().expect("up");
        let r = match slot.group_rng.as_mut() {
            None => e
                .processor_mut()
                .submit(local, data.clone(), g)
                .map(|msg_no| Some((msg_no, data))),
            Some(rng) => {
                // From one of the node's handles, to the groups it is in or to others.
                let id = *rng.pick(&slot.handles);
                let mut groups = e.intended(id);
                if groups.is_empty() || rng.chance(0.3) {
                    let group = GROUPS[rng.below(GROUPS.len() as u64) as usize];
                    groups = vec![Bytes::from_static(group)];
                }
                let data = evs_engine::groups::encode_app(id, &groups, &data);
                let cost = data.len();
                let s = evs_engine::Submission {
                    data,
                    guarantee: g,
                    cost,
                    intent: Intent::None,
                };
                // (Reported by the engine's `Output::Submitted`, in order with its own.)
                e.try_submit(local, s).map(|_| None)
            }
        };
        match r {
            Ok(Some((msg_no, data))) => self.accepted(i, msg_no, g, data),
            Ok(None) => {}
            Err(SubmitError::Full) => {
                self.summary.refused_full += 1;
                if self.tracing() {
                    self.trace_line(format!("{now} {pid} submit {g:?} {len}B refused: full"));
                }
            }
            Err(e @ SubmitError::TooLarge { .. }) => {
                return Err(self.fail(FailureKind::Setup(format!(
                    "{pid} refused a {len}B message within max_message_size: {e}"
                ))));
            }
        }
        self.after_call(i)
    }

    /// Slot `i`'s processor accepted a message as `msg_no`.
    fn accepted(&mut self, i: usize, msg_no: u64, g: Guarantee, data: Bytes) {
        let now = self.now;
        let slot = &mut self.slots[i];
        let pid = slot.pid();
        let len = data.len();
        slot.own_pending.insert(msg_no);
        if self.steady.is_some() {
            slot.own_steady.insert(msg_no, now);
        }
        self.summary.submitted += 1;
        let id = MsgId {
            sender: slot.id,
            msg_no,
        };
        self.context = format!("oracle.submitted({pid})");
        self.oracle.submitted(pid, now, id, g, &data);
        if self.opts.record {
            self.submissions.push(Submission {
                at: now,
                proc: pid,
                id,
                guarantee: g,
                data,
            });
        }
        if self.tracing() {
            self.trace_line(format!("{now} {pid} submit #{msg_no:#x} {g:?} {len}B"));
        }
    }

    fn drain(&mut self, i: usize) -> Result<(), Failure> {
        let now = self.now;
        let slot = &mut self.slots[i];
        slot.drain_scheduled = false;
        if slot.proc.is_none() {
            return Ok(());
        }
        if slot.paused_until.is_some() {
            // The backlog is handled after the pause, packet by packet again.
            slot.drain_scheduled = true;
            let at = slot.paused_until.unwrap_or(now).max(now);
            self.push_action(at, ActionKind::Drain(i));
            return Ok(());
        }
        if slot.busy_until > now {
            slot.drain_scheduled = true;
            let at = slot.busy_until;
            self.push_action(at, ActionKind::Drain(i));
            return Ok(());
        }
        let Some(p) = slot.backlog.pop_front() else {
            return Ok(());
        };
        slot.backlog_bytes -= p.data.len();
        if !slot.backlog.is_empty() {
            slot.drain_scheduled = true;
            let at = slot
                .cost
                .filter(|&(_, until)| now < until)
                .map_or(now, |(cost, _)| now + cost);
            self.push_action(at, ActionKind::Drain(i));
        }
        self.handle(i, p)
    }

    fn unpause(&mut self, i: usize) -> Result<(), Failure> {
        let slot = &mut self.slots[i];
        match slot.paused_until {
            Some(until) if until > self.now => return Ok(()), // extended by a later pause
            _ => slot.paused_until = None,
        }
        if self.tracing() {
            let line = format!("{} {} wakes up", self.now, self.slots[i].pid());
            self.trace_line(line);
        }
        while let Some(p) = self.slots[i].deferred.pop_front() {
            if self.slots[i].proc.is_none() {
                break;
            }
            self.arrive(p)?;
        }
        Ok(())
    }

    // ---- faults ----

    fn apply(&mut self, what: ActionKind) -> Result<(), Failure> {
        let now = self.now;
        match what {
            ActionKind::Heal => return self.heal(),
            ActionKind::SteadyFrom(k) => return self.steady_from(k),
            ActionKind::SteadyUntil(k) => return self.steady_until(k),
            ActionKind::Unpause(i) => return self.unpause(i),
            ActionKind::Drain(i) => return self.drain(i),
            ActionKind::HookCrash(i) => {
                self.crash(i, "after the state its trigger waited for");
                return Ok(());
            }
            ActionKind::Fault(f) => {
                if self.tracing() && !matches!(f, Fault::Start(_) | Fault::Submit { .. }) {
                    self.trace_line(format!("{now} FAULT {f}"));
                }
                match f {
                    Fault::Start(n) => {
                        let i = self.index[&n];
                        return self.start(i);
                    }
                    Fault::Crash(n) => {
                        let i = self.index[&n];
                        self.crash(i, "scheduled");
                    }
                    Fault::CrashMidSend {
                        node,
                        after_token,
                        fraction,
                    } => {
                        let slot = self.index[&node];
                        self.mid_send.push(MidSend {
                            slot,
                            after_token,
                            fraction,
                        });
                    }
                    Fault::ClockDrift { node, ppm } => {
                        let clock = &mut self.slots[self.index[&node]].clock;
                        clock.rebase(now);
                        clock.rate = 1.0 + f64::from(ppm) / 1e6;
                    }
                    Fault::ClockJump { node, forward, by } => {
                        let clock = &mut self.slots[self.index[&node]].clock;
                        clock.rebase(now);
                        clock.base_local = if forward {
                            clock.base_local + by
                        } else {
                            Instant::from_micros(
                                clock
                                    .base_local
                                    .as_micros()
                                    .saturating_sub(by.as_micros() as u64),
                            )
                        };
                    }
                    Fault::CrashLosingDisk(n) => {
                        let i = self.index[&n];
                        self.crash(i, "scheduled, losing its disk");
                        let slot = &mut self.slots[i];
                        slot.disk_ring_seq = 0;
                        slot.disk_lost = true;
                    }
                    Fault::Leave(n) => {
                        let i = self.index[&n];
                        let pid = self.slots[i].pid();
                        let local = self.slots[i].clock.local(now);
                        if let Some(p) = self.slots[i].proc.as_mut() {
                            self.context = format!("{pid} leave");
                            p.leave_ring(local);
                            self.after_call(i)?;
                            self.crash(i, "left");
                        }
                    }
                    Fault::Partition(groups) => self.net.partition(&groups),
                    Fault::OneWay { from, to } => self.net.cut_one_way(&from, &to),
                    Fault::SizeLimit { from, to, max } => self.net.limit_size(&from, &to, max),
                    Fault::Heal => self.net.heal(),
                    Fault::Clog {
                        from,
                        to,
                        extra,
                        duration,
                    } => self.net.clog(from, to, extra, now + duration),
                    Fault::Drop(rule) => self.net.add_rule(rule),
                    Fault::SetLoss(p) => self.net.set_loss(p),
                    Fault::BurstLoss {
                        from,
                        to,
                        burst,
                        duration,
                    } => self.net.burst_loss(&from, &to, burst, now + duration),
                    Fault::SlowLink {
                        from,
                        to,
                        min,
                        max,
                        duration,
                    } => self.net.slow_links(&from, &to, min, max, now + duration),
                    Fault::Bandwidth {
                        node,
                        bytes_per_sec,
                        buffer,
                        duration,
                    } => self
                        .net
                        .limit_rx(node, bytes_per_sec, buffer, now + duration),
                    Fault::LinkLoss { from, to, loss } => self.net.set_link_loss(&from, &to, loss),
                    Fault::Processing {
                        node,
                        per_packet,
                        duration,
                    } => {
                        let slot = &mut self.slots[self.index[&node]];
                        if slot.proc.is_some() {
                            slot.cost = Some((per_packet, now + duration));
                        }
                    }
                    Fault::Pause { node, duration } => {
                        let i = self.index[&node];
                        let slot = &mut self.slots[i];
                        if slot.proc.is_some() {
                            let until = now + duration;
                            let until = slot.paused_until.map_or(until, |u| u.max(until));
                            slot.paused_until = Some(until);
                            self.push_action(until, ActionKind::Unpause(i));
                        }
                    }
                    Fault::CrashOnState { node, state, delay } => {
                        let slot = self.index[&node];
                        self.hooks.push(Hook { slot, state, delay });
                    }
                    Fault::Submit {
                        node,
                        size,
                        guarantee,
                    } => {
                        let i = self.index[&node];
                        let data = payload(&mut self.script_rng, size);
                        if self.slots[i].proc.is_some() {
                            return self.submit(i, data, guarantee);
                        }
                        if self.tracing() {
                            self.trace_line(format!(
                                "{now} n{node} is down: scripted submission skipped"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A steady window begins: the membership must have settled (S1). From here on, a
    /// configuration change is a violation (S2) and own messages are timed (S3).
    fn steady_from(&mut self, k: usize) -> Result<(), Failure> {
        let w = &self.plan.steady[k];
        let s1 = |detail: String| Violation {
            property: Property::S1SettledRings,
            at: self.now,
            detail: format!("{detail} ({w})"),
        };
        let live: BTreeSet<NodeId> = self
            .slots
            .iter()
            .filter(|s| s.proc.is_some())
            .map(|s| s.id)
            .collect();
        let mut rings: BTreeMap<RingId, Vec<NodeId>> = BTreeMap::new();
        for s in self.slots.iter().filter(|s| s.proc.is_some()) {
            let pid = s.pid();
            let state = s.proc.as_ref().map(|e| e.processor().state());
            let Some((ring, members)) = s.regular.as_ref().filter(|_| {
                state == Some(State::Operational) && s.last_kind == Some(ConfigKind::Regular)
            }) else {
                return Err(
                    self.violation(s1(format!("{pid} is in {state:?}, not settled in a ring")))
                );
            };
            if let Some(down) = members.iter().find(|m| !live.contains(m)) {
                return Err(self.violation(s1(format!(
                    "{pid}'s ring {ring} {members:?} still has n{down}, which is down"
                ))));
            }
            rings.insert(*ring, members.clone());
        }
        let ring_of: BTreeMap<NodeId, RingId> = self
            .slots
            .iter()
            .filter_map(|s| {
                s.regular
                    .as_ref()
                    .filter(|_| s.proc.is_some())
                    .map(|(r, _)| (s.id, *r))
            })
            .collect();
        // (A link that loses full-size datagrams cannot carry the ring's traffic.)
        let full = self.plan.config.max_packet_size;
        let two_way =
            |a: NodeId, b: NodeId| self.net.carries(a, b, full) && self.net.carries(b, a, full);
        for (ring, members) in &rings {
            if let Some(m) = members.iter().find(|m| ring_of.get(m) != Some(ring)) {
                return Err(
                    self.violation(s1(format!("ring {ring} {members:?} is not n{m}'s ring")))
                );
            }
            // (A ring may keep two members that hear each other one way only: as long as the
            // token's path works, the others retransmit what one of them misses. It is split
            // when a membership round runs, not before.)
        }
        let all: Vec<(&RingId, &Vec<NodeId>)> = rings.iter().collect();
        for (i, (r1, m1)) in all.iter().enumerate() {
            for (r2, m2) in &all[i + 1..] {
                if m1.iter().all(|&a| m2.iter().all(|&b| two_way(a, b))) {
                    return Err(self.violation(s1(format!(
                        "rings {r1} {m1:?} and {r2} {m2:?} are connected both ways but did not merge"
                    ))));
                }
            }
        }
        if self.tracing() {
            let line = format!(
                "{} STEADY from here: rings {:?}",
                self.now,
                rings.values().collect::<Vec<_>>()
            );
            self.trace_line(line);
        }
        for s in &mut self.slots {
            s.own_steady.clear();
        }
        self.steady = Some(k);
        Ok(())
    }

    /// A steady window ends: own messages submitted early enough must have come back (S3).
    fn steady_until(&mut self, k: usize) -> Result<(), Failure> {
        let w = &self.plan.steady[k];
        self.steady = None;
        for s in &mut self.slots {
            let pending = std::mem::take(&mut s.own_steady);
            if s.proc.is_none() {
                continue;
            }
            let now = self.now;
            if let Some((no, at)) = pending.iter().find(|(_, &at)| now - at > w.own_delivery) {
                let v = Violation {
                    property: Property::S3OwnDelivery,
                    at: now,
                    detail: format!(
                        "{} never delivered its own m{}:{no}, submitted at {at}, in a steady window ({w})",
                        s.pid(),
                        s.id
                    ),
                };
                return Err(Failure {
                    at: now,
                    kind: FailureKind::Violation(v),
                });
            }
        }
        Ok(())
    }

    /// The end of the fault phase.
    fn heal(&mut self) -> Result<(), Failure> {
        let now = self.now;
        self.healed = true;
        self.net.clear_faults();
        self.hooks.clear();
        self.mid_send.clear();
        if self.tracing() {
            self.trace_line(format!(
                "{now} HEAL: partitions healed, loss stopped, links unclogged, triggers disarmed"
            ));
        }
        for s in &mut self.slots {
            s.cost = None;
        }
        for i in 0..self.slots.len() {
            if self.slots[i].paused_until.is_some() {
                self.slots[i].paused_until = Some(now);
                self.unpause(i)?;
            }
        }
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if s.started && s.proc.is_none() && !self.plan.stay_down.contains(&s.id) {
                let id = s.id;
                let at = now + Duration::from_micros(self.heal_rng.range(0, 200_000));
                self.push_action(at, ActionKind::Fault(Fault::Start(id)));
            }
        }
        Ok(())
    }

    // ---- the end of a run ----

    /// The processes up now if the system has settled: all operational in one regular
    /// configuration made of exactly them, each having delivered as many messages in it as the
    /// others and all of its own submissions, with nothing left to send.
    fn settled(&self) -> Result<Vec<ProcId>, String> {
        let live: Vec<&Slot> = self.slots.iter().filter(|s| s.proc.is_some()).collect();
        let ids: Vec<NodeId> = live.iter().map(|s| s.id).collect();
        let mut ring = None;
        let mut delivered = None;
        // Pending actions (restarts at heal) must happen before the end.
        if let Some(a) = self.actions.peek() {
            return Err(format!(
                "a scheduled action at {} has not happened yet",
                a.at
            ));
        }
        for s in &live {
            let pid = s.pid();
            let e = s.proc.as_ref().expect("live");
            let p = e.processor();
            if p.state() != State::Operational {
                return Err(format!("{pid} is in {:?}", p.state()));
            }
            let Some((r, members)) = &s.regular else {
                return Err(format!("{pid} has installed no regular configuration"));
            };
            if s.last_kind != Some(ConfigKind::Regular) {
                return Err(format!("{pid} is in a transitional configuration"));
            }
            if *ring.get_or_insert(*r) != *r {
                return Err(format!(
                    "{pid} is in ring {r}, others in {}",
                    ring.unwrap_or_default()
                ));
            }
            if members != &ids {
                return Err(format!(
                    "{pid}'s ring {r} has members {members:?}, live nodes are {ids:?}"
                ));
            }
            if !s.own_pending.is_empty() {
                return Err(format!(
                    "{pid} has not delivered {} of its own messages",
                    s.own_pending.len()
                ));
            }
            let q = p.stats().send_queue_messages;
            if q != 0 {
                return Err(format!("{pid} has {q} messages in its send queue"));
            }
            let w = e.stats().pending_submits;
            if w != 0 {
                return Err(format!(
                    "{pid}'s engine has {w} submissions waiting for room"
                ));
            }
            if *delivered.get_or_insert(s.delivered_since_regular) != s.delivered_since_regular {
                return Err(format!(
                    "{pid} delivered {} messages in {r}, another process {}",
                    s.delivered_since_regular,
                    delivered.unwrap_or_default()
                ));
            }
        }
        Ok(live.iter().map(|s| s.pid()).collect())
    }

    fn finish(&mut self, live: Vec<ProcId>) -> Result<(), Failure> {
        let now = self.now;
        if !live.is_empty() {
            self.context = "oracle.check_converged".into();
            let ring = self
                .oracle
                .check_converged(now, &live)
                .map_err(|v| self.violation(v))?;
            self.converged = Some(ring);
            if let Err(v) = self.groups_converged(now) {
                return Err(self.violation(v));
            }
            if self.tracing() {
                self.trace_line(format!(
                    "{now} CONVERGED on ring {ring} with {} processes",
                    live.len()
                ));
            }
        }
        self.context = "oracle.finish".into();
        self.oracle.finish(now).map_err(|v| self.violation(v))
    }

    /// With `--groups`, once the run converged: no barrier is open anywhere, and every view
    /// holds exactly what the live handles joined and did not leave (G1).
    fn groups_converged(&self, now: Instant) -> Result<(), Violation> {
        let Some(checker) = &self.groups else {
            return Ok(());
        };
        let mut want: BTreeMap<Bytes, Vec<(NodeId, HandleId)>> = BTreeMap::new();
        for s in self.slots.iter().filter(|s| s.proc.is_some()) {
            for (&h, groups) in &s.intents {
                for g in groups {
                    want.entry(g.clone()).or_default().push((s.id, h));
                }
            }
        }
        for v in want.values_mut() {
            v.sort_unstable();
        }
        for s in &self.slots {
            let Some(e) = &s.proc else { continue };
            let pid = s.pid();
            if e.in_barrier() || checker.in_barrier(pid) {
                return Err(Violation {
                    property: Property::G1ViewAgreement,
                    at: now,
                    detail: format!(
                        "{pid} converged with the barrier after a merge still open (engine: {}, checker: {})",
                        e.in_barrier(),
                        checker.in_barrier(pid)
                    ),
                });
            }
            let have = e.view().snapshot();
            if have != want {
                return Err(Violation {
                    property: Property::G1ViewAgreement,
                    at: now,
                    detail: format!(
                        "{pid} converged with the view {have:?}, but the live handles joined {want:?}"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The convergence bound passed: liveness (D9) failed, in the oracle's words if it finds the
    /// reason, in ours otherwise.
    fn at_deadline(&mut self) -> Result<(), Failure> {
        let now = self.now;
        let why = match self.settled() {
            Ok(live) => return self.finish(live),
            Err(why) => why,
        };
        let live = self.live();
        self.context = "oracle.check_converged".into();
        if !live.is_empty() {
            if let Err(mut v) = self.oracle.check_converged(now, &live) {
                v.detail += &format!(" (simulator: not settled by the convergence bound: {why})");
                return Err(self.violation(v));
            }
        }
        Err(self.violation(Violation {
            property: Property::D9Liveness,
            at: now,
            detail: format!(
                "not settled by the convergence bound ({:?} after the faults stopped at {}): {why}",
                self.plan.deadline - self.plan.heal_at,
                self.plan.heal_at
            ),
        }))
    }
}

/// One-line summary of a packet for traces.
pub fn describe(data: &Bytes) -> String {
    match wire::decode(data) {
        Err(e) => format!("undecodable ({e}) {}B", data.len()),
        Ok(d) => match d.packet {
            Packet::Token(t) => format!(
                "token {} tseq {} seq {} aru {}@{} backlog {} fcc {}{}{}",
                t.ring_id,
                t.token_seq,
                t.seq,
                t.aru,
                t.aru_addr,
                t.backlog,
                t.fcc,
                if t.retrans_flg { " retrans" } else { "" },
                if t.rtr.is_empty() {
                    String::new()
                } else {
                    format!(" rtr {:?}", t.rtr)
                }
            ),
            Packet::Mcast(m) => format!(
                "mcast {} seq {}{}{} {}B",
                m.ring_id,
                m.seq,
                if m.guarantee == Guarantee::Safe {
                    " safe"
                } else {
                    ""
                },
                if m.encapsulated { " encapsulated" } else { "" },
                m.payload.len()
            ),
            Packet::MergeDetect { ring_id } => format!("merge-detect {ring_id}"),
            Packet::Join(j) => format!(
                "{} ring_seq {} proc {:?} fail {:?} heard {:?}{}{}",
                if j.probe { "probe" } else { "join" },
                j.ring_seq,
                j.proc_list,
                j.fail_list,
                j.heard,
                if j.settled { " settled" } else { "" },
                if j.leave { " leave" } else { "" }
            ),
            Packet::Commit(c) => {
                let members: Vec<String> = c
                    .members
                    .iter()
                    .map(|m| {
                        format!(
                            "{}(old {} aru {} hd {}{})",
                            m.node,
                            m.old_ring_id,
                            m.aru,
                            m.high_delivered,
                            if m.received_flg { " rcvd" } else { "" }
                        )
                    })
                    .collect();
                format!(
                    "commit {} tseq {} index {}/{} [{}]",
                    c.ring_id,
                    c.token_seq,
                    c.memb_index,
                    c.members.len(),
                    members.join(", ")
                )
            }
            Packet::HoldCancel { ring_id } => format!("hold-cancel {ring_id}"),
        },
    }
}

/// One-line summary of an event for traces.
/// One line for an event given to a handle (`--groups`).
pub fn describe_handle_event(ev: &evs_engine::Event) -> String {
    match ev {
        evs_engine::Event::Message {
            sender,
            sender_handle,
            groups,
            ring_id,
            seq,
            index,
            ..
        } => format!(
            "message from n{sender} h{sender_handle} to {:?} ring {ring_id} seq {seq}.{index}",
            groups
                .iter()
                .map(|g| String::from_utf8_lossy(g).into_owned())
                .collect::<Vec<_>>()
        ),
        evs_engine::Event::GroupChange {
            group,
            members,
            joined,
            left,
        } => format!(
            "group {:?} members {members:?} joined {joined:?} left {left:?}",
            String::from_utf8_lossy(group)
        ),
        evs_engine::Event::ConfigChange { kind, ring_id, .. } => {
            format!("config {kind:?} {ring_id}")
        }
    }
}

pub fn describe_event(ev: &Event) -> String {
    match ev {
        Event::Deliver(d) => format!(
            "DELIVER n{}#{:#x} {:?} {}B ring {} seq {}",
            d.sender,
            d.msg_no,
            d.guarantee,
            d.data.len(),
            d.ring_id,
            d.seq
        ),
        Event::ConfigChange(c) => match c.kind {
            ConfigKind::Regular => format!(
                "INSTALL regular {} members {:?} joined {:?}",
                c.ring_id, c.members, c.joined
            ),
            ConfigKind::Transitional => format!(
                "INSTALL transitional (→{}) members {:?} left {:?}",
                c.ring_id, c.members, c.left
            ),
        },
    }
}
