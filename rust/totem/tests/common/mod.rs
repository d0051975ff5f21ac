//! A minimal harness for integration tests: processors on a perfect network (no loss, FIFO,
//! fixed latency) and a virtual clock. Faults and the EVS oracle live in `totem-sim`.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use totem::{Config, Destination, Event, Instant, NodeId, Processor, Start, State};

/// One-way delay of every packet.
pub const LATENCY: Duration = Duration::from_micros(100);

pub struct Net {
    pub now: Instant,
    pub procs: BTreeMap<NodeId, Processor>,
    /// (arrival time, destination, packet) in send order; latency is fixed so this is sorted.
    pub wire: VecDeque<(Instant, NodeId, Bytes)>,
    pub events: BTreeMap<NodeId, Vec<Event>>,
    /// Drop every packet addressed to these nodes.
    pub deaf: Vec<NodeId>,
}

impl Net {
    pub fn new(ids: &[NodeId], cfg: &Config) -> Net {
        let mut net = Net {
            now: Instant::ZERO,
            procs: BTreeMap::new(),
            wire: VecDeque::new(),
            events: BTreeMap::new(),
            deaf: Vec::new(),
        };
        for &id in ids {
            let start = Start {
                ring_seq: 0,
                first_msg_no: 0,
                seed: u64::from(id),
            };
            let p = Processor::new(cfg.clone(), id, start, net.now).unwrap();
            net.procs.insert(id, p);
            net.events.insert(id, Vec::new());
            net.pump(id);
        }
        net
    }

    pub fn pump(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.procs.keys().copied().collect();
        let p = self.procs.get_mut(&id).unwrap();
        while let Some(t) = p.poll_transmit() {
            let at = self.now + LATENCY;
            match t.destination {
                Destination::Multicast => {
                    for &to in &ids {
                        if to != id {
                            self.wire.push_back((at, to, t.data.clone()));
                        }
                    }
                }
                Destination::Node(to) => self.wire.push_back((at, to, t.data.clone())),
            }
        }
        while let Some(e) = p.poll_event() {
            self.events.get_mut(&id).unwrap().push(e);
        }
    }

    /// Advances to the next packet or timer and handles it.
    pub fn step(&mut self) {
        let next_timer = self
            .procs
            .iter()
            .filter_map(|(&id, p)| p.poll_timeout().map(|t| (t, id)))
            .min();
        let next_packet = self.wire.front().map(|(t, _, _)| *t);
        match (next_packet, next_timer) {
            (Some(tp), Some((tt, _))) if tp <= tt => self.deliver_packet(),
            (Some(_), None) => self.deliver_packet(),
            (_, Some((tt, id))) => {
                self.now = self.now.max(tt);
                self.procs.get_mut(&id).unwrap().handle_timeout(self.now);
                self.pump(id);
            }
            (None, None) => panic!("nothing to do"),
        }
    }

    pub fn deliver_packet(&mut self) {
        let (at, to, data) = self.wire.pop_front().unwrap();
        self.now = self.now.max(at);
        if self.deaf.contains(&to) {
            return;
        }
        if let Some(p) = self.procs.get_mut(&to) {
            if std::env::var_os("RING_TRACE").is_some() {
                let d = totem::wire::decode(&data).unwrap();
                eprintln!(
                    "{} {}->{} {:?} [{:?}]",
                    self.now,
                    d.sender,
                    to,
                    d.packet,
                    p.state()
                );
            }
            p.handle_packet(self.now, data);
            self.pump(to);
        }
    }

    pub fn run_until(&mut self, mut done: impl FnMut(&Net) -> bool, limit: Duration) {
        let end = self.now + limit;
        while !done(self) {
            if self.now >= end {
                for (id, p) in &self.procs {
                    eprintln!(
                        "{id}: {:?} ring {} members {:?} {:?}",
                        p.state(),
                        p.ring_id(),
                        p.members(),
                        p.stats()
                    );
                }
                panic!("condition not reached by {}", self.now);
            }
            self.step();
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    pub fn all_operational_with(&self, n: usize) -> bool {
        self.procs
            .values()
            .all(|p| p.state() == State::Operational && p.members().len() == n)
    }

    pub fn deliveries(&self, id: NodeId) -> Vec<(NodeId, u64, Bytes)> {
        self.events[&id]
            .iter()
            .filter_map(|e| match e {
                Event::Deliver(d) => Some((d.sender, d.msg_no, d.data.clone())),
                _ => None,
            })
            .collect()
    }
}

pub fn fast_config() -> Config {
    Config {
        token: Duration::from_millis(200),
        token_coefficient: Duration::ZERO,
        join: Duration::from_millis(30),
        merge: Duration::from_millis(40),
        ..Config::default()
    }
}
