"""`(ring_id, seq, index)` names a message's place in the agreed order: unique, increasing in
every handle's stream, and the same at every node — also when small messages share a packet
(which makes `seq` alone repeat)."""

from __future__ import annotations

import pytest

import evs
from evs.testing import LocalCluster

pytestmark = pytest.mark.timeout(120)


def test_positions_are_unique_increasing_and_agreed() -> None:
    with LocalCluster(3) as cluster:
        handles = [cluster.handle(i, groups="pos") for i in range(3)]
        for h in handles:
            next(
                e
                for e in h.events(timeout=30)
                if isinstance(e, evs.GroupChange) and len(e.members) == 3
            )
        for k in range(300):  # tiny messages: many share one packet
            handles[k % 3].mcast_joined(b"%d" % k)
        streams = []
        for h in handles:
            got: list[evs.Message] = []
            for ev in h.events(timeout=30):
                if isinstance(ev, evs.Message):
                    got.append(ev)
                    if len(got) == 300:
                        break
            streams.append(got)
        positions = [[(m.ring_id, m.seq, m.index, m.sender, m.data) for m in s] for s in streams]
        assert positions[0] == positions[1] == positions[2]
        keys = [(m.ring_id, m.seq, m.index) for m in streams[0]]
        assert keys == sorted(keys) and len(set(keys)) == 300
        seqs = [m.seq for m in streams[0]]
        assert len(set(seqs)) < 300, "packing happened, so seq alone repeats"
