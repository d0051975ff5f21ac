"""The EVS trace checker (tests/netns/evs_check.py): it accepts correct traces and catches a
violation of each property it implements, on small hand-made ("doctored") traces.

The base history, three nodes: ring R1 {1,2,3} with six messages, one of them safe, and two
packed into one multicast; then node 3 is cut off: 1 and 2 go through transitional {1,2}
(delivering one more message of R1 there) to R2 {1,2}, node 3 alone to its own ring; then the
sides merge into R3 {1,2,3}. Each test breaks that history in one place.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.netns import evs_check
from tests.netns.worker import parse_payload, payload

R1 = (1, 10)
R2 = (1, 20)
R3S = (3, 20)  # node 3 alone during the partition
R3 = (1, 30)

Trace = list[dict[str, Any]]


class World:
    def __init__(self) -> None:
        self.t = 1000.0
        self.tr: dict[int, Trace] = {}

    def ev(self, who: int, ev: str, /, **kw: Any) -> None:
        self.t += 0.001
        self.tr[who].append({"t": self.t, "ev": ev, **kw})

    def start(self, node: int) -> None:
        self.tr[node] = []
        self.ev(node, "start", node=node, inc=1, pid=node, handle=1)
        self.ev(node, "group", group="load", members=[[node, 1]], joined=[[node, 1]], left=[])

    def config(
        self,
        nodes: list[int],
        kind: str,
        ring: tuple[int, int],
        members: list[int],
        left: list[int] | None = None,
        joined: list[int] | None = None,
    ) -> None:
        for n in nodes:
            self.ev(
                n,
                "config",
                kind=kind,
                ring=list(ring),
                members=members,
                left=left or [],
                joined=joined or [],
            )

    def send(self, node: int, k: int, g: str = "agreed") -> None:
        self.ev(node, "send", id=[node, 1, k], g=g, len=10)

    def deliver(
        self,
        nodes: list[int],
        sender: int,
        k: int,
        ring: tuple[int, int],
        seq: int,
        g: str = "agreed",
    ) -> None:
        for n in nodes:
            self.ev(
                n,
                "deliver",
                id=[sender, 1, k],
                sender=sender,
                ring=list(ring),
                seq=seq,
                g=g,
                ok=True,
            )

    def traces(self) -> list[Trace]:
        return [self.tr[n] for n in sorted(self.tr)]


def base() -> World:
    w = World()
    for n in (1, 2, 3):
        w.start(n)
    w.config([1, 2, 3], "regular", R1, [1, 2, 3], joined=[1, 2, 3])
    for seq in range(1, 7):
        sender, k = (seq - 1) % 3 + 1, (seq - 1) // 3 + 1
        g = "safe" if (sender, k) == (1, 2) else "agreed"
        w.send(sender, k, g)
        w.deliver([1, 2, 3], sender, k, R1, seq, g)
    # two messages packed into one multicast (seq 7)
    w.send(1, 3)
    w.send(2, 3)
    w.deliver([1, 2, 3], 1, 3, R1, 7)
    w.deliver([1, 2, 3], 2, 3, R1, 7)
    # partition: {1,2} | {3}; m1:4 (seq 8) reached 1 and 2 only
    w.send(1, 4)
    w.config([1, 2], "transitional", R2, [1, 2], left=[3])
    w.deliver([1, 2], 1, 4, R1, 8)
    w.config([1, 2], "regular", R2, [1, 2])
    w.config([3], "transitional", R3S, [3], left=[1, 2])
    w.config([3], "regular", R3S, [3])
    w.send(2, 4)
    w.deliver([1, 2], 2, 4, R2, 1)
    w.send(1, 5)
    w.deliver([1, 2], 1, 5, R2, 2)
    w.send(3, 3)
    w.deliver([3], 3, 3, R3S, 1)
    # merge
    w.config([1, 2], "transitional", R3, [1, 2])
    w.config([3], "transitional", R3, [3])
    w.config([1, 2], "regular", R3, [1, 2, 3], joined=[3])
    w.config([3], "regular", R3, [1, 2, 3], joined=[1, 2])
    for seq, (sender, k) in enumerate([(1, 6), (2, 5), (3, 4)], start=1):
        w.send(sender, k)
        w.deliver([1, 2, 3], sender, k, R3, seq)
    for n in (1, 2, 3):
        w.ev(n, "end")
    return w


def check(traces: list[Trace], **kw: Any) -> evs_check.Report:
    return evs_check.check(traces, **kw)


def props(traces: list[Trace]) -> set[str]:
    return set(check(traces).by_property())


def find(trace: Trace, **match: Any) -> int:
    """Index of the first event of ``trace`` whose fields equal ``match``."""
    for i, e in enumerate(trace):
        if all(e.get(k) == v for k, v in match.items()):
            return i
    raise KeyError(match)


# ------------------------------------------------------------------ accepting


def test_accepts_the_base_history() -> None:
    r = check(base().traces())
    assert r.violations == [], r.summary()
    assert r.ok
    assert r.stats["sent"] == 15
    assert r.stats["lost"] == 0
    assert r.stats["delivered_messages"] == 15


def test_accepts_a_crash_under_load() -> None:
    # node 3 is killed right after sending m3:3 in its lone ring: no delivery, no end line
    w = base()
    t3 = w.tr[3]
    i = find(t3, ev="send", id=[3, 1, 3])
    del t3[i + 1 :]
    # nodes 1 and 2 never merge with it: drop the merge and R3, end on R2
    for n in (1, 2):
        t = w.tr[n]
        del t[find(t, ev="config", kind="transitional", ring=list(R3)) :]
        t.append({"t": w.t + 1, "ev": "end"})
    r = check(w.traces())
    assert r.violations == [], r.summary()
    assert r.stats["crashed"] == 1
    assert r.stats["lost"] == 0


def test_accepts_a_join_mid_ring() -> None:
    # node 3's handle joins in R1 after seq 2: it is not owed seq 1 and 2
    w = base()
    t3 = w.tr[3]
    join = t3.pop(find(t3, ev="group"))
    for seq in (1, 2):
        del t3[find(t3, ev="deliver", ring=list(R1), seq=seq)]
    t3.insert(find(t3, ev="deliver", ring=list(R1), seq=3), join)
    r = check(w.traces())
    assert r.violations == [], r.summary()


def test_payload_roundtrip() -> None:
    data = payload(3, 2, 41, "MARK", 200)
    assert len(data) == 200
    assert parse_payload(data) == ([3, 2, 41], True)
    assert parse_payload(data[:-1] + b"x") == ([3, 2, 41], False)
    assert parse_payload(b"not ours") == (None, False)


# ------------------------------------------------------------------ configuration properties


def test_c1_self_inclusion() -> None:
    w = base()
    w.tr[2][find(w.tr[2], ev="config", kind="regular", ring=list(R2))]["members"] = [1]
    assert "C1" in props(w.traces())


def test_c2_unique_ids() -> None:
    w = base()
    e = w.tr[3][find(w.tr[3], ev="config", kind="regular", ring=list(R3S))]
    e["ring"] = list(R2)  # node 3 claims ring R2 with other members
    t = w.tr[3][find(w.tr[3], ev="config", kind="transitional", ring=list(R3S))]
    t["ring"] = list(R2)
    for e in w.tr[3]:
        if e["ev"] == "deliver" and e["ring"] == list(R3S):
            e["ring"] = list(R2)
    assert "C2" in props(w.traces())


def test_c3_monotone_ids() -> None:
    w = base()
    for e in w.tr[3]:
        if e.get("ring") == list(R3S):
            e["ring"] = [3, 5]  # lower than R1's seq 10
    assert "C3" in props(w.traces())


def test_c4_alternation() -> None:
    w = base()
    t = w.tr[1]
    del t[find(t, ev="config", kind="transitional", ring=list(R2))]
    assert "C4" in props(w.traces())


def test_c4_left_and_joined_lists() -> None:
    w = base()
    w.tr[1][find(w.tr[1], ev="config", kind="regular", ring=list(R3))]["joined"] = []
    assert "C4" in props(w.traces())


def test_c5_agreement_on_installs() -> None:
    # node 3 never installs R3 (nor anything after its lone ring), yet does not crash, and
    # nodes 1 and 2 never exclude it
    w = base()
    t3 = w.tr[3]
    del t3[find(t3, ev="config", kind="transitional", ring=list(R3)) :]
    t3.append({"t": w.t + 1, "ev": "end"})
    assert "C5" in props(w.traces())


def test_c5_kept_member_never_installed_the_ring() -> None:
    w = base()
    # node 1's transitional after R2 claims node 3 came along from R2 (it never installed R2)
    for n in (1, 2):
        e = w.tr[n][find(w.tr[n], ev="config", kind="transitional", ring=list(R3))]
        e["members"] = [1, 2, 3]
    assert "C5" in props(w.traces())


def test_c6_transitional_consistency() -> None:
    w = base()
    e = w.tr[2][find(w.tr[2], ev="config", kind="transitional", ring=list(R2))]
    e["members"], e["left"] = [2], [1, 3]
    assert "C6" in props(w.traces())


# ------------------------------------------------------------------ delivery properties


def test_d1_duplicate_delivery() -> None:
    w = base()
    t = w.tr[2]
    i = find(t, ev="deliver", id=[3, 1, 1])
    t.insert(i + 1, copy.deepcopy(t[i]))
    assert "D1" in props(w.traces())


def test_d1_never_sent() -> None:
    w = base()
    del w.tr[2][find(w.tr[2], ev="send", id=[2, 1, 1])]
    assert "D1" in props(w.traces())


def test_d1_payload_not_intact() -> None:
    w = base()
    w.tr[3][find(w.tr[3], ev="deliver", id=[1, 1, 1])]["ok"] = False
    assert "D1" in props(w.traces())


def test_d1_guarantee_changed() -> None:
    w = base()
    w.tr[3][find(w.tr[3], ev="deliver", id=[1, 1, 2])]["g"] = "agreed"
    assert "D1" in props(w.traces())


def test_d2_sending_configuration() -> None:
    # node 2 delivers m1:4 (ordered on R1) in regular R2 instead of the transitional
    w = base()
    t = w.tr[2]
    d = t.pop(find(t, ev="deliver", id=[1, 1, 4]))
    t.insert(find(t, ev="config", kind="regular", ring=list(R2)) + 1, d)
    assert "D2" in props(w.traces())


def test_d2_one_ring_per_message() -> None:
    w = base()
    e = w.tr[3][find(w.tr[3], ev="deliver", id=[3, 1, 4])]
    e["ring"] = list(R3S)  # delivered "on" another ring at node 3 only
    assert "D2" in props(w.traces())


def test_d3_self_delivery() -> None:
    # node 1 never delivers its own m1:6 (last message of the run) and did not crash
    w = base()
    t = w.tr[1]
    del t[find(t, ev="deliver", id=[1, 1, 6])]
    assert "D3" in props(w.traces())


def test_d3_own_messages_in_send_order() -> None:
    # node 1 sent m1:1 then m1:2 but delivers m1:2 first (everyone does, so the total order
    # alone is fine)
    w = base()
    for n in (1, 2, 3):
        for e in w.tr[n]:
            if e["ev"] == "deliver" and e["id"][:2] == [1, 1] and e["id"][2] in (1, 2):
                e["id"] = [1, 1, 3 - e["id"][2]]
                e["g"] = "safe" if e["id"][2] == 2 else "agreed"
    assert "D3" in props(w.traces())


def test_d4_failure_atomicity() -> None:
    # node 2 misses m1:4, the last message node 1 delivered in transitional {1,2}
    w = base()
    t = w.tr[2]
    del t[find(t, ev="deliver", id=[1, 1, 4])]
    assert "D4" in props(w.traces())


def test_d4_in_the_regular_configuration() -> None:
    # node 2 misses m1:3 (R1, packed seq 7) that node 1 delivered; both then go through
    # the same transitional configuration
    w = base()
    t = w.tr[2]
    del t[find(t, ev="deliver", id=[1, 1, 3])]
    assert "D4" in props(w.traces())


def test_d5_total_order() -> None:
    w = base()
    t = w.tr[2]
    a, b = find(t, ev="deliver", id=[1, 1, 1]), find(t, ev="deliver", id=[2, 1, 1])
    t[a], t[b] = t[b], t[a]
    assert "D5" in props(w.traces())


def test_d5_packed_order() -> None:
    w = base()
    t = w.tr[3]
    a, b = find(t, ev="deliver", id=[1, 1, 3]), find(t, ev="deliver", id=[2, 1, 3])
    t[a], t[b] = t[b], t[a]
    assert "D5" in props(w.traces())


def test_d5_skip_in_regular_configuration() -> None:
    w = base()
    t = w.tr[3]
    del t[find(t, ev="deliver", id=[2, 1, 1])]
    assert "D5" in props(w.traces())


def test_d5_skip_in_transitional_of_a_member() -> None:
    # in transitional {1,2}, node 2 skips m2:9 (sender 2 is a member) yet delivers m1:4 after it
    w = base()
    for n in (1, 2):
        t = w.tr[n]
        i = find(t, ev="deliver", id=[1, 1, 4])
        t.insert(
            i,
            {
                "t": t[i]["t"],
                "ev": "deliver",
                "id": [2, 1, 9],
                "sender": 2,
                "ring": list(R1),
                "seq": 8,
                "g": "agreed",
                "ok": True,
            },
        )
    w.tr[2].insert(
        find(w.tr[2], ev="send", id=[2, 1, 4]),
        {"t": w.t, "ev": "send", "id": [2, 1, 9], "g": "agreed", "len": 10},
    )
    for e in w.tr[1] + w.tr[2]:
        if e["ev"] == "deliver" and e["id"] == [1, 1, 4]:
            e["seq"] = 9
    t = w.tr[2]
    del t[find(t, ev="deliver", id=[2, 1, 9])]
    assert "D5" in props(w.traces())


def test_d6_causal_per_sender() -> None:
    # node 3's m3:1 and m3:2 carry swapped numbers: every node delivers "3:2" before "3:1",
    # consistently (so the total order alone is fine)
    w = base()
    for n in (1, 2, 3):
        for e in w.tr[n]:
            if e["ev"] in ("deliver", "send") and e["id"][:2] == [3, 1] and e["id"][2] in (1, 2):
                e["id"] = [3, 1, 3 - e["id"][2]]
    assert "D6" in props(w.traces())


def test_d7_configuration_order() -> None:
    # node 1 delivers m1:4 before the transitional configuration, node 2 after it
    w = base()
    t = w.tr[1]
    d = t.pop(find(t, ev="deliver", id=[1, 1, 4]))
    t.insert(find(t, ev="config", kind="transitional", ring=list(R2)), d)
    assert "D7" in props(w.traces())


def test_d8_safe() -> None:
    # m1:3 is safe; node 1 delivers it in R1, node 2 (kept in node 1's next transitional
    # configuration) never does
    w = base()
    for n in (1, 2, 3):
        for e in w.tr[n]:
            if e["ev"] in ("send", "deliver") and e["id"] == [1, 1, 3]:
                e["g"] = "safe"
    del w.tr[2][find(w.tr[2], ev="deliver", id=[1, 1, 3])]
    assert "D8" in props(w.traces())


def test_d9_liveness() -> None:
    # after the merge node 3 stays alone: live nodes end on different rings
    w = base()
    t3 = w.tr[3]
    del t3[find(t3, ev="config", kind="transitional", ring=list(R3)) :]
    t3.append({"t": w.t + 1, "ev": "end"})
    for n in (1, 2):
        t = w.tr[n]
        del t[find(t, ev="config", kind="transitional", ring=list(R3)) :]
        t.append({"t": w.t + 1, "ev": "end"})
    assert "D9" in props(w.traces())


def test_lost_message_of_a_staying_member() -> None:
    # m2:5 (R3) never reaches node 3, which stays with node 2 to the end
    w = base()
    t = w.tr[3]
    del t[find(t, ev="deliver", id=[2, 1, 5])]
    r = check(w.traces())
    assert r.stats["lost"] == 1, r.summary()
    assert not r.ok


def test_outsider_is_reported_apart() -> None:
    w = base()
    w.start(9)
    w.config([9], "regular", (9, 40), [9])
    w.send(9, 1)
    w.deliver([9], 9, 1, (9, 40), 1)
    w.ev(9, "end")
    r = check(w.traces(), outsiders=[9])
    assert r.violations == [], r.summary()
    assert r.stats["outsiders"] == 1


@pytest.mark.parametrize("prop", evs_check.PROPERTIES)
def test_every_property_has_a_breaking_test(prop: str) -> None:
    names = [n for n in globals() if n.startswith(f"test_{prop.lower()}_")]
    assert names, f"no test breaks {prop}"
