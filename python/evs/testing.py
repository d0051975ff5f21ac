"""Helpers for tests and examples: :class:`LocalCluster`, n nodes in one process."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from . import _evs
from ._node import Handle, Node, _free_port
from .errors import ConfigError
from .errors import TimeoutError as EvsTimeoutError

__all__ = ["LocalCluster"]

_OWNED = {
    "bind": "node i+1 binds 127.0.0.(i+1)",
    "port": "each node takes a free port",
    "node_id": "node i+1 has id i+1",
    "transport": "the nodes talk udpu",
    "members": "the members are the cluster's nodes",
    "interface": "each node binds a loopback address",
}


class LocalCluster:
    """``n`` nodes in this process over real UDP on loopback: node ``i+1`` binds
    ``127.0.0.(i+1)`` on a free port, transport udpu, crypto on with a key made for the
    cluster (unless ``crypto="none"``), and a cluster name of its own. ``settings`` apply to
    every node (``token=1000``, ``crypto="chacha20poly1305"``, ...); those the cluster makes
    itself (``bind``, ``port``, ``node_id``, ``transport``, ``members``, ``interface``) are
    refused with :class:`evs.ConfigError`.

    By default the constructor returns once all nodes share one ring. Use as a context
    manager, or call :meth:`close`.
    """

    def __init__(
        self,
        n: int = 3,
        *,
        cluster_name: str | None = None,
        wait: bool = True,
        timeout: float = 60.0,
        **settings: Any,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 254:
            raise ValueError(f"n must be an int from 1 to 254, got {n!r}")
        for key in settings:
            if key in _OWNED:
                err = ConfigError(f"LocalCluster sets {key} itself ({_OWNED[key]})")
                err.key = key
                raise err
        self._tmp = tempfile.TemporaryDirectory(prefix="evs-cluster-")
        self.settings = dict(settings)
        if self.settings.get("crypto") != "none" and "authkey" not in self.settings:
            key = os.path.join(self._tmp.name, "authkey")
            _evs.keygen(key)
            self.settings["authkey"] = key
        self.cluster_name = cluster_name or f"local-{uuid.uuid4().hex[:12]}"
        self.addresses = [
            (i + 1, f"127.0.0.{i + 1}", _free_port(f"127.0.0.{i + 1}")) for i in range(n)
        ]
        self.nodes: list[Node] = []
        try:
            for i in range(n):
                self.nodes.append(self._start(i))
            if wait:
                self.wait_for_ring(timeout=timeout)
        except BaseException:
            self.close()
            raise

    def _start(self, i: int) -> Node:
        node_id, ip, port = self.addresses[i]
        members = [{"node_id": m, "address": f"{a}:{p}"} for m, a, p in self.addresses]
        return Node(
            cluster_name=self.cluster_name,
            node_id=node_id,
            bind=ip,
            port=port,
            transport="udpu",
            members=members,
            **self.settings,
        )

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, i: int) -> Node:
        return self.nodes[i]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def handle(self, i: int, **kwargs: Any) -> Handle:
        """A new handle on node ``i`` (0-based); ``kwargs`` as for :class:`evs.Handle`."""
        return Handle(self.nodes[i], **kwargs)

    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.is_running]

    def wait_for_ring(self, members: Sequence[int] | None = None, *, timeout: float = 60.0) -> None:
        """Waits until the running nodes among ``members`` (node ids; default: every running
        node) report one ring whose members are exactly ``members``; raises evs.TimeoutError
        otherwise. After :meth:`partition`, ``members`` names one side: the other sides are
        not waited for. ValueError if no node of ``members`` is running."""
        if members is None:
            nodes = self.running()
            want = sorted(n.node_id for n in nodes)
        else:
            want = sorted(members)
            nodes = [n for n in self.running() if n.node_id in want]
            if not nodes:
                raise ValueError(f"no running node among members {want}")
        deadline = time.monotonic() + timeout
        while True:
            views = [(n.ring_id(), n.membership()[1]) for n in nodes]
            if all(v[1] == want and v[0] == views[0][0] for v in views):
                return
            if time.monotonic() >= deadline:
                raise EvsTimeoutError(f"no common ring with members {want} in {timeout}s: {views}")
            time.sleep(0.02)

    def partition(self, *sides: Sequence[int]) -> None:
        """Splits the cluster: each side (a sequence of node indexes, 0-based) drops every
        packet from the nodes of the other sides (fault injection inside the nodes; the network
        is untouched). Nodes in no side are isolated from everyone. :meth:`heal` ends it."""
        side_of = {i: k for k, side in enumerate(sides) for i in side}
        for i, node in enumerate(self.nodes):
            others = [
                self.addresses[j][0]
                for j in range(len(self.nodes))
                if j != i and (i not in side_of or side_of.get(j) != side_of[i])
            ]
            if node.is_running:
                node.isolate_from(others)

    def heal(self) -> None:
        """Ends every partition made by :meth:`partition`."""
        for node in self.running():
            node.isolate_from([])

    def stop(self, i: int) -> None:
        """Shuts node ``i`` down (it leaves the ring)."""
        self.nodes[i].shutdown()

    def restart(self, i: int) -> Node:
        """Starts node ``i`` again with the same id and address (after :meth:`stop`)."""
        self.nodes[i].shutdown()
        self.nodes[i] = self._start(i)
        return self.nodes[i]

    def close(self) -> None:
        """Shuts every node down and removes the cluster's key."""
        for n in self.nodes:
            n.shutdown()
        self._tmp.cleanup()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<evs.testing.LocalCluster {self.cluster_name} nodes={len(self.nodes)}>"
