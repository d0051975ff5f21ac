"""The logging bridge: the runtime's records reach logging.getLogger("evs.*")."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

import evs
from evs.testing import LocalCluster

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
