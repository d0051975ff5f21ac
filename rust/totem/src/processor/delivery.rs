//! Multicasts of this processor's rings into the sort queues, and delivery to the application.

use bytes::Bytes;

use crate::stats::Ignored;
use crate::types::{Guarantee, Instant, NodeId, RingId};
use crate::wire::Mcast;

use super::sort_queue::Slot;
use super::{Delivery, Event, Phase, Processor, State};

impl Processor {
    pub(super) fn on_mcast(&mut self, now: Instant, sender: NodeId, m: Mcast, raw: Bytes) {
        if sender == self.me {
            self.ignore(Ignored::OwnPacket);
            return;
        }
        let into_regular = matches!(self.state(), State::Operational | State::Gather)
            && self.old_state.is_none()
            && m.ring_id == self.installed_ring;
        let into_recovery = self.state() == State::Recovery && m.ring_id == self.latest_ring;
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
        let queue = match &mut self.phase {
            Phase::Recovery(r) if into_recovery => &mut r.queue,
            _ => &mut self.regular_queue,
        };
        if let Err(why) = queue.insert(seq, slot, cap) {
            self.ignore(why);
            return;
        }
        self.high_seq = self.high_seq.max(seq);
        self.advance_aru();
        if self.state() == State::Operational {
            self.deliver_ready();
        }
    }

    /// Delivers, in order, every regular-queue message that is contiguous and (for SAFE) known
    /// to be held by every member.
    pub(super) fn deliver_ready(&mut self) {
        while self.high_delivered < self.aru {
            let seq = self.high_delivered + 1;
            let Some(slot) = self.regular_queue.get(seq) else {
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
            let ring = self.installed_ring;
            self.deliver_slot(ring, seq, &slot);
        }
    }

    pub(super) fn deliver_slot(&mut self, ring_id: RingId, seq: u64, slot: &Slot) {
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
}
