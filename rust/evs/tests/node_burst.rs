//! No cliff after a heal: when a ring re-forms with every member holding a full send budget,
//! the burst that follows does not close a consumer that reads at a steady pace. The
//! delivery buffer (`delivery_buffer_bytes`, "auto" by default) holds what its queue cannot;
//! with the buffer off the same burst closes it (the cliff this guards against).
//!
//! The scenario: three nodes on one ring, a reader per node joined to the group and reading
//! about 10,000 events per second, a sender per node. Every node is cut off from the others:
//! the token is lost, nobody sends, and each sender fills its node's whole send budget
//! (1 MiB of 64-byte messages: about 14,000 each). Once every node is in the membership
//! protocol, the cut heals: the three form a new ring together and deliver about 43,000
//! messages within a fraction of a second, well over a queue of 16,384 events.

mod node_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use evs::config::DeliveryBuffer;
use evs::{Event, EvsError, Guarantee, Handle, Node, NodeId, Runtime};
use node_support::*;

const NODES: usize = 3;
const SIZE: usize = 64;
/// The reader's pace: a batch of at most this many events every [`READ_PAUSE`].
const READ_BATCH: usize = 100;
const READ_PAUSE: Duration = Duration::from_millis(10);

/// What one reader got: the messages `(sender, number)` in delivery order, and how its
/// stream ended (`None`: it read everything sent).
struct Read {
    messages: Vec<(NodeId, u64)>,
    end: Option<EvsError>,
}

/// Reads at a steady pace until `want` (once set) messages came, or the stream ends.
fn read_steadily(h: &Handle, want: &AtomicUsize) -> Read {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut messages = Vec::new();
    loop {
        let target = want.load(Ordering::Acquire);
        if target > 0 && messages.len() >= target {
            return Read {
                messages,
                end: None,
            };
        }
        assert!(Instant::now() < deadline, "reader timed out");
        match h.recv_many(READ_BATCH, Some(Duration::from_millis(100))) {
            Ok(events) => {
                for ev in events {
                    if let Event::Message { sender, data, .. } = ev {
                        let n = u64::from_le_bytes(data[..8].try_into().unwrap());
                        messages.push((sender, n));
                    }
                }
            }
            Err(EvsError::Timeout) => {}
            Err(e) => {
                return Read {
                    messages,
                    end: Some(e),
                }
            }
        }
        std::thread::sleep(READ_PAUSE);
    }
}

/// Fills `h`'s node's send budget with numbered messages from `next` on; returns the next
/// number.
fn fill_budget(h: &Handle, mut next: u64) -> u64 {
    let mut data = [0u8; SIZE];
    loop {
        data[..8].copy_from_slice(&next.to_le_bytes());
        match h.mcast_groups(["g"], &data, Guarantee::Agreed) {
            Ok(()) => next += 1,
            Err(EvsError::TryAgain) => return next,
            Err(e) => panic!("{e}"),
        }
    }
}

struct Outcome {
    reads: Vec<Read>,
    sent: Vec<u64>,
    peaks: Vec<usize>,
}

fn burst_after_heal(buffer: DeliveryBuffer) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let key = authkey(dir.path(), "authkey");
    let members = loopback_addrs(NODES);
    let rt = Runtime::new().unwrap();
    let nodes: Vec<Node> = members
        .iter()
        .map(|(id, _)| {
            let mut b = udpu_builder("burst", *id, &members, &key);
            // Token loss is noticed after a second; the membership protocol then waits for
            // the others far longer than the test needs, so the ring re-forms whole.
            b.token(Duration::from_millis(1000))
                .consensus(Duration::from_secs(30))
                .delivery_buffer_bytes(buffer);
            Node::start(&b.build().unwrap(), &rt).unwrap()
        })
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let ids: Vec<NodeId> = members.iter().map(|m| m.0).collect();
    wait_ring(&refs, &ids);
    let readers: Vec<Handle> = nodes.iter().map(|n| n.handle().unwrap()).collect();
    let senders: Vec<Handle> = nodes.iter().map(|n| n.handle().unwrap()).collect();
    for r in &readers {
        r.join(["g"]).unwrap();
    }
    wait_until("every reader in the group", || {
        nodes
            .iter()
            .all(|n| n.group_view().get(&b("g")).map(Vec::len) == Some(NODES))
    });
    let ring_before = nodes[0].ring_id();

    let want = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let readers: Vec<_> = readers
            .iter()
            .map(|h| {
                let want = &want;
                s.spawn(move || read_steadily(h, want))
            })
            .collect();

        for n in &nodes {
            let others: Vec<NodeId> = ids.iter().copied().filter(|i| *i != n.id()).collect();
            n.isolate_from(&others);
        }
        // Fill every budget while the token is lost, and again once every node is in the
        // membership protocol (a node may have held the token for a moment).
        let mut sent: Vec<u64> = senders.iter().map(|h| fill_budget(h, 0)).collect();
        wait_until("every node to notice the token loss", || {
            nodes
                .iter()
                .all(|n| n.stats().unwrap().state != totem::State::Operational)
        });
        for (h, next) in senders.iter().zip(sent.iter_mut()) {
            *next = fill_budget(h, *next);
        }
        for n in &nodes {
            let st = n.stats().unwrap();
            assert!(
                st.send_budget_used + SIZE + 64 > st.send_budget_cap,
                "node {}: budget not full at the merge ({} of {})",
                n.id(),
                st.send_budget_used,
                st.send_budget_cap
            );
        }
        want.store(sent.iter().sum::<u64>() as usize, Ordering::Release);
        for n in &nodes {
            n.isolate_from(&[]);
        }
        let reads: Vec<Read> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        wait_ring(&refs, &ids);
        assert_ne!(nodes[0].ring_id(), ring_before, "the ring re-formed");
        let peaks = nodes
            .iter()
            .map(|n| n.stats().unwrap().delivery_buffered_peak)
            .collect();
        Outcome { reads, sent, peaks }
    })
}

#[test]
fn a_steady_consumer_survives_the_burst_after_a_heal() {
    let out = burst_after_heal(DeliveryBuffer::Auto);
    let total: u64 = out.sent.iter().sum();
    assert!(
        total > 2 * 16_384,
        "the burst must exceed a default queue: {total}"
    );
    for (i, r) in out.reads.iter().enumerate() {
        assert!(r.end.is_none(), "reader {i} closed: {:?}", r.end);
        assert_eq!(r.messages.len() as u64, total, "reader {i}");
        // Each sender's messages complete and in its order ...
        for (s, &n) in out.sent.iter().enumerate() {
            let from: Vec<u64> = r
                .messages
                .iter()
                .filter(|m| m.0 == s as NodeId + 1)
                .map(|m| m.1)
                .collect();
            assert_eq!(from, (0..n).collect::<Vec<_>>(), "reader {i}, sender {s}");
        }
        // ... and one agreed order everywhere.
        assert!(
            r.messages == out.reads[0].messages,
            "reader {i}: another order"
        );
    }
    // The queues alone could not have held it.
    assert!(out.peaks.iter().all(|&p| p > 0), "{:?}", out.peaks);
}

#[test]
fn without_a_delivery_buffer_the_same_burst_closes_the_consumer() {
    let out = burst_after_heal(DeliveryBuffer::Bytes(0));
    assert!(
        out.reads
            .iter()
            .any(|r| matches!(r.end, Some(EvsError::Overflowed(_)))),
        "no reader overflowed: the burst did not outrun the queue"
    );
}
