"""LocalCluster and the ring: configuration changes when nodes stop and return, agreed order
across nodes, and per-group views that agree everywhere."""

from __future__ import annotations

import threading

import pytest

import evs
from evs.testing import LocalCluster
from support import WAIT, messages, recv_until, wait_members, wait_until

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.timeout(120)]


def config_changes(h: evs.Handle, n: int) -> list[evs.ConfigChange]:
    out: list[evs.ConfigChange] = []
    while len(out) < n:
        ev = h.recv(timeout=WAIT)
        if isinstance(ev, evs.ConfigChange):
            out.append(ev)
    return out


def test_local_cluster_shape_and_arguments() -> None:
    with LocalCluster(3, token=2000) as c:
        assert len(c) == 3
        assert [n.node_id for n in c] == [1, 2, 3]
        assert [n.local_addr[0] for n in c] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        assert len({n.cluster_name for n in c}) == 1
        assert all("token = 2000" in n.config_toml.splitlines() for n in c)
        assert 'crypto = "aes256gcm"' in c[0].config_toml  # crypto on by default
        assert c.running() == list(c)
        assert repr(c).startswith("<evs.testing.LocalCluster ")
        with pytest.raises(evs.TimeoutError):
            c.wait_for_ring(members=[1, 2, 3, 4], timeout=0.2)
    assert not any(n.is_running for n in c)
    for bad in (0, 255, True, "3"):
        with pytest.raises(ValueError):
            LocalCluster(bad)  # type: ignore[arg-type]


def test_stop_delivers_transitional_then_regular_and_restart_rejoins(
    cluster: LocalCluster,
) -> None:
    watchers = [cluster.handle(i) for i in range(3)]
    first = [config_changes(w, 1)[0] for w in watchers]
    assert all(c.kind == evs.REGULAR and c.members == (1, 2, 3) for c in first)
    assert len({c.ring_id for c in first}) == 1

    cluster.stop(2)
    cluster.wait_for_ring()
    assert cluster[0].membership() == (1, [1, 2])
    for w in watchers[:2]:
        trans, reg = config_changes(w, 2)
        assert trans.kind == evs.TRANSITIONAL
        assert trans.members == (1, 2) and trans.left == (3,)
        assert reg.kind == evs.REGULAR
        assert reg.members == (1, 2) and reg.left == () and reg.joined == ()
        assert reg.ring_id > first[0].ring_id
    with pytest.raises(evs.HandleClosedError):
        while True:
            watchers[2].recv(timeout=WAIT)  # the stopped node's handle ends

    node = cluster.restart(2)
    assert node is cluster[2] and node.is_running and node.node_id == 3
    cluster.wait_for_ring()
    assert cluster[0].membership() == (1, [1, 2, 3])
    for w in watchers[:2]:
        trans = config_changes(w, 1)[0]
        assert trans.kind == evs.TRANSITIONAL and trans.members == (1, 2)
        reg = config_changes(w, 1)[0]
        assert reg.kind == evs.REGULAR
        assert reg.members == (1, 2, 3) and reg.joined == (3,)
    back = cluster.handle(2, groups="after")
    wait_members([back], "after")
    back.mcast_joined(b"I am back")
    assert messages(back, 1)[0].data == b"I am back"


def test_agreed_order_is_the_same_everywhere_under_concurrent_senders(
    cluster: LocalCluster,
) -> None:
    hs = [cluster.handle(i, groups="order") for i in range(3)]
    wait_members(hs, "order")
    per_sender = 200

    def send(i: int) -> None:
        for k in range(per_sender):
            hs[i].mcast_joined(b"%d:%d" % (i, k), evs.SAFE if k % 7 == 0 else evs.AGREED)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [[(m.sender, m.data) for m in messages(h, 3 * per_sender)] for h in hs]
    assert seqs[0] == seqs[1] == seqs[2]
    for i in range(3):  # each sender's messages in its own order (FIFO)
        mine = [d for s, d in seqs[0] if s == i + 1]
        assert mine == [b"%d:%d" % (i, k) for k in range(per_sender)]
    for h in hs:
        assert h.try_recv() is None


def test_group_views_agree_across_nodes_and_with_group_changes(cluster: LocalCluster) -> None:
    a = cluster.handle(0, groups=["red", "blue"])
    b = cluster.handle(1, groups="red")
    c = cluster.handle(2, groups=["blue", "green"])
    d = cluster.handle(2, groups="red")
    want = {
        b"red": sorted([(1, a.id), (2, b.id), (3, d.id)]),
        b"blue": sorted([(1, a.id), (3, c.id)]),
        b"green": [(3, c.id)],
    }
    wait_until(lambda: all(n.group_view() == want for n in cluster), "the same view everywhere")
    for h in (a, b, c, d):
        for g, members in want.items():
            assert h.group_membership(g) == members
    # The last GroupChange for "red" that each member saw carries the same final view.
    for h in (a, b, d):
        last = recv_until(
            h,
            lambda e: (
                isinstance(e, evs.GroupChange)
                and e.group == b"red"
                and list(e.members) == want[b"red"]
            ),
        )[-1]
        assert isinstance(last, evs.GroupChange)
    # A node leaving takes its handles out of every group, at every remaining node alike.
    cluster.stop(2)
    cluster.wait_for_ring()
    after = {b"red": sorted([(1, a.id), (2, b.id)]), b"blue": [(1, a.id)]}
    wait_until(
        lambda: all(n.group_view() == after for n in cluster.running()), "views without node 3"
    )
    gone = recv_until(b, lambda e: isinstance(e, evs.GroupChange) and bool(e.left))[-1]
    assert isinstance(gone, evs.GroupChange)
    assert gone.left == ((3, d.id),) and list(gone.members) == after[b"red"]


@pytest.mark.parametrize("key", ["bind", "port", "node_id", "transport", "members"])
def test_local_cluster_refuses_the_settings_it_owns(key: str) -> None:
    with pytest.raises(evs.ConfigError, match=f"LocalCluster sets {key} itself") as info:
        LocalCluster(2, **{key: "127.0.0.9"})
    assert info.value.key == key


def test_wait_for_ring_waits_for_one_side_of_a_partition() -> None:
    with LocalCluster(3, token=1000) as c:
        c.partition([0, 1], [2])
        c.wait_for_ring([1, 2], timeout=WAIT)  # the nodes of that side, not every node
        c.wait_for_ring([3], timeout=WAIT)
        assert c[0].membership()[1] == [1, 2] and c[2].membership()[1] == [3]
        with pytest.raises(ValueError, match="no running node"):
            c.wait_for_ring([7], timeout=1)
        c.heal()
        c.wait_for_ring(timeout=WAIT)
