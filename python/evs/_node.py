"""`evs.Node`: one EVS node (a Totem processor, its sockets and its runtime thread)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import tempfile
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import _evs, _logging
from ._evs import RingId
from ._settings import to_pairs

if TYPE_CHECKING:
    from ._handle import ConfigCallback, GroupCallback, Handle, MessageCallback

__all__ = ["Node", "default_node"]

_live: weakref.WeakSet[Node] = weakref.WeakSet()


class Node:
    """A running node.

    ``Node(config=None, **settings)`` starts a node from an optional TOML file and keyword
    settings applied over it (the keys of the file: ``cluster_name``, ``bind``, ``port``,
    ``transport``, ``members``, ``crypto``, ``authkey``, every totem timer such as
    ``token=1000`` or ``join=datetime.timedelta(milliseconds=50)``, ...). A bad key or value
    raises :class:`evs.ConfigError` naming it. Several nodes may live in one process; each has
    its own runtime thread. ``shutdown()`` (or leaving a ``with`` block) leaves the ring.
    """

    def __init__(self, config: str | os.PathLike[str] | None = None, **settings: Any) -> None:
        path = os.fspath(config) if config is not None else None
        _logging.ensure_started()
        self._native = _evs.Node(path, to_pairs(settings))
        self._lock = threading.Lock()
        _live.add(self)

    @property
    def node_id(self) -> int:
        """This node's id."""
        return self._native.node_id

    @property
    def local_addr(self) -> tuple[str, int]:
        """``(host, port)`` the node's socket is bound to."""
        return self._native.local_addr

    @property
    def cluster_name(self) -> str:
        return self._native.cluster_name

    @property
    def max_message_size(self) -> int:
        """The largest message data this node sends (``max_message_size``, in bytes)."""
        return self._native.max_message_size

    @property
    def config_toml(self) -> str:
        """The effective configuration, as TOML text."""
        return self._native.config_toml

    @property
    def is_running(self) -> bool:
        return self._native.is_running

    def membership(self) -> tuple[int, list[int]]:
        """``(node_id, members)`` of the last regular configuration (members empty before
        the first ring formed)."""
        return self._native.membership()

    def ring_id(self) -> RingId:
        """The ring of the last regular configuration."""
        return self._native.ring_id()

    def group_view(self) -> dict[bytes, list[tuple[int, int]]]:
        """The replicated per-group membership: group -> sorted ``(node_id, handle_id)``."""
        return self._native.group_view()

    def stats(self) -> dict[str, object]:
        """Counters and state (ring, members, packets, retransmits, token rotation, rejected
        packets by reason, queue depths, and the delivery buffer: ``delivery_buffered`` bytes
        held now for handles whose queue is full, ``delivery_buffered_peak`` the most at once,
        ``delivery_buffer_limit`` each handle's bound)."""
        return self._native.stats()

    def handle(
        self,
        *,
        on_message: MessageCallback | None = None,
        on_config_change: ConfigCallback | None = None,
        on_group_change: GroupCallback | None = None,
        context: Any = None,
        queue_capacity: int | None = None,
    ) -> Handle:
        """A new :class:`evs.Handle` on this node."""
        from ._handle import Handle

        return Handle(
            self,
            on_message=on_message,
            on_config_change=on_config_change,
            on_group_change=on_group_change,
            context=context,
            queue_capacity=queue_capacity,
        )

    def isolate_from(self, nodes: Iterable[int]) -> None:
        """Fault injection for tests and demonstrations: drop every packet from the given
        node ids from now on (an empty iterable ends it). Isolating two sides from each other
        on both sides partitions the ring without touching the network; healing merges it."""
        self._native.isolate_from(sorted(set(nodes)))

    def set_receive_loss(self, percent: int) -> None:
        """Fault injection for tests: from now on drop each received packet with probability
        ``percent``/100, before authentication, as a lossy network would (0 ends it)."""
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(f"percent must be an int from 0 to 100, got {percent!r}")
        self._native.set_receive_loss(percent)

    def shutdown(self) -> None:
        """Leaves the ring and stops the node. Each of its handles still returns the events
        queued before the stop, then raises HandleClosedError (sends and new handles raise
        at once). Idempotent; in the child of a fork, does nothing."""
        self._native.shutdown()

    close = shutdown

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return repr(self._native)


_default_lock = threading.Lock()
_default: Node | None = None
# A plain directory, removed by _shutdown_all: a TemporaryDirectory's own finalizer may run
# before that hook at exit and warn (ResourceWarning) that it cleaned up implicitly.
_default_keydir: str | None = None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def default_node() -> Node:
    """The process's default node, started on first use.

    From the TOML file named by the ``EVS_CONFIG`` environment variable when it is set.
    Otherwise from built-in defaults: a private node on 127.0.0.1 (udpu, a free port, crypto
    on with a key made for this process), which lets the handles of one process talk to each
    other; set ``EVS_CONFIG`` to reach other machines.
    """
    global _default, _default_keydir
    with _default_lock:
        if _default is not None and _default.is_running:
            return _default
        path = os.environ.get("EVS_CONFIG")
        if path:
            _default = Node(path)
        else:
            if _default_keydir is not None:  # the key of a default node that was stopped
                shutil.rmtree(_default_keydir, ignore_errors=True)
            _default_keydir = tempfile.mkdtemp(prefix="evs-default-")
            key = os.path.join(_default_keydir, "authkey")
            _evs.keygen(key)
            port = _free_port("127.0.0.1")
            _default = Node(
                cluster_name=f"evs-default-{os.getpid()}",
                bind="127.0.0.1",
                port=port,
                transport="udpu",
                members=[{"node_id": 1, "address": f"127.0.0.1:{port}"}],
                node_id=1,
                authkey=key,
            )
        return _default


def _after_fork_in_child() -> None:
    """In the child of ``os.fork()``: the nodes and handles made so far belong to the parent
    (their runtime threads were not copied). The native module then refuses every call on them
    with NodeStoppedError; here the child forgets them, so that exit does not try to stop them,
    nor remove the parent's default key directory, and a new default node can start."""
    global _default, _default_keydir, _default_lock
    _evs.after_fork_in_child()
    _default_lock = threading.Lock()  # another thread may have held it at the fork
    _default = None
    _default_keydir = None
    _live.clear()
    _logging.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _stop_nodes() -> None:
    """When the main thread ends: leave every ring and stop the runtime threads, so that
    exit neither hangs nor tears a thread down mid-call. Registered to run before the
    interpreter joins the non-daemon threads: a thread blocked on a handle then gets
    HandleClosedError (after its queued events) instead of keeping the process alive."""
    for node in list(_live):
        with contextlib.suppress(Exception):  # best effort at exit
            node.shutdown()


@atexit.register
def _shutdown_all() -> None:
    """At interpreter exit: stop the nodes made since the main thread ended, remove the
    default node's key, and stop the log pump."""
    global _default_keydir
    _stop_nodes()
    if _default_keydir is not None:
        shutil.rmtree(_default_keydir, ignore_errors=True)
        _default_keydir = None
    _logging.stop()


# threading._register_atexit (3.9+) runs when the main thread ends, before the non-daemon
# threads are joined; plain atexit runs only after them, too late for a thread blocked in
# recv(None). Both are private details of CPython's threading module, hence the fallback.
_register_early = getattr(threading, "_register_atexit", None)
if _register_early is not None:
    _register_early(_stop_nodes)
