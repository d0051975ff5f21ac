//! Shared helpers of the node tests: loopback udpu clusters with crypto, waiting for rings,
//! collecting events. Timeouts are generous (a noisy 2-core box); nothing asserts on speed.
#![allow(dead_code)] // each test crate uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use evs::config::{NodeConfig, NodeConfigBuilder, Transport};
use evs::{crypto, ConfigKind, Event, Handle, Node, NodeId, Runtime};

/// How long a ring may take to form or re-form.
pub const RING_WAIT: Duration = Duration::from_secs(60);
/// How long any one expected event may take.
pub const EVENT_WAIT: Duration = Duration::from_secs(60);

/// A fresh authkey in `dir` (mode 0600, made by `crypto::keygen`).
pub fn authkey(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    crypto::keygen(&p).expect("keygen");
    p
}

/// A port that was free on `ip` a moment ago.
pub fn free_port(ip: &str) -> u16 {
    let s = std::net::UdpSocket::bind((ip, 0)).expect("probe bind");
    s.local_addr().unwrap().port()
}

/// Addresses of `n` loopback nodes: node i+1 on 127.0.0.(i+1), each on its own free port.
pub fn loopback_addrs(n: usize) -> Vec<(NodeId, SocketAddr)> {
    (0..n)
        .map(|i| {
            let ip = format!("127.0.0.{}", i + 1);
            let port = free_port(&ip);
            (i as NodeId + 1, format!("{ip}:{port}").parse().unwrap())
        })
        .collect()
}

/// A udpu configuration for node `me` of `members`, crypto on with `key`.
pub fn udpu_builder(
    cluster: &str,
    me: NodeId,
    members: &[(NodeId, SocketAddr)],
    key: &Path,
) -> NodeConfigBuilder {
    let addr = members.iter().find(|(id, _)| *id == me).unwrap().1;
    let mut b = NodeConfig::builder();
    b.cluster_name(cluster)
        .node_id(me)
        .bind(addr.ip())
        .port(addr.port())
        .transport(Transport::Udpu)
        .authkey(key);
    for m in members {
        b.add_member(*m);
    }
    b
}

/// Starts `n` udpu nodes on one runtime, all with one key.
pub fn start_cluster(cluster: &str, n: usize, key: &Path, rt: &Runtime) -> Vec<Node> {
    let members = loopback_addrs(n);
    members
        .iter()
        .map(|(id, _)| {
            let cfg = udpu_builder(cluster, *id, &members, key).build().unwrap();
            Node::start(&cfg, rt).expect("start node")
        })
        .collect()
}

/// Waits until every node reports the same ring with exactly `want` as members.
pub fn wait_ring(nodes: &[&Node], want: &[NodeId]) {
    let deadline = Instant::now() + RING_WAIT;
    loop {
        let rings: Vec<_> = nodes
            .iter()
            .map(|n| (n.ring_id(), n.membership().1))
            .collect();
        if rings.iter().all(|r| r.1 == want && r.0 == rings[0].0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no common ring {want:?} in time: {rings:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `cond` holds (polling), or panics with `what`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENT_WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A message as the tests compare them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msg {
    pub sender: NodeId,
    pub handle: u32,
    pub groups: Vec<Bytes>,
    pub data: Bytes,
}

/// Receives until `n` messages came (other events are skipped), or panics.
pub fn recv_messages(h: &Handle, n: usize) -> Vec<Msg> {
    let deadline = Instant::now() + EVENT_WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match h.recv(Some(left)) {
            Ok(Event::Message {
                sender,
                sender_handle,
                groups,
                data,
                ..
            }) => out.push(Msg {
                sender,
                handle: sender_handle,
                groups,
                data,
            }),
            Ok(_) => {}
            Err(e) => panic!(
                "handle {} of node {}: {e} after {} of {n} messages",
                h.id(),
                h.node_id(),
                out.len()
            ),
        }
    }
    out
}

/// Messages that arrive within `d` (to show that nothing more does).
pub fn messages_for(h: &Handle, d: Duration) -> Vec<Msg> {
    let deadline = Instant::now() + d;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        match h.recv(Some(left)) {
            Ok(Event::Message {
                sender,
                sender_handle,
                groups,
                data,
                ..
            }) => out.push(Msg {
                sender,
                handle: sender_handle,
                groups,
                data,
            }),
            Ok(_) => {}
            Err(_) => return out,
        }
    }
}

/// Receives until a configuration change of `kind` matching `pred` (other events skipped).
pub fn recv_config(
    h: &Handle,
    kind: ConfigKind,
    mut pred: impl FnMut(&[NodeId], &[NodeId], &[NodeId]) -> bool,
) -> Event {
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match h.recv(Some(left)) {
            Ok(ev) => {
                if let Event::ConfigChange {
                    kind: k,
                    members,
                    left,
                    joined,
                    ..
                } = &ev
                {
                    if *k == kind && pred(members, left, joined) {
                        return ev;
                    }
                }
            }
            Err(e) => panic!("waiting for a {kind:?} configuration: {e}"),
        }
    }
}

/// Sends one message, retrying on a full budget (blocking with a generous timeout).
pub fn send_to(h: &Handle, groups: &[&str], data: &[u8]) {
    h.mcast_groups_blocking(
        groups.iter().map(|g| g.as_bytes()),
        data,
        evs::Guarantee::Agreed,
        EVENT_WAIT,
    )
    .expect("mcast");
}

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}
