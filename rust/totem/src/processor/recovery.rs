//! RECOVERY (re-sending the old ring's messages on the new ring) and installation of the new
//! ring with the delivery order extended virtual synchrony requires.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::types::{Guarantee, Instant, NodeId};
use crate::wire::{self, CommitToken, Decoded, OrfToken, Packet};

use super::membership::{has, Quarantine};
use super::sort_queue::{Slot, SortQueue};
use super::{ConfigChange, ConfigKind, Event, Phase, Processor};

/// What a processor remembers of its old ring while it forms a new one, so that a failed
/// attempt can be undone and the old ring's messages delivered at installation.
#[derive(Copy, Clone, Debug)]
pub(super) struct OldRingState {
    pub(super) aru: u64,
    pub(super) high_seq: u64,
}

/// What exists only in RECOVERY: the queue of the ring being formed, the old ring's messages
/// left to re-send on it, and the progress towards installation. Created by `recovery_enter`,
/// consumed by `install`, dropped when the attempt fails.
#[derive(Debug)]
pub(super) struct Recovery {
    /// Members of the ring being formed (`latest_ring`); Corosync's `my_new_memb`.
    pub(super) forming_memb: Vec<NodeId>,
    /// Members of the ring being formed that come from this processor's installed ring: the
    /// transitional configuration.
    pub(super) trans_memb: Vec<NodeId>,
    /// Messages of the ring being formed (recovery traffic first); the regular queue once the
    /// ring is installed.
    pub(super) queue: SortQueue,
    /// Old-ring packets to re-send, encapsulated.
    pub(super) retrans_queue: VecDeque<Bytes>,
    pub(super) set_retrans_flg: bool,
    pub(super) retrans_flg_count: u32,
    pub(super) install_seq: u64,
    pub(super) rotation_counter: u32,
    /// The representative created the ring's first ORF token.
    pub(super) originated_orf_token: bool,
    /// Highest old-ring sequence number delivered by any transitional member before the
    /// failure: SAFE messages up to it were safe in the old regular configuration.
    pub(super) high_ring_delivered: u64,
}

impl Recovery {
    /// RECOVERY completion (Corosync's retrans_flg / install_seq / rotation counter logic).
    /// Returns true when the new configuration must be installed.
    fn progress(&mut self, tok: &mut OrfToken) -> bool {
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
}

impl Processor {
    /// RECOVERY completion, on a token visit: true when the new configuration must be
    /// installed (never outside RECOVERY).
    pub(super) fn recovery_progress(&mut self, tok: &mut OrfToken) -> bool {
        self.recovery_mut().is_some_and(|r| r.progress(tok))
    }

    pub(super) fn recovery_enter(&mut self, now: Instant, ct: CommitToken) {
        let Some(old) = self.old_state else {
            return;
        };
        self.new_epoch();
        let forming_memb: Vec<NodeId> = ct.members.iter().map(|m| m.node).collect();
        let trans_memb: Vec<NodeId> = ct
            .members
            .iter()
            .filter(|m| {
                m.old_ring_id == self.installed_ring && self.installed_memb.contains(&m.node)
            })
            .map(|m| m.node)
            .collect();

        // Every old-ring message some transitional member may lack is re-sent by everyone
        // holding it: from the lowest aru of the transitional members to our highest seq.
        let mut low = old.high_seq;
        let mut high_delivered = self.cfg.initial_seq;
        for m in &ct.members {
            if trans_memb.contains(&m.node) {
                low = low.min(m.aru);
                high_delivered = high_delivered.max(m.high_delivered);
            }
        }
        // Nothing at or below the released point is held, and a commit token cannot make us
        // walk further back than that.
        let low = low.max(self.regular_queue.base);
        let mut retrans_queue = VecDeque::new();
        let mut seq = low + 1;
        while seq <= old.high_seq {
            if let Some(slot) = self.regular_queue.get(seq) {
                retrans_queue.push_back(slot.raw.clone());
            }
            seq += 1;
        }

        let s0 = self.cfg.initial_seq;
        self.phase = Phase::Recovery(Recovery {
            forming_memb,
            trans_memb,
            queue: SortQueue::new(s0),
            retrans_queue,
            set_retrans_flg: false,
            retrans_flg_count: 0,
            install_seq: s0,
            rotation_counter: 0,
            originated_orf_token: false,
            high_ring_delivered: high_delivered,
        });
        self.aru = s0;
        self.high_seq = s0;
        self.last_aru = s0;
        self.safe_bound = s0;
        self.aru_count = 0;
        self.seq_unchanged = 0;
        self.last_token_seq_value = None;
        self.token_seq_seen = None;
        self.forward_commit(now, ct);
    }

    /// Moves one recovered (encapsulated) message of our old ring into the old ring's queue,
    /// and extends the saved old-ring state over it: we now hold it, whatever happens to the
    /// ring being formed.
    pub(super) fn unwrap_recovered(&mut self, slot: &Slot) {
        let Ok(Decoded {
            sender,
            packet: Packet::Mcast(inner),
        }) = wire::decode(&slot.payload)
        else {
            return;
        };
        if inner.ring_id != self.installed_ring || inner.encapsulated {
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
            .regular_queue
            .insert(seq, restored, self.cfg.sort_queue_capacity)
            .is_ok()
        {
            if let Some(old) = self.old_state.as_mut() {
                old.high_seq = old.high_seq.max(seq);
                while self.regular_queue.has(old.aru + 1) {
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
    pub(super) fn release_recovered(&mut self, to: u64) {
        let to = to.min(self.aru);
        while let Some(r) = self.recovery().filter(|r| r.queue.base < to) {
            let seq = r.queue.base + 1;
            let Some(slot) = r.queue.get(seq).cloned() else {
                break;
            };
            if !slot.encapsulated {
                break;
            }
            self.unwrap_recovered(&slot);
            if let Some(r) = self.recovery_mut() {
                r.queue.release_to(seq);
            }
        }
    }

    /// Installs the new ring in the order extended virtual synchrony requires: old-ring
    /// messages up to the first gap (regular configuration), the transitional configuration,
    /// the remaining old-ring messages of transitional members, the regular configuration.
    pub(super) fn install(&mut self, now: Instant) {
        // The RECOVERY state's data ends here: the state is OPERATIONAL from now on (nothing
        // below depends on the state).
        let Phase::Recovery(rec) = std::mem::replace(&mut self.phase, Phase::Operational) else {
            invariant!(false, "{}: install outside RECOVERY", self.me);
            return;
        };
        // Preconditions: a ring newer than the installed one, the old ring's state saved at
        // COMMIT, and a transitional configuration of members of both rings that includes this
        // processor (our own commit token entry named our installed ring).
        invariant!(
            self.latest_ring.seq > self.installed_ring.seq && self.old_state.is_some(),
            "{}: installing {:?} over {:?} (old state {:?})",
            self.me,
            self.latest_ring,
            self.installed_ring,
            self.old_state
        );
        invariant!(
            rec.trans_memb.contains(&self.me)
                && rec
                    .trans_memb
                    .iter()
                    .all(|n| has(&rec.forming_memb, *n) && has(&self.installed_memb, *n)),
            "{}: transitional members {:?} of {:?} (installed {:?})",
            self.me,
            rec.trans_memb,
            rec.forming_memb,
            self.installed_memb
        );
        let old_ring = self.installed_ring;

        // 1. Unwrap the recovered messages still in the recovery queue into the old ring's
        // queue (those all members held were unwrapped and released during RECOVERY). Recovery
        // traffic is the leading run of encapsulated messages of the new ring; new messages of
        // members that installed before us may already follow it.
        let mut boundary = rec.queue.base;
        let mut leading = true;
        let mut seq = rec.queue.base + 1;
        while seq <= self.high_seq {
            let slot = rec.queue.get(seq).cloned();
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
            let Some(slot) = self.regular_queue.get(seq) else {
                break;
            };
            if slot.guarantee == Guarantee::Safe
                && seq > rec.high_ring_delivered
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
            .installed_memb
            .iter()
            .filter(|n| !rec.trans_memb.contains(n))
            .copied()
            .collect();
        let joined: Vec<NodeId> = rec
            .forming_memb
            .iter()
            .filter(|n| !rec.trans_memb.contains(n))
            .copied()
            .collect();
        if self.installed_any {
            self.events.push_back(Event::ConfigChange(ConfigChange {
                kind: ConfigKind::Transitional,
                ring_id: self.latest_ring,
                members: rec.trans_memb.clone(),
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
            match self.regular_queue.get(seq) {
                Some(slot) if !gap || rec.trans_memb.contains(&slot.sender) => {
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
            ring_id: self.latest_ring,
            members: rec.forming_memb.clone(),
            left: Vec::new(),
            joined,
        }));

        // 9. The recovery queue becomes the regular queue; recovery traffic counts as delivered.
        self.regular_queue = rec.queue;
        self.installed_ring = self.latest_ring;
        self.high_delivered = boundary;
        self.safe_bound = boundary;
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
            if *q == self.me || rec.forming_memb.contains(q) {
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
        for q in &rec.forming_memb {
            self.quarantine.remove(q);
        }
        self.installed_memb = rec.forming_memb;
        self.proc_set = self.installed_memb.iter().copied().collect();
        self.fail_set.clear();
        self.failed_at.clear();
        self.taken_back.clear();
        self.installed_any = true;
        self.new_epoch();
        self.stats.rings_formed += 1;
    }
}
