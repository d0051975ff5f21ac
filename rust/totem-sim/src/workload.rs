//! The application load: what every processor submits, when, and with which bytes.
//!
//! Each incarnation of each node has its own random stream, forked from the run's seed by node
//! id and incarnation, so the load of one node does not depend on how many packets others sent.
//! Submissions arrive as a Poisson process with occasional bursts (to run into the send queue's
//! backpressure); sizes are mostly small, sometimes a few fragments, rarely many fragments.

use std::time::Duration;

use bytes::Bytes;
use totem::{Guarantee, Instant, NodeId};

use crate::net::{fmt_ms, fmt_nodes};
use crate::rng::Rng;

/// The load of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadParams {
    /// Nodes that submit (`None`: every node).
    pub senders: Option<Vec<NodeId>>,
    /// Mean time between submissions of one node; `None` disables the random load (scripted
    /// submissions still happen).
    pub mean_interval: Option<Duration>,
    /// Fraction of submissions asking for SAFE delivery.
    pub safe_fraction: f64,
    /// Size classes: small `0..=small_max`, medium `medium`, large `large` (inclusive ranges,
    /// clipped to the configured maximum message size).
    pub small_max: usize,
    pub medium: (usize, usize),
    pub large: (usize, usize),
    pub medium_fraction: f64,
    pub large_fraction: f64,
    /// Probability that a submission is a burst of `2..=burst_max` messages at once.
    pub burst_chance: f64,
    pub burst_max: u32,
}

impl Default for WorkloadParams {
    fn default() -> Self {
        WorkloadParams {
            senders: None,
            mean_interval: Some(Duration::from_millis(30)),
            safe_fraction: 0.2,
            small_max: 200,
            medium: (1_000, 5_000),
            large: (10_000, 60_000),
            medium_fraction: 0.25,
            large_fraction: 0.05,
            burst_chance: 0.02,
            burst_max: 40,
        }
    }
}

impl WorkloadParams {
    /// No random load at all (for scripted scenarios).
    pub fn none() -> Self {
        WorkloadParams {
            mean_interval: None,
            ..WorkloadParams::default()
        }
    }

    /// Expected size of one submission, in bytes.
    pub fn mean_size(&self, max_message_size: usize) -> f64 {
        let mid = |(lo, hi): (usize, usize)| {
            (lo.min(max_message_size) + hi.min(max_message_size)) as f64 / 2.0
        };
        let small = 1.0 - self.medium_fraction - self.large_fraction;
        small * mid((0, self.small_max))
            + self.medium_fraction * mid(self.medium)
            + self.large_fraction * mid(self.large)
    }

    pub fn sends(&self, node: NodeId) -> bool {
        self.mean_interval.is_some() && self.senders.as_ref().is_none_or(|s| s.contains(&node))
    }

    pub fn summary(&self) -> String {
        let Some(mean) = self.mean_interval else {
            return "scripted submissions only".into();
        };
        let who = match &self.senders {
            None => "every node".to_string(),
            Some(s) => format!("nodes {}", fmt_nodes(s)),
        };
        format!(
            "{who} submits every {} on average, {:.0}% safe, sizes 0-{}B / {}-{}B ({:.0}%) / {}-{}B ({:.0}%), bursts of up to {} ({:.0}%)",
            fmt_ms(mean),
            self.safe_fraction * 100.0,
            self.small_max,
            self.medium.0,
            self.medium.1,
            self.medium_fraction * 100.0,
            self.large.0,
            self.large.1,
            self.large_fraction * 100.0,
            self.burst_max,
            self.burst_chance * 100.0,
        )
    }
}

/// The submission stream of one incarnation of one node.
#[derive(Debug)]
pub struct NodeWorkload {
    rng: Rng,
    mean_us: f64,
    /// When the next submission is due.
    pub next_at: Instant,
}

impl NodeWorkload {
    pub fn new(seed: u64, node: NodeId, incarnation: u32, mean: Duration, now: Instant) -> Self {
        let mut rng = Rng::fork(
            seed,
            "workload",
            (u64::from(node) << 32) | u64::from(incarnation),
        );
        let mean_us = mean.as_micros().max(1) as f64;
        let next_at = now + Duration::from_micros(rng.exp(mean_us) as u64);
        NodeWorkload {
            rng,
            mean_us,
            next_at,
        }
    }

    /// The messages due now (one, or a burst), and the time of the next submission.
    pub fn next_batch(
        &mut self,
        params: &WorkloadParams,
        max_message_size: usize,
        now: Instant,
    ) -> Vec<(Bytes, Guarantee)> {
        let n = if self.rng.chance(params.burst_chance) {
            self.rng.range(2, u64::from(params.burst_max.max(2))) as usize
        } else {
            1
        };
        let batch = (0..n)
            .map(|_| {
                let size = pick_size(&mut self.rng, params, max_message_size);
                let g = if self.rng.chance(params.safe_fraction) {
                    Guarantee::Safe
                } else {
                    Guarantee::Agreed
                };
                (payload(&mut self.rng, size), g)
            })
            .collect();
        self.next_at = now + Duration::from_micros(self.rng.exp(self.mean_us) as u64 + 1);
        batch
    }
}

fn pick_size(rng: &mut Rng, p: &WorkloadParams, max: usize) -> usize {
    let u = rng.unit();
    let (lo, hi) = if u < p.large_fraction {
        p.large
    } else if u < p.large_fraction + p.medium_fraction {
        p.medium
    } else {
        (0, p.small_max)
    };
    let hi = hi.min(max);
    let lo = lo.min(hi);
    rng.range(lo as u64, hi as u64) as usize
}

/// `size` pseudo-random bytes. Random rather than constant so that a reassembly bug that
/// swaps or shifts fragments changes the digest the oracle checks.
pub fn payload(rng: &mut Rng, size: usize) -> Bytes {
    let mut v = vec![0u8; size];
    rng.fill(&mut v);
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_respect_classes_and_the_maximum() {
        let p = WorkloadParams::default();
        let mut w = NodeWorkload::new(1, 3, 0, Duration::from_millis(10), Instant::ZERO);
        let mut sizes = Vec::new();
        let mut safe = 0;
        let mut now = Instant::ZERO;
        for _ in 0..5_000 {
            now = w.next_at;
            for (data, g) in w.next_batch(&p, 20_000, now) {
                sizes.push(data.len());
                safe += usize::from(g == Guarantee::Safe);
            }
            assert!(w.next_at > now);
        }
        assert!(sizes.iter().all(|&s| s <= 20_000));
        assert!(sizes.contains(&0) || sizes.iter().any(|&s| s < 10));
        assert!(sizes.iter().any(|&s| s > 1_000));
        let frac = safe as f64 / sizes.len() as f64;
        assert!((0.15..0.25).contains(&frac), "{frac}");
        // 5000 draws with a 10 ms mean: about 50 s.
        assert!(
            now > Instant::from_millis(40_000) && now < Instant::from_millis(60_000),
            "{now}"
        );
    }

    #[test]
    fn streams_are_per_node_and_incarnation_and_reproducible() {
        let p = WorkloadParams::default();
        let first = |node, inc| {
            let mut w = NodeWorkload::new(9, node, inc, Duration::from_millis(10), Instant::ZERO);
            let at = w.next_at;
            (at, w.next_batch(&p, 65_536, at)[0].0.clone())
        };
        assert_eq!(first(1, 0), first(1, 0));
        assert_ne!(first(1, 0), first(2, 0));
        assert_ne!(first(1, 0), first(1, 1));
    }
}
