"""Wait helpers shared by the test modules (imported as ``support``; pytest puts this
directory on sys.path).

Nothing here sleeps for a fixed time and then asserts: every wait polls a condition with a
generous deadline (the machines that run this are small and noisy), and fails with a message
that says what did not happen.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import evs

WAIT = 30.0
"""Seconds any condition may take before a test calls it a failure."""

ROOT = Path(__file__).resolve().parents[2]


def wait_until(pred: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def wait_members(handles: list[evs.Handle], group: str | bytes, timeout: float = WAIT) -> None:
    """Waits until every handle's node sees exactly ``handles`` in ``group``: from then on a
    message any of them sends to ``group`` is ordered after all their joins."""
    want = sorted((h.node_id, h.id) for h in handles)
    wait_until(
        lambda: all(h.group_membership(group) == want for h in handles),
        f"members {want} in {group!r}",
        timeout,
    )


def next_message(h: evs.Handle, timeout: float = WAIT) -> evs.Message:
    """The handle's next Message, skipping configuration and group changes."""
    deadline = time.monotonic() + timeout
    while True:
        ev = h.recv(max(deadline - time.monotonic(), 0.0))
        if isinstance(ev, evs.Message):
            return ev


def messages(h: evs.Handle, n: int, timeout: float = WAIT) -> list[evs.Message]:
    return [next_message(h, timeout) for _ in range(n)]


def recv_until(
    h: evs.Handle, pred: Callable[[evs.Event], bool], timeout: float = WAIT
) -> list[evs.Event]:
    """Events up to and including the first one for which ``pred`` holds."""
    out: list[evs.Event] = []
    deadline = time.monotonic() + timeout
    while True:
        ev = h.recv(max(deadline - time.monotonic(), 0.0))
        out.append(ev)
        if pred(ev):
            return out


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child Python: this interpreter's, EVS_CONFIG removed."""
    env = {k: v for k, v in os.environ.items() if k != "EVS_CONFIG"}
    env.update(extra)
    return env


PYTHON = sys.executable
