"""`evs.Handle`: the EVS API of one application endpoint on a node."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, NamedTuple, Union

from . import _evs
from ._evs import ConfigChange, GroupChange, Guarantee, Message
from ._node import Node, default_node
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
