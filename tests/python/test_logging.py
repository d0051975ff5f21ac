"""The logging bridge: the runtime's records reach logging.getLogger("evs.*")."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import evs
from evs.testing import LocalCluster
from support import free_port

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.timeout(120)]


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def wait_for(self, text: str, timeout: float = 30.0) -> logging.LogRecord:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in list(self.records):
                if text in r.getMessage():
                    return r
            time.sleep(0.01)
        raise AssertionError(f"no record with {text!r}: {[r.getMessage() for r in self.records]}")


@pytest.fixture
def collect() -> Iterator[Collect]:
    logger = logging.getLogger("evs")
    handler = Collect()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # The pump re-reads the level every 0.2 s; sync it now rather than wait for that.
    evs._logging._sync_level()
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        evs._logging._sync_level()


def test_node_started_record_reaches_the_evs_logger(collect: Collect) -> None:
    with LocalCluster(2) as c:
        rec = collect.wait_for("node started")
        assert rec.levelno == logging.INFO
        assert rec.name.startswith("evs.")
        assert "node=" in rec.getMessage()
        c.stop(1)
        left = collect.wait_for("left the ring")
        assert left.name.startswith("evs.")
    assert logging.getLogger("evs").handlers == [collect]  # ours only


@pytest.mark.parametrize(
    ("second", "why"),
    [
        ({"authkey": "other"}, "authkey or cluster_name"),
        ({"crypto": "chacha20poly1305"}, "crypto setting differs"),
        ({"crypto": "none"}, "crypto setting differs"),
    ],
    ids=["other key", "other cipher", "no crypto"],
)
def test_a_misconfigured_peer_is_a_rate_limited_warning(
    collect: Collect, tmp_path: Path, second: dict[str, str], why: str
) -> None:
    keys = {name: str(tmp_path / name) for name in ("key", "other")}
    for k in keys.values():
        evs.keygen(k)
    ports = {1: free_port("127.0.0.1"), 2: free_port("127.0.0.2")}
    members = [{"node_id": i, "address": f"127.0.0.{i}:{p}"} for i, p in ports.items()]
    common = {"transport": "udpu", "members": members, "cluster_name": f"mis-{ports[1]}"}
    settings2: dict[str, object] = {"authkey": keys["key"], **common}
    if "authkey" in second:
        settings2["authkey"] = keys[second["authkey"]]
    if "crypto" in second:
        settings2["crypto"] = second["crypto"]
        if second["crypto"] == "none":
            del settings2["authkey"]
    a = evs.Node(bind="127.0.0.1", port=ports[1], node_id=1, authkey=keys["key"], **common)
    b = evs.Node(bind="127.0.0.2", port=ports[2], node_id=2, **settings2)
    try:
        source = f"127.0.0.2:{ports[2]}"
        rec = collect.wait_for(f"refused a frame from {source}")
        assert rec.levelno == logging.WARNING
        assert why in rec.getMessage(), rec.getMessage()
        # The peer keeps sending (joins, then its own ring's tokens): still one warning.
        time.sleep(2)
        assert sum(f"from {source}" in r.getMessage() for r in collect.records) == 1
        assert a.membership()[1] == [1] and b.membership()[1] == [2]
    finally:
        a.shutdown()
        b.shutdown()
