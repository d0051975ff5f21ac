//! The Accelerated Ring's send schedule: of a visit's new multicasts, the last
//! `accelerated_window` leave after the token (classic Totem: all of them before it), and the
//! ring still delivers everything in one order. The EVS properties of the mode under faults are
//! checked by the simulator's seeds (`totem-sim --seeds ... --accelerated`).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{fast_config, Net};
use totem::wire::{self, Packet};
use totem::{Config, Destination, Guarantee};

/// What node 2 sends on the visit where it originates ten one-packet messages, in order:
/// 'M' for a multicast, 'T' for the token. The ring runs on afterwards.
fn visit_schedule(cfg: &Config) -> (String, Net) {
    let mut net = Net::new(&[1, 2, 3], cfg);
    net.run_until(|n| n.all_operational_with(3), Duration::from_secs(5));
    let now = net.now;
    let p = net.procs.get_mut(&2).unwrap();
    for i in 0..10u8 {
        // Each fills a packet by itself (max_packet_size 1400).
        p.submit(now, Bytes::from(vec![i; 1300]), Guarantee::Agreed)
            .unwrap();
    }
    net.pump(2);
    // Run until the next packet is a token for node 2, then hand it over by hand and read
    // node 2's transmits in the order it queued them.
    loop {
        let (at, to, data) = net.wire.front().cloned().expect("traffic");
        if to == 2 && matches!(wire::decode(&data).unwrap().packet, Packet::Token(_)) {
            net.wire.pop_front();
            net.now = net.now.max(at);
            let now = net.now;
            net.procs.get_mut(&2).unwrap().handle_packet(now, data);
            break;
        }
        net.step();
    }
    let mut out = String::new();
    let mut sent = Vec::new();
    let p = net.procs.get_mut(&2).unwrap();
    while let Some(t) = p.poll_transmit() {
        match wire::decode(&t.data).unwrap().packet {
            Packet::Mcast(_) => out.push('M'),
            Packet::Token(_) => out.push('T'),
            _ => out.push('?'),
        }
        sent.push(t);
    }
    // Put them on the wire as the harness would have.
    let at = net.now + Duration::from_micros(100);
    for t in sent {
        match t.destination {
            Destination::Multicast => {
                for to in [1, 3] {
                    net.wire.push_back((at, to, t.data.clone()));
                }
            }
            Destination::Node(to) => net.wire.push_back((at, to, t.data.clone())),
        }
    }
    net.pump(2);
    (out, net)
}

fn config(accelerated_window: u32) -> Config {
    Config {
        accelerated_window,
        seqno_unchanged_const: 1_000, // no token hold in the way
        ..fast_config()
    }
}

#[test]
fn classic_totem_sends_every_message_before_the_token() {
    let (schedule, _) = visit_schedule(&config(0));
    assert!(schedule == "MMMMMMMMMMT", "classic schedule {schedule}");
}

#[test]
fn accelerated_ring_sends_the_window_after_the_token() {
    let (schedule, mut net) = visit_schedule(&config(3));
    assert!(schedule == "MMMMMMMTMMM", "accelerated schedule {schedule}");
    // Everything is delivered, once, in one order everywhere.
    net.run_until(
        |n| (1..=3).all(|id| n.deliveries(id).len() == 10),
        Duration::from_secs(5),
    );
    let order = net.deliveries(1);
    for id in [2, 3] {
        assert_eq!(
            net.deliveries(id),
            order,
            "node {id} delivered another order"
        );
    }
    let payloads: Vec<u8> = order.iter().map(|(_, _, d)| d[0]).collect();
    assert_eq!(payloads, (0..10).collect::<Vec<u8>>());
}
