//! Retransmission: of the token (fast retransmission from the measured rotation), and
//! requests for missing multicasts on the token.

use std::time::Duration;

use crate::types::Instant;
use crate::wire::OrfToken;

use super::timers::TimerKind;
use super::{Processor, State};

/// Rotation samples kept for the fast token retransmission (a windowed minimum, so that
/// rotations slowed by a lost token, retransmitted by someone else, do not inflate it).
pub(super) const ROTATION_SAMPLES: usize = 16;
/// The fast token retransmission never fires sooner than this after a forward.
pub(super) const FAST_RETRANSMIT_MIN: Duration = Duration::from_millis(2);
/// Added to twice the rotation estimate: scheduling and queueing jitter.
pub(super) const FAST_RETRANSMIT_MARGIN: Duration = Duration::from_millis(1);
/// Successive fast retransmissions wait 2, 4, then 8 times longer, and no longer: losses are
/// independent, so waiting longer only adds latency, and the cost of a duplicate token is one
/// small packet.
pub(super) const FAST_RETRANSMIT_MAX_BACKOFF: u32 = 3;

impl Processor {
    /// May the representative hold the ORF token before it next reaches this processor? The
    /// representative holds after more than `seqno_unchanged_const` visits without a new
    /// message, and every processor counts the same token visits: between two visits here the
    /// representative's count exceeds ours by at most one. So a processor whose count is below
    /// `seqno_unchanged_const - 1` knows the token will come back after one plain rotation.
    pub(super) fn may_be_held(&self) -> bool {
        self.state() == State::Operational
            && self.latest_ring.rep != self.me
            && self.seq_unchanged.saturating_add(1) >= self.cfg.seqno_unchanged_const
    }

    /// The fast token retransmission: twice the shortest recent rotation plus a margin,
    /// doubled for every retransmission since the last token, never beyond `token_retransmit`.
    /// `None` before the first rotation was measured.
    pub(super) fn fast_retransmit(&self) -> Option<Duration> {
        let slow = self.timeouts().token_retransmit;
        let est = *self.rotations.iter().min()?;
        let base = (est * 2 + FAST_RETRANSMIT_MARGIN).max(FAST_RETRANSMIT_MIN);
        let factor = 1u32 << self.retransmit_backoff.min(FAST_RETRANSMIT_MAX_BACKOFF);
        Some(base.saturating_mul(factor).min(slow))
    }

    /// When to re-send the last token if no newer one arrived. Corosync waits
    /// `token_retransmit` (T / (R + 0.2)) every time; on a ring that rotates in a millisecond
    /// that turns every lost token into a stall of hundreds of rotations, so while the token is
    /// known to circulate (not held, ORF token) the wait follows the measured rotation instead.
    pub(super) fn retransmit_interval(&self) -> Duration {
        let slow = self.timeouts().token_retransmit;
        if !matches!(self.state(), State::Operational | State::Recovery) || self.may_be_held() {
            return slow;
        }
        self.fast_retransmit().unwrap_or(slow)
    }

    /// Something (a hold cancel) says the token will circulate now: if it does not reach us
    /// within a fast retransmission interval, re-send ours.
    pub(super) fn expect_token_soon(&mut self, now: Instant) {
        let Some(fast) = self.fast_retransmit() else {
            return;
        };
        if let Some(t) = self.timers[TimerKind::TokenRetransmit as usize] {
            if t.epoch == self.epoch && t.at > now + fast {
                self.arm(TimerKind::TokenRetransmit, now + fast);
            }
        }
    }

    /// The highest seq this visit may request: the token's seq, or with the Accelerated Ring
    /// in the operational state, the seq this processor forwarded a rotation ago (messages
    /// after it may have been sent after the token and still be in flight).
    pub(super) fn request_limit(&self, tok: &OrfToken) -> u64 {
        if self.cfg.accelerated_window == 0 || self.state() != State::Operational {
            return tok.seq;
        }
        match self.forwarded_seq {
            Some((ring, seq)) if ring == self.latest_ring => seq.min(tok.seq),
            // First visit on this ring: nothing was sent a rotation ago that we know of.
            _ => self.aru,
        }
    }

    pub(super) fn request_missing(&mut self, tok: &mut OrfToken) {
        let max = self.cfg.retransmit_list_max;
        let cap = self.cfg.sort_queue_capacity;
        let miss_const = self.cfg.miss_count_const;
        let limit = self.request_limit(tok);
        let mut seq = self.aru + 1;
        let mut requested = 0;
        let q = self.current_queue_mut();
        while seq <= limit && tok.rtr.len() < max {
            if seq - q.base > cap {
                break;
            }
            if !q.has(seq) && q.bump_miss(seq, cap) >= miss_const && !tok.rtr.contains(&seq) {
                tok.rtr.push(seq);
                requested += 1;
            }
            seq += 1;
        }
        self.stats.retransmits_requested += requested;
    }
}
