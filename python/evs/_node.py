"""`evs.Node` and `evs.Handle`: one EVS node (a Totem processor, its sockets and its runtime
thread) and the endpoints of the EVS API on it.

One module, because each needs the other: ``Node.handle()`` makes a ``Handle``, and a
``Handle`` belongs to a ``Node`` (the default node when none is given).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import enum
import os
import shutil
import socket
import tempfile
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, NamedTuple, Union

from . import _evs, _logging
from ._evs import ConfigChange, GroupChange, Guarantee, Message, RingId
from ._settings import to_pairs
from ._types import Event
from .errors import HandleClosedError, NodeStoppedError, OverflowedError
from .errors import TimeoutError as EvsTimeoutError

__all__ = [
    "DISPATCH_ALL",
    "DISPATCH_BLOCKING",
    "DISPATCH_ONE",
    "DISPATCH_ONE_NONBLOCKING",
    "DispatchFlags",
    "GroupName",
    "Groups",
    "Handle",
    "Membership",
    "Node",
    "default_node",
]

GroupName = Union[str, bytes]
"""A group name: 1 to 32 bytes; a ``str`` is encoded as UTF-8."""
Groups = Union[GroupName, Iterable[GroupName]]
"""One group name, or several."""

MessageCallback = Callable[["Handle", Message], object]
ConfigCallback = Callable[["Handle", ConfigChange], object]
GroupCallback = Callable[["Handle", GroupChange], object]


class DispatchFlags(enum.IntEnum):
    """How :meth:`Handle.dispatch` runs (the values of Corosync's ``cs_dispatch_flags_t``)."""

    ONE = 1
    """Wait for one event (up to ``timeout``) and dispatch it."""
    ALL = 2
    """Dispatch every event queued at the time of the call, without waiting."""
    BLOCKING = 3
    """Dispatch events as they come until the handle is closed."""
    ONE_NONBLOCKING = 4
    """Dispatch at most one event, without waiting."""


DISPATCH_ONE = DispatchFlags.ONE
DISPATCH_ALL = DispatchFlags.ALL
DISPATCH_BLOCKING = DispatchFlags.BLOCKING
DISPATCH_ONE_NONBLOCKING = DispatchFlags.ONE_NONBLOCKING


class Membership(NamedTuple):
    """What :meth:`Handle.membership` returns (Corosync's ``evs_membership_get``)."""

    local_node_id: int
    members: tuple[int, ...]


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


def _timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be a number of seconds or None, not {type(timeout).__name__}"
        )
    t = float(timeout)
    if not t >= 0:  # negative or NaN: refused as the native calls refuse it
        raise ValueError(f"timeout must be a non-negative number of seconds or None, got {t}")
    return t


def _check_callback(name: str, cb: object) -> None:
    if cb is not None and not callable(cb):
        raise TypeError(f"{name} must be callable or None, not {type(cb).__name__}")


class Handle(_evs.Handle):
    """One endpoint of the EVS API on a node: join and leave groups, multicast, and receive
    messages, configuration changes and group changes in one agreed-ordered stream.

    ``Handle(node=None, ...)``: with no node, the process's default node
    (:func:`evs.default_node`). Callbacks, used by :meth:`dispatch`, take the handle and the
    event. ``context`` is free for the application (Corosync's ``evs_context_set``).
    ``groups`` joins those groups at once. ``queue_capacity`` bounds the event queue (default
    16384 events); what does not fit waits in the node's delivery buffer
    (``delivery_buffer_bytes``), and a consumer that lets that fill too is closed with
    :class:`evs.OverflowedError` after reading everything queued before, never silently
    dropped. A handle receives its own messages to the groups it joined: one that only
    multicasts to them, never reading, is closed this way (``own_messages`` is True).

    Thread-safe: one thread may send while another receives. Use as a (async) context manager
    to close it on exit.
    """

    # The native part (every hot-path call: mcast_*, recv*, try_recv, queue_len, fileno,
    # join, leave, joined, id, node_id) is the base class: those calls cost one crossing into
    # native code, which validates the arguments itself. What is written here is the part
    # that is plain Python: callbacks and dispatch, asyncio, iteration, membership wrappers.

    node: Node
    """The node this handle belongs to."""

    def __new__(
        cls,
        node: Node | None = None,
        *,
        queue_capacity: int | None = None,
        **_callbacks_and_groups: Any,
    ) -> Handle:
        if node is not None and not isinstance(node, Node):
            raise TypeError(f"node must be an evs.Node or None, not {type(node).__name__}")
        owner = node if node is not None else default_node()
        self = super().__new__(cls, owner._native, queue_capacity)
        self.node = owner
        return self

    def __init__(
        self,
        node: Node | None = None,
        *,
        on_message: MessageCallback | None = None,
        on_config_change: ConfigCallback | None = None,
        on_group_change: GroupCallback | None = None,
        context: Any = None,
        queue_capacity: int | None = None,
        groups: Groups | None = None,
    ) -> None:
        try:
            _check_callback("on_message", on_message)
            _check_callback("on_config_change", on_config_change)
            _check_callback("on_group_change", on_group_change)
        except TypeError:
            self._close()
            raise
        self.on_message = on_message
        self.on_config_change = on_config_change
        self.on_group_change = on_group_change
        self.context = context
        self._closed = False
        self._aio_future: asyncio.Future[None] | None = None
        self._aio_fd = -1
        if groups is not None:
            try:
                self.join(groups)
            except BaseException:
                self._close()
                raise

    # -- identity -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True after :meth:`close`, once the node closed the handle for an overflow (events
        queued before it can still be received), or once its node stopped."""
        return self._closed or self._ended()

    def _check_open(self) -> None:
        # The native handle refuses sends and receives once closed; this covers the calls
        # answered from shared node state (membership, group_membership), so that every call
        # after close() or a node shutdown raises alike.
        if self._closed:
            raise HandleClosedError("handle closed")
        if not self.node.is_running:
            raise NodeStoppedError("handle closed: its node stopped")

    async def amcast_joined(
        self, data: bytes | bytearray | memoryview, guarantee: Guarantee = Guarantee.AGREED
    ) -> None:
        """:meth:`mcast_joined` for asyncio: waits for send budget without blocking the
        event loop."""
        await self._retry_async(lambda: self.mcast_joined(data, guarantee, timeout=0))

    async def amcast_groups(
        self,
        groups: Groups,
        data: bytes | bytearray | memoryview,
        guarantee: Guarantee = Guarantee.AGREED,
    ) -> None:
        """:meth:`mcast_groups` for asyncio."""
        await self._retry_async(lambda: self.mcast_groups(groups, data, guarantee, timeout=0))

    @staticmethod
    async def _retry_async(send: Callable[[], None]) -> None:
        from .errors import TryAgainError

        delay = 0.0005
        while True:
            try:
                send()
                return
            except TryAgainError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.02)

    # -- membership -----------------------------------------------------------------------

    def membership(self) -> Membership:
        """This node's id and the members of the last regular configuration."""
        local, members = self._membership()  # NodeStoppedError in a fork child comes first
        self._check_open()
        return Membership(local, tuple(members))

    def group_membership(self, group: GroupName) -> list[tuple[int, int]]:
        """Members of ``group`` as sorted ``(node_id, handle_id)`` pairs, in the node's view
        after its latest delivery (GroupChange events carry the view at their own point of
        the stream)."""
        members = self._group_membership(group)  # TypeError for a bad name comes first
        self._check_open()
        return members

    # -- receiving ------------------------------------------------------------------------

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Iterates over events as they come. Ends when no event arrives for ``timeout``
        seconds (None: never) or when the handle is closed; an overflow raises
        OverflowedError."""
        # One event per native call, never a batch held in Python: events left in a Python
        # buffer when the loop breaks would be invisible to fileno() (select would sleep on a
        # non-empty queue). try_recv first: it does not release the GIL, so a busy stream
        # costs one lock per event.
        t = _timeout(timeout)
        while True:
            try:
                ev = self.try_recv()
                if ev is None:
                    ev = self.recv(t)
            except EvsTimeoutError:
                return
            except OverflowedError:
                raise
            except HandleClosedError:
                return
            yield ev

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def _call(self, ev: Event) -> None:
        if isinstance(ev, Message):
            if self.on_message is not None:
                self.on_message(self, ev)
        elif isinstance(ev, ConfigChange):
            if self.on_config_change is not None:
                self.on_config_change(self, ev)
        elif self.on_group_change is not None:
            self.on_group_change(self, ev)

    def dispatch(self, flags: DispatchFlags = DISPATCH_ALL, timeout: float | None = None) -> int:
        """Runs the callbacks for received events, as Corosync's ``evs_dispatch``; returns
        how many events were dispatched (events without a callback count and are consumed).

        ``DISPATCH_ONE`` waits up to ``timeout`` for one event; ``DISPATCH_ONE_NONBLOCKING``
        takes one if queued; ``DISPATCH_ALL`` takes every event queued at the call;
        ``DISPATCH_BLOCKING`` runs until the handle is closed. An exception from a callback
        propagates; the events after it stay queued.
        """
        try:
            flags = DispatchFlags(flags)
        except ValueError:
            raise ValueError(f"unknown dispatch flags {flags!r}") from None
        if self._closed:
            raise HandleClosedError("handle closed")
        if flags is DispatchFlags.ONE:
            self._call(self.recv(timeout))
            return 1
        if flags is DispatchFlags.ONE_NONBLOCKING:
            ev = self.try_recv()
            if ev is None:
                return 0
            self._call(ev)
            return 1
        # Events are taken one at a time so that those after a raising callback stay in the
        # native queue, where recv and fileno() still see them.
        n = 0
        if flags is DispatchFlags.ALL:
            budget = max(self.queue_len(), 1)  # 1: an ended stream still raises
            while n < budget:
                ev = self.try_recv()
                if ev is None:
                    break
                n += 1
                self._call(ev)
            return n
        while True:  # BLOCKING
            try:
                ev = self.try_recv()
                if ev is None:
                    ev = self.recv(None)
            except OverflowedError:
                raise
            except HandleClosedError:
                return n
            n += 1
            self._call(ev)

    # -- asyncio --------------------------------------------------------------------------

    def _readable(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        fut = self._aio_future
        if fut is None or fut.done() or fut.get_loop() is not loop:
            new: asyncio.Future[None] = loop.create_future()
            fd = self.fileno()

            def ready() -> None:
                loop.remove_reader(fd)
                if not new.done():
                    new.set_result(None)

            loop.remove_reader(fd)
            loop.add_reader(fd, ready)
            self._aio_future = fut = new
            self._aio_fd = fd
        return fut

    async def arecv(self, timeout: float | None = None) -> Event:
        """:meth:`recv` for asyncio, driven by :meth:`fileno` with the loop's reader (no
        thread, and the runtime never calls into Python)."""
        t = _timeout(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if t is None else loop.time() + t
        while True:
            ev = self.try_recv()
            if ev is not None:
                return ev
            fut = self._readable(loop)
            if deadline is None:
                await asyncio.shield(fut)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise EvsTimeoutError("timed out")
            try:
                await asyncio.wait_for(asyncio.shield(fut), remaining)
            except asyncio.TimeoutError:
                ev = self.try_recv()
                if ev is not None:
                    return ev
                raise EvsTimeoutError("timed out") from None

    async def aevents(self, timeout: float | None = None) -> AsyncIterator[Event]:
        """``async for ev in h.aevents():`` ends like :meth:`events`."""
        while True:
            try:
                ev = await self.arecv(timeout)
            except EvsTimeoutError:
                return
            except OverflowedError:
                raise
            except HandleClosedError:
                return
            yield ev

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.aevents()

    async def __aenter__(self) -> Handle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the handle: its groups are left (other members see it go), queued events
        are dropped, later calls raise HandleClosedError, and its file descriptor is released
        (as ``socket.close()`` does; ``fileno()`` then raises). A coroutine waiting in
        :meth:`arecv` wakes up and raises. Idempotent."""
        self._closed = True
        fut, self._aio_future = self._aio_future, None
        if fut is not None:
            self._forget_reader(fut, self._aio_fd)
        self._close()

    @staticmethod
    def _forget_reader(fut: asyncio.Future[None], fd: int) -> None:
        """Takes the handle's descriptor out of the event loop that waits on it, before the
        descriptor is released, and wakes the waiting :meth:`arecv`."""
        loop = fut.get_loop()

        def forget() -> None:
            loop.remove_reader(fd)
            if not fut.done():
                fut.set_result(None)

        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            forget()
        elif not loop.is_closed():
            # Closed from another thread: the loop's own thread forgets it (a selector
            # tolerates a descriptor closed meanwhile).
            loop.call_soon_threadsafe(forget)

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        try:
            joined = self.joined
        except NodeStoppedError:  # inherited across fork()
            return f"<evs.Handle {self.id} of node {self.node_id} (inherited across fork)>"
        groups = ", ".join(repr(g) for g in joined)
        return f"<evs.Handle {self.id} of node {self.node_id} groups=[{groups}]{state}>"
