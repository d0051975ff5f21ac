//! The EVS handle: what an application holds to join groups, multicast and receive.
//!
//! A [`Handle`] runs on application threads. It validates and encodes what it sends (the
//! driver only moves bytes), charges the node's send budget (`budget.rs`: a full send
//! queue is backpressure), hands submissions to the driver through the command queue, and
//! reads its own event queue (`queue.rs`: bounded, pollable through an eventfd, with the
//! driver's delivery buffer behind it so that a slow consumer is cut off only after a burst
//! larger than the cluster can have in flight).
//!
//! # Slow consumers
//!
//! A handle's queue holds at most its capacity of events (default [`DEFAULT_QUEUE_CAPACITY`]).
//! When the driver has events for a handle whose queue is full, it does not wait and does not
//! drop them: it keeps them, in order, in the handle's **delivery buffer** (held by the
//! driver), and moves them into the queue as the consumer reads (a consumer that
//! has read the queue down to half its capacity wakes the driver for that). The buffer is
//! bounded in bytes by `delivery_buffer_bytes` (configuration); its default is what the whole
//! cluster can have in flight when partitions merge, so a consumer that keeps up with the
//! cluster's steady rate is never closed by the burst that follows a heal.
//!
//! Only when the buffer is full too does the driver **close the handle** with
//! [`EvsError::Overflowed`], whose [`Overflow`](crate::event::Overflow) says whether the handle's own undelivered
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

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use nix::sys::eventfd::EventFd;

use crate::command::{Command, CommandSender};
use crate::event::{group_list, Event, EvsError, Guarantee, HandleId, NodeId, MAX_GROUPS};
use crate::groups;
use crate::queue::{End, EventQueue};
use crate::shared::Shared;
use evs_engine::{Intent, Submission};

pub use crate::queue::DEFAULT_QUEUE_CAPACITY;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; carry on with it
    // rather than poisoning the driver.
    m.lock().unwrap_or_else(|p| p.into_inner())
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
