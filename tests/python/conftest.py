"""Shared fixtures: clusters that start per test and always shut down."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import pytest

import evs
from evs.testing import LocalCluster


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    """Three nodes on one ring."""
    with LocalCluster(3) as c:
        yield c


@pytest.fixture(scope="module")
def shared_node() -> Iterator[evs.Node]:
    with LocalCluster(1) as c:
        yield c[0]


@pytest.fixture
def node(shared_node: evs.Node) -> Iterator[evs.Node]:
    """A single node on a ring of its own, shared by the tests of a module (a ring of one
    takes about a second to form). Each test starts with no group joined on it and leaves
    none behind: its handles are closed (collected) and their leaves delivered."""
    assert shared_node.is_running
    yield shared_node
    gc.collect()
    deadline = time.monotonic() + 30
    while shared_node.group_view():
        assert time.monotonic() < deadline, f"groups left behind: {shared_node.group_view()}"
        time.sleep(0.005)
