//! IPv4 multicast between nodes on the host's own loopback, without privileges.
//!
//! The host's `lo` usually lacks the MULTICAST flag, yet Linux still delivers IPv4 multicast
//! sent from 127.0.0.x with `IP_MULTICAST_LOOP` to the group sockets on the host, which is all
//! several nodes on one machine need. (The namespace tests in `transport_multicast.rs` cover
//! real links.) The port is picked free by the first node, so this cannot collide with a
//! cluster already running on 5405.

mod transport_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use evs::transport::*;
use transport_support::recv_until;

#[tokio::test]
async fn multicast_nodes_on_the_host_loopback_hear_each_other() {
    for own in [false, true] {
        hear_each_other(own).await;
    }
}

/// Three nodes multicast once each; every node hears the others, and itself only with
/// `receive_own_multicasts` (otherwise the group socket's filter drops its own copy).
async fn hear_each_other(own: bool) {
    let group = derive_multicast_group("multicast_nodes_on_the_host_loopback", false);
    let mut cfg = TransportConfig::multicast("127.0.0.1".parse().unwrap(), group);
    cfg.port = 0;
    cfg.receive_own_multicasts = own;
    let first = match Transport::bind(cfg.clone()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIP multicast_nodes_on_the_host_loopback_hear_each_other: {e}");
            return;
        }
    };
    cfg.port = first.local_addr().port();
    let mut nodes = vec![first];
    for ip in ["127.0.0.2", "127.0.0.3"] {
        cfg.bind = ip.parse().unwrap();
        nodes.push(Transport::bind(cfg.clone()).expect("bind second node on the same port"));
    }
    let addrs: BTreeSet<SocketAddr> = nodes.iter().map(|t| t.local_addr()).collect();
    for t in &nodes {
        t.send_all(b"ping");
    }
    let expect = if own { 3 } else { 2 };
    for t in &nodes {
        let got = recv_until(t, expect, Duration::from_secs(5)).await;
        let from: BTreeSet<SocketAddr> = got.iter().map(|(a, _)| *a).collect();
        let mut want = addrs.clone();
        if !own {
            want.remove(&t.local_addr());
        }
        assert_eq!(from, want, "own={own} {:?}", t.stats());
        assert!(got.iter().all(|(_, d)| d == b"ping"));
    }
    // Nothing else arrives (in particular no late own copy).
    for t in &nodes {
        let more = recv_until(t, 1, Duration::from_millis(100)).await;
        assert!(more.is_empty(), "own={own}: unexpected {more:?}");
    }
}
