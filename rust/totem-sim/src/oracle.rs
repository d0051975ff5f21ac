//! The EVS oracle: checks the extended virtual synchrony properties of
//! `shared/docs/totem-reference.md` §4.6 (C1-C6, D1-D9) over the event streams of every
//! processor, as the run goes, and fails at the first bad step.
//!
//! A *process* is one incarnation of a node: a crash ends it for good, and a restart of the same
//! node id is a new process with a higher incarnation. Membership lists name node ids.
//!
//! # The canonical history
//!
//! The oracle keeps one history that every process's new event is checked against:
//!
//! * **Configurations.** A regular configuration is identified by its ring id. A transitional
//!   configuration is identified by the pair *(previous regular ring, next ring id)*: the event
//!   carries only the next ring id (Corosync's convention), and when two partitions merge into one
//!   ring each side installs its own transitional configuration with that same ring id but
//!   different members, so the ring id alone does not identify it. For each configuration the
//!   oracle keeps the member list of its first installer and every installer.
//! * **Messages.** Every submitted message is recorded under its [`MsgId`] with a 64-bit FNV-1a
//!   digest, length, guarantee and submitting process. Its first delivery fixes the ring it was
//!   ordered on and its sequence number; every delivery records the process and whether it
//!   happened in the regular configuration of that ring or in the transitional one after it.
//! * **Agreed order per ring.** For each ring, the messages ordered on it, by anyone, sorted by
//!   `seq` (a `BTreeMap`). Several small messages are packed into one multicast and share a seq,
//!   so each seq holds a list in packet order; the order comes from the first process to deliver
//!   them and every other process must agree. Across rings the order is by ring seq, which C3
//!   and D2 force on every process. This is the witness total order of D5.
//! * **Cursors.** Per ring and process: the last message delivered (overall and in the regular
//!   configuration) and the transitional members. With them a new first delivery can be checked
//!   against processes that already went past it, so a skip is caught whichever side the
//!   oracle hears first.
//!
//! # What is checked when
//!
//! Online, at the event that breaks it:
//!
//! * C1, C2 (member lists per ring id; the representative is a member), C3 (per process, and a
//!   new incarnation above its predecessors), C4 (R, T, R alternation; T ⊆ both regulars; the
//!   `left`/`joined` lists), C6 (the transitional configuration between the same two rings has
//!   the same members everywhere).
//! * C5, the half decidable at once: a process that keeps q in the transitional configuration
//!   after ring c says q came from c with it, so q must have installed c.
//! * D1 (submitted, same digest, length and guarantee, once per process), D2 (delivered in the
//!   regular configuration of its ring or the transitional one right after, by a process that
//!   installed that ring, sent by a process that installed it, one ring per message).
//! * D3 for every process, including those that fail later: a process delivering its own
//!   message must have delivered all its earlier ones; and a message is sent in the ring it is
//!   ordered on (a submission not yet multicast when the ring changes is sent on the next one),
//!   so a process that installs its next regular configuration must have delivered every own
//!   message ordered on the ring it leaves, and when a message is first delivered its sender
//!   must not have moved on from that ring without it. A sender that crashes in the ring or in
//!   the transitional configuration after it is excused (it failed).
//! * D4 when a process leaves a configuration (its delivered set is final then): compared with
//!   the first process that left the same configuration the same way.
//! * D5: each process's deliveries on a ring increase in the agreed order; a process skips
//!   nothing before a message it delivers in the regular configuration, and in the transitional
//!   configuration skips only messages from senders outside it. Checked from both sides: at the
//!   skipping process's delivery, and when the skipped message's place becomes known. That
//!   place comes from the multicast itself when the harness reports it ([`Oracle::multicast`]:
//!   the simulator reports the first transmission of each regular multicast, with the messages
//!   it completes, before anyone can deliver it), else from its first delivery. With the
//!   reports a skip is caught even when nobody delivered the skipped message (every process
//!   lost it, or the only ones that got it crashed), and a delivery at a seq whose multicast
//!   does not carry the message is caught too. This is sound for what the oracle demands: a
//!   process past seq s in the regular configuration received every multicast up to s, and
//!   in the transitional configuration the members hold every message a member sent (each
//!   holds its own). What the oracle still cannot see is what each process *received*: a
//!   process that stops (goes to a transitional configuration) before a message is not
//!   blamed for it, which is D8's and D4's business. D3 and D6 use the reported places too:
//!   a sender moving on from the ring its message was multicast on must have delivered it,
//!   and a sender's earlier message multicast on a ring is never skipped by a process that
//!   delivers a later one there.
//! * D6: per submitting process, delivered message numbers increase, and a message ordered on
//!   the same ring as a later one of the same sender is never skipped (both sides again).
//!   Across senders: at each submission the oracle records the last message the submitter had
//!   delivered (a vector-clock-free frontier: everything before it in the agreed order was
//!   delivered too, or skipped by the rules of D5); the new message must be ordered after it
//!   (later in the same ring, or on a newer ring), and on their common ring every process that
//!   delivers the new message must have delivered it first, also in a transitional
//!   configuration where D5 alone would let it skip a departed sender's message. Checked before
//!   D5 at each delivery, so a causal inversion is reported as D6.
//! * D7: for a regular configuration it follows from D2 and C3 (everything delivered before it
//!   was ordered on an older ring, everything after on it or a newer one). For a transitional
//!   one it is checked when a process installs it: nothing it delivered before may have been
//!   delivered after it by another installer. The opposite order (delivered after it here, before
//!   it by an earlier installer) is caught as D4 at the second install, which always comes first.
//! * D8 in the form of EVS (Moser, Amir, Melliar-Smith and Agarwal, 1994), stronger than the
//!   reference's "a member that does not deliver it must be excluded from the deliverer's next
//!   transitional configuration": a safe message delivered in regular configuration r is
//!   delivered by every member of r, in r or in the transitional configuration after it, unless
//!   the member fails. A partitioned member is not excused: the safe bound says it holds the
//!   message, so it delivers it in its own transitional configuration. A safe message delivered
//!   in a transitional configuration is delivered by every process that installed that
//!   transitional configuration. "Fails" means the process crashes before it installs the next
//!   regular configuration; moving on without the message is the violation, whatever happens
//!   later. Checked when a member installs its next regular configuration (everything delivered
//!   safe in its old ring so far), when a safe message is delivered (members that already moved
//!   on), and for members that never installed r: in `finish` once such a member is on a ring
//!   it cannot come back from (seq not below r's), and at convergence for every member that
//!   did not fail.
//!
//! In [`Oracle::finish`] (any time, including a truncated run): the first violation again, a
//! C5 sweep, and the D8 sweep of members that never installed a ring some safe message was
//! delivered in. A run may stop while a ring is being installed (one member has installed it,
//! the next has not yet), so `finish` never blames a process for something it may still do.
//!
//! In [`Oracle::check_converged`] (after faults stopped and traffic drained): C5 and that D8
//! sweep in their strict forms, D9 (one regular configuration with exactly the live nodes, all
//! its messages delivered by all of them) and D3 (each live process delivered everything it
//! submitted, including what is not ordered anywhere yet).
//!
//! Every check on one event is a few hash lookups plus scans over the members of one ring; the
//! checks on a configuration change are linear in the messages of the configuration being left.
//! Nothing is quadratic in the length of the run.
//!
//! # Harness contract
//!
//! The oracle panics if the harness misuses it: an event from a process that was never
//! [`started`](Oracle::started) or that [`crashed`](Oracle::crashed), a process started twice, or
//! a restart with a non-increasing incarnation while an older one is alive. A process that leaves
//! the ring on request emits nothing more and is reported as crashed. A restarted process must be
//! given a ring-seq high-water mark, so it never re-creates a ring id that already existed (C3
//! checks that a new incarnation's rings are numbered above its predecessors').

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::ops::Bound;

use totem::{ConfigChange, ConfigKind, Delivery, Event, Guarantee, Instant, NodeId, RingId};

/// One incarnation of a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId {
    pub node: NodeId,
    pub incarnation: u32,
}

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}#{}", self.node, self.incarnation)
    }
}

/// Identifies an application message: its sender and the sender's message number.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId {
    pub sender: NodeId,
    pub msg_no: u64,
}

/// Written `m<sender>:<msg_no>` in violation details.
impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}:{}", self.sender, self.msg_no)
    }
}

/// The checklist items.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Property {
    C1SelfInclusion,
    C2UniqueIds,
    C3MonotoneIds,
    C4Alternation,
    C5AgreementOnInstalls,
    C6TransitionalConsistency,
    D1Integrity,
    D2SendingConfiguration,
    D3SelfDelivery,
    D4FailureAtomicity,
    D5TotalOrder,
    D6Causal,
    D7ConfigurationOrder,
    D8Safe,
    D9Liveness,
    /// While a fault is held (a steady window of the plan, after its settling time): every
    /// live processor is operational in a ring whose members are live and agree on it, and no
    /// two rings could form one (their union is not connected both ways). Checked by the
    /// simulator, which knows the network.
    S1SettledRings,
    /// In a steady window no processor installs a configuration.
    S2NoReconfiguration,
    /// In a steady window every processor delivers each of its own messages within a bound.
    S3OwnDelivery,
    /// Groups (`--groups`, checked by [`crate::groups_check`]): each process's view is the one
    /// its delivered stream defines; processes that deliver the same message in the same
    /// configuration, neither between a merge and the end of its membership syncs, hold the
    /// same view when they deliver it; and once the run converges every view holds exactly
    /// what the live handles joined and did not leave.
    G1ViewAgreement,
    /// A message sent to groups reaches exactly the open local handles that are in one of them
    /// in the view where it is delivered, once each and as sent, and nothing else reaches a
    /// handle.
    G2Routing,
    /// Every group change reported to a handle names the members the delivered stream puts
    /// in the group at that point (the same wherever it is reported there), concerns the
    /// handle, and its joined and left lists agree with its members.
    G3GroupChanges,
    /// From a regular configuration on, no view holds a handle of a node outside it.
    G4DepartedHandles,
}

impl Property {
    /// Every property, in checklist order.
    pub const ALL: [Property; 22] = [
        Property::C1SelfInclusion,
        Property::C2UniqueIds,
        Property::C3MonotoneIds,
        Property::C4Alternation,
        Property::C5AgreementOnInstalls,
        Property::C6TransitionalConsistency,
        Property::D1Integrity,
        Property::D2SendingConfiguration,
        Property::D3SelfDelivery,
        Property::D4FailureAtomicity,
        Property::D5TotalOrder,
        Property::D6Causal,
        Property::D7ConfigurationOrder,
        Property::D8Safe,
        Property::D9Liveness,
        Property::S1SettledRings,
        Property::S2NoReconfiguration,
        Property::S3OwnDelivery,
        Property::G1ViewAgreement,
        Property::G2Routing,
        Property::G3GroupChanges,
        Property::G4DepartedHandles,
    ];

    /// The checklist code: `C1` .. `C6`, `D1` .. `D9`, `S1` .. `S3`, `G1` .. `G4`.
    pub fn code(self) -> &'static str {
        match self {
            Property::C1SelfInclusion => "C1",
            Property::C2UniqueIds => "C2",
            Property::C3MonotoneIds => "C3",
            Property::C4Alternation => "C4",
            Property::C5AgreementOnInstalls => "C5",
            Property::C6TransitionalConsistency => "C6",
            Property::D1Integrity => "D1",
            Property::D2SendingConfiguration => "D2",
            Property::D3SelfDelivery => "D3",
            Property::D4FailureAtomicity => "D4",
            Property::D5TotalOrder => "D5",
            Property::D6Causal => "D6",
            Property::D7ConfigurationOrder => "D7",
            Property::D8Safe => "D8",
            Property::D9Liveness => "D9",
            Property::S1SettledRings => "S1",
            Property::S2NoReconfiguration => "S2",
            Property::S3OwnDelivery => "S3",
            Property::G1ViewAgreement => "G1",
            Property::G2Routing => "G2",
            Property::G3GroupChanges => "G3",
            Property::G4DepartedHandles => "G4",
        }
    }

    /// The property with this checklist code.
    pub fn from_code(code: &str) -> Option<Property> {
        Property::ALL.into_iter().find(|p| p.code() == code)
    }
}

/// A broken property, with enough detail to start debugging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub property: Property,
    pub at: Instant,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} violated at {}: {}",
            self.property, self.at, self.detail
        )
    }
}

/// 64-bit FNV-1a: the oracle only needs to notice accidental corruption, not resist an attacker,
/// and keeping a digest instead of the payload keeps memory flat in long runs.
fn digest(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Where a process delivered a message, relative to the ring the message was ordered on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Place {
    /// In the regular configuration of that ring.
    Regular,
    /// In the transitional configuration that follows it, on the way to ring `next`.
    Transitional { next: RingId },
}

/// The configuration a process is in.
#[derive(Clone, Debug)]
enum Current {
    Regular(RingId),
    Transitional {
        from: RingId,
        to: RingId,
        members: Vec<NodeId>,
    },
}

impl fmt::Display for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Current::Regular(r) => write!(f, "regular {r}"),
            Current::Transitional { from, to, members } => {
                write!(f, "transitional {from}->{to} {members:?}")
            }
        }
    }
}

#[derive(Debug)]
struct Process {
    started_at: Instant,
    crashed_at: Option<Instant>,
    /// Every regular ring this process installs must have a higher seq (C3): its own previous
    /// regular ring, or at start the highest ring of any earlier incarnation of the node.
    ring_seq_floor: Option<u64>,
    current: Option<Current>,
    /// Last installed regular ring; still set in the transitional configuration after it, so a
    /// process "has moved on" from ring r exactly when this is no longer r.
    last_regular: Option<RingId>,
    /// Messages delivered in the current configuration, in delivery order (D4, D7).
    in_config: Vec<MsgId>,
    /// The transitional configuration installed after each regular ring: from → to (C5).
    trans_after: HashMap<RingId, RingId>,
    /// Message numbers this process submitted and has not delivered yet, in submission order (D3).
    own_pending: VecDeque<u64>,
    last_submitted: Option<u64>,
    /// Highest msg_no delivered from each submitting process (D6).
    max_from: HashMap<ProcId, u64>,
    /// The last message this process delivered: what its next submission causally follows (D6).
    last_delivered: Option<MsgId>,
}

impl Process {
    fn alive_at(&self, t: Instant) -> bool {
        self.started_at <= t && !matches!(self.crashed_at, Some(c) if c < t)
    }
}

/// A message's position in the agreed order of its ring: the multicast's seq and the message.
#[derive(Copy, Clone, Debug)]
struct Key {
    seq: u64,
    id: MsgId,
}

/// How far one process got in one ring's agreed order.
#[derive(Debug)]
struct Cursor {
    proc: ProcId,
    /// Last message delivered on this ring, in either configuration.
    last: Option<Key>,
    /// Last message delivered in the regular configuration: everything before it was delivered.
    last_regular: Option<Key>,
    /// Members of the transitional configuration this process delivered the rest in.
    trans_members: Option<Vec<NodeId>>,
}

/// One submitting process's messages ordered on one ring (D6).
#[derive(Debug, Default)]
struct SenderOnRing {
    msg_nos: BTreeSet<u64>,
    /// Highest msg_no of this sender delivered on this ring, per delivering process.
    max_by: Vec<(ProcId, u64)>,
}

/// A regular configuration and the agreed order of the messages ordered on its ring.
#[derive(Debug)]
struct RingRecord {
    members: Vec<NodeId>,
    first_installer: ProcId,
    first_install: Instant,
    installers: Vec<ProcId>,
    /// seq → messages completed by that multicast, in packet order.
    groups: BTreeMap<u64, Vec<MsgId>>,
    /// Seqs whose group came from the multicast itself ([`Oracle::multicast`]): complete, so
    /// a message delivered at such a seq must be in it.
    sealed: HashSet<u64>,
    cursors: Vec<Cursor>,
    senders: HashMap<ProcId, SenderOnRing>,
    /// Safe messages ordered on this ring, in first-delivery order (D8).
    safe: Vec<MsgId>,
    /// The first safe message delivered in this regular configuration and its deliverer: from
    /// then on every member must install the ring unless it fails (D8).
    safe_in_regular: Option<(MsgId, ProcId)>,
}

impl RingRecord {
    fn installed_by_node(&self, node: NodeId) -> bool {
        self.installers.iter().any(|i| i.node == node)
    }

    fn position(&self, key: Key) -> usize {
        self.groups
            .get(&key.seq)
            .and_then(|g| g.iter().position(|&m| m == key.id))
            .expect("oracle invariant: every delivered message is in its ring's agreed order")
    }
}

/// A transitional configuration, keyed by (previous regular ring, next ring).
#[derive(Debug)]
struct TransRecord {
    members: Vec<NodeId>,
    first_installer: ProcId,
    installers: Vec<ProcId>,
    /// What the first installer delivered in the regular configuration before it (sorted, D4).
    regular_set: Vec<MsgId>,
    /// What the first process to leave it delivered in it (sorted, D4).
    trans_set: Option<(ProcId, Vec<MsgId>)>,
}

#[derive(Debug)]
struct MsgRecord {
    submitter: ProcId,
    digest: u64,
    len: usize,
    guarantee: Guarantee,
    /// Ring and seq fixed by the first delivery.
    ordered: Option<(RingId, u64)>,
    /// The last message the submitter had delivered when it submitted this one: this message
    /// causally follows it (and, through it, everything before it in the agreed order) (D6).
    after: Option<MsgId>,
    deliveries: Vec<(ProcId, Place)>,
}

impl MsgRecord {
    fn delivered_by(&self, p: ProcId) -> bool {
        self.deliveries.iter().any(|(q, _)| *q == p)
    }

    /// Who fixed this message's place, for violation details.
    fn orderer(&self) -> String {
        match self.deliveries.first() {
            Some((q, _)) => q.to_string(),
            None => format!("the multicast of {}", self.submitter),
        }
    }
}

/// Checks every process's events against one canonical history.
#[derive(Debug, Default)]
pub struct Oracle {
    procs: HashMap<ProcId, Process>,
    /// Incarnations of each node, in start order.
    node_procs: HashMap<NodeId, Vec<ProcId>>,
    /// Highest regular ring seq any incarnation of the node installed (C3 across restarts).
    node_max_seq: HashMap<NodeId, u64>,
    msgs: HashMap<MsgId, MsgRecord>,
    rings: HashMap<RingId, RingRecord>,
    transitionals: HashMap<(RingId, RingId), TransRecord>,
    /// A violation found outside `observe` (in `submitted`), reported by the next call that can.
    pending: Option<Violation>,
    first: Option<Violation>,
}

fn violation(property: Property, at: Instant, detail: String) -> Violation {
    Violation {
        property,
        at,
        detail,
    }
}

fn strictly_ascending(v: &[NodeId]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

/// `a \ b`, for ascending lists.
fn minus(a: &[NodeId], b: &[NodeId]) -> Vec<NodeId> {
    a.iter().copied().filter(|x| !b.contains(x)).collect()
}

fn sorted(v: &[NodeId]) -> Vec<NodeId> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

/// Some element in one sorted set and not the other.
fn set_difference(a: &[MsgId], b: &[MsgId]) -> Option<(MsgId, bool)> {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => return Some((*x, true)),
            (Some(_), Some(y)) => return Some((*y, false)),
            (Some(x), None) => return Some((*x, true)),
            (None, Some(y)) => return Some((*y, false)),
            (None, None) => break,
        }
    }
    None
}

/// The first message strictly between `lo` and `hi` in a ring's agreed order (positions are
/// (seq, index in the multicast)) for which `pred` holds.
fn first_between(
    groups: &BTreeMap<u64, Vec<MsgId>>,
    lo: Option<(u64, usize)>,
    hi: (u64, usize),
    mut pred: impl FnMut(MsgId) -> bool,
) -> Option<(u64, MsgId)> {
    let start = match lo {
        Some((s, _)) if s > hi.0 => return None,
        Some((s, _)) => Bound::Included(s),
        None => Bound::Unbounded,
    };
    for (&seq, group) in groups.range((start, Bound::Included(hi.0))) {
        let from = match lo {
            Some((s, p)) if s == seq => p + 1,
            _ => 0,
        };
        let to = if seq == hi.0 { hi.1 } else { group.len() };
        for &m in group.get(from..to).unwrap_or(&[]) {
            if pred(m) {
                return Some((seq, m));
            }
        }
    }
    None
}

impl Oracle {
    pub fn new() -> Self {
        Oracle::default()
    }

    /// The first violation found so far, by any call.
    pub fn first_violation(&self) -> Option<&Violation> {
        self.first.as_ref().or(self.pending.as_ref())
    }

    /// The node's persisted ring sequence number is lost (its "disk" was wiped): its next
    /// incarnation starts from scratch, so it is not held to numbering its rings above those
    /// of its earlier incarnations (C3 across restarts needs the persisted value). It must
    /// still never install a ring id an earlier configuration had (C2, "ring id reused").
    pub fn lost_disk(&mut self, node: NodeId) {
        self.node_max_seq.remove(&node);
    }

    /// A process started (first incarnation or restart).
    ///
    /// # Panics
    /// If `p` was started before, or an incarnation of the same node that is not older than `p`
    /// exists, or an older one has not crashed.
    pub fn started(&mut self, p: ProcId, now: Instant) {
        assert!(!self.procs.contains_key(&p), "oracle: {p} started twice");
        let incarnations = self.node_procs.entry(p.node).or_default();
        for q in incarnations.iter() {
            assert!(
                q.incarnation < p.incarnation,
                "oracle: {p} started after {q}: incarnations must increase"
            );
            assert!(
                self.procs[q].crashed_at.is_some(),
                "oracle: {p} started while {q} is alive: report the crash first"
            );
        }
        incarnations.push(p);
        self.procs.insert(
            p,
            Process {
                started_at: now,
                crashed_at: None,
                ring_seq_floor: self.node_max_seq.get(&p.node).copied(),
                current: None,
                last_regular: None,
                in_config: Vec::new(),
                trans_after: HashMap::new(),
                own_pending: VecDeque::new(),
                last_submitted: None,
                max_from: HashMap::new(),
                last_delivered: None,
            },
        );
    }

    /// `p` submitted a message; `data` is its payload (the oracle keeps a digest).
    ///
    /// A reused message id, an id naming another node, or a message number that does not
    /// increase is reported by the next `observe`, `finish` or `check_converged`.
    ///
    /// # Panics
    /// If `p` is unknown or crashed.
    pub fn submitted(
        &mut self,
        p: ProcId,
        now: Instant,
        id: MsgId,
        guarantee: Guarantee,
        data: &[u8],
    ) {
        let me = self.live_proc(p);
        let problem = if id.sender != p.node {
            Some((
                Property::D1Integrity,
                format!("{p} submitted {id}, which names another node as sender"),
            ))
        } else if let Some(rec) = self.msgs.get(&id) {
            Some((
                Property::D1Integrity,
                format!(
                    "{p} submitted {id}, an id already used by {}",
                    rec.submitter
                ),
            ))
        } else if me.last_submitted.is_some_and(|l| l >= id.msg_no) {
            // D6 rests on message numbers following submission order.
            Some((
                Property::D6Causal,
                format!(
                    "{p} submitted {id} after message number {}: numbers must increase",
                    me.last_submitted.unwrap_or_default()
                ),
            ))
        } else {
            None
        };
        if let Some((property, detail)) = problem {
            if self.pending.is_none() && self.first.is_none() {
                self.pending = Some(violation(property, now, detail));
            }
            return;
        }
        let me = self.procs.get_mut(&p).expect("checked above");
        me.last_submitted = Some(id.msg_no);
        me.own_pending.push_back(id.msg_no);
        let after = me.last_delivered;
        self.msgs.insert(
            id,
            MsgRecord {
                submitter: p,
                digest: digest(data),
                len: data.len(),
                guarantee,
                ordered: None,
                after,
                deliveries: Vec::new(),
            },
        );
    }

    /// The first multicast of `ring`'s sequence number `seq`, sent by `sender`, completes the
    /// messages numbered `completed` (in packet order; empty for a packet that only starts or
    /// continues a fragmented message). The harness reports it when the sender transmits it,
    /// before anyone can deliver it; retransmissions and encapsulated recovery copies are not
    /// reported. This fixes the messages' place in the agreed order before any delivery, so D5
    /// sees a message skipped even if nobody delivered it, and D3 knows the ring a message was
    /// sent in even if nobody delivered it. A violation is reported by the next `observe`,
    /// `finish` or `check_converged`.
    pub fn multicast(
        &mut self,
        now: Instant,
        ring: RingId,
        seq: u64,
        sender: NodeId,
        completed: &[u64],
    ) {
        if completed.is_empty() || self.first.is_some() || self.pending.is_some() {
            return;
        }
        let Some(rec) = self.rings.get(&ring) else {
            return; // nobody installed it yet: D2 judges its deliveries
        };
        if rec.groups.contains_key(&seq) {
            return; // already known (from a delivery, or an earlier report)
        }
        let ids: Vec<MsgId> = completed
            .iter()
            .map(|&msg_no| MsgId { sender, msg_no })
            .filter(|id| self.msgs.get(id).is_some_and(|m| m.ordered.is_none()))
            .collect();
        if ids.len() != completed.len() {
            // An unknown message (D1 at its delivery) or one already ordered elsewhere (D2 or
            // D5 at its delivery): leave the order to the deliveries.
            return;
        }
        // Processes that already went past this seq skipped these messages (D5), or delivered
        // a later message of the same sender on this ring (D6).
        for c in &rec.cursors {
            let past = |k: Option<Key>| k.filter(|k| k.seq > seq);
            let skipped = past(c.last_regular)
                .map(|k| (k, "regular".to_string()))
                .or_else(|| {
                    c.trans_members
                        .as_ref()
                        .filter(|t| t.contains(&sender))
                        .and_then(|t| past(c.last).map(|k| (k, format!("transitional {t:?}"))))
                });
            if let Some((k, how)) = skipped {
                self.pending = Some(violation(
                    Property::D5TotalOrder,
                    now,
                    format!(
                        "n{sender} multicast {} at ring {ring} seq {seq}, which {} skipped: it delivered the later {} (seq {}) in {how}",
                        ids[0], c.proc, k.id, k.seq
                    ),
                ));
                return;
            }
        }
        let submitter = self.msgs[&ids[0]].submitter;
        if let Some(sor) = rec.senders.get(&submitter) {
            let first = completed[0];
            if let Some((q, later)) = sor.max_by.iter().find(|(_, n)| *n > first) {
                self.pending = Some(violation(
                    Property::D6Causal,
                    now,
                    format!(
                        "n{sender} multicast {} at ring {ring} seq {seq}, but {q} already delivered its later m{sender}:{later} on that ring",
                        ids[0]
                    ),
                ));
                return;
            }
        }
        let rec = self.rings.get_mut(&ring).expect("checked");
        rec.sealed.insert(seq);
        let sor = rec.senders.entry(submitter).or_default();
        sor.msg_nos.extend(completed.iter().copied());
        for id in &ids {
            let m = self.msgs.get_mut(id).expect("checked");
            m.ordered = Some((ring, seq));
            if m.guarantee == Guarantee::Safe {
                rec.safe.push(*id);
            }
        }
        rec.groups.insert(seq, ids);
    }

    /// `p` emitted `ev`. Returns the first property this step breaks.
    ///
    /// The event is recorded only if it breaks nothing.
    ///
    /// # Panics
    /// If `p` is unknown or crashed.
    pub fn observe(&mut self, p: ProcId, now: Instant, ev: &Event) -> Result<(), Violation> {
        self.live_proc(p);
        if let Some(v) = self.pending.take() {
            self.first.get_or_insert(v.clone());
            return Err(v);
        }
        let result = match ev {
            Event::ConfigChange(cc) => self.on_config(p, now, cc),
            Event::Deliver(d) => self.on_deliver(p, now, d),
        };
        if let Err(v) = &result {
            self.first.get_or_insert(v.clone());
        }
        result
    }

    /// `p` crashed: it emits nothing more.
    ///
    /// # Panics
    /// If `p` is unknown or already crashed.
    pub fn crashed(&mut self, p: ProcId, now: Instant) {
        self.live_proc(p);
        self.procs.get_mut(&p).expect("checked").crashed_at = Some(now);
    }

    /// End-of-run checks of the properties that need whole histories.
    ///
    /// Safe to call on a run cut at any moment: it reports the first violation seen by
    /// [`observe`](Self::observe) (so a caller may ignore `observe`'s results and ask here), then
    /// sweeps C5 and D8 (members that never installed a ring) for every regular configuration
    /// and member. Everything else that needs the
    /// whole history (D3, D4, D8, C6) was decided online, at the step that made it decidable.
    /// What a process may still do when the run is cut (a member about to install a ring that
    /// another member already installed) is judged only by [`check_converged`](Self::check_converged).
    pub fn finish(&mut self, now: Instant) -> Result<(), Violation> {
        if let Some(v) = self.pending.take() {
            self.first.get_or_insert(v.clone());
            return Err(v);
        }
        if let Some(v) = &self.first {
            return Err(v.clone());
        }
        let result = self
            .c5_sweep(now, false)
            .and_then(|()| self.d8_sweep(now, false));
        if let Err(v) = &result {
            self.first.get_or_insert(v.clone());
        }
        result
    }

    /// Liveness (D9), once faults have stopped and traffic has drained: every process in `live`
    /// has installed the same last regular configuration, whose members are exactly the nodes of
    /// `live`; every message ordered in it was delivered by all of them; and every message a live
    /// process submitted was delivered by that process.
    ///
    /// Also checks C5 and the D8 sweep in their strict forms. C5: for every regular
    /// configuration c and member q that did not fail, q installed c or every installer of c
    /// that did not fail went on to a transitional configuration without q. D8: every member
    /// of a ring some safe message was delivered in installed it or failed. Returns the ring everyone is on, or the first
    /// violation already found.
    pub fn check_converged(&self, now: Instant, live: &[ProcId]) -> Result<RingId, Violation> {
        if let Some(v) = self.first.as_ref().or(self.pending.as_ref()) {
            return Err(v.clone());
        }
        let d9 = |detail: String| violation(Property::D9Liveness, now, detail);
        if live.is_empty() {
            return Err(d9("no live process to converge".into()));
        }
        let mut nodes = Vec::with_capacity(live.len());
        for p in live {
            match self.procs.get(p) {
                None => return Err(d9(format!("{p} is listed live but never started"))),
                Some(me) if me.crashed_at.is_some() => {
                    return Err(d9(format!("{p} is listed live but crashed")))
                }
                Some(_) => nodes.push(p.node),
            }
        }
        nodes.sort_unstable();
        if let Some(w) = nodes.windows(2).find(|w| w[0] == w[1]) {
            return Err(d9(format!("two live processes of node {}", w[0])));
        }

        self.c5_sweep(now, true)?;
        self.d8_sweep(now, true)?;

        let mut ring: Option<RingId> = None;
        for p in live {
            let me = &self.procs[p];
            match &me.current {
                Some(Current::Regular(r)) => match ring {
                    None => ring = Some(*r),
                    Some(first) if first != *r => {
                        return Err(d9(format!(
                            "{} is on ring {first} but {p} is on ring {r}",
                            live[0]
                        )))
                    }
                    Some(_) => {}
                },
                Some(c) => return Err(d9(format!("{p} has not settled: it is in {c}"))),
                None => return Err(d9(format!("{p} never installed a configuration"))),
            }
        }
        let ring_id = ring.expect("live is not empty");
        let rec = &self.rings[&ring_id];
        if rec.members != nodes {
            return Err(d9(format!(
                "ring {ring_id} has members {:?} but the live nodes are {nodes:?}",
                rec.members
            )));
        }

        for p in live {
            if let Some(&no) = self.procs[p].own_pending.front() {
                let id = MsgId {
                    sender: p.node,
                    msg_no: no,
                };
                return Err(violation(
                    Property::D3SelfDelivery,
                    now,
                    format!("{p} submitted {id} and never delivered it"),
                ));
            }
        }

        for (seq, group) in &rec.groups {
            for id in group {
                let m = &self.msgs[id];
                if let Some(p) = live.iter().find(|p| !m.delivered_by(**p)) {
                    return Err(d9(format!(
                        "{id} (ring {ring_id} seq {seq}) was ordered by {} but never delivered by {p}",
                        m.orderer()
                    )));
                }
            }
        }
        Ok(ring_id)
    }

    fn live_proc(&self, p: ProcId) -> &Process {
        let me = self
            .procs
            .get(&p)
            .unwrap_or_else(|| panic!("oracle: {p} was never started"));
        assert!(me.crashed_at.is_none(), "oracle: {p} acts after its crash");
        me
    }

    // ---------------------------------------------------------------- configurations

    fn on_config(&mut self, p: ProcId, now: Instant, cc: &ConfigChange) -> Result<(), Violation> {
        let err = |property, detail| Err(violation(property, now, detail));
        let kind = match cc.kind {
            ConfigKind::Regular => "regular",
            ConfigKind::Transitional => "transitional",
        };
        if !strictly_ascending(&cc.members) {
            // Member lists are compared between processes as they come (C2, C6).
            return err(
                Property::C2UniqueIds,
                format!(
                    "{p} installed {kind} {} with members {:?}, not a strictly ascending set",
                    cc.ring_id, cc.members
                ),
            );
        }
        if !cc.members.contains(&p.node) {
            return err(
                Property::C1SelfInclusion,
                format!(
                    "{p} installed {kind} {} with members {:?}, which lack itself",
                    cc.ring_id, cc.members
                ),
            );
        }
        match cc.kind {
            ConfigKind::Transitional => self.on_transitional(p, now, cc),
            ConfigKind::Regular => self.on_regular(p, now, cc),
        }
    }

    fn on_transitional(
        &mut self,
        p: ProcId,
        now: Instant,
        cc: &ConfigChange,
    ) -> Result<(), Violation> {
        let err = |property, detail| Err(violation(property, now, detail));
        let to = cc.ring_id;
        let me = &self.procs[&p];
        let from = match &me.current {
            Some(Current::Regular(r)) => *r,
            Some(c) => {
                return err(
                    Property::C4Alternation,
                    format!("{p} installed transitional ->{to} while in {c}: expected a regular configuration"),
                )
            }
            None => {
                return err(
                    Property::C4Alternation,
                    format!("{p} installed transitional ->{to} as its first configuration"),
                )
            }
        };
        if to.seq <= from.seq {
            return err(
                Property::C3MonotoneIds,
                format!(
                    "{p} installed transitional {from}->{to}: the next ring's seq does not exceed {}",
                    from.seq
                ),
            );
        }
        let ring = &self.rings[&from];
        if let Some(q) = cc.members.iter().find(|q| !ring.members.contains(q)) {
            return err(
                Property::C4Alternation,
                format!(
                    "{p} installed transitional {from}->{to} {:?} with n{q}, not a member of {from} {:?}",
                    cc.members, ring.members
                ),
            );
        }
        let left = minus(&ring.members, &cc.members);
        if sorted(&cc.left) != left || !cc.joined.is_empty() {
            return err(
                Property::C4Alternation,
                format!(
                    "{p} installed transitional {from}->{to} {:?} with left {:?} joined {:?}; expected left {left:?} joined []",
                    cc.members, cc.left, cc.joined
                ),
            );
        }
        // A member of the transitional configuration came from `from` with us, so it installed
        // it; otherwise this process should have excluded it (C5).
        if let Some(q) = cc.members.iter().find(|q| !ring.installed_by_node(**q)) {
            return err(
                Property::C5AgreementOnInstalls,
                format!(
                    "{p} installed transitional {from}->{to} {:?} keeping n{q}, which never installed {from}",
                    cc.members
                ),
            );
        }
        let trans = self.transitionals.get(&(from, to));
        if let Some(t) = trans {
            if t.members != cc.members {
                return err(
                    Property::C6TransitionalConsistency,
                    format!(
                        "{p} and {} both went from {from} to {to} through different transitional configurations: {:?} and {:?}",
                        t.first_installer, cc.members, t.members
                    ),
                );
            }
        }
        // D7: what this process delivered before the transitional configuration must not have
        // been delivered after it by a process that installed it too.
        for id in &me.in_config {
            let m = &self.msgs[id];
            let next = Place::Transitional { next: to };
            if let Some((q, _)) = m.deliveries.iter().find(|(q, pl)| *pl == next && *q != p) {
                return err(
                    Property::D7ConfigurationOrder,
                    format!(
                        "{id} was delivered by {p} before transitional {from}->{to} and by {q} after it"
                    ),
                );
            }
        }
        let mut set = me.in_config.clone();
        set.sort_unstable();
        if let Some(t) = trans {
            if let Some((id, mine)) = set_difference(&set, &t.regular_set) {
                let (has, lacks) = if mine {
                    (p, t.first_installer)
                } else {
                    (t.first_installer, p)
                };
                return err(
                    Property::D4FailureAtomicity,
                    format!(
                        "{p} and {} both installed regular {from} then transitional {from}->{to}, but {has} delivered {id} in {from} and {lacks} did not",
                        t.first_installer
                    ),
                );
            }
        }

        self.transitionals
            .entry((from, to))
            .or_insert_with(|| TransRecord {
                members: cc.members.clone(),
                first_installer: p,
                installers: Vec::new(),
                regular_set: set,
                trans_set: None,
            })
            .installers
            .push(p);
        let me = self.procs.get_mut(&p).expect("known");
        me.current = Some(Current::Transitional {
            from,
            to,
            members: cc.members.clone(),
        });
        me.in_config.clear();
        me.trans_after.insert(from, to);
        Ok(())
    }

    fn on_regular(&mut self, p: ProcId, now: Instant, cc: &ConfigChange) -> Result<(), Violation> {
        let err = |property, detail| Err(violation(property, now, detail));
        let c = cc.ring_id;
        let me = &self.procs[&p];
        let mut via: Option<(RingId, RingId)> = None;
        match &me.current {
            None => {}
            Some(Current::Regular(r)) => {
                return err(
                    Property::C4Alternation,
                    format!("{p} installed regular {c} right after regular {r}, without a transitional configuration"),
                )
            }
            Some(Current::Transitional { from, to, members }) => {
                if c != *to {
                    return err(
                        Property::C4Alternation,
                        format!("{p} installed regular {c} after transitional {from}->{to}, which announced ring {to}"),
                    );
                }
                if let Some(q) = members.iter().find(|q| !cc.members.contains(q)) {
                    return err(
                        Property::C4Alternation,
                        format!(
                            "{p} installed regular {c} {:?} without n{q}, a member of the transitional configuration {members:?} before it",
                            cc.members
                        ),
                    );
                }
                let joined = minus(&cc.members, members);
                if sorted(&cc.joined) != joined {
                    return err(
                        Property::C4Alternation,
                        format!(
                            "{p} installed regular {c} {:?} with joined {:?}; after transitional {members:?} expected {joined:?}",
                            cc.members, cc.joined
                        ),
                    );
                }
                via = Some((*from, *to));
            }
        }
        if !cc.left.is_empty() {
            return err(
                Property::C4Alternation,
                format!(
                    "{p} installed regular {c} with left {:?}: only transitional configurations report departures",
                    cc.left
                ),
            );
        }
        if let Some(floor) = me.ring_seq_floor {
            if c.seq <= floor {
                let why = if me.last_regular.is_some() {
                    "its previous regular ring"
                } else {
                    "the rings of an earlier incarnation of the node"
                };
                return err(
                    Property::C3MonotoneIds,
                    format!(
                        "{p} installed regular {c}, whose seq does not exceed {floor} of {why}"
                    ),
                );
            }
        }
        if !cc.members.contains(&c.rep) {
            return err(
                Property::C2UniqueIds,
                format!(
                    "{p} installed regular {c} {:?}: its representative n{} is not a member",
                    cc.members, c.rep
                ),
            );
        }
        if let Some(ring) = self.rings.get(&c) {
            if ring.members != cc.members {
                return err(
                    Property::C2UniqueIds,
                    format!(
                        "{p} installed regular {c} with members {:?} but {} installed it with {:?}",
                        cc.members, ring.first_installer, ring.members
                    ),
                );
            }
            // One configuration has one process per member node: an installer that is another
            // incarnation of p's node was in an earlier configuration with this id.
            if let Some(q) = ring
                .installers
                .iter()
                .find(|q| q.node == p.node && **q != p)
            {
                return err(
                    Property::C2UniqueIds,
                    format!(
                        "ring id reused: {p} installed regular {c} {:?}, which {q}, an earlier incarnation of n{}, installed at {}: two configurations share one ring id",
                        cc.members, p.node, ring.first_install
                    ),
                );
            }
        }
        let mut set = Vec::new();
        if let Some((from, to)) = via {
            set = me.in_config.clone();
            set.sort_unstable();
            let t = &self.transitionals[&(from, to)];
            if let Some((q, other)) = &t.trans_set {
                if let Some((id, mine)) = set_difference(&set, other) {
                    let (has, lacks) = if mine { (p, *q) } else { (*q, p) };
                    return err(
                        Property::D4FailureAtomicity,
                        format!(
                            "{p} and {q} both installed transitional {from}->{to} then regular {to}, but {has} delivered {id} in the transitional configuration and {lacks} did not"
                        ),
                    );
                }
            }
            // This closes p's delivery window for ring `from` (D8): p owes every safe message
            // delivered in the regular configuration `from` (p is a member of it), and every
            // one delivered in the transitional configuration p just went through.
            for id in &self.rings[&from].safe {
                let m = &self.msgs[id];
                let owed = m.deliveries.iter().find(|(_, pl)| {
                    *pl == Place::Regular || *pl == Place::Transitional { next: c }
                });
                if let Some((by, place)) = owed.filter(|_| !m.delivered_by(p)) {
                    return err(
                        Property::D8Safe,
                        format!(
                            "{id} was delivered safe by {by} in {} and {p}, a member of it, installed regular {c} without delivering it",
                            describe_place(from, *place)
                        ),
                    );
                }
            }
        }

        if let Some((from, _)) = via {
            // D3: every own message ordered on the ring p leaves was delivered by p, in it or
            // in the transitional configuration after it.
            for &no in &me.own_pending {
                let id = MsgId {
                    sender: p.node,
                    msg_no: no,
                };
                if matches!(self.msgs.get(&id), Some(m) if m.ordered.is_some_and(|(r, _)| r == from))
                {
                    return err(
                        Property::D3SelfDelivery,
                        format!(
                            "{p} sent {id}, ordered on ring {from}, and installed regular {c} without delivering it"
                        ),
                    );
                }
            }
        }

        self.rings
            .entry(c)
            .or_insert_with(|| RingRecord {
                members: cc.members.clone(),
                first_installer: p,
                first_install: now,
                installers: Vec::new(),
                groups: BTreeMap::new(),
                sealed: HashSet::new(),
                cursors: Vec::new(),
                senders: HashMap::new(),
                safe: Vec::new(),
                safe_in_regular: None,
            })
            .installers
            .push(p);
        if let Some(key) = via {
            let t = self.transitionals.get_mut(&key).expect("installed");
            t.trans_set.get_or_insert((p, set));
        }
        let high = self.node_max_seq.entry(p.node).or_insert(0);
        *high = (*high).max(c.seq);
        let me = self.procs.get_mut(&p).expect("known");
        me.current = Some(Current::Regular(c));
        me.last_regular = Some(c);
        me.ring_seq_floor = Some(c.seq);
        me.in_config.clear();
        Ok(())
    }

    // ---------------------------------------------------------------- deliveries

    fn on_deliver(&mut self, p: ProcId, now: Instant, d: &Delivery) -> Result<(), Violation> {
        let err = |property, detail| Err(violation(property, now, detail));
        let id = MsgId {
            sender: d.sender,
            msg_no: d.msg_no,
        };
        let r = d.ring_id;
        let me = &self.procs[&p];

        // D1: only submitted messages, intact, once.
        let Some(m) = self.msgs.get(&id) else {
            return err(
                Property::D1Integrity,
                format!(
                    "{p} delivered {id} (ring {r} seq {}), which was never submitted",
                    d.seq
                ),
            );
        };
        if d.data.len() != m.len || digest(&d.data) != m.digest {
            return err(
                Property::D1Integrity,
                format!(
                    "{p} delivered {id} with a {}-byte payload that differs from the {}-byte one {} submitted",
                    d.data.len(),
                    m.len,
                    m.submitter
                ),
            );
        }
        if d.guarantee != m.guarantee {
            return err(
                Property::D1Integrity,
                format!(
                    "{p} delivered {id} as {:?} but it was submitted as {:?}",
                    d.guarantee, m.guarantee
                ),
            );
        }
        if m.delivered_by(p) {
            return err(Property::D1Integrity, format!("{p} delivered {id} twice"));
        }

        // D2: in the regular configuration of its ring or the transitional one right after.
        let place = match &me.current {
            Some(Current::Regular(c)) if *c == r => Place::Regular,
            Some(Current::Transitional { from, to, .. }) if *from == r => {
                Place::Transitional { next: *to }
            }
            Some(c) => {
                return err(
                    Property::D2SendingConfiguration,
                    format!("{p} delivered {id}, ordered on ring {r}, while in {c}"),
                )
            }
            None => {
                return err(
                    Property::D2SendingConfiguration,
                    format!("{p} delivered {id} before installing any configuration"),
                )
            }
        };
        if let Some((r0, _)) = m.ordered {
            if r0 != r {
                return err(
                    Property::D2SendingConfiguration,
                    format!(
                        "{p} delivered {id} as ordered on ring {r}, but {} put it on ring {r0}",
                        m.orderer()
                    ),
                );
            }
        }
        let ring = &self.rings[&r];
        if !ring.installers.contains(&m.submitter) {
            return err(
                Property::D2SendingConfiguration,
                format!(
                    "{p} delivered {id} as ordered on ring {r}, but its sender {} never installed {r}",
                    m.submitter
                ),
            );
        }

        // D3: a process's own messages come back in the order it submitted them.
        if m.submitter == p {
            if let Some(&first) = me.own_pending.front() {
                if first < d.msg_no {
                    return err(
                        Property::D3SelfDelivery,
                        format!(
                            "{p} delivered its own {id} but never its earlier m{}:{first}",
                            p.node
                        ),
                    );
                }
            }
        }

        // D5: one agreed order per ring, no gaps in the regular configuration, and in the
        // transitional one gaps only for senders outside it.
        if let Some((_, seq0)) = m.ordered {
            if seq0 != d.seq {
                return err(
                    Property::D5TotalOrder,
                    format!(
                        "{p} delivered {id} at ring {r} seq {}, but {} put it at seq {seq0}",
                        d.seq,
                        m.orderer()
                    ),
                );
            }
        }
        let is_new = m.ordered.is_none();
        let cursor = ring.cursors.iter().find(|c| c.proc == p);
        let last = cursor.and_then(|c| c.last).map(|k| (k, ring.position(k)));
        if is_new && ring.sealed.contains(&d.seq) {
            return err(
                Property::D5TotalOrder,
                format!(
                    "{p} delivered {id} at ring {r} seq {}, but the multicast at that seq carries {:?}",
                    d.seq, ring.groups[&d.seq]
                ),
            );
        }
        let pos = if is_new {
            // Unknown to the order so far: it goes right after this process's previous message
            // if that was in the same multicast, else at the head of its multicast.
            match last {
                Some((k, i)) if k.seq == d.seq => i + 1,
                _ => 0,
            }
        } else {
            ring.position(Key { seq: d.seq, id })
        };
        // D6 across senders: the submitter had delivered `dep` before submitting this message,
        // so the agreed order puts `dep` first, and on their common ring every process that
        // delivers this message has delivered `dep` before it.
        if let Some(dep) = m.after {
            let dm = &self.msgs[&dep];
            let (dr, ds) = dm
                .ordered
                .expect("oracle invariant: a delivered message is ordered");
            if dr == r {
                let dpos = ring.position(Key { seq: ds, id: dep });
                if (ds, dpos) >= (d.seq, pos) {
                    return err(
                        Property::D6Causal,
                        format!(
                            "{p} delivered {id} at ring {r} seq {}, but {} submitted it after delivering {dep}, which the agreed order puts after it (seq {ds})",
                            d.seq, m.submitter
                        ),
                    );
                }
                if !dm.delivered_by(p) {
                    return err(
                        Property::D6Causal,
                        format!(
                            "{p} delivered {id} (ring {r} seq {}) without {dep} (seq {ds}), which {} had delivered before submitting it",
                            d.seq, m.submitter
                        ),
                    );
                }
            } else if dr.seq >= r.seq {
                return err(
                    Property::D6Causal,
                    format!(
                        "{p} delivered {id} as ordered on ring {r}, but {} submitted it after delivering {dep}, ordered on ring {dr}, which is not older",
                        m.submitter
                    ),
                );
            }
        }

        if let Some((k, i)) = last {
            if (k.seq, i) >= (d.seq, pos) {
                let how = if k.seq == d.seq {
                    "in the same multicast, in the other order"
                } else {
                    "at a higher seq"
                };
                return err(
                    Property::D5TotalOrder,
                    format!(
                        "{p} delivered {id} (ring {r} seq {}) after {} (seq {}), which the agreed order puts after it ({how})",
                        d.seq, k.id, k.seq
                    ),
                );
            }
        }
        let trans_members = match &me.current {
            Some(Current::Transitional { members, .. }) => Some(members),
            _ => None,
        };
        let skipped = first_between(
            &ring.groups,
            last.map(|(k, i)| (k.seq, i)),
            (d.seq, pos),
            |s| match trans_members {
                None => true,
                Some(t) => t.contains(&s.sender),
            },
        );
        if let Some((seq, s)) = skipped {
            let by = self.msgs[&s].orderer();
            let detail = match trans_members {
                None => format!(
                    "{p} delivered {id} (ring {r} seq {}) in regular {r} but skipped {s} (seq {seq}), delivered by {by}",
                    d.seq
                ),
                Some(t) => format!(
                    "{p} delivered {id} (ring {r} seq {}) in transitional {t:?} but skipped {s} (seq {seq}, delivered by {by}) whose sender is in it",
                    d.seq
                ),
            };
            return err(Property::D5TotalOrder, detail);
        }
        if is_new {
            // Processes that already went past this message's place did skip it.
            for c in ring.cursors.iter().filter(|c| c.proc != p) {
                let before = |k: Key| d.seq < k.seq || (d.seq == k.seq && pos <= ring.position(k));
                if let Some(k) = c.last_regular.filter(|k| before(*k)) {
                    return err(
                        Property::D5TotalOrder,
                        format!(
                            "{p} delivered {id} (ring {r} seq {}), which {} skipped: it delivered the later {} (seq {}) in regular {r}",
                            d.seq, c.proc, k.id, k.seq
                        ),
                    );
                }
                if let (Some(k), Some(t)) = (c.last.filter(|k| before(*k)), &c.trans_members) {
                    if t.contains(&d.sender) {
                        return err(
                            Property::D5TotalOrder,
                            format!(
                                "{p} delivered {id} (ring {r} seq {}), which {} skipped: it delivered the later {} (seq {}) in transitional {t:?}, which has the sender",
                                d.seq, c.proc, k.id, k.seq
                            ),
                        );
                    }
                }
            }
        }

        // D3, the other side: the message's place is fixed now, and its submitter already moved
        // on from ring r (installed a later regular configuration) without delivering it. A
        // submitter that crashed in r or in the transitional configuration after it is excused:
        // its last regular ring is still r.
        if m.ordered.is_none() && m.submitter != p {
            let s = &self.procs[&m.submitter];
            if s.last_regular != Some(r) && !m.delivered_by(m.submitter) {
                return err(
                    Property::D3SelfDelivery,
                    format!(
                        "{p} delivered {id}, ordered on ring {r}, but its sender {} already moved on from {r} without delivering it",
                        m.submitter
                    ),
                );
            }
        }

        // D6: a sender's messages in submission order, none skipped on the ring they share.
        let s = m.submitter;
        let lo = me.max_from.get(&s).copied();
        if let Some(lo) = lo.filter(|lo| *lo >= d.msg_no) {
            return err(
                Property::D6Causal,
                format!(
                    "{p} delivered {id} after m{}:{lo}, which {s} submitted later",
                    d.sender
                ),
            );
        }
        if let Some(sor) = ring.senders.get(&s) {
            let from = lo.map_or(Bound::Unbounded, Bound::Excluded);
            if let Some(earlier) = sor.msg_nos.range((from, Bound::Excluded(d.msg_no))).next() {
                return err(
                    Property::D6Causal,
                    format!(
                        "{p} delivered {id} without m{}:{earlier}, which {s} submitted earlier and which was ordered on ring {r} too",
                        d.sender
                    ),
                );
            }
            if is_new {
                if let Some((q, later)) = sor.max_by.iter().find(|(q, n)| *q != p && *n > d.msg_no)
                {
                    return err(
                        Property::D6Causal,
                        format!(
                            "{p} delivered {id} (ring {r}), which {q} skipped: it delivered the later m{}:{later} of {s} on the same ring",
                            d.sender
                        ),
                    );
                }
            }
        }

        // D8 (EVS form): a safe message delivered in regular configuration r is delivered by
        // every member of r, in r or in the transitional configuration after it, unless the
        // member fails; one delivered in a transitional configuration, by every member of it.
        // Checked here against members that already moved on, and at each member's next
        // regular install (`on_regular`) against messages delivered safe before it.
        if d.guarantee == Guarantee::Safe {
            let (gone, window) = match place {
                Place::Regular => (
                    ring.installers.iter().find(|q| {
                        **q != p && self.procs[*q].last_regular != Some(r) && !m.delivered_by(**q)
                    }),
                    "moved on to a later regular configuration".to_string(),
                ),
                Place::Transitional { next } => (
                    self.transitionals.get(&(r, next)).and_then(|t| {
                        t.installers.iter().find(|q| {
                            **q != p
                                && self
                                    .rings
                                    .get(&next)
                                    .is_some_and(|n| n.installers.contains(q))
                                && !m.delivered_by(**q)
                        })
                    }),
                    format!("installed {next}"),
                ),
            };
            if let Some(q) = gone {
                return err(
                    Property::D8Safe,
                    format!(
                        "{p} delivered safe {id} in {}, but {q}, a member of it, already {window} without delivering it",
                        describe_place(r, place)
                    ),
                );
            }
        }

        // Every check passed: record the delivery.
        let m = self.msgs.get_mut(&id).expect("known");
        m.deliveries.push((p, place));
        if is_new {
            m.ordered = Some((r, d.seq));
        }
        let ring = self.rings.get_mut(&r).expect("known");
        if is_new {
            ring.groups.entry(d.seq).or_default().insert(pos, id);
            if d.guarantee == Guarantee::Safe {
                ring.safe.push(id);
            }
        }
        if d.guarantee == Guarantee::Safe && place == Place::Regular {
            ring.safe_in_regular.get_or_insert((id, p));
        }
        let key = Key { seq: d.seq, id };
        let i = match ring.cursors.iter().position(|c| c.proc == p) {
            Some(i) => i,
            None => {
                ring.cursors.push(Cursor {
                    proc: p,
                    last: None,
                    last_regular: None,
                    trans_members: None,
                });
                ring.cursors.len() - 1
            }
        };
        let cursor = &mut ring.cursors[i];
        cursor.last = Some(key);
        match place {
            Place::Regular => cursor.last_regular = Some(key),
            Place::Transitional { .. } => {
                if cursor.trans_members.is_none() {
                    cursor.trans_members = trans_members.cloned();
                }
            }
        }
        let sor = ring.senders.entry(s).or_default();
        sor.msg_nos.insert(d.msg_no);
        match sor.max_by.iter_mut().find(|(q, _)| *q == p) {
            Some((_, n)) => *n = d.msg_no,
            None => sor.max_by.push((p, d.msg_no)),
        }
        let me = self.procs.get_mut(&p).expect("known");
        me.in_config.push(id);
        me.max_from.insert(s, d.msg_no);
        me.last_delivered = Some(id);
        if s == p && me.own_pending.front() == Some(&d.msg_no) {
            me.own_pending.pop_front();
        }
        Ok(())
    }

    // ---------------------------------------------------------------- whole-history sweeps

    /// C5: for every regular configuration c and member node q that has no process installing
    /// c, either q failed, or every installer of c that did not fail went on to a transitional
    /// configuration without q. When `strict` is false an installer still in c is given the
    /// benefit of the doubt: the run may have been cut before it noticed q was gone.
    ///
    /// "q failed" is decided on the incarnations of q alive when c was first installed (the
    /// ones that could have been in c): none, or one of them crashed.
    fn c5_sweep(&self, now: Instant, strict: bool) -> Result<(), Violation> {
        let mut ids: Vec<&RingId> = self.rings.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let ring = &self.rings[id];
            for &q in &ring.members {
                if ring.installed_by_node(q) {
                    continue;
                }
                let mut candidates = self
                    .node_procs
                    .get(&q)
                    .into_iter()
                    .flatten()
                    .map(|i| &self.procs[i])
                    .filter(|pr| pr.alive_at(ring.first_install))
                    .peekable();
                if candidates.peek().is_none() || candidates.any(|pr| pr.crashed_at.is_some()) {
                    continue;
                }
                let mut installers = ring.installers.clone();
                installers.sort_unstable();
                for p in installers {
                    let me = &self.procs[&p];
                    match me.trans_after.get(id) {
                        Some(to) => {
                            let t = &self.transitionals[&(*id, *to)];
                            if t.members.contains(&q) {
                                return Err(violation(
                                    Property::C5AgreementOnInstalls,
                                    now,
                                    format!(
                                        "n{q} is a member of regular {id} and never installed it, yet {p} kept it in transitional {id}->{to} {:?}",
                                        t.members
                                    ),
                                ));
                            }
                        }
                        None if strict && me.crashed_at.is_none() => {
                            return Err(violation(
                                Property::C5AgreementOnInstalls,
                                now,
                                format!(
                                    "n{q} is a member of regular {id} {:?} and never installed it, did not fail, and {p} is still in {id}",
                                    ring.members
                                ),
                            ));
                        }
                        None => {}
                    }
                }
            }
        }
        Ok(())
    }
}

impl Oracle {
    /// D8 for members of a regular configuration that never installed it: once a safe message
    /// was delivered in regular c, every member node of c must install c unless it fails (its
    /// incarnations alive when c was first installed include a crashed one, or there are none).
    /// When `strict` is false only a process that can no longer install c (it installed a
    /// regular ring whose seq is not below c's) is blamed: the run may have been cut.
    fn d8_sweep(&self, now: Instant, strict: bool) -> Result<(), Violation> {
        let mut ids: Vec<&RingId> = self.rings.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let ring = &self.rings[id];
            let Some((m, by)) = ring.safe_in_regular else {
                continue;
            };
            for &q in &ring.members {
                if ring.installed_by_node(q) {
                    continue;
                }
                let candidates: Vec<&ProcId> = self
                    .node_procs
                    .get(&q)
                    .into_iter()
                    .flatten()
                    .filter(|i| self.procs[*i].alive_at(ring.first_install))
                    .collect();
                if candidates.is_empty()
                    || candidates
                        .iter()
                        .any(|i| self.procs[*i].crashed_at.is_some())
                {
                    continue;
                }
                let past = candidates.iter().find(|i| {
                    strict
                        || self.procs[**i]
                            .last_regular
                            .is_some_and(|r| r.seq >= id.seq)
                });
                if let Some(i) = past {
                    return Err(violation(
                        Property::D8Safe,
                        now,
                        format!(
                            "{by} delivered safe {m} in regular {id} {:?}, but its member {i} never installed {id} and did not fail",
                            ring.members
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn describe_place(ring: RingId, place: Place) -> String {
    match place {
        Place::Regular => format!("regular {ring}"),
        Place::Transitional { next } => format!("transitional {ring}->{next}"),
    }
}
