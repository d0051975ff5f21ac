//! The trace checker (`totem_sim::trace_check`, `totem-sim check-trace`): it accepts correct
//! traces and catches a violation of each property it implements, on small hand-made
//! ("doctored") traces in the JSON-lines form `tests/netns/worker.py` writes.
//!
//! The base history, three nodes: ring R1 {1,2,3} with six messages, one of them safe, and two
//! packed into one multicast; then node 3 is cut off: 1 and 2 go through transitional {1,2}
//! (delivering one more message of R1 there) to R2 {1,2}, node 3 alone to its own ring; then
//! the sides merge into R3 {1,2,3}. Each test breaks that history in one place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};
use totem_sim::oracle::Property;
use totem_sim::trace_check::{check, CheckOptions, Report, Trace};

const R1: [u64; 2] = [1, 10];
const R2: [u64; 2] = [1, 20];
/// Node 3 alone during the partition.
const R3S: [u64; 2] = [3, 20];
const R3: [u64; 2] = [1, 30];

struct World {
    t: f64,
    tr: BTreeMap<u64, Vec<Value>>,
}

impl World {
    fn new() -> World {
        World {
            t: 1000.0,
            tr: BTreeMap::new(),
        }
    }

    fn ev(&mut self, who: u64, mut e: Value) {
        self.t += 0.001;
        e["t"] = json!(self.t);
        self.tr.get_mut(&who).unwrap().push(e);
    }

    fn start(&mut self, node: u64) {
        self.tr.insert(node, Vec::new());
        self.ev(
            node,
            json!({"ev": "start", "node": node, "inc": 1, "pid": node, "handle": 1}),
        );
        self.ev(
            node,
            json!({"ev": "group", "group": "load", "members": [[node, 1]],
                   "joined": [[node, 1]], "left": []}),
        );
    }

    fn config(&mut self, nodes: &[u64], kind: &str, ring: [u64; 2], members: &[u64]) {
        self.config_lj(nodes, kind, ring, members, &[], &[]);
    }

    fn config_lj(
        &mut self,
        nodes: &[u64],
        kind: &str,
        ring: [u64; 2],
        members: &[u64],
        left: &[u64],
        joined: &[u64],
    ) {
        for &n in nodes {
            self.ev(
                n,
                json!({"ev": "config", "kind": kind, "ring": ring, "members": members,
                       "left": left, "joined": joined}),
            );
        }
    }

    fn send(&mut self, node: u64, k: u64, g: &str) {
        self.ev(
            node,
            json!({"ev": "send", "id": [node, 1, k], "g": g, "len": 10}),
        );
    }

    fn deliver(&mut self, nodes: &[u64], sender: u64, k: u64, ring: [u64; 2], seq: u64, g: &str) {
        for &n in nodes {
            self.ev(
                n,
                json!({"ev": "deliver", "id": [sender, 1, k], "sender": sender, "ring": ring,
                       "seq": seq, "g": g, "ok": true}),
            );
        }
    }

    fn end(&mut self, n: u64) {
        let t = self.t + 1.0;
        self.tr
            .get_mut(&n)
            .unwrap()
            .push(json!({"t": t, "ev": "end"}));
    }

    fn t(&mut self, n: u64) -> &mut Vec<Value> {
        self.tr.get_mut(&n).unwrap()
    }

    /// Each trace as the text of a JSON-lines file.
    fn jsonl(&self) -> Vec<(u64, String)> {
        self.tr
            .iter()
            .map(|(n, evs)| {
                let text: String = evs.iter().map(|e| format!("{e}\n")).collect();
                (*n, text)
            })
            .collect()
    }

    fn check_with(&self, opts: &CheckOptions) -> Report {
        let traces: Vec<Trace> = self
            .jsonl()
            .iter()
            .map(|(n, text)| Trace::parse(&format!("h{n}-1.jsonl"), text).unwrap())
            .collect();
        check(&traces, opts)
    }

    fn check(&self) -> Report {
        self.check_with(&CheckOptions::default())
    }

    fn props(&self) -> BTreeSet<&'static str> {
        self.check().by_property().keys().copied().collect()
    }

    fn write(&self, dir: &std::path::Path) {
        std::fs::create_dir_all(dir).unwrap();
        for (n, text) in self.jsonl() {
            std::fs::write(dir.join(format!("h{n}-1.jsonl")), text).unwrap();
        }
    }
}

fn base() -> World {
    let mut w = World::new();
    for n in [1, 2, 3] {
        w.start(n);
    }
    w.config_lj(&[1, 2, 3], "regular", R1, &[1, 2, 3], &[], &[1, 2, 3]);
    for seq in 1..=6 {
        let (sender, k) = ((seq - 1) % 3 + 1, (seq - 1) / 3 + 1);
        let g = if (sender, k) == (1, 2) {
            "safe"
        } else {
            "agreed"
        };
        w.send(sender, k, g);
        w.deliver(&[1, 2, 3], sender, k, R1, seq, g);
    }
    // two messages packed into one multicast (seq 7)
    w.send(1, 3, "agreed");
    w.send(2, 3, "agreed");
    w.deliver(&[1, 2, 3], 1, 3, R1, 7, "agreed");
    w.deliver(&[1, 2, 3], 2, 3, R1, 7, "agreed");
    // partition: {1,2} | {3}; m1:4 (seq 8) reached 1 and 2 only
    w.send(1, 4, "agreed");
    w.config_lj(&[1, 2], "transitional", R2, &[1, 2], &[3], &[]);
    w.deliver(&[1, 2], 1, 4, R1, 8, "agreed");
    w.config(&[1, 2], "regular", R2, &[1, 2]);
    w.config_lj(&[3], "transitional", R3S, &[3], &[1, 2], &[]);
    w.config(&[3], "regular", R3S, &[3]);
    w.send(2, 4, "agreed");
    w.deliver(&[1, 2], 2, 4, R2, 1, "agreed");
    w.send(1, 5, "agreed");
    w.deliver(&[1, 2], 1, 5, R2, 2, "agreed");
    w.send(3, 3, "agreed");
    w.deliver(&[3], 3, 3, R3S, 1, "agreed");
    // merge
    w.config(&[1, 2], "transitional", R3, &[1, 2]);
    w.config(&[3], "transitional", R3, &[3]);
    w.config_lj(&[1, 2], "regular", R3, &[1, 2, 3], &[], &[3]);
    w.config_lj(&[3], "regular", R3, &[1, 2, 3], &[], &[1, 2]);
    for (seq, (sender, k)) in [(1, 6), (2, 5), (3, 4)].into_iter().enumerate() {
        w.send(sender, k, "agreed");
        w.deliver(&[1, 2, 3], sender, k, R3, seq as u64 + 1, "agreed");
    }
    for n in [1, 2, 3] {
        w.ev(n, json!({"ev": "end"}));
    }
    w
}

/// Index of the first event of `trace` whose fields equal those of `pat`.
fn find(trace: &[Value], pat: Value) -> usize {
    let pat = pat.as_object().unwrap();
    trace
        .iter()
        .position(|e| pat.iter().all(|(k, v)| e.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no event matches {pat:?}"))
}

fn cfg(kind: &str, ring: [u64; 2]) -> Value {
    json!({"ev": "config", "kind": kind, "ring": ring})
}

fn dlv(id: [u64; 3]) -> Value {
    json!({"ev": "deliver", "id": id})
}

// ------------------------------------------------------------------ accepting

#[test]
fn accepts_the_base_history() {
    let r = base().check();
    assert!(r.violations.is_empty(), "{}", r.summary());
    assert!(r.ok());
    assert_eq!(r.stats["sent"], 15);
    assert_eq!(r.stats["lost"], 0);
    assert_eq!(r.stats["delivered_messages"], 15);
}

#[test]
fn accepts_a_crash_under_load() {
    // node 3 is killed right after sending m3:3 in its lone ring: no delivery, no end line
    let mut w = base();
    let i = find(w.t(3), json!({"ev": "send", "id": [3, 1, 3]}));
    w.t(3).truncate(i + 1);
    // nodes 1 and 2 never merge with it: drop the merge and R3, end on R2
    for n in [1, 2] {
        let i = find(w.t(n), cfg("transitional", R3));
        w.t(n).truncate(i);
        w.end(n);
    }
    let r = w.check();
    assert!(r.violations.is_empty(), "{}", r.summary());
    assert_eq!(r.stats["crashed"], 1);
    assert_eq!(r.stats["lost"], 0);
}

#[test]
fn accepts_a_join_mid_ring() {
    // node 3's handle joins in R1 after seq 2: it is not owed seq 1 and 2
    let mut w = base();
    let i = find(w.t(3), json!({"ev": "group"}));
    let join = w.t(3).remove(i);
    for seq in [1, 2] {
        let i = find(w.t(3), json!({"ev": "deliver", "ring": R1, "seq": seq}));
        w.t(3).remove(i);
    }
    let i = find(w.t(3), json!({"ev": "deliver", "ring": R1, "seq": 3}));
    w.t(3).insert(i, join);
    let r = w.check();
    assert!(r.violations.is_empty(), "{}", r.summary());
}

#[test]
fn outsider_is_reported_apart() {
    let mut w = base();
    w.start(9);
    w.config(&[9], "regular", [9, 40], &[9]);
    w.send(9, 1, "agreed");
    w.deliver(&[9], 9, 1, [9, 40], 1, "agreed");
    w.ev(9, json!({"ev": "end"}));
    let r = w.check_with(&CheckOptions {
        outsiders: vec![9],
        ..CheckOptions::default()
    });
    assert!(r.violations.is_empty(), "{}", r.summary());
    assert_eq!(r.stats["outsiders"], 1);
    // without --outsider it is a live node on its own ring: D9
    assert!(w.props().contains("D9"));
}

#[test]
fn lost_message_of_a_staying_member() {
    // m2:5 (R3) never reaches node 3, which stays with node 2 to the end
    let mut w = base();
    let i = find(w.t(3), dlv([2, 1, 5]));
    w.t(3).remove(i);
    let r = w.check();
    assert_eq!(r.stats["lost"], 1, "{}", r.summary());
    assert!(!r.ok());
}

// ------------------------------------------------------------------ breaking each property

/// Every case: a name, the property it breaks, and the broken history.
type Case = (&'static str, Property, fn() -> World);

const CASES: &[Case] = &[
    (
        "c1_self_inclusion",
        Property::C1SelfInclusion,
        c1_self_inclusion,
    ),
    ("c2_unique_ids", Property::C2UniqueIds, c2_unique_ids),
    (
        "c2_members_not_a_set",
        Property::C2UniqueIds,
        c2_members_not_a_set,
    ),
    ("c3_monotone_ids", Property::C3MonotoneIds, c3_monotone_ids),
    ("c4_alternation", Property::C4Alternation, c4_alternation),
    (
        "c4_left_and_joined_lists",
        Property::C4Alternation,
        c4_left_and_joined_lists,
    ),
    (
        "c5_agreement_on_installs",
        Property::C5AgreementOnInstalls,
        c5_agreement_on_installs,
    ),
    (
        "c5_kept_member_never_installed_the_ring",
        Property::C5AgreementOnInstalls,
        c5_kept_member_never_installed_the_ring,
    ),
    (
        "c6_transitional_consistency",
        Property::C6TransitionalConsistency,
        c6_transitional_consistency,
    ),
    (
        "d1_duplicate_delivery",
        Property::D1Integrity,
        d1_duplicate_delivery,
    ),
    ("d1_never_sent", Property::D1Integrity, d1_never_sent),
    (
        "d1_payload_not_intact",
        Property::D1Integrity,
        d1_payload_not_intact,
    ),
    (
        "d1_guarantee_changed",
        Property::D1Integrity,
        d1_guarantee_changed,
    ),
    (
        "d2_sending_configuration",
        Property::D2SendingConfiguration,
        d2_sending_configuration,
    ),
    (
        "d2_one_ring_per_message",
        Property::D2SendingConfiguration,
        d2_one_ring_per_message,
    ),
    (
        "d3_self_delivery",
        Property::D3SelfDelivery,
        d3_self_delivery,
    ),
    (
        "d3_own_messages_in_send_order",
        Property::D3SelfDelivery,
        d3_own_messages_in_send_order,
    ),
    (
        "d4_failure_atomicity",
        Property::D4FailureAtomicity,
        d4_failure_atomicity,
    ),
    (
        "d4_in_the_regular_configuration",
        Property::D4FailureAtomicity,
        d4_in_the_regular_configuration,
    ),
    ("d5_total_order", Property::D5TotalOrder, d5_total_order),
    ("d5_packed_order", Property::D5TotalOrder, d5_packed_order),
    (
        "d5_skip_in_regular_configuration",
        Property::D5TotalOrder,
        d5_skip_in_regular_configuration,
    ),
    (
        "d5_skip_in_transitional_of_a_member",
        Property::D5TotalOrder,
        d5_skip_in_transitional_of_a_member,
    ),
    (
        "d6_causal_per_sender",
        Property::D6Causal,
        d6_causal_per_sender,
    ),
    (
        "d7_configuration_order",
        Property::D7ConfigurationOrder,
        d7_configuration_order,
    ),
    ("d8_safe", Property::D8Safe, d8_safe),
    ("d9_liveness", Property::D9Liveness, d9_liveness),
];

fn c1_self_inclusion() -> World {
    let mut w = base();
    let i = find(w.t(2), cfg("regular", R2));
    w.t(2)[i]["members"] = json!([1]);
    w
}

fn c2_unique_ids() -> World {
    // node 3 claims ring R2 with other members
    let mut w = base();
    let i = find(w.t(3), cfg("regular", R3S));
    w.t(3)[i]["ring"] = json!(R2);
    let i = find(w.t(3), cfg("transitional", R3S));
    w.t(3)[i]["ring"] = json!(R2);
    for e in w.t(3).iter_mut() {
        if e["ev"] == "deliver" && e["ring"] == json!(R3S) {
            e["ring"] = json!(R2);
        }
    }
    w
}

fn c2_members_not_a_set() -> World {
    let mut w = base();
    for n in [1, 2, 3] {
        let i = find(w.t(n), cfg("regular", R3));
        w.t(n)[i]["members"] = json!([1, 3, 2]);
    }
    w
}

fn c3_monotone_ids() -> World {
    let mut w = base();
    for e in w.t(3).iter_mut() {
        if e.get("ring") == Some(&json!(R3S)) {
            e["ring"] = json!([3, 5]); // lower than R1's seq 10
        }
    }
    w
}

fn c4_alternation() -> World {
    let mut w = base();
    let i = find(w.t(1), cfg("transitional", R2));
    w.t(1).remove(i);
    w
}

fn c4_left_and_joined_lists() -> World {
    let mut w = base();
    let i = find(w.t(1), cfg("regular", R3));
    w.t(1)[i]["joined"] = json!([]);
    w
}

fn c5_agreement_on_installs() -> World {
    // node 3 never installs R3 (nor anything after its lone ring), yet does not crash, and
    // nodes 1 and 2 never exclude it
    let mut w = base();
    let i = find(w.t(3), cfg("transitional", R3));
    w.t(3).truncate(i);
    w.end(3);
    w
}

fn c5_kept_member_never_installed_the_ring() -> World {
    // the transitional configuration after R2 claims node 3 came along from R2 (it never
    // installed R2)
    let mut w = base();
    for n in [1, 2] {
        let i = find(w.t(n), cfg("transitional", R3));
        w.t(n)[i]["members"] = json!([1, 2, 3]);
    }
    w
}

fn c6_transitional_consistency() -> World {
    let mut w = base();
    let i = find(w.t(2), cfg("transitional", R2));
    w.t(2)[i]["members"] = json!([2]);
    w.t(2)[i]["left"] = json!([1, 3]);
    w
}

fn d1_duplicate_delivery() -> World {
    let mut w = base();
    let i = find(w.t(2), dlv([3, 1, 1]));
    let e = w.t(2)[i].clone();
    w.t(2).insert(i + 1, e);
    w
}

fn d1_never_sent() -> World {
    let mut w = base();
    let i = find(w.t(2), json!({"ev": "send", "id": [2, 1, 1]}));
    w.t(2).remove(i);
    w
}

fn d1_payload_not_intact() -> World {
    let mut w = base();
    let i = find(w.t(3), dlv([1, 1, 1]));
    w.t(3)[i]["ok"] = json!(false);
    w
}

fn d1_guarantee_changed() -> World {
    let mut w = base();
    let i = find(w.t(3), dlv([1, 1, 2]));
    w.t(3)[i]["g"] = json!("agreed");
    w
}

fn d2_sending_configuration() -> World {
    // node 2 delivers m1:4 (ordered on R1) in regular R2 instead of the transitional
    let mut w = base();
    let i = find(w.t(2), dlv([1, 1, 4]));
    let d = w.t(2).remove(i);
    let i = find(w.t(2), cfg("regular", R2));
    w.t(2).insert(i + 1, d);
    w
}

fn d2_one_ring_per_message() -> World {
    // delivered "on" another ring at node 3 only
    let mut w = base();
    let i = find(w.t(3), dlv([3, 1, 4]));
    w.t(3)[i]["ring"] = json!(R3S);
    w
}

fn d3_self_delivery() -> World {
    // node 1 never delivers its own m1:6 (last message of the run) and did not crash
    let mut w = base();
    let i = find(w.t(1), dlv([1, 1, 6]));
    w.t(1).remove(i);
    w
}

fn d3_own_messages_in_send_order() -> World {
    // node 1 sent m1:1 then m1:2 but delivers m1:2 first (everyone does, so the total order
    // alone is fine)
    let mut w = base();
    for n in [1, 2, 3] {
        for e in w.t(n).iter_mut() {
            if e["ev"] == "deliver" && e["id"][0] == 1 && e["id"][1] == 1 {
                let k = e["id"][2].as_u64().unwrap();
                if k == 1 || k == 2 {
                    e["id"] = json!([1, 1, 3 - k]);
                    e["g"] = json!(if 3 - k == 2 { "safe" } else { "agreed" });
                }
            }
        }
    }
    w
}

fn d4_failure_atomicity() -> World {
    // node 2 misses m1:4, the last message node 1 delivered in transitional {1,2}
    let mut w = base();
    let i = find(w.t(2), dlv([1, 1, 4]));
    w.t(2).remove(i);
    w
}

fn d4_in_the_regular_configuration() -> World {
    // node 2 misses m1:3 (R1, packed seq 7) that node 1 delivered; both then go through the
    // same transitional configuration
    let mut w = base();
    let i = find(w.t(2), dlv([1, 1, 3]));
    w.t(2).remove(i);
    w
}

fn d5_total_order() -> World {
    let mut w = base();
    let a = find(w.t(2), dlv([1, 1, 1]));
    let b = find(w.t(2), dlv([2, 1, 1]));
    w.t(2).swap(a, b);
    w
}

fn d5_packed_order() -> World {
    let mut w = base();
    let a = find(w.t(3), dlv([1, 1, 3]));
    let b = find(w.t(3), dlv([2, 1, 3]));
    w.t(3).swap(a, b);
    w
}

fn d5_skip_in_regular_configuration() -> World {
    let mut w = base();
    let i = find(w.t(3), dlv([2, 1, 1]));
    w.t(3).remove(i);
    w
}

fn d5_skip_in_transitional_of_a_member() -> World {
    // in transitional {1,2}, node 2 skips m2:9 (sender 2 is a member) yet delivers m1:4 after it
    let mut w = base();
    for n in [1, 2] {
        let i = find(w.t(n), dlv([1, 1, 4]));
        let t = w.t(n)[i]["t"].clone();
        w.t(n).insert(
            i,
            json!({"t": t, "ev": "deliver", "id": [2, 1, 9], "sender": 2, "ring": R1,
                   "seq": 8, "g": "agreed", "ok": true}),
        );
    }
    let i = find(w.t(2), json!({"ev": "send", "id": [2, 1, 4]}));
    let t = w.t;
    w.t(2).insert(
        i,
        json!({"t": t, "ev": "send", "id": [2, 1, 9], "g": "agreed", "len": 10}),
    );
    for n in [1, 2] {
        for e in w.t(n).iter_mut() {
            if e["ev"] == "deliver" && e["id"] == json!([1, 1, 4]) {
                e["seq"] = json!(9);
            }
        }
    }
    let i = find(w.t(2), dlv([2, 1, 9]));
    w.t(2).remove(i);
    w
}

fn d6_causal_per_sender() -> World {
    // node 3's m3:1 and m3:2 carry swapped numbers: every node delivers "3:2" before "3:1",
    // consistently (so the total order alone is fine)
    let mut w = base();
    for n in [1, 2, 3] {
        for e in w.t(n).iter_mut() {
            if (e["ev"] == "deliver" || e["ev"] == "send") && e["id"][0] == 3 && e["id"][1] == 1 {
                let k = e["id"][2].as_u64().unwrap();
                if k == 1 || k == 2 {
                    e["id"] = json!([3, 1, 3 - k]);
                }
            }
        }
    }
    w
}

fn d7_configuration_order() -> World {
    // node 1 delivers m1:4 before the transitional configuration, node 2 after it
    let mut w = base();
    let i = find(w.t(1), dlv([1, 1, 4]));
    let d = w.t(1).remove(i);
    let i = find(w.t(1), cfg("transitional", R2));
    w.t(1).insert(i, d);
    w
}

fn d8_safe() -> World {
    // m1:3 is safe; node 1 delivers it in R1, node 2 (kept in node 1's next transitional
    // configuration) never does
    let mut w = base();
    for n in [1, 2, 3] {
        for e in w.t(n).iter_mut() {
            if (e["ev"] == "send" || e["ev"] == "deliver") && e["id"] == json!([1, 1, 3]) {
                e["g"] = json!("safe");
            }
        }
    }
    let i = find(w.t(2), dlv([1, 1, 3]));
    w.t(2).remove(i);
    w
}

fn d9_liveness() -> World {
    // after the merge node 3 stays alone: live nodes end on different rings
    let mut w = base();
    for n in [1, 2, 3] {
        let i = find(w.t(n), cfg("transitional", R3));
        w.t(n).truncate(i);
        w.end(n);
    }
    w
}

fn assert_breaks(name: &str) {
    let (_, p, make) = CASES.iter().find(|c| c.0 == name).unwrap();
    let r = make().check();
    assert!(
        r.violations.iter().any(|v| v.property == *p),
        "{name}: expected {} in\n{}",
        p.code(),
        r.summary()
    );
    assert!(!r.ok());
}

macro_rules! breaking_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                assert_breaks(stringify!($name));
            }
        )*
        /// Every case in CASES has its own #[test] above.
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

mod breaks {
    use super::assert_breaks;
    breaking_tests!(
        c1_self_inclusion,
        c2_unique_ids,
        c2_members_not_a_set,
        c3_monotone_ids,
        c4_alternation,
        c4_left_and_joined_lists,
        c5_agreement_on_installs,
        c5_kept_member_never_installed_the_ring,
        c6_transitional_consistency,
        d1_duplicate_delivery,
        d1_never_sent,
        d1_payload_not_intact,
        d1_guarantee_changed,
        d2_sending_configuration,
        d2_one_ring_per_message,
        d3_self_delivery,
        d3_own_messages_in_send_order,
        d4_failure_atomicity,
        d4_in_the_regular_configuration,
        d5_total_order,
        d5_packed_order,
        d5_skip_in_regular_configuration,
        d5_skip_in_transitional_of_a_member,
        d6_causal_per_sender,
        d7_configuration_order,
        d8_safe,
        d9_liveness,
    );

    #[test]
    fn every_case_has_a_test() {
        let cases: Vec<&str> = super::CASES.iter().map(|c| c.0).collect();
        assert_eq!(cases, TESTED);
    }
}

#[test]
fn every_property_has_a_breaking_test() {
    // the trace checker checks C1-C6 and D1-D9; the S-properties need the simulator's network
    for p in &Property::ALL[..15] {
        let n = CASES.iter().filter(|c| c.1 == *p).count();
        assert!(n > 0, "no test breaks {}", p.code());
        assert!(CASES
            .iter()
            .filter(|c| c.1 == *p)
            .all(|c| c.0.starts_with(&p.code().to_lowercase())));
    }
}

// ------------------------------------------------------------------ bad input

fn parse_err(text: &str) -> String {
    Trace::parse("x.jsonl", text).unwrap_err().to_string()
}

#[test]
fn malformed_lines_are_errors_with_file_line_and_field() {
    let start = r#"{"t":1,"ev":"start","node":1,"inc":1,"handle":1}"#;
    let e = parse_err(&format!("{start}\nnot json\n{{\"t\":2,\"ev\":\"end\"}}\n"));
    assert!(e.starts_with("x.jsonl:2: not JSON"), "{e}");
    let e = parse_err(&format!(
        "{start}\n{{\"t\":2,\"ev\":\"config\",\"kind\":\"regular\",\"ring\":[1,2],\"members\":[1],\"left\":[]}}\n"
    ));
    assert_eq!(e, "x.jsonl:2: missing field \"joined\"");
    let e = parse_err(&format!(
        "{start}\n{{\"t\":2,\"ev\":\"deliver\",\"id\":[1,1],\"sender\":1,\"ring\":[1,2],\"seq\":1}}\n"
    ));
    assert!(e.starts_with("x.jsonl:2: field \"id\""), "{e}");
    let e = parse_err(&format!(
        "{start}\n{{\"t\":2,\"ev\":\"config\",\"kind\":\"odd\",\"ring\":[1,2],\"members\":[1],\"left\":[],\"joined\":[]}}\n"
    ));
    assert!(e.starts_with("x.jsonl:2: field \"kind\""), "{e}");
    let e = parse_err("[1, 2]\n");
    assert!(e.starts_with("x.jsonl:1: expected a JSON object"), "{e}");
    let e = parse_err("{\"ev\":\"end\"}\n");
    assert_eq!(e, "x.jsonl:1: missing field \"t\"");
    let e = parse_err("{\"t\":1,\"ev\":\"stats\"}\n");
    assert_eq!(e, "x.jsonl: no \"start\" line");
    let e = parse_err(&format!(
        "{start}\n{{\"t\":2,\"ev\":\"send\",\"id\":[1,1,-3]}}\n"
    ));
    assert!(e.contains("non-negative integer"), "{e}");
}

#[test]
fn a_last_line_cut_by_a_crash_is_dropped() {
    let start = r#"{"t":1,"ev":"start","node":1,"inc":1,"handle":1}"#;
    let t = Trace::parse("x.jsonl", &format!("{start}\n{{\"t\":2,\"ev\":\"sen")).unwrap();
    assert_eq!(t.name(), "x.jsonl");
    // the same cut line followed by a newline is not a crash's doing
    assert!(Trace::parse("x.jsonl", &format!("{start}\n{{\"t\":2,\"ev\":\"sen\n")).is_err());
    // an empty trace: a process that never started, not counted
    let r = check(
        &[Trace::parse("e.jsonl", "").unwrap()],
        &CheckOptions::default(),
    );
    assert_eq!(r.stats["processes"], 0);
}

// ------------------------------------------------------------------ the command

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trace-check-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_totem-sim"))
        .arg("check-trace")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn command_exit_status_and_json() {
    let clean = tmpdir("clean");
    base().write(&clean);
    let (rc, out, _) = run(&[clean.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("violations 0"), "{out}");

    let broken = tmpdir("broken");
    d8_safe().write(&broken);
    let (rc, out, _) = run(&["--json", broken.to_str().unwrap()]);
    assert_eq!(rc, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    let d8 = v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["property"] == "D8")
        .expect("a D8 violation");
    assert_eq!(d8["process"], "n2#1");
    assert!(d8["detail"].as_str().unwrap().contains("(1, 1, 3)"));
    assert_eq!(v["by_property"]["D8"], 1);

    // faults: the time from each to the next regular configuration
    let faults = clean.join("faults.json");
    std::fs::write(&faults, r#"[{"t": 1000.05, "kind": "partition"}]"#).unwrap();
    let files: Vec<String> = (1..=3)
        .map(|n| clean.join(format!("h{n}-1.jsonl")).display().to_string())
        .collect();
    let mut args = vec!["--json", "--faults", faults.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    let (rc, out, err) = run(&args);
    assert_eq!(rc, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["fault_times"][0]["kind"], "partition");
    assert_eq!(v["fault_times"][0]["nodes_reconfigured"], 3);
    assert_eq!(v["fault_times"][0]["bound_s"], 2.2);

    let bad = tmpdir("bad");
    base().write(&bad);
    let f = bad.join("h2-1.jsonl");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.insert_str(0, "{\"t\": 1, \"ev\": \"config\"}\n");
    std::fs::write(&f, text).unwrap();
    let (rc, out, err) = run(&[bad.to_str().unwrap()]);
    assert_eq!(rc, 2, "{out}");
    assert!(
        err.contains("h2-1.jsonl:1: missing field \"kind\""),
        "{err}"
    );

    let (rc, _, err) = run(&["/nonexistent/trace.jsonl"]);
    assert_eq!(rc, 2);
    assert!(err.contains("cannot read"), "{err}");
    let (rc, _, _) = run(&[]);
    assert_eq!(rc, 2);

    for d in [clean, broken, bad] {
        let _ = std::fs::remove_dir_all(d);
    }
}
