//! Three nodes on three "hosts" (network namespaces bridged together) talking IP multicast,
//! with crypto on: one ring, agreed order, and a departure seen by the others.
//!
//! Needs root and iproute2 (`ip netns add`, veth, bridge); without them the test prints
//! `SKIP ...` and passes. Namespaces are deleted on drop, also when the test panics.
//!
//! Each node runs on its own [`Runtime`], created by a thread that first entered the node's
//! namespace: the runtime thread inherits the namespace, and nodes bind their sockets on the
//! runtime thread (the thread-per-namespace technique of the transport tests).

mod node_support;
mod transport_support;

use std::time::{Duration, Instant};

use evs::config::{NodeConfig, Transport};
use evs::{ConfigKind, Handle, Node, Runtime};
use node_support::*;
use transport_support::Netns;

/// Starts a node whose runtime thread (and so whose sockets) live in `ns`.
fn start_in(ns: &Netns, cfg: NodeConfig) -> Node {
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = Runtime::new().expect("runtime");
        Node::start(&cfg, &rt).expect("start node in namespace")
    })
    .join()
    .expect("start thread panicked")
}

fn wait_up(ns: &Netns, dev: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ns
        .ip_output(&["link", "show", "dev", dev])
        .contains("state UP")
    {
        assert!(
            Instant::now() < deadline,
            "{dev} in {} never came up",
            ns.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn multicast_ring_across_three_namespaces() {
    let test = "multicast_ring_across_three_namespaces";
    let Some(hub) = Netns::new(test) else { return };
    hub.ip(&["link", "add", "br0", "type", "bridge"]);
    // No IGMP snooping: without a querier it could hold the group's traffic back.
    hub.ip(&[
        "link",
        "set",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ]);
    hub.ip(&["link", "set", "br0", "up"]);
    let mut hosts = Vec::new();
    for i in 1..=3 {
        let Some(ns) = Netns::new(test) else { return };
        let (port, dev) = (format!("p{i}"), format!("e{i}"));
        hub.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", &dev, "netns", &ns.name,
        ]);
        hub.ip(&["link", "set", &port, "master", "br0"]);
        hub.ip(&["link", "set", &port, "up"]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["addr", "add", &format!("10.198.0.{i}/24"), "dev", &dev]);
        ns.ip(&["link", "set", &dev, "up"]);
        hosts.push((ns, dev));
    }
    for (ns, dev) in &hosts {
        wait_up(ns, dev);
    }

    let dir = tempfile::tempdir().unwrap();
    let key = authkey(dir.path(), "authkey");
    let cluster = format!("netns-{}", std::process::id());
    let nodes: Vec<Node> = hosts
        .iter()
        .enumerate()
        .map(|(i, (ns, _))| {
            let cfg = NodeConfig::builder()
                .cluster_name(cluster.as_str())
                .node_id(i as u32 + 1)
                .bind(format!("10.198.0.{}", i + 1).parse().unwrap())
                .transport(Transport::Multicast)
                .authkey(&key)
                .build()
                .unwrap();
            start_in(ns, cfg)
        })
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_ring(&refs, &[1, 2, 3]);

    let hs: Vec<Handle> = nodes.iter().map(|n| n.handle().unwrap()).collect();
    for h in &hs {
        h.join(["g"]).unwrap();
    }
    wait_until("views", || {
        nodes
            .iter()
            .all(|n| n.group_view().get(&b("g")).map(Vec::len) == Some(3))
    });
    std::thread::scope(|s| {
        for (i, h) in hs.iter().enumerate() {
            s.spawn(move || {
                for k in 0..30 {
                    send_to(h, &["g"], format!("{i}/{k}").as_bytes());
                }
            });
        }
    });
    let streams: Vec<Vec<Msg>> = hs.iter().map(|h| recv_messages(h, 90)).collect();
    assert_eq!(streams[0], streams[1]);
    assert_eq!(streams[0], streams[2]);
    for n in &nodes {
        let s = n.stats().unwrap();
        eprintln!(
            "node {}: transport {:?} rejected {:?}",
            n.id(),
            s.transport,
            s.rejected()
                .into_iter()
                .filter(|(_, c)| *c > 0)
                .collect::<Vec<_>>()
        );
        // IP_MULTICAST_LOOP is on, but the group socket's filter drops our own copies in the
        // kernel (each node here has its own bind address and namespace).
        assert_eq!(
            s.own_frames_dropped, 0,
            "own multicasts are filtered before they reach the driver"
        );
        assert_eq!(s.transport.multicast_fallbacks, 0);
    }

    // A departure is seen by the others.
    let mut nodes = nodes;
    let gone = nodes.remove(0);
    gone.shutdown();
    for h in &hs[1..] {
        recv_config(h, ConfigKind::Transitional, |_, left, _| left.contains(&1));
        recv_config(h, ConfigKind::Regular, |m, _, _| m == [2, 3]);
    }
    send_to(&hs[1], &["g"], b"after");
    assert_eq!(recv_messages(&hs[2], 1)[0].data, b("after"));
    drop(gone);
    drop(nodes);
    drop(hosts);
}
