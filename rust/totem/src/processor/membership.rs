//! Membership: foreign traffic, the GATHER phase (joins, consensus, partial connectivity), and
//! quarantine with its probes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::stats::Ignored;
use crate::types::{Instant, NodeId, RingId};
use crate::wire::{self, Join, Packet};

use super::timers::TimerKind;
use super::{Destination, Phase, Processor, State};

/// The latest join of one processor in the current membership round.
#[derive(Clone, Debug)]
pub(super) struct Row {
    /// When it arrived: rows from before the current round are ignored.
    pub(super) at: Instant,
    /// Ascending, no duplicates.
    pub(super) heard: Vec<NodeId>,
    /// When the first of its sender's consecutive settled joins arrived; `None` while its
    /// consensus timer has not expired in its round. A settled processor usually makes its
    /// split within a consensus period after that, but not always: its own waits, and any
    /// change of its sets (which restarts its timer), can delay it. (Carried over from the
    /// previous row whatever round that row belonged to: if every unsettled join of a new
    /// round is lost, the old time is kept and the processor counts as long settled.)
    pub(super) settled_since: Option<Instant>,
    /// The ring its sender was on.
    pub(super) ring_seq: u64,
}

/// Membership test in an ascending list.
pub(super) fn has(list: &[NodeId], n: NodeId) -> bool {
    list.binary_search(&n).is_ok()
}

/// A processor excluded from this processor's ring while it was heard: a one-way or
/// non-transitive link (or a disagreement) kept it out. Its traffic no longer starts a
/// membership round here; it is re-admitted when a join shows two-way contact.
#[derive(Copy, Clone, Debug)]
pub(super) struct Quarantine {
    /// Earliest time this processor sends its next probe towards the quarantined one.
    pub(super) next_probe: Instant,
    /// Wait after the next probe (doubles with every probe, up to `probe_backoff_max`).
    pub(super) backoff: Duration,
}

pub(super) fn sorted(set: &BTreeSet<NodeId>) -> Vec<NodeId> {
    set.iter().copied().collect()
}

/// The processors whose time in `times` is at or after `t`.
pub(super) fn since(times: &BTreeMap<NodeId, Instant>, t: Instant) -> BTreeSet<NodeId> {
    times
        .iter()
        .filter(|(_, &at)| at >= t)
        .map(|(&n, _)| n)
        .collect()
}

/// The processors of `among` that form one ring with `me` when the links in `broken` cannot be
/// used. A deterministic function of its arguments, so processors that saw the same joins
/// split the same way: the excluded processors are a greedy vertex cover of the broken links
/// (most broken links first, the highest id among equals), the rest is the first ring; the
/// excluded processors split among themselves the same way, and so on.
pub(super) fn ring_layer(
    me: NodeId,
    among: &BTreeSet<NodeId>,
    broken: &BTreeSet<(NodeId, NodeId)>,
) -> BTreeSet<NodeId> {
    let mut remaining = among.clone();
    loop {
        let excluded = greedy_cover(&remaining, broken);
        if !excluded.contains(&me) || excluded.len() >= remaining.len() {
            return remaining.difference(&excluded).copied().collect();
        }
        remaining = excluded;
    }
}

/// Processors of `among` that, once removed, leave no link of `broken` between the rest.
pub(super) fn greedy_cover(
    among: &BTreeSet<NodeId>,
    broken: &BTreeSet<(NodeId, NodeId)>,
) -> BTreeSet<NodeId> {
    let mut links: Vec<(NodeId, NodeId)> = broken
        .iter()
        .filter(|(a, b)| among.contains(a) && among.contains(b))
        .copied()
        .collect();
    let mut out = BTreeSet::new();
    while !links.is_empty() {
        let mut degree: BTreeMap<NodeId, usize> = BTreeMap::new();
        for &(a, b) in &links {
            *degree.entry(a).or_default() += 1;
            *degree.entry(b).or_default() += 1;
        }
        // Highest degree; among equals the highest id (BTreeMap iterates ascending and
        // `max_by_key` keeps the last maximum).
        let Some((&v, _)) = degree.iter().max_by_key(|(_, &d)| d) else {
            break;
        };
        out.insert(v);
        links.retain(|&(a, b)| a != v && b != v);
    }
    out
}

/// How many consensus timeouts of a round wait for the processors heard in it to settle before
/// splitting on the links their joins show broken (see `Processor::consensus_timeout`).
const SETTLE_WAIT: u32 = 2;

/// How many consensus timeouts of a round wait for a processor that settled recently, and
/// disagrees, before failing it for disagreeing.
const SPLIT_WAIT: u32 = 4;

impl Processor {
    /// A packet of another ring: a reason to merge, unless it is a straggler of an older ring
    /// from a member of this one.
    pub(super) fn on_foreign(&mut self, now: Instant, sender: NodeId, ring: RingId) {
        // Rings we create must be numbered above every ring we have heard of, and our joins
        // tell others how recent our knowledge is.
        self.ring_seq_high = self.ring_seq_high.max(ring.seq);
        if ring == self.latest_ring || ring == self.installed_ring || self.is_stale(sender, ring) {
            self.ignore(Ignored::ForeignRing);
            return;
        }
        self.last_seen.insert(sender, now);
        let quarantined = self.quarantine.contains_key(&sender)
            || self
                .probe_rings
                .iter()
                .any(|(q, r)| *r == ring && self.quarantine.contains_key(q));
        match self.state() {
            State::Operational if quarantined => {
                // Not a reason to merge: the sender was excluded for lack of two-way contact.
                // Ask it (and its ring) to show two-way contact instead.
                self.ignore(Ignored::Quarantined);
                self.maybe_probe(now, sender);
            }
            State::Operational => {
                self.proc_set.insert(sender);
                self.gather_enter(now);
            }
            State::Gather if quarantined && !self.proc_set.contains(&sender) => {
                self.ignore(Ignored::Quarantined);
            }
            State::Gather if !self.proc_set.contains(&sender) => {
                self.proc_set.insert(sender);
                self.gather_enter(now);
            }
            _ => self.ignore(Ignored::ForeignRing),
        }
    }

    pub(super) fn is_stale(&self, sender: NodeId, ring: RingId) -> bool {
        self.installed_memb.contains(&sender) && ring.seq < self.installed_ring.seq
    }

    pub(super) fn on_merge_detect(&mut self, now: Instant, sender: NodeId, ring: RingId) {
        if sender == self.me {
            self.ignore(Ignored::OwnPacket);
            return;
        }
        self.on_foreign(now, sender, ring);
    }

    pub(super) fn gather_enter(&mut self, now: Instant) {
        let regather = self.state() == State::Gather;
        if !regather {
            // A new membership round: whom we heard and what the others reported before it says
            // nothing about the links now (a ring that lost its token, or an attempt that failed,
            // may have lost a link).
            self.round_start = now;
            self.expiries = 0;
            self.taken_back.clear();
        }
        if self.state() == State::Recovery {
            // Undo the failed recovery: the old ring's queue is intact, its counters come back.
            if let Some(old) = self.old_state {
                self.aru = old.aru;
                self.high_seq = old.high_seq;
            }
            // (The recovery queue and the messages left to re-send go with the RECOVERY state.)
        }
        self.new_epoch();
        self.phase = Phase::Gather;
        self.stats.gather_entered += 1;
        self.proc_set.insert(self.me);
        self.consensus.clear();
        self.consensus.insert(self.me);
        self.cancel_token_timers();
        self.last_token = None;
        // Join re-sends are coalesced: a processor already gathering whose sets grew sends its
        // join at most once per `join_coalesce()`. Without this, N processors starting together
        // each answered every one of the N - 1 joins that taught them a new processor with a
        // multicast of their own: O(N³) packets, 2 million at N = 128.
        if !(regather && self.defer_join(now)) {
            self.cancel(TimerKind::Join);
            let jitter = self.join_jitter();
            if jitter.is_zero() {
                self.send_join(now);
                self.arm(TimerKind::Join, now + self.cfg.join);
            } else {
                self.arm(TimerKind::Join, now + jitter);
            }
        }
        let c = self.timeouts().consensus;
        self.arm(TimerKind::Consensus, now + c);
        self.check_consensus(now);
    }

    pub(super) fn send_join(&mut self, now: Instant) {
        self.last_join_sent = Some(now);
        let join = Join {
            ring_seq: self.latest_ring.seq,
            high_seq: self.ring_seq_high_water(),
            leave: false,
            installed: self.installed_any && self.latest_ring == self.installed_ring,
            settled: self.settled(),
            probe: false,
            proc_list: sorted(&self.proc_set),
            fail_list: sorted(&self.fail_set),
            heard: sorted(&self.round_heard()),
            padding: 0,
        };
        self.send_padded(join);
    }

    /// Sends our join now, or as soon as the coalescing interval allows, without restarting
    /// the consensus timer (nothing we proposed changed; only what we can report did).
    pub(super) fn join_soon(&mut self, now: Instant) {
        if !self.defer_join(now) {
            self.send_join(now);
            self.arm(TimerKind::Join, now + self.cfg.join);
        }
    }

    /// If a join went out less than `join_coalesce()` ago, brings the join timer forward to the
    /// end of that interval (re-armed in the current epoch: a timer of an earlier one would be
    /// dropped as stale) and returns true; the caller sends nothing now.
    pub(super) fn defer_join(&mut self, now: Instant) -> bool {
        let Some(until) = self
            .last_join_sent
            .map(|t| t + self.join_coalesce())
            .filter(|&until| now < until)
        else {
            return false;
        };
        let armed = self.timers[TimerKind::Join as usize].map(|t| t.at);
        self.arm(TimerKind::Join, armed.map_or(until, |at| at.min(until)));
        true
    }

    pub(super) fn consensus_timeout(&mut self, now: Instant) {
        self.stats.consensus_timeouts += 1;
        // A whole consensus period has passed in this round: whom we have not heard by now we
        // cannot hear, and our joins say so from here on.
        self.expiries = self.expiries.saturating_add(1);
        if self.consensus_agreed() {
            // Everyone agreed but no commit token came: its creator may be gone. Start over.
            self.consensus.clear();
            self.consensus.insert(self.me);
            let c = self.timeouts().consensus;
            self.arm(TimerKind::Consensus, now + c);
            return;
        }
        let heard = self.round_heard();
        let candidates: BTreeSet<NodeId> = self.proposed_members().into_iter().collect();
        // 1. Processors we never heard in this round: crashed, unless a settled join of a
        // processor we hear shows it alive, in which case the link from it to us is cut.
        let silent: BTreeSet<NodeId> = candidates
            .iter()
            .filter(|&&n| n != self.me && !heard.contains(&n))
            .copied()
            .collect();
        let alive = |c: NodeId| {
            candidates.iter().any(|&a| {
                a != self.me && heard.contains(&a) && self.row(a).is_some_and(|r| has(&r.heard, c))
            })
        };
        // Of those nobody reports hearing, the ones whose packets (multicasts, merge detects,
        // tokens) still reach us are absent: they do not hear our joins or they quarantined
        // us, and no ring can include them. The others are gone.
        let seen = self.round_seen();
        let (mut absent, dead): (BTreeSet<NodeId>, BTreeSet<NodeId>) = silent
            .iter()
            .copied()
            .filter(|&c| !alive(c))
            .partition(|c| seen.contains(c));
        // Those that only probed us are operational in a ring of their own, not in our round;
        // so are those that probed us from a ring newer than their latest join's (they
        // installed it since). Counting the latter as taking part, on the rows
        // of the round that formed their ring, left processors that their ring had excluded
        // waiting for them and failing them only for disagreeing, which quarantines nobody,
        // so that their ring's traffic started the next round at once (long seed 52).
        absent.extend(
            candidates
                .iter()
                .filter(|&&n| n != self.me && heard.contains(&n) && !self.in_round(n)),
        );
        let among: BTreeSet<NodeId> = candidates
            .iter()
            .filter(|n| !dead.contains(n) && !absent.contains(n))
            .copied()
            .collect();
        // 2. Links that the joins show broken (one way or both, our own included): everyone
        // who sees the same joins splits the processors the same way.
        // Not while a processor we heard has not settled, for up to `SETTLE_WAIT` expiries:
        // the links its join will show missing are not known yet, and a split computed without
        // them differs from the one the others compute once they know them (each side then
        // excludes the other, round after round). The wait is bounded: a processor whose
        // consensus timer keeps being pushed back must not hold the round for ever.
        let wait = self.expiries <= SETTLE_WAIT
            && among
                .iter()
                .any(|&n| n != self.me && self.row(n).is_some_and(|r| r.settled_since.is_none()));
        let cut_off: Vec<NodeId> = if wait {
            Vec::new()
        } else {
            let broken = self.broken_links(&among);
            let layer = ring_layer(self.me, &among, &broken);
            among.difference(&layer).copied().collect()
        };
        self.link_failed.extend(cut_off.iter().copied());
        self.link_failed.extend(absent.iter().copied());
        let mut failed: Vec<NodeId> = dead.into_iter().collect();
        failed.extend(cut_off);
        failed.extend(absent);
        // A processor that disagrees with us and settled less than two consensus periods ago
        // may not have decided its split yet: its proposal may still come to ours (it fails a
        // processor we failed for a link it does not share with us, and so does not adopt
        // from our joins). Failing it now for disagreeing separated two processors that a
        // moment later proposed the same ring (long seed 391). While one such processor is
        // heard, nobody is failed for disagreeing at this timeout (up to `SPLIT_WAIT`).
        let c = self.timeouts().consensus;
        let deciding = self.expiries <= SPLIT_WAIT
            && among.iter().any(|&n| {
                n != self.me
                    && !self.consensus.contains(&n)
                    && self
                        .row(n)
                        .and_then(|r| r.settled_since)
                        .is_some_and(|t| now.saturating_duration_since(t) < c * 2)
            });
        if failed.is_empty() && !wait && !deciding {
            // 3. Only disagreement is left (all heard, no link known broken): as Corosync, fail
            // whoever did not agree with us.
            failed = among
                .iter()
                .filter(|&&n| n != self.me && !self.consensus.contains(&n))
                .copied()
                .collect();
        }
        self.fail(failed);
        self.gather_enter(now);
    }

    /// Puts `failed` into the fail set, remembering for each the ring its latest join named
    /// (see `moved_on`).
    pub(super) fn fail(&mut self, failed: impl IntoIterator<Item = NodeId>) {
        for n in failed {
            if self.fail_set.insert(n) {
                if let Some(r) = self.rows.get(&n) {
                    self.failed_at.insert(n, r.ring_seq);
                }
            }
        }
    }

    /// A join from `sender`, in our fail set, names a newer ring than its join did when we
    /// failed it, and shows that it hears every processor we propose: the state we failed it in
    /// is gone (it formed or attempted a ring without us, or restarted), and so is the reason.
    /// It is taken back into this round.
    ///
    /// Without this, two groups whose consensus timers expire out of phase excluded each other
    /// for ever: one, still gathering with the other in its fail set, ignored the joins the
    /// other sent after installing the ring it formed meanwhile, formed its own ring, and by
    /// then the other, gathering again, failed it in turn for not agreeing (simulator seeds
    /// 78358 and 99656). One that does not hear all of our proposed members stays failed: its
    /// new ring may be the other side of a one-way or non-transitive cut, which re-admitting
    /// it each time it re-forms would turn into flapping (long seed 16, accelerated).
    pub(super) fn moved_on(&self, sender: NodeId, j: &Join) -> bool {
        !j.leave
            && !j.probe
            && self
                .failed_at
                .get(&sender)
                .is_some_and(|&seq| j.ring_seq > seq)
            && self
                .proposed_members()
                .iter()
                .all(|&m| m == sender || has(&j.heard, m))
    }

    /// The members this processor proposes: its processor set minus its fail set, ascending.
    pub(super) fn proposed_members(&self) -> Vec<NodeId> {
        self.proc_set
            .iter()
            .filter(|n| !self.fail_set.contains(n))
            .copied()
            .collect()
    }

    /// Consensus: every proposed member sent a join with our sets, and every one of them
    /// (ourselves included) heard every other in this round. A member that only hears some of
    /// the others, or is heard by only some, could not carry the commit token round the ring.
    pub(super) fn consensus_agreed(&self) -> bool {
        // Cheapest test first: this runs on every join, and while a ring forms the consensus
        // set is incomplete almost every time.
        let proposed = self.proc_set.len() - self.fail_set.intersection(&self.proc_set).count();
        if self.consensus.len() < proposed {
            return false;
        }
        let members = self.proposed_members();
        if !members.iter().all(|n| self.consensus.contains(n)) {
            return false;
        }
        let heard = self.round_heard();
        members.iter().all(|&n| {
            if n == self.me {
                return members.iter().all(|m| *m == self.me || heard.contains(m));
            }
            self.row(n)
                .is_some_and(|r| members.iter().all(|&m| m == n || has(&r.heard, m)))
        })
    }

    /// Has the consensus timer expired in this round? (What our joins' `settled` flag says.)
    pub(super) fn settled(&self) -> bool {
        self.expiries > 0
    }

    /// `n`'s latest join in this round.
    pub(super) fn row(&self, n: NodeId) -> Option<&Row> {
        self.rows.get(&n).filter(|r| r.at >= self.round_start)
    }

    /// Has `n` joined this round, and not probed from a ring newer than the one its latest join
    /// named? (Only operational processors probe, naming the ring they installed; comparing
    /// rings rather than arrival times is not fooled by a probe that overtook a later join.)
    pub(super) fn in_round(&self, n: NodeId) -> bool {
        self.row(n).is_some_and(|r| {
            self.probe_rings
                .get(&n)
                .is_none_or(|ring| ring.seq <= r.ring_seq)
        })
    }

    /// Processors whose joins reached us since the current round began: the `heard` list of
    /// our joins.
    pub(super) fn round_heard(&self) -> BTreeSet<NodeId> {
        let mut heard = since(&self.last_joined, self.round_start);
        heard.retain(|n| !self.deaf_from.contains(n));
        heard
    }

    /// Processors any of whose packets reached us since the current round began.
    pub(super) fn round_seen(&self) -> BTreeSet<NodeId> {
        since(&self.last_seen, self.round_start)
    }

    /// Processors heard directly within `recent_window`: what a join sent while operational
    /// reports.
    pub(super) fn recently_heard(&self, now: Instant) -> BTreeSet<NodeId> {
        let w = self.recent_window();
        self.last_heard
            .iter()
            .filter(|(n, &at)| {
                now.saturating_duration_since(at) <= w && !self.deaf_from.contains(n)
            })
            .map(|(&n, _)| n)
            .collect()
    }

    /// How long a processor counts as recently heard: long enough to span a probe, the
    /// answers it draws and the next probe at the longest back-off.
    pub(super) fn recent_window(&self) -> Duration {
        self.probe_backoff_max() * 2
    }

    /// Longest wait between two probes towards a quarantined processor.
    pub(super) fn probe_backoff_max(&self) -> Duration {
        let t = self.timeouts();
        t.token + t.consensus
    }

    /// Records a membership or token packet that came directly from `from`.
    pub(super) fn note_heard(&mut self, now: Instant, from: NodeId) {
        let before = self.last_heard.insert(from, now);
        self.sender_was_quiet =
            before.is_none_or(|t| now.saturating_duration_since(t) > self.recent_window());
    }

    /// Links between two of `among` that a settled join shows broken: `a` has not heard `b`
    /// for a whole consensus period (the link `b -> a` is cut). Each pair is (lower, higher).
    pub(super) fn broken_links(&self, among: &BTreeSet<NodeId>) -> BTreeSet<(NodeId, NodeId)> {
        let mut out = BTreeSet::new();
        let heard = sorted(&self.round_heard());
        for &a in among {
            let report = if a == self.me {
                Some(&heard)
            } else {
                self.row(a)
                    .filter(|r| r.settled_since.is_some())
                    .map(|r| &r.heard)
            };
            let Some(report) = report else { continue };
            for &b in among {
                if b != a && !has(report, b) {
                    out.insert((a.min(b), a.max(b)));
                }
            }
        }
        out
    }

    pub(super) fn check_consensus(&mut self, now: Instant) {
        if self.state() != State::Gather || !self.consensus_agreed() {
            return;
        }
        let lowest = self
            .proc_set
            .iter()
            .find(|n| !self.fail_set.contains(n))
            .copied();
        if lowest == Some(self.me) {
            self.create_commit_token(now);
        }
    }

    pub(super) fn on_join(&mut self, now: Instant, sender: NodeId, mut j: Join) {
        if sender == self.me {
            self.ignore(Ignored::OwnPacket);
            return;
        }
        self.ring_seq_high = self.ring_seq_high.max(j.ring_seq).max(j.high_seq);
        // Ours are sent ascending; anyone else's are made so (`has` searches them).
        j.heard.sort_unstable();
        j.heard.dedup();
        if !j.leave {
            self.reports.insert(sender, (now, j.heard.clone()));
        }
        if j.probe {
            // A ring is numbered by its creator, the lowest member.
            if let Some(&rep) = j.proc_list.iter().min() {
                self.probe_rings
                    .insert(sender, RingId::new(rep, j.ring_seq));
            }
        }
        if j.leave {
            // A processor that leaves is gone: it is not a one-way link to remember.
            self.last_heard.remove(&sender);
            self.last_joined.remove(&sender);
            self.last_seen.remove(&sender);
            self.reports.remove(&sender);
            self.probe_rings.remove(&sender);
            self.rows.remove(&sender);
            self.quarantine.remove(&sender);
            self.deaf_from.remove(&sender);
        } else if !j.probe {
            // (A probe reports whom its sender heard recently, not in our round.)
            let settled_since = j.settled.then(|| {
                self.rows
                    .get(&sender)
                    .and_then(|r| r.settled_since)
                    .unwrap_or(now)
            });
            self.rows.insert(
                sender,
                Row {
                    at: now,
                    heard: j.heard.clone(),
                    settled_since,
                    ring_seq: j.ring_seq,
                },
            );
        }
        match self.state() {
            State::Operational => {
                if j.fail_list.contains(&self.me)
                    || (self.installed_memb.contains(&sender)
                        && j.ring_seq < self.installed_ring.seq)
                    || (j.probe && self.installed_memb.contains(&sender))
                {
                    self.ignore(Ignored::WrongState);
                    return;
                }
                if self.quarantine.contains_key(&sender) {
                    if !self.shows_two_way_contact(now, sender, &j, &self.installed_memb.clone()) {
                        self.ignore(Ignored::Quarantined);
                        self.answer_quarantined(now, &j);
                        return;
                    }
                    self.quarantine.remove(&sender);
                }
                self.join_process(now, sender, &j);
            }
            State::Gather => {
                if self.installed_memb.contains(&sender) && j.ring_seq < self.installed_ring.seq {
                    // A ring-mate's join from before our current ring: stale.
                    self.ignore(Ignored::WrongState);
                    return;
                }
                if self.fail_set.contains(&sender) && self.moved_on(sender, &j) {
                    self.fail_set.remove(&sender);
                    self.failed_at.remove(&sender);
                    self.link_failed.remove(&sender);
                    self.taken_back.insert(sender);
                    self.stats.unfailed += 1;
                    // Our proposal changed: the consensus gathered so far is void, and the
                    // others hear of the change from our join.
                    self.gather_enter(now);
                    self.join_process(now, sender, &j);
                    return;
                }
                if self.quarantine.contains_key(&sender) && !self.proc_set.contains(&sender) {
                    let ours = self.proposed_members();
                    if !self.shows_two_way_contact(now, sender, &j, &ours) {
                        self.ignore(Ignored::Quarantined);
                        return;
                    }
                    self.quarantine.remove(&sender);
                }
                self.join_process(now, sender, &j)
            }
            State::Recovery
                if j.installed
                    && j.ring_seq == self.latest_ring.seq
                    && self.forming_memb().contains(&sender) =>
            {
                // A member already installed the ring we are recovering: it saw every member
                // hold every recovery message, so our recovery is complete too. Install it
                // rather than abandon it, then handle the join like any operational member.
                self.install(now);
                self.reset_token_timers(now);
                self.on_join(now, sender, j);
            }
            State::Commit | State::Recovery
                if self.forming_memb().contains(&sender)
                    && j.fail_list.contains(&self.me)
                    && !j.leave =>
            {
                // A member of the ring being formed counts us as failed: it will not take the
                // commit token (or has abandoned the ring), so this attempt cannot complete.
                // Whatever ring its join names, waiting for the token timeout only delays the
                // next round.
                self.join_process(now, sender, &j);
                if self.state() != State::Gather {
                    self.gather_enter(now);
                }
            }
            State::Commit | State::Recovery => {
                if self.forming_memb().contains(&sender) && j.ring_seq >= self.latest_ring.seq {
                    self.join_process(now, sender, &j);
                    if self.state() != State::Gather {
                        self.gather_enter(now);
                    }
                } else {
                    self.ignore(Ignored::WrongState);
                }
            }
            State::Left => {}
        }
    }

    pub(super) fn join_process(&mut self, now: Instant, sender: NodeId, j: &Join) {
        let jp: BTreeSet<NodeId> = j.proc_list.iter().copied().collect();
        // A join sent before its sender had heard of the ring we installed (typically one of
        // the round that formed our ring, arriving late) judges a configuration we have left:
        // its processors still count, its failures do not. Mixed into the current round, such
        // stale failures made groups exclude each other round after round.
        let stale = j.high_seq < self.installed_ring.seq;
        let jf: BTreeSet<NodeId> = if stale {
            BTreeSet::new()
        } else {
            j.fail_list.iter().copied().collect()
        };
        if self.state() == State::Gather && jp == self.proc_set && jf == self.fail_set {
            if !j.leave {
                self.consensus.insert(sender);
            }
            self.check_consensus(now);
            return;
        }
        // Whatever happens below, the sender's latest sets differ from ours: a consensus it
        // gave earlier no longer holds.
        self.consensus.remove(&sender);
        if j.leave && !self.fail_set.contains(&sender) {
            // It left: it is failed here whatever its own lists say.
            self.fail_set.insert(sender);
            self.failed_at.insert(sender, j.ring_seq);
            self.gather_enter(now);
            return;
        }
        let knows_less = jp.is_subset(&self.proc_set) && jf.is_subset(&self.fail_set);
        if knows_less || self.fail_set.contains(&sender) {
            if self.state() == State::Operational {
                self.gather_enter(now);
            }
            return;
        }
        let before = (self.proc_set.len(), self.fail_set.len());
        self.proc_set.extend(jp.iter().copied());
        // Failures are adopted: a ring-mate's whole, an outsider's except for our ring-mates
        // (an outsider cannot evict them), never our own. Groups whose consensus timers fire at
        // different moments then agree on who is gone instead of excluding each other.
        //
        // A sender that lists *us* as failed judges from a view we do not share: none of its
        // failures are adopted. Unlike the paper and Corosync, it is not failed in return
        // either: in the simulator that rule made out-of-phase groups exclude each other in
        // every round. Its sets simply differ from ours, so it gives us no consensus and the
        // consensus timeout settles the disagreement.
        //
        // A failure is not adopted when the joins show the link between the sender and the
        // failed processor broken while we hear both: that is a one-way or non-transitive link,
        // and which side stays is decided at our consensus timeout from the links we all see
        // (`ring_layer`). Adopting both sides' failures would leave the processors that hear
        // both alone.
        if !jf.contains(&self.me) && !jf.is_empty() {
            let ring_mate = self.installed_memb.contains(&sender);
            let heard = self.round_heard();
            let adopted: Vec<NodeId> = jf
                .iter()
                .copied()
                .filter(|&n| ring_mate || !self.installed_memb.contains(&n))
                // A ring-mate's failure of a processor we took back in this round is not
                // adopted: the ring-mate judged it before seeing the join we took it back on,
                // and will take it back on the same join. Re-adopted, it was recorded against
                // the processor's new ring, so `moved_on` could not undo it again, and ring-mates
                // that had each taken back a different processor re-failed it from each other's
                // joins: three groups that all heard each other re-formed every 1.4 s (soak
                // seed 40556). (A non-ring-mate's failures of it are adopted as before.)
                .filter(|n| !(ring_mate && self.taken_back.contains(n)))
                .filter(|&n| {
                    let link_broken =
                        !has(&j.heard, n) || self.row(n).is_some_and(|r| !has(&r.heard, sender));
                    !(heard.contains(&n) && link_broken)
                })
                .collect();
            // Another's exclusion of a processor whose packets reach us is a decision about
            // links (ours or theirs): remember it, so that its traffic does not start the next
            // round at once (re-admission asks for evidence of every link between the two
            // sides).
            let seen = self.round_seen();
            for &n in &adopted {
                if seen.contains(&n) && !self.fail_set.contains(&n) {
                    self.link_failed.insert(n);
                }
            }
            self.fail(adopted);
        }
        // Re-enter GATHER (re-sending our join) only when our sets grew. Two processors whose
        // joins teach each other nothing would otherwise answer each other's joins forever; the
        // consensus timeout settles their disagreement instead.
        let changed = (self.proc_set.len(), self.fail_set.len()) != before;
        if changed || self.state() != State::Gather {
            self.gather_enter(now);
        }
    }

    /// Does `j`, a join from quarantined `sender`, show two-way contact with `ours` (our ring,
    /// or the members we propose)? Its sender heard every one of them, and we recently heard
    /// every processor it proposes that is not one of ours.
    ///
    /// And every link that got a processor of either side quarantined here, between two
    /// processors of the two sides, is shown to work both ways by both ends' latest joins or
    /// probes: the sender hearing us says nothing of a ring-mate of its that cannot.
    pub(super) fn shows_two_way_contact(
        &self,
        now: Instant,
        sender: NodeId,
        j: &Join,
        ours: &[NodeId],
    ) -> bool {
        let recent = self.recently_heard(now);
        let theirs: Vec<NodeId> = j
            .proc_list
            .iter()
            .filter(|n| !j.fail_list.contains(n))
            .copied()
            .collect();
        let basic = ours.iter().all(|&m| m == sender || has(&j.heard, m))
            && theirs
                .iter()
                .filter(|n| !ours.contains(n) && **n != self.me)
                .all(|n| recent.contains(n));
        if !basic {
            return false;
        }
        let hears = |x: NodeId, y: NodeId| {
            if x == self.me {
                return recent.contains(&y);
            }
            if x == sender {
                return has(&j.heard, y);
            }
            self.reports.get(&x).is_some_and(|(at, heard)| {
                now.saturating_duration_since(*at) <= self.recent_window() && has(heard, y)
            })
        };
        // Every processor of each side heard every processor of the other, as far as the
        // latest joins and probes of each show.
        let mut mine: Vec<NodeId> = ours.to_vec();
        mine.push(self.me);
        mine.iter().all(|&m| {
            theirs
                .iter()
                .filter(|t| !mine.contains(t))
                .all(|&t| hears(m, t) && hears(t, m))
        })
    }

    /// Traffic of quarantined `q` reached us while we are operational: send a probe (a join
    /// naming our ring and whom we recently heard) at most once per back-off, which doubles up
    /// to `probe_backoff_max`. A probe that shows two-way contact brings the two rings
    /// together; one that does not costs a small packet and changes nothing.
    pub(super) fn maybe_probe(&mut self, now: Instant, q: NodeId) {
        let max = self.probe_backoff_max();
        let Some(e) = self.quarantine.get_mut(&q) else {
            return;
        };
        if now < e.next_probe {
            return;
        }
        e.next_probe = now + e.backoff;
        e.backoff = (e.backoff * 2).min(max);
        self.send_probe(now);
    }

    /// A quarantined processor's join or probe did not show two-way contact: if it did not
    /// list us as heard, or it is the first we hear of it for a while (an answer to our own
    /// probe), answer with a probe, so that its next one can show contact if the links work.
    /// At most once per join coalescing interval.
    pub(super) fn answer_quarantined(&mut self, now: Instant, j: &Join) {
        if has(&j.heard, self.me) && !self.sender_was_quiet {
            return;
        }
        if self
            .last_probe
            .is_some_and(|t| now.saturating_duration_since(t) < self.join_coalesce())
        {
            return;
        }
        self.stats.presence_sent += 1;
        self.send_probe(now);
    }

    /// Multicasts a join or probe padded to `max_packet_size`, as big as the biggest multicast:
    /// whom a join shows its sender heard, it heard over paths that carry the ring's traffic
    /// (a path that loses big datagrams, an MTU black hole, loses the joins too and shows up
    /// in the membership as a cut link).
    pub(super) fn send_padded(&mut self, mut join: Join) {
        join.padding = 0;
        let len = wire::encoded_len(&Packet::Join(join.clone()));
        join.padding =
            u16::try_from(self.cfg.max_packet_size.saturating_sub(len)).unwrap_or(u16::MAX);
        self.send(Destination::Multicast, &Packet::Join(join));
    }

    pub(super) fn send_probe(&mut self, now: Instant) {
        self.last_probe = Some(now);
        self.stats.probes_sent += 1;
        let probe = Join {
            ring_seq: self.installed_ring.seq,
            high_seq: self.ring_seq_high_water(),
            leave: false,
            installed: self.installed_any,
            settled: true,
            probe: true,
            proc_list: self.installed_memb.clone(),
            fail_list: Vec::new(),
            heard: sorted(&self.recently_heard(now)),
            padding: 0,
        };
        self.send_padded(probe);
    }
}
