//! The simulated network: what happens to every datagram between `poll_transmit` on one
//! processor and `handle_packet` on another.
//!
//! Owns per-directed-link latency, jitter, loss and duplication; partitions (symmetric and
//! one-way cuts); clogged links; scripted drop rules; and the in-flight queue. It knows nothing
//! about processors being up or down: a packet is addressed to a node id and the simulator
//! decides on arrival whether anyone is there to receive it (so a crashed node's in-flight
//! packets still arrive, and packets to a node that restarted reach its new incarnation, as with
//! UDP). Every draw comes from the network's own random stream, and the queue is ordered by
//! (arrival time, insertion counter), so a run is a pure function of its seed.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use totem::wire::PacketType;
use totem::{Destination, Instant, NodeId};

use crate::rng::Rng;

/// Delay of the loopback path a processor uses to send the token to itself (singleton ring):
/// about what a datagram through the kernel's loopback takes.
pub const SELF_LATENCY: Duration = Duration::from_micros(20);

/// The packet type, read from byte 3 of the common header (see `totem::wire`), without decoding
/// the packet: drop rules must work on every packet cheaply, even malformed ones.
pub fn packet_type(data: &[u8]) -> Option<PacketType> {
    match data.get(3)? {
        0 => Some(PacketType::OrfToken),
        1 => Some(PacketType::Mcast),
        2 => Some(PacketType::MergeDetect),
        3 => Some(PacketType::Join),
        4 => Some(PacketType::CommitToken),
        5 => Some(PacketType::TokenHoldCancel),
        _ => None,
    }
}

/// Short name of a packet type for traces and printed plans.
pub fn type_name(t: PacketType) -> &'static str {
    match t {
        PacketType::OrfToken => "token",
        PacketType::Mcast => "mcast",
        PacketType::MergeDetect => "merge-detect",
        PacketType::Join => "join",
        PacketType::CommitToken => "commit",
        PacketType::TokenHoldCancel => "hold-cancel",
    }
}

/// Behaviour of one directed link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkParams {
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Upper bound of a uniform extra delay drawn per packet; it is what reorders packets.
    pub jitter: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet that was not lost arrives twice (each copy with its own delay).
    pub dup: f64,
}

/// The network of one run: every directed link between distinct nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct NetParams {
    pub nodes: Vec<NodeId>,
    pub links: BTreeMap<(NodeId, NodeId), LinkParams>,
}

impl NetParams {
    /// Every link alike.
    pub fn uniform(nodes: &[NodeId], link: LinkParams) -> Self {
        let mut links = BTreeMap::new();
        for &a in nodes {
            for &b in nodes {
                if a != b {
                    links.insert((a, b), link.clone());
                }
            }
        }
        NetParams {
            nodes: nodes.to_vec(),
            links,
        }
    }

    pub fn set_loss(&mut self, loss: f64) {
        for l in self.links.values_mut() {
            l.loss = loss;
        }
    }

    /// One-line description: ranges over all links.
    pub fn summary(&self) -> String {
        let mut lat = (u128::MAX, 0u128);
        let mut jit = (u128::MAX, 0u128);
        let mut loss = (f64::MAX, 0f64);
        let mut dup = (f64::MAX, 0f64);
        for l in self.links.values() {
            let (a, b) = (l.latency.as_micros(), l.jitter.as_micros());
            lat = (lat.0.min(a), lat.1.max(a));
            jit = (jit.0.min(b), jit.1.max(b));
            loss = (loss.0.min(l.loss), loss.1.max(l.loss));
            dup = (dup.0.min(l.dup), dup.1.max(l.dup));
        }
        if self.links.is_empty() {
            return "no links".into();
        }
        format!(
            "latency {}-{}us, jitter {}-{}us, loss {:.1}-{:.1}%, dup {:.1}-{:.1}%",
            lat.0,
            lat.1,
            jit.0,
            jit.1,
            loss.0 * 100.0,
            loss.1 * 100.0,
            dup.0 * 100.0,
            dup.1 * 100.0
        )
    }
}

/// A scripted filter: drops matching packets at send time until it expires. `None` fields match
/// everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropRule {
    pub from: Option<Vec<NodeId>>,
    pub to: Option<Vec<NodeId>>,
    pub kinds: Option<Vec<PacketType>>,
    /// Stop after dropping this many packets (counted per receiving copy).
    pub count: Option<u32>,
    /// Stop at this time.
    pub until: Option<Instant>,
}

impl DropRule {
    /// Matches every packet; narrow it with the builder methods.
    pub fn all() -> Self {
        DropRule {
            from: None,
            to: None,
            kinds: None,
            count: None,
            until: None,
        }
    }
    pub fn from(mut self, nodes: &[NodeId]) -> Self {
        self.from = Some(nodes.to_vec());
        self
    }
    pub fn to(mut self, nodes: &[NodeId]) -> Self {
        self.to = Some(nodes.to_vec());
        self
    }
    pub fn kinds(mut self, kinds: &[PacketType]) -> Self {
        self.kinds = Some(kinds.to_vec());
        self
    }
    pub fn count(mut self, n: u32) -> Self {
        self.count = Some(n);
        self
    }
    pub fn until(mut self, t: Instant) -> Self {
        self.until = Some(t);
        self
    }

    fn matches(&self, from: NodeId, to: NodeId, kind: Option<PacketType>) -> bool {
        self.from.as_ref().is_none_or(|f| f.contains(&from))
            && self.to.as_ref().is_none_or(|t| t.contains(&to))
            && self
                .kinds
                .as_ref()
                .is_none_or(|ks| kind.is_some_and(|k| ks.contains(&k)))
    }

    fn expired(&self, now: Instant) -> bool {
        self.count == Some(0) || self.until.is_some_and(|u| now >= u)
    }
}

impl fmt::Display for DropRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &Option<Vec<NodeId>>| match s {
            None => "*".to_string(),
            Some(v) => fmt_nodes(v),
        };
        write!(f, "drop {}→{}", set(&self.from), set(&self.to))?;
        if let Some(ks) = &self.kinds {
            let names: Vec<&str> = ks.iter().map(|k| type_name(*k)).collect();
            write!(f, " [{}]", names.join(","))?;
        }
        if let Some(c) = self.count {
            write!(f, " first {c}")?;
        }
        if let Some(u) = self.until {
            write!(f, " until {u}")?;
        }
        Ok(())
    }
}

// How plans, faults and loads print node sets and durations: here, under `plan` and
// `workload`, which both describe themselves with these.

/// `{1,2,3}`.
pub fn fmt_nodes(v: &[NodeId]) -> String {
    let s: Vec<String> = v.iter().map(|n| n.to_string()).collect();
    format!("{{{}}}", s.join(","))
}

/// A duration in milliseconds, to 0.1 ms.
pub fn fmt_ms(d: Duration) -> String {
    let tenths = (d.as_micros() + 50) / 100;
    if tenths.is_multiple_of(10) {
        format!("{}ms", tenths / 10)
    } else {
        format!("{}.{}ms", tenths / 10, tenths % 10)
    }
}

/// What became of one copy of a sent packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Queued to arrive at this time.
    Queued(Instant),
    /// Queued twice.
    Duplicated(Instant, Instant),
    Lost,
    /// Cut by a partition.
    Cut,
    /// Dropped by a scripted rule.
    Dropped,
    /// Longer than the link's size limit.
    Oversize,
}

/// A packet on the wire.
#[derive(Clone, Debug)]
pub struct InFlight {
    pub at: Instant,
    pub order: u64,
    pub from: NodeId,
    pub to: NodeId,
    pub data: Bytes,
    /// Already through its receiver's bandwidth limit.
    shaped: bool,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest arrival first; the
    /// insertion counter breaks ties so equal times never depend on heap internals.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

/// Counters of one run's network.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Packet copies handed to the network (a multicast counts once per receiver).
    pub copies: u64,
    pub lost: u64,
    pub cut: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub delivered: u64,
    /// Copies longer than their link's size limit (an MTU black hole).
    pub oversize: u64,
    /// Copies lost in the bad state of a burst-loss link (also counted in `lost`).
    pub burst_lost: u64,
    /// Copies given a long extra delay by a slow link.
    pub delayed: u64,
    /// Copies that waited for a bandwidth-limited receiving interface.
    pub shaped: u64,
    /// Copies dropped because a receive buffer was full (an interface's or a busy processor's).
    pub rx_overflow: u64,
}

/// Correlated loss on one directed link (Gilbert-Elliott): a two-state chain stepped once per
/// packet; in the bad state a packet is lost with probability `loss`, in the good state the
/// link's own loss applies.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Burst {
    /// Probability, per packet, of going from the good state to the bad one.
    pub enter: f64,
    /// Probability, per packet, of going from the bad state back to the good one.
    pub exit: f64,
    /// Loss probability in the bad state.
    pub loss: f64,
}

#[derive(Copy, Clone, Debug)]
struct BurstState {
    burst: Burst,
    bad: bool,
    until: Instant,
}

/// A long, variable extra delay on one link until a time: each packet draws its own, so
/// packets overtake each other.
#[derive(Copy, Clone, Debug)]
struct Slow {
    min: Duration,
    max: Duration,
    until: Instant,
}

/// A receiving interface of limited bandwidth with a bounded queue (the socket buffer): a
/// packet is handed over once the interface has taken in everything before it; one that finds
/// the queue full is dropped.
#[derive(Copy, Clone, Debug)]
struct RxLimit {
    bytes_per_sec: u64,
    capacity: usize,
    until: Instant,
    /// When the interface has taken in everything queued so far.
    busy_until: Instant,
}

/// Extra delay on one directed link until a time.
#[derive(Copy, Clone, Debug)]
struct Clog {
    extra: Duration,
    until: Instant,
}

/// The live network of one run.
#[derive(Debug)]
pub struct Network {
    params: NetParams,
    rng: Rng,
    cuts: BTreeSet<(NodeId, NodeId)>,
    /// Largest datagram each limited link carries; longer ones vanish (an MTU black hole:
    /// tokens and joins pass, full multicasts do not).
    size_limits: BTreeMap<(NodeId, NodeId), usize>,
    clogs: BTreeMap<(NodeId, NodeId), Clog>,
    rules: Vec<DropRule>,
    bursts: BTreeMap<(NodeId, NodeId), BurstState>,
    slow: BTreeMap<(NodeId, NodeId), Slow>,
    rx_limits: BTreeMap<NodeId, RxLimit>,
    /// Draws of the burst-loss chains and slow links: a stream of their own, so that runs
    /// without these faults draw exactly what they did before they existed.
    fault_rng: Rng,
    queue: BinaryHeap<InFlight>,
    order: u64,
    pub stats: NetStats,
}

impl Network {
    pub fn new(params: NetParams, rng: Rng) -> Self {
        let fault_rng = Rng::new(rng.clone().next_u64() ^ 0x6275_7273_7473_6c77);
        Network {
            params,
            rng,
            cuts: BTreeSet::new(),
            size_limits: BTreeMap::new(),
            clogs: BTreeMap::new(),
            rules: Vec::new(),
            bursts: BTreeMap::new(),
            slow: BTreeMap::new(),
            rx_limits: BTreeMap::new(),
            fault_rng,
            queue: BinaryHeap::new(),
            order: 0,
            stats: NetStats::default(),
        }
    }

    pub fn nodes(&self) -> &[NodeId] {
        &self.params.nodes
    }

    /// Sends one transmit of `from`; pushes the fate of every copy into `fates` (cleared first).
    /// A multicast goes to every other node of the network; the sender ignores its own.
    pub fn send(
        &mut self,
        now: Instant,
        from: NodeId,
        dest: Destination,
        data: Bytes,
        fates: &mut Vec<(NodeId, Fate)>,
    ) {
        fates.clear();
        let kind = packet_type(&data);
        match dest {
            Destination::Node(to) => {
                let fate = self.send_one(now, from, to, kind, &data);
                fates.push((to, fate));
            }
            Destination::Multicast => {
                for i in 0..self.params.nodes.len() {
                    let to = self.params.nodes[i];
                    if to != from {
                        let fate = self.send_one(now, from, to, kind, &data);
                        fates.push((to, fate));
                    }
                }
            }
        }
    }

    fn send_one(
        &mut self,
        now: Instant,
        from: NodeId,
        to: NodeId,
        kind: Option<PacketType>,
        data: &Bytes,
    ) -> Fate {
        self.stats.copies += 1;
        if from == to {
            // The loopback path: never lost, cut or duplicated.
            let at = now + SELF_LATENCY;
            self.enqueue(at, from, to, data.clone());
            return Fate::Queued(at);
        }
        let Some(link) = self.params.links.get(&(from, to)) else {
            // A packet to a node id outside the network (a processor bug or a stale member):
            // nobody is there.
            self.stats.lost += 1;
            return Fate::Lost;
        };
        let link = link.clone();
        if self.cuts.contains(&(from, to)) {
            self.stats.cut += 1;
            return Fate::Cut;
        }
        if self
            .size_limits
            .get(&(from, to))
            .is_some_and(|&max| data.len() > max)
        {
            self.stats.oversize += 1;
            return Fate::Oversize;
        }
        self.rules.retain(|r| !r.expired(now));
        if let Some(rule) = self.rules.iter_mut().find(|r| r.matches(from, to, kind)) {
            if let Some(c) = &mut rule.count {
                *c -= 1;
            }
            self.stats.dropped += 1;
            return Fate::Dropped;
        }
        // Draw loss and duplication even when their probability is zero would shift the stream
        // between otherwise identical runs; `chance` draws nothing for p <= 0.
        if let Some(b) = self.bursts.get_mut(&(from, to)) {
            if now < b.until {
                let step = if b.bad { b.burst.exit } else { b.burst.enter };
                if self.fault_rng.chance(step) {
                    b.bad = !b.bad;
                }
                if b.bad && self.fault_rng.chance(b.burst.loss) {
                    self.stats.lost += 1;
                    self.stats.burst_lost += 1;
                    return Fate::Lost;
                }
            }
        }
        if self.rng.chance(link.loss) {
            self.stats.lost += 1;
            return Fate::Lost;
        }
        let first = self.arrival(now, from, to, &link);
        self.enqueue(first, from, to, data.clone());
        if self.rng.chance(link.dup) {
            let second = self.arrival(now, from, to, &link);
            self.enqueue(second, from, to, data.clone());
            self.stats.duplicated += 1;
            return Fate::Duplicated(first, second);
        }
        Fate::Queued(first)
    }

    fn arrival(&mut self, now: Instant, from: NodeId, to: NodeId, link: &LinkParams) -> Instant {
        let jitter_us = link.jitter.as_micros() as u64;
        let jitter = if jitter_us == 0 {
            0
        } else {
            self.rng.range(0, jitter_us)
        };
        let mut at = now + link.latency + Duration::from_micros(jitter);
        if let Some(c) = self.clogs.get(&(from, to)) {
            if now < c.until {
                at = at + c.extra;
            }
        }
        if let Some(s) = self.slow.get(&(from, to)) {
            if now < s.until {
                let span = (s.max - s.min).as_micros() as u64;
                let extra = s.min + Duration::from_micros(self.fault_rng.range(0, span));
                at = at + extra;
                self.stats.delayed += 1;
            }
        }
        at
    }

    fn enqueue(&mut self, at: Instant, from: NodeId, to: NodeId, data: Bytes) {
        self.order += 1;
        self.queue.push(InFlight {
            at,
            order: self.order,
            from,
            to,
            data,
            shaped: false,
        });
    }

    /// Arrival time of the next packet in flight.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|p| p.at)
    }

    /// Removes the next packet if it arrives at or before `now`. A packet reaching a
    /// bandwidth-limited interface first waits for it (it is put back with a later arrival
    /// time) or, if the interface's queue is full, is dropped.
    pub fn pop_due(&mut self, now: Instant) -> Option<InFlight> {
        loop {
            if self.queue.peek()?.at > now {
                return None;
            }
            let mut p = self.queue.pop().expect("peeked");
            if !p.shaped && p.from != p.to {
                if let Some(rx) = self.rx_limits.get_mut(&p.to) {
                    if p.at < rx.until {
                        let start = rx.busy_until.max(p.at);
                        let backlog_us = (start - p.at).as_micros() as u64;
                        let backlog = backlog_us.saturating_mul(rx.bytes_per_sec) / 1_000_000;
                        if backlog as usize + p.data.len() > rx.capacity {
                            self.stats.rx_overflow += 1;
                            continue;
                        }
                        let take_us =
                            (p.data.len() as u64 * 1_000_000).div_ceil(rx.bytes_per_sec.max(1));
                        rx.busy_until = start + Duration::from_micros(take_us);
                        self.stats.shaped += 1;
                        p.shaped = true;
                        p.at = rx.busy_until;
                        self.order += 1;
                        p.order = self.order;
                        self.queue.push(p);
                        continue;
                    }
                }
            }
            self.stats.delivered += 1;
            return Some(p);
        }
    }

    /// Correlated loss on the links from every node of `from` to every node of `to` until
    /// `until`; each link starts in the good state.
    pub fn burst_loss(&mut self, from: &[NodeId], to: &[NodeId], burst: Burst, until: Instant) {
        for &a in from {
            for &b in to {
                if a != b {
                    self.bursts.insert(
                        (a, b),
                        BurstState {
                            burst,
                            bad: false,
                            until,
                        },
                    );
                }
            }
        }
    }

    /// Every packet on the links from `from` to `to` takes an extra delay drawn from
    /// `min..max`, until `until`.
    pub fn slow_links(
        &mut self,
        from: &[NodeId],
        to: &[NodeId],
        min: Duration,
        max: Duration,
        until: Instant,
    ) {
        for &a in from {
            for &b in to {
                if a != b {
                    self.slow.insert((a, b), Slow { min, max, until });
                }
            }
        }
    }

    /// `node`'s interface takes in `bytes_per_sec` and queues at most `capacity` bytes, until
    /// `until`.
    pub fn limit_rx(&mut self, node: NodeId, bytes_per_sec: u64, capacity: usize, until: Instant) {
        let busy_until = self
            .rx_limits
            .get(&node)
            .map_or(Instant::ZERO, |r| r.busy_until);
        self.rx_limits.insert(
            node,
            RxLimit {
                bytes_per_sec: bytes_per_sec.max(1),
                capacity,
                until,
                busy_until,
            },
        );
    }

    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Cuts every link between different groups, both ways. Nodes in no group form one more
    /// group together.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        let group_of = |n: NodeId| groups.iter().position(|g| g.contains(&n));
        for &a in &self.params.nodes {
            for &b in &self.params.nodes {
                if a != b && group_of(a) != group_of(b) {
                    self.cuts.insert((a, b));
                }
            }
        }
    }

    /// Cuts `from → to` only: nodes in `to` stop hearing nodes in `from`, not the reverse.
    pub fn cut_one_way(&mut self, from: &[NodeId], to: &[NodeId]) {
        for &a in from {
            for &b in to {
                if a != b {
                    self.cuts.insert((a, b));
                }
            }
        }
    }

    /// Links `from → to` drop datagrams longer than `max` bytes (`None` lifts the limit).
    pub fn limit_size(&mut self, from: &[NodeId], to: &[NodeId], max: Option<usize>) {
        for &a in from {
            for &b in to {
                if a == b {
                    continue;
                }
                match max {
                    Some(m) => {
                        self.size_limits.insert((a, b), m);
                    }
                    None => {
                        self.size_limits.remove(&(a, b));
                    }
                }
            }
        }
    }

    /// Restores every cut link and lifts every size limit.
    pub fn heal(&mut self) {
        self.cuts.clear();
        self.size_limits.clear();
    }

    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cuts.contains(&(from, to))
    }

    /// Does `from → to` carry datagrams of `size` bytes (not cut, no smaller size limit)?
    pub fn carries(&self, from: NodeId, to: NodeId, size: usize) -> bool {
        !self.is_cut(from, to) && self.size_limits.get(&(from, to)).is_none_or(|&m| size <= m)
    }

    pub fn clog(&mut self, from: NodeId, to: NodeId, extra: Duration, until: Instant) {
        self.clogs.insert((from, to), Clog { extra, until });
    }

    pub fn add_rule(&mut self, rule: DropRule) {
        self.rules.push(rule);
    }

    pub fn set_loss(&mut self, loss: f64) {
        self.params.set_loss(loss);
    }

    pub fn set_link_loss(&mut self, from: &[NodeId], to: &[NodeId], loss: f64) {
        for (&(a, b), l) in self.params.links.iter_mut() {
            if from.contains(&a) && to.contains(&b) {
                l.loss = loss;
            }
        }
    }

    /// The end of the fault phase: heals partitions, lifts size limits, unclogs links, removes
    /// drop rules and stops loss. Latency, jitter and duplication stay (they never prevent
    /// progress).
    pub fn clear_faults(&mut self) {
        self.cuts.clear();
        self.size_limits.clear();
        self.clogs.clear();
        self.rules.clear();
        self.bursts.clear();
        self.slow.clear();
        self.rx_limits.clear();
        self.params.set_loss(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(lat: u64, jit: u64, loss: f64, dup: f64) -> LinkParams {
        LinkParams {
            latency: Duration::from_micros(lat),
            jitter: Duration::from_micros(jit),
            loss,
            dup,
        }
    }

    fn pkt(kind: u8) -> Bytes {
        Bytes::from(vec![0x5A, 0x7E, 1, kind, 1, 0, 0, 0])
    }

    fn drain(net: &mut Network) -> Vec<InFlight> {
        let mut out = Vec::new();
        while let Some(p) = net.pop_due(Instant::from_micros(u64::MAX)) {
            out.push(p);
        }
        out
    }

    #[test]
    fn multicast_reaches_every_other_node_in_arrival_order() {
        let nodes = [1, 2, 3, 4];
        let mut net = Network::new(
            NetParams::uniform(&nodes, link(100, 50, 0.0, 0.0)),
            Rng::new(1),
        );
        let mut fates = Vec::new();
        let t0 = Instant::from_micros(1000);
        net.send(t0, 2, Destination::Multicast, pkt(1), &mut fates);
        assert_eq!(fates.iter().map(|f| f.0).collect::<Vec<_>>(), vec![1, 3, 4]);
        let got = drain(&mut net);
        assert_eq!(got.len(), 3);
        for w in got.windows(2) {
            assert!((w[0].at, w[0].order) < (w[1].at, w[1].order));
        }
        for p in &got {
            assert!(p.at >= Instant::from_micros(1100) && p.at <= Instant::from_micros(1150));
            assert_eq!(p.from, 2);
        }
    }

    #[test]
    fn equal_arrival_times_keep_insertion_order() {
        let nodes = [1, 2];
        let mut net = Network::new(
            NetParams::uniform(&nodes, link(100, 0, 0.0, 0.0)),
            Rng::new(1),
        );
        let mut fates = Vec::new();
        for i in 0..20u8 {
            let mut d = pkt(1).to_vec();
            d.push(i);
            net.send(
                Instant::ZERO,
                1,
                Destination::Node(2),
                Bytes::from(d),
                &mut fates,
            );
        }
        let got: Vec<u8> = drain(&mut net).iter().map(|p| p.data[8]).collect();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn self_link_is_never_lossy_or_cut() {
        let nodes = [1, 2];
        let mut net = Network::new(
            NetParams::uniform(&nodes, link(100, 0, 1.0, 0.0)),
            Rng::new(1),
        );
        net.partition(&[vec![1], vec![2]]);
        net.add_rule(DropRule::all());
        let mut fates = Vec::new();
        net.send(Instant::ZERO, 1, Destination::Node(1), pkt(0), &mut fates);
        assert_eq!(fates, vec![(1, Fate::Queued(Instant::ZERO + SELF_LATENCY))]);
        net.send(Instant::ZERO, 1, Destination::Node(2), pkt(0), &mut fates);
        assert_eq!(fates, vec![(2, Fate::Cut)]);
    }

    #[test]
    fn loss_and_duplication_rates_follow_the_parameters() {
        let nodes = [1, 2];
        let mut net = Network::new(
            NetParams::uniform(&nodes, link(10, 10, 0.3, 0.1)),
            Rng::new(5),
        );
        let mut fates = Vec::new();
        for _ in 0..20_000 {
            net.send(Instant::ZERO, 1, Destination::Node(2), pkt(1), &mut fates);
        }
        let s = net.stats;
        assert!((5_600..6_400).contains(&s.lost), "{s:?}");
        assert!((1_200..1_600).contains(&s.duplicated), "{s:?}");
        assert_eq!(net.in_flight() as u64, 20_000 - s.lost + s.duplicated);
    }

    #[test]
    fn burst_loss_comes_in_runs_and_ends() {
        let nodes = [1, 2, 3];
        let mut net = Network::new(
            NetParams::uniform(&nodes, link(10, 0, 0.0, 0.0)),
            Rng::new(3),
        );
        let burst = Burst {
            enter: 0.05,
            exit: 0.2,
            loss: 1.0,
        };
        net.burst_loss(&[1], &[2], burst, Instant::from_millis(10));
        let mut f = Vec::new();
        let (mut runs, mut lost, mut prev_lost) = (0u64, 0u64, false);
        for _ in 0..20_000 {
            net.send(Instant::ZERO, 1, Destination::Node(2), pkt(1), &mut f);
            let l = f[0].1 == Fate::Lost;
            lost += u64::from(l);
            runs += u64::from(l && !prev_lost);
            prev_lost = l;
            // The other links are untouched.
            net.send(Instant::ZERO, 1, Destination::Node(3), pkt(1), &mut f);
            assert!(matches!(f[0].1, Fate::Queued(_)));
        }
        // Stationary bad-state share enter / (enter + exit) = 20 %; runs average 1 / exit = 5
        // packets, where independent loss at the same rate would give 1.25.
        assert!((3_000..5_000).contains(&lost), "{lost}");
        assert!(
            lost as f64 / runs as f64 > 3.5,
            "{lost} lost in {runs} runs"
        );
        assert_eq!(net.stats.burst_lost, lost);
        for _ in 0..1_000 {
            net.send(
                Instant::from_millis(10),
                1,
                Destination::Node(2),
                pkt(1),
                &mut f,
            );
            assert!(matches!(f[0].1, Fate::Queued(_)));
        }
    }

    #[test]
    fn slow_links_delay_by_hundreds_of_ms_and_reorder() {
        let nodes = [1, 2, 3];
        let mut net = Network::new(
            NetParams::uniform(&nodes, link(100, 0, 0.0, 0.0)),
            Rng::new(4),
        );
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(800));
        net.slow_links(&[1], &[2], min, max, Instant::from_millis(50));
        let mut f = Vec::new();
        for i in 0..100u8 {
            let mut d = pkt(1).to_vec();
            d.push(i);
            net.send(
                Instant::ZERO,
                1,
                Destination::Multicast,
                Bytes::from(d),
                &mut f,
            );
            match f[0] {
                (2, Fate::Queued(at)) => assert!(
                    at >= Instant::from_micros(100_100) && at < Instant::from_micros(800_100),
                    "{at}"
                ),
                other => panic!("{other:?}"),
            }
            assert_eq!(f[1], (3, Fate::Queued(Instant::from_micros(100))));
        }
        assert_eq!(net.stats.delayed, 100);
        let order: Vec<u8> = drain(&mut net)
            .iter()
            .filter(|p| p.to == 2)
            .map(|p| p.data[8])
            .collect();
        let overtaken = order.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(overtaken > 20, "{order:?}");
        // After `until` the link is fast again.
        net.send(
            Instant::from_millis(50),
            1,
            Destination::Node(2),
            pkt(1),
            &mut f,
        );
        assert_eq!(f[0], (2, Fate::Queued(Instant::from_micros(50_100))));
    }

    #[test]
    fn bandwidth_limit_paces_arrivals_and_overflows_its_buffer() {
        let nodes = [1, 2, 3];
        let mut net = Network::new(
            NetParams::uniform(&nodes, link(100, 0, 0.0, 0.0)),
            Rng::new(4),
        );
        // 1 MB/s, room for 10 packets of 1000 bytes.
        net.limit_rx(2, 1_000_000, 10_000, Instant::from_millis(100));
        let mut f = Vec::new();
        for _ in 0..30 {
            let d = Bytes::from(vec![0u8; 1_000]);
            net.send(Instant::ZERO, 1, Destination::Multicast, d, &mut f);
        }
        let got = drain(&mut net);
        let to2: Vec<Instant> = got.iter().filter(|p| p.to == 2).map(|p| p.at).collect();
        let to3 = got.iter().filter(|p| p.to == 3).count();
        assert_eq!(to3, 30, "the other receiver is not limited");
        // All 30 arrive together: the first ten fit the buffer, each taking 1 ms to take in;
        // the rest overflow.
        assert_eq!(to2.len(), 10, "{to2:?}");
        for (k, at) in to2.iter().enumerate() {
            assert_eq!(*at, Instant::from_micros(100 + 1_000 * (k as u64 + 1)));
        }
        assert_eq!(net.stats.rx_overflow, 20);
        assert_eq!(net.stats.shaped, 10);
    }

    #[test]
    fn partitions_cut_across_groups_and_heal() {
        let nodes = [1, 2, 3, 4, 5];
        let mut net = Network::new(
            NetParams::uniform(&nodes, link(10, 0, 0.0, 0.0)),
            Rng::new(1),
        );
        net.partition(&[vec![1, 2], vec![3]]);
        // 4 and 5 are in no group: together they form a third one.
        assert!(!net.is_cut(1, 2) && !net.is_cut(4, 5));
        assert!(net.is_cut(1, 3) && net.is_cut(3, 1) && net.is_cut(2, 4) && net.is_cut(5, 3));
        net.heal();
        assert!(!net.is_cut(1, 3));
    }

    #[test]
    fn one_way_cut_is_asymmetric() {
        let nodes = [1, 2, 3];
        let mut net = Network::new(
            NetParams::uniform(&nodes, link(10, 0, 0.0, 0.0)),
            Rng::new(1),
        );
        net.cut_one_way(&[1], &[2, 3]);
        let mut fates = Vec::new();
        net.send(Instant::ZERO, 1, Destination::Multicast, pkt(1), &mut fates);
        assert_eq!(fates, vec![(2, Fate::Cut), (3, Fate::Cut)]);
        net.send(Instant::ZERO, 2, Destination::Node(1), pkt(1), &mut fates);
        assert!(matches!(fates[0], (1, Fate::Queued(_))));
    }

    #[test]
    fn clog_delays_only_its_link_and_only_until_it_ends() {
        let nodes = [1, 2, 3];
        let mut net = Network::new(
            NetParams::uniform(&nodes, link(100, 0, 0.0, 0.0)),
            Rng::new(1),
        );
        net.clog(1, 2, Duration::from_millis(50), Instant::from_millis(10));
        let mut fates = Vec::new();
        net.send(Instant::ZERO, 1, Destination::Multicast, pkt(1), &mut fates);
        assert_eq!(fates[0], (2, Fate::Queued(Instant::from_micros(50_100))));
        assert_eq!(fates[1], (3, Fate::Queued(Instant::from_micros(100))));
        net.send(
            Instant::from_millis(10),
            1,
            Destination::Node(2),
            pkt(1),
            &mut fates,
        );
        assert_eq!(fates[0], (2, Fate::Queued(Instant::from_micros(10_100))));
    }

    #[test]
    fn drop_rules_match_kind_direction_and_expire() {
        let nodes = [1, 2, 3];
        let mut net = Network::new(
            NetParams::uniform(&nodes, link(10, 0, 0.0, 0.0)),
            Rng::new(1),
        );
        net.add_rule(
            DropRule::all()
                .kinds(&[PacketType::OrfToken])
                .to(&[2])
                .count(2),
        );
        net.add_rule(DropRule::all().from(&[3]).until(Instant::from_millis(5)));
        let mut f = Vec::new();
        let t = Instant::ZERO;
        net.send(t, 1, Destination::Node(2), pkt(1), &mut f); // mcast kind: passes
        assert!(matches!(f[0].1, Fate::Queued(_)));
        net.send(t, 1, Destination::Node(2), pkt(0), &mut f);
        assert_eq!(f[0].1, Fate::Dropped);
        net.send(t, 3, Destination::Node(2), pkt(0), &mut f);
        assert_eq!(f[0].1, Fate::Dropped); // second and last token drop
        net.send(t, 1, Destination::Node(2), pkt(0), &mut f);
        assert!(matches!(f[0].1, Fate::Queued(_)));
        net.send(t, 3, Destination::Node(1), pkt(3), &mut f);
        assert_eq!(f[0].1, Fate::Dropped);
        net.send(
            Instant::from_millis(5),
            3,
            Destination::Node(1),
            pkt(3),
            &mut f,
        );
        assert!(matches!(f[0].1, Fate::Queued(_)));
    }

    #[test]
    fn clear_faults_stops_loss_but_keeps_packets_in_flight() {
        let nodes = [1, 2];
        let mut net = Network::new(
            NetParams::uniform(&nodes, link(10, 0, 0.0, 0.0)),
            Rng::new(1),
        );
        let mut f = Vec::new();
        net.send(Instant::ZERO, 1, Destination::Node(2), pkt(1), &mut f);
        net.set_loss(1.0);
        net.cut_one_way(&[2], &[1]);
        net.clear_faults();
        for _ in 0..100 {
            net.send(Instant::ZERO, 2, Destination::Node(1), pkt(1), &mut f);
            assert!(matches!(f[0].1, Fate::Queued(_)));
        }
        assert_eq!(net.in_flight(), 101);
    }

    #[test]
    fn same_seed_same_fates() {
        let run = |seed| {
            let nodes = [1, 2, 3];
            let mut net = Network::new(
                NetParams::uniform(&nodes, link(100, 300, 0.2, 0.1)),
                Rng::new(seed),
            );
            let mut f = Vec::new();
            let mut all = Vec::new();
            for i in 0..200 {
                net.send(
                    Instant::from_micros(i * 7),
                    (i % 3 + 1) as u32,
                    Destination::Multicast,
                    pkt(1),
                    &mut f,
                );
                all.extend(f.iter().copied());
            }
            all
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
    }
}
