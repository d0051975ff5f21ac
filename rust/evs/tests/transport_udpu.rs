//! udpu transport on plain loopback: needs no privileges and no multicast.

mod transport_support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use evs::transport::*;
use transport_support::{free_port, recv_for, recv_until};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(200);

/// Three udpu nodes on 127.0.0.1, .2, .3 (ids 1..3), each on a different free port.
fn three_nodes() -> Vec<Transport> {
    let members: Vec<(u32, SocketAddr)> = (1..=3u32)
        .map(|id| {
            let ip = format!("127.0.0.{id}");
            let port = free_port(&ip);
            (id, SocketAddr::new(ip.parse().unwrap(), port))
        })
        .collect();
    members
        .iter()
        .map(|&(_, addr)| {
            Transport::bind(TransportConfig::udpu(
                addr.ip(),
                addr.port(),
                members.clone(),
            ))
            .expect("bind udpu node")
        })
        .collect()
}

#[tokio::test]
async fn udpu_send_all_reaches_every_other_member_and_send_to_one() {
    let t = three_nodes();
    t[0].send_all(b"hello all");
    for r in &t[1..] {
        let got = recv_until(r, 1, WAIT).await;
        assert_eq!(got, vec![(t[0].local_addr(), b"hello all".to_vec())]);
    }
    // "To all" skips our own address.
    assert!(recv_for(&t[0], QUIET).await.is_empty());
    assert_eq!(t[0].stats().datagrams_out, 2);

    t[1].send_to(3, b"token");
    let got = recv_until(&t[2], 1, WAIT).await;
    assert_eq!(got, vec![(t[1].local_addr(), b"token".to_vec())]);
    assert!(recv_for(&t[0], QUIET).await.is_empty());

    // A one-node ring sends the token to itself: the member list includes us.
    t[0].send_to(1, b"self");
    assert_eq!(recv_until(&t[0], 1, WAIT).await[0].1, b"self");

    // Unknown node: counted, dropped, nothing else happens.
    t[0].send_to(99, b"nobody");
    let s = t[0].stats();
    assert_eq!(s.unknown_destination, 1);
    assert_eq!(s.multicast_fallbacks, 0);
    assert_eq!(s.send_errors.total(), 0);
    for r in &t[1..] {
        assert!(recv_for(r, QUIET).await.is_empty());
    }
    let s = t[2].stats();
    assert_eq!((s.datagrams_in, s.bytes_in), (2, 9 + 5));
}

#[tokio::test]
async fn recv_batch_returns_many_datagrams_in_one_call_after_a_burst() {
    let t = three_nodes();
    const N: usize = 200;
    for i in 0..N {
        t[0].send_to(2, format!("msg {i:04}").as_bytes());
    }
    // Give the kernel a moment to queue the whole burst, then read once.
    t[1].readable().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut batch = RecvBatch::new(32);
    let n = t[1].recv_batch(&mut batch).unwrap();
    assert_eq!(n, 32, "one call fills the batch");
    assert_eq!(batch.len(), 32);
    let s = t[1].stats();
    assert!(s.recv_syscalls <= 2, "recvmmsg takes many per call: {s:?}");
    let mut all: Vec<Vec<u8>> = batch.iter().map(|(_, d)| d.to_vec()).collect();
    all.extend(
        recv_until(&t[1], N - 32, WAIT)
            .await
            .into_iter()
            .map(|(_, d)| d),
    );
    let want: Vec<Vec<u8>> = (0..N).map(|i| format!("msg {i:04}").into_bytes()).collect();
    assert_eq!(all, want);
    // Drained: the next call finds nothing, which is not an error.
    assert_eq!(t[1].recv_batch(&mut batch).unwrap(), 0);
    assert!(batch.is_empty());
}

#[tokio::test]
async fn send_batch_keeps_order_and_puts_the_token_last() {
    let t = three_nodes();
    // Ten equal-size multicasts (a GSO run), a shorter one, then the token to node 2.
    let msgs: Vec<Vec<u8>> = (0..10u8)
        .map(|i| vec![i; 1000])
        .chain([vec![10; 300]])
        .collect();
    let mut items: Vec<(Destination, &[u8])> = msgs
        .iter()
        .map(|m| (Destination::All, m.as_slice()))
        .collect();
    items.push((Destination::Node(2), b"token"));
    t[0].send_batch(&items);

    let got2 = recv_until(&t[1], 12, WAIT).await;
    let got3 = recv_until(&t[2], 11, WAIT).await;
    let mut want: Vec<Vec<u8>> = msgs.clone();
    assert_eq!(got3.into_iter().map(|(_, d)| d).collect::<Vec<_>>(), want);
    want.push(b"token".to_vec());
    assert_eq!(got2.into_iter().map(|(_, d)| d).collect::<Vec<_>>(), want);

    eprintln!("receiver: {:?}", t[1].stats());
    let s = t[0].stats();
    eprintln!("sender: {s:?}");
    assert_eq!(s.datagrams_out, 23);
    assert_eq!(s.send_errors.total(), 0);
    if s.max_gso_segments > 1 {
        // One GSO send per member for the eleven multicasts, plus the token.
        assert_eq!(s.send_syscalls, 3, "{s:?}");
        assert_eq!(s.gso_sends, 2);
    } else {
        eprintln!("note: no UDP GSO on this kernel; one sendmsg per datagram");
    }
}

#[tokio::test]
async fn recv_batch_hands_out_mutable_frames_and_owned_bytes() {
    let t = three_nodes();
    t[0].send_to(2, b"abc");
    t[0].send_to(2, b"defg");
    let mut batch = RecvBatch::default();
    t[1].readable().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(t[1].recv_batch(&mut batch).unwrap(), 2);
    for (from, frame) in batch.iter_mut() {
        assert_eq!(from, t[0].local_addr());
        frame.make_ascii_uppercase(); // what in-place decryption does to the buffer
    }
    assert_eq!(batch.bytes(0).unwrap().as_ref(), b"ABC");
    assert_eq!(batch.get(1).unwrap(), (t[0].local_addr(), &b"DEFG"[..]));
    let (_, frame) = batch.get_mut(1).unwrap();
    frame[0] = b'd';
    assert_eq!(batch.iter().map(|(_, d)| d.len()).sum::<usize>(), 7);
    assert_eq!(batch.bytes(1).unwrap().as_ref(), b"dEFG");
}

#[tokio::test]
async fn unroutable_and_oversized_sends_are_counted_not_fatal() {
    let port = free_port("127.0.0.1");
    let me: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // TEST-NET-1 is never local; from a socket bound to loopback it cannot be reached.
    let far: SocketAddr = "192.0.2.1:5405".parse().unwrap();
    let t = Transport::bind(TransportConfig::udpu(
        me.ip(),
        port,
        vec![(1, me), (2, far)],
    ))
    .unwrap();
    t.send_all(b"into the void");
    t.send_to(2, b"again");
    // Larger than any UDP datagram can be.
    t.send_to(1, &vec![0u8; 70_000]);
    let s = t.stats();
    eprintln!("{s:?}");
    assert_eq!(s.send_errors.total(), 3, "{s:?}");
    assert_eq!(s.send_errors.too_big, 1, "{s:?}");
    assert!(s.last_send_errno.is_some());
    assert_eq!(s.datagrams_out, 0);
}

#[tokio::test]
async fn ipv6_udpu_on_the_loopback() {
    let Ok(probe) = std::net::UdpSocket::bind("[::1]:0") else {
        eprintln!("SKIP ipv6_udpu_on_the_loopback: no ::1 on this host");
        return;
    };
    let p1 = probe.local_addr().unwrap().port();
    drop(probe);
    let p2 = free_port("::1");
    let a: SocketAddr = format!("[::1]:{p1}").parse().unwrap();
    let b: SocketAddr = format!("[::1]:{p2}").parse().unwrap();
    let members = vec![(1, a), (2, b)];
    let ta = Transport::bind(TransportConfig::udpu(a.ip(), p1, members.clone())).unwrap();
    let tb = Transport::bind(TransportConfig::udpu(b.ip(), p2, members)).unwrap();
    ta.send_all(b"v6");
    assert_eq!(recv_until(&tb, 1, WAIT).await, vec![(a, b"v6".to_vec())]);
    tb.send_to(1, b"back");
    assert_eq!(recv_until(&ta, 1, WAIT).await, vec![(b, b"back".to_vec())]);
    assert!(recv_for(&ta, QUIET).await.is_empty());
}

#[tokio::test]
async fn bind_errors_name_what_failed() {
    let port = free_port("127.0.0.1");
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let me = SocketAddr::new(ip, port);
    let _first = Transport::bind(TransportConfig::udpu(ip, port, vec![(1, me)])).unwrap();
    let e = Transport::bind(TransportConfig::udpu(ip, port, vec![(1, me)])).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    assert!(e.to_string().contains(&me.to_string()), "{e}");

    let mut cfg = TransportConfig::multicast(ip, "239.192.1.1".parse().unwrap());
    cfg.interface = Some("no-such-if0".into());
    let e = Transport::bind(cfg).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("no-such-if0"), "{e}");

    let e =
        Transport::bind(TransportConfig::multicast(ip, "10.0.0.1".parse().unwrap())).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    let e =
        Transport::bind(TransportConfig::multicast(ip, "ff15::1".parse().unwrap())).unwrap_err();
    assert!(e.to_string().contains("different IP versions"), "{e}");
    let e = Transport::bind(TransportConfig::udpu(
        ip,
        port,
        vec![(1, me), (1, "127.0.0.2:1".parse().unwrap())],
    ))
    .unwrap_err();
    assert!(e.to_string().contains("listed twice"), "{e}");
}

#[test]
fn transport_is_send_and_sync_for_the_driver_task() {
    fn check<T: Send + Sync>() {}
    check::<Transport>();
    check::<RecvBatch>();
}

#[test]
fn bind_outside_a_runtime_is_an_error_not_a_panic() {
    let e = Transport::bind(TransportConfig::udpu(
        "127.0.0.1".parse().unwrap(),
        0,
        vec![],
    ))
    .unwrap_err();
    assert!(e.to_string().contains("tokio runtime"), "{e}");
}

#[test]
fn derived_groups_are_stable_and_in_range() {
    // Pinned values: a change here changes every deployed cluster's default group.
    assert_eq!(
        derive_multicast_group("evs", false),
        derive_multicast_group("evs", false)
    );
    for i in 0..1000 {
        let name = format!("cluster-{i}");
        let IpAddr::V4(v4) = derive_multicast_group(&name, false) else {
            panic!()
        };
        assert_eq!(&v4.octets()[..2], &[239, 192]);
        let IpAddr::V6(v6) = derive_multicast_group(&name, true) else {
            panic!()
        };
        assert_eq!(v6.segments()[0], 0xff15);
        assert_eq!(&v6.segments()[1..6], &[0; 5]);
    }
}
