//! The Totem processor: ordering ring, flow control, membership and EVS delivery.
//!
//! One [`Processor`] is one member of a Totem single ring. It owns no I/O: see the crate docs.
//! The names follow Corosync's `totemsrp.c` and the Totem paper (aru, token_seq, gather,
//! commit, recovery, transitional configuration) so that a reader of either finds each concept.
//!
//! This file holds the [`Processor`] type, its public API and the plumbing every part uses; the
//! protocol is split by concept, each file an `impl Processor` block of its own:
//!
//! - `sort_queue`: the sort queues of the installed regular ring and of the ring being formed;
//! - `timers`: deadlines tagged with the membership epoch, and what each timer does;
//! - `delivery`: multicasts into the sort queues, delivery to the application;
//! - `token`: one visit of the ORF token (flow control, the aru rule, hold, forwarding);
//! - `retransmit`: token retransmission and retransmission requests for missing messages;
//! - `membership`: foreign traffic, GATHER (joins, consensus), quarantine and probes;
//! - `commit`: COMMIT, the commit token's two rotations;
//! - `recovery`: RECOVERY and the installation of the new ring.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::config::{Config, ConfigError};
use crate::pack::{Packer, Reassembler, SubmitError, Unpacked};
use crate::stats::{Ignored, Stats};
use crate::types::{Guarantee, Instant, NodeId, RingId};
use crate::wire::{self, Join, Packet, PacketType};

/// Checks an invariant of the processor: always with the `invariants` feature of this crate
/// (which the simulator and the fuzz harness enable, so their release builds check too), and
/// otherwise like `debug_assert!` (debug builds only). The product's release build (`evs`, which
/// does not enable the feature) checks nothing.
macro_rules! invariant {
    ($($arg:tt)*) => {
        if cfg!(feature = "invariants") {
            assert!($($arg)*);
        } else {
            debug_assert!($($arg)*);
        }
    };
}

mod commit;
mod delivery;
mod membership;
mod recovery;
mod retransmit;
mod sort_queue;
#[cfg(test)]
mod tests;
mod timers;
mod token;

use membership::Quarantine;
use membership::{has, sorted, Row};
use recovery::{OldRingState, Recovery};
use retransmit::ROTATION_SAMPLES;
use sort_queue::SortQueue;
use timers::{Timer, TIMER_KINDS};

/// Where a packet must go.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// To every processor on the network (the sender may receive it too; it ignores its own).
    Multicast,
    /// To one processor (the ring successor), possibly this processor itself.
    Node(NodeId),
}

/// A packet to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub destination: Destination,
    pub data: Bytes,
}

/// Which of the two configuration changes of extended virtual synchrony this is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConfigKind {
    Transitional,
    Regular,
}

/// A configuration change, delivered in the agreed stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigChange {
    pub kind: ConfigKind,
    /// The ring being installed (for a transitional configuration: the ring that follows it).
    pub ring_id: RingId,
    /// Members, ascending.
    pub members: Vec<NodeId>,
    /// Transitional only: members of the previous regular configuration that are gone.
    pub left: Vec<NodeId>,
    /// Regular only: members that were not in the preceding transitional configuration.
    pub joined: Vec<NodeId>,
}

/// An application message, delivered in agreed (or safe) order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub sender: NodeId,
    /// The sender's number for this message (assigned at submission).
    pub msg_no: u64,
    /// The ring on which the message was ordered.
    pub ring_id: RingId,
    /// Sequence number, on `ring_id`, of the multicast that completed this message.
    pub seq: u64,
    /// Position of this message among those completed by multicast `seq` (several small
    /// messages share one packet): `(ring_id, seq, index)` is unique, and ordered like the
    /// deliveries.
    pub index: u32,
    pub guarantee: Guarantee,
    pub data: Bytes,
}

/// Output of the processor, in the order the application must see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Deliver(Delivery),
    ConfigChange(ConfigChange),
}

/// Values a processor needs from outside at start, because the core has no clock, disk or
/// randomness of its own.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Start {
    /// A ring sequence number at least as high as any ring this node id took part in before
    /// (persisted from [`Processor::ring_seq_to_persist`], or derived from a wall clock); rings
    /// it creates will be numbered above it. 0 means unknown (a first start, or a lost disk):
    /// the processor then numbers its rings with random steps.
    pub ring_seq: u64,
    /// Number given to the first submitted message.
    pub first_msg_no: u64,
    /// Seed of the processor's private random stream (join jitter).
    pub seed: u64,
}

/// Membership state.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Operational,
    Gather,
    Commit,
    Recovery,
    /// Left the ring on request; ignores all input.
    Left,
}

/// The membership state with the data that exists only in it: what only COMMIT and RECOVERY
/// need cannot be read (or left stale) in another state. [`Processor::state`] names it.
#[derive(Debug)]
enum Phase {
    Operational,
    Gather,
    Commit {
        /// Members of the ring being formed (`latest_ring`), from the commit token; Corosync's
        /// `my_new_memb`.
        forming_memb: Vec<NodeId>,
    },
    Recovery(Recovery),
    Left,
}

/// One Totem processor.
#[derive(Debug)]
pub struct Processor {
    cfg: Config,
    me: NodeId,
    /// The membership state, with the data that exists only in it (see [`Phase`]).
    phase: Phase,
    rng: u64,
    /// Bumped at every membership state change; timers armed earlier are stale.
    epoch: u64,

    /// The newest ring this processor entered (Corosync's `my_ring_id`): the ring being formed
    /// in COMMIT and RECOVERY, the installed ring (`installed_ring`) when OPERATIONAL. In
    /// GATHER it is whichever of the two came last: a failed attempt's ring stays here until
    /// the next commit token. Tokens, hold cancels and merge detects are of this ring.
    latest_ring: RingId,
    /// The last installed regular ring (or the start pseudo-ring): the ring of
    /// `installed_memb` and of `regular_queue`, the one the application was told of. It
    /// changes only at installation; `latest_ring` equals it unless a new ring is being formed
    /// (or an attempt failed) since.
    installed_ring: RingId,
    /// Highest ring sequence number adopted or seen (Corosync's `token_ring_id_seq`).
    ring_seq_high: u64,
    /// Set when the driver knew no ring sequence number (`Start::ring_seq` 0): the rings this
    /// processor creates are numbered with a random step (see `create_commit_token`).
    ring_salt: Option<u64>,
    /// Members of `installed_ring`, the last installed regular configuration (initially just
    /// this processor). Corosync's `my_memb`.
    installed_memb: Vec<NodeId>,
    installed_any: bool,

    proc_set: BTreeSet<NodeId>,
    fail_set: BTreeSet<NodeId>,
    /// For members of `fail_set`: the ring sequence number of the latest join they had sent
    /// when they were failed (`Processor::moved_on`).
    failed_at: BTreeMap<NodeId, u64>,
    /// Processors taken back into this round by `moved_on` (cleared when a round starts and at
    /// installation): a ring-mate's failure of one of them is not adopted again in this round
    /// (`Processor::join_process`).
    taken_back: BTreeSet<NodeId>,
    consensus: BTreeSet<NodeId>,
    /// Processors whose full-size datagrams do not reach us: set when we failed to receive
    /// (our aru stuck for `fail_recv_const` rotations while their small packets still came),
    /// cleared by a full-size packet from each. Left out of every `heard` list we report, so
    /// that the membership treats them as a cut one-way link.
    deaf_from: BTreeSet<NodeId>,

    /// The installed ring's aru and high seq when this processor first entered COMMIT since
    /// the last installation. Kept across failed attempts (GATHER included) until the next
    /// installation: a failed RECOVERY restores them, and while it is set multicasts of the
    /// installed ring no longer go into the regular queue.
    old_state: Option<OldRingState>,

    /// Messages of `installed_ring`. (The ring being formed has its queue in
    /// [`Recovery::queue`].)
    regular_queue: SortQueue,
    /// All-received-up-to in the current queue (regular, or recovery in RECOVERY).
    aru: u64,
    high_seq: u64,
    /// Highest sequence number of the regular queue delivered to the application.
    high_delivered: u64,
    /// `token.aru` as received on the previous token visit.
    last_aru: u64,
    /// SAFE messages up to here are held by every member of the regular configuration.
    safe_bound: u64,
    /// `token_seq` of the last accepted token (duplicate filter).
    token_seq_seen: Option<u64>,
    /// `token.seq` on the previous visit (idle detection).
    last_token_seq_value: Option<u64>,
    seq_unchanged: u32,
    aru_count: u32,
    /// Accelerated Ring: the ring and `token.seq` when this processor last forwarded the
    /// token. Every message up to that seq was sent a rotation ago, so only those are
    /// requested for retransmission; later ones may still be on their way behind the token.
    forwarded_seq: Option<(RingId, u64)>,
    /// When this processor last multicast a join (coalescing of re-sends, see `gather_enter`).
    last_join_sent: Option<Instant>,
    // Membership under partial connectivity (docs/protocol-notes.md).
    /// When the current membership round began: this processor left OPERATIONAL (or a failed
    /// COMMIT or RECOVERY), or started.
    round_start: Instant,
    /// When a full-size membership or token packet (a padded join or probe, typically) last
    /// came directly from each processor. (Multicasts do not count: a retransmitted one names
    /// its originator, not the member that sent it.)
    last_heard: BTreeMap<NodeId, Instant>,
    /// When a join (not a probe, not a leave) last came from each processor: taking part in
    /// our membership round is what proves it hears us.
    last_joined: BTreeMap<NodeId, Instant>,
    /// When any packet naming each processor as sender last arrived (multicasts included).
    last_seen: BTreeMap<NodeId, Instant>,
    /// Whether the packet being handled came from a processor not heard for a while.
    sender_was_quiet: bool,
    /// Each processor's latest join.
    rows: BTreeMap<NodeId, Row>,
    /// How many times the consensus timer expired in this round. Once it has, the round is
    /// settled: whom we have not heard by then we cannot hear, and our joins say so.
    expiries: u32,
    /// Processors failed since the last installation because joins showed links to them
    /// broken (or because they never joined while their packets reached us).
    link_failed: BTreeSet<NodeId>,
    /// The latest `heard` list of each processor's joins and probes, and when it came:
    /// evidence of which links work, for re-admitting quarantined processors.
    reports: BTreeMap<NodeId, (Instant, Vec<NodeId>)>,
    /// The ring each processor's latest probe named: multicasts of a quarantined processor's
    /// ring are no reason for a round either, whoever originated them (a member we do not
    /// hear can reach us through another's retransmission).
    probe_rings: BTreeMap<NodeId, RingId>,
    quarantine: BTreeMap<NodeId, Quarantine>,
    last_probe: Option<Instant>,
    /// Flow control: packets sent on the previous visit, and backlog published then.
    trc: u32,
    pbl: u32,
    token_held: bool,
    hold_cancel_sent: bool,
    /// The representative holds the token (idle ring) and will send `last_token` later.
    holding: bool,
    /// The last token (ORF or commit) sent, and to whom: re-sent by the retransmit timer.
    last_token: Option<(NodeId, Bytes, PacketType)>,
    /// The ring and time of this processor's last token visit: the next visit on the same
    /// ring closes a rotation (the statistics of every member, not only the representative's).
    last_token_at: Option<(RingId, Instant)>,
    /// When this processor last forwarded the ORF token, if the ring cannot be held before
    /// the token comes back: the time to the next token is then a rotation sample (an upper
    /// bound of the rotation when the token was lost and retransmitted on the way).
    forwarded_at: Option<Instant>,
    /// Recent rotation samples (forward to next token), newest last. Their minimum is the
    /// rotation estimate: samples stretched by a lost token do not inflate it.
    rotations: VecDeque<Duration>,
    /// Token retransmissions since the last accepted token (exponential backoff).
    retransmit_backoff: u32,

    packer: Packer,
    reasm: Reassembler,
    scratch: Vec<Unpacked>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    timers: [Option<Timer>; TIMER_KINDS.len()],
    stats: Stats,
}

/// splitmix64's output function.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Processor {
    /// Creates a processor that immediately starts a membership round: it forms a ring alone, or
    /// with the processors it hears.
    pub fn new(
        config: Config,
        id: NodeId,
        start: Start,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if id == 0 {
            return Err(ConfigError {
                key: "nodeid",
                reason: "node id 0 is reserved".into(),
            });
        }
        let s0 = config.initial_seq;
        let packer = Packer::new(
            config.max_message_size,
            config.send_queue_bytes,
            start.first_msg_no,
        );
        let reasm = Reassembler::new(config.max_message_size);
        // Before its first ring, a processor's "regular ring" is a pseudo ring with
        // representative 0: no real ring has that id, so nothing of an earlier incarnation's
        // rings can be mistaken for this one's.
        let pseudo = RingId::new(0, start.ring_seq);
        let mut p = Processor {
            cfg: config,
            me: id,
            phase: Phase::Gather,
            rng: start.seed ^ 0x9E37_79B9_7F4A_7C15,
            epoch: 0,
            latest_ring: pseudo,
            installed_ring: pseudo,
            ring_seq_high: start.ring_seq,
            ring_salt: (start.ring_seq == 0).then(|| mix64(start.seed ^ 0xD1B5_4A32_D192_ED03)),
            installed_memb: vec![id],
            installed_any: false,
            proc_set: BTreeSet::new(),
            fail_set: BTreeSet::new(),
            failed_at: BTreeMap::new(),
            taken_back: BTreeSet::new(),
            consensus: BTreeSet::new(),
            deaf_from: BTreeSet::new(),
            old_state: None,
            regular_queue: SortQueue::new(s0),
            aru: s0,
            high_seq: s0,
            high_delivered: s0,
            last_aru: s0,
            safe_bound: s0,
            token_seq_seen: None,
            last_token_seq_value: None,
            seq_unchanged: 0,
            aru_count: 0,
            forwarded_seq: None,
            last_join_sent: None,
            round_start: now,
            last_heard: BTreeMap::new(),
            last_joined: BTreeMap::new(),
            last_seen: BTreeMap::new(),
            sender_was_quiet: false,
            rows: BTreeMap::new(),
            expiries: 0,
            link_failed: BTreeSet::new(),
            reports: BTreeMap::new(),
            probe_rings: BTreeMap::new(),
            quarantine: BTreeMap::new(),
            last_probe: None,
            trc: 0,
            pbl: 0,
            token_held: false,
            hold_cancel_sent: false,
            holding: false,
            last_token: None,
            last_token_at: None,
            forwarded_at: None,
            rotations: VecDeque::with_capacity(ROTATION_SAMPLES),
            retransmit_backoff: 0,
            packer,
            reasm,
            scratch: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            timers: [None; TIMER_KINDS.len()],
            stats: Stats::default(),
        };
        p.gather_enter(now);
        Ok(p)
    }

    pub fn id(&self) -> NodeId {
        self.me
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Operational => State::Operational,
            Phase::Gather => State::Gather,
            Phase::Commit { .. } => State::Commit,
            Phase::Recovery(_) => State::Recovery,
            Phase::Left => State::Left,
        }
    }

    /// The ring of the last installed regular configuration.
    pub fn ring_id(&self) -> RingId {
        self.installed_ring
    }

    /// Members of the last installed regular configuration, ascending.
    pub fn members(&self) -> &[NodeId] {
        &self.installed_memb
    }

    /// The highest ring sequence number this processor has adopted or seen (what its joins
    /// announce). To persist, use [`Self::ring_seq_to_persist`].
    pub fn ring_seq_high_water(&self) -> u64 {
        self.ring_seq_high.max(self.latest_ring.seq)
    }

    /// What a driver persists (or otherwise guarantees never goes down) and hands back in
    /// [`Start::ring_seq`] on restart, so that a restarted processor never re-creates a ring id
    /// that already existed: the high-water mark, or 0 ("unknown") for a processor started
    /// with `Start::ring_seq` 0. Such a processor's high-water mark only bounds the rings it
    /// and the members it met took part in, not the rings an incarnation before the loss
    /// formed alone; a later incarnation handed that value back would step by 4 from it and
    /// could re-create one of them. Passing 0 on keeps every later incarnation on random steps
    /// (see `create_commit_token`): once lost, the history stays unknown.
    pub fn ring_seq_to_persist(&self) -> u64 {
        match self.ring_salt {
            Some(_) => 0,
            None => self.ring_seq_high_water(),
        }
    }

    /// Application messages waiting in the send queue (a partly sent one counts): cheap,
    /// for drivers that refund send budgets as messages leave.
    pub fn send_queue_messages(&self) -> usize {
        self.packer.queued_messages()
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.ring_id = self.installed_ring;
        s.members = self.installed_memb.len();
        s.send_queue_messages = self.packer.queued_messages();
        s.send_queue_bytes = self.packer.queued_bytes();
        s.sort_queue_len = self.regular_queue.len() + self.recovery().map_or(0, |r| r.queue.len());
        s.quarantined = self.quarantine.len();
        s
    }

    /// Next packet to send. Poll until `None` after every `handle_*`, `submit` or `leave` call.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the application, in agreed order. Poll until `None` after every call
    /// that feeds the processor.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest deadline at which `handle_timeout` must be called, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().map(|t| t.at).min()
    }

    /// Queues an application message; returns its message number. The message is sent when
    /// this processor next holds the token.
    pub fn submit(
        &mut self,
        now: Instant,
        data: Bytes,
        guarantee: Guarantee,
    ) -> Result<u64, SubmitError> {
        let no = self.packer.push(data, guarantee)?;
        self.stats.messages_submitted += 1;
        self.check_invariants();
        if self.state() == State::Operational && self.token_held {
            if self.latest_ring.rep == self.me {
                if self.holding {
                    self.release_held_token(now);
                }
            } else if !self.hold_cancel_sent {
                self.hold_cancel_sent = true;
                let ring_id = self.latest_ring;
                self.send(Destination::Multicast, &Packet::HoldCancel { ring_id });
                self.expect_token_soon(now);
            }
        }
        Ok(no)
    }

    /// Leaves the ring: multicasts a leave message and ignores all further input.
    pub fn leave(&mut self, _now: Instant) {
        if self.state() == State::Left {
            return;
        }
        let mut fail = self.fail_set.clone();
        fail.insert(self.me);
        let proc_list: Vec<NodeId> = self
            .proc_set
            .iter()
            .chain(self.installed_memb.iter())
            .copied()
            .filter(|&n| n != self.me)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let join = Join {
            ring_seq: self.latest_ring.seq,
            high_seq: self.ring_seq_high_water(),
            leave: true,
            installed: self.installed_any && self.latest_ring == self.installed_ring,
            settled: self.settled(),
            probe: false,
            proc_list,
            fail_list: sorted(&fail),
            heard: Vec::new(),
            padding: 0,
        };
        // Twice: a lost leave only costs the others a token timeout, but it is cheap to avoid.
        for _ in 0..2 {
            self.send(Destination::Multicast, &Packet::Join(join.clone()));
        }
        self.phase = Phase::Left;
        self.timers = [None; TIMER_KINDS.len()];
    }

    /// Feeds one received datagram (already authenticated). Never panics on any input; every
    /// packet that is rejected or not used is counted in [`Stats`].
    pub fn handle_packet(&mut self, now: Instant, data: Bytes) {
        self.handle_packet_inner(now, data);
        self.check_invariants();
    }

    fn handle_packet_inner(&mut self, now: Instant, data: Bytes) {
        if self.state() == State::Left {
            return;
        }
        let decoded = match wire::decode(&data) {
            Ok(d) => d,
            Err(e) => {
                self.stats.rejected[e.index()] += 1;
                return;
            }
        };
        self.stats.packets_in.add(decoded.packet.packet_type());
        let sender = decoded.sender;
        let mut joined_first = false;
        if sender != self.me {
            // Not for the multicasts of an operational ring (the hot path): only what arrives
            // during a membership round counts as seen, and a foreign multicast that starts one
            // is recorded in `on_foreign`.
            let mcast = decoded.packet.packet_type() == PacketType::Mcast;
            if !mcast || self.state() != State::Operational {
                self.last_seen.insert(sender, now);
            }
            // A full-size datagram, or a join padded to its sender's packet size: the path from
            // the sender carries the ring's traffic. Only these count as hearing it directly:
            // over a path that loses big datagrams (an MTU black hole), tokens, merge detects
            // and hold cancels still arrive.
            let full = data.len() >= self.cfg.max_packet_size
                || matches!(&decoded.packet, Packet::Join(j) if j.padding > 0);
            if full {
                if !mcast {
                    self.note_heard(now, sender);
                }
                if !self.deaf_from.is_empty() {
                    self.deaf_from.remove(&sender);
                }
            }
            // A probe proves the link from its sender to us as well as a join does.
            if matches!(&decoded.packet, Packet::Join(j) if !j.leave) {
                let before = self.last_joined.insert(sender, now);
                joined_first = before.is_none_or(|t| t < self.round_start);
            }
        }
        let joins_sent = self.last_join_sent;
        match decoded.packet {
            Packet::Mcast(m) => self.on_mcast(now, sender, m, data),
            Packet::Token(t) => self.on_token(now, sender, t),
            Packet::Join(j) => self.on_join(now, sender, j),
            Packet::Commit(c) => self.on_commit(now, c),
            Packet::MergeDetect { ring_id } => self.on_merge_detect(now, sender, ring_id),
            Packet::HoldCancel { ring_id } => self.on_hold_cancel(now, sender, ring_id),
        }
        // Our join tells the others whom we hear: a processor heard for the first time in this
        // round is news for them, unless a join went out while handling its packet.
        if joined_first && self.state() == State::Gather && self.last_join_sent == joins_sent {
            self.join_soon(now);
        }
    }

    /// Runs every timer that expired at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_timeout_inner(now);
        self.check_invariants();
    }

    fn handle_timeout_inner(&mut self, now: Instant) {
        for (i, kind) in TIMER_KINDS.iter().enumerate() {
            let Some(t) = self.timers[i] else { continue };
            if t.at > now {
                continue;
            }
            self.timers[i] = None;
            if t.epoch != self.epoch {
                self.stats.stale_timers += 1;
                continue;
            }
            self.fire(now, *kind);
        }
    }

    /// The invariants that hold between any two calls, in every state (see [`invariant!`]).
    fn check_invariants(&self) {
        let state = self.state();
        invariant!(
            self.aru <= self.high_seq,
            "{}: aru {} above high seq {} in {state:?}",
            self.me,
            self.aru,
            self.high_seq
        );
        let base = self.current_queue().base;
        invariant!(
            base <= self.aru,
            "{}: aru {} below the released point {base} in {state:?}",
            self.me,
            self.aru
        );
        // Outside RECOVERY, `aru` is the installed ring's (in RECOVERY it is the new ring's).
        invariant!(
            state == State::Recovery || self.high_delivered <= self.aru,
            "{}: delivered {} above aru {} in {state:?}",
            self.me,
            self.high_delivered,
            self.aru
        );
        invariant!(
            self.regular_queue.base <= self.high_delivered,
            "{}: released {} beyond delivered {}",
            self.me,
            self.regular_queue.base,
            self.high_delivered
        );
        invariant!(
            self.latest_ring.seq >= self.installed_ring.seq,
            "{}: latest ring {:?} older than installed ring {:?}",
            self.me,
            self.latest_ring,
            self.installed_ring
        );
        invariant!(
            self.installed_memb.windows(2).all(|w| w[0] < w[1])
                && has(&self.installed_memb, self.me),
            "{}: installed members {:?}",
            self.me,
            self.installed_memb
        );
        match &self.phase {
            Phase::Operational => invariant!(
                self.latest_ring == self.installed_ring && self.old_state.is_none(),
                "{}: operational on {:?} with installed ring {:?}, old state {:?}",
                self.me,
                self.latest_ring,
                self.installed_ring,
                self.old_state
            ),
            Phase::Commit { .. } | Phase::Recovery(_) => invariant!(
                self.old_state.is_some() && self.forming_memb().contains(&self.me),
                "{}: {state:?} on {:?} without old state or membership",
                self.me,
                self.latest_ring
            ),
            Phase::Gather => {}
            Phase::Left => invariant!(
                self.poll_timeout().is_none(),
                "{}: timers armed after leaving",
                self.me
            ),
        }
    }

    fn send(&mut self, destination: Destination, packet: &Packet) -> Bytes {
        let data = Bytes::from(wire::encode(self.me, packet));
        self.stats.packets_out.add(packet.packet_type());
        self.transmits.push_back(Transmit {
            destination,
            data: data.clone(),
        });
        data
    }

    fn send_raw(&mut self, destination: Destination, data: Bytes, kind: PacketType) {
        self.stats.packets_out.add(kind);
        self.transmits.push_back(Transmit { destination, data });
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: the only randomness, seeded by the caller.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Members of the ring this processor works on: the ring being formed in COMMIT and
    /// RECOVERY, the installed ring otherwise.
    fn ring_members(&self) -> &[NodeId] {
        match &self.phase {
            Phase::Commit { forming_memb } => forming_memb,
            Phase::Recovery(r) => &r.forming_memb,
            _ => &self.installed_memb,
        }
    }

    /// Members of the ring being formed: empty outside COMMIT and RECOVERY.
    fn forming_memb(&self) -> &[NodeId] {
        match &self.phase {
            Phase::Commit { forming_memb } => forming_memb,
            Phase::Recovery(r) => &r.forming_memb,
            _ => &[],
        }
    }

    /// The RECOVERY state's data, in RECOVERY.
    fn recovery(&self) -> Option<&Recovery> {
        match &self.phase {
            Phase::Recovery(r) => Some(r),
            _ => None,
        }
    }

    fn recovery_mut(&mut self) -> Option<&mut Recovery> {
        match &mut self.phase {
            Phase::Recovery(r) => Some(r),
            _ => None,
        }
    }

    fn successor(&self) -> NodeId {
        let members = self.ring_members();
        match members.iter().position(|&n| n == self.me) {
            Some(i) => members[(i + 1) % members.len()],
            None => self.me,
        }
    }

    /// The member whose successor this processor is: the only one that sends it the token.
    fn predecessor(&self) -> NodeId {
        let members = self.ring_members();
        match members.iter().position(|&n| n == self.me) {
            Some(i) => members[(i + members.len() - 1) % members.len()],
            None => self.me,
        }
    }

    fn ignore(&mut self, why: Ignored) {
        self.stats.ignored[why as usize] += 1;
    }

    fn new_epoch(&mut self) {
        self.epoch += 1;
    }
}
