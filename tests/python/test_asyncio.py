"""asyncio: arecv, aevents, async with, amcast_*, and arecv's timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

import evs
from evs.testing import LocalCluster
from support import WAIT, wait_members

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.timeout(120)]


async def next_message_async(h: evs.Handle) -> evs.Message:
    while True:
        ev = await h.arecv(timeout=WAIT)
        if isinstance(ev, evs.Message):
            return ev


def test_arecv_and_amcast_between_nodes(cluster: LocalCluster) -> None:
    async def main() -> list[bytes]:
        async with cluster.handle(0, groups="aio") as a, cluster.handle(2, groups="aio") as b:
            wait_members([a, b], "aio")
            await a.amcast_joined(b"one")
            await b.amcast_groups("aio", b"two", evs.SAFE)
            got = [await next_message_async(b), await next_message_async(b)]
            mine = [await next_message_async(a), await next_message_async(a)]
            assert got == mine  # one agreed order, identical events
            assert {m.data: m.guarantee for m in got} == {b"one": evs.AGREED, b"two": evs.SAFE}
            return [m.data for m in got]

    assert sorted(asyncio.run(main())) == [b"one", b"two"]


def test_async_with_closes_and_aevents_ends(cluster: LocalCluster) -> None:
    async def main() -> tuple[evs.Handle, list[bytes]]:
        async with cluster.handle(1, groups="ae") as h:
            wait_members([h], "ae")
            for i in range(3):
                await h.amcast_joined(b"%d" % i)
            datas: list[bytes] = []
            async for ev in h.aevents(timeout=WAIT):
                if isinstance(ev, evs.Message):
                    datas.append(ev.data)
                    if len(datas) == 3:
                        break
            assert [ev async for ev in h.aevents(timeout=0.05)] == []  # ends on silence
        return h, datas

    h, datas = asyncio.run(main())
    assert datas == [b"0", b"1", b"2"]
    assert h.closed
    with pytest.raises(evs.HandleClosedError):
        h.join("x")


def test_arecv_timeout_does_not_block_the_loop(node: evs.Node) -> None:
    async def main() -> tuple[float, int]:
        h = evs.Handle(node)
        h.recv(timeout=WAIT)  # the initial configuration change
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.ensure_future(ticker())
        start = time.monotonic()
        with pytest.raises(evs.TimeoutError) as info:
            await h.arecv(timeout=0.3)
        elapsed = time.monotonic() - start
        assert isinstance(info.value, TimeoutError)
        t.cancel()
        h.close()
        return elapsed, ticks

    elapsed, ticks = asyncio.run(main())
    assert elapsed >= 0.3
    assert ticks >= 3  # the loop kept running while arecv waited


def test_arecv_wakes_on_a_message_from_another_thread_of_the_ring(node: evs.Node) -> None:
    async def main() -> bytes:
        h = evs.Handle(node, groups="wake")
        other = evs.Handle(node)
        wait_members([h], "wake")
        while h.try_recv() is not None:
            pass

        async def send_later() -> None:
            await asyncio.sleep(0.05)
            other.mcast_groups("wake", b"ping")

        sender = asyncio.ensure_future(send_later())
        m = await next_message_async(h)
        await sender
        # __aiter__ works too, and a closed handle ends it.
        h.close()
        assert [ev async for ev in h] == []
        other.close()
        return m.data

    assert asyncio.run(main()) == b"ping"


def test_amcast_waits_out_backpressure() -> None:
    with LocalCluster(2, max_message_size=1000, send_queue_bytes=1000) as c:
        a, b = c.handle(0, groups="bp"), c.handle(1, groups="bp")
        wait_members([a, b], "bp")

        async def main() -> list[bytes]:
            for i in range(200):
                await a.amcast_joined(b"%03d" % i + b"x" * 800)
            got: list[bytes] = []
            while len(got) < 200:
                got.append((await next_message_async(b)).data[:3])
            return got

        assert asyncio.run(main()) == [b"%03d" % i for i in range(200)]


def test_arecv_on_closed_handle_raises(node: evs.Node) -> None:
    h = evs.Handle(node)
    h.close()

    async def main() -> None:
        with pytest.raises(evs.HandleClosedError):
            await h.arecv(timeout=1)
        with pytest.raises(evs.HandleClosedError):
            await h.amcast_joined(b"x")
        with pytest.raises(evs.HandleClosedError):
            await h.amcast_groups("g", b"x")

    asyncio.run(main())


def test_close_wakes_a_pending_arecv_and_leaves_no_stale_reader(node: evs.Node) -> None:
    # close() releases the descriptor the loop waits on: it must wake the waiter itself, and
    # a handle made afterwards (which may get the same descriptor number) must work.
    async def main() -> bytes:
        h = evs.Handle(node)
        h.recv(timeout=WAIT)  # the initial configuration change
        with pytest.raises(evs.TimeoutError):
            await h.arecv(timeout=0.05)  # leaves a reader registered
        task = asyncio.ensure_future(h.arecv())
        await asyncio.sleep(0.05)
        h.close()
        with pytest.raises(evs.HandleClosedError):
            await asyncio.wait_for(task, WAIT)
        fresh = evs.Handle(node, groups="after-close")
        wait_members([fresh], "after-close")
        fresh.mcast_joined(b"fresh")
        m = await next_message_async(fresh)
        fresh.close()
        return m.data

    assert asyncio.run(main()) == b"fresh"


def test_arecv_refuses_a_bad_timeout_as_recv_does(node: evs.Node) -> None:
    h = evs.Handle(node)

    async def main() -> None:
        for bad in (-1, -0.5, float("nan")):
            with pytest.raises(ValueError, match="non-negative") as info:
                await h.arecv(timeout=bad)
            assert not isinstance(info.value, TimeoutError)
        async for _ in h.aevents(timeout=-1):
            pass

    with pytest.raises(ValueError, match="non-negative"):
        asyncio.run(main())
    h.close()
