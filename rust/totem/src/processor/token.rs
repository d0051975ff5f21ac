//! The ORF token: acceptance checks, one visit (retransmissions, flow control, new
//! multicasts, the aru rule), hold and forwarding.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::stats::Ignored;
use crate::types::{Guarantee, Instant, NodeId, RingId};
use crate::wire::{self, Mcast, OrfToken, Packet, PacketType};

use super::retransmit::ROTATION_SAMPLES;
use super::sort_queue::Slot;
use super::timers::TimerKind;
use super::{Destination, Processor, State};

impl Processor {
    pub(super) fn on_hold_cancel(&mut self, now: Instant, sender: NodeId, ring: RingId) {
        if sender == self.me {
            self.ignore(Ignored::OwnPacket);
            return;
        }
        if ring != self.latest_ring || !matches!(self.state(), State::Operational | State::Recovery)
        {
            self.ignore(Ignored::ForeignRing);
            return;
        }
        self.seq_unchanged = 0;
        if self.holding {
            self.release_held_token(now);
        } else if self.state() == State::Operational {
            self.expect_token_soon(now);
        }
    }

    pub(super) fn on_token(&mut self, now: Instant, sender: NodeId, tok: OrfToken) {
        if !matches!(self.state(), State::Operational | State::Recovery) {
            self.ignore(Ignored::WrongState);
            return;
        }
        if tok.ring_id != self.latest_ring {
            self.ignore(Ignored::ForeignRing);
            return;
        }
        // The token only ever travels from a member to its successor. A copy from anyone else
        // is a datagram redirected on its way (the frame's MAC names no destination, so an
        // on-path attacker without the key can do it): accepting it would make two members
        // hold the token at once and hand out the same sequence numbers. Found by the `ring`
        // fuzz target.
        if sender != self.predecessor() {
            self.ignore(Ignored::InconsistentToken);
            return;
        }
        if let Some(seen) = self.token_seq_seen {
            if tok.token_seq <= seen {
                self.ignore(Ignored::DuplicateToken);
                return;
            }
        }
        // A correct token orders everything this processor holds, covers no more than it
        // ordered, names a member (or no one) as holding the aru down, and stays inside the
        // sort queue. Anything else is replayed or forged, and
        // accepting it would hand out sequence numbers twice.
        let base = self.current_queue().base;
        if tok.seq < self.high_seq
            || tok.aru > tok.seq
            || (tok.aru_addr != 0 && !self.ring_members().contains(&tok.aru_addr))
            || tok.seq.saturating_sub(base) > self.cfg.sort_queue_capacity
            || tok.rtr.iter().any(|&s| s > tok.seq)
        {
            self.ignore(Ignored::InconsistentToken);
            return;
        }
        self.process_token(now, tok);
    }

    pub(super) fn process_token(&mut self, now: Instant, mut tok: OrfToken) {
        let operational = self.state() == State::Operational;
        self.token_seq_seen = Some(tok.token_seq);
        if let Some(at) = self.forwarded_at.take() {
            if self.rotations.len() == ROTATION_SAMPLES {
                self.rotations.pop_front();
            }
            self.rotations.push_back(now - at);
        }
        self.retransmit_backoff = 0;
        self.holding = false;
        self.cancel(TimerKind::Hold);

        // Rotation time, measured by every member between its own visits on one ring (a
        // visit on a new ring starts over: the gap across a membership change is no rotation).
        if let Some((ring, prev)) = self.last_token_at {
            if ring == self.latest_ring {
                let rot = now - prev;
                self.stats.last_rotation = rot;
                self.stats.mean_rotation = if self.stats.mean_rotation.is_zero() {
                    rot
                } else {
                    (self.stats.mean_rotation * 7 + rot) / 8
                };
                self.stats.token_rotations += 1;
            }
        }
        self.last_token_at = Some((self.latest_ring, now));

        // Idle detection drives token hold and merge detection.
        if self.last_token_seq_value == Some(tok.seq) {
            self.seq_unchanged = self.seq_unchanged.saturating_add(1);
            if !self.is_armed(TimerKind::MergeDetect) {
                self.arm(TimerKind::MergeDetect, now + self.cfg.merge);
            }
        } else {
            self.seq_unchanged = 0;
            self.cancel(TimerKind::MergeDetect);
        }
        self.last_token_seq_value = Some(tok.seq);
        let rep = self.latest_ring.rep == self.me;
        let threshold = self.cfg.seqno_unchanged_const;
        self.token_held = if rep {
            self.seq_unchanged > threshold
        } else {
            self.seq_unchanged >= threshold
        };
        if !self.token_held {
            self.hold_cancel_sent = false;
        }

        // Garbage collection: messages every member holds (two visits) and we delivered.
        let prev_aru = self.last_aru;
        if operational {
            let to = tok.aru.min(prev_aru).min(self.high_delivered);
            self.regular_queue.release_to(to);
            self.safe_bound = if self.cfg.inject_safe_one_visit() {
                tok.aru
            } else {
                tok.aru.min(prev_aru)
            };
        } else {
            self.release_recovered(tok.aru.min(prev_aru));
        }
        self.last_aru = tok.aru;

        let mut allowed = self.fcc_allowed(&tok);

        // Answer retransmission requests first. A request we answered before is asked again:
        // our copy did not reach the requester (a link from us to it may be cut one way), so
        // answer again and leave the request for the next holder too. Otherwise the member
        // after the requester would answer every time, and a member that cannot hear it
        // would never get the message.
        let mut rtr_sent = 0u32;
        if !tok.rtr.is_empty() {
            let mut keep = Vec::with_capacity(tok.rtr.len());
            for &seq in &tok.rtr {
                let have = if rtr_sent >= allowed {
                    None
                } else {
                    self.current_queue_mut().get_mut(seq).map(|s| {
                        s.resent = s.resent.saturating_add(1);
                        (s.raw.clone(), s.resent > 1)
                    })
                };
                match have {
                    Some((raw, again)) => {
                        rtr_sent += 1;
                        self.stats.retransmits_sent += 1;
                        self.send_raw(Destination::Multicast, raw, PacketType::Mcast);
                        if again {
                            keep.push(seq);
                        }
                    }
                    _ => keep.push(seq),
                }
            }
            tok.rtr = keep;
        }
        allowed -= rtr_sent;

        // Ask for what we miss, once it was missing for miss_count_const visits.
        self.request_missing(&mut tok);

        // Never let the sort queue overflow.
        let base = self.current_queue().base;
        let cap = self.cfg.sort_queue_capacity;
        let window = u64::from(self.cfg.window_size);
        if tok.seq.saturating_add(u64::from(allowed) + window) > base.saturating_add(cap) {
            allowed = 0;
        }

        // Send new messages (old-ring messages during RECOVERY).
        let sent_new = self.send_new(&mut tok, allowed);
        self.advance_aru();

        // Flow control bookkeeping: replace our contribution from the previous rotation.
        let sent = rtr_sent + sent_new;
        let cbl = self.backlog();
        tok.fcc = (i64::from(tok.fcc) + i64::from(sent) - i64::from(self.trc))
            .clamp(0, i64::from(u32::MAX)) as u32;
        tok.backlog = (i64::from(tok.backlog) + i64::from(cbl) - i64::from(self.pbl))
            .clamp(0, i64::from(u32::MAX)) as u32;
        self.trc = sent;
        self.pbl = cbl;

        // The ARU rule: anyone may lower it; only the one who lowered it (or anyone, if no one
        // holds it down) may raise it.
        if self.aru < tok.aru || tok.aru_addr == self.me || tok.aru_addr == 0 {
            tok.aru = self.aru;
            tok.aru_addr = if tok.aru == tok.seq { 0 } else { self.me };
        }

        // Fail to receive: we keep holding the aru down while others cannot help us.
        if tok.aru == prev_aru && tok.aru_addr != 0 {
            self.aru_count = self.aru_count.saturating_add(1);
        } else {
            self.aru_count = 0;
        }
        if self.aru_count > self.cfg.fail_recv_const && tok.aru_addr == self.me {
            // Tokens reach us but the messages they order do not, retransmissions included:
            // typically a path that loses big datagrams (an MTU black hole). Corosync forms a
            // ring alone here, and its small joins show two-way contact, so it is merged back
            // and starves the ring again. We report not hearing the ring's members instead,
            // until a full-size packet of each reaches us: the membership splits us off like a
            // host with a dead receive path, and quarantine keeps us off until padded probes
            // show the path carries full-size datagrams again.
            self.stats.failed_to_receive += 1;
            self.deaf_from.extend(
                self.installed_memb
                    .iter()
                    .copied()
                    .filter(|&n| n != self.me),
            );
            self.aru_count = 0;
            self.gather_enter(now);
            return;
        }

        let mut install = false;
        if self.state() == State::Recovery {
            install = self.recovery_progress(&mut tok);
        }

        invariant!(
            tok.aru <= tok.seq && self.aru <= tok.seq && self.high_seq <= tok.seq,
            "{}: forwarding a token with aru {} and seq {} (own aru {}, high seq {})",
            self.me,
            tok.aru,
            tok.seq,
            self.aru,
            self.high_seq
        );
        tok.token_seq = tok.token_seq.saturating_add(1);
        let to = self.successor();
        let data = Bytes::from(wire::encode(self.me, &Packet::Token(tok.clone())));
        self.last_token = Some((to, data.clone(), PacketType::OrfToken));
        // Hold only a quiescent ring. Unlike Corosync, a ring where someone still misses a
        // message (aru below seq) is not idle: holding it would slow repair to one rotation per
        // hold period. `cancel_token_hold_on_retransmit` additionally forwards when requests or
        // retransmissions were on this visit.
        let quiescent = tok.aru == tok.seq;
        let hold = rep
            && self.token_held
            && operational
            && quiescent
            && sent_new == 0
            && self.packer.is_empty()
            && !(self.cfg.cancel_token_hold_on_retransmit && (rtr_sent > 0 || !tok.rtr.is_empty()));
        if install {
            self.install(now);
        }
        if hold {
            self.holding = true;
            let h = self.timeouts().hold;
            self.arm(TimerKind::Hold, now + h);
            let t = self.timeouts();
            self.arm(TimerKind::TokenLoss, now + t.heartbeat.unwrap_or(t.token));
            self.cancel(TimerKind::TokenRetransmit);
        } else {
            // Accelerated Ring: the last `accelerated_window` new multicasts of this visit
            // (the tail of the transmit queue: nothing was queued after them in the
            // operational state) go out after the token.
            let post = if operational {
                let k = self.cfg.accelerated_window.min(sent_new) as usize;
                self.transmits
                    .split_off(self.transmits.len() - k.min(self.transmits.len()))
            } else {
                VecDeque::new()
            };
            self.send_raw(Destination::Node(to), data, PacketType::OrfToken);
            self.transmits.extend(post);
            self.forwarded_seq = Some((self.latest_ring, tok.seq));
            // A rotation that the representative may hold is no sample of the rotation time.
            self.forwarded_at = (!self.may_be_held()).then_some(now);
            self.reset_token_timers(now);
        }
        if self.state() == State::Operational {
            self.deliver_ready();
        }
    }

    pub(super) fn release_held_token(&mut self, now: Instant) {
        self.holding = false;
        self.cancel(TimerKind::Hold);
        if let Some((to, data, kind)) = self.last_token.clone() {
            self.send_raw(Destination::Node(to), data, kind);
            self.forwarded_at = Some(now);
            self.reset_token_timers(now);
        }
    }

    pub(super) fn backlog(&self) -> u32 {
        let n = match self.recovery() {
            Some(r) => r.retrans_queue.len(),
            None => self.packer.backlog_packets(self.cfg.payload_budget()),
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// How many packets this visit may send (Corosync's `fcc_calculate`, with the paper's
    /// current backlog in the proportional share).
    pub(super) fn fcc_allowed(&self, tok: &OrfToken) -> u32 {
        let mut allowed = self
            .cfg
            .max_messages
            .min(self.cfg.window_size.saturating_sub(tok.fcc));
        let cbl = i64::from(self.backlog());
        let denom = i64::from(tok.backlog) + cbl - i64::from(self.pbl);
        if denom > 0 {
            let share = i64::from(self.cfg.window_size) * cbl / denom;
            if share > 0 && i64::from(allowed) > share {
                allowed = share as u32;
            }
        }
        allowed
    }

    /// Originates up to `allowed` multicasts, stamping each with the next sequence number.
    pub(super) fn send_new(&mut self, tok: &mut OrfToken, allowed: u32) -> u32 {
        let mut sent = 0;
        let budget = self.cfg.payload_budget();
        while sent < allowed {
            let (guarantee, payload, encapsulated) = if let Some(r) = self.recovery_mut() {
                match r.retrans_queue.pop_front() {
                    Some(inner) => {
                        self.stats.recovery_messages_originated += 1;
                        (Guarantee::Agreed, inner, true)
                    }
                    None => break,
                }
            } else {
                match self.packer.next_payload(budget) {
                    Some((g, p)) => (g, p, false),
                    None => break,
                }
            };
            tok.seq += 1;
            let seq = tok.seq;
            let m = Mcast {
                ring_id: self.latest_ring,
                seq,
                guarantee,
                encapsulated,
                payload,
            };
            let raw = Bytes::from(wire::encode(self.me, &Packet::Mcast(m.clone())));
            let slot = Slot {
                sender: self.me,
                guarantee,
                encapsulated,
                payload: m.payload,
                raw: raw.clone(),
                resent: 0,
            };
            let cap = self.cfg.sort_queue_capacity;
            // Cannot fail: seq is new and flow control kept it inside the window.
            let _ = self.current_queue_mut().insert(seq, slot, cap);
            self.high_seq = self.high_seq.max(seq);
            self.send_raw(Destination::Multicast, raw, PacketType::Mcast);
            sent += 1;
        }
        sent
    }
}
