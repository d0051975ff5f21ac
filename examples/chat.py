"""An asyncio chat room over one EVS group.

Each participant is an :class:`evs.Handle` used with ``async with`` (closing it leaves the
room), reads with ``async for ev in h.aevents()`` and speaks with ``await h.amcast_joined()``;
nothing blocks the event loop. Lines arrive in one agreed order, the speaker's own included,
so every participant present for a line sees the same transcript; joins and leaves arrive as
:class:`evs.GroupChange` events at the same point of that order for everyone.

Run ``python examples/chat.py``: three bots on a local cluster (one node each) chat at once
for a few seconds, then the script checks that they all saw the same transcript.
"""

from __future__ import annotations

import asyncio
import random
import sys

import evs

ROOM = "chat"
BYE = "/bye"


async def chat_bot(
    node: evs.Node, name: str, lines: list[str], *, expect: int, timeout: float = 30.0
) -> list[str]:
    """Joins the room on ``node``, waits until ``expect`` participants are there, says its
    ``lines`` (at random moments) while printing everything it hears, and says ``/bye``.
    Once all ``expect`` participants said it, the bots leave one by one, lowest
    ``(node, handle)`` first, so each sees the ones before it go. Returns the transcript it
    saw: its lines and the others', in the order the room heard them."""
    transcript: list[str] = []
    async with evs.Handle(node, groups=ROOM) as h:
        me = (h.node_id, h.id)
        names: dict[tuple[int, int], str] = {}  # (node, handle) -> name, learnt from lines
        members: tuple[tuple[int, int], ...] = ()
        byes = 0
        talking: asyncio.Task[None] | None = None

        async def talk() -> None:
            for line in lines:
                await asyncio.sleep(random.uniform(0.0, 0.3))
                await h.amcast_joined(f"{name}: {line}".encode())
            await h.amcast_joined(f"{name}: {BYE}".encode())

        try:
            async for ev in h.aevents(timeout=timeout):  # ends after `timeout` s of silence
                if isinstance(ev, evs.Message):
                    text = ev.data.decode()
                    names.setdefault((ev.sender, ev.sender_handle), text.split(":", 1)[0])
                    transcript.append(text)
                    print(f"[{name}] {text}")
                    if text.endswith(": " + BYE):
                        byes += 1
                elif isinstance(ev, evs.GroupChange):
                    members = ev.members
                    joined = [f"{n}/{hd}" for n, hd in ev.joined]
                    left = [names.get(m, f"{m[0]}/{m[1]}") for m in ev.left]
                    print(
                        f"[{name}] ** room has {len(ev.members)}: "
                        f"joined {joined or '-'}, left {left or '-'}"
                    )
                    # Start speaking once everyone is in: every line is then delivered after
                    # every join, so every participant hears all of them.
                    if talking is None and len(ev.members) >= expect:
                        talking = asyncio.create_task(talk())
                if byes == expect and min(members) == me:
                    break  # everyone is done and those before us have left: our turn
        finally:
            if talking is not None:
                talking.cancel()
    return transcript


async def run_room(
    nodes: list[evs.Node], lines_per_bot: int = 5, timeout: float = 30.0
) -> list[list[str]]:
    """One bot per node, all at once; returns each bot's transcript."""
    bots = [
        chat_bot(
            node,
            f"bot{i + 1}",
            [f"message {k} from bot{i + 1}" for k in range(lines_per_bot)],
            expect=len(nodes),
            timeout=timeout,
        )
        for i, node in enumerate(nodes)
    ]
    return list(await asyncio.wait_for(asyncio.gather(*bots), timeout * 2))


def main() -> int:
    from evs.testing import LocalCluster

    with LocalCluster(3) as cluster:
        transcripts = asyncio.run(run_room(list(cluster)))
    same = all(t == transcripts[0] for t in transcripts)
    complete = len(transcripts[0]) == 3 * (5 + 1)
    print(f"{len(transcripts[0])} lines; every bot saw the same transcript: {same}")
    return 0 if same and complete else 1


if __name__ == "__main__":
    sys.exit(main())
