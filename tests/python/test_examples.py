"""The examples, exercised for real on local clusters.

kvstore: every replica's state is checked against a model, the agreed stream itself as an
observer handle joined before any replica saw it, replayed: same items, and a version equal to
the number of updates (an update lost or applied twice shows there). chat: every bot's
transcript is the same and complete. Both scripts also run as a user would run them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import evs
from evs.testing import LocalCluster

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples"))

import chat  # noqa: E402
from kvstore import KVStore, Member  # noqa: E402

pytestmark = pytest.mark.timeout(120)

WAIT = 60.0  # generous: a loaded 2-core machine; no test relies on anything being fast


def _group() -> str:
    return f"kv-{uuid.uuid4().hex[:8]}"


class Writers:
    """One thread per store writing until stopped: overwrites and deletes on a few shared
    keys, so the final state depends on the order; every value written is unique."""

    def __init__(self, stores: list[KVStore]) -> None:
        self.stop = threading.Event()
        self.done = [0] * len(stores)
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._write, args=(i, s), daemon=True)
            for i, s in enumerate(stores)
        ]
        for t in self.threads:
            t.start()

    def _write(self, i: int, store: KVStore) -> None:
        try:
            n = 0
            while not self.stop.is_set():
                key = f"k{n % 5}"
                if n % 4 == 3:
                    store.delete(key)
                else:
                    store.set(key, f"{store.me}-{n}")
                n += 1
                self.done[i] = n
        except BaseException as e:
            self.errors.append(e)

    def wait_for(self, each: int) -> None:
        """Until every writer has done ``each`` more writes."""
        base = list(self.done)
        _until(lambda: all(d - b >= each for d, b in zip(self.done, base)) or bool(self.errors))

    def finish(self) -> int:
        self.stop.set()
        for t in self.threads:
            t.join(WAIT)
        assert not self.errors, self.errors
        return sum(self.done)


def _until(cond: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def model(observer: evs.Handle) -> tuple[dict[str, Any], int]:
    """The store the agreed stream defines: the observer marks the end of the stream with a
    message of its own, then replays every update delivered before it."""
    end = uuid.uuid4().hex
    observer.mcast_joined(json.dumps({"op": "nop", "end": end}).encode())
    data: dict[str, Any] = {}
    updates = 0
    seen_values: set[str] = set()
    for ev in observer.events(timeout=WAIT):
        if not isinstance(ev, evs.Message):
            continue
        msg = json.loads(ev.data)
        if msg.get("end") == end:
            return data, updates
        if msg["op"] == "set":
            assert msg["v"] not in seen_values, f"a write was multicast twice: {msg}"
            seen_values.add(msg["v"])
            data[msg["k"]] = msg["v"]
            updates += 1
        elif msg["op"] == "del":
            data.pop(msg["k"], None)
            updates += 1
    raise AssertionError("the observer never delivered its end marker")


def assert_matches_model(stores: list[KVStore], observer: evs.Handle, writes: int) -> None:
    for s in stores:
        s.barrier(WAIT)  # every write that returned is applied at s
    data, updates = model(observer)
    assert updates == writes, "the stream holds the writes that returned, each once"
    for s in stores:
        assert s.synced
        assert (s.items(), s.version) == (data, updates), f"replica {s.me} differs from the model"


def watch(cluster: LocalCluster, i: int, group: str) -> evs.Handle:
    """The model's observer: a handle on node ``i`` joined to ``group``, returned once its join
    is delivered, so that it sees every write made after. It joins after the first replica
    started the store: a store's group holds replicas only (see kvstore's docstring)."""
    h = cluster.handle(i, groups=group)
    me = (h.node_id, h.id)
    assert any(isinstance(ev, evs.GroupChange) and me in ev.joined for ev in h.events(WAIT))
    return h


def start(cluster: LocalCluster, i: int, group: str, cls: type[KVStore] = KVStore) -> KVStore:
    store = cls(cluster.handle(i), group)
    assert store.wait_synced(WAIT), f"replica on node {i + 1} never got the state"
    return store


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(3) as c:
        yield c


def test_replicas_converge_under_concurrent_writes_from_every_node(cluster: LocalCluster) -> None:
    group = _group()
    first = start(cluster, 0, group)
    observer = watch(cluster, 0, group)
    stores = [first, *(start(cluster, i, group) for i in (1, 2))]
    writers = Writers(stores)
    writers.wait_for(40)
    assert_matches_model(stores, observer, writers.finish())


class SlowToAnswer(KVStore):
    """Answers requests late, so that updates are delivered between a joiner's request and
    its snapshot and the joiner must buffer them."""

    def _send_snapshot(self, to: Member, nonce: str) -> None:
        time.sleep(0.3)
        super()._send_snapshot(to, nonce)


class CountsBuffer(KVStore):
    """Records how many events it had buffered when its snapshot arrived."""

    buffered = -1

    def _install(self, snapshot: Any) -> None:
        self.buffered = len(self._buffer)
        super()._install(snapshot)


def _late_joiners(cluster: LocalCluster, joiner: type[KVStore]) -> None:
    group = _group()
    first = start(cluster, 0, group, SlowToAnswer)
    observer = watch(cluster, 0, group)
    stores = [first, start(cluster, 1, group)]
    writers = Writers(stores)
    writers.wait_for(5)
    # Two new replicas join at once (one on node 3, a second one on node 1)
    # while both writers go on.
    late = [joiner(cluster.handle(i), group) for i in (2, 0)]
    for s in late:
        assert s.wait_synced(WAIT)
    writers.wait_for(20)  # and later updates reach them
    assert_matches_model(stores + late, observer, writers.finish())
    for s in late:
        assert isinstance(s, CountsBuffer)
        assert s.buffered > 0, "no update fell between request and snapshot: test too weak"


def test_late_joiners_get_the_state_and_every_later_update_once(cluster: LocalCluster) -> None:
    _late_joiners(cluster, CountsBuffer)


class DropsBuffer(CountsBuffer):
    """A broken joiner: installs the snapshot but forgets what it buffered."""

    def _install(self, snapshot: Any) -> None:
        self.buffered = len(self._buffer)
        self._buffer = []
        KVStore._install(self, snapshot)


def test_the_checks_catch_a_joiner_that_loses_updates(cluster: LocalCluster) -> None:
    with pytest.raises(AssertionError, match="differs from the model"):
        _late_joiners(cluster, DropsBuffer)


def test_a_restarted_node_gets_the_state(cluster: LocalCluster) -> None:
    group = _group()
    first = start(cluster, 0, group)
    observer = watch(cluster, 0, group)
    stores = [first, *(start(cluster, i, group) for i in (1, 2))]
    writers = Writers(stores[:2])
    writers.wait_for(5)
    cluster.stop(2)
    cluster.wait_for_ring([1, 2], timeout=WAIT)
    writers.wait_for(10)
    cluster.restart(2)
    cluster.wait_for_ring(timeout=WAIT)
    # The store's documented precondition: the node sees the group's members before the
    # replica joins (otherwise it would find the group empty and start one of its own).
    _until(lambda: len(cluster[2].group_view().get(group.encode(), [])) == 3)
    back = start(cluster, 2, group)
    writers.wait_for(10)
    assert_matches_model([*stores[:2], back], observer, writers.finish())


class LeavesWhenAsked(KVStore):
    """The replica that must answer the next request leaves first: it closes its handle
    (``close``), or waits until the test stops its node (``stop``) or cuts its node off the
    others (``partition``, after which it does send, to no one else)."""

    mode = "close"
    armed = False
    asked = threading.Event()
    release = threading.Event()

    def _send_snapshot(self, to: Member, nonce: str) -> None:
        if not self.armed:
            return super()._send_snapshot(to, nonce)
        self.asked.set()
        if self.mode == "close":
            self.handle.close()
            return
        self.release.wait(WAIT)
        super()._send_snapshot(to, nonce)


class CountsRequests(KVStore):
    requests = 0

    def _send_request(self) -> None:
        self.requests += 1
        super()._send_request()


@pytest.mark.parametrize("mode", ["close", "stop", "partition"])
def test_another_member_takes_over_when_the_snapshot_sender_leaves(
    cluster: LocalCluster, mode: str
) -> None:
    group = _group()
    LeavesWhenAsked.asked, LeavesWhenAsked.release = threading.Event(), threading.Event()
    first = start(cluster, 0, group, LeavesWhenAsked)
    observer = watch(cluster, 1, group)
    assert isinstance(first, LeavesWhenAsked)
    second = start(cluster, 1, group)  # answered by `first`, still well
    writers = Writers([second])
    writers.wait_for(5)
    first.mode, first.armed = mode, True
    joiner = CountsRequests(cluster.handle(2), group)
    assert LeavesWhenAsked.asked.wait(WAIT), "the lowest replica was never asked"
    if mode == "stop":
        cluster.stop(0)
    elif mode == "partition":
        cluster.partition([0], [1, 2])
        _until(lambda: all(cluster[i].membership()[1] == [2, 3] for i in (1, 2)))
    LeavesWhenAsked.release.set()
    assert joiner.wait_synced(WAIT), "nobody took over the transfer"
    assert joiner.requests >= 2, "the joiner saw the sender leave and asked again"
    writers.wait_for(10)
    assert_matches_model([second, joiner], observer, writers.finish())


def test_chat_bots_all_see_the_same_transcript(cluster: LocalCluster) -> None:
    transcripts = asyncio.run(chat.run_room(list(cluster), lines_per_bot=6, timeout=WAIT))
    assert len(transcripts) == 3
    assert all(t == transcripts[0] for t in transcripts)
    for bot in ("bot1", "bot2", "bot3"):
        own = [line for line in transcripts[0] if line.startswith(bot + ":")]
        assert own == [f"{bot}: message {k} from {bot}" for k in range(6)] + [f"{bot}: /bye"]


@pytest.mark.parametrize("script", ["kvstore.py", "chat.py", "locks.py", "quickstart.py"])
def test_example_runs_as_a_script(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
