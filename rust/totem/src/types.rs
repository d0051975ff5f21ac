//! Small value types shared by every layer of the protocol core.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A processor (node) identifier. Zero is reserved and never names a processor.
pub type NodeId = u32;

/// Identifies one ring (configuration). `rep` is the representative that created it
/// (the lowest node id of the ring); `seq` strictly increases across rings that share members.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RingId {
    pub rep: NodeId,
    pub seq: u64,
}

impl RingId {
    pub const fn new(rep: NodeId, seq: u64) -> Self {
        RingId { rep, seq }
    }
}

impl fmt::Display for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.rep, self.seq)
    }
}

/// The delivery service a message asks for.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Guarantee {
    /// Agreed (total) order: delivered as soon as every lower sequence number was delivered.
    #[default]
    Agreed,
    /// Safe order: additionally delivered only once every member of the configuration holds it.
    Safe,
}

/// A point on the caller's monotonic clock, in microseconds since an epoch the caller chose.
///
/// The core never reads a clock: every input carries the current `Instant`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub const fn from_micros(us: u64) -> Self {
        Instant(us)
    }

    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms.saturating_mul(1000))
    }

    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(us))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}
