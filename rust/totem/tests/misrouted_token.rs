//! A token delivered to a member it was not sent to (redirected on the network: the sealed frame
//! names no destination) must be ignored. Before the fix the member processed it as its own
//! turn, so two members held the token at once and ordered different messages under the same
//! sequence number (found by the `ring` fuzz target: a D5 total-order violation).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{fast_config, Net};
use totem::stats::Ignored;
use totem::wire::{self, Packet};
use totem::{Event, Guarantee};

#[test]
fn token_from_a_non_predecessor_is_ignored() {
    let mut net = Net::new(&[1, 2, 3], &fast_config());
    net.run_until(|n| n.all_operational_with(3), Duration::from_secs(5));

    // Queue a message at 3 and 2 each, then wait for a token sent by 1 to 2 (its successor).
    for id in [2, 3] {
        let now = net.now;
        let p = net.procs.get_mut(&id).unwrap();
        p.submit(now, Bytes::from(vec![id as u8; 10]), Guarantee::Agreed)
            .unwrap();
        net.pump(id);
    }
    let token = loop {
        let (_, to, data) = net.wire.front().cloned().expect("traffic");
        let d = wire::decode(&data).unwrap();
        if matches!(d.packet, Packet::Token(_)) && d.sender == 1 && to == 2 {
            break data;
        }
        net.step();
    };

    // 3's predecessor is 2, not 1: a copy of 1's token must not give 3 the turn.
    let before = net.procs[&3].stats();
    let now = net.now;
    net.procs.get_mut(&3).unwrap().handle_packet(now, token);
    net.pump(3);
    let after = net.procs[&3].stats();
    assert_eq!(
        after.packets_out.total(),
        before.packets_out.total(),
        "3 acted on a token that was not sent to it"
    );
    assert_eq!(
        after.ignored(Ignored::InconsistentToken),
        before.ignored(Ignored::InconsistentToken) + 1
    );

    // And the ring orders both messages the same way everywhere.
    net.run_until(
        |n| (1..=3).all(|id| n.deliveries(id).len() == 2),
        Duration::from_secs(5),
    );
    let order = net.deliveries(1);
    for id in [2, 3] {
        assert_eq!(net.deliveries(id), order, "{id} delivered in another order");
    }
    let seqs: Vec<u64> = net.events[&1]
        .iter()
        .filter_map(|e| match e {
            Event::Deliver(d) => Some(d.seq),
            _ => None,
        })
        .collect();
    assert!(
        seqs[0] < seqs[1],
        "two messages share sequence number {}",
        seqs[0]
    );
}
