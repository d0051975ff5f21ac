//! The Totem processor: ordering ring, flow control, membership and EVS delivery.
//!
//! One [`Processor`] is one member of a Totem single ring. It owns no I/O: see the crate docs.
//! The names follow Corosync's `totemsrp.c` and the Totem paper (aru, token_seq, gather,
//! commit, recovery, transitional configuration) so that a reader of either finds each concept.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::config::{Config, ConfigError, Timeouts};
use crate::pack::{Packer, Reassembler, SubmitError, Unpacked};
use crate::stats::{Ignored, Stats};
use crate::types::{Guarantee, Instant, NodeId, RingId};
use crate::wire::{
    self, CommitMember, CommitToken, Decoded, Join, Mcast, OrfToken, Packet, PacketType,
};
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

/// A message held in a sort queue: what delivery needs, and the packet as received, which is
/// what a retransmission sends again.
#[derive(Clone, Debug)]
struct Slot {
    /// Sender of the packet (for an encapsulated packet: the processor that re-sent it).
    sender: NodeId,
    guarantee: Guarantee,
    encapsulated: bool,
    payload: Bytes,
    raw: Bytes,
    /// Times this processor re-sent it on request.
    resent: u32,
}

/// Messages of one ring indexed by sequence number, from just above the last released one.
#[derive(Debug)]
struct SortQueue {
    /// Highest released sequence number; `slots[i]` holds `base + 1 + i`.
    base: u64,
    slots: VecDeque<Option<Slot>>,
    /// Token visits each missing slot was seen missing, parallel to `slots`.
    misses: VecDeque<u32>,
}

impl SortQueue {
    fn new(base: u64) -> Self {
        SortQueue {
            base,
            slots: VecDeque::new(),
            misses: VecDeque::new(),
        }
    }

    fn index(&self, seq: u64) -> Option<usize> {
        if seq <= self.base {
            return None;
        }
        usize::try_from(seq - self.base - 1).ok()
    }

    fn get(&self, seq: u64) -> Option<&Slot> {
        self.index(seq)
            .and_then(|i| self.slots.get(i))
            .and_then(Option::as_ref)
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        self.index(seq)
            .and_then(|i| self.slots.get_mut(i))
            .and_then(Option::as_mut)
    }

    fn has(&self, seq: u64) -> bool {
        self.get(seq).is_some()
    }

    /// Stores `slot` at `seq`. `capacity` bounds how far beyond `base` a slot may be.
    fn insert(&mut self, seq: u64, slot: Slot, capacity: u64) -> Result<(), Ignored> {
        if seq <= self.base {
            return Err(Ignored::DuplicateMcast);
        }
        if seq - self.base > capacity {
            return Err(Ignored::OutOfWindow);
        }
        let i = (seq - self.base - 1) as usize;
        while self.slots.len() <= i {
            self.slots.push_back(None);
            self.misses.push_back(0);
        }
        if self.slots[i].is_some() {
            return Err(Ignored::DuplicateMcast);
        }
        self.slots[i] = Some(slot);
        Ok(())
    }

    /// Counts one more token visit on which `seq` was missing; returns the new count.
    fn bump_miss(&mut self, seq: u64, capacity: u64) -> u32 {
        if seq <= self.base || seq - self.base > capacity {
            return 0;
        }
        let i = (seq - self.base - 1) as usize;
        while self.misses.len() <= i {
            self.slots.push_back(None);
            self.misses.push_back(0);
        }
        self.misses[i] = self.misses[i].saturating_add(1);
        self.misses[i]
    }

    /// Frees every slot up to and including `seq`.
    fn release_to(&mut self, seq: u64) {
        while self.base < seq {
            self.slots.pop_front();
            self.misses.pop_front();
            self.base += 1;
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// What a processor remembers of its old ring while it forms a new one, so that a failed
/// attempt can be undone and the old ring's messages delivered at installation.
#[derive(Copy, Clone, Debug)]
struct OldRingState {
    aru: u64,
    high_seq: u64,
}

/// The latest join of one processor in the current membership round.
#[derive(Clone, Debug)]
struct Row {
    /// When it arrived: rows from before the current round are ignored.
    at: Instant,
    /// Ascending, no duplicates.
    heard: Vec<NodeId>,
    settled: bool,
}

/// Membership test in an ascending list.
fn has(list: &[NodeId], n: NodeId) -> bool {
    list.binary_search(&n).is_ok()
}

/// A processor excluded from this processor's ring while it was heard: a one-way or
/// non-transitive link (or a disagreement) kept it out. Its traffic no longer starts a
/// membership round here; it is re-admitted when a join shows two-way contact.
#[derive(Copy, Clone, Debug)]
struct Quarantine {
    /// Earliest time this processor sends its next probe towards the quarantined one.
    next_probe: Instant,
    /// Wait after the next probe (doubles with every probe, up to `probe_backoff_max`).
    backoff: Duration,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum TimerKind {
    TokenLoss,
    TokenRetransmit,
    Hold,
    Join,
    Consensus,
    MergeDetect,
    TokenWarning,
}

const TIMER_KINDS: [TimerKind; 7] = [
    TimerKind::TokenLoss,
    TimerKind::TokenRetransmit,
    TimerKind::Hold,
    TimerKind::Join,
    TimerKind::Consensus,
    TimerKind::MergeDetect,
    TimerKind::TokenWarning,
];

/// Rotation samples kept for the fast token retransmission (a windowed minimum, so that
/// rotations slowed by a lost token, retransmitted by someone else, do not inflate it).
const ROTATION_SAMPLES: usize = 16;
/// The fast token retransmission never fires sooner than this after a forward.
const FAST_RETRANSMIT_MIN: Duration = Duration::from_millis(2);
/// Added to twice the rotation estimate: scheduling and queueing jitter.
const FAST_RETRANSMIT_MARGIN: Duration = Duration::from_millis(1);
/// Successive fast retransmissions wait 2, 4, then 8 times longer, and no longer: losses are
/// independent, so waiting longer only adds latency, and the cost of a duplicate token is one
/// small packet.
const FAST_RETRANSMIT_MAX_BACKOFF: u32 = 3;

/// A deadline, tagged with the membership epoch it was armed in: a timer that fires after the
/// processor moved to another ring or state is stale and does nothing.
#[derive(Copy, Clone, Debug)]
struct Timer {
    at: Instant,
    epoch: u64,
}

/// One Totem processor.
#[derive(Debug)]
pub struct Processor {
    cfg: Config,
    me: NodeId,
    state: State,
    rng: u64,
    /// Bumped at every membership state change; timers armed earlier are stale.
    epoch: u64,

    /// The ring this processor works on: the regular ring when OPERATIONAL, the ring being
    /// formed in COMMIT and RECOVERY (Corosync's `my_ring_id`).
    ring_id: RingId,
    /// Ring of the regular queue: the last installed ring (or the start pseudo-ring).
    regular_ring: RingId,
    /// Highest ring sequence number adopted or seen (Corosync's `token_ring_id_seq`).
    ring_seq_high: u64,
    /// Set when the driver knew no ring sequence number (`Start::ring_seq` 0): the rings this
    /// processor creates are numbered with a random step (see `create_commit_token`).
    ring_salt: Option<u64>,
    /// Members of the last installed regular configuration (initially just this processor).
    memb: Vec<NodeId>,
    installed_any: bool,

    proc_set: BTreeSet<NodeId>,
    fail_set: BTreeSet<NodeId>,
    consensus: BTreeSet<NodeId>,
    /// Processors whose full-size datagrams do not reach us: set when we failed to receive
    /// (our aru stuck for `fail_recv_const` rotations while their small packets still came),
    /// cleared by a full-size packet from each. Left out of every `heard` list we report, so
    /// that the membership treats them as a cut one-way link.
    deaf_from: BTreeSet<NodeId>,

    /// Members of the ring being formed (from the commit token).
    new_memb: Vec<NodeId>,
    /// Members of the new ring that come from this processor's old regular ring.
    trans_memb: Vec<NodeId>,
    old_state: Option<OldRingState>,
    /// Old-ring packets to re-send, encapsulated, during RECOVERY.
    retrans_queue: VecDeque<Bytes>,
    set_retrans_flg: bool,
    retrans_flg_count: u32,
    install_seq: u64,
    rotation_counter: u32,
    originated_orf_token: bool,
    /// Highest old-ring sequence number delivered by any transitional member before the
    /// failure: SAFE messages up to it were safe in the old regular configuration.
    high_ring_delivered: u64,

    regular: SortQueue,
    recovery: SortQueue,
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
    /// The consensus timer expired at least once in this round.
    settled: bool,
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

fn sorted(set: &BTreeSet<NodeId>) -> Vec<NodeId> {
    set.iter().copied().collect()
}

/// The processors whose time in `times` is at or after `t`.
fn since(times: &BTreeMap<NodeId, Instant>, t: Instant) -> BTreeSet<NodeId> {
    times
        .iter()
        .filter(|(_, &at)| at >= t)
        .map(|(&n, _)| n)
        .collect()
}

/// The processors of `among` that form one ring with `me` when the links in `broken` cannot be
/// used. A deterministic function of its arguments, so processors that saw the same joins
/// split the same way: the excluded processors are a greedy vertex cover of the broken links
/// (most broken links first, the highest id among equals), the rest is the first ring; the
/// excluded processors split among themselves the same way, and so on.
fn ring_layer(
    me: NodeId,
    among: &BTreeSet<NodeId>,
    broken: &BTreeSet<(NodeId, NodeId)>,
) -> BTreeSet<NodeId> {
    let mut remaining = among.clone();
    loop {
        let excluded = greedy_cover(&remaining, broken);
        if !excluded.contains(&me) || excluded.len() >= remaining.len() {
            return remaining.difference(&excluded).copied().collect();
        }
        remaining = excluded;
    }
}

/// Processors of `among` that, once removed, leave no link of `broken` between the rest.
fn greedy_cover(among: &BTreeSet<NodeId>, broken: &BTreeSet<(NodeId, NodeId)>) -> BTreeSet<NodeId> {
    let mut links: Vec<(NodeId, NodeId)> = broken
        .iter()
        .filter(|(a, b)| among.contains(a) && among.contains(b))
        .copied()
        .collect();
    let mut out = BTreeSet::new();
    while !links.is_empty() {
        let mut degree: BTreeMap<NodeId, usize> = BTreeMap::new();
        for &(a, b) in &links {
            *degree.entry(a).or_default() += 1;
            *degree.entry(b).or_default() += 1;
        }
        // Highest degree; among equals the highest id (BTreeMap iterates ascending and
        // `max_by_key` keeps the last maximum).
        let Some((&v, _)) = degree.iter().max_by_key(|(_, &d)| d) else {
            break;
        };
        out.insert(v);
        links.retain(|&(a, b)| a != v && b != v);
    }
    out
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
            state: State::Gather,
            rng: start.seed ^ 0x9E37_79B9_7F4A_7C15,
            epoch: 0,
            ring_id: pseudo,
            regular_ring: pseudo,
            ring_seq_high: start.ring_seq,
            ring_salt: (start.ring_seq == 0).then(|| mix64(start.seed ^ 0xD1B5_4A32_D192_ED03)),
            memb: vec![id],
            installed_any: false,
            proc_set: BTreeSet::new(),
            fail_set: BTreeSet::new(),
            consensus: BTreeSet::new(),
            deaf_from: BTreeSet::new(),
            new_memb: Vec::new(),
            trans_memb: Vec::new(),
            old_state: None,
            retrans_queue: VecDeque::new(),
            set_retrans_flg: false,
            retrans_flg_count: 0,
            install_seq: s0,
            rotation_counter: 0,
            originated_orf_token: false,
            high_ring_delivered: s0,
            regular: SortQueue::new(s0),
            recovery: SortQueue::new(s0),
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
            settled: false,
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
        self.state
    }

    /// The ring of the last installed regular configuration.
    #[allow(clippy::misnamed_getters)] // `self.ring_id` is the ring being formed, not installed
    pub fn ring_id(&self) -> RingId {
        self.regular_ring
    }

    /// Members of the last installed regular configuration, ascending.
    pub fn members(&self) -> &[NodeId] {
        &self.memb
    }

    /// The highest ring sequence number this processor has adopted or seen (what its joins
    /// announce). To persist, use [`Self::ring_seq_to_persist`].
    pub fn ring_seq_high_water(&self) -> u64 {
        self.ring_seq_high.max(self.ring_id.seq)
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
        s.ring_id = self.regular_ring;
        s.members = self.memb.len();
        s.send_queue_messages = self.packer.queued_messages();
        s.send_queue_bytes = self.packer.queued_bytes();
        s.sort_queue_len = self.regular.len() + self.recovery.len();
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
        if self.state == State::Operational && self.token_held {
            if self.ring_id.rep == self.me {
                if self.holding {
                    self.release_held_token(now);
                }
            } else if !self.hold_cancel_sent {
                self.hold_cancel_sent = true;
                let ring_id = self.ring_id;
                self.send(Destination::Multicast, &Packet::HoldCancel { ring_id });
                self.expect_token_soon(now);
            }
        }
        Ok(no)
    }

    /// Leaves the ring: multicasts a leave message and ignores all further input.
    pub fn leave(&mut self, _now: Instant) {
        if self.state == State::Left {
            return;
        }
        let mut fail = self.fail_set.clone();
        fail.insert(self.me);
        let proc_list: Vec<NodeId> = self
            .proc_set
            .iter()
            .chain(self.memb.iter())
            .copied()
            .filter(|&n| n != self.me)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let join = Join {
            ring_seq: self.ring_id.seq,
            high_seq: self.ring_seq_high_water(),
            leave: true,
            installed: self.installed_any && self.ring_id == self.regular_ring,
            settled: self.settled,
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
        self.state = State::Left;
        self.timers = [None; TIMER_KINDS.len()];
    }

    /// Feeds one received datagram (already authenticated). Never panics on any input; every
    /// packet that is rejected or not used is counted in [`Stats`].
    pub fn handle_packet(&mut self, now: Instant, data: Bytes) {
        if self.state == State::Left {
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
            if !mcast || self.state != State::Operational {
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
        if joined_first && self.state == State::Gather && self.last_join_sent == joins_sent {
            self.join_soon(now);
        }
    }

    /// Runs every timer that expired at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
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

    // ---------------------------------------------------------------------------------------
    // Plumbing

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

    fn arm(&mut self, kind: TimerKind, at: Instant) {
        self.timers[kind as usize] = Some(Timer {
            at,
            epoch: self.epoch,
        });
    }

    fn cancel(&mut self, kind: TimerKind) {
        self.timers[kind as usize] = None;
    }

    fn is_armed(&self, kind: TimerKind) -> bool {
        self.timers[kind as usize].is_some()
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: the only randomness, seeded by the caller.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn ring_members(&self) -> &[NodeId] {
        match self.state {
            State::Recovery | State::Commit => &self.new_memb,
            _ => &self.memb,
        }
    }

    fn timeouts(&self) -> Timeouts {
        let n = match self.state {
            State::Gather => self.proc_set.len().saturating_sub(self.fail_set.len()),
            _ => self.ring_members().len(),
        };
        self.cfg.timeouts(n.max(1))
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

    fn fire(&mut self, now: Instant, kind: TimerKind) {
        match kind {
            TimerKind::TokenLoss => match self.state {
                State::Operational | State::Commit | State::Recovery => {
                    self.stats.token_lost += 1;
                    self.gather_enter(now);
                }
                _ => {}
            },
            TimerKind::TokenRetransmit => {
                if let Some((to, data, kind)) = self.last_token.clone() {
                    if matches!(
                        self.state,
                        State::Operational | State::Commit | State::Recovery
                    ) && !self.holding
                    {
                        self.stats.token_retransmits += 1;
                        self.send_raw(Destination::Node(to), data, kind);
                        self.retransmit_backoff = self.retransmit_backoff.saturating_add(1);
                    }
                }
                // Processors that think the representative may hold the token wait the slow
                // `token_retransmit` before re-sending theirs. The representative knows better:
                // when the token does not come back to it in time it is lost, and a hold cancel
                // tells every member to retransmit at the fast pace. A member with messages to
                // send also asks again, in case its first hold cancel was lost.
                let rep = self.ring_id.rep == self.me;
                if self.state == State::Operational
                    && !self.holding
                    && (rep || (self.hold_cancel_sent && !self.packer.is_empty()))
                {
                    if rep {
                        self.seq_unchanged = 0;
                    }
                    let ring_id = self.ring_id;
                    self.send(Destination::Multicast, &Packet::HoldCancel { ring_id });
                }
                let t = self.retransmit_interval();
                self.arm(TimerKind::TokenRetransmit, now + t);
            }
            TimerKind::Hold => {
                if self.holding {
                    self.release_held_token(now);
                }
            }
            TimerKind::Join => {
                if self.state == State::Gather {
                    self.send_join(now);
                    let at = now + self.cfg.join + self.join_jitter();
                    self.arm(TimerKind::Join, at);
                }
            }
            TimerKind::Consensus => {
                if self.state == State::Gather {
                    self.consensus_timeout(now);
                }
            }
            TimerKind::MergeDetect => {
                if self.state == State::Operational && self.ring_id.rep == self.me {
                    let ring_id = self.ring_id;
                    self.send(Destination::Multicast, &Packet::MergeDetect { ring_id });
                }
            }
            TimerKind::TokenWarning => {
                self.stats.token_warnings += 1;
            }
        }
    }

    /// Shortest time between two join multicasts of one gather phase whose sets grew
    /// (a sixteenth of `join`: 3.1 ms by default).
    fn join_coalesce(&self) -> Duration {
        self.cfg.join / 16
    }

    fn join_jitter(&mut self) -> Duration {
        let max = u64::try_from(self.cfg.send_join.as_micros()).unwrap_or(u64::MAX);
        if max == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(self.next_random() % max)
        }
    }

    /// May the representative hold the ORF token before it next reaches this processor? The
    /// representative holds after more than `seqno_unchanged_const` visits without a new
    /// message, and every processor counts the same token visits: between two visits here the
    /// representative's count exceeds ours by at most one. So a processor whose count is below
    /// `seqno_unchanged_const - 1` knows the token will come back after one plain rotation.
    fn may_be_held(&self) -> bool {
        self.state == State::Operational
            && self.ring_id.rep != self.me
            && self.seq_unchanged.saturating_add(1) >= self.cfg.seqno_unchanged_const
    }

    /// The fast token retransmission: twice the shortest recent rotation plus a margin,
    /// doubled for every retransmission since the last token, never beyond `token_retransmit`.
    /// `None` before the first rotation was measured.
    fn fast_retransmit(&self) -> Option<Duration> {
        let slow = self.timeouts().token_retransmit;
        let est = *self.rotations.iter().min()?;
        let base = (est * 2 + FAST_RETRANSMIT_MARGIN).max(FAST_RETRANSMIT_MIN);
        let factor = 1u32 << self.retransmit_backoff.min(FAST_RETRANSMIT_MAX_BACKOFF);
        Some(base.saturating_mul(factor).min(slow))
    }

    /// When to re-send the last token if no newer one arrived. Corosync waits
    /// `token_retransmit` (T / (R + 0.2)) every time; on a ring that rotates in a millisecond
    /// that turns every lost token into a stall of hundreds of rotations, so while the token is
    /// known to circulate (not held, ORF token) the wait follows the measured rotation instead.
    fn retransmit_interval(&self) -> Duration {
        let slow = self.timeouts().token_retransmit;
        if !matches!(self.state, State::Operational | State::Recovery) || self.may_be_held() {
            return slow;
        }
        self.fast_retransmit().unwrap_or(slow)
    }

    /// Something (a hold cancel) says the token will circulate now: if it does not reach us
    /// within a fast retransmission interval, re-send ours.
    fn expect_token_soon(&mut self, now: Instant) {
        let Some(fast) = self.fast_retransmit() else {
            return;
        };
        if let Some(t) = self.timers[TimerKind::TokenRetransmit as usize] {
            if t.epoch == self.epoch && t.at > now + fast {
                self.arm(TimerKind::TokenRetransmit, now + fast);
            }
        }
    }

    fn reset_token_timers(&mut self, now: Instant) {
        let t = self.timeouts();
        let loss = t.heartbeat.unwrap_or(t.token);
        self.arm(TimerKind::TokenLoss, now + loss);
        let retransmit = self.retransmit_interval();
        self.arm(TimerKind::TokenRetransmit, now + retransmit);
        if let Some(w) = t.token_warning {
            self.arm(TimerKind::TokenWarning, now + w);
        }
    }

    fn cancel_token_timers(&mut self) {
        for k in [
            TimerKind::TokenLoss,
            TimerKind::TokenRetransmit,
            TimerKind::Hold,
            TimerKind::MergeDetect,
            TimerKind::TokenWarning,
        ] {
            self.cancel(k);
        }
        self.holding = false;
        self.forwarded_at = None;
        self.retransmit_backoff = 0;
    }

    // ---------------------------------------------------------------------------------------
    // Multicasts

    fn on_mcast(&mut self, now: Instant, sender: NodeId, m: Mcast, raw: Bytes) {
        if sender == self.me {
            self.ignore(Ignored::OwnPacket);
            return;
        }
        let into_regular = matches!(self.state, State::Operational | State::Gather)
            && self.old_state.is_none()
            && m.ring_id == self.regular_ring;
        let into_recovery = self.state == State::Recovery && m.ring_id == self.ring_id;
        if !into_regular && !into_recovery {
            self.on_foreign(now, sender, m.ring_id);
            return;
        }
        let seq = m.seq;
        let slot = Slot {
            sender,
            guarantee: m.guarantee,
            encapsulated: m.encapsulated,
            payload: m.payload,
            raw,
            resent: 0,
        };
        let cap = self.cfg.sort_queue_capacity;
        let queue = if into_recovery {
            &mut self.recovery
        } else {
            &mut self.regular
        };
        if let Err(why) = queue.insert(seq, slot, cap) {
            self.ignore(why);
            return;
        }
        self.high_seq = self.high_seq.max(seq);
        self.advance_aru();
        if self.state == State::Operational {
            self.deliver_ready();
        }
    }

    /// A packet of another ring: a reason to merge, unless it is a straggler of an older ring
    /// from a member of this one.
    fn on_foreign(&mut self, now: Instant, sender: NodeId, ring: RingId) {
        // Rings we create must be numbered above every ring we have heard of, and our joins
        // tell others how recent our knowledge is.
        self.ring_seq_high = self.ring_seq_high.max(ring.seq);
        if ring == self.ring_id || ring == self.regular_ring || self.is_stale(sender, ring) {
            self.ignore(Ignored::ForeignRing);
            return;
        }
        self.last_seen.insert(sender, now);
        let quarantined = self.quarantine.contains_key(&sender)
            || self
                .probe_rings
                .iter()
                .any(|(q, r)| *r == ring && self.quarantine.contains_key(q));
        match self.state {
            State::Operational if quarantined => {
                // Not a reason to merge: the sender was excluded for lack of two-way contact.
                // Ask it (and its ring) to show two-way contact instead.
                self.ignore(Ignored::Quarantined);
                self.maybe_probe(now, sender);
            }
            State::Operational => {
                self.proc_set.insert(sender);
                self.gather_enter(now);
            }
            State::Gather if quarantined && !self.proc_set.contains(&sender) => {
                self.ignore(Ignored::Quarantined);
            }
            State::Gather if !self.proc_set.contains(&sender) => {
                self.proc_set.insert(sender);
                self.gather_enter(now);
            }
            _ => self.ignore(Ignored::ForeignRing),
        }
    }

    fn is_stale(&self, sender: NodeId, ring: RingId) -> bool {
        self.memb.contains(&sender) && ring.seq < self.regular_ring.seq
    }

    fn on_merge_detect(&mut self, now: Instant, sender: NodeId, ring: RingId) {
        if sender == self.me {
            self.ignore(Ignored::OwnPacket);
            return;
        }
        self.on_foreign(now, sender, ring);
    }

    fn on_hold_cancel(&mut self, now: Instant, sender: NodeId, ring: RingId) {
        if sender == self.me {
            self.ignore(Ignored::OwnPacket);
            return;
        }
        if ring != self.ring_id || !matches!(self.state, State::Operational | State::Recovery) {
            self.ignore(Ignored::ForeignRing);
            return;
        }
        self.seq_unchanged = 0;
        if self.holding {
            self.release_held_token(now);
        } else if self.state == State::Operational {
            self.expect_token_soon(now);
        }
    }

    fn ignore(&mut self, why: Ignored) {
        self.stats.ignored[why as usize] += 1;
    }

    /// The queue of the ring this processor works on: the recovery queue in RECOVERY, the
    /// regular queue otherwise.
    fn current_queue(&self) -> &SortQueue {
        if self.state == State::Recovery {
            &self.recovery
        } else {
            &self.regular
        }
    }

    fn current_queue_mut(&mut self) -> &mut SortQueue {
        if self.state == State::Recovery {
            &mut self.recovery
        } else {
            &mut self.regular
        }
    }

    fn advance_aru(&mut self) {
        let mut aru = self.aru;
        let q = self.current_queue();
        while q.has(aru + 1) {
            aru += 1;
        }
        self.aru = aru;
    }

    // ---------------------------------------------------------------------------------------
    // Delivery

    /// Delivers, in order, every regular-queue message that is contiguous and (for SAFE) known
    /// to be held by every member.
    fn deliver_ready(&mut self) {
        while self.high_delivered < self.aru {
            let seq = self.high_delivered + 1;
            let Some(slot) = self.regular.get(seq) else {
                break;
            };
            if slot.guarantee == Guarantee::Safe
                && seq > self.safe_bound
                && !self.cfg.inject_safe_as_agreed()
            {
                break;
            }
            let slot = slot.clone();
            self.high_delivered = seq;
            let ring = self.regular_ring;
            self.deliver_slot(ring, seq, &slot);
        }
    }

    fn deliver_slot(&mut self, ring_id: RingId, seq: u64, slot: &Slot) {
        if slot.encapsulated {
            // Recovery traffic of this ring: its contents were delivered at installation.
            return;
        }
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        if self
            .reasm
            .unpack(slot.sender, &slot.payload, &mut out)
            .is_err()
        {
            self.ignore(Ignored::BadPayload);
        }
        for (index, u) in out.drain(..).enumerate() {
            self.stats.messages_delivered += 1;
            self.stats.bytes_delivered += u.data.len() as u64;
            self.events.push_back(Event::Deliver(Delivery {
                sender: slot.sender,
                msg_no: u.msg_no,
                ring_id,
                seq,
                index: u32::try_from(index).unwrap_or(u32::MAX),
                guarantee: slot.guarantee,
                data: u.data,
            }));
        }
        self.scratch = out;
    }

    // ---------------------------------------------------------------------------------------
    // The ORF token

    fn on_token(&mut self, now: Instant, sender: NodeId, tok: OrfToken) {
        if !matches!(self.state, State::Operational | State::Recovery) {
            self.ignore(Ignored::WrongState);
            return;
        }
        if tok.ring_id != self.ring_id {
            self.ignore(Ignored::ForeignRing);
            return;
        }
        // The token only ever travels from a member to its successor. A copy from anyone else
        // is a datagram redirected on its way (the frame's MAC names no destination, so an
        // on-path attacker without the key can do it): accepting it would make two members
        // hold the token at once and hand out the same sequence numbers. Found by the `ring`
        // fuzz target.
        if sender != self.predecessor() {
            self.ignore(Ignored::InconsistentToken);
            return;
        }
        if let Some(seen) = self.token_seq_seen {
            if tok.token_seq <= seen {
                self.ignore(Ignored::DuplicateToken);
                return;
            }
        }
        // A correct token orders everything this processor holds, covers no more than it
        // ordered, names a member (or no one) as holding the aru down, and stays inside the
        // sort queue. Anything else is replayed or forged, and
        // accepting it would hand out sequence numbers twice.
        let base = self.current_queue().base;
        if tok.seq < self.high_seq
            || tok.aru > tok.seq
            || (tok.aru_addr != 0 && !self.ring_members().contains(&tok.aru_addr))
            || tok.seq.saturating_sub(base) > self.cfg.sort_queue_capacity
            || tok.rtr.iter().any(|&s| s > tok.seq)
        {
            self.ignore(Ignored::InconsistentToken);
            return;
        }
        self.process_token(now, tok);
    }

    fn process_token(&mut self, now: Instant, mut tok: OrfToken) {
        let operational = self.state == State::Operational;
        self.token_seq_seen = Some(tok.token_seq);
        if let Some(at) = self.forwarded_at.take() {
            if self.rotations.len() == ROTATION_SAMPLES {
                self.rotations.pop_front();
            }
            self.rotations.push_back(now - at);
        }
        self.retransmit_backoff = 0;
        self.holding = false;
        self.cancel(TimerKind::Hold);

        // Rotation time, measured by every member between its own visits on one ring (a
        // visit on a new ring starts over: the gap across a membership change is no rotation).
        if let Some((ring, prev)) = self.last_token_at {
            if ring == self.ring_id {
                let rot = now - prev;
                self.stats.last_rotation = rot;
                self.stats.mean_rotation = if self.stats.mean_rotation.is_zero() {
                    rot
                } else {
                    (self.stats.mean_rotation * 7 + rot) / 8
                };
                self.stats.token_rotations += 1;
            }
        }
        self.last_token_at = Some((self.ring_id, now));

        // Idle detection drives token hold and merge detection.
        if self.last_token_seq_value == Some(tok.seq) {
            self.seq_unchanged = self.seq_unchanged.saturating_add(1);
            if !self.is_armed(TimerKind::MergeDetect) {
                self.arm(TimerKind::MergeDetect, now + self.cfg.merge);
            }
        } else {
            self.seq_unchanged = 0;
            self.cancel(TimerKind::MergeDetect);
        }
        self.last_token_seq_value = Some(tok.seq);
        let rep = self.ring_id.rep == self.me;
        let threshold = self.cfg.seqno_unchanged_const;
        self.token_held = if rep {
            self.seq_unchanged > threshold
        } else {
            self.seq_unchanged >= threshold
        };
        if !self.token_held {
            self.hold_cancel_sent = false;
        }

        // Garbage collection: messages every member holds (two visits) and we delivered.
        let prev_aru = self.last_aru;
        if operational {
            let to = tok.aru.min(prev_aru).min(self.high_delivered);
            self.regular.release_to(to);
            self.safe_bound = if self.cfg.inject_safe_one_visit() {
                tok.aru
            } else {
                tok.aru.min(prev_aru)
            };
        } else {
            self.release_recovered(tok.aru.min(prev_aru));
        }
        self.last_aru = tok.aru;

        let mut allowed = self.fcc_allowed(&tok);

        // Answer retransmission requests first. A request we answered before is asked again:
        // our copy did not reach the requester (a link from us to it may be cut one way), so
        // answer again and leave the request for the next holder too. Otherwise the member
        // after the requester would answer every time, and a member that cannot hear it
        // would never get the message.
        let mut rtr_sent = 0u32;
        if !tok.rtr.is_empty() {
            let mut keep = Vec::with_capacity(tok.rtr.len());
            for &seq in &tok.rtr {
                let have = if rtr_sent >= allowed {
                    None
                } else {
                    self.current_queue_mut().get_mut(seq).map(|s| {
                        s.resent = s.resent.saturating_add(1);
                        (s.raw.clone(), s.resent > 1)
                    })
                };
                match have {
                    Some((raw, again)) => {
                        rtr_sent += 1;
                        self.stats.retransmits_sent += 1;
                        self.send_raw(Destination::Multicast, raw, PacketType::Mcast);
                        if again {
                            keep.push(seq);
                        }
                    }
                    _ => keep.push(seq),
                }
            }
            tok.rtr = keep;
        }
        allowed -= rtr_sent;

        // Ask for what we miss, once it was missing for miss_count_const visits.
        self.request_missing(&mut tok);

        // Never let the sort queue overflow.
        let base = self.current_queue().base;
        let cap = self.cfg.sort_queue_capacity;
        let window = u64::from(self.cfg.window_size);
        if tok.seq.saturating_add(u64::from(allowed) + window) > base.saturating_add(cap) {
            allowed = 0;
        }

        // Send new messages (old-ring messages during RECOVERY).
        let sent_new = self.send_new(&mut tok, allowed);
        self.advance_aru();

        // Flow control bookkeeping: replace our contribution from the previous rotation.
        let sent = rtr_sent + sent_new;
        let cbl = self.backlog();
        tok.fcc = (i64::from(tok.fcc) + i64::from(sent) - i64::from(self.trc))
            .clamp(0, i64::from(u32::MAX)) as u32;
        tok.backlog = (i64::from(tok.backlog) + i64::from(cbl) - i64::from(self.pbl))
            .clamp(0, i64::from(u32::MAX)) as u32;
        self.trc = sent;
        self.pbl = cbl;

        // The ARU rule: anyone may lower it; only the one who lowered it (or anyone, if no one
        // holds it down) may raise it.
        if self.aru < tok.aru || tok.aru_addr == self.me || tok.aru_addr == 0 {
            tok.aru = self.aru;
            tok.aru_addr = if tok.aru == tok.seq { 0 } else { self.me };
        }

        // Fail to receive: we keep holding the aru down while others cannot help us.
        if tok.aru == prev_aru && tok.aru_addr != 0 {
            self.aru_count = self.aru_count.saturating_add(1);
        } else {
            self.aru_count = 0;
        }
        if self.aru_count > self.cfg.fail_recv_const && tok.aru_addr == self.me {
            // Tokens reach us but the messages they order do not, retransmissions included:
            // typically a path that loses big datagrams (an MTU black hole). Corosync forms a
            // ring alone here, and its small joins show two-way contact, so it is merged back
            // and starves the ring again. We report not hearing the ring's members instead,
            // until a full-size packet of each reaches us: the membership splits us off like a
            // host with a dead receive path, and quarantine keeps us off until padded probes
            // show the path carries full-size datagrams again.
            self.stats.failed_to_receive += 1;
            self.deaf_from
                .extend(self.memb.iter().copied().filter(|&n| n != self.me));
            self.aru_count = 0;
            self.gather_enter(now);
            return;
        }

        let mut install = false;
        if self.state == State::Recovery {
            install = self.recovery_progress(&mut tok);
        }

        tok.token_seq = tok.token_seq.saturating_add(1);
        let to = self.successor();
        let data = Bytes::from(wire::encode(self.me, &Packet::Token(tok.clone())));
        self.last_token = Some((to, data.clone(), PacketType::OrfToken));
        // Hold only a quiescent ring. Unlike Corosync, a ring where someone still misses a
        // message (aru below seq) is not idle: holding it would slow repair to one rotation per
        // hold period. `cancel_token_hold_on_retransmit` additionally forwards when requests or
        // retransmissions were on this visit.
        let quiescent = tok.aru == tok.seq;
        let hold = rep
            && self.token_held
            && operational
            && quiescent
            && sent_new == 0
            && self.packer.is_empty()
            && !(self.cfg.cancel_token_hold_on_retransmit && (rtr_sent > 0 || !tok.rtr.is_empty()));
        if install {
            self.install(now);
        }
        if hold {
            self.holding = true;
            let h = self.timeouts().hold;
            self.arm(TimerKind::Hold, now + h);
            let t = self.timeouts();
            self.arm(TimerKind::TokenLoss, now + t.heartbeat.unwrap_or(t.token));
            self.cancel(TimerKind::TokenRetransmit);
        } else {
            // Accelerated Ring: the last `accelerated_window` new multicasts of this visit
            // (the tail of the transmit queue: nothing was queued after them in the
            // operational state) go out after the token.
            let post = if operational {
                let k = self.cfg.accelerated_window.min(sent_new) as usize;
                self.transmits
                    .split_off(self.transmits.len() - k.min(self.transmits.len()))
            } else {
                VecDeque::new()
            };
            self.send_raw(Destination::Node(to), data, PacketType::OrfToken);
            self.transmits.extend(post);
            self.forwarded_seq = Some((self.ring_id, tok.seq));
            // A rotation that the representative may hold is no sample of the rotation time.
            self.forwarded_at = (!self.may_be_held()).then_some(now);
            self.reset_token_timers(now);
        }
        if self.state == State::Operational {
            self.deliver_ready();
        }
    }

    fn release_held_token(&mut self, now: Instant) {
        self.holding = false;
        self.cancel(TimerKind::Hold);
        if let Some((to, data, kind)) = self.last_token.clone() {
            self.send_raw(Destination::Node(to), data, kind);
            self.forwarded_at = Some(now);
            self.reset_token_timers(now);
        }
    }

    fn backlog(&self) -> u32 {
        let n = if self.state == State::Recovery {
            self.retrans_queue.len()
        } else {
            self.packer.backlog_packets(self.cfg.payload_budget())
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// How many packets this visit may send (Corosync's `fcc_calculate`, with the paper's
    /// current backlog in the proportional share).
    fn fcc_allowed(&self, tok: &OrfToken) -> u32 {
        let mut allowed = self
            .cfg
            .max_messages
            .min(self.cfg.window_size.saturating_sub(tok.fcc));
        let cbl = i64::from(self.backlog());
        let denom = i64::from(tok.backlog) + cbl - i64::from(self.pbl);
        if denom > 0 {
            let share = i64::from(self.cfg.window_size) * cbl / denom;
            if share > 0 && i64::from(allowed) > share {
                allowed = share as u32;
            }
        }
        allowed
    }

    /// The highest seq this visit may request: the token's seq, or with the Accelerated Ring
    /// in the operational state, the seq this processor forwarded a rotation ago (messages
    /// after it may have been sent after the token and still be in flight).
    fn request_limit(&self, tok: &OrfToken) -> u64 {
        if self.cfg.accelerated_window == 0 || self.state != State::Operational {
            return tok.seq;
        }
        match self.forwarded_seq {
            Some((ring, seq)) if ring == self.ring_id => seq.min(tok.seq),
            // First visit on this ring: nothing was sent a rotation ago that we know of.
            _ => self.aru,
        }
    }

    fn request_missing(&mut self, tok: &mut OrfToken) {
        let max = self.cfg.retransmit_list_max;
        let cap = self.cfg.sort_queue_capacity;
        let miss_const = self.cfg.miss_count_const;
        let limit = self.request_limit(tok);
        let mut seq = self.aru + 1;
        let mut requested = 0;
        let q = self.current_queue_mut();
        while seq <= limit && tok.rtr.len() < max {
            if seq - q.base > cap {
                break;
            }
            if !q.has(seq) && q.bump_miss(seq, cap) >= miss_const && !tok.rtr.contains(&seq) {
                tok.rtr.push(seq);
                requested += 1;
            }
            seq += 1;
        }
        self.stats.retransmits_requested += requested;
    }

    /// Originates up to `allowed` multicasts, stamping each with the next sequence number.
    fn send_new(&mut self, tok: &mut OrfToken, allowed: u32) -> u32 {
        let mut sent = 0;
        let budget = self.cfg.payload_budget();
        while sent < allowed {
            let (guarantee, payload, encapsulated) = if self.state == State::Recovery {
                match self.retrans_queue.pop_front() {
                    Some(inner) => {
                        self.stats.recovery_messages_originated += 1;
                        (Guarantee::Agreed, inner, true)
                    }
                    None => break,
                }
            } else {
                match self.packer.next_payload(budget) {
                    Some((g, p)) => (g, p, false),
                    None => break,
                }
            };
            tok.seq += 1;
            let seq = tok.seq;
            let m = Mcast {
                ring_id: self.ring_id,
                seq,
                guarantee,
                encapsulated,
                payload,
            };
            let raw = Bytes::from(wire::encode(self.me, &Packet::Mcast(m.clone())));
            let slot = Slot {
                sender: self.me,
                guarantee,
                encapsulated,
                payload: m.payload,
                raw: raw.clone(),
                resent: 0,
            };
            let cap = self.cfg.sort_queue_capacity;
            // Cannot fail: seq is new and flow control kept it inside the window.
            let _ = self.current_queue_mut().insert(seq, slot, cap);
            self.high_seq = self.high_seq.max(seq);
            self.send_raw(Destination::Multicast, raw, PacketType::Mcast);
            sent += 1;
        }
        sent
    }

    /// RECOVERY completion (Corosync's retrans_flg / install_seq / rotation counter logic).
    /// Returns true when the new configuration must be installed.
    fn recovery_progress(&mut self, tok: &mut OrfToken) -> bool {
        if !self.retrans_queue.is_empty() {
            if !tok.retrans_flg {
                tok.retrans_flg = true;
                self.set_retrans_flg = true;
            }
        } else if tok.retrans_flg && self.set_retrans_flg {
            tok.retrans_flg = false;
            self.set_retrans_flg = false;
        }
        if tok.retrans_flg {
            self.retrans_flg_count = 0;
        } else {
            self.retrans_flg_count = self.retrans_flg_count.saturating_add(1);
        }
        if self.retrans_flg_count == 2 {
            self.install_seq = tok.seq;
        }
        if self.retrans_flg_count >= 3 && self.install_seq <= tok.aru {
            self.rotation_counter += 1;
        } else {
            self.rotation_counter = 0;
        }
        if self.rotation_counter == 2 {
            self.rotation_counter = 0;
            self.retrans_flg_count = 0;
            return true;
        }
        false
    }

    // ---------------------------------------------------------------------------------------
    // Membership: GATHER

    fn new_epoch(&mut self) {
        self.epoch += 1;
    }

    fn gather_enter(&mut self, now: Instant) {
        let regather = self.state == State::Gather;
        if !regather {
            // A new membership round: whom we heard and what the others reported before it says
            // nothing about the links now (a ring that lost its token, or an attempt that failed,
            // may have lost a link).
            self.round_start = now;
            self.settled = false;
        }
        if self.state == State::Recovery {
            // Undo the failed recovery: the old ring's queue is intact, its counters come back.
            if let Some(old) = self.old_state {
                self.aru = old.aru;
                self.high_seq = old.high_seq;
            }
            self.recovery = SortQueue::new(self.cfg.initial_seq);
            self.retrans_queue.clear();
        }
        self.new_epoch();
        self.state = State::Gather;
        self.stats.gather_entered += 1;
        self.proc_set.insert(self.me);
        self.consensus.clear();
        self.consensus.insert(self.me);
        self.cancel_token_timers();
        self.last_token = None;
        // Join re-sends are coalesced: a processor already gathering whose sets grew sends its
        // join at most once per `join_coalesce()`. Without this, N processors starting together
        // each answered every one of the N - 1 joins that taught them a new processor with a
        // multicast of their own: O(N³) packets, 2 million at N = 128.
        if !(regather && self.defer_join(now)) {
            self.cancel(TimerKind::Join);
            let jitter = self.join_jitter();
            if jitter.is_zero() {
                self.send_join(now);
                self.arm(TimerKind::Join, now + self.cfg.join);
            } else {
                self.arm(TimerKind::Join, now + jitter);
            }
        }
        let c = self.timeouts().consensus;
        self.arm(TimerKind::Consensus, now + c);
        self.check_consensus(now);
    }

    fn send_join(&mut self, now: Instant) {
        self.last_join_sent = Some(now);
        let join = Join {
            ring_seq: self.ring_id.seq,
            high_seq: self.ring_seq_high_water(),
            leave: false,
            installed: self.installed_any && self.ring_id == self.regular_ring,
            settled: self.settled,
            probe: false,
            proc_list: sorted(&self.proc_set),
            fail_list: sorted(&self.fail_set),
            heard: sorted(&self.round_heard()),
            padding: 0,
        };
        self.send_padded(join);
    }

    /// Sends our join now, or as soon as the coalescing interval allows, without restarting
    /// the consensus timer (nothing we proposed changed; only what we can report did).
    fn join_soon(&mut self, now: Instant) {
        if !self.defer_join(now) {
            self.send_join(now);
            self.arm(TimerKind::Join, now + self.cfg.join);
        }
    }

    /// If a join went out less than `join_coalesce()` ago, brings the join timer forward to the
    /// end of that interval (re-armed in the current epoch: a timer of an earlier one would be
    /// dropped as stale) and returns true; the caller sends nothing now.
    fn defer_join(&mut self, now: Instant) -> bool {
        let Some(until) = self
            .last_join_sent
            .map(|t| t + self.join_coalesce())
            .filter(|&until| now < until)
        else {
            return false;
        };
        let armed = self.timers[TimerKind::Join as usize].map(|t| t.at);
        self.arm(TimerKind::Join, armed.map_or(until, |at| at.min(until)));
        true
    }

    fn consensus_timeout(&mut self, now: Instant) {
        self.stats.consensus_timeouts += 1;
        // A whole consensus period has passed in this round: whom we have not heard by now we
        // cannot hear, and our joins say so from here on.
        let first = !self.settled;
        self.settled = true;
        if self.consensus_agreed() {
            // Everyone agreed but no commit token came: its creator may be gone. Start over.
            self.consensus.clear();
            self.consensus.insert(self.me);
            let c = self.timeouts().consensus;
            self.arm(TimerKind::Consensus, now + c);
            return;
        }
        let heard = self.round_heard();
        let candidates: BTreeSet<NodeId> = self.proposed_members().into_iter().collect();
        // 1. Processors we never heard in this round: crashed, unless a settled join of a
        // processor we hear shows it alive, in which case the link from it to us is cut.
        let silent: BTreeSet<NodeId> = candidates
            .iter()
            .filter(|&&n| n != self.me && !heard.contains(&n))
            .copied()
            .collect();
        let alive = |c: NodeId| {
            candidates.iter().any(|&a| {
                a != self.me && heard.contains(&a) && self.row(a).is_some_and(|r| has(&r.heard, c))
            })
        };
        // Of those nobody reports hearing, the ones whose packets (multicasts, merge detects,
        // tokens) still reach us are absent: they do not hear our joins or they quarantined
        // us, and no ring can include them. The others are gone.
        let seen = self.round_seen();
        let (mut absent, dead): (BTreeSet<NodeId>, BTreeSet<NodeId>) = silent
            .iter()
            .copied()
            .filter(|&c| !alive(c))
            .partition(|c| seen.contains(c));
        // Those that only probed us are operational in a ring of their own, not in our round.
        absent.extend(
            candidates
                .iter()
                .filter(|&&n| n != self.me && heard.contains(&n) && self.row(n).is_none()),
        );
        let among: BTreeSet<NodeId> = candidates
            .iter()
            .filter(|n| !dead.contains(n) && !absent.contains(n))
            .copied()
            .collect();
        // 2. Links that the joins show broken (one way or both, our own included): everyone
        // who sees the same joins splits the processors the same way.
        let broken = self.broken_links(&among);
        let layer = ring_layer(self.me, &among, &broken);
        let cut_off: Vec<NodeId> = among.difference(&layer).copied().collect();
        self.link_failed.extend(cut_off.iter().copied());
        self.link_failed.extend(absent.iter().copied());
        let mut failed: Vec<NodeId> = dead.into_iter().collect();
        failed.extend(cut_off);
        failed.extend(absent);
        if failed.is_empty() {
            // 3. Only disagreement is left (all heard, no link known broken): as Corosync, fail
            // whoever did not agree with us. On the first timeout, not a processor whose own
            // consensus timer has not expired yet: its report of whom it hears may not be
            // final.
            failed = among
                .iter()
                .filter(|&&n| n != self.me && !self.consensus.contains(&n))
                .filter(|&&n| !first || self.row(n).is_none_or(|r| r.settled))
                .copied()
                .collect();
        }
        self.fail_set.extend(failed);
        self.gather_enter(now);
    }

    /// The members this processor proposes: its processor set minus its fail set, ascending.
    fn proposed_members(&self) -> Vec<NodeId> {
        self.proc_set
            .iter()
            .filter(|n| !self.fail_set.contains(n))
            .copied()
            .collect()
    }

    /// Consensus: every proposed member sent a join with our sets, and every one of them
    /// (ourselves included) heard every other in this round. A member that only hears some of
    /// the others, or is heard by only some, could not carry the commit token round the ring.
    fn consensus_agreed(&self) -> bool {
        // Cheapest test first: this runs on every join, and while a ring forms the consensus
        // set is incomplete almost every time.
        let proposed = self.proc_set.len() - self.fail_set.intersection(&self.proc_set).count();
        if self.consensus.len() < proposed {
            return false;
        }
        let members = self.proposed_members();
        if !members.iter().all(|n| self.consensus.contains(n)) {
            return false;
        }
        let heard = self.round_heard();
        members.iter().all(|&n| {
            if n == self.me {
                return members.iter().all(|m| *m == self.me || heard.contains(m));
            }
            self.row(n)
                .is_some_and(|r| members.iter().all(|&m| m == n || has(&r.heard, m)))
        })
    }

    /// `n`'s latest join in this round.
    fn row(&self, n: NodeId) -> Option<&Row> {
        self.rows.get(&n).filter(|r| r.at >= self.round_start)
    }

    /// Processors whose joins reached us since the current round began: the `heard` list of
    /// our joins.
    fn round_heard(&self) -> BTreeSet<NodeId> {
        let mut heard = since(&self.last_joined, self.round_start);
        heard.retain(|n| !self.deaf_from.contains(n));
        heard
    }

    /// Processors any of whose packets reached us since the current round began.
    fn round_seen(&self) -> BTreeSet<NodeId> {
        since(&self.last_seen, self.round_start)
    }

    /// Processors heard directly within `recent_window`: what a join sent while operational
    /// reports.
    fn recently_heard(&self, now: Instant) -> BTreeSet<NodeId> {
        let w = self.recent_window();
        self.last_heard
            .iter()
            .filter(|(n, &at)| {
                now.saturating_duration_since(at) <= w && !self.deaf_from.contains(n)
            })
            .map(|(&n, _)| n)
            .collect()
    }

    /// How long a processor counts as recently heard: long enough to span a probe, the
    /// answers it draws and the next probe at the longest back-off.
    fn recent_window(&self) -> Duration {
        self.probe_backoff_max() * 2
    }

    /// Longest wait between two probes towards a quarantined processor.
    fn probe_backoff_max(&self) -> Duration {
        let t = self.timeouts();
        t.token + t.consensus
    }

    /// Records a membership or token packet that came directly from `from`.
    fn note_heard(&mut self, now: Instant, from: NodeId) {
        let before = self.last_heard.insert(from, now);
        self.sender_was_quiet =
            before.is_none_or(|t| now.saturating_duration_since(t) > self.recent_window());
    }

    /// Links between two of `among` that a settled join shows broken: `a` has not heard `b`
    /// for a whole consensus period (the link `b -> a` is cut). Each pair is (lower, higher).
    fn broken_links(&self, among: &BTreeSet<NodeId>) -> BTreeSet<(NodeId, NodeId)> {
        let mut out = BTreeSet::new();
        let heard = sorted(&self.round_heard());
        for &a in among {
            let report = if a == self.me {
                Some(&heard)
            } else {
                self.row(a).filter(|r| r.settled).map(|r| &r.heard)
            };
            let Some(report) = report else { continue };
            for &b in among {
                if b != a && !has(report, b) {
                    out.insert((a.min(b), a.max(b)));
                }
            }
        }
        out
    }

    fn check_consensus(&mut self, now: Instant) {
        if self.state != State::Gather || !self.consensus_agreed() {
            return;
        }
        let lowest = self
            .proc_set
            .iter()
            .find(|n| !self.fail_set.contains(n))
            .copied();
        if lowest == Some(self.me) {
            self.create_commit_token(now);
        }
    }

    fn on_join(&mut self, now: Instant, sender: NodeId, mut j: Join) {
        if sender == self.me {
            self.ignore(Ignored::OwnPacket);
            return;
        }
        self.ring_seq_high = self.ring_seq_high.max(j.ring_seq).max(j.high_seq);
        // Ours are sent ascending; anyone else's are made so (`has` searches them).
        j.heard.sort_unstable();
        j.heard.dedup();
        if !j.leave {
            self.reports.insert(sender, (now, j.heard.clone()));
        }
        if j.probe {
            // A ring is numbered by its creator, the lowest member.
            if let Some(&rep) = j.proc_list.iter().min() {
                self.probe_rings
                    .insert(sender, RingId::new(rep, j.ring_seq));
            }
        }
        if j.leave {
            // A processor that leaves is gone: it is not a one-way link to remember.
            self.last_heard.remove(&sender);
            self.last_joined.remove(&sender);
            self.last_seen.remove(&sender);
            self.reports.remove(&sender);
            self.probe_rings.remove(&sender);
            self.rows.remove(&sender);
            self.quarantine.remove(&sender);
            self.deaf_from.remove(&sender);
        } else if !j.probe {
            // (A probe reports whom its sender heard recently, not in our round.)
            self.rows.insert(
                sender,
                Row {
                    at: now,
                    heard: j.heard.clone(),
                    settled: j.settled,
                },
            );
        }
        match self.state {
            State::Operational => {
                if j.fail_list.contains(&self.me)
                    || (self.memb.contains(&sender) && j.ring_seq < self.regular_ring.seq)
                    || (j.probe && self.memb.contains(&sender))
                {
                    self.ignore(Ignored::WrongState);
                    return;
                }
                if self.quarantine.contains_key(&sender) {
                    if !self.shows_two_way_contact(now, sender, &j, &self.memb.clone()) {
                        self.ignore(Ignored::Quarantined);
                        self.answer_quarantined(now, &j);
                        return;
                    }
                    self.quarantine.remove(&sender);
                }
                self.join_process(now, sender, &j);
            }
            State::Gather => {
                if self.memb.contains(&sender) && j.ring_seq < self.regular_ring.seq {
                    // A ring-mate's join from before our current ring: stale.
                    self.ignore(Ignored::WrongState);
                    return;
                }
                if self.quarantine.contains_key(&sender) && !self.proc_set.contains(&sender) {
                    let ours = self.proposed_members();
                    if !self.shows_two_way_contact(now, sender, &j, &ours) {
                        self.ignore(Ignored::Quarantined);
                        return;
                    }
                    self.quarantine.remove(&sender);
                }
                self.join_process(now, sender, &j)
            }
            State::Recovery
                if j.installed
                    && j.ring_seq == self.ring_id.seq
                    && self.new_memb.contains(&sender) =>
            {
                // A member already installed the ring we are recovering: it saw every member
                // hold every recovery message, so our recovery is complete too. Install it
                // rather than abandon it, then handle the join like any operational member.
                self.install(now);
                self.reset_token_timers(now);
                self.on_join(now, sender, j);
            }
            State::Commit | State::Recovery
                if self.new_memb.contains(&sender)
                    && j.fail_list.contains(&self.me)
                    && !j.leave =>
            {
                // A member of the ring being formed counts us as failed: it will not take the
                // commit token (or has abandoned the ring), so this attempt cannot complete.
                // Whatever ring its join names, waiting for the token timeout only delays the
                // next round.
                self.join_process(now, sender, &j);
                if self.state != State::Gather {
                    self.gather_enter(now);
                }
            }
            State::Commit | State::Recovery => {
                if self.new_memb.contains(&sender) && j.ring_seq >= self.ring_id.seq {
                    self.join_process(now, sender, &j);
                    if self.state != State::Gather {
                        self.gather_enter(now);
                    }
                } else {
                    self.ignore(Ignored::WrongState);
                }
            }
            State::Left => {}
        }
    }

    fn join_process(&mut self, now: Instant, sender: NodeId, j: &Join) {
        let jp: BTreeSet<NodeId> = j.proc_list.iter().copied().collect();
        // A join sent before its sender had heard of the ring we installed (typically one of
        // the round that formed our ring, arriving late) judges a configuration we have left:
        // its processors still count, its failures do not. Mixed into the current round, such
        // stale failures made groups exclude each other round after round.
        let stale = j.high_seq < self.regular_ring.seq;
        let jf: BTreeSet<NodeId> = if stale {
            BTreeSet::new()
        } else {
            j.fail_list.iter().copied().collect()
        };
        if self.state == State::Gather && jp == self.proc_set && jf == self.fail_set {
            if !j.leave {
                self.consensus.insert(sender);
            }
            self.check_consensus(now);
            return;
        }
        // Whatever happens below, the sender's latest sets differ from ours: a consensus it
        // gave earlier no longer holds.
        self.consensus.remove(&sender);
        if j.leave && !self.fail_set.contains(&sender) {
            // It left: it is failed here whatever its own lists say.
            self.fail_set.insert(sender);
            self.gather_enter(now);
            return;
        }
        let knows_less = jp.is_subset(&self.proc_set) && jf.is_subset(&self.fail_set);
        if knows_less || self.fail_set.contains(&sender) {
            if self.state == State::Operational {
                self.gather_enter(now);
            }
            return;
        }
        let before = (self.proc_set.len(), self.fail_set.len());
        self.proc_set.extend(jp.iter().copied());
        // Failures are adopted: a ring-mate's whole, an outsider's except for our ring-mates
        // (an outsider cannot evict them), never our own. Groups whose consensus timers fire at
        // different moments then agree on who is gone instead of excluding each other.
        //
        // A sender that lists *us* as failed judges from a view we do not share: none of its
        // failures are adopted. Unlike the paper and Corosync, it is not failed in return
        // either: in the simulator that rule made out-of-phase groups exclude each other in
        // every round. Its sets simply differ from ours, so it gives us no consensus and the
        // consensus timeout settles the disagreement.
        //
        // A failure is not adopted when the joins show the link between the sender and the
        // failed processor broken while we hear both: that is a one-way or non-transitive link,
        // and which side stays is decided at our consensus timeout from the links we all see
        // (`ring_layer`). Adopting both sides' failures would leave the processors that hear
        // both alone.
        if !jf.contains(&self.me) && !jf.is_empty() {
            let ring_mate = self.memb.contains(&sender);
            let heard = self.round_heard();
            let adopted: Vec<NodeId> = jf
                .iter()
                .copied()
                .filter(|&n| ring_mate || !self.memb.contains(&n))
                .filter(|&n| {
                    let link_broken =
                        !has(&j.heard, n) || self.row(n).is_some_and(|r| !has(&r.heard, sender));
                    !(heard.contains(&n) && link_broken)
                })
                .collect();
            // Another's exclusion of a processor whose packets reach us is a decision about
            // links (ours or theirs): remember it, so that its traffic does not start the next
            // round at once (re-admission asks for evidence of every link between the two
            // sides).
            let seen = self.round_seen();
            for &n in &adopted {
                if seen.contains(&n) && !self.fail_set.contains(&n) {
                    self.link_failed.insert(n);
                }
            }
            self.fail_set.extend(adopted);
        }
        // Re-enter GATHER (re-sending our join) only when our sets grew. Two processors whose
        // joins teach each other nothing would otherwise answer each other's joins forever; the
        // consensus timeout settles their disagreement instead.
        let changed = (self.proc_set.len(), self.fail_set.len()) != before;
        if changed || self.state != State::Gather {
            self.gather_enter(now);
        }
    }

    /// Does `j`, a join from quarantined `sender`, show two-way contact with `ours` (our ring,
    /// or the members we propose)? Its sender heard every one of them, and we recently heard
    /// every processor it proposes that is not one of ours.
    ///
    /// And every link that got a processor of either side quarantined here, between two
    /// processors of the two sides, is shown to work both ways by both ends' latest joins or
    /// probes: the sender hearing us says nothing of a ring-mate of its that cannot.
    fn shows_two_way_contact(
        &self,
        now: Instant,
        sender: NodeId,
        j: &Join,
        ours: &[NodeId],
    ) -> bool {
        let recent = self.recently_heard(now);
        let theirs: Vec<NodeId> = j
            .proc_list
            .iter()
            .filter(|n| !j.fail_list.contains(n))
            .copied()
            .collect();
        let basic = ours.iter().all(|&m| m == sender || has(&j.heard, m))
            && theirs
                .iter()
                .filter(|n| !ours.contains(n) && **n != self.me)
                .all(|n| recent.contains(n));
        if !basic {
            return false;
        }
        let hears = |x: NodeId, y: NodeId| {
            if x == self.me {
                return recent.contains(&y);
            }
            if x == sender {
                return has(&j.heard, y);
            }
            self.reports.get(&x).is_some_and(|(at, heard)| {
                now.saturating_duration_since(*at) <= self.recent_window() && has(heard, y)
            })
        };
        // Every processor of each side heard every processor of the other, as far as the
        // latest joins and probes of each show.
        let mut mine: Vec<NodeId> = ours.to_vec();
        mine.push(self.me);
        mine.iter().all(|&m| {
            theirs
                .iter()
                .filter(|t| !mine.contains(t))
                .all(|&t| hears(m, t) && hears(t, m))
        })
    }

    /// Traffic of quarantined `q` reached us while we are operational: send a probe (a join
    /// naming our ring and whom we recently heard) at most once per back-off, which doubles up
    /// to `probe_backoff_max`. A probe that shows two-way contact brings the two rings
    /// together; one that does not costs a small packet and changes nothing.
    fn maybe_probe(&mut self, now: Instant, q: NodeId) {
        let max = self.probe_backoff_max();
        let Some(e) = self.quarantine.get_mut(&q) else {
            return;
        };
        if now < e.next_probe {
            return;
        }
        e.next_probe = now + e.backoff;
        e.backoff = (e.backoff * 2).min(max);
        self.send_probe(now);
    }

    /// A quarantined processor's join or probe did not show two-way contact: if it did not
    /// list us as heard, or it is the first we hear of it for a while (an answer to our own
    /// probe), answer with a probe, so that its next one can show contact if the links work.
    /// At most once per join coalescing interval.
    fn answer_quarantined(&mut self, now: Instant, j: &Join) {
        if has(&j.heard, self.me) && !self.sender_was_quiet {
            return;
        }
        if self
            .last_probe
            .is_some_and(|t| now.saturating_duration_since(t) < self.join_coalesce())
        {
            return;
        }
        self.stats.presence_sent += 1;
        self.send_probe(now);
    }

    /// Multicasts a join or probe padded to `max_packet_size`, as big as the biggest multicast:
    /// whom a join shows its sender heard, it heard over paths that carry the ring's traffic
    /// (a path that loses big datagrams, an MTU black hole, loses the joins too and shows up
    /// in the membership as a cut link).
    fn send_padded(&mut self, mut join: Join) {
        join.padding = 0;
        let len = wire::encoded_len(&Packet::Join(join.clone()));
        join.padding =
            u16::try_from(self.cfg.max_packet_size.saturating_sub(len)).unwrap_or(u16::MAX);
        self.send(Destination::Multicast, &Packet::Join(join));
    }

    fn send_probe(&mut self, now: Instant) {
        self.last_probe = Some(now);
        self.stats.probes_sent += 1;
        let probe = Join {
            ring_seq: self.regular_ring.seq,
            high_seq: self.ring_seq_high_water(),
            leave: false,
            installed: self.installed_any,
            settled: true,
            probe: true,
            proc_list: self.memb.clone(),
            fail_list: Vec::new(),
            heard: sorted(&self.recently_heard(now)),
            padding: 0,
        };
        self.send_padded(probe);
    }

    // ---------------------------------------------------------------------------------------
    // Membership: COMMIT

    fn create_commit_token(&mut self, now: Instant) {
        let members: Vec<NodeId> = self
            .proc_set
            .iter()
            .filter(|n| !self.fail_set.contains(n))
            .copied()
            .collect();
        let high = self.ring_seq_high.max(self.ring_id.seq);
        // A processor that knows nothing of its past (`Start::ring_seq` 0) cannot tell which
        // ids its earlier incarnations created: from the same high-water mark of the others,
        // or of nobody when alone, it would create the same `(me, high + 4)` again, and packets
        // of that old configuration would pass for the new one's. It steps by a random
        // multiple of 4 instead (below 2^34, from its start seed and `high`), so two
        // incarnations collide with odds of about 2^-32.
        let step = match self.ring_salt {
            None => 4,
            Some(salt) => 4 + ((mix64(salt ^ high) & 0xFFFF_FFFF) << 2),
        };
        let seq = high.saturating_add(step);
        let ct = CommitToken {
            ring_id: RingId::new(self.me, seq),
            token_seq: 0,
            memb_index: 0,
            members: members
                .iter()
                .map(|&node| CommitMember {
                    node,
                    ..CommitMember::default()
                })
                .collect(),
        };
        self.commit_enter(now, ct);
    }

    fn commit_enter(&mut self, now: Instant, mut ct: CommitToken) {
        let old = *self.old_state.get_or_insert(OldRingState {
            aru: self.aru,
            high_seq: self.high_seq,
        });
        let idx = usize::from(ct.memb_index);
        let Some(entry) = ct.members.get_mut(idx) else {
            return;
        };
        entry.old_ring_id = self.regular_ring;
        entry.aru = old.aru;
        entry.high_delivered = self.high_delivered;
        entry.received_flg = old.aru == old.high_seq;
        ct.memb_index += 1;

        self.new_epoch();
        self.state = State::Commit;
        self.ring_id = ct.ring_id;
        self.ring_seq_high = self.ring_seq_high.max(ct.ring_id.seq);
        self.new_memb = ct.members.iter().map(|m| m.node).collect();
        self.cancel(TimerKind::Join);
        self.cancel(TimerKind::Consensus);
        self.cancel_token_timers();
        self.trc = 0;
        self.pbl = 0;
        self.token_seq_seen = None;
        // A new ring rotates at its own pace.
        self.rotations.clear();
        self.forwarded_at = None;
        self.retransmit_backoff = 0;
        self.forward_commit(now, ct);
    }

    fn forward_commit(&mut self, now: Instant, mut ct: CommitToken) {
        // Both rotations go to the ring successor (members are in ring order).
        let n = ct.members.len();
        let next = match ct.members.iter().position(|m| m.node == self.me) {
            Some(i) => ct.members[(i + 1) % n].node,
            None => self.me,
        };
        ct.token_seq = ct.token_seq.wrapping_add(1);
        let data = self.send(Destination::Node(next), &Packet::Commit(ct));
        self.last_token = Some((next, data, PacketType::CommitToken));
        self.reset_token_timers(now);
    }

    fn on_commit(&mut self, now: Instant, ct: CommitToken) {
        let n = ct.members.len();
        let well_formed = n > 0
            && usize::from(ct.memb_index) <= n
            && ct.members.windows(2).all(|w| w[0].node < w[1].node)
            && ct.members.iter().any(|m| m.node == self.me);
        if !well_formed {
            self.ignore(Ignored::WrongState);
            return;
        }
        match self.state {
            State::Gather => {
                let expect: Vec<NodeId> = self
                    .proc_set
                    .iter()
                    .filter(|n| !self.fail_set.contains(n))
                    .copied()
                    .collect();
                let listed: Vec<NodeId> = ct.members.iter().map(|m| m.node).collect();
                let idx = usize::from(ct.memb_index);
                if listed == expect
                    && ct.ring_id.seq > self.ring_id.seq
                    && idx < n
                    && ct.members[idx].node == self.me
                {
                    self.commit_enter(now, ct);
                } else {
                    self.ignore(Ignored::WrongState);
                }
            }
            State::Commit => {
                if ct.ring_id != self.ring_id || usize::from(ct.memb_index) != n {
                    self.ignore(Ignored::WrongState);
                } else if self.own_commit_entry_intact(&ct) {
                    self.recovery_enter(now, ct);
                } else {
                    // Our entry holds what an earlier incarnation of this node wrote in the
                    // first rotation (it crashed in COMMIT; we, restarted, took the
                    // representative's retransmission of the same token, and a member
                    // forwarded its own copy): the others would recover, and we would install,
                    // from a state that is not ours (a transitional configuration without
                    // ourselves). This attempt cannot complete: a new round.
                    self.ignore(Ignored::InconsistentToken);
                    self.gather_enter(now);
                }
            }
            State::Recovery => {
                if ct.ring_id == self.ring_id
                    && self.ring_id.rep == self.me
                    && !self.originated_orf_token
                {
                    self.originated_orf_token = true;
                    let s0 = self.cfg.initial_seq;
                    let tok = OrfToken {
                        ring_id: self.ring_id,
                        token_seq: 0,
                        seq: s0,
                        aru: s0,
                        aru_addr: 0,
                        backlog: 0,
                        fcc: 0,
                        retrans_flg: false,
                        rtr: Vec::new(),
                    };
                    self.process_token(now, tok);
                } else {
                    self.ignore(Ignored::WrongState);
                }
            }
            _ => self.ignore(Ignored::WrongState),
        }
    }

    /// Whether the second-rotation commit token `ct` carries, for this processor, what
    /// `commit_enter` wrote in the first rotation.
    fn own_commit_entry_intact(&self, ct: &CommitToken) -> bool {
        let Some(old) = self.old_state else {
            return false;
        };
        ct.members.iter().any(|m| {
            m.node == self.me
                && m.old_ring_id == self.regular_ring
                && m.aru == old.aru
                && m.received_flg == (old.aru == old.high_seq)
        })
    }

    // ---------------------------------------------------------------------------------------
    // Membership: RECOVERY

    fn recovery_enter(&mut self, now: Instant, ct: CommitToken) {
        let Some(old) = self.old_state else {
            return;
        };
        self.new_epoch();
        self.state = State::Recovery;
        self.new_memb = ct.members.iter().map(|m| m.node).collect();
        self.trans_memb = ct
            .members
            .iter()
            .filter(|m| m.old_ring_id == self.regular_ring && self.memb.contains(&m.node))
            .map(|m| m.node)
            .collect();

        // Every old-ring message some transitional member may lack is re-sent by everyone
        // holding it: from the lowest aru of the transitional members to our highest seq.
        let mut low = old.high_seq;
        let mut high_delivered = self.cfg.initial_seq;
        for m in &ct.members {
            if self.trans_memb.contains(&m.node) {
                low = low.min(m.aru);
                high_delivered = high_delivered.max(m.high_delivered);
            }
        }
        self.high_ring_delivered = high_delivered;
        // Nothing at or below the released point is held, and a commit token cannot make us
        // walk further back than that.
        let low = low.max(self.regular.base);
        self.retrans_queue.clear();
        let mut seq = low + 1;
        while seq <= old.high_seq {
            if let Some(slot) = self.regular.get(seq) {
                self.retrans_queue.push_back(slot.raw.clone());
            }
            seq += 1;
        }

        let s0 = self.cfg.initial_seq;
        self.recovery = SortQueue::new(s0);
        self.aru = s0;
        self.high_seq = s0;
        self.install_seq = s0;
        self.last_aru = s0;
        self.safe_bound = s0;
        self.aru_count = 0;
        self.seq_unchanged = 0;
        self.last_token_seq_value = None;
        self.token_seq_seen = None;
        self.retrans_flg_count = 0;
        self.rotation_counter = 0;
        self.set_retrans_flg = false;
        self.originated_orf_token = false;
        self.forward_commit(now, ct);
    }

    /// Moves one recovered (encapsulated) message of our old ring into the old ring's queue,
    /// and extends the saved old-ring state over it: we now hold it, whatever happens to the
    /// ring being formed.
    fn unwrap_recovered(&mut self, slot: &Slot) {
        let Ok(Decoded {
            sender,
            packet: Packet::Mcast(inner),
        }) = wire::decode(&slot.payload)
        else {
            return;
        };
        if inner.ring_id != self.regular_ring || inner.encapsulated {
            // Another partition's history, or garbage: not ours to deliver.
            return;
        }
        let seq = inner.seq;
        let restored = Slot {
            sender,
            guarantee: inner.guarantee,
            encapsulated: false,
            payload: inner.payload,
            raw: slot.payload.clone(),
            resent: 0,
        };
        if self
            .regular
            .insert(seq, restored, self.cfg.sort_queue_capacity)
            .is_ok()
        {
            if let Some(old) = self.old_state.as_mut() {
                old.high_seq = old.high_seq.max(seq);
                while self.regular.has(old.aru + 1) {
                    old.aru += 1;
                }
            }
        }
    }

    /// RECOVERY keeps every recovery message until installation, so a large recovery would
    /// fill the sort queue and stall (flow control refuses to send beyond it). Recovery
    /// messages every member holds (the same two-visit rule as garbage collection) are
    /// unwrapped into the old ring's queue now and released. Only the leading run of
    /// encapsulated messages is released: a regular message of a member that already
    /// installed must stay until we install and deliver it.
    fn release_recovered(&mut self, to: u64) {
        let to = to.min(self.aru);
        while self.recovery.base < to {
            let seq = self.recovery.base + 1;
            let Some(slot) = self.recovery.get(seq).cloned() else {
                break;
            };
            if !slot.encapsulated {
                break;
            }
            self.unwrap_recovered(&slot);
            self.recovery.release_to(seq);
        }
    }

    /// Installs the new ring in the order extended virtual synchrony requires: old-ring
    /// messages up to the first gap (regular configuration), the transitional configuration,
    /// the remaining old-ring messages of transitional members, the regular configuration.
    fn install(&mut self, now: Instant) {
        let old_ring = self.regular_ring;

        // 1. Unwrap the recovered messages still in the recovery queue into the old ring's
        // queue (those all members held were unwrapped and released during RECOVERY). Recovery
        // traffic is the leading run of encapsulated messages of the new ring; new messages of
        // members that installed before us may already follow it.
        let mut boundary = self.recovery.base;
        let mut leading = true;
        let mut seq = self.recovery.base + 1;
        while seq <= self.high_seq {
            let slot = self.recovery.get(seq).cloned();
            leading &= slot.as_ref().is_some_and(|s| s.encapsulated);
            if leading {
                boundary = seq;
            }
            if let Some(slot) = slot {
                if slot.encapsulated {
                    self.unwrap_recovered(&slot);
                }
            }
            seq += 1;
        }
        // The old-ring state saved at COMMIT, extended over everything recovered.
        let old_high = self
            .old_state
            .take()
            .map_or(self.high_seq, |old| old.high_seq);

        // 2. Deliver in the old regular configuration up to the first gap, and no SAFE message
        // that no transitional member delivered before the failure.
        while self.high_delivered < old_high {
            let seq = self.high_delivered + 1;
            let Some(slot) = self.regular.get(seq) else {
                break;
            };
            if slot.guarantee == Guarantee::Safe
                && seq > self.high_ring_delivered
                && !self.cfg.inject_no_install_holdback()
            {
                break;
            }
            let slot = slot.clone();
            self.high_delivered = seq;
            self.deliver_slot(old_ring, seq, &slot);
        }

        // 3-5. The transitional configuration.
        let left: Vec<NodeId> = self
            .memb
            .iter()
            .filter(|n| !self.trans_memb.contains(n))
            .copied()
            .collect();
        let joined: Vec<NodeId> = self
            .new_memb
            .iter()
            .filter(|n| !self.trans_memb.contains(n))
            .copied()
            .collect();
        if self.installed_any {
            self.events.push_back(Event::ConfigChange(ConfigChange {
                kind: ConfigKind::Transitional,
                ring_id: self.ring_id,
                members: self.trans_memb.clone(),
                left,
                joined: Vec::new(),
            }));
        }

        // 7. Remaining old-ring messages. Up to the first gap every message is delivered (they
        // were only held back for SAFE); after it, only messages of transitional members, whose
        // messages are all here (each holds its own), so skipping cannot break a sender's order.
        let mut seq = self.high_delivered + 1;
        let mut gap = false;
        while seq <= old_high {
            match self.regular.get(seq) {
                Some(slot) if !gap || self.trans_memb.contains(&slot.sender) => {
                    let slot = slot.clone();
                    self.deliver_slot(old_ring, seq, &slot);
                }
                Some(_) => {}
                None => gap = true,
            }
            seq += 1;
        }
        // No message spans two rings: partial fragments are dropped here and re-sent whole.
        self.stats.partial_messages_dropped += self.reasm.pending() as u64;
        self.reasm.reset();
        self.packer.restart_partial();

        // 8. The regular configuration.
        self.events.push_back(Event::ConfigChange(ConfigChange {
            kind: ConfigKind::Regular,
            ring_id: self.ring_id,
            members: self.new_memb.clone(),
            left: Vec::new(),
            joined,
        }));

        // 9. The recovery queue becomes the regular queue; recovery traffic counts as delivered.
        self.regular = std::mem::replace(&mut self.recovery, SortQueue::new(self.cfg.initial_seq));
        self.regular_ring = self.ring_id;
        self.high_delivered = boundary;
        self.safe_bound = boundary;
        self.retrans_queue.clear();
        // Processors we heard in this round but failed because links between us are broken
        // are quarantined: their traffic is no reason for another round until they show
        // two-way contact. (Not those failed for silence or disagreement: nothing says we
        // cannot form a ring with them.)
        let base = self.cfg.join;
        let seen = self.round_seen();
        // (Kept across the attempts of one round: a processor failed in an earlier attempt stays
        // failed in the fail set, so the reason stays with it.)
        let excluded = std::mem::take(&mut self.link_failed);
        for q in excluded.intersection(&seen) {
            if *q == self.me || self.new_memb.contains(q) {
                continue;
            }
            let backoff = self.quarantine.get(q).map_or(base, |e| e.backoff);
            self.quarantine.insert(
                *q,
                Quarantine {
                    next_probe: now + backoff,
                    backoff,
                },
            );
        }
        for q in &self.new_memb {
            self.quarantine.remove(q);
        }
        self.memb = self.new_memb.clone();
        self.proc_set = self.memb.iter().copied().collect();
        self.fail_set.clear();
        self.installed_any = true;
        self.new_epoch();
        self.state = State::Operational;
        self.stats.rings_formed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lone_processor() -> Processor {
        let cfg = Config {
            token: Duration::from_millis(200),
            ..Config::default()
        };
        Processor::new(cfg, 1, Start::default(), Instant::ZERO).expect("valid config")
    }

    #[test]
    fn timer_armed_in_an_older_epoch_is_a_no_op() {
        let mut p = lone_processor();
        // Alone, the processor created a commit token and waits in COMMIT with its token-loss
        // timer armed.
        assert_eq!(p.state, State::Commit);
        let loss = p.timers[TimerKind::TokenLoss as usize].expect("armed");
        // The ring moves on without re-arming that timer (as a state change would).
        p.new_epoch();
        let stale_before = p.stats.stale_timers;
        p.handle_timeout(loss.at);
        assert!(p.stats.stale_timers > stale_before);
        assert_eq!(
            p.stats.token_lost, 0,
            "a stale token-loss timer must not fire"
        );
        assert_eq!(p.state, State::Commit);
    }

    fn set(v: &[NodeId]) -> BTreeSet<NodeId> {
        v.iter().copied().collect()
    }

    fn links(v: &[(NodeId, NodeId)]) -> BTreeSet<(NodeId, NodeId)> {
        v.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect()
    }

    /// The ring each processor of `among` ends up in, as `ring_layer` decides at each of them.
    fn split(among: &[NodeId], broken: &[(NodeId, NodeId)]) -> Vec<Vec<NodeId>> {
        let (among, broken) = (set(among), links(broken));
        let mut rings: Vec<Vec<NodeId>> = among
            .iter()
            .map(|&me| ring_layer(me, &among, &broken).into_iter().collect())
            .collect();
        rings.sort();
        rings.dedup();
        rings
    }

    #[test]
    fn ring_layer_splits_on_broken_links_the_same_way_everywhere() {
        // No broken link: one ring.
        assert_eq!(split(&[1, 2, 3], &[]), vec![vec![1, 2, 3]]);
        // One link cut (either way): the higher id of the pair leaves, alone.
        assert_eq!(split(&[1, 2, 3], &[(1, 2)]), vec![vec![1, 3], vec![2]]);
        assert_eq!(
            split(&[1, 2, 3, 4, 5], &[(2, 1)]),
            vec![vec![1, 3, 4, 5], vec![2]]
        );
        // One processor cut from everyone: it leaves, whatever its id.
        assert_eq!(
            split(&[1, 2, 3, 4, 5], &[(1, 2), (1, 3), (1, 4), (1, 5)]),
            vec![vec![1], vec![2, 3, 4, 5]]
        );
        // Two halves cut from each other: two rings, each whole.
        let cross: Vec<(NodeId, NodeId)> = [1, 2]
            .iter()
            .flat_map(|&a| [3, 4, 5].map(|b| (a, b)))
            .collect();
        assert_eq!(
            split(&[1, 2, 3, 4, 5], &cross),
            vec![vec![1, 2], vec![3, 4, 5]]
        );
        // A processor with most links broken goes before one with a single broken link.
        assert_eq!(
            split(&[1, 2, 3, 4, 5], &[(1, 2), (1, 3), (1, 4), (4, 5)]),
            vec![vec![1, 5], vec![2, 3, 4]]
        );
        // Every ring is free of broken links, and every processor is in exactly one ring.
        let among = [3, 7, 9, 12, 20, 31];
        let broken = [
            (3, 7),
            (7, 9),
            (9, 12),
            (12, 20),
            (20, 31),
            (31, 3),
            (7, 20),
        ];
        let rings = split(&among, &broken);
        let mut all: Vec<NodeId> = rings.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, among.to_vec());
        for ring in &rings {
            for &(a, b) in &broken {
                assert!(
                    !(ring.contains(&a) && ring.contains(&b)),
                    "{ring:?} has {a}-{b}"
                );
            }
        }
    }

    #[test]
    fn timer_of_the_current_epoch_fires() {
        let mut p = lone_processor();
        let loss = p.timers[TimerKind::TokenLoss as usize].expect("armed");
        let gathers = p.stats.gather_entered;
        p.handle_timeout(loss.at);
        assert_eq!(p.stats.token_lost, 1);
        // Back to GATHER, where a lone processor at once starts forming a ring again.
        assert_eq!(p.stats.gather_entered, gathers + 1);
    }
}
