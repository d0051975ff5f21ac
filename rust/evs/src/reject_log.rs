//! Warnings for frames the crypto layer refused, rate-limited per source and reason.
//!
//! A peer with another authkey, cluster name or cipher is refused frame by frame, and both
//! sides then form rings of their own; without a word in the log only the counters would say
//! why. [`RejectLog`] decides which rejections become a WARNING: the first of each
//! (source address, reason), then at most one per [`INTERVAL`], carrying how many were
//! suppressed in between. Replays and stale boots are left out: they are ordinary after
//! duplicated packets or a peer's restart.
//!
//! The table is bounded ([`MAX_SOURCES`]): a flood from many forged source addresses costs
//! a few lookups and evictions, never unbounded memory; when every entry is recent, new
//! sources go unreported until one ages out (the counters still count them).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::crypto::Reject;

/// At most one warning per source and reason in this long.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// Sources remembered at once.
pub(crate) const MAX_SOURCES: usize = 256;

/// What a rejection means for the operator, or `None` when it is not worth a warning.
pub(crate) fn explain(reason: Reject) -> Option<&'static str> {
    match reason {
        Reject::Unauthenticated => Some(
            "it does not authenticate: the sender has another authkey or cluster_name (or the \
             frame was forged or corrupted)",
        ),
        Reject::CipherMismatch => {
            Some("it uses another cipher: the sender's crypto setting differs from this node's")
        }
        Reject::BadHeader => {
            Some("its header is not one this node reads: another evs version, or not evs")
        }
        Reject::TooShort => Some("it is too short to be an evs frame"),
        Reject::Replayed | Reject::StaleBoot => None,
    }
}

struct Entry {
    /// When the last warning was given.
    warned: Instant,
    /// Rejections since then that were not reported.
    suppressed: u64,
}

/// The rate limiter (see the module docs). Owned by the driver; times come in as arguments.
#[derive(Default)]
pub(crate) struct RejectLog {
    entries: HashMap<(SocketAddr, Reject), Entry>,
}

impl RejectLog {
    /// A rejection of a frame from `from` for `reason` at `now`. Returns `Some(suppressed)`
    /// when a warning should be given now, `suppressed` being how many rejections of the same
    /// source and reason went unreported since the previous warning.
    pub(crate) fn note(&mut self, from: SocketAddr, reason: Reject, now: Instant) -> Option<u64> {
        explain(reason)?;
        if let Some(e) = self.entries.get_mut(&(from, reason)) {
            if now.saturating_duration_since(e.warned) < INTERVAL {
                e.suppressed += 1;
                return None;
            }
            let suppressed = e.suppressed;
            *e = Entry {
                warned: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if self.entries.len() >= MAX_SOURCES {
            // Forget entries whose interval is over: their next rejection warns anyway.
            self.entries
                .retain(|_, e| now.saturating_duration_since(e.warned) < INTERVAL);
            if self.entries.len() >= MAX_SOURCES {
                return None;
            }
        }
        self.entries.insert(
            (from, reason),
            Entry {
                warned: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 5405))
    }

    #[test]
    fn one_warning_per_source_and_reason_per_interval_with_the_suppressed_count() {
        let mut log = RejectLog::default();
        let t0 = Instant::now();
        let a = addr(1);
        assert_eq!(log.note(a, Reject::Unauthenticated, t0), Some(0));
        for i in 1..=5 {
            let t = t0 + Duration::from_secs(i);
            assert_eq!(log.note(a, Reject::Unauthenticated, t), None);
        }
        // Another reason, or another source, warns on its own.
        assert_eq!(log.note(a, Reject::CipherMismatch, t0), Some(0));
        assert_eq!(log.note(addr(2), Reject::Unauthenticated, t0), Some(0));
        assert_eq!(log.note(a, Reject::Unauthenticated, t0 + INTERVAL), Some(5));
        assert_eq!(log.note(a, Reject::Unauthenticated, t0 + INTERVAL), None);
    }

    #[test]
    fn replays_and_stale_boots_are_not_warned_about() {
        let mut log = RejectLog::default();
        let t0 = Instant::now();
        assert_eq!(log.note(addr(1), Reject::Replayed, t0), None);
        assert_eq!(log.note(addr(1), Reject::StaleBoot, t0), None);
        assert!(log.entries.is_empty());
    }

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_sources() {
        let mut log = RejectLog::default();
        let t0 = Instant::now();
        let mut warned = 0;
        for i in 0..(4 * MAX_SOURCES as u32) {
            warned += usize::from(log.note(addr(i), Reject::TooShort, t0).is_some());
        }
        assert_eq!(warned, MAX_SOURCES);
        assert_eq!(log.entries.len(), MAX_SOURCES);
        // Once the interval is over, old entries make room for new sources.
        let later = t0 + INTERVAL;
        assert_eq!(log.note(addr(100_000), Reject::TooShort, later), Some(0));
        assert_eq!(log.entries.len(), 1);
    }
}
