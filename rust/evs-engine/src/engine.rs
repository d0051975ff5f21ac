//! [`Engine`]: one node's service logic, sans-IO.
//!
//! # What it owns
//!
//! * the [`Processor`] (the Totem ring);
//! * the replicated [`GroupView`], changed only by what is delivered in agreed order (joins,
//!   leaves, membership syncs, regular configurations), so every engine that delivers the same
//!   stream holds the same view at the same point of it;
//! * the open handles of this node, and each one's *intended* groups, in submission order of
//!   its joins and leaves: what the node multicasts in its membership sync after every regular
//!   configuration (which every member, this one included, puts in place of what it held for
//!   this node);
//! * the submissions the processor had no room for yet (FIFO: nothing overtakes them), and the
//!   budget cost of each message in the processor's send queue.
//!
//! # Group changes and the barrier after a configuration
//!
//! A join, a leave or a departed node's handles leaving at a regular configuration is reported
//! to the local handles concerned ([`Event::GroupChange`]) where it is delivered. After a
//! regular configuration the view is rebuilt from every member's sync; members that come from
//! different sides of a merge hold different views until the last sync is delivered, so group
//! changes delivered meanwhile are applied (routing follows them) but reported only at that
//! *barrier*, as one net change per group, identical at every member; a barrier the ring does
//! not reach carries over to the next ring. See `docs/groups.md`.
//!
//! # Inputs and outputs
//!
//! Inputs carry the time: [`Engine::handle_packet`] (a packet already authenticated),
//! [`Engine::handle_timeout`], [`Engine::submit`] (a message a handle encoded on its own
//! thread, see [`Submission`]), [`Engine::open_handle`], [`Engine::close_handle`], and, for
//! drivers that do not encode on another thread (the simulator, tests), [`Engine::join`],
//! [`Engine::leave`] and [`Engine::mcast`], which validate like a handle does and submit.
//!
//! Outputs are polled until `None` after every input: [`Engine::poll_transmit`] (packets to
//! send, exactly the processor's), [`Engine::poll_event`] ([`Output`]: an event for one of this
//! node's handles, a configuration change, a change of one group in the view), and
//! [`Engine::poll_timeout`]. The budget moves through [`Engine::take_forced`] (cost of what the
//! engine submitted itself: syncs, the leaves of closed handles) and [`Engine::take_refund`]
//! (cost of what the processor has sent); what must be persisted across restarts is
//! [`Engine::ring_seq_to_persist`].
//!
//! # A pump
//!
//! ```text
//! loop {
//!     let before = engine.dispatched();
//!     while let Some(t) = engine.poll_transmit() { send(t) }
//!     while let Some(o) = engine.poll_event(now) { route(o) }   // may submit (syncs), so:
//!     if nothing was sent or routed and engine.dispatched() == before { break }
//! }
//! ```
//! `poll_event` dispatches the processor's events one at a time, in order, and once they are
//! drained retries the submissions waiting for room.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use totem::{ConfigChange, ConfigKind, Instant, Processor, SubmitError, Transmit};

use crate::event::{group_list, Event, EvsError, Guarantee, HandleId, NodeId, RingId, MAX_GROUPS};
use crate::groups::{self, GroupDelta, GroupView, RingMsg};

/// What a submission changes in its handle's intended groups. Carried with the submission so
/// that the engine's record of intended groups follows the submission order exactly (a sync
/// submitted after this submission reflects it; one submitted before does not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// An application message (or nothing to record).
    None,
    Join(HandleId, Vec<Bytes>),
    Leave(HandleId, Vec<Bytes>),
}

/// A ring payload ready for the processor: encoded by a handle (see [`groups`]), with the send
/// budget it was charged (`cost`, given back by [`Engine::take_refund`] once sent) and what it
/// changes in its handle's intended groups.
#[derive(Clone, Debug)]
pub struct Submission {
    pub data: Bytes,
    pub guarantee: Guarantee,
    pub cost: usize,
    pub intent: Intent,
}

/// One output of [`Engine::poll_event`], in the order the engine produced them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// An event for an open handle of this node.
    Handle(HandleId, Event),
    /// The processor delivered a configuration change. Its [`Event::ConfigChange`] for every
    /// open handle comes before this; for a regular one, the view's removal of the nodes that
    /// are gone comes after it.
    Config(ConfigChange),
    /// One group of the view changed (whether or not this node has handles in it), after the
    /// [`Event::GroupChange`] of each local handle concerned (during a barrier after a merge,
    /// handles are told only when it ends: see the module docs). A copy of the
    /// view that applies these ([`GroupView::apply`]) equals [`Engine::view`] whenever
    /// `poll_event` has returned `None`: it is the view routing uses.
    Group(GroupDelta),
    /// The processor's own event, before the engine dispatches it: only when asked for
    /// ([`Engine::set_core_events`]), for a checker of the ring's stream (the simulator's
    /// oracle).
    Core(totem::Event),
    /// The processor accepted a submission and numbered it `msg_no` (only with
    /// [`Engine::set_core_events`]): every message the processor will deliver from this
    /// node, the engine's own (syncs, leaves of closed handles) included.
    Submitted {
        msg_no: u64,
        guarantee: Guarantee,
        data: Bytes,
    },
}

/// Known-wrong variants of the service logic (feature `fault-injection`, tests only): each
/// breaks one group property that the simulator's group checker must report. The runtime
/// never enables the feature.
#[cfg(feature = "fault-injection")]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineFaults {
    /// A message goes to every open handle of the node, whatever groups it names (G2).
    pub misroute: bool,
    /// A message with several local targets misses the last one (G2).
    pub drop_last_target: bool,
    /// The node with the lowest id ignores other nodes' leaves (G1).
    pub ignore_leaves: bool,
    /// A regular configuration keeps the departed nodes' handles in the view (G4).
    pub keep_departed: bool,
    /// A group change is reported with the members before it, not after (G3).
    pub stale_report: bool,
    /// A closed handle's groups are not left: it stays in every view until the node's next
    /// membership sync (G1, at convergence).
    pub silent_close: bool,
}

/// Without the feature: every bug off, and the checks compile away.
#[cfg(not(feature = "fault-injection"))]
#[derive(Copy, Clone, Default)]
struct EngineFaults {
    misroute: bool,
    drop_last_target: bool,
    ignore_leaves: bool,
    keep_departed: bool,
    stale_report: bool,
    silent_close: bool,
}

/// Counters of the engine.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Delivered payloads that did not decode (dropped).
    pub malformed_payloads: u64,
    /// Submissions the processor refused as too large (dropped; their cost refunded). Handles
    /// check sizes first: only a sync part at an absurdly small configured maximum gets here.
    pub dropped_too_large: u64,
    /// Submissions waiting for room in the processor.
    pub pending_submits: usize,
    /// Open handles.
    pub handles: usize,
}

/// The time between a regular configuration and the delivery of the last part of every
/// member's membership sync. Members that come from different sides of a merge hold
/// different views until then; each learns the others' handles one sync at a time. So during
/// a barrier group changes are applied (routing follows them at once: a node routes only to
/// its own handles, whose entries it knows) but reported to handles only when it ends, as one
/// net change per group: at that point every member holds the same view, and the barrier
/// ends at the same message for all of them. A barrier the ring does not reach (a
/// configuration change comes first) carries over to the next ring: its changes are reported
/// at that ring's barrier.
#[derive(Debug)]
struct Barrier {
    /// Members whose last sync part has not been delivered yet.
    waiting: BTreeSet<NodeId>,
    /// Each group changed during the barrier, with its members when the barrier began.
    before: BTreeMap<Bytes, Vec<(NodeId, HandleId)>>,
}

/// One node's service logic. See the module docs.
#[derive(Debug)]
pub struct Engine {
    me: NodeId,
    processor: Processor,
    /// The largest application payload, and the largest ring message (payload plus the largest
    /// group header), which bounds each sync part.
    max_payload: usize,
    max_message_size: usize,
    /// The latest time an input carried; submissions retried from `poll_event` use it.
    now: Instant,
    view: GroupView,
    /// Ring id and members of the last regular configuration.
    membership: (RingId, Vec<NodeId>),
    handles: BTreeSet<HandleId>,
    /// Every open handle's intended groups (see the module docs).
    intended: BTreeMap<HandleId, BTreeSet<Bytes>>,
    /// Submissions waiting for room in the processor.
    pending: VecDeque<Submission>,
    /// Budget cost of each message in the processor's send queue, oldest first.
    inflight: VecDeque<usize>,
    /// Cost of what the engine submitted itself, not yet taken by [`Engine::take_forced`].
    forced: usize,
    /// Cost of dropped submissions, not yet taken by [`Engine::take_refund`].
    dropped_cost: usize,
    out: VecDeque<Output>,
    /// Processor events dispatched (see [`Engine::dispatched`]).
    dispatched: u64,
    /// From a regular configuration until every member's sync is delivered (see
    /// [`Barrier`]).
    barrier: Option<Barrier>,
    /// Whether `poll_event` also outputs the processor's events ([`Output::Core`]).
    core_events: bool,
    #[cfg(feature = "fault-injection")]
    faults: EngineFaults,
    stats: EngineStats,
}

impl Engine {
    /// An engine around `processor` (freshly started: it has delivered nothing yet), whose
    /// applications send at most `max_payload` bytes per message.
    pub fn new(processor: Processor, max_payload: usize) -> Engine {
        Engine {
            me: processor.id(),
            processor,
            max_payload,
            max_message_size: groups::ring_message_size(max_payload),
            now: Instant::ZERO,
            view: GroupView::default(),
            membership: (RingId::default(), Vec::new()),
            handles: BTreeSet::new(),
            intended: BTreeMap::new(),
            pending: VecDeque::new(),
            inflight: VecDeque::new(),
            forced: 0,
            dropped_cost: 0,
            out: VecDeque::new(),
            dispatched: 0,
            barrier: None,
            core_events: false,
            #[cfg(feature = "fault-injection")]
            faults: EngineFaults::default(),
            stats: EngineStats::default(),
        }
    }

    /// Also outputs every processor event ([`Output::Core`]), just before the outputs it
    /// leads to. Off by default.
    pub fn set_core_events(&mut self, on: bool) {
        self.core_events = on;
    }

    /// Switches on deliberate bugs (tests of the simulator's group checker only).
    #[cfg(feature = "fault-injection")]
    pub fn inject(&mut self, faults: EngineFaults) {
        self.faults = faults;
    }

    /// The injected bugs (none without the `fault-injection` feature).
    #[inline]
    fn bugs(&self) -> EngineFaults {
        #[cfg(feature = "fault-injection")]
        return self.faults;
        #[cfg(not(feature = "fault-injection"))]
        EngineFaults::default()
    }

    /// Whether a barrier after a merge is open: from a regular configuration with members that
    /// came from elsewhere until every member's sync is delivered. Members' views may differ
    /// meanwhile (see the module docs).
    pub fn in_barrier(&self) -> bool {
        self.barrier.is_some()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The processor, for its state, statistics and ring.
    pub fn processor(&self) -> &Processor {
        &self.processor
    }

    /// The processor, mutably: for fault injection in tests. Feeding it packets or
    /// submissions directly bypasses the engine's bookkeeping.
    pub fn processor_mut(&mut self) -> &mut Processor {
        &mut self.processor
    }

    /// The replicated group view, as of the processor events dispatched so far (an event is
    /// dispatched when `poll_event` reaches it, before its outputs are returned).
    pub fn view(&self) -> &GroupView {
        &self.view
    }

    /// Ring id and members of the last regular configuration (members empty before the first).
    pub fn membership(&self) -> (RingId, &[NodeId]) {
        (self.membership.0, &self.membership.1)
    }

    /// Whether handle `id` is open.
    pub fn is_open(&self, id: HandleId) -> bool {
        self.handles.contains(&id)
    }

    /// The groups handle `id` intends to be in (joins and leaves submitted so far, delivered
    /// or not), ascending; empty for a handle that is not open.
    pub fn intended(&self, id: HandleId) -> Vec<Bytes> {
        self.intended
            .get(&id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            pending_submits: self.pending.len(),
            handles: self.handles.len(),
            ..self.stats
        }
    }

    /// The ring sequence number to persist across restarts (see
    /// [`Processor::ring_seq_to_persist`]).
    pub fn ring_seq_to_persist(&self) -> u64 {
        self.processor.ring_seq_to_persist()
    }

    // ---- inputs ---------------------------------------------------------------------------

    /// A packet from the network, already authenticated.
    pub fn handle_packet(&mut self, now: Instant, data: Bytes) {
        self.now = now;
        self.processor.handle_packet(now, data);
    }

    /// The deadline of [`Engine::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.processor.handle_timeout(now);
    }

    /// Leaves the ring (the node is stopping): the processor multicasts its leave and ignores
    /// all further input.
    pub fn leave_ring(&mut self, now: Instant) {
        self.now = now;
        self.processor.leave(now);
    }

    /// Opens handle `id` (ids are the caller's: unique while the node runs). Its first event is
    /// the current regular configuration, as Corosync's EVS service gives on connect (none
    /// before the first ring). False if `id` is already open.
    pub fn open_handle(&mut self, id: HandleId) -> bool {
        if !self.handles.insert(id) {
            return false;
        }
        let (ring_id, members) = &self.membership;
        if !members.is_empty() {
            self.out.push_back(Output::Handle(
                id,
                Event::ConfigChange {
                    kind: ConfigKind::Regular,
                    ring_id: *ring_id,
                    members: members.clone(),
                    left: Vec::new(),
                    joined: Vec::new(),
                },
            ));
        }
        true
    }

    /// Closes handle `id`: no event reaches it any more (those not yet polled are dropped), and
    /// its groups are left by a multicast leave (as when a CPG process dies), so every view
    /// drops it at the same point of the stream. False if it was not open.
    pub fn close_handle(&mut self, now: Instant, id: HandleId) -> bool {
        if !self.handles.remove(&id) {
            return false;
        }
        self.now = now;
        if self
            .out
            .iter()
            .any(|o| matches!(o, Output::Handle(h, _) if *h == id))
        {
            self.out
                .retain(|o| !matches!(o, Output::Handle(h, _) if *h == id));
        }
        if let Some(groups) = self
            .intended
            .remove(&id)
            .filter(|_| !self.bugs().silent_close)
        {
            let groups: Vec<Bytes> = groups.into_iter().collect();
            // A handle holds at most MAX_GROUPS groups, so one leave always encodes.
            let data = groups::encode_membership(false, id, &groups);
            self.submit_own(data);
        }
        true
    }

    /// Hands a submission to the processor, or queues it behind earlier ones it had no room
    /// for. A join of a handle that is not open records nothing, but its message still goes
    /// out (the handle closed after submitting it: the leave of its close is ordered before
    /// this join, so the join adds an entry that stays until this node's next sync, after the
    /// next regular configuration).
    pub fn submit(&mut self, now: Instant, s: Submission) {
        self.now = now;
        self.record_intent(&s.intent);
        self.push_submission(s);
    }

    /// Records what a submission changes in its handle's intended groups.
    fn record_intent(&mut self, intent: &Intent) {
        match intent {
            Intent::None => {}
            Intent::Join(h, groups) => {
                if self.handles.contains(h) {
                    self.intended
                        .entry(*h)
                        .or_default()
                        .extend(groups.iter().cloned());
                }
            }
            Intent::Leave(h, groups) => {
                if let Some(set) = self.intended.get_mut(h) {
                    for g in groups {
                        set.remove(g);
                    }
                    if set.is_empty() {
                        self.intended.remove(h);
                    }
                }
            }
        }
    }

    /// Hands a submission to the processor now, or refuses it: [`SubmitError::Full`] when the
    /// processor has no room or earlier submissions wait for it (nothing overtakes them).
    /// Returns the processor's message number. For a caller that keeps what is refused
    /// (backpressure at the source) and needs to know each message's number.
    pub fn try_submit(&mut self, now: Instant, s: Submission) -> Result<u64, SubmitError> {
        self.now = now;
        if !self.pending.is_empty() {
            return Err(SubmitError::Full);
        }
        let msg_no = self.processor.submit(now, s.data.clone(), s.guarantee)?;
        self.record_intent(&s.intent);
        self.accepted(msg_no, s);
        Ok(msg_no)
    }

    /// Joins `groups` for open handle `id`, validating as the runtime's `Handle::join` does:
    /// groups already intended are ignored; at most [`MAX_GROUPS`] per handle.
    pub fn join<I, G>(&mut self, now: Instant, id: HandleId, groups: I) -> Result<(), EvsError>
    where
        I: IntoIterator<Item = G>,
        G: AsRef<[u8]>,
    {
        let list = group_list(groups)?;
        self.check_open(id)?;
        let have = self.intended.get(&id);
        let new: Vec<Bytes> = list
            .into_iter()
            .filter(|g| !have.is_some_and(|s| s.contains(g)))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        if have.map_or(0, BTreeSet::len) + new.len() > MAX_GROUPS {
            return Err(EvsError::InvalidGroup(format!(
                "a handle may join at most {MAX_GROUPS} groups"
            )));
        }
        let data = groups::encode_membership(true, id, &new);
        self.submit_membership(now, data, Intent::Join(id, new));
        Ok(())
    }

    /// Submits an encoded join or leave with its intent, charged like any message.
    fn submit_membership(&mut self, now: Instant, data: Bytes, intent: Intent) {
        let cost = data.len();
        self.submit(
            now,
            Submission {
                data,
                guarantee: Guarantee::Agreed,
                cost,
                intent,
            },
        );
    }

    /// Leaves `groups` for open handle `id`: every one must be intended, else nothing is left
    /// ([`EvsError::NotJoined`]).
    pub fn leave<I, G>(&mut self, now: Instant, id: HandleId, groups: I) -> Result<(), EvsError>
    where
        I: IntoIterator<Item = G>,
        G: AsRef<[u8]>,
    {
        let list = group_list(groups)?;
        self.check_open(id)?;
        let have = self.intended.get(&id);
        if list.iter().any(|g| !have.is_some_and(|s| s.contains(g))) {
            return Err(EvsError::NotJoined);
        }
        let data = groups::encode_membership(false, id, &list);
        self.submit_membership(now, data, Intent::Leave(id, list));
        Ok(())
    }

    /// Multicasts `data` from open handle `id` to `groups` (joined or not), or with `None` to
    /// the groups it intends to be in ([`EvsError::NotJoined`] if none).
    pub fn mcast(
        &mut self,
        now: Instant,
        id: HandleId,
        groups: Option<&[Bytes]>,
        data: &[u8],
        guarantee: Guarantee,
    ) -> Result<(), EvsError> {
        self.check_open(id)?;
        let list = match groups {
            Some(g) => group_list(g)?,
            None => self.intended(id),
        };
        if list.is_empty() {
            return Err(EvsError::NotJoined);
        }
        if data.len() > self.max_payload {
            return Err(EvsError::TooLarge {
                size: data.len(),
                max: self.max_payload,
            });
        }
        let data = groups::encode_app(id, &list, data);
        let cost = data.len();
        self.submit(
            now,
            Submission {
                data,
                guarantee,
                cost,
                intent: Intent::None,
            },
        );
        Ok(())
    }

    fn check_open(&self, id: HandleId) -> Result<(), EvsError> {
        if self.handles.contains(&id) {
            Ok(())
        } else {
            Err(EvsError::Closed)
        }
    }

    // ---- outputs --------------------------------------------------------------------------

    /// The next packet to send (the processor's; one addressed to this node itself must be fed
    /// back through [`Engine::handle_packet`]).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.processor.poll_transmit()
    }

    /// The next output. Dispatches the processor's events in order; once they are drained,
    /// retries the submissions that waited for room (which may produce transmits: poll those
    /// again, see the module docs' pump). `now` is the time of the submissions this makes
    /// (syncs, retries).
    pub fn poll_event(&mut self, now: Instant) -> Option<Output> {
        self.now = now;
        loop {
            if let Some(o) = self.out.pop_front() {
                return Some(o);
            }
            match self.processor.poll_event() {
                Some(ev) => {
                    self.dispatched += 1;
                    if self.core_events {
                        self.out.push_back(Output::Core(ev.clone()));
                    }
                    self.dispatch(ev);
                }
                None => {
                    if !self.pending.is_empty() {
                        self.retry_pending();
                    }
                    // (Retries output only what `set_core_events` asks for.)
                    return self.out.pop_front();
                }
            }
        }
    }

    /// How many processor events `poll_event` has dispatched so far. A pump that stops when
    /// nothing was sent or output must also go on while this moves: a delivery with no output
    /// (a message for no local handle) may still have let a retried submission release a
    /// held token.
    pub fn dispatched(&self) -> u64 {
        self.dispatched
    }

    /// The earliest deadline at which [`Engine::handle_timeout`] must be called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.processor.poll_timeout()
    }

    /// The budget cost of the messages the engine submitted itself since the last call (syncs,
    /// leaves of closed handles): charge it (they are sent whatever the budget).
    pub fn take_forced(&mut self) -> usize {
        std::mem::take(&mut self.forced)
    }

    /// The budget cost of the messages the processor has sent whole since the last call, and
    /// of any it refused: give it back.
    pub fn take_refund(&mut self) -> usize {
        let mut freed = std::mem::take(&mut self.dropped_cost);
        if !self.inflight.is_empty() {
            // The processor's send queue is FIFO: the messages it sent are the oldest ones.
            let queued = self.processor.send_queue_messages();
            while self.inflight.len() > queued {
                freed += self.inflight.pop_front().unwrap_or(0);
            }
        }
        freed
    }

    // ---- internals ------------------------------------------------------------------------

    /// Submits a message of the engine's own (sync, leave), charging its cost as forced.
    fn submit_own(&mut self, data: Bytes) {
        let cost = data.len();
        self.forced += cost;
        self.push_submission(Submission {
            data,
            guarantee: Guarantee::Agreed,
            cost,
            intent: Intent::None,
        });
    }

    fn push_submission(&mut self, s: Submission) {
        if !self.pending.is_empty() {
            self.pending.push_back(s);
            return;
        }
        match self.processor.submit(self.now, s.data.clone(), s.guarantee) {
            Ok(msg_no) => self.accepted(msg_no, s),
            Err(SubmitError::Full) => self.pending.push_back(s),
            Err(SubmitError::TooLarge { .. }) => self.drop_too_large(s.cost),
        }
    }

    fn retry_pending(&mut self) {
        while let Some(p) = self.pending.front() {
            match self.processor.submit(self.now, p.data.clone(), p.guarantee) {
                Ok(msg_no) => {
                    if let Some(s) = self.pending.pop_front() {
                        self.accepted(msg_no, s);
                    }
                }
                Err(SubmitError::Full) => return,
                Err(SubmitError::TooLarge { .. }) => {
                    let cost = p.cost;
                    self.pending.pop_front();
                    self.drop_too_large(cost);
                }
            }
        }
    }

    /// The processor accepted `s` as message `msg_no`.
    fn accepted(&mut self, msg_no: u64, s: Submission) {
        self.inflight.push_back(s.cost);
        if self.core_events {
            self.out.push_back(Output::Submitted {
                msg_no,
                guarantee: s.guarantee,
                data: s.data,
            });
        }
    }

    fn drop_too_large(&mut self, cost: usize) {
        self.stats.dropped_too_large += 1;
        self.dropped_cost += cost;
    }

    fn emit(&mut self, id: HandleId, ev: Event) {
        if self.handles.contains(&id) {
            self.out.push_back(Output::Handle(id, ev));
        }
    }

    fn dispatch(&mut self, ev: totem::Event) {
        match ev {
            totem::Event::Deliver(d) => {
                let Ok(msg) = groups::decode(&d.data) else {
                    self.stats.malformed_payloads += 1;
                    return;
                };
                let deltas = match msg {
                    RingMsg::App {
                        handle,
                        groups,
                        data,
                    } => {
                        let mut targets: Vec<HandleId> = groups
                            .iter()
                            .flat_map(|g| self.view.node_handles(g, self.me))
                            .collect();
                        let bugs = self.bugs();
                        if bugs.misroute {
                            targets = self.handles.iter().copied().collect();
                        }
                        targets.sort_unstable();
                        targets.dedup();
                        if bugs.drop_last_target && targets.len() > 1 {
                            targets.pop();
                        }
                        // The last target takes the decoded message itself: with one handle
                        // per node (the common case) nothing is copied.
                        let Some(last) = targets.pop() else {
                            return;
                        };
                        let message = |groups: Vec<Bytes>, data: Bytes| Event::Message {
                            sender: d.sender,
                            sender_handle: handle,
                            groups,
                            data,
                            ring_id: d.ring_id,
                            seq: d.seq,
                            index: d.index,
                            guarantee: d.guarantee,
                        };
                        for id in targets {
                            self.emit(id, message(groups.clone(), data.clone()));
                        }
                        self.emit(last, message(groups, data));
                        return;
                    }
                    RingMsg::GroupJoin { handle, groups } => {
                        self.view.join(d.sender, handle, &groups)
                    }
                    RingMsg::GroupLeave { .. }
                        if self.bugs().ignore_leaves
                            && d.sender != self.me
                            && self.membership.1.first() == Some(&self.me) =>
                    {
                        return;
                    }
                    RingMsg::GroupLeave { handle, groups } => {
                        self.view.leave(d.sender, handle, &groups)
                    }
                    RingMsg::GroupSync {
                        first,
                        last,
                        entries,
                    } => {
                        let deltas = self.view.sync(d.sender, first, &entries);
                        self.deliver_deltas(deltas);
                        if last {
                            self.synced(d.sender);
                        }
                        return;
                    }
                };
                self.deliver_deltas(deltas);
            }
            totem::Event::ConfigChange(c) => {
                let ids: Vec<HandleId> = self.handles.iter().copied().collect();
                for id in ids {
                    self.emit(
                        id,
                        Event::ConfigChange {
                            kind: c.kind,
                            ring_id: c.ring_id,
                            members: c.members.clone(),
                            left: c.left.clone(),
                            joined: c.joined.clone(),
                        },
                    );
                }
                let regular = c.kind == ConfigKind::Regular;
                if regular {
                    self.membership = (c.ring_id, c.members.clone());
                }
                let members = c.members.clone();
                let merged = !c.joined.is_empty();
                self.out.push_back(Output::Config(c));
                if regular {
                    if merged || self.barrier.is_some() {
                        // Members came from elsewhere (a merge, a start), or from a ring whose
                        // barrier was not reached: their views differ until every sync is
                        // delivered. Group changes, the departed nodes' included, are applied
                        // at once but reported at the barrier, as the net change since the
                        // first unfinished barrier began. (Members agree on this: either every
                        // one has someone joined or none has, since members without anyone
                        // joined all came from one ring together, where they delivered the
                        // same syncs.)
                        let before = self.barrier.take().map(|b| b.before).unwrap_or_default();
                        self.barrier = Some(Barrier {
                            waiting: members.iter().copied().collect(),
                            before,
                        });
                    }
                    // Otherwise every member holds the same view: the departed nodes' handles
                    // leave at the configuration itself.
                    if !self.bugs().keep_departed {
                        let deltas = self.view.retain_nodes(&members);
                        self.deliver_deltas(deltas);
                    }
                    self.send_sync();
                }
            }
        }
    }

    /// Outputs each group change, then gives it to this node's handles that are (or just were)
    /// in the group; during a barrier, records the group's members before it instead (the
    /// first time), for the report at the barrier.
    fn deliver_deltas(&mut self, deltas: Vec<GroupDelta>) {
        for d in deltas {
            if let Some(b) = &mut self.barrier {
                b.before.entry(d.group.clone()).or_insert_with(|| {
                    let mut was: BTreeSet<(NodeId, HandleId)> = d.members.iter().copied().collect();
                    for e in &d.joined {
                        was.remove(e);
                    }
                    was.extend(d.left.iter().copied());
                    was.into_iter().collect()
                });
                self.out.push_back(Output::Group(d));
                continue;
            }
            self.report(&d);
            self.out.push_back(Output::Group(d));
        }
    }

    /// The last sync part of `node` was delivered: the barrier ends once every member's was.
    fn synced(&mut self, node: NodeId) {
        let Some(b) = &mut self.barrier else {
            return;
        };
        b.waiting.remove(&node);
        if b.waiting.is_empty() {
            self.end_barrier();
        }
    }

    /// Reports, for each group that changed since the barrier began, the net change from its
    /// members then to its members now (one group change per group, in name order).
    fn end_barrier(&mut self) {
        let Some(b) = self.barrier.take() else {
            return;
        };
        for (group, was) in b.before {
            let now = self.view.members(&group);
            if now == was {
                continue;
            }
            let joined: Vec<_> = now.iter().filter(|e| !was.contains(e)).copied().collect();
            let left: Vec<_> = was.iter().filter(|e| !now.contains(e)).copied().collect();
            self.report(&GroupDelta {
                group,
                members: now,
                joined,
                left,
            });
        }
    }

    /// Gives a group change to this node's handles that are (or just were) in the group.
    fn report(&mut self, d: &GroupDelta) {
        let mut targets: Vec<HandleId> = d
            .members
            .iter()
            .chain(d.left.iter())
            .filter(|(n, _)| *n == self.me)
            .map(|&(_, h)| h)
            .collect();
        targets.sort_unstable();
        targets.dedup();
        let members = if self.bugs().stale_report {
            let mut was: Vec<(NodeId, HandleId)> = d
                .members
                .iter()
                .filter(|e| !d.joined.contains(e))
                .chain(d.left.iter())
                .copied()
                .collect();
            was.sort_unstable();
            was
        } else {
            d.members.clone()
        };
        for &id in &targets {
            self.emit(
                id,
                Event::GroupChange {
                    group: d.group.clone(),
                    members: members.clone(),
                    joined: d.joined.clone(),
                    left: d.left.clone(),
                },
            );
        }
    }

    /// After every regular configuration: multicasts this node's handles' intended groups.
    /// Everything this node submitted earlier is delivered before it (FIFO), so the sync is
    /// exactly the state those joins and leaves lead to.
    fn send_sync(&mut self) {
        let entries: Vec<(HandleId, Vec<Bytes>)> = self
            .intended
            .iter()
            .filter(|(_, g)| !g.is_empty())
            .map(|(h, g)| (*h, g.iter().cloned().collect()))
            .collect();
        for part in groups::encode_sync(&entries, self.max_message_size) {
            self.submit_own(part);
        }
    }
}
