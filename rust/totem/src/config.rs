//! Protocol configuration: every Totem timer and flow-control constant, with Corosync's
//! meanings and defaults (corosync 3.x), validated as a whole.
//!
//! Timers that Corosync derives from others (`token_retransmit`, `hold`, `consensus`) are
//! `None` by default and derived from the *effective* token timeout, which grows with the ring
//! size through `token_coefficient`.

use std::fmt;
use std::time::Duration;

use crate::wire;

/// The largest `max_message_size` a processor takes: 64 MiB of application data plus room for
/// a runtime's own header around it (evs adds its group header to the application's limit).
pub const MAX_MESSAGE_SIZE: usize = (64 << 20) + (64 << 10);

/// Corosync's smallest allowed timer (3 × 1000/HZ with HZ = 100).
pub const MINIMUM_TIMEOUT: Duration = Duration::from_millis(30);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Token-loss timeout `token` (T).
    pub token: Duration,
    /// Added to T for every member beyond two (`token_coefficient`); zero disables.
    pub token_coefficient: Duration,
    /// Token retransmissions before the token is declared lost.
    pub token_retransmits_before_loss_const: u32,
    /// Re-send the last token if no newer one arrives in this time. Default T / (R + 0.2).
    pub token_retransmit: Option<Duration>,
    /// Period of the representative's held token on an idle ring.
    /// Default token_retransmit × 0.8 − 10 ms.
    pub hold: Option<Duration>,
    /// Percentage of T after which a missing token is reported (0 = never).
    pub token_warning: u32,
    /// Join re-send period in GATHER.
    pub join: Duration,
    /// Upper bound of a random delay before each join multicast (zero = none).
    pub send_join: Duration,
    /// GATHER round timeout. Default 1.2 × effective T.
    pub consensus: Option<Duration>,
    /// Period of merge detection on an idle ring.
    pub merge: Duration,
    /// Transport interface re-check period (used by the runtime, not by the core).
    pub downcheck: Duration,
    /// Token visits without progress of the lowest aru before a lagging node leaves the ring.
    pub fail_recv_const: u32,
    /// Token visits with no new messages before the representative holds the token.
    pub seqno_unchanged_const: u32,
    /// Token visits a sequence number must be seen missing before it is requested.
    pub miss_count_const: u32,
    /// Messages all processors together may send per token rotation.
    pub window_size: u32,
    /// Messages one processor may send per token visit.
    pub max_messages: u32,
    /// Accelerated Ring (Babay and Amir): of the new messages of a token visit, how many may
    /// go out after the token is forwarded, so that the successor starts sending while they
    /// are still on the wire. 0 is classic Totem (every message before the token). Only in
    /// the operational state; recovery always runs classic. Default 17 (`max_messages`'s
    /// default: a whole visit after the token), which carried 12-35 % more at 1 KiB and
    /// 16 KiB than 0 on the benchmark network (BENCHMARKS.md).
    pub accelerated_window: u32,
    /// Heartbeat failures tolerated before the token is declared lost early (0 = heartbeat off).
    pub heartbeat_failures_allowed: u32,
    /// Network delay assumed by the heartbeat formula.
    pub max_network_delay: Duration,
    /// Forward a held token at once when it carries retransmit requests.
    pub cancel_token_hold_on_retransmit: bool,
    /// Largest encoded Totem packet (before crypto), in bytes (Corosync's netmtu minus IP/UDP).
    pub max_packet_size: usize,
    /// Largest application message, in bytes. Larger submissions are refused.
    pub max_message_size: usize,
    /// Bytes of application messages that may wait to be sent; at least `max_message_size`.
    /// Default 1 MiB: under saturation a message waits behind this much of its node's earlier
    /// messages, so it is the latency under load (4 MiB, the earlier default, gave 4 times
    /// the latency and no more throughput; BENCHMARKS.md).
    pub send_queue_bytes: usize,
    /// Largest retransmit request list carried by the token.
    pub retransmit_list_max: usize,
    /// Slots of the receive sort queue beyond the last released sequence number.
    pub sort_queue_capacity: u64,
    /// Sequence number every new ring starts from (its first message gets the next one). Tests
    /// start near 2^32 to show that no 32-bit arithmetic hides anywhere.
    pub initial_seq: u64,
    /// Deliberate protocol bugs, all off by default: only the simulator's tests turn them on,
    /// to show that its oracle catches them. Exists only with the `fault-injection` feature,
    /// which the runtime crate never enables; no configuration file can reach it.
    #[cfg(feature = "fault-injection")]
    pub faults: FaultInjection,
}

/// Known-wrong variants of the SAFE delivery rules (feature `fault-injection`, tests only).
/// Each breaks safe delivery (EVS D8) in a way the simulator's oracle must report.
#[cfg(feature = "fault-injection")]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultInjection {
    /// SAFE messages are delivered like AGREED ones: no safe bound while operational, and no
    /// hold-back at installation.
    pub safe_as_agreed: bool,
    /// The safe bound is taken from one token visit (`token.aru`) instead of two
    /// (`min(token.aru, previous token.aru)`).
    pub safe_one_visit: bool,
    /// At installation, SAFE messages that no transitional member delivered before the
    /// failure are delivered in the old regular configuration anyway (step 2 ignores
    /// `high_ring_delivered`).
    pub no_install_holdback: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            token: Duration::from_millis(3000),
            token_coefficient: Duration::from_millis(650),
            token_retransmits_before_loss_const: 4,
            token_retransmit: None,
            hold: None,
            token_warning: 75,
            join: Duration::from_millis(50),
            send_join: Duration::ZERO,
            consensus: None,
            merge: Duration::from_millis(200),
            downcheck: Duration::from_millis(1000),
            fail_recv_const: 2500,
            seqno_unchanged_const: 30,
            miss_count_const: 5,
            window_size: 50,
            max_messages: 17,
            accelerated_window: 17,
            heartbeat_failures_allowed: 0,
            max_network_delay: Duration::from_millis(50),
            cancel_token_hold_on_retransmit: false,
            max_packet_size: 1400,
            max_message_size: 1 << 20,
            send_queue_bytes: 1 << 20,
            retransmit_list_max: 30,
            sort_queue_capacity: 16384,
            initial_seq: 0,
            #[cfg(feature = "fault-injection")]
            faults: FaultInjection::default(),
        }
    }
}

/// A configuration value that is out of range; names the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid totem.{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

/// The timers in effect for a ring of a given size.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub token: Duration,
    pub token_retransmit: Duration,
    pub hold: Duration,
    pub consensus: Duration,
    /// Early token-loss timeout from the heartbeat formula, when enabled and shorter than T.
    pub heartbeat: Option<Duration>,
    pub token_warning: Option<Duration>,
}

impl Config {
    /// The effective token timeout for a ring of `members` processors.
    pub fn effective_token(&self, members: usize) -> Duration {
        let extra = members.saturating_sub(2) as u32;
        if members >= 3 {
            self.token + self.token_coefficient * extra
        } else {
            self.token
        }
    }

    /// All timers for a ring of `members` processors.
    pub fn timeouts(&self, members: usize) -> Timeouts {
        let token = self.effective_token(members);
        let token_retransmit = self.token_retransmit.unwrap_or_else(|| {
            let r = f64::from(self.token_retransmits_before_loss_const) + 0.2;
            Duration::from_secs_f64(token.as_secs_f64() / r).max(MINIMUM_TIMEOUT)
        });
        let hold = self.hold.unwrap_or_else(|| {
            token_retransmit
                .mul_f64(0.8)
                .saturating_sub(Duration::from_millis(10))
                .max(Duration::from_millis(14))
        });
        let consensus = self.consensus.unwrap_or_else(|| token.mul_f64(1.2));
        let heartbeat = if self.heartbeat_failures_allowed > 0 {
            let hb = token_retransmit * self.heartbeat_failures_allowed + self.max_network_delay;
            (hb < token).then_some(hb)
        } else {
            None
        };
        let token_warning =
            (self.token_warning > 0).then(|| token.mul_f64(f64::from(self.token_warning) / 100.0));
        Timeouts {
            token,
            token_retransmit,
            hold,
            consensus,
            heartbeat,
            token_warning,
        }
    }

    /// Largest payload (packed application data) one multicast may carry: room is left for the
    /// header of the multicast and for a second header when it is re-sent encapsulated.
    pub fn payload_budget(&self) -> usize {
        self.max_packet_size
            .saturating_sub(2 * wire::MCAST_OVERHEAD)
    }

    /// Injected bug: SAFE delivered like AGREED (always false without `fault-injection`).
    #[inline]
    pub(crate) fn inject_safe_as_agreed(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.faults.safe_as_agreed;
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Injected bug: the safe bound from one token visit (always false without the feature).
    #[inline]
    pub(crate) fn inject_safe_one_visit(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.faults.safe_one_visit;
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Injected bug: no SAFE hold-back at installation (always false without the feature).
    #[inline]
    pub(crate) fn inject_no_install_holdback(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.faults.no_install_holdback || self.faults.safe_as_agreed;
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Checks every value and their relations; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let min = |key: &'static str, v: Duration| {
            if v < MINIMUM_TIMEOUT {
                Err(err(key, format!("{v:?} is below the minimum of 30ms")))
            } else {
                Ok(())
            }
        };
        min("token", self.token)?;
        min("join", self.join)?;
        min("merge", self.merge)?;
        min("downcheck", self.downcheck)?;
        min("max_network_delay", self.max_network_delay)?;
        if let Some(t) = self.token_retransmit {
            min("token_retransmit", t)?;
            if t >= self.token {
                return Err(err("token_retransmit", "must be shorter than token"));
            }
        }
        if let Some(h) = self.hold {
            if h < Duration::from_millis(14) {
                return Err(err("hold", "must be at least 14ms"));
            }
        }
        if self.token_retransmits_before_loss_const == 0 {
            return Err(err(
                "token_retransmits_before_loss_const",
                "must be at least 1",
            ));
        }
        if self.token_warning > 100 {
            return Err(err("token_warning", "is a percentage: 0..=100"));
        }
        let t = self.timeouts(2);
        if t.hold >= t.token_retransmit {
            return Err(err("hold", "must be shorter than token_retransmit"));
        }
        if let Some(c) = self.consensus {
            if c < self.join {
                return Err(err("consensus", "must be at least join"));
            }
            if c < self.token {
                return Err(err("consensus", "must be at least token"));
            }
        }
        if self.send_join >= t.consensus {
            return Err(err("send_join", "must be shorter than consensus"));
        }
        for (key, v) in [
            ("fail_recv_const", self.fail_recv_const),
            ("seqno_unchanged_const", self.seqno_unchanged_const),
            ("miss_count_const", self.miss_count_const),
            ("window_size", self.window_size),
            ("max_messages", self.max_messages),
        ] {
            if v == 0 {
                return Err(err(key, "must be at least 1"));
            }
        }
        if self.max_messages > self.window_size {
            return Err(err("max_messages", "must not exceed window_size"));
        }
        if self.max_packet_size < 256 || self.max_packet_size > 65_000 {
            return Err(err("max_packet_size", "must be within 256..=65000 bytes"));
        }
        if self.max_message_size == 0 || self.max_message_size > MAX_MESSAGE_SIZE {
            return Err(err(
                "max_message_size",
                "must be within 1..=64 MiB (+ 64 KiB)",
            ));
        }
        if self.send_queue_bytes < self.max_message_size {
            return Err(err("send_queue_bytes", "must be at least max_message_size"));
        }
        let rtr_room = (self.max_packet_size.saturating_sub(wire::TOKEN_FIXED_LEN)) / 8;
        if self.retransmit_list_max == 0
            || self.retransmit_list_max > wire::MAX_RTR_ENTRIES
            || self.retransmit_list_max > rtr_room
        {
            return Err(err(
                "retransmit_list_max",
                format!(
                    "must be within 1..={} (and fit one packet)",
                    wire::MAX_RTR_ENTRIES.min(rtr_room)
                ),
            ));
        }
        if self.sort_queue_capacity < 2 * u64::from(self.window_size) + 64 {
            return Err(err(
                "sort_queue_capacity",
                "must be at least 2 × window_size + 64",
            ));
        }
        if self.initial_seq > u64::MAX / 2 {
            return Err(err("initial_seq", "must be at most 2^63"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_corosync_3x_and_valid() {
        let c = Config::default();
        c.validate().unwrap();
        let t = c.timeouts(2);
        assert_eq!(t.token, Duration::from_millis(3000));
        // 3000 / 4.2 = 714 ms, hold = 714 × 0.8 − 10 = 561 ms, consensus = 3600 ms.
        assert_eq!(t.token_retransmit.as_millis(), 714);
        assert_eq!(t.hold.as_millis(), 561);
        assert_eq!(t.consensus, Duration::from_millis(3600));
        assert_eq!(t.heartbeat, None);
    }

    #[test]
    fn token_grows_with_ring_size() {
        let c = Config::default();
        assert_eq!(c.effective_token(1), Duration::from_millis(3000));
        assert_eq!(c.effective_token(3), Duration::from_millis(3650));
        assert_eq!(c.effective_token(5), Duration::from_millis(4950));
        assert_eq!(c.timeouts(5).consensus, Duration::from_millis(5940));
    }

    #[test]
    fn bad_values_name_their_key() {
        type Case = (&'static str, Box<dyn Fn(&mut Config)>);
        let cases: Vec<Case> = vec![
            ("token", Box::new(|c| c.token = Duration::from_millis(5))),
            ("join", Box::new(|c| c.join = Duration::ZERO)),
            ("max_messages", Box::new(|c| c.max_messages = 51)),
            ("window_size", Box::new(|c| c.window_size = 0)),
            (
                "consensus",
                Box::new(|c| c.consensus = Some(Duration::from_millis(40))),
            ),
            ("send_queue_bytes", Box::new(|c| c.send_queue_bytes = 10)),
            (
                "retransmit_list_max",
                Box::new(|c| c.retransmit_list_max = 100_000),
            ),
            ("token_warning", Box::new(|c| c.token_warning = 101)),
            (
                "token_retransmit",
                Box::new(|c| c.token_retransmit = Some(Duration::from_secs(10))),
            ),
        ];
        for (key, f) in cases {
            let mut c = Config::default();
            f(&mut c);
            let e = c.validate().unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.to_string().contains(key));
        }
    }

    #[test]
    fn heartbeat_only_when_shorter_than_token() {
        let mut c = Config {
            heartbeat_failures_allowed: 2,
            ..Config::default()
        };
        // 2 × 714 + 50 = 1478 ms < 3000 ms
        assert_eq!(c.timeouts(2).heartbeat.unwrap().as_millis(), 1478);
        c.heartbeat_failures_allowed = 10;
        assert_eq!(c.timeouts(2).heartbeat, None);
    }
}
