//! Benchmark of one EVS node through the public Rust API: one process is one node.
//!
//! Run one instance per node (`benches/run_node_bench.sh` starts three, each in its own
//! network namespace, and compares them with Corosync CPG and the raw UDP multicast ceiling
//! of the same topology). Every instance joins the group `bench`, waits until that group has
//! a handle on every expected node, then:
//!
//! * **throughput** (`--mode throughput`): every node with `--send 1` multicasts messages of
//!   `--size` bytes as fast as the node's send budget lets it (`mcast_joined_blocking` with a
//!   timeout: the budget, refunded as the processor sends, paces the sender), for `--warmup`
//!   seconds not counted and then `--duration` seconds counted. Every node counts what it
//!   delivers inside its own counting window (its own messages and the others'), and measures
//!   the self-delivery latency of its own messages and the one-way latency of all messages
//!   (the send time travels in the payload; all namespaces of one host share
//!   `CLOCK_MONOTONIC`, so the clocks are comparable). After the window each sender multicasts
//!   a FIN with its count; every node drains until it has every sender's FIN and checks that
//!   each sender's messages arrived complete and in FIFO order, and hashes its whole delivery
//!   sequence (equal hashes on all nodes: the same total order). The metrics follow Corosync's
//!   `cpgperf.c` so that the figures are comparable.
//! * **latency** (`--mode latency`): the node with `--send 1` multicasts one message, waits
//!   for its own delivery (agreed order), and repeats `--count` times after `--lat-warmup`
//!   rounds, on an otherwise idle ring; the others only deliver.
//!
//! In both modes the nodes then exchange a DONE message and stop only when every node's DONE
//! was delivered (or after a timeout), so no node leaves the ring while another still drains.
//! The result is one JSON object (`--out FILE`, else stdout); the exit code is 0 only if the
//! run was complete and ordered.
//!
//! `node-bench --keygen PATH` writes a fresh authkey (mode 0600) and exits.
//!
//! Run `node-bench --help` for the options.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use evs::config::{NodeConfig, NodeConfigBuilder};
use evs::{Event, EvsError, Guarantee, Handle, Node, NodeId, NodeStats, Runtime};
use nix::sys::resource::{getrusage, UsageWho};
use nix::time::{clock_gettime, ClockId};

const GROUP: &str = "bench";
const MAGIC: u32 = u32::from_le_bytes(*b"EVSB");
const K_DATA: u8 = 1;
const K_FIN: u8 = 2;
const K_DONE: u8 = 3;
const K_LAT: u8 = 4;
/// magic u32 | kind u8 | 3 pad | sender u32 | 4 pad | seq u64 | send time (ns) u64 | total u64
const HDR: usize = 40;
/// Latency samples kept per kind (8 bytes each); beyond this they are counted, not kept.
const SAMPLE_CAP: usize = 16 << 20;
/// How long one blocking multicast waits for send budget before the sender loops (and
/// re-checks its deadline). Only bounds the loop; it does not pace anything.
const SEND_WAIT: Duration = Duration::from_millis(100);

const USAGE: &str = "\
usage: node-bench [options]
       node-bench --keygen PATH

node configuration (a --config file first, then the flags over it):
  --config FILE        evs TOML configuration to start from
  --bind IP            this node's address (required without --config)
  --node-id N          node id (default: derived from the bind address)
  --port N             UDP port (default 5405)
  --cluster NAME       cluster name (default evs-bench)
  --crypto C           on|off or aes256gcm|chacha20poly1305|none (default on = aes256gcm)
  --authkey FILE       shared key (required with crypto on)
  --set KEY=VALUE      any other configuration key (repeatable), e.g. --set window_size=50
benchmark:
  --mode M             throughput|latency (default throughput)
  --size BYTES         application payload per message, >= 40 (default 1024)
  --nodes N            nodes expected in the group before starting (default 3)
  --send 0|1           whether this node sends (default 1 in throughput, 0 in latency)
  --senders N          number of sending nodes (default: nodes in throughput, 1 in latency)
  --duration S         counted window in seconds, throughput (default 10)
  --warmup S           uncounted sending before the window, throughput (default 2)
  --count N            measured round trips, latency (default 10000)
  --lat-warmup N       uncounted round trips before them (default 200)
  --queue N            handle event-queue capacity (default: 64 MiB worth of messages, >= 16384)
  --join-timeout S     wait for the ring and the group (default 60)
  --drain-timeout S    wait for FINs and DONEs after the window (default 60)
  --out FILE           write the JSON summary there (default stdout)
";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Throughput,
    Latency,
}

struct Args {
    config: Option<PathBuf>,
    bind: Option<String>,
    node_id: Option<String>,
    port: Option<String>,
    cluster: String,
    crypto: String,
    authkey: Option<String>,
    sets: Vec<(String, String)>,
    mode: Mode,
    size: usize,
    nodes: usize,
    send: Option<bool>,
    senders: Option<usize>,
    duration: f64,
    warmup: f64,
    count: u64,
    lat_warmup: u64,
    queue: Option<usize>,
    join_timeout: f64,
    drain_timeout: f64,
    out: Option<PathBuf>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        config: None,
        bind: None,
        node_id: None,
        port: None,
        cluster: "evs-bench".into(),
        crypto: "on".into(),
        authkey: None,
        sets: Vec::new(),
        mode: Mode::Throughput,
        size: 1024,
        nodes: 3,
        send: None,
        senders: None,
        duration: 10.0,
        warmup: 2.0,
        count: 10_000,
        lat_warmup: 200,
        queue: None,
        join_timeout: 60.0,
        drain_timeout: 60.0,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
        v.parse()
            .map_err(|_| format!("{flag}: not a valid number: {v}"))
    }
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            print!("{USAGE}");
            return Ok(None);
        }
        let v = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value (see --help)"))?;
        match flag.as_str() {
            "--keygen" => {
                evs::crypto::keygen(&v).map_err(|e| format!("keygen {v}: {e}"))?;
                return Ok(None);
            }
            "--config" => a.config = Some(v.into()),
            "--bind" => a.bind = Some(v),
            "--node-id" => a.node_id = Some(v),
            "--port" => a.port = Some(v),
            "--cluster" => a.cluster = v,
            "--crypto" => a.crypto = v,
            "--authkey" => a.authkey = Some(v),
            "--set" => {
                let (k, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--set {v}: expected KEY=VALUE"))?;
                a.sets.push((k.to_owned(), val.to_owned()));
            }
            "--mode" => {
                a.mode = match v.as_str() {
                    "throughput" | "tput" => Mode::Throughput,
                    "latency" | "lat" => Mode::Latency,
                    _ => return Err(format!("--mode {v}: expected throughput or latency")),
                }
            }
            "--size" => a.size = num(&flag, v)?,
            "--nodes" => a.nodes = num(&flag, v)?,
            "--send" => a.send = Some(num::<u8>(&flag, v)? != 0),
            "--senders" => a.senders = Some(num(&flag, v)?),
            "--duration" => a.duration = num(&flag, v)?,
            "--warmup" => a.warmup = num(&flag, v)?,
            "--count" => a.count = num(&flag, v)?,
            "--lat-warmup" => a.lat_warmup = num(&flag, v)?,
            "--queue" => a.queue = Some(num(&flag, v)?),
            "--join-timeout" => a.join_timeout = num(&flag, v)?,
            "--drain-timeout" => a.drain_timeout = num(&flag, v)?,
            "--out" => a.out = Some(v.into()),
            _ => return Err(format!("unknown option {flag} (see --help)")),
        }
    }
    if a.size < HDR {
        return Err(format!(
            "--size must be at least {HDR} (the benchmark header)"
        ));
    }
    if a.nodes == 0 || a.duration <= 0.0 || a.warmup < 0.0 {
        return Err("--nodes and --duration must be positive, --warmup not negative".into());
    }
    Ok(Some(a))
}

fn node_config(a: &Args) -> Result<NodeConfig, String> {
    let mut b = match &a.config {
        Some(p) => NodeConfigBuilder::from_file(p).map_err(|e| e.to_string())?,
        None => NodeConfig::builder(),
    };
    let cipher = match a.crypto.as_str() {
        "on" => "aes256gcm",
        "off" => "none",
        c => c,
    };
    let mut keys: Vec<(&str, &str)> = vec![("cluster_name", &a.cluster), ("crypto", cipher)];
    for (k, v) in [
        ("bind", &a.bind),
        ("node_id", &a.node_id),
        ("port", &a.port),
    ] {
        if let Some(v) = v {
            keys.push((k, v));
        }
    }
    // With crypto off the configuration must not name a key (the builder refuses both).
    if cipher != "none" {
        if let Some(k) = &a.authkey {
            keys.push(("authkey", k));
        }
    }
    for (k, v) in &a.sets {
        keys.push((k, v));
    }
    for (k, v) in keys {
        b.set_from_str(k, v).map_err(|e| e.to_string())?;
    }
    b.build().map_err(|e| e.to_string())
}

/// `CLOCK_MONOTONIC` in nanoseconds: shared by every network namespace of the host, so a send
/// time written by one node can be compared with a delivery time read by another.
fn mono_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

fn secs_ns(s: f64) -> u64 {
    (s * 1e9) as u64
}

/// User + system CPU seconds of this process (all its threads, the node's runtime included).
fn cpu_s() -> f64 {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(r) => {
            let (u, s) = (r.user_time(), r.system_time());
            u.tv_sec() as f64 + s.tv_sec() as f64 + (u.tv_usec() + s.tv_usec()) as f64 / 1e6
        }
        Err(_) => f64::NAN,
    }
}

/// (busy, total) jiffies of the whole machine.
fn sys_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return (0, 0);
    }
    let total: u64 = v.iter().sum();
    (total - v[3] - v[4], total)
}

/// UDP `RcvbufErrors` and `InErrors` of this process's network namespace.
fn udp_errors() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(vals)) = (lines.next(), lines.next()) else {
        return (0, 0);
    };
    let get = |name: &str| {
        names
            .split_whitespace()
            .position(|n| n == name)
            .and_then(|i| vals.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("RcvbufErrors"), get("InErrors"))
}

struct Msg {
    kind: u8,
    sender: NodeId,
    seq: u64,
    t_send: u64,
    total: u64,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn parse(b: &[u8]) -> Option<Msg> {
    if b.len() < HDR || u32_at(b, 0) != MAGIC {
        return None;
    }
    Some(Msg {
        kind: b[4],
        sender: u32_at(b, 8),
        seq: u64_at(b, 16),
        t_send: u64_at(b, 24),
        total: u64_at(b, 32),
    })
}

/// Writes a header into the first `HDR` bytes of `buf` (the rest is left as it is).
fn write_hdr(buf: &mut [u8], kind: u8, sender: NodeId, seq: u64, t_send: u64, total: u64) {
    buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    buf[4] = kind;
    buf[8..12].copy_from_slice(&sender.to_le_bytes());
    buf[16..24].copy_from_slice(&seq.to_le_bytes());
    buf[24..32].copy_from_slice(&t_send.to_le_bytes());
    buf[32..40].copy_from_slice(&total.to_le_bytes());
}

/// A message payload of `size` bytes: the header, then a fixed pattern (so compression or
/// zero pages could not flatter anything).
fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| i as u8).collect()
}

/// Multicasts until accepted (the budget refills as the processor sends) or `deadline`.
/// Returns the number of timed-out waits.
fn send_until(h: &Handle, buf: &[u8], deadline: u64) -> Result<u64, EvsError> {
    let mut waits = 0;
    loop {
        match h.mcast_joined_blocking(buf, Guarantee::Agreed, SEND_WAIT) {
            Ok(()) => return Ok(waits),
            Err(EvsError::Timeout) if mono_ns() < deadline => waits += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Percentile `q` of sorted samples in µs (nearest rank below, as cpgperf.c).
fn pct_us(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q) as usize] as f64 / 1000.0
}

#[derive(Default)]
struct PerSender {
    next_seq: u64,
    delivered: u64,
    fin: Option<u64>,
    done: bool,
}

/// Everything the receiving side learns.
#[derive(Default)]
struct Rx {
    senders: BTreeMap<NodeId, PerSender>,
    total_deliv: u64,
    win_deliv: u64,
    win_bytes: u64,
    fifo_errors: u64,
    bad: u64,
    order_hash: u64,
    /// One-way latency (ns) of every delivery in the window; self-delivery of our own.
    owl: Vec<u64>,
    selfl: Vec<u64>,
    dropped_samples: u64,
    config_changes_in_window: u64,
    /// Latency mode: the sequence number of our own message last delivered.
    lat_seen: Option<u64>,
}

impl Rx {
    fn new() -> Rx {
        Rx {
            order_hash: 0xcbf2_9ce4_8422_2325, // FNV-1a offset basis
            ..Rx::default()
        }
    }

    fn fnv(&mut self, v: u64) {
        for i in 0..8 {
            self.order_hash ^= (v >> (8 * i)) & 0xff;
            self.order_hash = self.order_hash.wrapping_mul(0x100_0000_01b3);
        }
    }

    fn fins(&self) -> usize {
        self.senders.values().filter(|s| s.fin.is_some()).count()
    }

    fn dones(&self) -> usize {
        self.senders.values().filter(|s| s.done).count()
    }

    /// Takes one event; `window` is the counting window in `mono_ns` time.
    fn event(&mut self, me: NodeId, ev: Event, window: (u64, u64)) {
        let data = match ev {
            Event::Message { data, .. } => data,
            Event::ConfigChange { .. } => {
                let now = mono_ns();
                if now >= window.0 && now < window.1 {
                    self.config_changes_in_window += 1;
                }
                return;
            }
            Event::GroupChange { .. } => return,
        };
        let now = mono_ns();
        let Some(m) = parse(&data) else {
            self.bad += 1;
            return;
        };
        match m.kind {
            K_DATA => {
                self.total_deliv += 1;
                let s = self.senders.entry(m.sender).or_default();
                if m.seq != s.next_seq {
                    self.fifo_errors += 1;
                }
                s.next_seq = m.seq + 1;
                s.delivered += 1;
                self.fnv((u64::from(m.sender) << 48) ^ m.seq);
                if now >= window.0 && now < window.1 {
                    self.win_deliv += 1;
                    self.win_bytes += data.len() as u64;
                    let lat = now.saturating_sub(m.t_send);
                    if self.owl.len() < SAMPLE_CAP {
                        self.owl.push(lat);
                    } else {
                        self.dropped_samples += 1;
                    }
                    if m.sender == me && self.selfl.len() < SAMPLE_CAP {
                        self.selfl.push(lat);
                    }
                }
            }
            K_FIN => {
                let s = self.senders.entry(m.sender).or_default();
                s.fin.get_or_insert(m.total);
            }
            K_DONE => self.senders.entry(m.sender).or_default().done = true,
            K_LAT => {
                self.total_deliv += 1;
                if m.sender == me {
                    self.lat_seen = Some(m.seq);
                }
            }
            _ => self.bad += 1,
        }
    }
}

/// Counters read at the start and the end of the counting window.
struct Snapshot {
    cpu_s: f64,
    sys: (u64, u64),
    udp: (u64, u64),
    stats: Option<NodeStats>,
}

fn snapshot(node: &Node) -> Snapshot {
    Snapshot {
        cpu_s: cpu_s(),
        sys: sys_ticks(),
        udp: udp_errors(),
        stats: node.stats().ok(),
    }
}

/// A tiny JSON object writer (flat keys; values already formatted).
struct Json(String);

impl Json {
    fn new() -> Json {
        Json(String::from("{"))
    }
    fn raw(&mut self, k: &str, v: impl std::fmt::Display) -> &mut Json {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        let _ = write!(self.0, "\"{k}\":{v}");
        self
    }
    fn num(&mut self, k: &str, v: f64) -> &mut Json {
        if v.is_finite() {
            self.raw(k, format!("{v:.3}"))
        } else {
            self.raw(k, "null")
        }
    }
    fn str(&mut self, k: &str, v: &str) -> &mut Json {
        let esc: String = v
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                c if (c as u32) < 0x20 => vec![' '],
                c => vec![c],
            })
            .collect();
        self.raw(k, format!("\"{esc}\""))
    }
    fn finish(&mut self) -> String {
        self.0.push_str("}\n");
        std::mem::take(&mut self.0)
    }
}

/// Window deltas and end totals of the node's counters.
fn stats_json(j: &mut Json, s0: Option<&NodeStats>, s1: Option<&NodeStats>, end: &NodeStats) {
    if let (Some(a), Some(b)) = (s0, s1) {
        let d = |f: fn(&NodeStats) -> u64| f(b).saturating_sub(f(a));
        j.raw(
            "win_retransmits_requested",
            d(|s| s.totem.retransmits_requested),
        )
        .raw("win_retransmits_sent", d(|s| s.totem.retransmits_sent))
        .raw("win_token_retransmits", d(|s| s.totem.token_retransmits))
        .raw("win_token_rotations", d(|s| s.totem.token_rotations))
        .raw("win_datagrams_out", d(|s| s.transport.datagrams_out))
        .raw("win_datagrams_in", d(|s| s.transport.datagrams_in))
        .raw("win_bytes_out", d(|s| s.transport.bytes_out))
        .raw("win_send_syscalls", d(|s| s.transport.send_syscalls))
        .raw("win_gso_sends", d(|s| s.transport.gso_sends))
        .raw("win_recv_syscalls", d(|s| s.transport.recv_syscalls))
        .raw("win_rings_formed", d(|s| s.totem.rings_formed))
        .raw("win_crypto_rejected", d(|s| s.crypto_rejected.total()));
    }
    let rejected: u64 = end.rejected().iter().map(|(_, n)| n).sum();
    let mut nonzero = String::new();
    for (k, n) in end.rejected() {
        if n > 0 {
            let _ = write!(
                nonzero,
                "{}{k}={n}",
                if nonzero.is_empty() { "" } else { " " }
            );
        }
    }
    j.raw("members", end.members.len())
        .raw("retransmits_requested", end.totem.retransmits_requested)
        .raw("retransmits_sent", end.totem.retransmits_sent)
        .raw("token_retransmits", end.totem.token_retransmits)
        .raw("token_lost", end.totem.token_lost)
        .raw("rings_formed", end.totem.rings_formed)
        .num(
            "mean_rotation_us",
            end.totem.mean_rotation.as_secs_f64() * 1e6,
        )
        .raw("rejected_total", rejected)
        .str("rejected_nonzero", &nonzero)
        .raw("own_frames_dropped", end.own_frames_dropped)
        .raw("handles_overflowed", end.handles_overflowed)
        .raw("gso_max_segments", end.transport.max_gso_segments)
        .raw("recv_buffer", end.transport.recv_buffer)
        .raw("send_buffer", end.transport.send_buffer);
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("node-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Receives until `until` says stop or `deadline` passes; false on timeout.
fn pump(
    h: &Handle,
    rx: &mut Rx,
    me: NodeId,
    window: (u64, u64),
    deadline: u64,
    until: impl Fn(&Rx) -> bool,
) -> Result<bool, EvsError> {
    while !until(rx) {
        if mono_ns() >= deadline {
            return Ok(false);
        }
        match h.recv_many(4096, Some(Duration::from_millis(50))) {
            Ok(evs) => {
                for ev in evs {
                    rx.event(me, ev, window);
                }
            }
            Err(EvsError::Timeout) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn run(a: &Args) -> Result<bool, String> {
    let cfg = node_config(a)?;
    let me = cfg.node_id();
    let is_lat = a.mode == Mode::Latency;
    let sending = a.send.unwrap_or(!is_lat);
    let senders = a.senders.unwrap_or(if is_lat { 1 } else { a.nodes });
    // Deep enough that a receiver briefly descheduled on a busy machine does not get its
    // handle closed as a slow consumer, bounded in bytes for large messages.
    let queue = a.queue.unwrap_or((64 << 20) / a.size).max(16 * 1024);

    let t_init = mono_ns();
    let runtime = Runtime::new().map_err(|e| format!("runtime: {e}"))?;
    let node = Node::start(&cfg, &runtime).map_err(|e| format!("start: {e}"))?;
    let h = node
        .handle_with_capacity(queue)
        .map_err(|e| format!("handle: {e}"))?;
    h.join([GROUP]).map_err(|e| format!("join: {e}"))?;

    // Start once the group has a handle on every expected node: a join is delivered in agreed
    // order everywhere, so this is nearly a common start signal (as in cpgperf.c).
    let join_deadline = t_init + secs_ns(a.join_timeout);
    let mut rx = Rx::new();
    loop {
        let nodes: std::collections::BTreeSet<NodeId> = h
            .group_membership(GROUP)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        if nodes.len() >= a.nodes {
            break;
        }
        if mono_ns() > join_deadline {
            return Err(format!(
                "node {me}: group did not reach {} nodes in {} s (have {:?}, ring {:?})",
                a.nodes,
                a.join_timeout,
                nodes,
                node.membership().1
            ));
        }
        // Nodes that saw the whole group earlier may already be sending: their messages are
        // not counted (the window is later) but must be taken, or the FIFO and completeness
        // checks would see a gap.
        match h.recv_many(4096, Some(Duration::from_millis(10))) {
            Ok(evs) => {
                for ev in evs {
                    rx.event(me, ev, (u64::MAX, u64::MAX));
                }
            }
            Err(EvsError::Timeout) => {}
            Err(e) => return Err(format!("node {me}: receive failed: {e}")),
        }
    }
    let t0 = mono_ns();
    let wait_join_s = (t0 - t_init) as f64 / 1e9;
    let mut j = Json::new();
    j.str("mode", if is_lat { "latency" } else { "throughput" })
        .raw("node", me)
        .raw("nodes", a.nodes)
        .str("crypto", cfg.crypto().as_str())
        .raw("size", a.size)
        .raw("sender", u8::from(sending))
        .raw("senders", senders)
        .num("wait_join_s", wait_join_s);
    let mut ok;

    if !is_lat {
        let win = (t0 + secs_ns(a.warmup), t0 + secs_ns(a.warmup + a.duration));
        let hard_deadline = win.1 + secs_ns(a.drain_timeout);
        let stop_sampling = AtomicBool::new(false);
        let (sent, snaps, recv_res) = std::thread::scope(|s| {
            let sender = sending.then(|| {
                s.spawn(|| -> Result<(u64, u64, u64, u64), EvsError> {
                    let mut buf = payload(a.size);
                    let (mut seq, mut in_win, mut waits) = (0u64, 0u64, 0u64);
                    loop {
                        let now = mono_ns();
                        if now >= win.1 {
                            break;
                        }
                        write_hdr(&mut buf, K_DATA, me, seq, now, 0);
                        waits += send_until(&h, &buf, hard_deadline)?;
                        seq += 1;
                        if now >= win.0 {
                            in_win += 1;
                        }
                    }
                    let t_stop = mono_ns();
                    let mut fin = [0u8; HDR];
                    write_hdr(&mut fin, K_FIN, me, 0, t_stop, seq);
                    send_until(&h, &fin, hard_deadline)?;
                    Ok((seq, in_win, waits, t_stop))
                })
            });
            // Counters at the window's edges, read by a thread that only sleeps in between.
            let sampler = s.spawn(|| {
                let mut out = Vec::new();
                for edge in [win.0, win.1] {
                    loop {
                        let now = mono_ns();
                        if now >= edge || stop_sampling.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_nanos((edge - now).min(50_000_000)));
                    }
                    if stop_sampling.load(Ordering::Relaxed) {
                        break;
                    }
                    out.push(snapshot(&node));
                }
                out
            });
            let fins = |rx: &Rx| rx.fins() >= senders && mono_ns() >= win.1;
            let recv_res = pump(&h, &mut rx, me, win, hard_deadline, fins);
            stop_sampling.store(true, Ordering::Relaxed);
            let sent = sender.map(|t| t.join().expect("sender thread panicked"));
            let snaps = sampler.join().expect("sampler thread panicked");
            (sent, snaps, recv_res)
        });
        let complete = match &recv_res {
            Ok(c) => *c,
            Err(e) => return Err(format!("node {me}: receive failed: {e}")),
        };
        let sent = match sent {
            Some(Ok(x)) => Some(x),
            Some(Err(e)) => return Err(format!("node {me}: send failed: {e}")),
            None => None,
        };
        let mut missing = 0u64;
        let mut expected_total = 0u64;
        for s in rx.senders.values() {
            if let Some(f) = s.fin {
                expected_total += f;
                missing += f.abs_diff(s.delivered);
            }
        }
        let dur = (win.1 - win.0) as f64 / 1e9;
        rx.owl.sort_unstable();
        rx.selfl.sort_unstable();
        let (s0, s1) = (snaps.first(), snaps.get(1));
        let (sent_n, sent_win, waits, t_stop) = sent.unwrap_or((0, 0, 0, win.1));
        j.num("warmup_s", a.warmup)
            .num("duration_s", dur)
            .num("send_window_s", (t_stop.max(win.1) - t0) as f64 / 1e9)
            .raw("sent", sent_n)
            .raw("sent_in_window", sent_win)
            .num("send_rate_msgs", sent_win as f64 / dur)
            .raw("send_waits", waits)
            .raw("win_deliv", rx.win_deliv)
            .num("deliv_rate_msgs", rx.win_deliv as f64 / dur)
            .num("deliv_MBps", rx.win_bytes as f64 / dur / 1e6)
            .num("self_p50_us", pct_us(&rx.selfl, 0.50))
            .num("self_p99_us", pct_us(&rx.selfl, 0.99))
            .raw("self_n", rx.selfl.len())
            .num("owl_p50_us", pct_us(&rx.owl, 0.50))
            .num("owl_p99_us", pct_us(&rx.owl, 0.99))
            .raw("owl_n", rx.owl.len())
            .raw("samples_dropped", rx.dropped_samples)
            .raw("total_deliv", rx.total_deliv)
            .raw("expected_total", expected_total)
            .raw("fins", rx.fins())
            .raw("complete", u8::from(complete))
            .raw("missing", missing)
            .raw("fifo_errors", rx.fifo_errors)
            .raw("bad", rx.bad)
            .str("order_hash", &format!("{:016x}", rx.order_hash))
            .raw("config_changes_in_window", rx.config_changes_in_window);
        if let (Some(s0), Some(s1)) = (s0, s1) {
            let cpu = s1.cpu_s - s0.cpu_s;
            let (b, t) = (s1.sys.0 - s0.sys.0, s1.sys.1 - s0.sys.1);
            j.num("process_cpu_s", cpu)
                .num("process_cpu_pct", 100.0 * cpu / dur)
                .num(
                    "sys_busy_pct",
                    if t > 0 {
                        100.0 * b as f64 / t as f64
                    } else {
                        f64::NAN
                    },
                )
                .raw("win_udp_rcvbuf_errors", s1.udp.0 - s0.udp.0)
                .raw("win_udp_in_errors", s1.udp.1 - s0.udp.1);
        }
        ok = complete
            && missing == 0
            && rx.fifo_errors == 0
            && rx.bad == 0
            && rx.config_changes_in_window == 0;
        finish(
            a,
            &node,
            &h,
            &mut rx,
            me,
            &mut j,
            s0.and_then(|s| s.stats.as_ref()),
            s1.and_then(|s| s.stats.as_ref()),
            &mut ok,
        )?;
    } else {
        let far = (u64::MAX, u64::MAX);
        let mut rtt: Vec<u64> = Vec::with_capacity(a.count as usize);
        let c0 = cpu_s();
        let tl0 = mono_ns();
        let deadline = tl0 + secs_ns(a.drain_timeout) + a.count.saturating_mul(10_000_000);
        let mut complete = true;
        if sending {
            let mut buf = payload(a.size);
            for i in 0..a.lat_warmup + a.count {
                let ts = mono_ns();
                write_hdr(&mut buf, K_LAT, me, i, ts, 0);
                send_until(&h, &buf, deadline).map_err(|e| format!("send: {e}"))?;
                let got = pump(&h, &mut rx, me, far, deadline, |rx| rx.lat_seen == Some(i))
                    .map_err(|e| format!("receive: {e}"))?;
                if !got {
                    complete = false;
                    break;
                }
                if i >= a.lat_warmup {
                    rtt.push(mono_ns() - ts);
                }
            }
            let mut fin = [0u8; HDR];
            write_hdr(&mut fin, K_FIN, me, 0, mono_ns(), rtt.len() as u64);
            send_until(&h, &fin, deadline).map_err(|e| format!("send: {e}"))?;
        }
        complete &= pump(&h, &mut rx, me, far, deadline, |rx| rx.fins() >= senders)
            .map_err(|e| format!("receive: {e}"))?;
        let elapsed = (mono_ns() - tl0) as f64 / 1e9;
        let cpu = cpu_s() - c0;
        let mean = if rtt.is_empty() {
            0.0
        } else {
            rtt.iter().sum::<u64>() as f64 / rtt.len() as f64 / 1000.0
        };
        rtt.sort_unstable();
        j.raw("count", rtt.len())
            .raw("warmup", a.lat_warmup)
            .num("rtt_mean_us", mean)
            .num("rtt_min_us", pct_us(&rtt, 0.0))
            .num("rtt_p50_us", pct_us(&rtt, 0.50))
            .num("rtt_p90_us", pct_us(&rtt, 0.90))
            .num("rtt_p99_us", pct_us(&rtt, 0.99))
            .num("rtt_p999_us", pct_us(&rtt, 0.999))
            .num("rtt_max_us", pct_us(&rtt, 1.0))
            .raw("lat_deliv", rx.total_deliv)
            .raw("fins", rx.fins())
            .raw("complete", u8::from(complete))
            .raw("bad", rx.bad)
            .num("elapsed_s", elapsed)
            .num("process_cpu_s", cpu);
        ok = complete && rx.bad == 0;
        finish(a, &node, &h, &mut rx, me, &mut j, None, None, &mut ok)?;
    }
    j.raw("ok", u8::from(ok));
    let text = j.finish();
    match &a.out {
        Some(p) => std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(ok)
}

/// The DONE barrier, then the node's counters, then shutdown.
#[allow(clippy::too_many_arguments)] // the tail shared by both modes, called twice
fn finish(
    a: &Args,
    node: &Node,
    h: &Handle,
    rx: &mut Rx,
    me: NodeId,
    j: &mut Json,
    s0: Option<&NodeStats>,
    s1: Option<&NodeStats>,
    ok: &mut bool,
) -> Result<(), String> {
    let deadline = mono_ns() + secs_ns(a.drain_timeout);
    let mut done = [0u8; HDR];
    write_hdr(&mut done, K_DONE, me, 0, mono_ns(), 0);
    send_until(h, &done, deadline).map_err(|e| format!("send DONE: {e}"))?;
    let far = (u64::MAX, u64::MAX);
    let all_done = pump(h, rx, me, far, deadline, |rx| rx.dones() >= a.nodes)
        .map_err(|e| format!("receive DONEs: {e}"))?;
    j.raw("all_done", u8::from(all_done));
    match node.stats() {
        Ok(end) => {
            stats_json(j, s0, s1, &end);
            *ok &= end.handles_overflowed == 0;
        }
        Err(e) => eprintln!("node-bench: node {me}: stats: {e}"),
    }
    node.shutdown();
    Ok(())
}
