//! The EVS handle: what an application holds to join groups, multicast and receive.
//!
//! This module owns the consumer side of each handle: its bounded event queue
//! ([`EventQueue`], filled by the driver, emptied by the application), the eventfd that makes
//! the queue pollable, and the node-wide send budget ([`SendBudget`]) that turns a full send
//! queue into backpressure. Everything here runs on application threads; the only thing the
//! driver does with it is [`EventQueue::push_many`], which never blocks (the queue mutex is held by
//! a consumer only for a pop).
//!
//! # Slow consumers
//!
//! A handle's queue holds at most its capacity of events (default [`DEFAULT_QUEUE_CAPACITY`]).
//! When the driver has events for a handle whose queue is full, it does not wait and does not
//! drop them: it keeps them, in order, in the handle's **delivery buffer** (`crate::backlog`,
//! held by the driver), and moves them into the queue as the consumer reads (a consumer that
//! has read the queue down to half its capacity wakes the driver for that). The buffer is
//! bounded in bytes by `delivery_buffer_bytes` (configuration); its default is what the whole
//! cluster can have in flight when partitions merge, so a consumer that keeps up with the
//! cluster's steady rate is never closed by the burst that follows a heal.
//!
//! Only when the buffer is full too does the driver **close the handle** with
//! [`EvsError::Overflowed`], whose [`Overflow`] says whether the handle's own undelivered
//! messages filled it. The consumer still reads every event queued or buffered before the
//! overflow, in order; after them every receive returns `Overflowed`, and sends on the handle
//! fail the same way. The node multicasts a leave of the handle's groups (other members see it
//! leave, like a process that died in Corosync's CPG), and every other handle and the ring
//! carry on unaffected. `delivery_buffer_bytes = 0` gives the behaviour without a buffer:
//! closed as soon as an event finds the queue full.
//!
//! # Send backpressure
//!
//! All handles of a node share one budget of `send_queue_bytes` (configuration): the bytes of
//! messages accepted from handles and not yet sent by the processor. A message is charged its
//! encoded size when accepted and refunded when the processor has sent it. Over budget,
//! `mcast_*` returns [`EvsError::TryAgain`] at once and `mcast_*_blocking` waits (up to its
//! timeout) for the driver to refund. An empty budget accepts any message up to the maximum
//! size, as the processor's own queue does, so a maximal message is never refused forever.
//! Joins, leaves and the node's membership syncs are charged too but never refused.

use std::collections::{BTreeSet, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::Notify;

use crate::command::CommandSender;
use crate::event::{
    group_list, Event, EvsError, Guarantee, HandleId, NodeId, Overflow, MAX_GROUPS,
};
use crate::groups;
use crate::node::{Command, Shared};
use evs_engine::{Intent, Submission};

/// Events a handle's queue holds by default; more wait in the driver's delivery buffer.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; carry on with it
    // rather than poisoning the driver.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a queue ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Closed,
    Overflowed(Overflow),
}

impl End {
    fn error(self) -> EvsError {
        match self {
            End::Closed => EvsError::Closed,
            End::Overflowed(why) => EvsError::Overflowed(why),
        }
    }
}

/// Result of [`EventQueue::push_many`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Push {
    Queued,
    /// The queue is full: the events that did not fit are left to the caller, and the
    /// consumer will wake the driver ([`EventQueue::new`]'s `refill`) once it has read the
    /// queue down to half its capacity.
    Full,
    /// The queue had already ended.
    Gone,
}

struct QueueState {
    events: VecDeque<Event>,
    end: Option<End>,
    /// Whether the eventfd counter is non-zero.
    signalled: bool,
    /// Consumers blocked in `recv`: notify only then (a condvar notify is a system call).
    waiters: usize,
    /// The driver holds more events for this queue: wake it when half the queue was read.
    refill_wanted: bool,
    /// The queue's reference to the eventfd; `None` once the handle was dropped, so that the
    /// descriptor closes with the handle, not when the driver lets go of the queue.
    efd: Option<Arc<EventFd>>,
}

/// One handle's bounded event queue and its eventfd.
///
/// The eventfd is kept in step with the queue only once the application has asked for it
/// ([`Handle::fileno`] / `as_fd`): an application that only calls `recv` saves the two system
/// calls (a write when the queue fills, a read when it empties) per batch of events.
pub(crate) struct EventQueue {
    state: Mutex<QueueState>,
    cond: Condvar,
    /// Whether the eventfd was handed out; read under the state lock by [`Self::sync_fd`].
    fd_used: AtomicBool,
    capacity: usize,
    /// The driver's wake-up for refills from its delivery buffer (shared by a node's queues).
    refill: Arc<Notify>,
}

impl EventQueue {
    /// A queue of `capacity` events (at least one) whose consumer wakes the driver through
    /// `refill` when the driver has events waiting for room.
    pub(crate) fn new(capacity: usize, refill: Arc<Notify>) -> Result<EventQueue, EvsError> {
        let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map_err(|e| EvsError::Io(e.into()))?;
        Ok(EventQueue {
            state: Mutex::new(QueueState {
                events: VecDeque::new(),
                end: None,
                signalled: false,
                waiters: 0,
                refill_wanted: false,
                efd: Some(Arc::new(efd)),
            }),
            cond: Condvar::new(),
            fd_used: AtomicBool::new(false),
            capacity: capacity.max(1),
            refill,
        })
    }

    /// Keeps the eventfd readable exactly while there is something to receive (an event, or
    /// the end of the stream). Called under the queue lock after every change.
    fn sync_fd(&self, st: &mut QueueState) {
        if !self.fd_used.load(Ordering::Relaxed) {
            return;
        }
        let Some(efd) = st.efd.as_deref() else {
            return;
        };
        let readable = !st.events.is_empty() || st.end.is_some();
        if readable && !st.signalled {
            // Cannot fail: the counter is 0 here, far from its u64::MAX - 1 limit.
            let _ = efd.write(1);
            st.signalled = true;
        } else if !readable && st.signalled {
            let _ = efd.read();
            st.signalled = false;
        }
    }

    /// From now on the eventfd is kept readable exactly while there is something to receive.
    fn use_fd(&self) {
        if !self.fd_used.swap(true, Ordering::Relaxed) {
            // The first request: bring the counter in line with what is queued already. Under
            // the lock, so a concurrent push sees `fd_used` and signals at most once.
            let mut st = lock(&self.state);
            self.sync_fd(&mut st);
        }
    }

    /// The eventfd, for the handle to hold (`None` once released).
    pub(crate) fn eventfd(&self) -> Option<Arc<EventFd>> {
        lock(&self.state).efd.clone()
    }

    /// The handle is gone: the queue lets go of the eventfd (the handle's own reference then
    /// closes it), whatever the driver still holds of the queue.
    fn release_fd(&self) {
        lock(&self.state).efd = None;
    }

    /// Queues `ev` without blocking, if there is room (tests; the driver pushes batches).
    #[cfg(test)]
    pub(crate) fn push(&self, ev: Event) -> Push {
        let mut one = vec![ev];
        self.push_many(&mut one).0
    }

    /// Driver side: queues `events`, in order, as far as there is room, under one lock and
    /// with at most one wake-up of a blocked consumer; never blocks. Those queued are removed
    /// from the front of `events`; on [`Push::Full`] the rest stay there (the caller keeps
    /// them for later), on [`Push::Gone`] they are dropped. Returns how many were queued.
    pub(crate) fn push_many(&self, events: &mut Vec<Event>) -> (Push, usize) {
        let mut st = lock(&self.state);
        if st.end.is_some() {
            events.clear();
            return (Push::Gone, 0);
        }
        let room = self.capacity.saturating_sub(st.events.len());
        let (res, n) = if events.len() > room {
            st.events.extend(events.drain(..room));
            st.refill_wanted = true;
            (Push::Full, room)
        } else {
            let n = events.len();
            st.events.extend(events.drain(..));
            (Push::Queued, n)
        };
        if n > 0 {
            self.sync_fd(&mut st);
            if st.waiters > 0 {
                self.cond.notify_all();
            }
        }
        (res, n)
    }

    /// Driver side: the driver holds more events for this queue; the consumer wakes it once
    /// half the queue is read (at once, if it already is: it may have been read meanwhile).
    pub(crate) fn want_refill(&self) {
        let mut st = lock(&self.state);
        if st.events.len() <= self.capacity / 2 {
            st.refill_wanted = false;
            drop(st);
            self.refill.notify_one();
        } else {
            st.refill_wanted = true;
        }
    }

    /// Driver side: ends the stream as overflowed after what is queued and then `rest` (the
    /// driver's buffered events, appended whatever the capacity: they are held in memory
    /// already). `own` tells the handle's own messages; if they are more than half of what
    /// waits, the overflow is theirs ([`Overflow::OwnMessages`]). Returns the reason.
    pub(crate) fn end_overflowed(
        &self,
        rest: impl IntoIterator<Item = Event>,
        own: impl Fn(&Event) -> bool,
    ) -> Overflow {
        let mut st = lock(&self.state);
        st.events.extend(rest);
        let mine = st.events.iter().filter(|e| own(e)).count();
        let why = if mine * 2 > st.events.len() {
            Overflow::OwnMessages
        } else {
            Overflow::Consumer
        };
        if st.end.is_none() {
            st.end = Some(End::Overflowed(why));
        }
        st.refill_wanted = false;
        self.sync_fd(&mut st);
        self.cond.notify_all();
        why
    }

    /// Driver side: appends `rest` whatever the capacity (what the driver buffered, handed
    /// over before the node stops and the stream ends).
    pub(crate) fn append_unbounded(&self, rest: impl IntoIterator<Item = Event>) {
        let mut st = lock(&self.state);
        if st.end.is_none() {
            st.events.extend(rest);
            self.sync_fd(&mut st);
            self.cond.notify_all();
        }
    }

    /// Ends the stream (node stopped: `Closed` after the queued events; closed by the
    /// application: `discard` drops what is queued).
    pub(crate) fn end(&self, end: End, discard: bool) {
        let mut st = lock(&self.state);
        if discard {
            st.events.clear();
        }
        if st.end.is_none() {
            st.end = Some(end);
        }
        self.sync_fd(&mut st);
        self.cond.notify_all();
    }

    pub(crate) fn ended(&self) -> Option<End> {
        lock(&self.state).end
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.state).events.len()
    }

    /// Events that can be pushed before the queue is full.
    pub(crate) fn room(&self) -> usize {
        self.capacity.saturating_sub(lock(&self.state).events.len())
    }

    #[cfg(test)]
    pub(crate) fn try_take(&self) -> Option<Event> {
        self.take(1, Some(Duration::ZERO)).ok()?.pop()
    }

    /// Waits until at least one event is queued (then takes up to `max`), the stream ended,
    /// or the deadline passed.
    fn take(&self, max: usize, timeout: Option<Duration>) -> Result<Vec<Event>, EvsError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = lock(&self.state);
        loop {
            if !st.events.is_empty() {
                let n = max.max(1).min(st.events.len());
                let out: Vec<Event> = st.events.drain(..n).collect();
                self.sync_fd(&mut st);
                if st.refill_wanted && st.events.len() <= self.capacity / 2 {
                    // The driver holds more for us: let it refill while we work on these.
                    st.refill_wanted = false;
                    self.refill.notify_one();
                }
                return Ok(out);
            }
            if let Some(end) = st.end {
                return Err(end.error());
            }
            st.waiters += 1;
            st = match deadline {
                None => self.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        st.waiters -= 1;
                        return Err(EvsError::Timeout);
                    }
                    self.cond
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            st.waiters -= 1;
        }
    }
}

struct BudgetState {
    used: usize,
    closed: bool,
    waiters: usize,
}

/// The node-wide send budget (see the module docs).
pub(crate) struct SendBudget {
    state: Mutex<BudgetState>,
    cond: Condvar,
    cap: usize,
}

impl SendBudget {
    pub(crate) fn new(cap: usize) -> SendBudget {
        SendBudget {
            state: Mutex::new(BudgetState {
                used: 0,
                closed: false,
                waiters: 0,
            }),
            cond: Condvar::new(),
            cap,
        }
    }

    /// Charges `cost`, waiting up to `wait` for room (`None`: do not wait).
    pub(crate) fn acquire(&self, cost: usize, wait: Option<Duration>) -> Result<(), EvsError> {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut st = lock(&self.state);
        loop {
            if st.closed {
                return Err(EvsError::Closed);
            }
            if st.used == 0 || st.used.saturating_add(cost) <= self.cap {
                st.used += cost;
                return Ok(());
            }
            let Some(d) = deadline else {
                return Err(EvsError::TryAgain);
            };
            let now = Instant::now();
            if now >= d {
                return Err(EvsError::Timeout);
            }
            st.waiters += 1;
            st = self
                .cond
                .wait_timeout(st, d - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            st.waiters -= 1;
        }
    }

    /// Charges `cost` whatever the budget (control messages, which must not fail).
    pub(crate) fn force(&self, cost: usize) {
        lock(&self.state).used += cost;
    }

    /// Refunds `cost` and wakes blocked senders.
    pub(crate) fn release(&self, cost: usize) {
        let mut st = lock(&self.state);
        st.used = st.used.saturating_sub(cost);
        if st.waiters > 0 {
            self.cond.notify_all();
        }
    }

    /// The node stopped: every waiting and later acquire fails with `Closed`.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.cond.notify_all();
    }

    pub(crate) fn used(&self) -> usize {
        lock(&self.state).used
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }
}

/// An EVS handle of one node: joins groups, multicasts, and receives its event stream.
///
/// Made by [`Node::handle`](crate::Node::handle); any number may exist per node. `Send` and
/// `Sync`: its methods take `&self`, so one handle may be shared between a sending and a
/// receiving thread. Dropping it closes it ([`Handle::close`]).
pub struct Handle {
    id: HandleId,
    cmd: CommandSender,
    shared: Arc<Shared>,
    queue: Arc<EventQueue>,
    /// The queue's eventfd, closed when the handle is dropped (see [`Handle::fileno`]).
    efd: Arc<EventFd>,
    /// Groups this handle asked to join (in effect or on their way): what `mcast_joined`
    /// addresses and `leave` checks. Held while the join or leave command is sent, so the
    /// driver sees intents in the order they were made.
    joined: Mutex<Joined>,
}

/// A handle's joined groups: the set, and the same groups as a list in set order (what
/// `mcast_joined` encodes; kept so that a send does not copy the set).
#[derive(Default)]
struct Joined {
    set: BTreeSet<Bytes>,
    list: Vec<Bytes>,
}

impl Joined {
    fn contains(&self, g: &Bytes) -> bool {
        self.set.contains(g)
    }

    fn len(&self) -> usize {
        self.set.len()
    }

    fn update(&mut self, f: impl FnOnce(&mut BTreeSet<Bytes>)) {
        f(&mut self.set);
        self.list = self.set.iter().cloned().collect();
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("node", &self.shared.node_id)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Handle {
    pub(crate) fn new(
        id: HandleId,
        cmd: CommandSender,
        shared: Arc<Shared>,
        queue: Arc<EventQueue>,
        efd: Arc<EventFd>,
    ) -> Handle {
        Handle {
            id,
            cmd,
            shared,
            queue,
            efd,
            joined: Mutex::new(Joined::default()),
        }
    }

    /// This handle's id on its node (what receivers see as `sender_handle`).
    pub fn id(&self) -> HandleId {
        self.id
    }

    /// The node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    fn check_open(&self) -> Result<(), EvsError> {
        match self.queue.ended() {
            Some(end) => Err(end.error()),
            None => Ok(()),
        }
    }

    fn send(&self, cmd: Command) -> Result<(), EvsError> {
        self.cmd.send(cmd).map_err(|_| EvsError::Closed)
    }

    fn control(&self, payload: Bytes, intent: Intent) -> Result<(), EvsError> {
        let cost = payload.len();
        if cost > self.shared.max_message_size {
            return Err(EvsError::TooLarge {
                size: cost,
                max: self.shared.max_message_size,
            });
        }
        self.shared.budget.force(cost);
        let sent = self.send(Command::Submit(Submission {
            data: payload,
            guarantee: Guarantee::Agreed,
            cost,
            intent,
        }));
        if sent.is_err() {
            self.shared.budget.release(cost);
        }
        sent
    }

    /// Joins `groups` (names of 1 to 32 bytes). The join is multicast and takes effect, at
    /// every node, where it is delivered in agreed order: messages delivered after it and
    /// addressed to one of the groups reach this handle, and this handle's own later messages
    /// always come after it. Groups already joined are ignored. At most
    /// [`MAX_GROUPS`](crate::event::MAX_GROUPS) groups per handle.
    pub fn join<I, G>(&self, groups: I) -> Result<(), EvsError>
    where
        I: IntoIterator<Item = G>,
        G: AsRef<[u8]>,
    {
        let list = group_list(groups)?;
        self.check_open()?;
        let mut joined = lock(&self.joined);
        let new: Vec<Bytes> = list.into_iter().filter(|g| !joined.contains(g)).collect();
        if new.is_empty() {
            return Ok(());
        }
        if joined.len() + new.len() > MAX_GROUPS {
            return Err(EvsError::InvalidGroup(format!(
                "a handle may join at most {MAX_GROUPS} groups"
            )));
        }
        let payload = groups::encode_membership(true, self.id, &new);
        self.control(payload, Intent::Join(self.id, new.clone()))?;
        joined.update(|set| set.extend(new));
        Ok(())
    }

    /// Leaves `groups`. Every group must be joined, else nothing is left and the result is
    /// [`EvsError::NotJoined`] (Corosync removes the groups before the first unknown one; all
    /// or nothing is easier to reason about). Takes effect where it is delivered, like `join`.
    pub fn leave<I, G>(&self, groups: I) -> Result<(), EvsError>
    where
        I: IntoIterator<Item = G>,
        G: AsRef<[u8]>,
    {
        let list = group_list(groups)?;
        self.check_open()?;
        let mut joined = lock(&self.joined);
        if list.iter().any(|g| !joined.contains(g)) {
            return Err(EvsError::NotJoined);
        }
        let payload = groups::encode_membership(false, self.id, &list);
        self.control(payload, Intent::Leave(self.id, list.clone()))?;
        joined.update(|set| {
            for g in &list {
                set.remove(g);
            }
        });
        Ok(())
    }

    /// The groups this handle has asked to join (including joins not yet delivered); none
    /// once the handle is closed (its groups were left for it, see [`Handle::is_closed`]).
    pub fn joined(&self) -> Vec<Bytes> {
        if self.is_closed() {
            return Vec::new();
        }
        lock(&self.joined).list.clone()
    }

    /// Whether the handle's stream has ended: closed by [`Handle::close`], closed by the node
    /// after an overflow (events queued before it may still be read), or its node stopped.
    /// Every call but a receive of what is still queued then fails.
    pub fn is_closed(&self) -> bool {
        self.queue.ended().is_some()
    }

    fn mcast(
        &self,
        groups: &[Bytes],
        data: &[u8],
        guarantee: Guarantee,
        wait: Option<Duration>,
    ) -> Result<(), EvsError> {
        self.check_open()?;
        let payload = self.encode(groups, data)?;
        self.submit(payload, guarantee, wait)
    }

    /// The ring payload of a message of this handle, if its data is not too large (the
    /// group header comes on top: the ring takes `max_message_size` plus the largest header).
    fn encode(&self, groups: &[Bytes], data: &[u8]) -> Result<Bytes, EvsError> {
        let max = self.shared.max_payload;
        if data.len() > max {
            return Err(EvsError::TooLarge {
                size: data.len(),
                max,
            });
        }
        Ok(groups::encode_app(self.id, groups, data))
    }

    /// Charges the budget for `payload` (waiting up to `wait`) and hands it to the driver.
    fn submit(
        &self,
        payload: Bytes,
        guarantee: Guarantee,
        wait: Option<Duration>,
    ) -> Result<(), EvsError> {
        let cost = payload.len();
        self.shared.budget.acquire(cost, wait)?;
        let sent = self.send(Command::Submit(Submission {
            data: payload,
            guarantee,
            cost,
            intent: Intent::None,
        }));
        if sent.is_err() {
            self.shared.budget.release(cost);
        }
        sent
    }

    /// Encodes a message to the joined groups straight from the joined list (no copy of the
    /// list per message); the lock is released before any wait for budget.
    fn mcast_to_joined(
        &self,
        data: &[u8],
        guarantee: Guarantee,
        wait: Option<Duration>,
    ) -> Result<(), EvsError> {
        self.check_open()?;
        let payload = {
            let joined = lock(&self.joined);
            if joined.list.is_empty() {
                return Err(EvsError::NotJoined);
            }
            self.encode(&joined.list, data)?
        };
        self.submit(payload, guarantee, wait)
    }

    /// Multicasts `data` to every group this handle has asked to join. Without waiting:
    /// [`EvsError::TryAgain`] when the node's send budget is used up.
    pub fn mcast_joined(&self, data: &[u8], guarantee: Guarantee) -> Result<(), EvsError> {
        self.mcast_to_joined(data, guarantee, None)
    }

    /// Like [`mcast_joined`](Self::mcast_joined), but waits up to `timeout` for send budget
    /// ([`EvsError::Timeout`] if none came).
    pub fn mcast_joined_blocking(
        &self,
        data: &[u8],
        guarantee: Guarantee,
        timeout: Duration,
    ) -> Result<(), EvsError> {
        self.mcast_to_joined(data, guarantee, Some(timeout))
    }

    /// Multicasts `data` to `groups`, joined or not. Without waiting: [`EvsError::TryAgain`]
    /// when the node's send budget is used up.
    pub fn mcast_groups<I, G>(
        &self,
        groups: I,
        data: &[u8],
        guarantee: Guarantee,
    ) -> Result<(), EvsError>
    where
        I: IntoIterator<Item = G>,
        G: AsRef<[u8]>,
    {
        let list = group_list(groups)?;
        self.mcast(&list, data, guarantee, None)
    }

    /// Like [`mcast_groups`](Self::mcast_groups), but waits up to `timeout` for send budget.
    pub fn mcast_groups_blocking<I, G>(
        &self,
        groups: I,
        data: &[u8],
        guarantee: Guarantee,
        timeout: Duration,
    ) -> Result<(), EvsError>
    where
        I: IntoIterator<Item = G>,
        G: AsRef<[u8]>,
    {
        let list = group_list(groups)?;
        self.mcast(&list, data, guarantee, Some(timeout))
    }

    /// This node's id and the members of the last regular configuration (empty before the
    /// node installed its first ring).
    pub fn membership(&self) -> (NodeId, Vec<NodeId>) {
        (self.shared.node_id, self.shared.members().1)
    }

    /// Members of `group` in the node's replicated view: `(node, handle)` pairs, sorted. The
    /// view is the one after the node's latest delivery, which may be ahead of events this
    /// handle has not read yet; [`Event::GroupChange`] carries the view at its own point of
    /// the stream.
    pub fn group_membership(&self, group: impl AsRef<[u8]>) -> Vec<(NodeId, HandleId)> {
        lock(&self.shared.view).members(group.as_ref())
    }

    /// Waits for the next event (`None`: without limit). [`EvsError::Timeout`] when none came
    /// in time; [`EvsError::Closed`] / [`EvsError::Overflowed`] once the stream ended and
    /// everything queued before its end was read.
    pub fn recv(&self, timeout: Option<Duration>) -> Result<Event, EvsError> {
        let mut v = self.queue.take(1, timeout)?;
        Ok(v.pop().expect("take returns at least one event"))
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&self) -> Result<Option<Event>, EvsError> {
        match self.queue.take(1, Some(Duration::ZERO)) {
            Ok(mut v) => Ok(v.pop()),
            Err(EvsError::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits like [`recv`](Self::recv) for at least one event, then returns up to `max` of
    /// those queued (one lock for many events).
    pub fn recv_many(&self, max: usize, timeout: Option<Duration>) -> Result<Vec<Event>, EvsError> {
        self.queue.take(max, timeout)
    }

    /// Events waiting in this handle's queue.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// An eventfd that is readable while this handle has something to receive (an event, or
    /// the end of its stream). For `poll`/`select`/asyncio `add_reader`; reading from it is
    /// the handle's business (use `recv`), and it is valid as long as the handle lives:
    /// dropping the handle closes it at once (closing alone does not, as `as_fd` may have
    /// lent it out).
    pub fn fileno(&self) -> RawFd {
        self.queue.use_fd();
        self.efd.as_raw_fd()
    }

    /// Closes the handle: queued events are dropped, later calls return
    /// [`EvsError::Closed`], and the node multicasts a leave of its groups. Idempotent.
    pub fn close(&self) {
        if self.queue.ended() == Some(End::Closed) {
            return;
        }
        self.queue.end(End::Closed, true);
        // The driver may be gone already; then there is nothing left to leave.
        let _ = self.send(Command::Close { id: self.id });
    }
}

impl AsFd for Handle {
    /// The eventfd of [`Handle::fileno`], borrowed.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.queue.use_fd();
        self.efd.as_fd()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close();
        // The driver may hold the queue until it takes the close; the descriptor goes now
        // (with `self.efd`, the last reference once the queue let go of its own).
        self.queue.release_fd();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u32) -> Event {
        Event::ConfigChange {
            kind: totem::ConfigKind::Regular,
            ring_id: Default::default(),
            members: vec![i],
            left: Vec::new(),
            joined: Vec::new(),
        }
    }

    fn queue(capacity: usize) -> (EventQueue, Arc<Notify>) {
        let refill = Arc::new(Notify::new());
        (EventQueue::new(capacity, refill.clone()).unwrap(), refill)
    }

    /// Whether `n` holds a permit (a wake-up of the driver), consuming it.
    fn woken(n: &Notify) -> bool {
        let fut = n.notified();
        let mut fut = std::pin::pin!(fut);
        // A stored permit completes `notified` on its first poll.
        fut.as_mut().enable()
    }

    #[test]
    fn push_many_queues_what_fits_and_leaves_the_rest() {
        let (q, _) = queue(3);
        let mut batch = vec![ev(1), ev(2)];
        assert_eq!(q.push_many(&mut batch), (Push::Queued, 2));
        assert!(batch.is_empty());
        let mut batch = vec![ev(3), ev(4)];
        assert_eq!(q.push_many(&mut batch), (Push::Full, 1));
        assert_eq!(batch, vec![ev(4)]);
        let got = q.take(10, Some(Duration::ZERO)).unwrap();
        assert_eq!(got, vec![ev(1), ev(2), ev(3)]);
        assert_eq!(q.push_many(&mut batch), (Push::Queued, 1));
    }

    #[test]
    fn a_consumer_wakes_the_driver_once_half_the_queue_is_read() {
        let (q, refill) = queue(4);
        let mut batch: Vec<Event> = (1..=6).map(ev).collect();
        assert_eq!(q.push_many(&mut batch), (Push::Full, 4));
        q.take(1, Some(Duration::ZERO)).unwrap();
        assert!(!woken(&refill), "3 of 4 still queued: too early");
        q.take(1, Some(Duration::ZERO)).unwrap();
        assert!(woken(&refill), "half read: the driver is woken");
        q.take(1, Some(Duration::ZERO)).unwrap();
        assert!(!woken(&refill), "once per refill");
    }

    #[test]
    fn an_overflow_keeps_what_waited_and_names_whose_events_filled_it() {
        let (q, _) = queue(2);
        let mut batch = vec![ev(1), ev(2), ev(3)];
        q.push_many(&mut batch);
        let why = q.end_overflowed(batch, |e| *e == ev(3));
        assert_eq!(why, Overflow::Consumer);
        let got = q.take(10, Some(Duration::ZERO)).unwrap();
        assert_eq!(got, vec![ev(1), ev(2), ev(3)]);
        assert!(matches!(
            q.take(1, Some(Duration::ZERO)),
            Err(EvsError::Overflowed(Overflow::Consumer))
        ));
        let mut batch = vec![ev(5)];
        assert_eq!(q.push_many(&mut batch), (Push::Gone, 0));

        let (q, _) = queue(2);
        let mut batch = vec![ev(1), ev(2)];
        q.push_many(&mut batch);
        assert_eq!(
            q.end_overflowed([ev(2)], |e| *e == ev(2)),
            Overflow::OwnMessages
        );
    }

    #[test]
    fn eventfd_catches_up_when_first_asked_for() {
        let (q, _) = queue(8);
        let efd = q.eventfd().unwrap();
        q.push(ev(1));
        // Not handed out yet: nothing was written to it.
        assert!(efd.read().is_err());
        q.use_fd();
        assert_eq!(efd.read().unwrap(), 1);
        // read() above cleared the counter behind the queue's back; restore it.
        efd.write(1).unwrap();
        q.take(1, Some(Duration::ZERO)).unwrap();
        assert!(efd.read().is_err(), "empty queue: not readable");
        q.push(ev(2));
        assert_eq!(efd.read().unwrap(), 1);
    }

    #[test]
    fn a_released_eventfd_is_no_longer_the_queues() {
        let (q, _) = queue(8);
        let efd = q.eventfd().unwrap();
        q.use_fd();
        q.release_fd();
        assert!(q.eventfd().is_none());
        assert_eq!(
            Arc::strong_count(&efd),
            1,
            "the holder's is the last reference"
        );
        q.push(ev(1)); // the driver may still push: no descriptor is touched
        assert!(efd.read().is_err());
        assert_eq!(q.len(), 1);
    }
}
