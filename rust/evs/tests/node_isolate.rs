//! Fault injection without touching the network: `Node::isolate_from` on both sides splits a
//! 3-node loopback cluster into {1,2} | {3}, each side forms its own ring and keeps
//! delivering; ending the isolation merges them back into one ring.

mod node_support;

use evs::{Event, Guarantee, Node, Runtime};
use node_support::*;

#[test]
fn isolation_partitions_and_heals_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let key = authkey(dir.path(), "authkey");
    let rt = Runtime::new().unwrap();
    let nodes = start_cluster("isolate", 3, &key, &rt);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_ring(&all, &[1, 2, 3]);

    nodes[0].isolate_from(&[3]);
    nodes[1].isolate_from(&[3]);
    nodes[2].isolate_from(&[1, 2]);
    wait_ring(&[&nodes[0], &nodes[1]], &[1, 2]);
    wait_ring(&[&nodes[2]], &[3]);
    let dropped = nodes[2].stats().unwrap().isolated_dropped;
    wait_until("frames from the other side dropped and counted", || {
        nodes[0].stats().unwrap().isolated_dropped > 0
    });

    // Each side still delivers its own messages.
    let h1 = nodes[0].handle().unwrap();
    let h3 = nodes[2].handle().unwrap();
    h1.join(["g"]).unwrap();
    h3.join(["g"]).unwrap();
    h1.mcast_joined(b"left side", Guarantee::Agreed).unwrap();
    h3.mcast_joined(b"right side", Guarantee::Agreed).unwrap();
    assert_eq!(recv_messages(&h1, 1)[0].data.as_ref(), b"left side");
    assert_eq!(recv_messages(&h3, 1)[0].data.as_ref(), b"right side");
    assert!(nodes[2].stats().unwrap().isolated_dropped >= dropped);

    for n in &nodes {
        n.isolate_from(&[]);
    }
    wait_ring(&all, &[1, 2, 3]);
    // The merge shows up as a regular configuration with node 3 joined, at node 1's handle.
    let deadline = std::time::Instant::now() + EVENT_WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match h1
            .recv(Some(left))
            .expect("configuration change after healing")
        {
            Event::ConfigChange {
                members, joined, ..
            } if members == vec![1, 2, 3] => {
                assert_eq!(joined, vec![3]);
                break;
            }
            _ => continue,
        }
    }
}
