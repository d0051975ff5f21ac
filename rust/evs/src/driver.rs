//! The driver task: the one place where a node's engine, sockets, crypto and handles meet.
//!
//! One task per node, on the node's [`Runtime`](crate::Runtime). It owns the
//! [`Engine`] (the processor, the group view, every handle's intended groups, the routing of
//! deliveries: all the service logic, sans-IO), the [`Transport`], the [`Sealer`] and
//! [`Opener`], and the registry of handle queues with their delivery buffers. It keeps the
//! copies application threads read (the last regular configuration and the group view, in
//! [`Shared`]) in step with the engine's outputs. It never blocks: socket calls are
//! non-blocking, handle queues are pushed without waiting (what a full one cannot take waits
//! in its delivery buffer, see [`crate::queue`]), and the locks it takes are held by others
//! only for a few instructions. So the token keeps moving however slow the applications are.
//!
//! # The loop
//!
//! Each turn takes, without waiting: up to [`MAX_COMMANDS_PER_TURN`] commands (first, so that
//! multicasts queued meanwhile are in the processor before a token of this turn asks it to
//! send), the packets the processor addressed to this node itself on the previous turn (a
//! one-node ring's token; fed back here rather than through the network or recursively), one
//! receive batch from the sockets, and expired timers. Then it *pumps* the engine: seals and
//! sends every transmit in one batch, and routes every output (a handle's event into that
//! handle's outbox, a configuration or group change into the shared copies), until neither
//! produced anything (routing lets the engine submit syncs and retry what waited for room).
//! A busy turn yields to the runtime (other nodes
//! may share it) and loops. Before it waits (or after [`HANDOVER_TURNS`] busy turns) the driver
//! *hands over*: each handle gets its outbox in one push, and the send budget is refunded for
//! what the processor sent; so the application threads are woken once the token has moved on,
//! not while the driver is still on its path; handles with buffered events get those first,
//! as far as their queues have room. Then it waits for the sockets, a command that must wake
//! it (see [`crate::command`]: plain multicasts only when the processor has nothing left to
//! send), a consumer that made room for buffered events, or the processor's next deadline.
//!
//! # Inbound order of checks
//!
//! 1. A frame whose cleartext crypto header names this node is dropped before any work: our
//!    own multicasts loop back where the transport's socket filter cannot drop them (IPv6, a
//!    wildcard bind address), and would only be refused as replays, at the cost of an AEAD
//!    pass each. A forged frame naming us is dropped the same way.
//! 2. [`Opener::open`] authenticates and replay-checks; rejections are counted there by reason.
//! 3. The Totem header's sender (u32 LE at bytes 4..8 of the plaintext) must equal the
//!    authenticated sender, else the frame is dropped and counted: a key holder must not speak
//!    for another node id through this path. Multicasts (type 1) are exempt: their header
//!    names the message's *originator*, and any member that holds a message answers a
//!    retransmission request by re-sending it unchanged under its own crypto identity (the
//!    Totem protocol depends on this; dropping them stalled every ring under loss until a
//!    reconfiguration). Every member shares the authkey, so the check never stood between a
//!    member and a forged multicast anyway; it guards the membership and token packets.
//! 4. In multicast mode the sender's source address is learned (for tokens), and unknown
//!    destinations are dropped rather than multicast, since a multicast token would be
//!    processed by several members.
//! 5. Only then does the engine's processor parse the packet.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use evs_engine::{Engine, GroupDelta, Output};
use tokio::time::Instant as TokioInstant;
use totem::wire::PacketType;
use totem::{ConfigKind, Destination, Processor};

use crate::backlog::{auto_limit, Backlog};
use crate::command::{Command, CommandReceiver, Taken};
use crate::config::DeliveryBuffer;
use crate::crypto::{Opener, Sealer};
use crate::event::{Event, HandleId, NodeId};
use crate::queue::{End, EventQueue, Push};
use crate::reject_log::{self, RejectLog};
use crate::shared::Shared;
use crate::stats::{CapturedFrame, NodeStats};
use crate::transport::{self, RecvBatch, Transport, UnknownDestination};

/// Commands taken per turn, so a flood of submissions cannot delay tokens and timers.
pub const MAX_COMMANDS_PER_TURN: usize = 256;

/// Busy turns after which the driver hands events and budget to the application even though
/// it has more to do (see [`Driver::hand_over`]).
const HANDOVER_TURNS: u32 = 8;

/// Receive slots per turn (one `recvmmsg` worth).
const RECV_BATCH: usize = 32;

/// Offset of the sender id in the crypto frame's cleartext header (see [`crate::crypto`]).
const FRAME_SENDER: std::ops::Range<usize> = 2..6;
/// Offset of the sender id in the Totem header (see [`totem::wire`]).
const TOTEM_SENDER: std::ops::Range<usize> = 4..8;
/// Offset of the packet type in the Totem header.
const TOTEM_TYPE: usize = 3;

fn lock<T>(m: &std::sync::Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_u32(b: &[u8], r: std::ops::Range<usize>) -> Option<u32> {
    b.get(r)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

#[derive(Default)]
struct Counters {
    own_frames_dropped: u64,
    isolated_dropped: u64,
    loss_injected: u64,
    sender_mismatch: u64,
    seal_errors: u64,
    self_packets: u64,
    events_queued: u64,
    handles_overflowed: u64,
}

/// One open handle: its queue, and the delivery buffer behind it (empty unless the queue
/// filled up).
struct Slot {
    queue: Arc<EventQueue>,
    backlog: Backlog,
}

/// The driver of one node. See the module docs.
pub(crate) struct Driver {
    me: NodeId,
    engine: Engine,
    transport: Transport,
    sealer: Sealer,
    opener: Opener,
    cmd_rx: CommandReceiver,
    /// Commands taken this turn (reused).
    cmd_buf: Vec<Command>,
    shared: Arc<Shared>,
    epoch: TokioInstant,

    handles: BTreeMap<HandleId, Slot>,
    /// Handles whose delivery buffer holds events.
    backlogged: usize,
    /// Bytes in every delivery buffer, and the most at once.
    buffered: usize,
    buffered_peak: usize,
    /// Each delivery buffer's bound now, and the largest ring seen (what "auto" grows with).
    buffer_limit: usize,
    largest_ring: usize,
    /// Reused for refills.
    scratch: Vec<Event>,
    /// Packets the processor addressed to this node.
    local: VecDeque<Bytes>,
    /// The engine's counts of submissions dropped as too large and of malformed payloads, as
    /// last logged.
    too_large_seen: u64,
    malformed_seen: u64,
    /// Group changes routed in the current pump, applied to the shared view in one lock at its
    /// end (so a reader never sees half of a delivered sync or configuration).
    view_deltas: Vec<GroupDelta>,
    /// Events dispatched since the last hand-over, per handle, handed over in one push per
    /// handle (one lock and at most one wake-up of the consumer, instead of one per event).
    outbox: BTreeMap<HandleId, Vec<Event>>,
    /// Handles whose queue overflowed during the current hand-over.
    overflowed: Vec<HandleId>,
    /// Busy turns since the last hand-over.
    busy_turns: u32,
    batch: RecvBatch,
    /// Sealed frames of the current pump, back to back, and where each goes.
    out: Vec<u8>,
    out_ranges: Vec<(transport::Destination, usize, usize)>,
    capture: Option<(usize, VecDeque<CapturedFrame>)>,
    counters: Counters,
    /// Senders whose frames are dropped (fault injection, `Node::isolate_from`); usually empty.
    isolated: Vec<NodeId>,
    /// Which refused frames to warn about (rate-limited per source and reason).
    reject_log: RejectLog,
    /// Injected receive loss in percent (`Node::set_receive_loss`), and its generator.
    loss_percent: u8,
    loss_rng: u64,
    shutdown_ack: Option<std::sync::mpsc::SyncSender<()>>,
}

impl Driver {
    #[allow(clippy::too_many_arguments)] // one-off constructor of the task's whole state
    pub(crate) fn new(
        processor: Processor,
        mut transport: Transport,
        multicast: bool,
        sealer: Sealer,
        opener: Opener,
        cmd_rx: CommandReceiver,
        shared: Arc<Shared>,
        epoch: TokioInstant,
    ) -> Driver {
        if multicast {
            transport.set_unknown_destination(UnknownDestination::Drop);
        }
        let mut driver = Driver {
            me: shared.node_id,
            engine: Engine::new(processor, shared.max_payload),
            transport,
            sealer,
            opener,
            cmd_rx,
            cmd_buf: Vec::new(),
            shared,
            epoch,
            handles: BTreeMap::new(),
            backlogged: 0,
            buffered: 0,
            buffered_peak: 0,
            buffer_limit: 0,
            largest_ring: 1,
            scratch: Vec::new(),
            local: VecDeque::new(),
            too_large_seen: 0,
            malformed_seen: 0,
            view_deltas: Vec::new(),
            outbox: BTreeMap::new(),
            overflowed: Vec::new(),
            busy_turns: 0,
            batch: RecvBatch::new(RECV_BATCH),
            out: Vec::new(),
            out_ranges: Vec::new(),
            capture: None,
            counters: Counters::default(),
            isolated: Vec::new(),
            reject_log: RejectLog::default(),
            loss_percent: 0,
            loss_rng: 0,
            shutdown_ack: None,
        };
        driver.update_buffer_limit();
        driver
    }

    /// Recomputes each delivery buffer's bound (after the largest ring seen grew).
    fn update_buffer_limit(&mut self) {
        self.buffer_limit = match self.shared.delivery_buffer {
            DeliveryBuffer::Bytes(n) => n,
            DeliveryBuffer::Auto => auto_limit(
                self.largest_ring,
                self.shared.budget.cap(),
                self.shared.window_size,
                self.shared.max_packet_size,
            ),
        };
    }

    fn now(&self) -> totem::Instant {
        let us = self.epoch.elapsed().as_micros();
        totem::Instant::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
    }

    fn deadline(&self) -> TokioInstant {
        match self.engine.poll_timeout() {
            Some(t) => self.epoch + Duration::from_micros(t.as_micros()),
            // No timer armed (only after leave): wake for commands and packets only.
            None => TokioInstant::now() + Duration::from_secs(3600),
        }
    }

    /// Runs until shutdown (or until the node and all handles are gone).
    pub(crate) async fn run(mut self) {
        loop {
            let busy = self.turn();
            if self.shutdown_ack.is_some() {
                return self.stop();
            }
            if busy {
                self.busy_turns += 1;
                if self.busy_turns >= HANDOVER_TURNS {
                    self.hand_over();
                }
                // Other nodes may share this runtime thread.
                tokio::task::yield_now().await;
                continue;
            }
            self.hand_over();
            // Multicasts wake us only when the processor has nothing left to send; otherwise
            // the next token visit is soon enough (see `crate::command`).
            let starving = self.engine.stats().pending_submits == 0
                && self.engine.processor().send_queue_messages() == 0;
            if !self.cmd_rx.idle(starving) {
                continue;
            }
            let deadline = self.deadline();
            tokio::select! {
                r = self.transport.readable() => {
                    if let Err(e) = r {
                        tracing::warn!(node = self.me, error = %e, "socket readiness failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                _ = self.cmd_rx.woken() => {}
                // A consumer made room for buffered events (refilled by the next hand-over).
                // Only listened to while something is buffered: a wait costs no lock on the
                // `Notify` otherwise, and a wake-up sent meanwhile is kept as its permit.
                _ = self.shared.refill.notified(), if self.backlogged > 0 => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
            if self.shutdown_ack.is_some() {
                return self.stop();
            }
        }
    }

    /// One turn of non-blocking work; true if anything was done.
    fn turn(&mut self) -> bool {
        let mut busy = false;
        // Commands first: multicasts queued while we slept must be in the processor when a
        // token in this turn's receive batch asks it to send.
        if self.commands() {
            busy = true;
        }
        if self.shutdown_ack.is_some() {
            return busy;
        }
        if !self.local.is_empty() {
            let now = self.now();
            // Only those queued before this turn: the packets they cause wait for the next.
            for pkt in std::mem::take(&mut self.local) {
                self.counters.self_packets += 1;
                self.engine.handle_packet(now, pkt);
            }
            busy = true;
        }
        match self.transport.recv_batch(&mut self.batch) {
            Ok(0) => {}
            Ok(_) => {
                self.ingest();
                busy = true;
            }
            Err(e) => tracing::debug!(node = self.me, error = %e, "receive failed"),
        }
        let now = self.now();
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
            busy = true;
        }
        self.pump();
        busy
    }

    /// Takes up to [`MAX_COMMANDS_PER_TURN`] queued commands; true if there were any.
    fn commands(&mut self) -> bool {
        let mut buf = std::mem::take(&mut self.cmd_buf);
        let taken = self.cmd_rx.take(MAX_COMMANDS_PER_TURN, &mut buf);
        let any = !buf.is_empty();
        for c in buf.drain(..) {
            if self.shutdown_ack.is_some() {
                // Dropped unanswered, as a closed channel would.
                continue;
            }
            self.command(c);
        }
        self.cmd_buf = buf;
        if taken == Taken::Disconnected {
            self.begin_shutdown(None);
        }
        any
    }

    /// Authenticates and feeds the received batch (see "Inbound order of checks").
    fn ingest(&mut self) {
        let now = self.now();
        let me = self.me;
        let learn = self.transport.group_addr().is_some();
        for (from, frame) in self.batch.iter_mut() {
            if self.loss_percent > 0 {
                // xorshift64: cheap, and good enough to decide drops.
                let mut x = self.loss_rng;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.loss_rng = x;
                if x % 100 < u64::from(self.loss_percent) {
                    self.counters.loss_injected += 1;
                    continue;
                }
            }
            if read_u32(frame, FRAME_SENDER) == Some(me) {
                self.counters.own_frames_dropped += 1;
                continue;
            }
            let opened = match self.opener.open(frame) {
                Ok(o) => o,
                Err(reason) => {
                    let warn = self
                        .reject_log
                        .note(from, reason, std::time::Instant::now());
                    match (warn, reject_log::explain(reason)) {
                        (Some(suppressed), Some(why)) => tracing::warn!(
                            node = me,
                            %reason,
                            suppressed,
                            "refused a frame from {from}: {why} (at most one warning per \
                             source and reason every 10 s)"
                        ),
                        _ => tracing::trace!(node = me, %from, %reason, "frame rejected"),
                    }
                    continue;
                }
            };
            let sender = opened.sender;
            if !self.isolated.is_empty() && self.isolated.contains(&sender) {
                self.counters.isolated_dropped += 1;
                continue;
            }
            let is_mcast = opened.payload.get(TOTEM_TYPE) == Some(&(PacketType::Mcast as u8));
            if let Some(claimed) = read_u32(opened.payload, TOTEM_SENDER) {
                if claimed != sender && !is_mcast {
                    self.counters.sender_mismatch += 1;
                    tracing::debug!(node = me, %from, sender, claimed, "sender mismatch");
                    continue;
                }
            }
            if learn {
                self.transport.learn(sender, from);
            }
            self.engine
                .handle_packet(now, Bytes::copy_from_slice(opened.payload));
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Register { id, queue } => {
                // Its first event is the current configuration (the engine's), queued now.
                self.engine.open_handle(id);
                self.handles.insert(
                    id,
                    Slot {
                        queue,
                        backlog: Backlog::default(),
                    },
                );
            }
            Command::Submit(sub) => {
                let now = self.now();
                self.engine.submit(now, sub);
            }
            Command::Close { id } => self.close_handle(id, false),
            Command::Stats { reply } => {
                let _ = reply.try_send(self.stats());
            }
            Command::DebugCapture { limit, reply } => {
                let kept = self
                    .capture
                    .take()
                    .map(|(_, frames)| frames.into_iter().collect())
                    .unwrap_or_default();
                if limit > 0 {
                    self.capture = Some((limit, VecDeque::new()));
                }
                let _ = reply.try_send(kept);
            }
            Command::Shutdown { ack } => self.begin_shutdown(Some(ack)),
            Command::ReceiveLoss { percent } => {
                tracing::info!(node = self.me, percent, "receive loss injected");
                self.loss_percent = percent;
                self.loss_rng =
                    0x9E37_79B9_7F4A_7C15 ^ u64::from(self.me).wrapping_mul(0x2545_F491);
            }
            Command::Isolate { from } => {
                tracing::info!(
                    node = self.me,
                    ?from,
                    "isolated from nodes (fault injection)"
                );
                self.isolated = from;
            }
        }
    }

    fn begin_shutdown(&mut self, ack: Option<std::sync::mpsc::SyncSender<()>>) {
        // A sender whose receiver is gone is as good as none.
        self.shutdown_ack = Some(ack.unwrap_or_else(|| std::sync::mpsc::sync_channel(1).0));
    }

    /// Removes a handle; its groups are left by a multicast leave (as when a CPG process
    /// dies), so every view drops it at the same point of the stream.
    fn close_handle(&mut self, id: HandleId, overflowed: bool) {
        let Some(mut slot) = self.handles.remove(&id) else {
            return;
        };
        self.outbox.remove(&id);
        if !slot.backlog.is_empty() {
            self.backlogged -= 1;
            self.buffered -= slot.backlog.bytes();
        }
        if overflowed {
            self.counters.handles_overflowed += 1;
            let me = self.me;
            let own = |ev: &Event| {
                matches!(ev, Event::Message { sender, sender_handle, .. }
                    if *sender == me && *sender_handle == id)
            };
            // What was buffered before the overflow is still the consumer's to read.
            let why = slot.queue.end_overflowed(slot.backlog.take_all(), own);
            tracing::warn!(
                node = self.me,
                handle = id,
                reason = ?why,
                limit = self.buffer_limit,
                "handle queue and delivery buffer full: closing the handle"
            );
        } else {
            slot.queue.end(End::Closed, true);
        }
        // Its groups are left by a multicast leave, charged to the budget like any message.
        let now = self.now();
        self.engine.close_handle(now, id);
        self.charge_forced();
    }

    /// Charges the budget for what the engine submitted itself (syncs, leaves).
    fn charge_forced(&mut self) {
        let forced = self.engine.take_forced();
        if forced > 0 {
            self.shared.budget.force(forced);
        }
    }

    /// Sends every transmit, routes every output, and repeats while either produced more (a
    /// membership sync submitted on a configuration change may release a held token).
    fn pump(&mut self) {
        loop {
            let dispatched = self.engine.dispatched();
            let sent = self.flush_transmits();
            let routed = self.route_outputs();
            // A delivery with no output may still have let a retried submission go out.
            if sent == 0 && routed == 0 && self.engine.dispatched() == dispatched {
                break;
            }
        }
        // Whatever the engine submitted itself and was not charged yet (see `route`).
        self.charge_forced();
        self.log_engine_drops();
    }

    /// Routes every output the engine has; returns how many. Applies the group changes to the
    /// shared view at the end, under one lock.
    fn route_outputs(&mut self) -> usize {
        let now = self.now();
        let mut n = 0;
        while let Some(o) = self.engine.poll_event(now) {
            n += 1;
            self.route(o);
        }
        if !self.view_deltas.is_empty() {
            let mut view = lock(&self.shared.view);
            for d in self.view_deltas.drain(..) {
                view.apply(&d);
            }
        }
        n
    }

    /// Logs what the engine dropped since the last pump (it has no logger of its own).
    fn log_engine_drops(&mut self) {
        let stats = self.engine.stats();
        if stats.dropped_too_large != self.too_large_seen {
            // Handles check the size first; only an absurdly small configured maximum gets
            // here (a sync part that cannot shrink further).
            tracing::warn!(
                node = self.me,
                dropped = stats.dropped_too_large - self.too_large_seen,
                max = self.shared.max_message_size,
                "message too large for the processor, dropped"
            );
            self.too_large_seen = stats.dropped_too_large;
        }
        if stats.malformed_payloads != self.malformed_seen {
            tracing::debug!(
                node = self.me,
                dropped = stats.malformed_payloads - self.malformed_seen,
                "malformed ring payload dropped"
            );
            self.malformed_seen = stats.malformed_payloads;
        }
    }

    /// Wakes the application: gives every handle the events dispatched since the last
    /// hand-over and refunds the send budget for what the processor sent (and for what it
    /// refused as too large). Done when the driver
    /// is about to wait, or after [`HANDOVER_TURNS`] busy turns, rather than on every turn: a
    /// woken application thread competes with the driver for the CPU (and on a small machine
    /// preempts it) while the driver is still on the token's path. Pumps again if a handle
    /// overflowed (its leave is a submission).
    fn hand_over(&mut self) {
        loop {
            self.flush_events();
            let freed = self.engine.take_refund();
            if freed > 0 {
                self.shared.budget.release(freed);
            }
            if self.overflowed.is_empty() {
                break;
            }
            for id in std::mem::take(&mut self.overflowed) {
                self.close_handle(id, true);
            }
            self.pump();
        }
        self.busy_turns = 0;
    }

    /// Seals and sends the processor's transmits in one batch; returns how many.
    fn flush_transmits(&mut self) -> usize {
        self.out.clear();
        self.out_ranges.clear();
        let mut n = 0;
        while let Some(t) = self.engine.poll_transmit() {
            n += 1;
            let dest = match t.destination {
                Destination::Node(id) if id == self.me => {
                    self.local.push_back(t.data);
                    continue;
                }
                Destination::Node(id) => transport::Destination::Node(id),
                Destination::Multicast => transport::Destination::All,
            };
            let start = self.out.len();
            if let Err(e) = self.sealer.seal(&t.data, &mut self.out) {
                self.counters.seal_errors += 1;
                tracing::error!(node = self.me, error = %e, "cannot seal a frame");
                continue;
            }
            self.out_ranges.push((dest, start, self.out.len()));
            if let Some((limit, frames)) = &mut self.capture {
                if frames.len() == *limit {
                    frames.pop_front();
                }
                frames.push_back(CapturedFrame {
                    to: match dest {
                        transport::Destination::All => None,
                        transport::Destination::Node(id) => Some(id),
                    },
                    frame: self.out[start..].to_vec(),
                });
            }
        }
        if !self.out_ranges.is_empty() {
            let items: Vec<(transport::Destination, &[u8])> = self
                .out_ranges
                .iter()
                .map(|&(d, s, e)| (d, &self.out[s..e]))
                .collect();
            self.transport.send_batch(&items);
        }
        n
    }

    /// Queues `ev` for handle `id` in the outbox (see [`Self::flush_events`]).
    fn push(&mut self, id: HandleId, ev: Event) {
        if self.handles.contains_key(&id) {
            self.outbox.entry(id).or_default().push(ev);
        }
    }

    /// Hands every handle its events since the last hand-over, in order: buffered ones first,
    /// as far as the queue has room, then the new ones (into the buffer, behind what waits
    /// there, once the queue is full). A handle whose buffer would pass its bound is marked
    /// overflowed; [`Self::hand_over`] closes it.
    fn flush_events(&mut self) {
        if self.backlogged > 0 {
            self.refill();
        }
        let limit = self.buffer_limit;
        for (id, evs) in self.outbox.iter_mut() {
            if evs.is_empty() {
                continue;
            }
            let Some(slot) = self.handles.get_mut(id) else {
                evs.clear();
                continue;
            };
            let was_empty = slot.backlog.is_empty();
            if was_empty {
                let (res, n) = slot.queue.push_many(evs);
                self.counters.events_queued += n as u64;
                if res != Push::Full {
                    continue;
                }
            }
            let before = slot.backlog.bytes();
            let fits = slot.backlog.append(evs, limit);
            self.buffered += slot.backlog.bytes() - before;
            if was_empty && !slot.backlog.is_empty() {
                self.backlogged += 1;
            }
            if !fits {
                self.overflowed.push(*id);
            }
        }
        self.buffered_peak = self.buffered_peak.max(self.buffered);
    }

    /// Moves buffered events into their queues as far as the consumers made room.
    fn refill(&mut self) {
        for slot in self.handles.values_mut() {
            if slot.backlog.is_empty() {
                continue;
            }
            let before = slot.backlog.bytes();
            let n = slot.backlog.refill(&slot.queue, &mut self.scratch);
            self.counters.events_queued += n as u64;
            self.buffered -= before - slot.backlog.bytes();
            if slot.backlog.is_empty() {
                self.backlogged -= 1;
            }
        }
    }

    /// One output of the engine: a handle's event goes to its outbox; configuration and group
    /// changes update the copies application threads read.
    fn route(&mut self, o: Output) {
        match o {
            Output::Handle(id, ev) => self.push(id, ev),
            Output::Group(delta) => self.view_deltas.push(delta),
            // (Not asked for: the driver's checks read the handles' streams.)
            Output::Core(_) | Output::Submitted { .. } => {}
            Output::Config(c) => {
                tracing::info!(node = self.me, kind = ?c.kind, ring = %c.ring_id,
                    members = ?c.members, left = ?c.left, joined = ?c.joined,
                    "configuration change");
                if c.kind == ConfigKind::Regular {
                    if c.members.len() > self.largest_ring {
                        self.largest_ring = c.members.len();
                        self.update_buffer_limit();
                    }
                    *lock(&self.shared.membership) = (c.ring_id, c.members);
                    // The sync the engine just submitted is charged now, as any message is
                    // when it is accepted.
                    self.charge_forced();
                }
            }
        }
    }

    fn stats(&self) -> NodeStats {
        let (ring_id, members) = self.shared.members();
        let c = &self.counters;
        NodeStats {
            node_id: self.me,
            ring_id,
            members,
            state: self.engine.processor().state(),
            totem: self.engine.processor().stats(),
            transport: self.transport.stats(),
            crypto_rejected: *self.opener.stats(),
            crypto_accepted: self.opener.accepted(),
            own_frames_dropped: c.own_frames_dropped,
            isolated_dropped: c.isolated_dropped,
            loss_injected: c.loss_injected,
            sender_mismatch: c.sender_mismatch,
            malformed_payloads: self.engine.stats().malformed_payloads,
            seal_errors: c.seal_errors,
            self_packets: c.self_packets,
            events_queued: c.events_queued,
            handles_overflowed: c.handles_overflowed,
            queue_depths: self
                .handles
                .iter()
                .map(|(id, s)| (*id, s.queue.len()))
                .collect(),
            delivery_buffered: self.buffered,
            delivery_buffered_peak: self.buffered_peak,
            delivery_buffer_limit: self.buffer_limit,
            send_budget_used: self.shared.budget.used(),
            send_budget_cap: self.shared.budget.cap(),
            pending_submits: self.engine.stats().pending_submits,
        }
    }

    /// Leaves the ring, sends the leave, drops the driver (closing every queue, then the
    /// sockets) and only then acknowledges: when `Node::shutdown` returns, the handles have
    /// ended and the node's address can be bound again.
    fn stop(mut self) {
        // Events dispatched before the shutdown are still received (the queues end after them),
        // and so is the first event of a handle registered in the same batch of commands.
        self.route_outputs();
        self.flush_events();
        let now = self.now();
        self.engine.leave_ring(now);
        self.flush_transmits();
        tracing::info!(node = self.me, "node left the ring and stopped");
        let ack = self.shutdown_ack.take();
        drop(self);
        if let Some(ack) = ack {
            let _ = ack.try_send(());
        }
    }

    fn close_all(&mut self) {
        self.shared.running.store(false, Ordering::Release);
        self.shared.budget.close();
        for id in std::mem::take(&mut self.overflowed) {
            self.close_handle(id, true);
        }
        for slot in self.handles.values_mut() {
            // Events dispatched before the stop are still received, buffered ones included.
            slot.queue.append_unbounded(slot.backlog.take_all());
            slot.queue.end(End::Closed, false);
        }
        self.handles.clear();
        self.backlogged = 0;
        self.buffered = 0;
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Also reached when the runtime stops under a running node, or on a panic: no consumer
        // or sender may wait forever on a driver that is gone.
        self.close_all();
    }
}
