//! Three nodes in one process over real UDP on loopback (udpu, 127.0.0.1-3, AES-256-GCM with a
//! freshly generated authkey): ring formation, agreed order across nodes and handles, self
//! delivery, group filtering, multicast to unjoined groups, replicated group views, and a
//! node leaving.

mod node_support;

use std::collections::BTreeMap;
use std::time::Duration;

use evs::{ConfigKind, Event, Guarantee, Handle, Node, Runtime};
use node_support::*;

/// Each of the 3 nodes has two handles; all six join "all", handle 1 of nodes 1 and 2 joins
/// "x", handle 2 of node 3 joins "y". Every handle multicasts N messages to "all" from its own
/// thread while node 3's handle 2 also multicasts to "x", which it never joined.
#[test]
fn three_nodes_agree_on_order_groups_and_views() {
    const N: usize = 60;
    const M: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let key = authkey(dir.path(), "authkey");
    let rt = Runtime::new().unwrap();
    let nodes = start_cluster("agreed", 3, &key, &rt);
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_ring(&refs, &[1, 2, 3]);

    let handles: Vec<[Handle; 2]> = nodes
        .iter()
        .map(|n| [n.handle().unwrap(), n.handle().unwrap()])
        .collect();
    // A new handle's first event is the current regular configuration.
    for hs in &handles {
        for h in hs {
            match h.recv(Some(EVENT_WAIT)).unwrap() {
                Event::ConfigChange { kind, members, .. } => {
                    assert_eq!(kind, ConfigKind::Regular);
                    assert_eq!(members, vec![1, 2, 3]);
                }
                other => panic!("first event {other:?}"),
            }
            assert_eq!(h.membership().1, vec![1, 2, 3]);
        }
    }
    for hs in &handles {
        for h in hs {
            h.join(["all"]).unwrap();
        }
    }
    handles[0][0].join(["x"]).unwrap();
    handles[1][0].join(["x"]).unwrap();
    handles[2][1].join(["y"]).unwrap();
    assert!(matches!(
        handles[0][1].leave(["x"]),
        Err(evs::EvsError::NotJoined)
    ));
    assert!(matches!(
        handles[0][1].join([""]),
        Err(evs::EvsError::InvalidGroup(_))
    ));
    assert!(matches!(
        handles[0][1].join(["123456789012345678901234567890123"]),
        Err(evs::EvsError::InvalidGroup(_))
    ));

    // The replicated views settle to the same content at every node.
    let mut want: BTreeMap<bytes::Bytes, Vec<(u32, u32)>> = BTreeMap::new();
    want.insert(
        b("all"),
        vec![(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)],
    );
    want.insert(b("x"), vec![(1, 1), (2, 1)]);
    want.insert(b("y"), vec![(3, 2)]);
    wait_until("group views to settle", || {
        nodes.iter().all(|n| n.group_view() == want)
    });
    assert_eq!(
        handles[2][0].group_membership("x"),
        vec![(1, 1), (2, 1)],
        "view as seen through a handle"
    );

    // Concurrent senders.
    std::thread::scope(|s| {
        for (ni, hs) in handles.iter().enumerate() {
            for (hi, h) in hs.iter().enumerate() {
                s.spawn(move || {
                    for k in 0..N {
                        send_to(h, &["all"], format!("{ni}/{hi}/{k}").as_bytes());
                        if ni == 2 && hi == 1 && k < M {
                            // To a group this handle never joined.
                            send_to(h, &["x"], format!("x{k}").as_bytes());
                        }
                    }
                });
            }
        }
    });

    let mut streams: Vec<Vec<Msg>> = Vec::new();
    std::thread::scope(|s| {
        let mut joins = Vec::new();
        for (ni, hs) in handles.iter().enumerate() {
            for (hi, h) in hs.iter().enumerate() {
                let in_x = hi == 0 && ni < 2;
                let want = 6 * N + if in_x { M } else { 0 };
                joins.push(s.spawn(move || recv_messages(h, want)));
            }
        }
        streams = joins.into_iter().map(|j| j.join().unwrap()).collect();
    });

    let only = |v: &[Msg], g: &str| -> Vec<Msg> {
        v.iter()
            .filter(|m| m.groups.iter().any(|x| x == g.as_bytes()))
            .cloned()
            .collect()
    };
    let all0 = only(&streams[0], "all");
    assert_eq!(all0.len(), 6 * N);
    for (i, s) in streams.iter().enumerate() {
        assert_eq!(only(s, "all"), all0, "stream {i} differs in order");
    }
    // Self delivery, and each sender's FIFO order within the agreed order.
    for ni in 0..3u32 {
        for hi in 1..=2u32 {
            let mine: Vec<String> = all0
                .iter()
                .filter(|m| m.sender == ni + 1 && m.handle == hi)
                .map(|m| String::from_utf8(m.data.to_vec()).unwrap())
                .collect();
            let expect: Vec<String> = (0..N).map(|k| format!("{ni}/{}/{k}", hi - 1)).collect();
            assert_eq!(mine, expect);
        }
    }
    // Group filtering: the two members of x saw every x message, in one order (interleaved
    // with "all" the same way); nobody else saw any.
    assert_eq!(only(&streams[0], "x").len(), M);
    assert_eq!(streams[0], streams[2], "the two x members' streams");
    for i in [1, 3, 4, 5] {
        assert!(only(&streams[i], "x").is_empty(), "stream {i} got x");
        assert_eq!(streams[i].len(), 6 * N);
    }
    for hs in &handles {
        for h in hs {
            assert!(messages_for(h, Duration::from_millis(300)).is_empty());
        }
    }

    // A leave reaches every view, and the remaining member is told.
    handles[1][0].leave(["x"]).unwrap();
    want.insert(b("x"), vec![(1, 1)]);
    wait_until("views after a leave", || {
        nodes.iter().all(|n| n.group_view() == want)
    });
    let change = loop {
        match handles[0][0].recv(Some(EVENT_WAIT)).unwrap() {
            Event::GroupChange {
                group,
                left,
                members,
                ..
            } if group == "x" && !left.is_empty() => break (left, members),
            _ => {}
        }
    };
    assert_eq!(change, (vec![(2, 1)], vec![(1, 1)]));
    // mcast_joined goes to every joined group; a handle without groups gets NotJoined.
    handles[0][0]
        .mcast_joined(b"to all and x", Guarantee::Agreed)
        .unwrap();
    let got = recv_messages(&handles[2][0], 1);
    assert_eq!(got[0].groups, vec![b("all"), b("x")]);
    let lonely = nodes[0].handle().unwrap();
    assert!(matches!(
        lonely.mcast_joined(b"?", Guarantee::Agreed),
        Err(evs::EvsError::NotJoined)
    ));

    // Closing a handle leaves its groups everywhere.
    handles[2][1].close();
    want.get_mut(&b("all")).unwrap().retain(|e| *e != (3, 2));
    want.remove(&b("y"));
    wait_until("views after a close", || {
        nodes.iter().all(|n| n.group_view() == want)
    });
    let st = nodes[0].stats().unwrap();
    eprintln!("node 1 stats: {st:?}");
    assert_eq!(st.members, vec![1, 2, 3]);
    assert!(st.totem.messages_delivered >= (6 * N) as u64);
    assert_eq!(st.malformed_payloads, 0);
    assert_eq!(st.sender_mismatch, 0);
}

/// A node that shuts down is in `left` of a transitional configuration at the others, which
/// then install a regular configuration without it; its group entries vanish from the views,
/// and its handles' streams end with `Closed`.
#[test]
fn a_node_shutting_down_is_seen_leaving() {
    let dir = tempfile::tempdir().unwrap();
    let key = authkey(dir.path(), "authkey");
    let rt = Runtime::new().unwrap();
    let members = loopback_addrs(3);
    let configs: Vec<_> = members
        .iter()
        .map(|(id, _)| {
            udpu_builder("leaving", *id, &members, &key)
                .build()
                .unwrap()
        })
        .collect();
    let mut nodes: Vec<Node> = configs
        .iter()
        .map(|c| Node::start(c, &rt).unwrap())
        .collect();
    let third_config = configs[2].clone();
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

    let third = nodes.pop().unwrap();
    third.shutdown();
    assert!(!third.is_running());
    // Its handle reads out what was queued, then sees the end.
    loop {
        match hs[2].recv(Some(EVENT_WAIT)) {
            Ok(_) => {}
            Err(e) => {
                assert!(matches!(e, evs::EvsError::Closed), "{e}");
                break;
            }
        }
    }
    for h in &hs[..2] {
        let ev = recv_config(h, ConfigKind::Transitional, |m, left, _| {
            left.contains(&3) && !m.contains(&3)
        });
        eprintln!("transitional: {ev:?}");
        recv_config(h, ConfigKind::Regular, |m, _, _| m == [1, 2]);
    }
    wait_until("views without node 3", || {
        nodes
            .iter()
            .all(|n| n.group_view().get(&b("g")).cloned() == Some(vec![(1, 1), (2, 1)]))
    });
    // The survivors keep delivering.
    send_to(&hs[0], &["g"], b"after");
    assert_eq!(recv_messages(&hs[1], 1)[0].data, b("after"));

    // Restarted with the same configuration (nothing persisted: its new boot and ring numbers
    // come from the clock), it is accepted again, its frames are not taken for replays, and
    // its new handle (id 1 again) joins the views.
    let cfg = third_config;
    drop(third);
    let third = Node::start(&cfg, &rt).expect("restart");
    nodes.push(third);
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_ring(&refs, &[1, 2, 3]);
    let h3 = nodes[2].handle().unwrap();
    h3.join(["g"]).unwrap();
    wait_until("views with the restarted node", || {
        nodes
            .iter()
            .all(|n| n.group_view().get(&b("g")).cloned() == Some(vec![(1, 1), (2, 1), (3, 1)]))
    });
    send_to(&h3, &["g"], b"back");
    // Node 1's handle still holds its own "after"; then everyone gets "back".
    assert_eq!(recv_messages(&hs[0], 1)[0].data, b("after"));
    for h in [&hs[0], &hs[1], &h3] {
        let got = recv_messages(h, 1);
        assert_eq!((got[0].sender, got[0].data.clone()), (3, b("back")));
    }
}
