"""A distributed lock service over EVS: a small replicated state machine, meant to be copied.

Every node runs one :class:`LockService` on a handle joined to one group. The service is
driven **only** by what the handle delivers, in agreed order:

* ``REQUEST <lock>`` and ``RELEASE <lock>`` messages. Each lock has a FIFO queue of node ids;
  the head of the queue holds the lock. Requests of a holder already queued are ignored.
* configuration changes. A transitional configuration ends the old ring: the service stops
  granting and ignores the old ring's remaining traffic (its own lost requests are re-sent
  later, see *reconcile*). A regular configuration starts a **state exchange**: every member
  multicasts a ``STATE`` message, and until the STATE of every member of that ring is
  delivered the service is *syncing*: requests and releases are buffered, nothing is applied.
* the **primary component rule**. Only a configuration holding a majority of the static
  cluster size may grant. So two sides of a partition can never both grant one lock: any two
  majorities share a node.

When the exchange completes in a primary configuration, every member adopts the same state:
the one of the members that were in the most recent primary component (ties: the one that
saw the longest prefix of it, then the lowest node id; if no member was ever primary, the
lowest node's), keeps only the current members in every queue (a dead or partitioned holder
loses its locks here, at the same point of the stream at every node), applies the buffered
requests and releases in order, and then *reconciles*: each node re-sends the requests it
still wants and the releases that were lost with an old ring. Every step depends only on the
delivered stream, so every member computes the same table and grants in the same order.

Each node records its grants and releases (:attr:`LockService.history`) with the ring and the
position (the message's sequence number on that ring) where they happened, and the span of
each primary ring it took part in (:attr:`LockService.primaries`);
:func:`check_histories` compares the records of several nodes.

Use::

    service = LockService(evs.Handle(node, groups="locks"), cluster_size=3)
    service.request("printer")
    while not service.holds("printer"):
        service.pump(timeout=0.1)       # or feed service.process(event) from your own loop
    ...                                 # use the printer
    service.release("printer")

The messages are text: ``REQUEST <lock>``, ``RELEASE <lock>``, ``RESYNC`` and
``STATE <json>`` (ring, exchange, last primary ring and position, queues).

Limits, on purpose: every node of the cluster runs the service (a member that never sends its
STATE keeps the others syncing); a node holds a lock on behalf of the whole node (one service
per node); nothing is persisted, so a restarted node starts empty and learns the table from
the next state exchange; a service is not thread-safe (drive it from one thread).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, Union

from ._evs import ConfigChange, ConfigKind, GroupChange, Message, RingId
from ._node import Handle
from .errors import TimeoutError as EvsTimeoutError

__all__ = [
    "Endpoint",
    "LockEvent",
    "LockService",
    "PrimarySpan",
    "Ring",
    "check_histories",
]

log = logging.getLogger("evs.locks")

Ring = tuple[int, int]
"""A ring id as ``(rep, seq)``: plain values that pickle and print."""

Event = Union[Message, ConfigChange, GroupChange]
K = TypeVar("K")


def ring_of(ring_id: RingId) -> Ring:
    return (ring_id.rep, ring_id.seq)


def ring_order(ring: Ring) -> tuple[int, int]:
    """Rings follow one another by ``seq`` (the representative only breaks ties)."""
    return (ring[1], ring[0])


@dataclasses.dataclass(frozen=True)
class LockEvent:
    """A grant or a release recorded by one node."""

    kind: str  # "grant" or "release"
    lock: str
    holder: int
    ring: Ring
    position: int  # sequence number, on ``ring``, of the message that caused it


@dataclasses.dataclass
class PrimarySpan:
    """The part of a primary ring a node took part in: it applied (and recorded) every grant
    and release of that ring at positions ``first`` to ``last``."""

    members: tuple[int, ...]
    first: int
    last: int


class Endpoint(Protocol):
    """What the service needs of its handle (:class:`evs.Handle` has it all)."""

    @property
    def node_id(self) -> int: ...

    def mcast_groups(self, groups: list[bytes], data: bytes) -> None: ...

    def recv_many(self, max_events: int, timeout: float | None) -> list[Event]: ...


@dataclasses.dataclass(frozen=True)
class _State:
    """One member's STATE message."""

    node: int
    last_primary: Ring | None
    last_seq: int
    queues: dict[str, list[int]]

    def rank(self) -> tuple[tuple[int, int], int, int]:
        last = ring_order(self.last_primary) if self.last_primary is not None else (-1, -1)
        return (last, self.last_seq, -self.node)


class LockService:
    """The lock service of one node. Feed it every event of its handle with :meth:`process`
    (or let :meth:`pump` read them); ask for locks with :meth:`request` and :meth:`release`.

    ``cluster_size`` is the static number of nodes: a configuration grants only with more
    than half of them. ``on_grant(event)`` runs for every grant this node records (whoever
    the holder), in the thread that processes events.
    """

    def __init__(
        self,
        handle: Endpoint,
        cluster_size: int,
        group: str = "locks",
        *,
        on_grant: Callable[[LockEvent], object] | None = None,
    ) -> None:
        if cluster_size < 1:
            raise ValueError(f"cluster_size must be positive, got {cluster_size}")
        self.handle = handle
        self.node_id = handle.node_id
        self.cluster_size = cluster_size
        self.group = group.encode()
        self.on_grant = on_grant
        self.queues: dict[str, list[int]] = {}
        """The replicated table: lock -> queue of node ids, the head holds the lock."""
        self.wanted: set[str] = set()
        """Locks this node asked for and has not released (local, not replicated)."""
        self.history: list[LockEvent] = []
        self.primaries: dict[Ring, PrimarySpan] = {}
        self.ring: Ring | None = None
        self.members: tuple[int, ...] = ()
        self.primary = False
        self.syncing = False
        self._last_primary: Ring | None = None
        self._last_seq = 0
        self._epoch = 0  # 0, or the position of the RESYNC that restarted the exchange
        self._states: dict[int, _State] = {}
        self._buffer: list[Message] = []
        self._in_group = False
        self._old_ring_ending = False
        if isinstance(handle, Handle) and self.group not in handle.joined:
            handle.join(self.group)

    # -- the application's side -----------------------------------------------------------

    def request(self, lock: str) -> None:
        """Queues this node for ``lock`` (a non-empty name); :meth:`holds` tells when it is
        granted."""
        if not lock:
            raise ValueError("a lock needs a name")
        self.wanted.add(lock)
        self._send("REQUEST", lock)

    def release(self, lock: str) -> None:
        """Releases ``lock`` (or leaves its queue)."""
        self.wanted.discard(lock)
        self._send("RELEASE", lock)

    def holder(self, lock: str) -> int | None:
        """The holder of ``lock`` in this node's table (None if free). Outside a primary
        component the table is frozen and may be out of date: see :attr:`primary`."""
        q = self.queues.get(lock)
        return q[0] if q else None

    def holds(self, lock: str) -> bool:
        """True while this node holds ``lock`` in a primary component."""
        return self.primary and self.holder(lock) == self.node_id

    @property
    def status(self) -> str:
        """``starting``, ``reconfiguring`` (between a transitional and a regular
        configuration), ``syncing`` (state exchange), ``primary`` or ``no quorum``."""
        if self.ring is None:
            return "starting"
        if self._old_ring_ending:
            return "reconfiguring"
        if self.syncing:
            return "syncing"
        return "primary" if self.primary else "no quorum"

    def has_quorum(self, members: Sequence[int]) -> bool:
        """The primary component rule: a strict majority of the static cluster size."""
        return 2 * len(members) > self.cluster_size

    # -- driving it -------------------------------------------------------------------------

    def pump(self, timeout: float | None = 0.0, max_events: int = 256) -> list[LockEvent]:
        """Processes the events the handle delivers within ``timeout`` seconds (one batch);
        returns the grants and releases they caused."""
        try:
            events = self.handle.recv_many(max_events, timeout)
        except EvsTimeoutError:
            return []
        out: list[LockEvent] = []
        for ev in events:
            out.extend(self.process(ev))
        return out

    def process(self, ev: Event) -> list[LockEvent]:
        """Applies one delivered event; returns the grants and releases it caused."""
        start = len(self.history)
        if isinstance(ev, ConfigChange):
            self._on_config(ev)
        elif isinstance(ev, GroupChange):
            self._on_group_change(ev)
        elif isinstance(ev, Message) and self.group in ev.groups:
            self._on_message(ev)
        return self.history[start:]

    # -- the state machine ------------------------------------------------------------------

    def _on_config(self, ev: ConfigChange) -> None:
        if ev.kind == ConfigKind.TRANSITIONAL:
            # The old ring is over: what it still delivers may differ between the sides of
            # a partition, so none of it is applied (reconcile re-sends what mattered).
            self.primary = False
            self.syncing = False
            self._buffer.clear()
            self._old_ring_ending = True
            return
        self._old_ring_ending = False
        self.ring = ring_of(ev.ring_id)
        self.members = tuple(ev.members)
        self._start_exchange(epoch=0)

    def _on_group_change(self, ev: GroupChange) -> None:
        # A handle receives nothing sent to the group before its own join is delivered, so a
        # service that started while the others were exchanging may have missed their STATE:
        # it asks for a new exchange, which everyone in the group starts at the same point.
        if ev.group != self.group or self._in_group:
            return
        if any(node == self.node_id for node, _ in ev.joined):
            self._in_group = True
            if self.syncing:
                self._send("RESYNC")

    def _on_message(self, msg: Message) -> None:
        if self._old_ring_ending or self.ring is None or ring_of(msg.ring_id) != self.ring:
            return  # traffic of an old ring (delivered in the transitional configuration)
        try:
            kind, _, arg = msg.data.decode().partition(" ")
        except UnicodeDecodeError:
            kind, arg = "", ""
        if kind == "STATE":
            self._on_state(msg, arg)
        elif kind == "RESYNC":
            self._start_exchange(epoch=msg.seq)
        elif kind in ("REQUEST", "RELEASE") and arg:
            if self.syncing:
                self._buffer.append(msg)
            elif self.primary:
                self._apply(msg.sender, kind, arg, msg.seq)
        else:
            log.warning("node %d: ignoring malformed message %r", self.node_id, msg.data[:64])

    def _start_exchange(self, epoch: int) -> None:
        self.primary = False
        self.syncing = True
        self._epoch = epoch
        self._states = {}
        self._buffer = []
        state = {
            "ring": self.ring,
            "epoch": epoch,
            "last_primary": self._last_primary,
            "last_seq": self._last_seq,
            "queues": self.queues,
        }
        self._send("STATE", json.dumps(state, separators=(",", ":")))

    def _on_state(self, msg: Message, arg: str) -> None:
        try:
            state = _decode_state(msg.sender, arg, self.ring, self._epoch)
        except (ValueError, TypeError, KeyError) as e:
            log.warning("node %d: ignoring bad STATE from %d: %s", self.node_id, msg.sender, e)
            return
        if state is None or not self.syncing:
            return  # a STATE of an earlier exchange
        self._states[msg.sender] = state
        if set(self._states) >= set(self.members):
            self._finish_exchange(msg.seq)

    def _finish_exchange(self, seq: int) -> None:
        assert self.ring is not None
        self.syncing = False
        buffered, self._buffer = self._buffer, []
        if not self.has_quorum(self.members):
            log.info("node %d: ring %s has no quorum: granting nothing", self.node_id, self.ring)
            return  # keep the old table, frozen, for the next exchange
        states = [self._states[m] for m in self.members]
        ever_primary = [s for s in states if s.last_primary is not None]
        best = max(ever_primary, key=_State.rank) if ever_primary else states[0]
        self.queues = {}
        for lock, queue in sorted(best.queues.items()):
            kept = [n for n in queue if n in self.members]
            if kept:
                self.queues[lock] = kept
            if queue[0] not in self.members:  # its holder is gone: the next waiter gets it
                self._record("release", lock, queue[0], seq)
                if kept:
                    self._record("grant", lock, kept[0], seq)
        self.primary = True
        self._last_primary = self.ring
        self._last_seq = seq
        span = self.primaries.setdefault(self.ring, PrimarySpan(self.members, seq, seq))
        span.last = seq
        for m in buffered:
            kind, _, arg = m.data.decode().partition(" ")
            self._apply(m.sender, kind, arg, m.seq)
        self._reconcile()

    def _apply(self, sender: int, kind: str, lock: str, seq: int) -> None:
        assert self.ring is not None
        queue = self.queues.setdefault(lock, [])
        if kind == "REQUEST" and sender not in queue:
            queue.append(sender)
            if len(queue) == 1:
                self._record("grant", lock, sender, seq)
        elif kind == "RELEASE" and sender in queue:
            was_holder = queue[0] == sender
            queue.remove(sender)
            if was_holder:
                self._record("release", lock, sender, seq)
                if queue:
                    self._record("grant", lock, queue[0], seq)
        if not queue:
            del self.queues[lock]
        self._last_seq = seq
        self.primaries[self.ring].last = seq

    def _reconcile(self) -> None:
        """Re-sends what this node wants but the table lacks: requests and releases that
        were lost with an old ring (the state machine ignores duplicates)."""
        for lock in sorted(self.wanted):
            if self.node_id not in self.queues.get(lock, ()):
                self._send("REQUEST", lock)
        for lock, queue in sorted(self.queues.items()):
            if self.node_id in queue and lock not in self.wanted:
                self._send("RELEASE", lock)

    def _record(self, kind: str, lock: str, holder: int, seq: int) -> None:
        assert self.ring is not None
        ev = LockEvent(kind, lock, holder, self.ring, seq)
        self.history.append(ev)
        if kind == "grant" and self.on_grant is not None:
            self.on_grant(ev)

    def _send(self, kind: str, arg: str = "") -> None:
        data = f"{kind} {arg}" if arg else kind
        self.handle.mcast_groups([self.group], data.encode())

    def __repr__(self) -> str:
        return f"<LockService node {self.node_id} {self.status} locks={self.queues}>"


def _decode_state(sender: int, text: str, ring: Ring | None, epoch: int) -> _State | None:
    """Parses a STATE message (checked field by field: it came from the network). Returns
    None when it belongs to another exchange than (``ring``, ``epoch``)."""
    obj: Any = json.loads(text)
    if tuple(obj["ring"]) != ring or obj["epoch"] != epoch:
        return None
    last = obj["last_primary"]
    queues = obj["queues"]
    if not isinstance(queues, dict) or not isinstance(obj["last_seq"], int):
        raise TypeError("malformed STATE")
    checked: dict[str, list[int]] = {}
    for lock, queue in queues.items():
        if not isinstance(queue, list) or not queue or not all(isinstance(n, int) for n in queue):
            raise TypeError(f"malformed queue for {lock!r}")
        checked[str(lock)] = list(queue)
    return _State(
        node=sender,
        last_primary=(int(last[0]), int(last[1])) if last is not None else None,
        last_seq=obj["last_seq"],
        queues=checked,
    )


def check_histories(
    histories: Mapping[K, Iterable[LockEvent]],
    primaries: Mapping[K, Mapping[Ring, PrimarySpan]],
) -> list[str]:
    """Checks the records of several nodes (any key per node, e.g. its id -> its
    :attr:`~LockService.history` and :attr:`~LockService.primaries`); returns the problems
    found, empty when the records agree:

    * two nodes that took part in the same primary ring recorded exactly the same grants and
      releases at the positions both of them applied;
    * any two rings that granted or released share a member (two components that cannot
      see each other never both hand out locks: that is what the majority rule buys).
    """
    problems: list[str] = []
    events: dict[K, dict[Ring, list[LockEvent]]] = {}
    for node, hist in histories.items():
        per_ring: dict[Ring, list[LockEvent]] = {}
        for ev in hist:
            per_ring.setdefault(ev.ring, []).append(ev)
        events[node] = per_ring
    nodes = sorted(histories, key=str)
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            for ring in sorted(set(primaries[a]) & set(primaries[b]), key=ring_order):
                sa, sb = primaries[a][ring], primaries[b][ring]
                lo, hi = max(sa.first, sb.first), min(sa.last, sb.last)
                ea = [e for e in events[a].get(ring, []) if lo <= e.position <= hi]
                eb = [e for e in events[b].get(ring, []) if lo <= e.position <= hi]
                if ea != eb:
                    problems.append(
                        f"nodes {a} and {b} disagree on ring {ring} "
                        f"(positions {lo}..{hi}): {_brief(ea)} vs {_brief(eb)}"
                    )
    granted_in: dict[Ring, set[int]] = {}  # rings where locks changed hands -> their members
    for node, per_ring in events.items():
        for ring in per_ring:
            span = primaries[node].get(ring)
            granted_in.setdefault(ring, set()).update(span.members if span else ())
    rings = sorted(granted_in, key=ring_order)
    for i, r1 in enumerate(rings):
        for r2 in rings[i + 1 :]:
            if not granted_in[r1] & granted_in[r2]:
                problems.append(
                    f"rings {r1} {sorted(granted_in[r1])} and {r2} {sorted(granted_in[r2])} "
                    "both granted locks without a common member (two primary components)"
                )
    return problems


def _brief(events: Sequence[LockEvent]) -> str:
    return "[" + ", ".join(f"{e.kind} {e.lock}->{e.holder}@{e.position}" for e in events) + "]"
