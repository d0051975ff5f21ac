//! The delivery buffer: events the driver holds for a handle whose queue is full.
//!
//! This module owns one handle's buffer ([`Backlog`]: events in delivery order and their size
//! in bytes), how an event is sized ([`event_bytes`]) and the default bound
//! ([`auto_limit`]). It never blocks and never touches the network: the driver appends what
//! did not fit in a handle's queue, moves events back into the queue as the consumer makes
//! room (see [`crate::queue`] for the wake-up), and closes the handle when a buffer would
//! grow past its bound.
//!
//! # Why a bound in bytes, and why this default
//!
//! A burst is made of bytes, not events: when partitions merge (or a flapping period ends),
//! every member sends what its send budget held back, `send_queue_bytes` each, within a few
//! token rotations, and the messages already on the wire (at most `window_size` packets of
//! `max_packet_size` per rotation) come on top. A queue bounded in events cannot be sized for
//! that, as the burst's event count depends on the message size; a buffer bounded in the same
//! unit as the send budget can. Messages are counted by their ring payload (what the sender's
//! budget was charged); configuration and group changes by a small estimate of theirs.

use std::collections::VecDeque;

use crate::event::Event;
use crate::groups::{group_list_len, APP_FIXED_OVERHEAD};
use crate::queue::{EventQueue, Push};

/// Bytes counted for a configuration or group change beyond its member lists.
const CHANGE_BYTES: usize = 32;

/// The size of `ev` as the buffer counts it: a message's ring payload (data, group list and
/// header, what its sender's send budget was charged), a change's member lists.
pub(crate) fn event_bytes(ev: &Event) -> usize {
    match ev {
        Event::Message { groups, data, .. } => {
            APP_FIXED_OVERHEAD - 1 + group_list_len(groups) + data.len()
        }
        Event::ConfigChange {
            members,
            left,
            joined,
            ..
        } => CHANGE_BYTES + 4 * (members.len() + left.len() + joined.len()),
        Event::GroupChange {
            group,
            members,
            joined,
            left,
        } => CHANGE_BYTES + group.len() + 8 * (members.len() + joined.len() + left.len()),
    }
}

/// The default bound (`delivery_buffer_bytes = "auto"`): what a ring of `ring_size` members
/// can deliver at once after a merge, with one more member's budget to spare:
/// `(ring_size + 1) × send_queue_bytes + window_size × max_packet_size`.
pub(crate) fn auto_limit(
    ring_size: usize,
    send_queue_bytes: usize,
    window_size: u32,
    max_packet_size: usize,
) -> usize {
    ring_size
        .saturating_add(1)
        .saturating_mul(send_queue_bytes)
        .saturating_add((window_size as usize).saturating_mul(max_packet_size))
}

/// One handle's buffered events, oldest first, and their size.
#[derive(Default)]
pub(crate) struct Backlog {
    events: VecDeque<Event>,
    bytes: usize,
}

impl Backlog {
    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes held (see [`event_bytes`]).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends `events` in order while the buffer stays within `limit` bytes. True if all of
    /// them fit; otherwise the first that did not and every later one are dropped (the
    /// caller closes the handle: the overflow is at that event).
    pub(crate) fn append(&mut self, events: &mut Vec<Event>, limit: usize) -> bool {
        for ev in events.drain(..) {
            let size = event_bytes(&ev);
            if self.bytes.saturating_add(size) > limit {
                return false;
            }
            self.bytes += size;
            self.events.push_back(ev);
        }
        true
    }

    /// Moves events, oldest first, into `queue` while it has room, and asks the consumer to
    /// wake the driver if some are left. Returns how many moved; if the queue has ended, the
    /// buffer is emptied.
    pub(crate) fn refill(&mut self, queue: &EventQueue, scratch: &mut Vec<Event>) -> usize {
        let room = queue.room();
        if room == 0 {
            return 0;
        }
        let n = room.min(self.events.len());
        scratch.clear();
        scratch.extend(self.events.drain(..n));
        let moved: usize = scratch.iter().map(event_bytes).sum();
        let (res, queued) = queue.push_many(scratch);
        if res == Push::Gone {
            self.clear();
            return 0;
        }
        // The consumer only makes room, so all fit; any that did not go back in front.
        let back: usize = scratch.iter().map(event_bytes).sum();
        for ev in scratch.drain(..).rev() {
            self.events.push_front(ev);
        }
        self.bytes -= moved - back;
        if !self.events.is_empty() {
            // The queue is full again with more to come: the consumer must call us back.
            queue.want_refill();
        }
        queued
    }

    /// Empties the buffer, returning its events in order.
    pub(crate) fn take_all(&mut self) -> VecDeque<Event> {
        self.bytes = 0;
        std::mem::take(&mut self.events)
    }

    pub(crate) fn clear(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use tokio::sync::Notify;

    use super::*;

    fn msg(i: u8, len: usize) -> Event {
        Event::Message {
            sender: 1,
            sender_handle: 1,
            groups: vec![Bytes::from_static(b"g")],
            data: Bytes::from(vec![i; len]),
            ring_id: Default::default(),
            seq: u64::from(i),
            index: 0,
            guarantee: crate::Guarantee::Agreed,
        }
    }

    #[test]
    fn a_message_counts_its_ring_payload() {
        // 2 (tag) + 4 (handle) + 1 (group count) + 1 + 1 (group "g") + 100 data bytes.
        let payload = crate::groups::encode_app(1, &[Bytes::from_static(b"g")], &[0; 100]);
        assert_eq!(event_bytes(&msg(0, 100)), payload.len());
    }

    #[test]
    fn append_stops_at_the_limit_and_refill_keeps_order() {
        let per = event_bytes(&msg(0, 10));
        let mut b = Backlog::default();
        let mut evs: Vec<Event> = (0..5).map(|i| msg(i, 10)).collect();
        assert!(!b.append(&mut evs, 3 * per), "5 events do not fit in 3");
        assert_eq!(b.bytes(), 3 * per);
        let q = EventQueue::new(2, Arc::new(Notify::new())).unwrap();
        let mut scratch = Vec::new();
        assert_eq!(b.refill(&q, &mut scratch), 2);
        assert_eq!(b.bytes(), per);
        assert_eq!(b.refill(&q, &mut scratch), 0, "queue full");
        let mut got = Vec::new();
        while let Some(e) = q.try_take() {
            got.push(e);
        }
        assert_eq!(b.refill(&q, &mut scratch), 1);
        assert!(b.is_empty() && b.bytes() == 0);
        while let Some(e) = q.try_take() {
            got.push(e);
        }
        assert_eq!(got, (0..3).map(|i| msg(i, 10)).collect::<Vec<_>>());
    }

    #[test]
    fn events_left_after_a_refill_make_the_consumer_wake_the_driver() {
        let per = event_bytes(&msg(0, 10));
        let mut b = Backlog::default();
        let mut evs: Vec<Event> = (0..5).map(|i| msg(i, 10)).collect();
        assert!(b.append(&mut evs, 10 * per));
        let refill = Arc::new(Notify::new());
        let q = EventQueue::new(2, refill.clone()).unwrap();
        let mut scratch = Vec::new();
        assert_eq!(b.refill(&q, &mut scratch), 2, "exactly the room");
        q.try_take().unwrap();
        let woken = {
            let fut = refill.notified();
            let mut fut = std::pin::pin!(fut);
            fut.as_mut().enable()
        };
        assert!(
            woken,
            "3 events still buffered: the reader must wake the driver"
        );
    }

    #[test]
    fn the_default_bound_covers_every_budget_and_a_window() {
        assert_eq!(auto_limit(3, 1 << 20, 50, 1400), 4 * (1 << 20) + 70_000);
        assert_eq!(auto_limit(usize::MAX, 2, 1, 1), usize::MAX);
    }
}
