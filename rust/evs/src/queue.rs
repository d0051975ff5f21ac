//! One handle's bounded event queue ([`EventQueue`]), filled by the driver and emptied by the
//! application, and the eventfd that makes it pollable. The only thing the driver does with a
//! queue is [`EventQueue::push_many`] (and the refills and ends around it), which never blocks:
//! the queue mutex is held by a consumer only for a pop.
//!
//! The policy for slow consumers is in the public docs of `crate::handle` ("Slow
//! consumers").

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::Notify;

use crate::event::{Event, EvsError, Overflow};

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
    pub(crate) fn error(self) -> EvsError {
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
    pub(crate) fn use_fd(&self) {
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
    pub(crate) fn release_fd(&self) {
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
    pub(crate) fn take(
        &self,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<Event>, EvsError> {
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
