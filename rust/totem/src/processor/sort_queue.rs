//! The sort queues: messages of one ring indexed by sequence number, and the all-received-up-to
//! (aru) of the queue this processor works on.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::stats::Ignored;
use crate::types::{Guarantee, NodeId};

use super::{Phase, Processor};

/// A message held in a sort queue: what delivery needs, and the packet as received, which is
/// what a retransmission sends again.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    /// Sender of the packet (for an encapsulated packet: the processor that re-sent it).
    pub(super) sender: NodeId,
    pub(super) guarantee: Guarantee,
    pub(super) encapsulated: bool,
    pub(super) payload: Bytes,
    pub(super) raw: Bytes,
    /// Times this processor re-sent it on request.
    pub(super) resent: u32,
}

/// Messages of one ring indexed by sequence number, from just above the last released one.
#[derive(Debug)]
pub(super) struct SortQueue {
    /// Highest released sequence number; `slots[i]` holds `base + 1 + i`.
    pub(super) base: u64,
    pub(super) slots: VecDeque<Option<Slot>>,
    /// Token visits each missing slot was seen missing, parallel to `slots`.
    pub(super) misses: VecDeque<u32>,
}

impl SortQueue {
    pub(super) fn new(base: u64) -> Self {
        SortQueue {
            base,
            slots: VecDeque::new(),
            misses: VecDeque::new(),
        }
    }

    pub(super) fn index(&self, seq: u64) -> Option<usize> {
        if seq <= self.base {
            return None;
        }
        usize::try_from(seq - self.base - 1).ok()
    }

    pub(super) fn get(&self, seq: u64) -> Option<&Slot> {
        self.index(seq)
            .and_then(|i| self.slots.get(i))
            .and_then(Option::as_ref)
    }

    pub(super) fn get_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        self.index(seq)
            .and_then(|i| self.slots.get_mut(i))
            .and_then(Option::as_mut)
    }

    pub(super) fn has(&self, seq: u64) -> bool {
        self.get(seq).is_some()
    }

    /// Stores `slot` at `seq`. `capacity` bounds how far beyond `base` a slot may be.
    pub(super) fn insert(&mut self, seq: u64, slot: Slot, capacity: u64) -> Result<(), Ignored> {
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
        invariant!(self.slots.len() == self.misses.len());
        Ok(())
    }

    /// Counts one more token visit on which `seq` was missing; returns the new count.
    pub(super) fn bump_miss(&mut self, seq: u64, capacity: u64) -> u32 {
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
    pub(super) fn release_to(&mut self, seq: u64) {
        while self.base < seq {
            self.slots.pop_front();
            self.misses.pop_front();
            self.base += 1;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }
}

impl Processor {
    /// The queue of the ring this processor works on: the recovery queue in RECOVERY, the
    /// regular queue otherwise.
    pub(super) fn current_queue(&self) -> &SortQueue {
        match &self.phase {
            Phase::Recovery(r) => &r.queue,
            _ => &self.regular_queue,
        }
    }

    pub(super) fn current_queue_mut(&mut self) -> &mut SortQueue {
        match &mut self.phase {
            Phase::Recovery(r) => &mut r.queue,
            _ => &mut self.regular_queue,
        }
    }

    pub(super) fn advance_aru(&mut self) {
        let mut aru = self.aru;
        let q = self.current_queue();
        while q.has(aru + 1) {
            aru += 1;
        }
        self.aru = aru;
    }
}
