//! Queue policies: a consumer that stops reading is closed with `Overflowed` (after what was
//! queued) once its queue and delivery buffer are full, while other handles and the ring
//! carry on; a full queue alone only buffers; a full send budget is `TryAgain`, and a
//! blocking send returns `Ok` or `Timeout`, never hangs. Also the eventfd contract.

mod node_support;

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use evs::config::{DeliveryBuffer, NodeConfigBuilder};
use evs::{Event, EvsError, Guarantee, Handle, Node, Overflow, Runtime};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use node_support::*;

fn one_node(
    cluster: &str,
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut NodeConfigBuilder),
) -> Node {
    let key = authkey(dir, "authkey");
    let members = loopback_addrs(1);
    let mut b = udpu_builder(cluster, 1, &members, &key);
    tweak(&mut b);
    let node = Node::start(&b.build().unwrap(), &Runtime::new().unwrap()).unwrap();
    wait_ring(&[&node], &[1]);
    node
}

fn readable(h: &Handle, ms: u16) -> bool {
    let mut fds = [PollFd::new(h.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::from(ms)).unwrap() == 1
}

#[test]
fn a_consumer_that_stops_reading_is_closed_with_overflowed() {
    let dir = tempfile::tempdir().unwrap();
    // No delivery buffer: closed as soon as an event finds the queue full.
    let node = one_node("overflow", dir.path(), |b| {
        b.delivery_buffer_bytes(DeliveryBuffer::Bytes(0));
    });
    let slow = node.handle_with_capacity(50).unwrap();
    let fast = node.handle().unwrap();
    let other = node.handle().unwrap();
    slow.join(["g"]).unwrap();
    fast.join(["g"]).unwrap();
    other.join(["h"]).unwrap();
    wait_until("joins", || {
        node.group_view().get(&b("g")).map(Vec::len) == Some(2)
    });

    const N: usize = 200;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..N {
                send_to(&fast, &["g"], format!("{i}").as_bytes());
            }
        });
        let got = recv_messages(&fast, N);
        assert_eq!(got.last().unwrap().data, b(&format!("{}", N - 1)));
    });
    // The slow handle reads what was queued before the overflow, then the error, for good.
    let mut queued = 0;
    let err = loop {
        match slow.recv(Some(EVENT_WAIT)) {
            Ok(_) => queued += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, EvsError::Overflowed(Overflow::Consumer)),
        "{err}"
    );
    assert!(queued <= 50, "{queued}");
    // Closed by the node, with its groups left for it.
    assert!(slow.is_closed());
    assert!(slow.joined().is_empty());
    assert!(!fast.is_closed());
    assert!(matches!(slow.recv(None), Err(EvsError::Overflowed(_))));
    assert!(matches!(
        slow.mcast_groups(["g"], b"x", Guarantee::Agreed),
        Err(EvsError::Overflowed(_))
    ));
    // Its groups were left for it; the others carry on.
    wait_until("the overflowed handle to leave", || {
        node.group_view().get(&b("g")).cloned() == Some(vec![(1, fast.id())])
    });
    send_to(&other, &["h"], b"still here");
    assert_eq!(recv_messages(&other, 1)[0].data, b("still here"));
    let st = node.stats().unwrap();
    assert_eq!(st.handles_overflowed, 1);
    assert_eq!(st.members, vec![1]);
}

/// Numbered 64-byte messages `from..to` of `h` to "g".
fn send_numbered(h: &Handle, range: std::ops::Range<u64>) -> Result<(), EvsError> {
    let mut data = [0u8; 64];
    for i in range {
        data[..8].copy_from_slice(&i.to_le_bytes());
        h.mcast_groups_blocking(["g"], &data, Guarantee::Agreed, EVENT_WAIT)?;
    }
    Ok(())
}

/// The numbers of the messages `h` reads until its stream ends (or `n` came), and the end.
fn read_numbered(h: &Handle, n: usize) -> (Vec<u64>, Option<EvsError>) {
    let mut got = Vec::new();
    while got.len() < n {
        match h.recv(Some(EVENT_WAIT)) {
            Ok(Event::Message { data, .. }) => {
                got.push(u64::from_le_bytes(data[..8].try_into().unwrap()))
            }
            Ok(_) => {}
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

#[test]
fn a_full_queue_buffers_instead_of_closing() {
    let dir = tempfile::tempdir().unwrap();
    let node = one_node("buffered", dir.path(), |_| {});
    let slow = node.handle_with_capacity(50).unwrap();
    let sender = node.handle().unwrap();
    slow.join(["g"]).unwrap();
    wait_until("the join", || node.group_view().contains_key(&b("g")));
    send_numbered(&sender, 0..2000).unwrap();
    wait_until("everything buffered", || {
        node.stats().unwrap().delivery_buffered > 0 && slow.queue_len() == 50
    });
    let st = node.stats().unwrap();
    assert_eq!(st.handles_overflowed, 0);
    // "auto" on a ring of one: 2 x send_queue_bytes + window_size x max_packet_size.
    assert_eq!(st.delivery_buffer_limit, 2 * (1 << 20) + 50 * 1400);
    assert!(!slow.is_closed());
    let (got, end) = read_numbered(&slow, 2000);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(got, (0..2000).collect::<Vec<_>>());
    let st = node.stats().unwrap();
    assert_eq!(st.delivery_buffered, 0);
    assert!(st.delivery_buffered_peak >= 1900 * 73, "{st:?}");
}

#[test]
fn a_handle_flooding_itself_is_closed_by_its_own_messages() {
    let dir = tempfile::tempdir().unwrap();
    let node = one_node("own", dir.path(), |b| {
        b.delivery_buffer_bytes(DeliveryBuffer::Bytes(4096));
    });
    let h = node.handle_with_capacity(20).unwrap();
    h.join(["g"]).unwrap();
    // A joined handle multicasting without reading: its own messages come back to it.
    let sent = send_numbered(&h, 0..1_000_000);
    assert!(
        matches!(sent, Err(EvsError::Overflowed(Overflow::OwnMessages))),
        "{sent:?}"
    );
    assert!(h.is_closed());
    let (got, end) = read_numbered(&h, usize::MAX);
    let err = end.unwrap();
    assert!(
        matches!(err, EvsError::Overflowed(Overflow::OwnMessages)),
        "{err}"
    );
    assert!(
        err.to_string().contains("own undelivered messages"),
        "{err}"
    );
    // Everything before the overflow, in order: the queue, then the buffer's 4096 bytes.
    assert_eq!(got, (0..got.len() as u64).collect::<Vec<_>>());
    assert!(got.len() >= 20 + 4096 / 73 - 4, "{}", got.len());
}

#[test]
fn a_full_send_budget_is_backpressure() {
    let dir = tempfile::tempdir().unwrap();
    let node = one_node("budget", dir.path(), |b| {
        b.max_message_size(16 * 1024).send_queue_bytes(32 * 1024);
    });
    let h = node.handle().unwrap();
    let rx = node.handle().unwrap();
    rx.join(["g"]).unwrap();
    let data = vec![7u8; 8 * 1024];
    let too_big = vec![0u8; 16 * 1024 + 1]; // max_message_size counts the data alone
    assert!(matches!(
        h.mcast_groups(["g"], &too_big, Guarantee::Agreed),
        Err(EvsError::TooLarge { .. })
    ));

    let mut sent = 0usize;
    let mut try_again = false;
    for _ in 0..100_000 {
        match h.mcast_groups(["g"], &data, Guarantee::Agreed) {
            Ok(()) => sent += 1,
            Err(EvsError::TryAgain) => {
                try_again = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(try_again, "100000 non-blocking sends never hit the budget");
    // Blocking sends either get room or time out; none hangs.
    for timeout in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_secs(5),
    ] {
        let t0 = Instant::now();
        match h.mcast_groups_blocking(["g"], &data, Guarantee::Agreed, timeout) {
            Ok(()) => sent += 1,
            Err(EvsError::Timeout) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(t0.elapsed() < timeout + Duration::from_secs(30));
    }
    // Everything accepted is delivered.
    let got = recv_messages(&rx, sent);
    assert_eq!(got.len(), sent);
    assert!(messages_for(&rx, Duration::from_millis(300)).is_empty());
    wait_until("the budget to drain", || {
        node.stats().unwrap().send_budget_used == 0
    });
}

#[test]
fn the_eventfd_is_readable_exactly_while_events_wait() {
    let dir = tempfile::tempdir().unwrap();
    let node = one_node("eventfd", dir.path(), |_| {});
    let h = node.handle().unwrap();
    // The first event (current configuration) makes it readable.
    assert_eq!(h.fileno(), h.as_fd().as_raw_fd());
    wait_until("first event", || h.queue_len() > 0);
    assert!(readable(&h, 1000));
    while h.try_recv().unwrap().is_some() {}
    assert!(!readable(&h, 0));
    h.join(["g"]).unwrap();
    send_to(&h, &["g"], b"one");
    send_to(&h, &["g"], b"two");
    assert!(readable(&h, 60_000));
    let evs = h.recv_many(100, Some(EVENT_WAIT)).unwrap();
    assert!(!evs.is_empty());
    let mut msgs = evs
        .iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count();
    while msgs < 2 {
        if let Event::Message { .. } = h.recv(Some(EVENT_WAIT)).unwrap() {
            msgs += 1;
        }
    }
    while h.try_recv().unwrap().is_some() {}
    assert!(!readable(&h, 0));
    assert!(matches!(
        h.recv(Some(Duration::from_millis(10))),
        Err(EvsError::Timeout)
    ));
    // The end of the stream is readable too.
    node.shutdown();
    assert!(readable(&h, 60_000));
    assert!(matches!(h.recv(None), Err(EvsError::Closed)));
}
