//! Processors that start together must not answer every join that teaches them something new
//! with a join of their own: re-sends within one gather phase are coalesced, so the number of
//! joins a processor sends while the ring forms stays small whatever the ring's size (it was
//! about N - 1 each before: O(N³) packets on the wire, 2 million for 128 processors).

mod common;

use std::time::Duration;

use common::{fast_config, Net};
use totem::wire::PacketType;

fn joins_per_processor(n: u32) -> (u64, Duration) {
    let ids: Vec<u32> = (1..=n).collect();
    let mut net = Net::new(&ids, &fast_config());
    let start = net.now;
    net.run_until(
        |net| net.all_operational_with(n as usize),
        Duration::from_secs(10),
    );
    let took = net.now - start;
    let most = net
        .procs
        .values()
        .map(|p| p.stats().packets_out.get(PacketType::Join))
        .max()
        .unwrap_or(0);
    (most, took)
}

#[test]
fn joins_stay_few_as_the_ring_grows() {
    for n in [8, 24, 48] {
        let (most, took) = joins_per_processor(n);
        assert!(
            most <= 6,
            "{n} processors: one of them sent {most} joins while the ring formed"
        );
        assert!(
            took < Duration::from_secs(1),
            "{n} processors formed the ring in {took:?}"
        );
    }
}
