"""evs.Handle: every method, every error path, events, dispatch, fileno."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import evs
from evs.testing import LocalCluster
from support import WAIT, messages, next_message, recv_until, wait_members, wait_until

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.timeout(120)]


def joined_event(h: evs.Handle, group: bytes) -> Callable[[evs.Event], bool]:
    """True for the GroupChange announcing ``h``'s own join of ``group``."""
    me = (h.node_id, h.id)
    return lambda ev: isinstance(ev, evs.GroupChange) and ev.group == group and me in ev.joined


def test_identity_joined_and_repr(cluster: LocalCluster) -> None:
    h = cluster.handle(1, groups=[b"zeta", "alpha"])
    assert h.node_id == 2
    assert h.id >= 1
    assert h.node is cluster[1]
    assert h.joined == (b"alpha", b"zeta")  # sorted, joins in flight included
    assert not h.closed
    assert repr(h) == f"<evs.Handle {h.id} of node 2 groups=[b'alpha', b'zeta']>"
    other = cluster.handle(1)
    assert other.id != h.id
    h.close()
    assert h.closed
    assert repr(h).endswith(" closed>")


def test_str_and_bytes_names_are_the_same_group(cluster: LocalCluster) -> None:
    a = cluster.handle(0, groups="grüße")  # str: UTF-8
    b = cluster.handle(2, groups=["grüße".encode()])
    wait_members([a, b], "grüße")
    wait_members([a, b], "grüße".encode())
    a.mcast_joined(b"hello")
    for h in (a, b):
        m = next_message(h)
        assert (m.sender, m.sender_handle, m.data) == (1, a.id, b"hello")
        assert m.groups == ("grüße".encode(),)
        assert m.guarantee == evs.AGREED
    # bytearray and memoryview payloads and group names are accepted too
    name = bytearray("grüße".encode())
    a.mcast_groups([name], memoryview(b"view"), evs.SAFE)  # type: ignore[list-item]
    for h in (a, b):
        m = next_message(h)
        assert (m.data, m.guarantee, len(m)) == (b"view", evs.SAFE, 4)


def test_membership_and_group_membership(cluster: LocalCluster) -> None:
    h = cluster.handle(2)
    assert h.membership() == evs.Membership(3, (1, 2, 3))
    assert h.membership().local_node_id == 3
    assert h.group_membership("nobody") == []
    members = [cluster.handle(i, groups="g") for i in range(3)]
    wait_members(members, "g")
    want = sorted((m.node_id, m.id) for m in members)
    assert h.group_membership("g") == want
    assert h.group_membership(b"g") == want


def test_join_leave_and_group_changes(cluster: LocalCluster) -> None:
    a = cluster.handle(0)
    b = cluster.handle(1, groups="room")
    recv_until(b, joined_event(b, b"room"))
    a.join("room")
    ev = recv_until(b, lambda e: isinstance(e, evs.GroupChange))[-1]
    assert isinstance(ev, evs.GroupChange)
    assert ev.group == b"room"
    assert ev.joined == ((1, a.id),)
    assert ev.members == tuple(sorted([(1, a.id), (2, b.id)]))
    a.join("room")  # already joined: nothing happens
    a.leave(["room"])
    assert a.joined == ()
    ev = recv_until(b, lambda e: isinstance(e, evs.GroupChange))[-1]
    assert isinstance(ev, evs.GroupChange)
    assert ev.left == ((1, a.id),)
    assert ev.members == ((2, b.id),)
    # the leaver hears its own leave last: join, then leave, in its own stream
    own = [e for e in recv_until(a, lambda e: isinstance(e, evs.GroupChange) and bool(e.left))]
    changes = [e for e in own if isinstance(e, evs.GroupChange)]
    assert [c.joined for c in changes] == [((1, a.id),), ()]
    assert changes[-1].left == ((1, a.id),)


def test_leave_unjoined_is_not_joined_and_leaves_nothing(node: evs.Node) -> None:
    h = evs.Handle(node, groups="a")
    with pytest.raises(evs.NotJoinedError):
        h.leave("b")
    with pytest.raises(evs.NotJoinedError):
        h.leave(["a", "b"])  # all or nothing
    assert h.joined == (b"a",)
    h.leave("a")
    with pytest.raises(evs.NotJoinedError):
        h.leave("a")


def test_mcast_joined_without_a_group_is_not_joined(node: evs.Node) -> None:
    h = evs.Handle(node)
    with pytest.raises(evs.NotJoinedError):
        h.mcast_joined(b"to nobody")
    h.join("x")
    h.leave("x")
    with pytest.raises(evs.NotJoinedError):
        h.mcast_joined(b"to nobody")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h: h.join(5), "groups must be a group name or an iterable of names, not int"),
        (lambda h: h.join([b"ok", 5]), "a group name must be str or bytes, not int"),
        (
            lambda h: h.leave(None),
            "groups must be a group name or an iterable of names, not NoneType",
        ),
        (lambda h: h.mcast_groups([1.5], b"x"), "a group name must be str or bytes, not float"),
        (lambda h: h.group_membership(7), "a group name must be str or bytes, not int"),
        (
            lambda h: h.mcast_groups("g", "text"),
            "data must be bytes-like (bytes, bytearray, memoryview), not str",
        ),
        (
            lambda h: h.mcast_joined(12),
            "data must be bytes-like (bytes, bytearray, memoryview), not int",
        ),
        (lambda h: h.recv("1"), "timeout must be a number of seconds or None, not str"),
        (lambda h: h.recv(True), "timeout must be a number of seconds or None, not bool"),
        (
            lambda h: h.mcast_groups("g", b"x", timeout="soon"),
            "timeout must be a number of seconds or None, not str",
        ),
        (lambda h: h.mcast_groups("g", b"x", 1), "is not an instance of 'Guarantee'"),
    ],
)
def test_bad_argument_types_raise_type_error(
    node: evs.Node, call: Callable[[evs.Handle], object], message: str
) -> None:
    h = evs.Handle(node)
    with pytest.raises(TypeError) as info:
        call(h)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"node": "node"}, TypeError, "node must be an evs.Node or None, not str"),
        ({"on_message": 5}, TypeError, "on_message must be callable or None, not int"),
        ({"on_config_change": "x"}, TypeError, "on_config_change must be callable or None"),
        ({"on_group_change": 1.0}, TypeError, "on_group_change must be callable or None"),
        ({"queue_capacity": 0}, ValueError, "queue_capacity must be a positive int, got 0"),
        ({"queue_capacity": True}, ValueError, "queue_capacity must be a positive int"),
        ({"queue_capacity": 2.5}, ValueError, "queue_capacity must be a positive int"),
        ({"groups": 3}, TypeError, "groups must be a group name or an iterable of names"),
    ],
)
def test_bad_constructor_arguments(
    node: evs.Node, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    kwargs.setdefault("node", node)
    with pytest.raises(error) as info:
        evs.Handle(**kwargs)
    assert message in str(info.value)


def test_bad_values_raise_value_error(node: evs.Node) -> None:
    h = evs.Handle(node)
    with pytest.raises(ValueError, match="non-negative"):
        h.recv(-1)
    with pytest.raises(ValueError, match="non-negative"):
        h.recv(float("nan"))
    with pytest.raises(ValueError, match="max_events must be a positive int"):
        h.recv_many(0)
    with pytest.raises(ValueError, match="unknown dispatch flags"):
        h.dispatch(99)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", b"", "x" * 33, b"y" * 33, "é" * 17])
def test_invalid_group_names(node: evs.Node, name: str | bytes) -> None:
    h = evs.Handle(node)
    calls: list[Callable[[], object]] = [
        lambda: h.join(name),
        lambda: h.join(["fine", name]),
        lambda: h.leave(name),
        lambda: h.mcast_groups(name, b"x"),
        lambda: h.group_membership(name),
    ]
    for call in calls:
        with pytest.raises(evs.InvalidGroupError) as info:
            call()
        assert isinstance(info.value, ValueError)
    assert h.joined == ()  # nothing of a refused list was joined


def test_group_name_limits(node: evs.Node) -> None:
    h = evs.Handle(node)
    h.join("x" * evs.MAX_GROUP_LEN)  # 32 bytes is fine
    with pytest.raises(evs.InvalidGroupError):
        h.join([])  # no group at all
    with pytest.raises(evs.InvalidGroupError):
        h.mcast_groups([], b"x")
    with pytest.raises(evs.InvalidGroupError, match="255"):
        h.join([f"g{i}" for i in range(evs.MAX_GROUPS)])  # one too many with the first


def test_message_too_large() -> None:
    with LocalCluster(1, max_message_size=256, send_queue_bytes=4096) as c:
        h = c.handle(0, groups="g")
        with pytest.raises(evs.MessageTooLargeError) as info:
            h.mcast_joined(b"x" * 300)
        assert isinstance(info.value, ValueError)
        assert "256" in str(info.value)
        with pytest.raises(evs.MessageTooLargeError):
            h.mcast_groups("g", b"x" * 257, timeout=None)
        h.mcast_joined(b"x" * 256)  # the setting is the payload; the header is extra
        assert next_message(h).data == b"x" * 256


def test_max_message_size_is_the_largest_payload_whatever_the_groups() -> None:
    # The default (1 MiB) carries a 1 MiB payload, and so does any setting, even with the
    # largest group header (255 names of 32 bytes); one byte more is refused, naming both.
    with LocalCluster(1) as c:
        h = c.handle(0, groups="g")
        h.mcast_joined(b"m" * (1 << 20))
        assert next_message(h).data == b"m" * (1 << 20)
    with LocalCluster(1, max_message_size=4096) as c:
        h = c.handle(0, groups="g")
        h.mcast_joined(b"x" * 4096)
        assert next_message(h).data == b"x" * 4096
        groups = [f"{i:032d}" for i in range(evs.MAX_GROUPS - 1)] + ["g"]
        h.mcast_groups(groups, b"y" * 4096)
        m = next_message(h)
        assert (m.data, len(m.groups)) == (b"y" * 4096, evs.MAX_GROUPS)
        for send in (
            lambda: h.mcast_joined(b"x" * 4097),
            lambda: h.mcast_groups(groups, b"x" * 4097),
        ):
            with pytest.raises(evs.MessageTooLargeError) as info:
                send()
            assert "4097" in str(info.value) and "4096" in str(info.value), info.value


CLOSED_CALLS: list[tuple[str, Callable[[evs.Handle], object]]] = [
    ("join", lambda h: h.join("g")),
    ("leave", lambda h: h.leave("g")),
    ("mcast_joined", lambda h: h.mcast_joined(b"x")),
    ("mcast_joined timeout=0", lambda h: h.mcast_joined(b"x", timeout=0)),
    ("mcast_groups", lambda h: h.mcast_groups("g", b"x")),
    ("membership", lambda h: h.membership()),
    ("group_membership", lambda h: h.group_membership("g")),
    ("recv", lambda h: h.recv(timeout=None)),
    ("recv timeout", lambda h: h.recv(timeout=1)),
    ("try_recv", lambda h: h.try_recv()),
    ("recv_many", lambda h: h.recv_many(10, timeout=None)),
    ("dispatch ONE", lambda h: h.dispatch(evs.DISPATCH_ONE, timeout=1)),
    ("dispatch ONE_NONBLOCKING", lambda h: h.dispatch(evs.DISPATCH_ONE_NONBLOCKING)),
    ("dispatch ALL", lambda h: h.dispatch(evs.DISPATCH_ALL)),
    ("dispatch BLOCKING", lambda h: h.dispatch(evs.DISPATCH_BLOCKING)),
]


@pytest.mark.parametrize(("what", "call"), CLOSED_CALLS, ids=[c[0] for c in CLOSED_CALLS])
@pytest.mark.parametrize("with_groups", [False, True])
def test_closed_handle_raises_on_every_call(
    node: evs.Node, what: str, call: Callable[[evs.Handle], object], with_groups: bool
) -> None:
    h = evs.Handle(node, groups="g" if with_groups else None)
    h.close()
    h.close()  # idempotent
    with pytest.raises(evs.HandleClosedError):
        call(h)
    # What stays usable: identity, introspection, iteration ends, and the eventfd is
    # readable so that a selector wakes up and its recv raises.
    assert h.closed
    assert h.joined == ()  # its groups were left for it
    assert h.queue_len() == 0
    assert h.joined == ()
    assert list(h.events(timeout=1)) == []
    # Its file descriptor is released, as a socket's is: fileno() refuses.
    with pytest.raises(evs.HandleClosedError):
        h.fileno()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_close_releases_the_file_descriptor(node: evs.Node) -> None:
    # Without waiting for garbage collection: the handles stay referenced here.
    before = _open_fds()
    handles = [evs.Handle(node, groups="g") for _ in range(40)]
    for h in handles[:20]:
        h.fileno()  # handed out or not, the descriptor goes
    assert _open_fds() >= before + 40
    for h in handles:
        h.close()
    # At once, not when the node's thread gets round to the closes.
    assert _open_fds() <= before
    assert all(h.closed for h in handles)


@pytest.mark.parametrize(("what", "call"), CLOSED_CALLS, ids=[c[0] for c in CLOSED_CALLS])
def test_node_shutdown_closes_handles_after_queued_events(
    what: str, call: Callable[[evs.Handle], object]
) -> None:
    with LocalCluster(1) as c:
        h = c.handle(0, groups="g")
        wait_members([h], "g")
        h.mcast_joined(b"before")
        wait_until(lambda: h.queue_len() >= 3, "config, group change and message queued")
        c[0].shutdown()
        # What was queued before the end is still read, in order; then the end.
        assert [type(e) for e in h.recv_many(10, timeout=5)] == [
            evs.ConfigChange,
            evs.GroupChange,
            evs.Message,
        ]
        if what == "dispatch BLOCKING":
            assert call(h) == 0  # its normal end: the handle was closed
            return
        with pytest.raises(evs.HandleClosedError):
            call(h)


@pytest.fixture
def unbuffered_cluster() -> Iterator[LocalCluster]:
    """Three nodes without delivery buffers: a full queue closes its handle at once."""
    with LocalCluster(3, delivery_buffer_bytes=0) as c:
        yield c


def test_overflow_closes_only_the_slow_handle(unbuffered_cluster: LocalCluster) -> None:
    cluster = unbuffered_cluster
    sender = cluster.handle(0, groups="flood")
    slow = cluster.handle(1, groups="flood", queue_capacity=8)
    fast = cluster.handle(1, groups="flood")
    remote = cluster.handle(2, groups="flood")
    wait_members([sender, slow, fast, remote], "flood")
    queued_before = slow.queue_len()
    n = 40
    for i in range(n):
        sender.mcast_joined(b"%d" % i, timeout=WAIT)
    wait_until(lambda: cluster[1].stats()["handles_overflowed"] == 1, "the overflow")
    # The slow handle keeps everything queued before the overflow, in order, then ends.
    got: list[evs.Event] = []
    with pytest.raises(evs.OverflowedError) as info:
        while True:
            got.append(slow.recv(timeout=WAIT))
    assert isinstance(info.value, evs.HandleClosedError)
    assert len(got) == 8
    before = [e.data for e in got if isinstance(e, evs.Message)]
    assert before == [b"%d" % i for i in range(len(before))]
    assert len(before) == 8 - queued_before
    with pytest.raises(evs.OverflowedError):
        slow.mcast_joined(b"late")
    # Every other handle gets all n messages, and sees the slow one leave the group.
    # (The slow handle's leave is ordered somewhere among the messages.)
    for h in (fast, remote, sender):
        datas: list[bytes] = []
        lefts: list[tuple[tuple[int, int], ...]] = []
        deadline = time.monotonic() + WAIT
        while len(datas) < n or not lefts:
            ev = h.recv(timeout=max(deadline - time.monotonic(), 0.0))
            if isinstance(ev, evs.Message):
                datas.append(ev.data)
            elif isinstance(ev, evs.GroupChange) and ev.left:
                lefts.append(ev.left)
        assert datas == [b"%d" % i for i in range(n)]
        assert lefts == [((2, slow.id),)]
    assert cluster[1].stats()["handles_overflowed"] == 1
    # The ring carries on.
    fast.mcast_joined(b"after")
    assert next_message(remote).data == b"after"


def test_send_backpressure_try_again_and_timeout() -> None:
    # A send budget of one message: while one is in flight, the next must wait.
    with LocalCluster(2, max_message_size=1000, send_queue_bytes=1000) as c:
        h = c.handle(0, groups="bp")
        peer = c.handle(1, groups="bp")
        wait_members([h, peer], "bp")
        saw_try_again = saw_timeout = False
        sent = 0
        for _ in range(20000):
            try:
                h.mcast_joined(b"x" * 900, timeout=0)
                sent += 1
            except evs.TryAgainError:
                saw_try_again = True
                break
        assert saw_try_again, "a send budget of one message never ran out"
        for _ in range(20000):
            try:
                h.mcast_groups("bp", b"y" * 900, timeout=1e-6)
                sent += 1
            except evs.TimeoutError as e:
                assert isinstance(e, TimeoutError)  # builtins.TimeoutError too
                assert isinstance(e, evs.EvsError)
                saw_timeout = True
                break
        assert saw_timeout
        # Waiting (None) always gets through, and nothing accepted was lost.
        h.mcast_joined(b"last", timeout=None)
        sent += 1
        got = messages(peer, sent)
        assert got[-1].data == b"last"
        assert len(got) == sent


def test_events_are_frozen_readable_and_hashable(cluster: LocalCluster) -> None:
    a = cluster.handle(0, groups="ev")
    b = cluster.handle(1, groups="ev")
    wait_members([a, b], "ev")
    a.mcast_joined(b"payload\n\x00", evs.SAFE)
    ma, mb = next_message(a), next_message(b)
    assert ma == mb and hash(ma) == hash(mb)  # the same delivery everywhere
    assert len({ma, mb}) == 1
    r = repr(ma)
    assert r.startswith("Message(sender=1, sender_handle=")
    assert "groups=(b'ev',)" in r and r"data=b'payload\n\x00'" in r and "guarantee=SAFE" in r
    assert ma.ring_id == cluster[0].ring_id()
    assert repr(ma.ring_id) == f"RingId(rep={ma.ring_id.rep}, seq={ma.ring_id.seq})"
    for ev, attr in ((ma, "data"), (ma, "sender"), (ma.ring_id, "seq")):
        with pytest.raises(AttributeError):
            setattr(ev, attr, 1)
    with pytest.raises((AttributeError, TypeError)):
        ma.extra = 1  # type: ignore[attr-defined]

    cc = evs.ConfigChange(evs.REGULAR, evs.RingId(1, 4), [1, 2], joined=[2])
    assert cc == evs.ConfigChange(evs.REGULAR, evs.RingId(1, 4), (1, 2), [], (2,))
    assert cc != evs.ConfigChange(evs.TRANSITIONAL, evs.RingId(1, 4), [1, 2], joined=[2])
    assert hash(cc) == hash(evs.ConfigChange(evs.REGULAR, evs.RingId(1, 4), [1, 2], [], [2]))
    assert repr(cc) == "ConfigChange(REGULAR, ring_id=1.4, members=[1, 2], left=[], joined=[2])"
    with pytest.raises(AttributeError):
        cc.members = (3,)  # type: ignore[misc]
    gc = evs.GroupChange(b"g", [(1, 1), (2, 1)], joined=[(2, 1)])
    assert repr(gc) == "GroupChange(group=b'g', members=[(1, 1), (2, 1)], joined=[(2, 1)], left=[])"
    assert gc == evs.GroupChange(b"g", [(1, 1), (2, 1)], [(2, 1)], [])
    assert {gc, evs.GroupChange(b"g", [(1, 1), (2, 1)], [(2, 1)])} == {gc}
    with pytest.raises(AttributeError):
        gc.group = b"h"  # type: ignore[misc]
    m = evs.Message(1, [b"g"], b"d", evs.RingId(1, 4), 9)
    assert m == evs.Message(1, [b"g"], b"d", evs.RingId(1, 4), 9, evs.AGREED, 0)
    assert m != evs.Message(1, [b"g"], b"e", evs.RingId(1, 4), 9)
    assert evs.RingId(1, 4) < evs.RingId(2, 5) and evs.RingId(9, 4) < evs.RingId(1, 5)
    assert {evs.RingId(1, 4): 1}[evs.RingId(1, 4)] == 1
    with pytest.raises(AttributeError):
        evs.AGREED.value = 3  # type: ignore[attr-defined]
    assert int(evs.SAFE) == 1 and int(evs.AGREED) == 0
    assert int(evs.TRANSITIONAL) == 0 and int(evs.REGULAR) == 1


def test_recv_try_recv_recv_many_iteration(node: evs.Node) -> None:
    h = evs.Handle(node, groups="it")
    recv_until(h, joined_event(h, b"it"))
    assert h.try_recv() is None
    with pytest.raises(evs.TimeoutError):
        h.recv(timeout=0.05)
    with pytest.raises(evs.TimeoutError):
        h.recv_many(5, timeout=0)
    for i in range(6):
        h.mcast_joined(b"%d" % i)
    wait_until(lambda: h.queue_len() == 6, "six messages queued")
    first = h.recv(timeout=1)
    assert isinstance(first, evs.Message) and first.data == b"0"
    second = h.try_recv()
    assert isinstance(second, evs.Message) and second.data == b"1"
    batch = h.recv_many(2)
    assert [e.data for e in batch if isinstance(e, evs.Message)] == [b"2", b"3"]
    rest = []
    for ev in h:  # __iter__: never ends by itself, so break
        assert isinstance(ev, evs.Message)
        rest.append(ev.data)
        if len(rest) == 2:
            break
    assert rest == [b"4", b"5"]
    assert h.queue_len() == 0
    assert list(h.events(timeout=0.05)) == []


def test_fileno_is_readable_exactly_while_events_are_queued(node: evs.Node) -> None:
    h = evs.Handle(node, groups="fd")
    recv_until(h, joined_event(h, b"fd"))
    assert select.select([h.fileno()], [], [], 0)[0] == []
    for i in range(5):
        h.mcast_joined(b"%d" % i)
    assert select.select([h], [], [], WAIT)[0] == [h]
    wait_until(lambda: h.queue_len() == 5, "five messages queued")
    # Breaking out of events() leaves the rest in the queue that fileno() watches.
    for _ev in h.events():
        break
    assert h.queue_len() == 4
    assert select.select([h], [], [], 0)[0] == [h]
    assert len(h.recv_many(10)) == 4
    assert select.select([h], [], [], 0)[0] == []


def test_dispatch_each_flag_runs_the_right_callbacks(cluster: LocalCluster) -> None:
    seen: list[tuple[str, evs.Handle, evs.Event]] = []
    ctx = {"app": "state"}
    h = cluster.handle(
        0,
        on_message=lambda hh, ev: seen.append(("msg", hh, ev)),
        on_config_change=lambda hh, ev: seen.append(("cfg", hh, ev)),
        on_group_change=lambda hh, ev: seen.append(("grp", hh, ev)),
        context=ctx,
        groups="d",
    )
    assert h.context is ctx
    h.context = 42
    assert h.context == 42
    wait_until(lambda: h.queue_len() == 2, "config change and own join queued")
    assert h.dispatch(evs.DISPATCH_ONE_NONBLOCKING) == 1
    assert seen[-1][0] == "cfg" and seen[-1][1] is h
    assert isinstance(seen[-1][2], evs.ConfigChange) and seen[-1][2].kind == evs.REGULAR
    assert h.dispatch(evs.DISPATCH_ONE, timeout=WAIT) == 1
    assert seen[-1][0] == "grp"
    assert h.dispatch(evs.DISPATCH_ONE_NONBLOCKING) == 0
    assert h.dispatch(evs.DISPATCH_ALL) == 0
    with pytest.raises(evs.TimeoutError):
        h.dispatch(evs.DISPATCH_ONE, timeout=0.05)
    for i in range(3):
        h.mcast_joined(b"%d" % i)
    wait_until(lambda: h.queue_len() == 3, "three messages queued")
    assert h.dispatch() == 3  # default: ALL
    assert [e.data for k, _, e in seen[-3:] if isinstance(e, evs.Message)] == [b"0", b"1", b"2"]
    # No callback for a kind: the event is consumed and counted all the same.
    h.on_message = None
    h.mcast_joined(b"unseen")
    assert h.dispatch(evs.DISPATCH_ONE, timeout=WAIT) == 1
    assert len(seen) == 5 and h.queue_len() == 0


def test_dispatch_all_takes_only_what_was_queued_at_the_call(node: evs.Node) -> None:
    calls: list[bytes] = []

    def on_message(h: evs.Handle, m: evs.Message) -> None:
        calls.append(m.data)
        if m.data == b"0":
            h.mcast_joined(b"later")  # delivered while dispatching: not this call's

    h = evs.Handle(node, on_message=on_message, groups="d")
    recv_until(h, joined_event(h, b"d"))
    h.mcast_joined(b"0")
    h.mcast_joined(b"1")
    wait_until(lambda: h.queue_len() == 2, "two messages queued")
    assert h.dispatch(evs.DISPATCH_ALL) == 2
    assert calls == [b"0", b"1"]
    assert h.dispatch(evs.DISPATCH_ONE, timeout=WAIT) == 1
    assert calls[-1] == b"later"


def test_dispatch_blocking_runs_until_closed(node: evs.Node) -> None:
    got: list[bytes] = []

    def on_message(h: evs.Handle, m: evs.Message) -> None:
        got.append(m.data)
        if m.data == b"stop":
            h.close()

    h = evs.Handle(node, on_message=on_message, groups="b")
    sender = evs.Handle(node)
    recv_until(h, joined_event(h, b"b"))
    for d in (b"a", b"b", b"stop"):
        sender.mcast_groups("b", d)
    assert h.dispatch(evs.DISPATCH_BLOCKING) == 3
    assert got == [b"a", b"b", b"stop"]


@pytest.mark.parametrize(
    "flags",
    [evs.DISPATCH_ALL, evs.DISPATCH_BLOCKING, evs.DISPATCH_ONE, evs.DISPATCH_ONE_NONBLOCKING],
)
def test_raising_callback_propagates_and_loses_nothing(
    node: evs.Node, flags: evs.DispatchFlags
) -> None:
    got: list[bytes] = []

    class Boom(Exception):
        pass

    def on_message(h: evs.Handle, m: evs.Message) -> None:
        got.append(m.data)
        if m.data == b"1":
            raise Boom

    h = evs.Handle(node, on_message=on_message, groups="r")
    recv_until(h, joined_event(h, b"r"))
    for i in range(4):
        h.mcast_joined(b"%d" % i)
    wait_until(lambda: h.queue_len() == 4, "four messages queued")
    with pytest.raises(Boom):
        while True:
            h.dispatch(flags, timeout=WAIT)
    assert got == [b"0", b"1"]
    # The events after the failing one are still queued, and fileno() says so.
    assert h.queue_len() == 2
    assert select.select([h], [], [], 0)[0] == [h]
    h.on_message = lambda hh, m: got.append(m.data)
    assert h.dispatch(evs.DISPATCH_ALL) == 2
    assert got == [b"0", b"1", b"2", b"3"]


def test_handle_context_manager_closes(node: evs.Node) -> None:
    with evs.Handle(node, groups="cm") as h:
        assert not h.closed
    assert h.closed
    with pytest.raises(evs.HandleClosedError):
        h.join("again")


def test_default_node_handle_without_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVS_CONFIG", raising=False)
    node = evs.default_node()
    try:
        assert evs.default_node() is node  # one per process
        with evs.Handle(groups="dflt") as h:
            assert h.node is node
            assert node.local_addr[0] == "127.0.0.1"
            wait_members([h], "dflt")
            h.mcast_joined(b"self")
            assert next_message(h).data == b"self"
    finally:
        node.shutdown()
    fresh = evs.default_node()  # a stopped default node is replaced
    try:
        assert fresh is not node and fresh.is_running
    finally:
        fresh.shutdown()


def test_an_overflowed_handle_is_closed_and_joins_nothing() -> None:
    # The node closes an overflowed handle and leaves its groups: the handle says so at once,
    # while the events queued before the overflow are still read.
    with LocalCluster(1, delivery_buffer_bytes=0) as c:
        h = c.handle(0, groups="ovf", queue_capacity=4)
        for i in range(10):  # more than 4 events for a consumer that does not read
            try:
                h.mcast_joined(b"%d" % i)
            except evs.OverflowedError:
                break
        wait_until(lambda: c[0].stats()["handles_overflowed"] == 1, "the overflow")
        assert h.closed
        assert h.joined == ()
        assert repr(h).endswith(" closed>")
        got: list[evs.Event] = []
        with pytest.raises(evs.OverflowedError):
            while True:
                got.append(h.recv(timeout=WAIT))
        assert len(got) == 4


def test_node_handle_factory_passes_everything_through(node: evs.Node) -> None:
    got: list[evs.Event] = []
    h = node.handle(
        on_config_change=lambda hh, ev: got.append(ev),
        context="ctx",
        queue_capacity=4,
    )
    assert isinstance(h, evs.Handle) and h.node is node and h.context == "ctx"
    assert h.dispatch(evs.DISPATCH_ONE, timeout=WAIT) == 1
    assert isinstance(got[0], evs.ConfigChange)
    h.join("cap")
    for i in range(10):  # more than 4 events: the rest wait in the node's delivery buffer
        h.mcast_joined(b"%d" % i)
    wait_until(lambda: node.stats()["delivery_buffered"] > 0, "events buffered")
    assert h.queue_len() == 4
    assert [m.data for m in messages(h, 10)] == [b"%d" % i for i in range(10)]
