//! The group checker (`--groups`, properties G1-G4) against deliberate service-layer bugs:
//! each test turns on one fault-injection switch of `evs-engine` (feature `fault-injection`,
//! which only the simulator enables), runs seeds until the checker reports the property the
//! bug breaks, and replays that seed without the switch to show that it passes: the violation
//! is the bug's, not the seed's. The clauses that compare processes are also tested on crafted
//! outputs (`groups_check`'s unit tests).

use totem_sim::oracle::Property;
use totem_sim::plan::{inject_engine_by_name, Options};
use totem_sim::{run_seed, FailureKind};

fn groups() -> Options {
    Options {
        groups: true,
        ..Options::default()
    }
}

/// The first seed of 0..40 on which `bug` breaks `property`; every failure met on the way
/// must be a group property (the bug's, not the protocol's).
fn first_caught(bug: &str, property: Property) -> u64 {
    let mut opts = groups();
    assert!(
        inject_engine_by_name(&mut opts.engine_bugs, bug),
        "unknown bug {bug}"
    );
    for seed in 0..40 {
        let r = run_seed(seed, &opts);
        let Err(f) = &r.outcome else { continue };
        let FailureKind::Violation(v) = &f.kind else {
            panic!("{bug}: seed {seed} failed without a verdict: {f}");
        };
        assert!(
            v.property.code().starts_with('G'),
            "{bug}: seed {seed} broke {}: {v}",
            v.property.code()
        );
        if v.property == property {
            let clean = run_seed(seed, &groups());
            assert!(
                clean.passed(),
                "{bug}: seed {seed} fails without the bug too: {:?}",
                clean.outcome
            );
            return seed;
        }
    }
    panic!("{bug}: {property:?} never reported in seeds 0..40");
}

#[test]
fn a_message_given_to_handles_outside_its_groups_breaks_g2() {
    first_caught("group-misroute", Property::G2Routing);
}

#[test]
fn a_message_that_misses_a_handle_breaks_g2() {
    first_caught("group-drop-last-target", Property::G2Routing);
}

#[test]
fn a_node_that_ignores_leaves_breaks_g1() {
    first_caught("group-ignore-leaves", Property::G1ViewAgreement);
}

#[test]
fn views_that_keep_departed_nodes_break_g4() {
    first_caught("group-keep-departed", Property::G4DepartedHandles);
}

#[test]
fn changes_reported_with_the_members_before_them_break_g3() {
    first_caught("group-stale-report", Property::G3GroupChanges);
}

#[test]
fn a_closed_handle_that_never_leaves_breaks_g1_at_convergence() {
    first_caught("group-silent-close", Property::G1ViewAgreement);
}

#[test]
fn group_workload_seeds_pass_and_exercise_the_checker() {
    // A few seeds of each mode, as CI runs hundreds: every one passes, and the checker saw
    // messages routed to handles and group changes reported.
    for accelerated in [false, true] {
        let opts = Options {
            accelerated,
            ..groups()
        };
        let (mut routed, mut changes) = (0, 0);
        for seed in 0..6 {
            let r = run_seed(seed, &opts);
            assert!(
                r.passed(),
                "seed {seed}: {:?}\n    replay: {}",
                r.outcome,
                opts.replay_command(seed)
            );
            routed += r.summary.handle_messages;
            changes += r.summary.group_changes;
        }
        assert!(
            routed > 1_000 && changes > 100,
            "{routed} messages, {changes} changes"
        );
    }
}
