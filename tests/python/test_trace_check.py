"""The pytest path to the EVS trace checker: ``tests/netns/checker.py`` runs ``totem-sim
check-trace`` (rust/totem-sim/src/trace_check.rs) on one clean and one broken trace, and on a
malformed one. The checker's own tests, one per property it breaks on purpose, are in
``rust/totem-sim/tests/trace_check.rs``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.netns import checker
from tests.netns.worker import parse_payload, payload

RING = [1, 10]


def trace(node: int, deliveries: list[list[int]]) -> list[dict[str, Any]]:
    """Node ``node`` of a two-node ring that delivers ``deliveries`` ([sender, k, seq])."""
    t = 1000.0 + node
    evs: list[dict[str, Any]] = [
        {"ev": "start", "node": node, "inc": 1, "pid": node, "handle": 1},
        {"ev": "group", "group": "load", "members": [[node, 1]], "joined": [[node, 1]]},
        {"ev": "config", "kind": "regular", "ring": RING, "members": [1, 2], "left": [],
         "joined": [1, 2]},
    ]  # fmt: skip
    evs += [{"ev": "send", "id": [node, 1, k], "g": "agreed", "len": 10} for k in (1, 2)]
    for sender, k, seq in deliveries:
        evs.append(
            {"ev": "deliver", "id": [sender, 1, k], "sender": sender, "ring": RING, "seq": seq,
             "g": "agreed", "ok": True}
        )  # fmt: skip
    evs.append({"ev": "end"})
    return [{"t": t + i / 1000, **e} for i, e in enumerate(evs)]


ALL = [[1, 1, 1], [2, 1, 2], [1, 2, 3], [2, 2, 4]]


def write(dir: Path, traces: dict[int, list[dict[str, Any]]]) -> list[Path]:
    out = []
    for node, evs in traces.items():
        p = dir / f"h{node}-1.jsonl"
        p.write_text("".join(json.dumps(e) + "\n" for e in evs))
        out.append(p)
    return out


def test_clean_trace_passes(tmp_path: Path) -> None:
    r = checker.check_files(write(tmp_path, {1: trace(1, ALL), 2: trace(2, ALL)}))
    assert r.ok, r.summary()
    assert r.violations == []
    assert r.stats["sent"] == 4
    assert r.stats["deliveries"] == 8
    assert r.stats["lost"] == 0


def test_broken_trace_is_caught(tmp_path: Path) -> None:
    # node 2 skips m1:2 (seq 3) but delivers m2:2 after it: a gap in the agreed order (D5),
    # node 1's message lost at a member that stayed with it
    broken = [d for d in ALL if d != [1, 2, 3]]
    faults = [{"t": 1000.5, "kind": "none"}]
    r = checker.check_files(write(tmp_path, {1: trace(1, ALL), 2: trace(2, broken)}), faults=faults)
    assert not r.ok
    assert "D5" in r.by_property(), r.summary()
    assert any(v.process == "n2#1" for v in r.violations), r.summary()
    assert r.stats["lost"] == 1
    assert r.fault_times[0]["kind"] == "none"
    assert "D5" in r.summary()


def test_malformed_trace_is_rejected(tmp_path: Path) -> None:
    paths = write(tmp_path, {1: trace(1, ALL)})
    paths[0].write_text('{"t": 1, "ev": "start"}\n')
    with pytest.raises(checker.CheckerError, match=r'h1-1.jsonl:1: missing field "node"'):
        checker.check_files(paths)


def test_payload_roundtrip() -> None:
    data = payload(3, 2, 41, "MARK", 200)
    assert len(data) == 200
    assert parse_payload(data) == ([3, 2, 41], True)
    assert parse_payload(data[:-1] + b"x") == ([3, 2, 41], False)
    assert parse_payload(b"not ours") == (None, False)
