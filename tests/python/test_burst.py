"""No cliff after a heal: the delivery buffer, from the public API.

A consumer that keeps up with the cluster's steady rate is not closed by the burst that
follows a partition: when the ring re-forms with every node holding a full send budget, the
node keeps what a handle's queue cannot hold in its delivery buffer (``delivery_buffer_bytes``,
"auto" by default). Also: ``OverflowedError.own_messages``, ``delivery_buffer_bytes=0`` (the
behaviour without a buffer), precise errors for bad values, and the buffer's statistics.
"""

from __future__ import annotations

import struct
import threading
import time

import pytest

import evs
from evs.testing import LocalCluster
from support import WAIT, messages, wait_members, wait_until

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.timeout(300)]

SIZE = 64
BATCH = 100  # the steady reader takes at most this many events ...
PAUSE = 0.01  # ... every this many seconds: about 10,000 events a second


class SteadyReader(threading.Thread):
    """Reads ``h`` at a steady pace until ``want`` messages came or its stream ends."""

    def __init__(self, h: evs.Handle) -> None:
        super().__init__(daemon=True)
        self.h = h
        self.want = 0  # set once the senders are done
        self.got: list[tuple[int, int]] = []
        self.end: BaseException | None = None
        self.closed = False  # h.closed once done (its node still running)

    def run(self) -> None:
        try:
            self.read()
        finally:
            self.closed = self.h.closed

    def read(self) -> None:
        deadline = time.monotonic() + 240
        while not (self.want and len(self.got) >= self.want):
            if time.monotonic() > deadline:
                self.end = TimeoutError("reader timed out")
                return
            try:
                events = self.h.recv_many(BATCH, timeout=0.1)
            except evs.TimeoutError:
                events = []
            except evs.EvsError as e:
                self.end = e
                return
            for ev in events:
                if isinstance(ev, evs.Message):
                    self.got.append((ev.sender, struct.unpack_from("<Q", ev.data)[0]))
            time.sleep(PAUSE)


def fill_budget(h: evs.Handle, start: int) -> int:
    """Multicasts numbered messages until the node's send budget is full; the next number."""
    n = start
    data = bytearray(SIZE)
    while True:
        struct.pack_into("<Q", data, 0, n)
        try:
            h.mcast_groups("g", data, timeout=0)
        except evs.TryAgainError:
            return n
        n += 1


def burst_after_heal(**settings: object) -> tuple[list[SteadyReader], list[int], list[object]]:
    """Three nodes; every node cut off from the others until each is in the membership
    protocol with a full send budget; then healed. Returns the readers (finished), what each
    node sent, and each node's largest delivery buffer."""
    # Token loss is noticed after a second; the membership protocol waits for the others far
    # longer than the test needs, so the ring re-forms whole once healed.
    with LocalCluster(3, token=1000, consensus=30000, **settings) as c:
        readers = [SteadyReader(c.handle(i, groups="g")) for i in range(3)]
        senders = [c.handle(i) for i in range(3)]
        wait_members([r.h for r in readers], "g")
        ring_before = c[0].ring_id()
        for r in readers:
            r.start()
        for i in range(3):
            c[i].isolate_from(n.node_id for n in c if n is not c[i])
        sent = [fill_budget(h, 0) for h in senders]
        wait_until(lambda: all(n.stats()["state"] != "operational" for n in c), "the token loss")
        sent = [fill_budget(h, n) for h, n in zip(senders, sent)]
        for n in c:
            st = n.stats()
            used, cap = st["send_budget_used"], st["send_budget_cap"]
            assert isinstance(used, int) and isinstance(cap, int)
            assert used + 2 * SIZE > cap, f"budget not full at the merge: {used} of {cap}"
        for r in readers:
            r.want = sum(sent)
        for n in c:
            n.isolate_from([])
        for r in readers:
            r.join(timeout=240)
        c.wait_for_ring([1, 2, 3])
        assert c[0].ring_id() != ring_before, "the ring re-formed"
        return readers, sent, [n.stats()["delivery_buffered_peak"] for n in c]


def test_a_steady_consumer_survives_the_burst_after_a_heal() -> None:
    readers, sent, peaks = burst_after_heal()
    total = sum(sent)
    assert total > 2 * 16384, f"the burst must exceed a default queue: {total}"
    for r in readers:
        assert r.end is None, f"reader on node {r.h.node_id} ended: {r.end!r}"
        assert not r.closed
        assert len(r.got) == total
        for s, n in enumerate(sent, start=1):  # every sender's messages, in its order
            assert [m for sender, m in r.got if sender == s] == list(range(n))
        assert r.got == readers[0].got  # one agreed order everywhere
    # The queues alone could not have held it.
    assert all(isinstance(p, int) and p > 0 for p in peaks), peaks


def test_without_a_delivery_buffer_the_same_burst_closes_the_consumer() -> None:
    readers, _, _ = burst_after_heal(delivery_buffer_bytes=0)
    ended = [r.end for r in readers if r.end is not None]
    assert ended and all(isinstance(e, evs.OverflowedError) for e in ended), ended
    assert not any(e.own_messages for e in ended if isinstance(e, evs.OverflowedError))


def test_a_handle_that_floods_itself_is_closed_by_its_own_messages() -> None:
    with LocalCluster(1, delivery_buffer_bytes=4096) as c:
        h = c.handle(0, groups="g", queue_capacity=20)
        with pytest.raises(evs.OverflowedError) as info:
            for i in range(1_000_000):  # without ever reading
                h.mcast_joined(struct.pack("<Q", i), timeout=WAIT)
        e = info.value
        assert e.own_messages is True
        assert "own undelivered messages" in str(e)
        assert h.closed and h.joined == ()
        # What was queued and buffered before the overflow is still read, in order.
        got: list[int] = []
        with pytest.raises(evs.OverflowedError) as again:
            while True:
                ev = h.recv(timeout=WAIT)
                if isinstance(ev, evs.Message):
                    got.append(struct.unpack("<Q", ev.data)[0])
        assert again.value.own_messages is True
        assert got == list(range(len(got))) and len(got) > 20


def test_a_slow_consumer_of_others_is_not_told_it_was_its_own_messages() -> None:
    with LocalCluster(1, delivery_buffer_bytes=0) as c:
        sender = c.handle(0)
        slow = c.handle(0, groups="g", queue_capacity=8)
        wait_members([slow], "g")
        for i in range(40):
            sender.mcast_groups("g", b"%d" % i, timeout=WAIT)
        wait_until(lambda: slow.closed, "the overflow")
        with pytest.raises(evs.OverflowedError) as info:
            while True:
                slow.recv(timeout=WAIT)
        assert info.value.own_messages is False
        assert "consumer too slow" in str(info.value)


def test_a_full_queue_waits_in_the_buffer_and_is_read_in_order(node: evs.Node) -> None:
    slow = evs.Handle(node, groups="buf", queue_capacity=10)
    sender = evs.Handle(node)
    wait_members([slow], "buf")
    for i in range(500):
        sender.mcast_groups("buf", b"%d" % i, timeout=WAIT)
    wait_until(lambda: node.stats()["delivery_buffered"] > 0, "events buffered")
    assert slow.queue_len() == 10 and not slow.closed
    assert [m.data for m in messages(slow, 500)] == [b"%d" % i for i in range(500)]
    st = node.stats()
    assert st["delivery_buffered"] == 0 and st["handles_overflowed"] == 0
    peak = st["delivery_buffered_peak"]
    assert isinstance(peak, int) and peak > 0
    slow.close()
    sender.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "must not be negative, got -1"),
        (1.5, 'expected "auto" or a number of bytes (0: no buffer), got the float 1.5'),
        ("lots", 'expected "auto" or a number of bytes (0: no buffer), got the string "lots"'),
        (True, 'expected "auto" or a number of bytes (0: no buffer), got the boolean true'),
    ],
)
def test_bad_delivery_buffer_values_raise_precise_errors(value: object, message: str) -> None:
    with pytest.raises(evs.ConfigError) as info:
        evs.Node(bind="127.0.0.1", crypto="none", delivery_buffer_bytes=value)
    assert info.value.key == "delivery_buffer_bytes"
    assert message in str(info.value)


def test_delivery_buffer_values_are_accepted_and_shown() -> None:
    for value, shown in (("auto", '"auto"'), (0, "0"), (1 << 20, "1048576"), ("4096", "4096")):
        with LocalCluster(1, delivery_buffer_bytes=value) as c:
            assert f"delivery_buffer_bytes = {shown}" in c[0].config_toml
            limit = c[0].stats()["delivery_buffer_limit"]
            if value == "auto":
                assert limit == 2 * (1 << 20) + 50 * 1400  # a ring of one, so far
            else:
                assert limit == int(value)
