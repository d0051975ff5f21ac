//! Packet security of a running cluster: a node with another key can neither join, nor read,
//! nor inject; tampered and replayed frames are refused and counted; the ring keeps
//! delivering throughout.

mod node_support;

use std::net::UdpSocket;
use std::time::Duration;

use evs::crypto::{Reject, HEADER_LEN};
use evs::{Handle, Node, Runtime};
use node_support::*;

fn rejected(n: &Node, r: Reject) -> u64 {
    n.stats().unwrap().crypto_rejected.get(r)
}

#[test]
fn a_node_with_another_key_never_joins_reads_or_injects() {
    let dir = tempfile::tempdir().unwrap();
    let key = authkey(dir.path(), "good");
    let bad = authkey(dir.path(), "bad");
    let rt = Runtime::new().unwrap();
    // All four are in every member list, so traffic flows both ways.
    let members = loopback_addrs(4);
    let nodes: Vec<Node> = members
        .iter()
        .map(|(id, _)| {
            let k = if *id == 4 { &bad } else { &key };
            let cfg = udpu_builder("keys", *id, &members, k).build().unwrap();
            Node::start(&cfg, &rt).unwrap()
        })
        .collect();
    let good: Vec<&Node> = nodes[..3].iter().collect();
    wait_ring(&good, &[1, 2, 3]);
    wait_ring(&[&nodes[3]], &[4]);

    let hs: Vec<Handle> = nodes.iter().map(|n| n.handle().unwrap()).collect();
    for h in &hs {
        h.join(["g"]).unwrap();
    }
    wait_until("views of the good nodes", || {
        good.iter()
            .all(|n| n.group_view().get(&b("g")).map(Vec::len) == Some(3))
    });
    for i in 0..20 {
        send_to(&hs[0], &["g"], format!("m{i}").as_bytes());
        // The outsider multicasts too: its frames must not reach anyone's handles.
        send_to(&hs[3], &["g"], format!("evil{i}").as_bytes());
    }
    for h in &hs[..3] {
        let got = recv_messages(h, 20);
        assert!(got.iter().all(|m| m.sender == 1), "{got:?}");
    }
    // The outsider reads only its own messages (self delivery on its one-node ring).
    let own = recv_messages(&hs[3], 20);
    assert!(own.iter().all(|m| m.sender == 4));
    assert!(messages_for(&hs[3], Duration::from_millis(500)).is_empty());
    for h in &hs[..3] {
        assert!(messages_for(h, Duration::from_millis(200)).is_empty());
    }
    for n in &nodes[..3] {
        let s = n.stats().unwrap();
        assert_eq!(s.members, vec![1, 2, 3]);
        assert!(
            s.crypto_rejected.get(Reject::Unauthenticated) > 0,
            "node {}: {:?}",
            n.id(),
            s.crypto_rejected
        );
        assert!(n
            .group_view()
            .values()
            .flatten()
            .all(|(node, _)| *node != 4));
    }
    let s4 = nodes[3].stats().unwrap();
    assert_eq!(s4.members, vec![4]);
    assert!(s4.crypto_rejected.get(Reject::Unauthenticated) > 0);
    assert_eq!(s4.crypto_accepted, 0, "the outsider authenticated nothing");
    assert!(s4
        .rejected()
        .iter()
        .any(|(k, n)| k == "crypto.unauthenticated" && *n > 0));
}

#[test]
fn tampered_and_replayed_frames_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let key = authkey(dir.path(), "authkey");
    let rt = Runtime::new().unwrap();
    let members = loopback_addrs(3);
    let nodes: Vec<Node> = members
        .iter()
        .map(|(id, _)| {
            let cfg = udpu_builder("tamper", *id, &members, &key).build().unwrap();
            Node::start(&cfg, &rt).unwrap()
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

    // Capture what node 1 sends while it multicasts, after node 2 has received it all.
    nodes[0].debug_capture(64);
    for i in 0..10 {
        send_to(&hs[0], &["g"], format!("m{i}").as_bytes());
    }
    for h in &hs {
        recv_messages(h, 10);
    }
    let frames: Vec<Vec<u8>> = nodes[0]
        .debug_capture(0)
        .into_iter()
        .filter(|f| f.to.is_none())
        .map(|f| f.frame)
        .collect();
    assert!(!frames.is_empty());
    let target = members[1].1;
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();

    let unauth0 = rejected(&nodes[1], Reject::Unauthenticated);
    let replay0 = rejected(&nodes[1], Reject::Replayed);
    for f in &frames {
        // One flipped bit in the ciphertext, and one in the authenticated header's counter.
        let mut body = f.clone();
        body[HEADER_LEN + 3] ^= 0x01;
        raw.send_to(&body, target).unwrap();
        let mut head = f.clone();
        head[HEADER_LEN - 1] ^= 0x40;
        raw.send_to(&head, target).unwrap();
        // And the frame exactly as captured.
        raw.send_to(f, target).unwrap();
    }
    let n = frames.len() as u64;
    wait_until("rejections to be counted", || {
        rejected(&nodes[1], Reject::Unauthenticated) >= unauth0 + 2 * n
            && rejected(&nodes[1], Reject::Replayed) >= replay0 + n
    });
    let s = nodes[1].stats().unwrap();
    eprintln!("node 2 rejections: {:?}", s.rejected());
    assert_eq!(
        s.totem.rejected_total(),
        0,
        "nothing unauthenticated was parsed"
    );

    // The ring keeps delivering, in one membership.
    for i in 0..10 {
        send_to(&hs[2], &["g"], format!("after{i}").as_bytes());
    }
    for h in &hs {
        let got = recv_messages(h, 10);
        assert!(got.iter().all(|m| m.sender == 3), "{got:?}");
    }
    for n in &nodes {
        assert_eq!(n.membership().1, vec![1, 2, 3]);
    }
}
