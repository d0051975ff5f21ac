//! Target `ring`: two or three real [`Processor`]s on a network the fuzzer drives.
//!
//! The input is a script of [`Op`]s: deliver, drop, duplicate or reorder the packets the
//! processors sent, deliver an edited copy of one or arbitrary bytes to any processor, move the
//! virtual clock and fire timers, submit messages, crash, restart and leave. After the script
//! the network becomes perfect and the run is given the time the simulator gives a healed run
//! to converge.
//!
//! Checked on every run, whatever was injected (properties of one processor that no input may
//! break): no panic; no processor delivers the same message of a ring twice; per processor the
//! sequence numbers delivered on one ring never go down; its regular configurations have
//! strictly increasing ring ids, list it and are sorted; everything it sends decodes.
//!
//! Checked while the run is *honest* (nothing injected that decodes to a packet no processor
//! sent; dropping, duplicating, delaying and reordering are honest, and so is delivering a sent
//! packet to a processor it was not addressed to, which anyone on the path can do to a sealed
//! frame without the key): every event against the
//! EVS oracle of `totem-sim` (C1-C6, D1-D8), every packet within `max_packet_size`, and after
//! the script liveness (D9): one ring of all live processors that delivered everything.
//! Injected packets that decode are forgeries by an insider, which EVS does not promise to
//! survive (the key is shared; see `evs::crypto`), so they end the oracle's part of the run.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use totem::{
    Config, ConfigKind, Destination, Event, Guarantee, Instant, NodeId, Processor, Start, State,
};
use totem_sim::oracle::{MsgId, Oracle, ProcId};
use totem_sim::plan::convergence_deadline;

/// Longest script run; longer inputs are cut.
const MAX_OPS: usize = 400;
/// Packets in flight beyond this are dropped (oldest first), bounding memory.
const MAX_IN_FLIGHT: usize = 2048;
/// Steps of the perfect-network phase, a bound on the work of one run beyond its deadline.
const MAX_SETTLE_STEPS: usize = 200_000;

#[derive(Arbitrary, Debug)]
pub enum Op {
    /// Deliver the in-flight packet `pick` (modulo the number in flight).
    Deliver {
        pick: u16,
    },
    /// Deliver up to `n` packets in the order sent (the normal network).
    DeliverInOrder {
        n: u8,
    },
    Drop {
        pick: u16,
    },
    Duplicate {
        pick: u16,
    },
    /// Deliver a copy of in-flight packet `pick` to processor `to`, with byte edits.
    Mutated {
        pick: u16,
        to: u8,
        edits: Vec<(u16, u8)>,
        truncate: Option<u16>,
    },
    /// Arbitrary bytes to processor `to`.
    Inject {
        to: u8,
        bytes: Vec<u8>,
    },
    /// Move the clock forward and fire every timer that is due.
    Advance {
        ms: u16,
    },
    /// Jump to the earliest timer and fire it.
    NextTimer,
    Submit {
        from: u8,
        len: u16,
        safe: bool,
    },
    Crash {
        node: u8,
    },
    Start {
        node: u8,
    },
    Leave {
        node: u8,
    },
}

#[derive(Arbitrary, Debug)]
pub struct Script {
    pub three: bool,
    pub ops: Vec<Op>,
}

/// The configuration of every processor: the simulator's scenario timers.
pub fn config() -> Config {
    totem_sim::scenario::scenario_config()
}

struct Slot {
    id: NodeId,
    incarnation: u32,
    proc: Option<Processor>,
    /// The persisted ring-seq high-water mark, kept across crashes.
    disk_ring_seq: u64,
    /// Per incarnation: every delivered `(ring, seq, sender, msg_no)`.
    delivered: HashSet<(totem::RingId, u64, NodeId, u64)>,
    last_seq: BTreeMap<totem::RingId, u64>,
    last_regular: Option<totem::RingId>,
    last_kind: Option<ConfigKind>,
    regular_members: Vec<NodeId>,
    own_pending: BTreeSet<u64>,
    delivered_since_regular: u64,
    next_payload: u64,
}

impl Slot {
    fn pid(&self) -> ProcId {
        ProcId {
            node: self.id,
            incarnation: self.incarnation,
        }
    }
}

struct Ring {
    cfg: Config,
    now: Instant,
    slots: Vec<Slot>,
    /// `(destination index, packet)` in send order.
    in_flight: Vec<(usize, Bytes)>,
    /// Every packet a processor sent, to tell a replayed one from a forged one.
    honest: HashSet<Bytes>,
    oracle: Oracle,
    tainted: bool,
}

/// The script an input stands for, for reading a crash.
pub fn describe(data: &[u8]) -> String {
    match Script::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(s) => format!("{s:#?}"),
        Err(e) => format!("not a script: {e}"),
    }
}

pub fn run(data: &[u8]) {
    if std::env::var_os("FUZZ_RING_SCRIPT").is_some() {
        eprintln!("{}", describe(data));
    }
    let Ok(mut script) = Script::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    script.ops.truncate(MAX_OPS);
    let n = if script.three { 3 } else { 2 };
    let mut ring = Ring::new(n);
    for op in &script.ops {
        ring.apply(op);
    }
    ring.settle();
}

impl Ring {
    fn new(n: usize) -> Ring {
        let mut ring = Ring {
            cfg: config(),
            now: Instant::from_millis(1),
            slots: Vec::new(),
            in_flight: Vec::new(),
            honest: HashSet::new(),
            oracle: Oracle::new(),
            tainted: false,
        };
        for i in 0..n {
            ring.slots.push(Slot {
                id: i as NodeId + 1,
                incarnation: 0,
                proc: None,
                // Half the disks hold a ring sequence number (steps of 4), half none (random
                // steps, and nothing persisted: see `Processor::ring_seq_to_persist`).
                disk_ring_seq: if i % 2 == 0 { 0 } else { 1_000 },
                delivered: HashSet::new(),
                last_seq: BTreeMap::new(),
                last_regular: None,
                last_kind: None,
                regular_members: Vec::new(),
                own_pending: BTreeSet::new(),
                delivered_since_regular: 0,
                next_payload: 0,
            });
            ring.start(i);
        }
        ring
    }

    fn index(&self, v: u8) -> usize {
        usize::from(v) % self.slots.len()
    }

    fn start(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if s.proc.is_some() {
            return;
        }
        s.incarnation += 1;
        let start = Start {
            ring_seq: s.disk_ring_seq,
            first_msg_no: u64::from(s.incarnation) << 40,
            seed: u64::from(s.id) << 8 | u64::from(s.incarnation),
        };
        let p = Processor::new(self.cfg.clone(), s.id, start, self.now).expect("valid config");
        s.proc = Some(p);
        s.delivered.clear();
        s.last_seq.clear();
        s.last_regular = None;
        s.last_kind = None;
        s.regular_members.clear();
        s.own_pending.clear();
        s.delivered_since_regular = 0;
        let pid = s.pid();
        if start.ring_seq == 0 {
            // No bound to keep C3 across restarts with (C2 still holds).
            self.oracle.lost_disk(s.id);
        }
        self.oracle.started(pid, self.now);
        self.pump(i);
    }

    fn crash(&mut self, i: usize) {
        if self.slots[i].proc.take().is_some() {
            let pid = self.slots[i].pid();
            self.oracle.crashed(pid, self.now);
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Deliver { pick } => {
                if !self.in_flight.is_empty() {
                    let (to, data) = self
                        .in_flight
                        .remove(usize::from(pick) % self.in_flight.len());
                    self.deliver(to, data);
                }
            }
            Op::DeliverInOrder { n } => {
                for _ in 0..n {
                    if self.in_flight.is_empty() {
                        break;
                    }
                    let (to, data) = self.in_flight.remove(0);
                    self.deliver(to, data);
                }
            }
            Op::Drop { pick } => {
                if !self.in_flight.is_empty() {
                    self.in_flight
                        .remove(usize::from(pick) % self.in_flight.len());
                }
            }
            Op::Duplicate { pick } => {
                if !self.in_flight.is_empty() {
                    let copy = self.in_flight[usize::from(pick) % self.in_flight.len()].clone();
                    self.in_flight.push(copy);
                }
            }
            Op::Mutated {
                pick,
                to,
                ref edits,
                truncate,
            } => {
                if self.in_flight.is_empty() {
                    return;
                }
                let mut bytes = self.in_flight[usize::from(pick) % self.in_flight.len()]
                    .1
                    .to_vec();
                for &(at, b) in edits.iter().take(8) {
                    if !bytes.is_empty() {
                        let at = usize::from(at) % bytes.len();
                        bytes[at] ^= b;
                    }
                }
                if let Some(t) = truncate {
                    bytes.truncate(usize::from(t) % (bytes.len() + 1));
                }
                let to = self.index(to);
                self.inject(to, Bytes::from(bytes));
            }
            Op::Inject { to, ref bytes } => {
                let to = self.index(to);
                self.inject(to, Bytes::copy_from_slice(bytes));
            }
            Op::Advance { ms } => {
                self.now = self.now + Duration::from_millis(u64::from(ms % 2000));
                self.fire_due();
            }
            Op::NextTimer => {
                if let Some((at, i)) = self.next_timer() {
                    self.now = self.now.max(at);
                    self.fire(i);
                }
            }
            Op::Submit { from, len, safe } => self.submit(self.index(from), len, safe),
            Op::Crash { node } => self.crash(self.index(node)),
            Op::Start { node } => self.start(self.index(node)),
            Op::Leave { node } => {
                let i = self.index(node);
                let now = self.now;
                if let Some(p) = self.slots[i].proc.as_mut() {
                    p.leave(now);
                    self.pump(i);
                    // A processor that left emits nothing more: for the oracle it crashed.
                    self.crash(i);
                }
            }
        }
    }

    fn inject(&mut self, to: usize, data: Bytes) {
        if !self.honest.contains(&data) && totem::wire::decode(&data).is_ok() {
            self.tainted = true;
        }
        self.deliver(to, data);
    }

    fn deliver(&mut self, to: usize, data: Bytes) {
        let now = self.now;
        if let Some(p) = self.slots[to].proc.as_mut() {
            p.handle_packet(now, data);
            self.pump(to);
        }
    }

    fn next_timer(&self) -> Option<(Instant, usize)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.proc.as_ref()?.poll_timeout().map(|t| (t, i)))
            .min()
    }

    fn fire(&mut self, i: usize) {
        let now = self.now;
        if let Some(p) = self.slots[i].proc.as_mut() {
            p.handle_timeout(now);
            self.pump(i);
        }
    }

    fn fire_due(&mut self) {
        // Each firing may arm new timers; a bounded number of rounds keeps a timer that re-arms
        // itself at `now` from looping forever (that would be a bug, caught as a hang).
        for _ in 0..64 {
            match self.next_timer() {
                Some((at, i)) if at <= self.now => self.fire(i),
                _ => return,
            }
        }
    }

    fn submit(&mut self, i: usize, len: u16, safe: bool) {
        let now = self.now;
        let s = &mut self.slots[i];
        let Some(p) = s.proc.as_mut() else { return };
        s.next_payload += 1;
        // Contents that name the submission, so a mixed-up delivery shows in the digest.
        let tag = (u64::from(s.id) << 48) ^ (u64::from(s.incarnation) << 40) ^ s.next_payload;
        let data: Vec<u8> = tag
            .to_le_bytes()
            .iter()
            .cycle()
            .take(usize::from(len % 4000))
            .copied()
            .collect();
        let guarantee = if safe {
            Guarantee::Safe
        } else {
            Guarantee::Agreed
        };
        let Ok(msg_no) = p.submit(now, Bytes::from(data.clone()), guarantee) else {
            return;
        };
        s.own_pending.insert(msg_no);
        let pid = s.pid();
        let id = MsgId {
            sender: s.id,
            msg_no,
        };
        self.oracle.submitted(pid, now, id, guarantee, &data);
        self.pump(i);
    }

    /// Moves everything the processor produced to the network and the checkers.
    fn pump(&mut self, i: usize) {
        let now = self.now;
        let n = self.slots.len();
        let s = &mut self.slots[i];
        let Some(p) = s.proc.as_mut() else { return };
        let pid = ProcId {
            node: s.id,
            incarnation: s.incarnation,
        };
        s.disk_ring_seq = s.disk_ring_seq.max(p.ring_seq_to_persist());
        while let Some(t) = p.poll_transmit() {
            assert!(
                totem::wire::decode(&t.data).is_ok(),
                "{pid} sent a packet that does not decode: {:02x?}",
                &t.data[..]
            );
            if !self.tainted {
                assert!(
                    t.data.len() <= self.cfg.max_packet_size,
                    "{pid} sent {} bytes, over max_packet_size",
                    t.data.len()
                );
            }
            self.honest.insert(t.data.clone());
            match t.destination {
                Destination::Multicast => {
                    for to in (0..n).filter(|&to| to != i) {
                        self.in_flight.push((to, t.data.clone()));
                    }
                }
                Destination::Node(node) => {
                    // Unicast to a node id outside the ring goes nowhere.
                    if let Some(to) = (0..n).find(|&to| to as NodeId + 1 == node) {
                        self.in_flight.push((to, t.data));
                    }
                }
            }
        }
        if self.in_flight.len() > MAX_IN_FLIGHT {
            let excess = self.in_flight.len() - MAX_IN_FLIGHT;
            self.in_flight.drain(..excess);
        }
        let events: Vec<Event> = std::iter::from_fn(|| p.poll_event()).collect();
        for ev in events {
            check_local(s, pid, &ev);
            if !self.tainted {
                if let Err(v) = self.oracle.observe(pid, now, &ev) {
                    panic!("EVS oracle: {v}");
                }
            }
        }
    }

    /// The perfect network after the script: deliver in order, fire timers, until every live
    /// processor is settled on one ring or the simulator's convergence bound passes.
    fn settle(&mut self) {
        let live = || self.slots.iter().filter(|s| s.proc.is_some()).count();
        if live() == 0 {
            return;
        }
        let deadline = convergence_deadline(&self.cfg, live(), self.now, Duration::from_secs(2));
        for _ in 0..MAX_SETTLE_STEPS {
            if !self.tainted && self.settled().is_ok() {
                break;
            }
            if !self.in_flight.is_empty() {
                let (to, data) = self.in_flight.remove(0);
                self.deliver(to, data);
                continue;
            }
            match self.next_timer() {
                Some((at, i)) if at <= deadline => {
                    self.now = self.now.max(at);
                    self.fire(i);
                }
                _ => break,
            }
        }
        if self.tainted {
            return;
        }
        if let Err(v) = self.oracle.finish(self.now) {
            panic!("EVS oracle: {v}");
        }
        let pids: Vec<ProcId> = self
            .slots
            .iter()
            .filter(|s| s.proc.is_some())
            .map(Slot::pid)
            .collect();
        if let Err(why) = self.settled() {
            if let Err(v) = self.oracle.check_converged(self.now, &pids) {
                panic!("EVS oracle: {v} (not settled: {why})");
            }
            panic!("D9 liveness: not settled by {}: {why}", self.now);
        }
        if let Err(v) = self.oracle.check_converged(self.now, &pids) {
            panic!("EVS oracle: {v}");
        }
    }

    /// As the simulator's: all live processors operational in one regular configuration made of
    /// exactly them, with their own messages delivered and nothing queued.
    fn settled(&self) -> Result<(), String> {
        let ids: Vec<NodeId> = self
            .slots
            .iter()
            .filter(|s| s.proc.is_some())
            .map(|s| s.id)
            .collect();
        let mut ring = None;
        let mut delivered = None;
        for s in self.slots.iter().filter(|s| s.proc.is_some()) {
            let p = s.proc.as_ref().expect("live");
            let pid = s.pid();
            if p.state() != State::Operational {
                return Err(format!("{pid} is in {:?}", p.state()));
            }
            let Some(r) = s.last_regular else {
                return Err(format!("{pid} installed no regular configuration"));
            };
            if s.last_kind != Some(ConfigKind::Regular) {
                return Err(format!("{pid} is in a transitional configuration"));
            }
            if *ring.get_or_insert(r) != r {
                return Err(format!("{pid} is in ring {r}, another in {ring:?}"));
            }
            if s.regular_members != ids {
                return Err(format!(
                    "{pid}'s ring {r} has members {:?}, live nodes are {ids:?}",
                    s.regular_members
                ));
            }
            if !s.own_pending.is_empty() {
                return Err(format!("{pid} has own messages undelivered"));
            }
            if p.send_queue_messages() != 0 {
                return Err(format!("{pid} has queued messages"));
            }
            if *delivered.get_or_insert(s.delivered_since_regular) != s.delivered_since_regular {
                return Err(format!("{pid} delivered a different number in {r}"));
            }
        }
        Ok(())
    }
}

/// The properties of one processor's own stream that no input may break.
fn check_local(s: &mut Slot, pid: ProcId, ev: &Event) {
    match ev {
        Event::Deliver(d) => {
            assert!(
                s.delivered.insert((d.ring_id, d.seq, d.sender, d.msg_no)),
                "{pid} delivered m{}:{} of ring {} seq {} twice",
                d.sender,
                d.msg_no,
                d.ring_id,
                d.seq
            );
            let last = s.last_seq.entry(d.ring_id).or_insert(d.seq);
            assert!(
                d.seq >= *last,
                "{pid} delivered seq {} on ring {} after seq {last}",
                d.seq,
                d.ring_id
            );
            *last = d.seq;
            if d.sender == s.id {
                s.own_pending.remove(&d.msg_no);
            }
            s.delivered_since_regular += 1;
        }
        Event::ConfigChange(cc) => {
            assert!(
                cc.members.windows(2).all(|w| w[0] < w[1]),
                "{pid}: members not ascending: {cc:?}"
            );
            if cc.kind == ConfigKind::Regular {
                assert!(
                    cc.members.contains(&s.id),
                    "{pid} installed a ring without itself: {cc:?}"
                );
                if let Some(prev) = s.last_regular {
                    assert!(
                        cc.ring_id.seq > prev.seq,
                        "{pid} installed ring {} after ring {prev}",
                        cc.ring_id
                    );
                }
                s.last_regular = Some(cc.ring_id);
                s.regular_members = cc.members.clone();
                s.delivered_since_regular = 0;
            }
            s.last_kind = Some(cc.kind);
        }
    }
}

/// Packets of an honest three-processor run with a mixed workload (small, packed, fragmented,
/// safe messages) and a crash and restart: seeds for the decoder targets.
pub fn capture_packets() -> Vec<Bytes> {
    let mut ring = Ring::new(3);
    let mut script = vec![Op::DeliverInOrder { n: 255 }, Op::NextTimer];
    script.extend((0..40).flat_map(|k: u16| {
        [
            Op::Submit {
                from: k as u8,
                len: k * k * 3,
                safe: k.is_multiple_of(5),
            },
            Op::DeliverInOrder { n: 20 },
            Op::NextTimer,
        ]
    }));
    script.extend([
        Op::Crash { node: 2 },
        Op::Advance { ms: 1500 },
        Op::DeliverInOrder { n: 255 },
        Op::Start { node: 2 },
    ]);
    for _ in 0..40 {
        script.extend([Op::DeliverInOrder { n: 255 }, Op::NextTimer]);
    }
    for op in &script {
        ring.apply(op);
    }
    let mut v: Vec<Bytes> = ring.honest.into_iter().collect();
    v.sort();
    v
}
