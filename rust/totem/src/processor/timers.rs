//! Timers: one deadline per kind, tagged with the membership epoch it was armed in, and what
//! each does when it fires.

use std::time::Duration;

use crate::config::Timeouts;
use crate::types::Instant;
use crate::wire::Packet;

use super::{Destination, Processor, State};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum TimerKind {
    TokenLoss,
    TokenRetransmit,
    Hold,
    Join,
    Consensus,
    MergeDetect,
    TokenWarning,
}

pub(super) const TIMER_KINDS: [TimerKind; 7] = [
    TimerKind::TokenLoss,
    TimerKind::TokenRetransmit,
    TimerKind::Hold,
    TimerKind::Join,
    TimerKind::Consensus,
    TimerKind::MergeDetect,
    TimerKind::TokenWarning,
];

/// A deadline, tagged with the membership epoch it was armed in: a timer that fires after the
/// processor moved to another ring or state is stale and does nothing.
#[derive(Copy, Clone, Debug)]
pub(super) struct Timer {
    pub(super) at: Instant,
    pub(super) epoch: u64,
}

impl Processor {
    pub(super) fn arm(&mut self, kind: TimerKind, at: Instant) {
        self.timers[kind as usize] = Some(Timer {
            at,
            epoch: self.epoch,
        });
    }

    pub(super) fn cancel(&mut self, kind: TimerKind) {
        self.timers[kind as usize] = None;
    }

    pub(super) fn is_armed(&self, kind: TimerKind) -> bool {
        self.timers[kind as usize].is_some()
    }

    pub(super) fn timeouts(&self) -> Timeouts {
        let n = match self.state() {
            State::Gather => self.proc_set.len().saturating_sub(self.fail_set.len()),
            _ => self.ring_members().len(),
        };
        self.cfg.timeouts(n.max(1))
    }

    pub(super) fn fire(&mut self, now: Instant, kind: TimerKind) {
        match kind {
            TimerKind::TokenLoss => match self.state() {
                State::Operational | State::Commit | State::Recovery => {
                    self.stats.token_lost += 1;
                    self.gather_enter(now);
                }
                _ => {}
            },
            TimerKind::TokenRetransmit => {
                if let Some((to, data, kind)) = self.last_token.clone() {
                    if matches!(
                        self.state(),
                        State::Operational | State::Commit | State::Recovery
                    ) && !self.holding
                    {
                        self.stats.token_retransmits += 1;
                        self.send_raw(Destination::Node(to), data, kind);
                        self.retransmit_backoff = self.retransmit_backoff.saturating_add(1);
                    }
                }
                // Processors that think the representative may hold the token wait the slow
                // `token_retransmit` before re-sending theirs. The representative knows better:
                // when the token does not come back to it in time it is lost, and a hold cancel
                // tells every member to retransmit at the fast pace. A member with messages to
                // send also asks again, in case its first hold cancel was lost.
                let rep = self.latest_ring.rep == self.me;
                if self.state() == State::Operational
                    && !self.holding
                    && (rep || (self.hold_cancel_sent && !self.packer.is_empty()))
                {
                    if rep {
                        self.seq_unchanged = 0;
                    }
                    let ring_id = self.latest_ring;
                    self.send(Destination::Multicast, &Packet::HoldCancel { ring_id });
                }
                let t = self.retransmit_interval();
                self.arm(TimerKind::TokenRetransmit, now + t);
            }
            TimerKind::Hold => {
                if self.holding {
                    self.release_held_token(now);
                }
            }
            TimerKind::Join => {
                if self.state() == State::Gather {
                    self.send_join(now);
                    let at = now + self.cfg.join + self.join_jitter();
                    self.arm(TimerKind::Join, at);
                }
            }
            TimerKind::Consensus => {
                if self.state() == State::Gather {
                    self.consensus_timeout(now);
                }
            }
            TimerKind::MergeDetect => {
                if self.state() == State::Operational && self.latest_ring.rep == self.me {
                    let ring_id = self.latest_ring;
                    self.send(Destination::Multicast, &Packet::MergeDetect { ring_id });
                }
            }
            TimerKind::TokenWarning => {
                self.stats.token_warnings += 1;
            }
        }
    }

    /// Shortest time between two join multicasts of one gather phase whose sets grew
    /// (a sixteenth of `join`: 3.1 ms by default).
    pub(super) fn join_coalesce(&self) -> Duration {
        self.cfg.join / 16
    }

    pub(super) fn join_jitter(&mut self) -> Duration {
        let max = u64::try_from(self.cfg.send_join.as_micros()).unwrap_or(u64::MAX);
        if max == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(self.next_random() % max)
        }
    }

    pub(super) fn reset_token_timers(&mut self, now: Instant) {
        let t = self.timeouts();
        let loss = t.heartbeat.unwrap_or(t.token);
        self.arm(TimerKind::TokenLoss, now + loss);
        let retransmit = self.retransmit_interval();
        self.arm(TimerKind::TokenRetransmit, now + retransmit);
        if let Some(w) = t.token_warning {
            self.arm(TimerKind::TokenWarning, now + w);
        }
    }

    pub(super) fn cancel_token_timers(&mut self) {
        for k in [
            TimerKind::TokenLoss,
            TimerKind::TokenRetransmit,
            TimerKind::Hold,
            TimerKind::MergeDetect,
            TimerKind::TokenWarning,
        ] {
            self.cancel(k);
        }
        self.holding = false;
        self.forwarded_at = None;
        self.retransmit_backoff = 0;
    }
}
