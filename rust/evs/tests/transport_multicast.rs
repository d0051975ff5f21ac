//! Multicast transport (and error counting) inside network namespaces created for the test.
//!
//! These tests need root and iproute2 (`ip netns add`, veth); without them each test prints
//! `SKIP ...` and passes. A fresh namespace is used even for the one-host tests: the host's
//! `lo` usually lacks the MULTICAST flag, and a namespace cannot disturb (or be disturbed by)
//! anything else on the machine. Namespaces are deleted on drop, also when a test panics.

mod transport_support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use evs::transport::*;
use transport_support::{recv_for, recv_until, veth_pair, Netns};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(200);

/// These tests follow every datagram, a node's own looped-back copies included; the filter
/// that drops those by default is covered by `transport_loopback_multicast.rs` and
/// `node_netns.rs`.
fn mcast_cfg(bind: &str, group: IpAddr) -> TransportConfig {
    let mut cfg = TransportConfig::multicast(bind.parse().unwrap(), group);
    cfg.receive_own_multicasts = true;
    cfg
}

fn sources(got: &[(SocketAddr, Vec<u8>)]) -> BTreeSet<SocketAddr> {
    got.iter().map(|(a, _)| *a).collect()
}

/// Several nodes on one host (different addresses, one group port): every node receives
/// every multicast, its own looped-back copy included, with the sender's unicast address as
/// source; learned addresses carry tokens; unknown nodes fall back to multicast.
///
/// IPv4 uses 127.0.0.1-3 on `lo`. IPv6 cannot use `lo` (see `Netns::loopback_multicast`), so
/// its three nodes share one end of a veth pair, as nodes on one host share a NIC.
async fn same_host(test: &str, v6: bool) {
    let (ns, _peer, binds) = if v6 {
        let Some((a, b)) = veth_pair(test) else {
            return;
        };
        for extra in ["fd00:199::11/64", "fd00:199::12/64"] {
            a.ip(&["addr", "add", extra, "dev", "eva", "nodad"]);
        }
        (a, Some(b), ["fd00:199::1", "fd00:199::11", "fd00:199::12"])
    } else {
        let Some(ns) = Netns::new(test) else { return };
        ns.loopback_multicast();
        (ns, None, ["127.0.0.1", "127.0.0.2", "127.0.0.3"])
    };
    let group = derive_multicast_group(test, v6);
    let mut t: Vec<Transport> = binds
        .iter()
        .map(|b| ns.bind(mcast_cfg(b, group)).expect("bind multicast node"))
        .collect();
    let addrs: Vec<SocketAddr> = t.iter().map(|x| x.local_addr()).collect();
    assert!(addrs.iter().all(|a| a.port() == DEFAULT_PORT));

    for (i, x) in t.iter().enumerate() {
        x.send_all(format!("from {i}").as_bytes());
    }
    for x in &t {
        let got = recv_until(x, 3, WAIT).await;
        assert_eq!(sources(&got), addrs.iter().copied().collect(), "{got:?}");
        for (from, data) in &got {
            let i = addrs.iter().position(|a| a == from).unwrap();
            assert_eq!(data, format!("from {i}").as_bytes());
        }
    }

    // Tokens go by unicast to learned addresses, and only to the addressee.
    for x in t.iter_mut() {
        for (id, a) in addrs.iter().enumerate() {
            x.learn(id as u32 + 1, *a);
        }
    }
    t[0].send_to(2, b"token");
    assert_eq!(
        recv_until(&t[1], 1, WAIT).await,
        vec![(addrs[0], b"token".to_vec())]
    );
    assert!(recv_for(&t[2], QUIET).await.is_empty());
    assert!(recv_for(&t[0], QUIET).await.is_empty());

    // Unknown node: counted and multicast instead, so everyone (the sender too) gets it.
    t[2].send_to(42, b"lost?");
    for x in &t {
        assert_eq!(
            recv_until(x, 1, WAIT).await,
            vec![(addrs[2], b"lost?".to_vec())]
        );
    }
    let s = t[2].stats();
    assert_eq!((s.unknown_destination, s.multicast_fallbacks), (1, 1));
    // ... or dropped, when the driver asks for that.
    t[2].set_unknown_destination(UnknownDestination::Drop);
    t[2].send_to(42, b"dropped");
    assert!(recv_for(&t[0], QUIET).await.is_empty());
    let s = t[2].stats();
    assert_eq!((s.unknown_destination, s.multicast_fallbacks), (2, 1));
    assert_eq!(s.send_errors.total(), 0, "{s:?}");
    assert!(t[1].group_addr().is_some());
    drop(t);
}

#[tokio::test]
async fn multicast_several_nodes_on_one_host_ipv4() {
    same_host("multicast_several_nodes_on_one_host_ipv4", false).await;
}

#[tokio::test]
async fn multicast_several_nodes_on_one_host_ipv6() {
    same_host("multicast_several_nodes_on_one_host_ipv6", true).await;
}

/// Two hosts (namespaces) on a veth link: multicast both ways, tokens by learned address.
async fn two_namespaces(test: &str, v6: bool) {
    let Some((na, nb)) = veth_pair(test) else {
        return;
    };
    let (ba, bb) = if v6 {
        ("fd00:199::1", "fd00:199::2")
    } else {
        ("10.199.0.1", "10.199.0.2")
    };
    let group = derive_multicast_group(test, v6);
    // One side names its interface, the other finds it from its address.
    let mut cfg_a = mcast_cfg(ba, group);
    cfg_a.interface = Some("eva".into());
    let mut a = na.bind(cfg_a).expect("bind in namespace a");
    let mut b = nb.bind(mcast_cfg(bb, group)).expect("bind in namespace b");

    a.send_all(b"a to all");
    b.send_all(b"b to all");
    for x in [&a, &b] {
        let got = recv_until(x, 2, WAIT).await;
        assert_eq!(
            sources(&got),
            [a.local_addr(), b.local_addr()].into_iter().collect(),
            "{got:?}"
        );
    }
    a.learn(2, b.local_addr());
    b.learn(1, a.local_addr());
    a.send_to(2, b"token to b");
    assert_eq!(
        recv_until(&b, 1, WAIT).await,
        vec![(a.local_addr(), b"token to b".to_vec())]
    );
    b.send_to(1, b"token to a");
    assert_eq!(
        recv_until(&a, 1, WAIT).await,
        vec![(b.local_addr(), b"token to a".to_vec())]
    );

    // A burst of equal-size packets (what a token holder sends) arrives whole and in order,
    // and the receiver takes many per call.
    let msgs: Vec<Vec<u8>> = (0..100u32)
        .map(|i| {
            let mut m = vec![0u8; 1200];
            m[..4].copy_from_slice(&i.to_be_bytes());
            m
        })
        .collect();
    let items: Vec<(Destination, &[u8])> = msgs
        .iter()
        .map(|m| (Destination::All, m.as_slice()))
        .collect();
    let before = b.stats();
    a.send_batch(&items);
    let got = recv_until(&b, 100, WAIT).await;
    assert_eq!(got.into_iter().map(|(_, d)| d).collect::<Vec<_>>(), msgs);
    let after = b.stats();
    let calls = after.recv_batches - before.recv_batches;
    assert!(
        calls < 100,
        "expected batched receives, got {calls} calls: {after:?}"
    );
    let sa = a.stats();
    eprintln!("{test}: sender {sa:?}\n{test}: receiver {after:?}");
    assert_eq!(sa.send_errors.total(), 0, "{sa:?}");
    // The sender's own copies came back through the loop.
    assert_eq!(recv_until(&a, 100, WAIT).await.len(), 100);
}

#[tokio::test]
async fn multicast_between_two_namespaces_ipv4() {
    two_namespaces("multicast_between_two_namespaces_ipv4", false).await;
}

#[tokio::test]
async fn multicast_between_two_namespaces_ipv6() {
    two_namespaces("multicast_between_two_namespaces_ipv6", true).await;
}

#[tokio::test]
async fn loopback_off_keeps_our_own_multicasts_away() {
    let test = "loopback_off_keeps_our_own_multicasts_away";
    let Some((na, nb)) = veth_pair(test) else {
        return;
    };
    let group = derive_multicast_group(test, false);
    let mut cfg = mcast_cfg("10.199.0.1", group);
    cfg.mode = Mode::Multicast {
        group,
        ttl: 1,
        loopback: false,
    };
    let a = na.bind(cfg).unwrap();
    let b = nb.bind(mcast_cfg("10.199.0.2", group)).unwrap();
    a.send_all(b"x");
    assert_eq!(recv_until(&b, 1, WAIT).await.len(), 1);
    assert!(recv_for(&a, QUIET).await.is_empty());
}

#[tokio::test]
async fn unreachable_destinations_are_counted_not_fatal() {
    let test = "unreachable_destinations_are_counted_not_fatal";
    let Some(ns) = Netns::new(test) else { return };
    ns.ip(&["link", "set", "lo", "up"]);
    // Only `lo` exists here, so 10.9.9.9 has no route: ENETUNREACH.
    let me: SocketAddr = "127.0.0.1:5405".parse().unwrap();
    let far: SocketAddr = "10.9.9.9:5405".parse().unwrap();
    let mut cfg = TransportConfig::udpu("0.0.0.0".parse().unwrap(), 5405, vec![(1, me), (2, far)]);
    cfg.recv_buffer = 0;
    let t = ns.bind(cfg).unwrap();
    t.send_all(b"nowhere");
    t.send_to(2, b"nowhere either");
    t.send_batch(&[(Destination::Node(2), b"x"), (Destination::Node(2), b"y")]);
    let s = t.stats();
    eprintln!("{s:?}");
    // `send_all` also reached 127.0.0.1:5405: with a wildcard bind the transport cannot tell
    // that address is its own.
    assert_eq!(s.send_errors.unreachable, 4, "{s:?}");
    assert_eq!(s.send_errors.total(), 4, "{s:?}");
    assert_eq!(s.datagrams_out, 1, "{s:?}");
}

#[tokio::test]
async fn a_second_node_on_the_same_address_is_refused() {
    let test = "a_second_node_on_the_same_address_is_refused";
    let Some(ns) = Netns::new(test) else { return };
    ns.loopback_multicast();
    let group = derive_multicast_group(test, false);
    let _a = ns.bind(mcast_cfg("127.0.0.1", group)).unwrap();
    let e = ns.bind(mcast_cfg("127.0.0.1", group)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    assert!(e.to_string().contains("127.0.0.1:5405"), "{e}");
}
