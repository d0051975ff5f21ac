//! Benchmark of the protocol core alone: 3 processors in one thread, no I/O, no crypto, a
//! perfect network (every packet delivered in send order), all three sending all the time.
//!
//! Reports delivered application messages per second per processor (every processor delivers
//! every message of all three senders), for 64 B and 1 KiB messages, as the median of several
//! runs. Baseline in the same invocation: the cost of the wire codec alone (encode + decode of
//! the same packets), which bounds what any Totem implementation in this process can reach.
//!
//! Run: `cargo run --release -p evs-benches --bin core-bench [-- --secs S --runs R]`

use std::collections::VecDeque;
use std::time::{Duration, Instant as WallInstant};

use bytes::Bytes;
use totem::{Config, Destination, Event, Guarantee, Instant, NodeId, Processor, Start, State};

struct Ring {
    now: Instant,
    procs: Vec<Processor>,
    wire: VecDeque<(Option<NodeId>, NodeId, Bytes)>,
    delivered: Vec<u64>,
    bytes: Vec<u64>,
}

impl Ring {
    fn new(n: usize, cfg: &Config) -> Ring {
        let now = Instant::ZERO;
        let procs = (1..=n as NodeId)
            .map(|id| {
                let start = Start {
                    ring_seq: 0,
                    first_msg_no: 0,
                    seed: u64::from(id),
                };
                Processor::new(cfg.clone(), id, start, now).expect("valid config")
            })
            .collect();
        let mut r = Ring {
            now,
            procs,
            wire: VecDeque::new(),
            delivered: vec![0; n],
            bytes: vec![0; n],
        };
        for i in 0..n {
            r.pump(i);
        }
        r
    }

    fn pump(&mut self, i: usize) {
        let from = self.procs[i].id();
        while let Some(t) = self.procs[i].poll_transmit() {
            match t.destination {
                Destination::Multicast => self.wire.push_back((None, from, t.data)),
                Destination::Node(to) => self.wire.push_back((Some(to), from, t.data)),
            }
        }
        while let Some(e) = self.procs[i].poll_event() {
            if let Event::Deliver(d) = e {
                self.delivered[i] += 1;
                self.bytes[i] += d.data.len() as u64;
            }
        }
    }

    /// Handles one packet (or, when the network is empty, the earliest timer).
    fn step(&mut self) {
        // Virtual time advances a little per packet so that timers keep their meaning.
        self.now = self.now + Duration::from_micros(2);
        match self.wire.pop_front() {
            Some((Some(to), _, data)) => {
                let i = (to - 1) as usize;
                self.procs[i].handle_packet(self.now, data);
                self.pump(i);
            }
            Some((None, from, data)) => {
                for i in 0..self.procs.len() {
                    if self.procs[i].id() != from {
                        self.procs[i].handle_packet(self.now, data.clone());
                        self.pump(i);
                    }
                }
            }
            None => {
                let (i, t) = self
                    .procs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| p.poll_timeout().map(|t| (i, t)))
                    .min_by_key(|(_, t)| *t)
                    .expect("a processor always has a timer");
                self.now = self.now.max(t);
                self.procs[i].handle_timeout(self.now);
                self.pump(i);
            }
        }
    }

    fn fill(&mut self, payload: &Bytes, depth: usize) {
        for i in 0..self.procs.len() {
            while self.procs[i].stats().send_queue_messages < depth {
                if self.procs[i]
                    .submit(self.now, payload.clone(), Guarantee::Agreed)
                    .is_err()
                {
                    break;
                }
            }
            self.pump(i);
        }
    }
}

fn run(size: usize, secs: f64, cfg: &Config) -> f64 {
    let mut ring = Ring::new(3, cfg);
    while !ring
        .procs
        .iter()
        .all(|p| p.state() == State::Operational && p.members().len() == 3)
    {
        ring.step();
    }
    let payload = Bytes::from(vec![0xA5u8; size]);
    let depth = (256 * 1024 / size.max(1)).max(64);
    let start = WallInstant::now();
    let before = ring.delivered.clone();
    let mut steps = 0u64;
    loop {
        if steps.is_multiple_of(64) {
            ring.fill(&payload, depth);
            if start.elapsed().as_secs_f64() >= secs {
                break;
            }
        }
        ring.step();
        steps += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let per_proc: Vec<f64> = ring
        .delivered
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b) as f64 / elapsed)
        .collect();
    // The slowest processor is the honest figure: all deliver the same stream.
    per_proc.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Baseline: encode + decode of full multicast packets, the floor cost of any packet path.
fn codec_baseline(size: usize, secs: f64, cfg: &Config) -> f64 {
    let per_packet = (cfg.payload_budget() / (size + 2)).max(1);
    let payload = Bytes::from(vec![0x5Au8; per_packet * (size + 2)]);
    let pkt = totem::wire::Packet::Mcast(totem::wire::Mcast {
        ring_id: totem::RingId::new(1, 8),
        seq: 1,
        guarantee: Guarantee::Agreed,
        encapsulated: false,
        payload,
    });
    let start = WallInstant::now();
    let mut msgs = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..1000 {
            let b = Bytes::from(totem::wire::encode(1, &pkt));
            let d = totem::wire::decode(&b).expect("decodes");
            std::hint::black_box(d);
            msgs += per_packet as u64;
        }
    }
    msgs as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn main() {
    let mut secs = 2.0;
    let mut runs = 5;
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--secs" => {
                secs = args[i + 1].parse().expect("--secs takes a number");
                i += 1;
            }
            "--runs" => {
                runs = args[i + 1].parse().expect("--runs takes a number");
                i += 1;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 1;
    }
    let cfg = Config::default();
    println!(
        "core-bench: 3 processors, one thread, perfect network, all sending; median of {runs} runs of {secs}s"
    );
    println!(
        "{:>6} | {:>22} | {:>24} | {:>8}",
        "size", "delivered msg/s/proc", "codec-only msg/s (base)", "ratio"
    );
    for size in [64usize, 1024] {
        let core = median((0..runs).map(|_| run(size, secs, &cfg)).collect());
        let base = median(
            (0..runs)
                .map(|_| codec_baseline(size, secs / 4.0, &cfg))
                .collect(),
        );
        println!(
            "{:>5}B | {:>22.0} | {:>24.0} | {:>7.3}",
            size,
            core,
            base,
            core / base
        );
    }
}
