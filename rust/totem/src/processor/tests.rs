use super::membership::ring_layer;
use super::timers::TimerKind;
use super::*;

fn lone_processor() -> Processor {
    let cfg = Config {
        token: Duration::from_millis(200),
        ..Config::default()
    };
    Processor::new(cfg, 1, Start::default(), Instant::ZERO).expect("valid config")
}

#[test]
fn timer_armed_in_an_older_epoch_is_a_no_op() {
    let mut p = lone_processor();
    // Alone, the processor created a commit token and waits in COMMIT with its token-loss
    // timer armed.
    assert_eq!(p.state(), State::Commit);
    let loss = p.timers[TimerKind::TokenLoss as usize].expect("armed");
    // The ring moves on without re-arming that timer (as a state change would).
    p.new_epoch();
    let stale_before = p.stats.stale_timers;
    p.handle_timeout(loss.at);
    assert!(p.stats.stale_timers > stale_before);
    assert_eq!(
        p.stats.token_lost, 0,
        "a stale token-loss timer must not fire"
    );
    assert_eq!(p.state(), State::Commit);
}

fn set(v: &[NodeId]) -> BTreeSet<NodeId> {
    v.iter().copied().collect()
}

fn links(v: &[(NodeId, NodeId)]) -> BTreeSet<(NodeId, NodeId)> {
    v.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect()
}

/// The ring each processor of `among` ends up in, as `ring_layer` decides at each of them.
fn split(among: &[NodeId], broken: &[(NodeId, NodeId)]) -> Vec<Vec<NodeId>> {
    let (among, broken) = (set(among), links(broken));
    let mut rings: Vec<Vec<NodeId>> = among
        .iter()
        .map(|&me| ring_layer(me, &among, &broken).into_iter().collect())
        .collect();
    rings.sort();
    rings.dedup();
    rings
}

#[test]
fn ring_layer_splits_on_broken_links_the_same_way_everywhere() {
    // No broken link: one ring.
    assert_eq!(split(&[1, 2, 3], &[]), vec![vec![1, 2, 3]]);
    // One link cut (either way): the higher id of the pair leaves, alone.
    assert_eq!(split(&[1, 2, 3], &[(1, 2)]), vec![vec![1, 3], vec![2]]);
    assert_eq!(
        split(&[1, 2, 3, 4, 5], &[(2, 1)]),
        vec![vec![1, 3, 4, 5], vec![2]]
    );
    // One processor cut from everyone: it leaves, whatever its id.
    assert_eq!(
        split(&[1, 2, 3, 4, 5], &[(1, 2), (1, 3), (1, 4), (1, 5)]),
        vec![vec![1], vec![2, 3, 4, 5]]
    );
    // Two halves cut from each other: two rings, each whole.
    let cross: Vec<(NodeId, NodeId)> = [1, 2]
        .iter()
        .flat_map(|&a| [3, 4, 5].map(|b| (a, b)))
        .collect();
    assert_eq!(
        split(&[1, 2, 3, 4, 5], &cross),
        vec![vec![1, 2], vec![3, 4, 5]]
    );
    // A processor with most links broken goes before one with a single broken link.
    assert_eq!(
        split(&[1, 2, 3, 4, 5], &[(1, 2), (1, 3), (1, 4), (4, 5)]),
        vec![vec![1, 5], vec![2, 3, 4]]
    );
    // Every ring is free of broken links, and every processor is in exactly one ring.
    let among = [3, 7, 9, 12, 20, 31];
    let broken = [
        (3, 7),
        (7, 9),
        (9, 12),
        (12, 20),
        (20, 31),
        (31, 3),
        (7, 20),
    ];
    let rings = split(&among, &broken);
    let mut all: Vec<NodeId> = rings.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, among.to_vec());
    for ring in &rings {
        for &(a, b) in &broken {
            assert!(
                !(ring.contains(&a) && ring.contains(&b)),
                "{ring:?} has {a}-{b}"
            );
        }
    }
}

#[test]
fn timer_of_the_current_epoch_fires() {
    let mut p = lone_processor();
    let loss = p.timers[TimerKind::TokenLoss as usize].expect("armed");
    let gathers = p.stats.gather_entered;
    p.handle_timeout(loss.at);
    assert_eq!(p.stats.token_lost, 1);
    // Back to GATHER, where a lone processor at once starts forming a ring again.
    assert_eq!(p.stats.gather_entered, gathers + 1);
}
