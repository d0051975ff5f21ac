"""The lock service's state machine, fed synthetic streams by a toy ring (no network).

:class:`ToyRing` plays the part of the EVS layer for a few :class:`LockService` s: components
of nodes, each with one agreed stream (per-sender FIFO, random interleaving), configuration
changes shaped like the real ones (transitional, then regular), partitions, merges and crashes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evs
from evs.locks import LockEvent, LockService, check_histories
from evs.testing import LocalCluster

GROUP = b"locks"


class FakeEndpoint:
    """Collects what a service multicasts; the toy ring delivers it."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.outbox: list[bytes] = []

    def mcast_groups(self, groups: list[bytes], data: bytes) -> None:
        assert groups == [GROUP]
        self.outbox.append(data)

    def recv_many(self, max_events: int, timeout: float | None) -> list[evs.Event]:
        raise evs.TimeoutError("the toy ring delivers by itself")


class NoQuorumRule(LockService):
    """An injected bug: every configuration counts as primary."""

    def has_quorum(self, members: Sequence[int]) -> bool:
        return True


class ToyRing:
    def __init__(
        self, n: int, seed: int = 0, service: type[LockService] = LockService, start: bool = True
    ) -> None:
        self.rng = random.Random(seed)
        self.n = n
        self.endpoints = {i: FakeEndpoint(i) for i in range(1, n + 1)}
        self.services = {i: service(self.endpoints[i], n) for i in self.endpoints}
        self.ring_seq = 0
        self.component: dict[int, tuple[evs.RingId, tuple[int, ...]]] = {}  # node -> its ring
        self.msg_seq: dict[evs.RingId, int] = {}
        self.dead: set[int] = set()
        self.log: dict[int, list[evs.Event]] = {i: [] for i in self.endpoints}
        self.not_joined: set[int] = set()  # handles whose join is not delivered yet
        if start:
            self.reconfigure([list(self.endpoints)])

    # -- delivery -------------------------------------------------------------------------

    def deliver(self, node: int, ev: evs.Event) -> None:
        self.log[node].append(ev)
        self.services[node].process(ev)

    def alive(self) -> list[int]:
        return sorted(set(self.endpoints) - self.dead)

    def rings(self) -> dict[evs.RingId, tuple[int, ...]]:
        return {ring: members for ring, members in self.component.values()}

    def step(self) -> bool:
        """Delivers one pending message (a random sender's oldest) in one component."""
        pending = [i for i in self.alive() if i in self.component and self.endpoints[i].outbox]
        if not pending:
            return False
        sender = self.rng.choice(pending)
        ring, members = self.component[sender]
        data = self.endpoints[sender].outbox.pop(0)
        self.msg_seq[ring] = self.msg_seq.get(ring, 0) + 1
        msg = evs.Message(sender, [GROUP], data, ring, self.msg_seq[ring])
        for m in members:
            if m not in self.not_joined:
                self.deliver(m, msg)
        return True

    def run(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.step():
                return
        raise AssertionError("the toy ring did not settle")

    # -- configuration changes ------------------------------------------------------------

    def reconfigure(self, sides: Iterable[Iterable[int]]) -> None:
        """Each side (its alive nodes) becomes a ring of its own. Messages still pending in an
        ending ring are lost or delivered in the transitional configuration, at random."""
        before = dict(self.component)
        for m in self.dead:
            self.component.pop(m, None)
        for side in sides:
            members = tuple(sorted(m for m in side if m not in self.dead))
            if not members:
                continue
            self.ring_seq += 1
            ring = evs.RingId(members[0], self.ring_seq)
            from_ring: dict[evs.RingId, list[int]] = {}
            for m in members:
                if m in before:
                    from_ring.setdefault(before[m][0], []).append(m)
            for old_ring, trans in from_ring.items():
                self._end_ring(old_ring, tuple(trans), before[trans[0]][1])
            for m in members:
                self.component[m] = (ring, members)
            for m in members:
                old = before.get(m)
                joined = [x for x in members if old is None or x not in old[1]]
                self.deliver(m, evs.ConfigChange(evs.REGULAR, ring, members, joined=joined))

    def _end_ring(
        self, old_ring: evs.RingId, trans: tuple[int, ...], old_members: Sequence[int]
    ) -> None:
        left = [m for m in old_members if m not in trans]
        pending = [
            (m, data) for m in trans for data in self.endpoints[m].outbox if self.rng.random() < 0.5
        ]
        for m in trans:
            self.endpoints[m].outbox.clear()
            self.deliver(m, evs.ConfigChange(evs.TRANSITIONAL, old_ring, trans, left=left))
        for sender, data in pending:
            self.msg_seq[old_ring] = self.msg_seq.get(old_ring, 0) + 1
            msg = evs.Message(sender, [GROUP], data, old_ring, self.msg_seq[old_ring])
            for m in trans:
                self.deliver(m, msg)

    def partition(self, *sides: Sequence[int]) -> None:
        self.reconfigure(sides)

    def merge(self) -> None:
        self.reconfigure([self.alive()])

    def kill(self, node: int) -> None:
        self.dead.add(node)
        self.endpoints[node].outbox.clear()
        self.reconfigure([self.component[node][1]])

    # -- what the nodes recorded ----------------------------------------------------------

    def problems(self) -> list[str]:
        return check_histories(
            {i: s.history for i, s in self.services.items()},
            {i: s.primaries for i, s in self.services.items()},
        )

    def grants(self, node: int) -> list[tuple[str, int]]:
        return [(e.lock, e.holder) for e in self.services[node].history if e.kind == "grant"]


def request_all(ring: ToyRing, lock: str, nodes: Iterable[int]) -> None:
    for i in nodes:
        ring.services[i].request(lock)


# -- the state machine, scenario by scenario ------------------------------------------------


def test_every_node_grants_in_the_same_order() -> None:
    ring = ToyRing(3, seed=1)
    ring.run()
    assert all(s.status == "primary" for s in ring.services.values())
    request_all(ring, "printer", [1, 2, 3])
    request_all(ring, "scanner", [3, 2, 1])
    ring.run()
    tables = [s.queues for s in ring.services.values()]
    assert tables[0] == tables[1] == tables[2]
    assert sorted(tables[0]["printer"]) == [1, 2, 3]
    for _ in range(2):
        for lock in ("printer", "scanner"):
            holder = ring.services[1].holder(lock)
            assert holder is not None
            ring.services[holder].release(lock)
        ring.run()
    assert ring.grants(1) == ring.grants(2) == ring.grants(3)
    assert len(ring.grants(1)) == 6
    assert [e for e in ring.services[1].history] == ring.services[2].history
    assert ring.problems() == []


def test_same_stream_same_history() -> None:
    ring = ToyRing(3, seed=7)
    ring.run()
    request_all(ring, "a", [2, 1, 3])
    ring.run()
    ring.services[ring.services[1].holder("a") or 0].release("a")
    ring.kill(3)
    ring.run()
    # Node 1's stream, replayed into a fresh service, gives the same grants and table.
    replay = LockService(FakeEndpoint(1), 3)
    for ev in ring.log[1]:
        replay.process(ev)
    assert replay.history == ring.services[1].history
    assert replay.queues == ring.services[1].queues


def test_a_dead_nodes_locks_go_to_the_next_waiter_at_the_same_point_everywhere() -> None:
    ring = ToyRing(3, seed=2)
    ring.run()
    request_all(ring, "printer", [1, 2, 3])
    ring.run()
    queue = ring.services[1].queues["printer"]
    victim, successor = queue[0], queue[1]
    ring.kill(victim)
    ring.run()
    survivors = [i for i in (1, 2, 3) if i != victim]
    last = [ring.services[i].history[-2:] for i in survivors]
    assert last[0] == last[1]
    release, grant = last[0]
    assert (release.kind, release.holder) == ("release", victim)
    assert (grant.kind, grant.holder) == ("grant", successor)
    assert release.position == grant.position
    assert all(ring.services[i].holder("printer") == successor for i in survivors)
    assert ring.problems() == []


def test_the_minority_grants_nothing_the_majority_goes_on() -> None:
    ring = ToyRing(5, seed=3)
    ring.run()
    request_all(ring, "printer", [4, 1, 2])
    ring.run()
    ring.partition([1, 2, 3], [4, 5])
    ring.run()
    minority, majority = (ring.services[4], ring.services[5]), ring.services[1]
    assert all(s.status == "no quorum" and not s.holds("printer") for s in minority)
    assert majority.status == "primary" and majority.holder("printer") == 1  # 4 left
    before = [len(s.history) for s in minority]
    request_all(ring, "plotter", [4, 5, 3])
    ring.run()
    assert [len(s.history) for s in minority] == before
    assert majority.holder("plotter") == 3
    assert ring.problems() == []


def test_a_merge_adopts_the_primary_state_and_reconciles() -> None:
    ring = ToyRing(3, seed=4)
    ring.run()
    request_all(ring, "scanner", [3, 1])
    ring.run()
    ring.partition([1, 2], [3])
    ring.services[3].request("plotter")  # no quorum: waits for the merge
    ring.services[1].request("plotter")
    ring.services[2].request("scanner")
    ring.run()
    assert ring.services[1].queues == {"scanner": [1, 2], "plotter": [1]}
    assert ring.services[3].queues == {"scanner": [3, 1]}  # frozen, out of date
    ring.merge()
    ring.run()
    tables = [s.queues for s in ring.services.values()]
    assert tables[0] == tables[1] == tables[2]
    # The majority's table won; node 3's wishes were queued again behind it.
    assert tables[0]["scanner"] == [1, 2, 3]
    assert tables[0]["plotter"] == [1, 3]
    assert ring.problems() == []


def test_a_late_service_asks_for_a_new_exchange() -> None:
    """A handle receives nothing sent to its group before its own join is delivered: the
    service that missed the others' STATE asks for a new exchange when it sees its join."""
    ring = ToyRing(3, seed=5, start=False)
    ring.not_joined = {3}
    ring.reconfigure([[1, 2, 3]])
    ring.run()  # nodes 1 and 2 complete with node 3's STATE; node 3 got none of theirs
    assert [s.status for s in ring.services.values()] == ["primary", "primary", "syncing"]
    ring.not_joined.clear()
    ring.deliver(3, evs.GroupChange(GROUP, [(1, 1), (2, 1), (3, 1)], joined=[(3, 1)]))
    ring.run()
    assert all(s.status == "primary" for s in ring.services.values())
    for node in (3, 2):
        ring.services[node].request("a")
        ring.run()
    assert all(s.queues == {"a": [3, 2]} for s in ring.services.values())


def test_bad_messages_are_ignored() -> None:
    ring = ToyRing(3, seed=6)
    ring.run()
    for data in (b"\xff\xfe", b"STATE {", b"STATE []", b"REQUEST", b"HELLO x", b'STATE {"ring":1}'):
        ring.endpoints[2].outbox.append(data)
    ring.services[2].request("a")
    ring.run()
    assert all(s.queues == {"a": [2]} for s in ring.services.values())


def test_on_grant_runs_for_every_grant() -> None:
    ring = ToyRing(2, seed=10)
    seen: list[LockEvent] = []
    ring.services[1].on_grant = seen.append
    ring.run()
    for node in (2, 1):
        ring.services[node].request("a")
        ring.run()
    ring.services[2].release("a")
    ring.run()
    assert [(e.lock, e.holder) for e in seen] == [("a", 2), ("a", 1)]
    with pytest.raises(ValueError):
        ring.services[1].request("")


def test_over_a_real_ring() -> None:
    """Three nodes on loopback, one service each, driven by pump()."""
    with LocalCluster(3, token=500) as cluster:
        services = [LockService(cluster.handle(i), 3) for i in range(3)]
        deadline = time.monotonic() + 30
        while not all(s.status == "primary" and len(s.members) == 3 for s in services):
            assert time.monotonic() < deadline, services
            for s in services:
                s.pump(timeout=0.01)
        for s in services:
            s.request("printer")
        while not all(len(s.queues.get("printer", [])) == 3 for s in services):
            assert time.monotonic() < deadline, services
            for s in services:
                s.pump(timeout=0.01)
        assert services[0].queues == services[1].queues == services[2].queues
        holder = services[0].queues["printer"][0]
        assert [s.holds("printer") for s in services] == [i + 1 == holder for i in range(3)]
        assert services[0].history == services[1].history == services[2].history


# -- the checker, shown able to fail --------------------------------------------------------


def test_the_checker_catches_a_service_without_the_primary_rule() -> None:
    ring = ToyRing(3, seed=8, service=NoQuorumRule)
    ring.run()
    ring.partition([1, 2], [3])
    ring.run()
    request_all(ring, "printer", [1, 3])
    ring.run()
    assert ring.services[1].holds("printer") and ring.services[3].holds("printer")
    problems = ring.problems()
    assert any("two primary components" in p for p in problems), problems


def test_the_checker_catches_nodes_that_disagree() -> None:
    ring = ToyRing(3, seed=9)
    ring.run()
    request_all(ring, "a", [1, 2])
    ring.run()
    assert ring.problems() == []
    e = ring.services[2].history[-1]
    ring.services[2].history[-1] = LockEvent(e.kind, e.lock, 3, e.ring, e.position)
    assert any("disagree" in p for p in ring.problems())


# -- random runs ----------------------------------------------------------------------------

op = st.one_of(
    st.tuples(st.just("request"), st.integers(1, 5), st.sampled_from("abc")),
    st.tuples(st.just("release"), st.integers(1, 5), st.sampled_from("abc")),
    st.tuples(st.just("step"), st.integers(1, 20), st.just("")),
    st.tuples(st.just("partition"), st.integers(1, 31), st.just("")),
    st.tuples(st.just("merge"), st.just(0), st.just("")),
    st.tuples(st.just("kill"), st.integers(1, 5), st.just("")),
)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32), ops=st.lists(op, max_size=40))
def test_random_runs_keep_the_histories_consistent(
    seed: int, ops: list[tuple[str, int, str]]
) -> None:
    ring = ToyRing(5, seed=seed)
    for kind, arg, lock in ops:
        alive = ring.alive()
        if kind == "request" and arg in alive:
            ring.services[arg].request(lock)
        elif kind == "release" and arg in alive:
            ring.services[arg].release(lock)
        elif kind == "step":
            for _ in range(arg):
                ring.step()
        elif kind == "partition":
            side = [m for m in alive if arg >> (m - 1) & 1]
            ring.partition(side, [m for m in alive if m not in side])
        elif kind == "merge":
            ring.merge()
        elif kind == "kill" and arg in alive and len(alive) > 3:
            ring.kill(arg)
        for lock in "abc":  # mutual exclusion at every step
            holders = [i for i in ring.alive() if ring.services[i].holds(lock)]
            assert len(holders) <= 1, (lock, holders)
    ring.merge()
    ring.run()
    assert ring.problems() == []
    alive = [ring.services[i] for i in ring.alive()]
    assert all(s.status == "primary" for s in alive)
    assert all(s.queues == alive[0].queues for s in alive)
    for s in alive:  # every wish is in the table, and nothing else
        mine = {lock for lock, q in s.queues.items() if s.node_id in q}
        assert mine == s.wanted


@pytest.mark.parametrize("size", [1, 2, 4])
def test_quorum_is_a_strict_majority(size: int) -> None:
    s = LockService(FakeEndpoint(1), size)
    assert s.has_quorum(list(range(size // 2 + 1)))
    assert not s.has_quorum(list(range(size // 2)))
