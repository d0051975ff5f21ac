//! Membership: the COMMIT phase, the commit token's two rotations.

use crate::stats::Ignored;
use crate::types::{Instant, NodeId, RingId};
use crate::wire::{CommitMember, CommitToken, OrfToken, Packet, PacketType};

use super::recovery::OldRingState;
use super::timers::TimerKind;
use super::{mix64, Destination, Phase, Processor, State};

impl Processor {
    pub(super) fn create_commit_token(&mut self, now: Instant) {
        let members: Vec<NodeId> = self
            .proc_set
            .iter()
            .filter(|n| !self.fail_set.contains(n))
            .copied()
            .collect();
        let high = self.ring_seq_high.max(self.latest_ring.seq);
        // A processor that knows nothing of its past (`Start::ring_seq` 0) cannot tell which
        // ids its earlier incarnations created: from the same high-water mark of the others,
        // or of nobody when alone, it would create the same `(me, high + 4)` again, and packets
        // of that old configuration would pass for the new one's. It steps by a random
        // multiple of 4 instead (below 2^34, from its start seed and `high`), so two
        // incarnations collide with odds of about 2^-32.
        let step = match self.ring_salt {
            None => 4,
            Some(salt) => 4 + ((mix64(salt ^ high) & 0xFFFF_FFFF) << 2),
        };
        let seq = high.saturating_add(step);
        let ct = CommitToken {
            ring_id: RingId::new(self.me, seq),
            token_seq: 0,
            memb_index: 0,
            members: members
                .iter()
                .map(|&node| CommitMember {
                    node,
                    ..CommitMember::default()
                })
                .collect(),
        };
        self.commit_enter(now, ct);
    }

    pub(super) fn commit_enter(&mut self, now: Instant, mut ct: CommitToken) {
        let old = *self.old_state.get_or_insert(OldRingState {
            aru: self.aru,
            high_seq: self.high_seq,
        });
        let idx = usize::from(ct.memb_index);
        let Some(entry) = ct.members.get_mut(idx) else {
            return;
        };
        entry.old_ring_id = self.installed_ring;
        entry.aru = old.aru;
        entry.high_delivered = self.high_delivered;
        entry.received_flg = old.aru == old.high_seq;
        ct.memb_index += 1;

        self.new_epoch();
        self.phase = Phase::Commit {
            forming_memb: ct.members.iter().map(|m| m.node).collect(),
        };
        self.latest_ring = ct.ring_id;
        self.ring_seq_high = self.ring_seq_high.max(ct.ring_id.seq);
        self.cancel(TimerKind::Join);
        self.cancel(TimerKind::Consensus);
        self.cancel_token_timers();
        self.trc = 0;
        self.pbl = 0;
        self.token_seq_seen = None;
        // A new ring rotates at its own pace.
        self.rotations.clear();
        self.forwarded_at = None;
        self.retransmit_backoff = 0;
        self.forward_commit(now, ct);
    }

    pub(super) fn forward_commit(&mut self, now: Instant, mut ct: CommitToken) {
        // Both rotations go to the ring successor (members are in ring order).
        let n = ct.members.len();
        let next = match ct.members.iter().position(|m| m.node == self.me) {
            Some(i) => ct.members[(i + 1) % n].node,
            None => self.me,
        };
        ct.token_seq = ct.token_seq.wrapping_add(1);
        let data = self.send(Destination::Node(next), &Packet::Commit(ct));
        self.last_token = Some((next, data, PacketType::CommitToken));
        self.reset_token_timers(now);
    }

    pub(super) fn on_commit(&mut self, now: Instant, ct: CommitToken) {
        let n = ct.members.len();
        let well_formed = n > 0
            && usize::from(ct.memb_index) <= n
            && ct.members.windows(2).all(|w| w[0].node < w[1].node)
            && ct.members.iter().any(|m| m.node == self.me);
        if !well_formed {
            self.ignore(Ignored::WrongState);
            return;
        }
        match self.state() {
            State::Gather => {
                let expect: Vec<NodeId> = self
                    .proc_set
                    .iter()
                    .filter(|n| !self.fail_set.contains(n))
                    .copied()
                    .collect();
                let listed: Vec<NodeId> = ct.members.iter().map(|m| m.node).collect();
                let idx = usize::from(ct.memb_index);
                if listed == expect
                    && ct.ring_id.seq > self.latest_ring.seq
                    && idx < n
                    && ct.members[idx].node == self.me
                {
                    self.commit_enter(now, ct);
                } else {
                    self.ignore(Ignored::WrongState);
                }
            }
            State::Commit => {
                if ct.ring_id != self.latest_ring || usize::from(ct.memb_index) != n {
                    self.ignore(Ignored::WrongState);
                } else if self.own_commit_entry_intact(&ct) {
                    self.recovery_enter(now, ct);
                } else {
                    // Our entry holds what an earlier incarnation of this node wrote in the
                    // first rotation (it crashed in COMMIT; we, restarted, took the
                    // representative's retransmission of the same token, and a member
                    // forwarded its own copy): the others would recover, and we would install,
                    // from a state that is not ours (a transitional configuration without
                    // ourselves). This attempt cannot complete: a new round.
                    self.ignore(Ignored::InconsistentToken);
                    self.gather_enter(now);
                }
            }
            State::Recovery => {
                if ct.ring_id == self.latest_ring
                    && self.latest_ring.rep == self.me
                    && self.recovery().is_some_and(|r| !r.originated_orf_token)
                {
                    if let Some(r) = self.recovery_mut() {
                        r.originated_orf_token = true;
                    }
                    let s0 = self.cfg.initial_seq;
                    let tok = OrfToken {
                        ring_id: self.latest_ring,
                        token_seq: 0,
                        seq: s0,
                        aru: s0,
                        aru_addr: 0,
                        backlog: 0,
                        fcc: 0,
                        retrans_flg: false,
                        rtr: Vec::new(),
                    };
                    self.process_token(now, tok);
                } else {
                    self.ignore(Ignored::WrongState);
                }
            }
            _ => self.ignore(Ignored::WrongState),
        }
    }

    /// Whether the second-rotation commit token `ct` carries, for this processor, what
    /// `commit_enter` wrote in the first rotation.
    pub(super) fn own_commit_entry_intact(&self, ct: &CommitToken) -> bool {
        let Some(old) = self.old_state else {
            return false;
        };
        ct.members.iter().any(|m| {
            m.node == self.me
                && m.old_ring_id == self.installed_ring
                && m.aru == old.aru
                && m.received_flg == (old.aru == old.high_seq)
        })
    }
}
