"""``evs demo``: the lock service of :mod:`evs.locks` on a local cluster, live.

The demo starts N nodes (default 3) as separate processes on 127.0.0.1..N (transport udpu,
AES-256-GCM with a throwaway key), each running one :class:`evs.Node` and one
:class:`~evs.locks.LockService`. The parent sends them commands over a pipe and prints what
each node reports, then walks through four scenes:

(a) every node requests the same locks at once: every node queues and grants them in the
    same order;
(b) the node holding a lock is killed with SIGKILL: the configuration change releases its
    locks and the next waiter is granted, everywhere at the same point of the stream; the
    node then restarts empty and learns the table from the state exchange;
(c) a partition (each side drops the other's packets, ``Node.isolate_from``): the majority
    side goes on granting, the minority side has no quorum and grants nothing;
(d) the partition heals: the ring merges, the members exchange their state and converge.

It ends by checking every node's record with :func:`evs.locks.check_histories` and the
survivors' lock tables, prints ``demo OK: ...`` or ``demo FAILED: ...`` and returns 0 or 1.
Every wait is bounded; on any failure or Ctrl-C the children are killed and the key removed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .locks import LockEvent, PrimarySpan, Ring, check_histories

__all__ = ["add_arguments", "main", "run"]

GROUP = "locks"
STEP_TIMEOUT = 25.0  # seconds for any one scene to reach its expected state
TOTAL_TIMEOUT = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the demo's options to ``parser`` (used by ``evs demo`` and ``python -m evs.demo``)."""
    parser.add_argument(
        "--nodes", type=_node_count, default=3, metavar="N", help="cluster size, 3 to 9 (3)"
    )
    parser.add_argument("--no-color", action="store_true", help="plain output, even on a tty")
    parser.add_argument("--fast", action="store_true", help="no pauses between the scenes")
    parser.add_argument(
        "--token", type=int, default=500, metavar="MS", help="token timeout in ms (500)"
    )
    parser.add_argument("--verbose", action="store_true", help="show the nodes' own logs")


def _node_count(text: str) -> int:
    n = int(text)
    if not 3 <= n <= 9:
        raise argparse.ArgumentTypeError("the demo needs 3 to 9 nodes (a majority and a minority)")
    return n


# -- a node: one child process --------------------------------------------------------------


def _child(settings: dict[str, Any], cluster_size: int, verbose: bool, conn: Connection) -> None:
    """Runs one node and its lock service; reports to the parent, obeys its commands."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    if verbose:
        logging.basicConfig(level=logging.INFO, format="    node %(process)d %(message)s")
    else:
        logging.getLogger("evs").addHandler(logging.NullHandler())
        logging.getLogger("evs").propagate = False
    import evs
    from evs.locks import LockService

    parent = os.getppid()
    node = evs.Node(**settings)
    try:
        handle = evs.Handle(node, groups=GROUP)
        service = LockService(handle, cluster_size, GROUP)
        conn.send(("ready", node.node_id, os.getpid()))
        reported: tuple[Any, ...] = ()
        while os.getppid() == parent:
            try:
                events = handle.recv_many(256, 0.05)
            except evs.TimeoutError:
                events = []
            for ev in events:
                for le in service.process(ev):
                    conn.send(("lock", time.time(), dataclasses.astuple(le)))
                if isinstance(ev, evs.ConfigChange) and ev.kind == evs.REGULAR:
                    conn.send(("config", time.time(), service.ring, service.members))
                queues = {lock: list(q) for lock, q in service.queues.items()}
                spans = {r: dataclasses.astuple(s) for r, s in service.primaries.items()}
                now = (service.status, service.ring, service.members, queues, spans)
                if now != reported:
                    reported = now
                    conn.send(("state", time.time(), *now))
            while conn.poll():
                cmd, arg = conn.recv()
                if cmd == "request":
                    service.request(arg)
                    conn.send(("did", time.time(), f"requests {arg} ({service.status})"))
                elif cmd == "release":
                    service.release(arg)
                    conn.send(("did", time.time(), f"releases {arg}"))
                elif cmd == "isolate":
                    node.isolate_from(arg)
                elif cmd == "stop":
                    return
    except (BrokenPipeError, EOFError):
        pass  # the parent is gone: so is the demo
    finally:
        node.shutdown()


# -- the parent -----------------------------------------------------------------------------


class DemoFailure(Exception):
    pass


@dataclasses.dataclass
class _View:
    """What the parent knows of one node (one incarnation of it), from its reports."""

    label: str
    node_id: int
    proc: BaseProcess
    conn: Connection
    alive: bool = True
    killed: bool = False
    ready: bool = False
    shown: tuple[str, Ring | None] = ("", None)  # the last status printed
    pid: int = 0
    status: str = "starting"
    ring: Ring | None = None
    members: tuple[int, ...] = ()
    queues: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    history: list[LockEvent] = dataclasses.field(default_factory=list)
    spans: dict[Ring, PrimarySpan] = dataclasses.field(default_factory=dict)

    def holder(self, lock: str) -> int | None:
        q = self.queues.get(lock)
        return q[0] if q else None


_COLORS = ["36", "35", "34", "33", "32", "31", "96", "95", "94"]


class _Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.n: int = args.nodes
        self.fast: bool = args.fast
        self.verbose: bool = args.verbose
        self.color = not args.no_color and sys.stdout.isatty()
        self.t0 = time.time()
        self.deadline = time.monotonic() + TOTAL_TIMEOUT
        self.tmp = tempfile.TemporaryDirectory(prefix="evs-demo-")
        self.ctx = multiprocessing.get_context("spawn")
        self.views: dict[str, _View] = {}
        self.rings: dict[tuple[int, int], str] = {}
        key = os.path.join(self.tmp.name, "authkey")
        import evs

        evs.keygen(key)
        addresses = [(i, f"127.0.0.{i}", _free_port(f"127.0.0.{i}")) for i in range(1, self.n + 1)]
        self.settings = {
            i: {
                "cluster_name": f"demo-{uuid.uuid4().hex[:8]}",
                "node_id": i,
                "bind": ip,
                "port": port,
                "transport": "udpu",
                "members": [{"node_id": m, "address": f"{a}:{p}"} for m, a, p in addresses],
                "authkey": key,
                "token": args.token,
            }
            for i, ip, port in addresses
        }
        name = self.settings[1]["cluster_name"]
        for s in self.settings.values():
            s["cluster_name"] = name

    # -- output ---------------------------------------------------------------------------

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def say(self, text: str, node: int | None = None, t: float | None = None) -> None:
        stamp = f"{(t if t is not None else time.time()) - self.t0:7.3f}"
        who = f"node {node}" if node is not None else "demo  "
        if node is not None:
            who = self.paint(who, _COLORS[(node - 1) % len(_COLORS)])
        print(f"{stamp}  {who}  {text}", flush=True)

    def scene(self, title: str) -> None:
        print(flush=True)
        self.say(self.paint(title, "1"))

    def ring_name(self, ring: tuple[int, int] | None) -> str:
        if ring is None:
            return "-"
        return self.rings.setdefault(ring, f"#{len(self.rings) + 1}")

    # -- children -------------------------------------------------------------------------

    def start(self, node_id: int) -> _View:
        parent_end, child_end = self.ctx.Pipe()
        from evs import demo as this_module  # a stable name for the spawned child to import

        proc = self.ctx.Process(
            target=this_module._child,
            args=(self.settings[node_id], self.n, self.verbose, child_end),
            name=f"evs-demo-node-{node_id}",
            daemon=True,
        )
        # Ctrl-C reaches the whole process group: the children start with SIGINT ignored (an
        # ignored signal stays ignored across exec), so only the parent answers it.
        with _sigint_ignored():
            proc.start()
        child_end.close()
        label = str(node_id)
        while label in self.views:
            label += "'"
        view = _View(label, node_id, proc, parent_end)
        self.views[label] = view
        return view

    def live(self) -> list[_View]:
        return [v for v in self.views.values() if v.alive]

    def send(self, view: _View, cmd: str, arg: Any = None) -> None:
        try:
            view.conn.send((cmd, arg))
        except OSError as e:
            raise DemoFailure(f"node {view.label} is gone ({e})") from None

    def pump(self, timeout: float) -> None:
        conns = {v.conn: v for v in self.live()}
        for conn in multiprocessing.connection.wait(list(conns), timeout):
            view = conns[conn]  # type: ignore[index]  # wait() returns the objects it was given
            try:
                while view.conn.poll():
                    self.on_report(view, view.conn.recv())
            except (EOFError, OSError):
                view.alive = False
                view.conn.close()
                if not view.killed:
                    raise DemoFailure(f"node {view.label} died unexpectedly") from None

    def on_report(self, v: _View, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "ready":
            v.ready, v.pid = True, msg[2]
            self.say(f"started (pid {v.pid}) on {self.settings[v.node_id]['bind']}", v.node_id)
        elif kind == "did":
            self.say(msg[2], v.node_id, msg[1])
        elif kind == "config":
            _, t, ring, members = msg
            self.say(f"ring {self.ring_name(ring)}: members {list(members)}", v.node_id, t)
        elif kind == "lock":
            _, t, (what, lock, holder, ring, position) = msg
            v.history.append(LockEvent(what, lock, holder, (ring[0], ring[1]), position))
            text = (
                f"{what:7} {lock:8} -> node {holder}   (ring {self.ring_name(ring)}, @{position})"
            )
            self.say(self.paint(text, "32" if what == "grant" else "31"), v.node_id, t)
        elif kind == "state":
            _, t, status, v.ring, v.members, v.queues, spans = msg
            v.spans = {
                r: PrimarySpan(tuple(m), first, last) for r, (m, first, last) in spans.items()
            }
            v.status = status
            if status in ("primary", "no quorum") and (status, v.ring) != v.shown:
                v.shown = (status, v.ring)
                size = f"{len(v.members)} of {self.n} nodes"
                if status == "primary":
                    self.say(f"state exchanged: primary component ({size})", v.node_id, t)
                elif status == "no quorum":
                    warn = self.paint("no quorum", "33")
                    self.say(f"state exchanged: {warn} ({size}): grants nothing", v.node_id, t)

    def wait(self, what: str, ready: Callable[[], bool], timeout: float = STEP_TIMEOUT) -> None:
        end = min(time.monotonic() + timeout, self.deadline)
        while not ready():
            left = end - time.monotonic()
            if left <= 0:
                raise DemoFailure(f"timed out waiting for {what}")
            self.pump(min(left, 0.1))

    def settle(self, quiet: float = 0.3, limit: float = 5.0) -> None:
        """Processes reports until none came for ``quiet`` seconds (at most ``limit``)."""
        end = min(time.monotonic() + limit, self.deadline)
        while time.monotonic() < end:
            conns = [v.conn for v in self.live()]
            if not multiprocessing.connection.wait(conns, quiet):
                return
            self.pump(0.0)

    def pause(self, seconds: float) -> None:
        end = time.monotonic() + (0.0 if self.fast else seconds)
        while (left := end - time.monotonic()) > 0:
            self.pump(min(left, 0.1))

    def close(self) -> None:
        """Stops the children (kill after a grace period) and removes the key."""
        for v in self.views.values():
            if v.proc.is_alive():
                with contextlib.suppress(OSError):
                    v.conn.send(("stop", None))
        end = time.monotonic() + 3.0
        for v in self.views.values():
            v.proc.join(max(0.0, end - time.monotonic()))
            if v.proc.is_alive():
                v.proc.kill()
                v.proc.join(2.0)
            v.conn.close()
        self.tmp.cleanup()

    # -- predicates -----------------------------------------------------------------------

    def one_ring(self, views: list[_View], status: str = "primary") -> bool:
        ids = tuple(sorted(v.node_id for v in views))
        return all(v.ready and v.status == status and v.members == ids for v in views) and (
            len({v.ring for v in views}) == 1
        )

    def same_tables(self, views: list[_View]) -> bool:
        return all(v.queues == views[0].queues for v in views)

    # -- the scenes -----------------------------------------------------------------------

    def play(self) -> int:
        n = self.n
        self.scene(f"Starting {n} nodes, one process each, on 127.0.0.1-{n} (udpu, AES-GCM)")
        for i in range(1, n + 1):
            self.start(i)
        self.wait(f"a ring of all {n} nodes", lambda: self.one_ring(self.live()), 45.0)
        self.pause(0.5)

        self.scene("(a) Every node requests the same two locks at the same time")
        locks = ["printer", "scanner"]
        for k, v in enumerate(self.live()):
            for lock in locks if k % 2 == 0 else reversed(locks):
                self.send(v, "request", lock)
        self.wait(
            "every node to queue every request",
            lambda: (
                self.same_tables(self.live())
                and all(len(self.live()[0].queues.get(lock, [])) == n for lock in locks)
            ),
        )
        table = self.live()[0].queues
        self.say(f"every node has the same queues: {_table(table)}")
        first, successor = table["printer"][0], table["printer"][1]
        self.say(f"node {first} releases printer; node {successor} is next everywhere")
        self.send(self.by_id(first), "release", "printer")
        self.wait(
            f"every node to grant printer to node {successor}",
            lambda: all(v.holder("printer") == successor for v in self.live()),
        )
        self.check_records("after (a)")
        grants = [(e.lock, e.holder) for e in self.live()[0].history if e.kind == "grant"]
        self.say(
            "every node granted in the same order: "
            + ", ".join(f"{lock}->{h}" for lock, h in grants)
        )
        self.pause(1.0)

        victim = self.by_id(successor)
        after = self.live()[0].queues["printer"][1]
        self.scene(f"(b) kill -9 node {victim.node_id}, which holds printer (next: node {after})")
        victim.killed = True
        os.kill(victim.pid, signal.SIGKILL)
        victim.alive = False
        self.say(self.paint(f"sent SIGKILL to node {victim.node_id} (pid {victim.pid})", "31"))
        survivors = self.live()
        self.wait(
            f"the survivors to release node {victim.node_id}'s locks",
            lambda: (
                self.one_ring(survivors)
                and self.same_tables(survivors)
                and all(victim.node_id not in q for q in survivors[0].queues.values())
            ),
        )
        if survivors[0].holder("printer") != after:
            raise DemoFailure(f"printer went to {survivors[0].holder('printer')}, not {after}")
        self.say(f"printer went to node {after} everywhere; queues: {_table(survivors[0].queues)}")
        self.say(
            f"(the regular configuration without node {victim.node_id} took it out of every "
            "queue, at the same position at every survivor)"
        )
        self.pause(0.5)
        self.say(f"restarting node {victim.node_id}: it starts empty and learns the table")
        self.start(victim.node_id)
        self.wait(
            f"node {victim.node_id} to rejoin",
            lambda: self.one_ring(self.live()) and self.same_tables(self.live()),
        )
        self.pause(1.0)

        scanner = self.live()[0].holder("scanner")
        ids = sorted(v.node_id for v in self.live())
        minority_ids = ([scanner] if scanner else []) + [i for i in reversed(ids) if i != scanner]
        minority_ids = sorted(minority_ids[: (n - 1) // 2])
        majority_ids = [i for i in ids if i not in minority_ids]
        minority = [self.by_id(i) for i in minority_ids]
        majority = [self.by_id(i) for i in majority_ids]
        self.scene(f"(c) Partition: {majority_ids} | {minority_ids} (scanner is held by {scanner})")
        for v in self.live():
            others = minority_ids if v in majority else majority_ids
            self.send(v, "isolate", others)
        self.wait(
            "the majority to form a primary component and the minority to lose its quorum",
            lambda: self.one_ring(majority) and self.one_ring(minority, status="no quorum"),
        )
        frozen = {v.label: len(v.history) for v in minority}
        self.send(minority[0], "request", "plotter")
        self.pause(0.3)
        self.send(majority[0], "request", "plotter")
        self.wait(
            f"the majority to grant plotter to node {majority_ids[0]}",
            lambda: all(v.holder("plotter") == majority_ids[0] for v in majority),
        )
        self.pause(1.0)
        if any(len(v.history) != frozen[v.label] for v in minority):
            raise DemoFailure("the minority granted or released a lock without quorum")
        self.say(f"majority: {_table(majority[0].queues)}")
        self.say(f"minority (frozen, no quorum): {_table(minority[0].queues)}")
        self.say(
            f"(only a component with a majority of the {n} nodes grants: two sides of a "
            "partition never both hand out a lock)"
        )

        self.scene("(d) The partition heals: the ring merges, the members exchange state")
        for v in self.live():
            self.send(v, "isolate", [])
        self.wait(
            "one primary ring with identical tables, the minority's request queued",
            lambda: (
                self.one_ring(self.live())
                and self.same_tables(self.live())
                and minority_ids[0] in self.live()[0].queues.get("plotter", [])
            ),
        )
        self.settle()
        if not self.same_tables(self.live()):
            raise DemoFailure("the lock tables differ after the merge")
        self.say(f"every node: {_table(self.live()[0].queues)}")
        self.say(
            "(the merged ring adopted the table of the latest primary component; the minority "
            "asked again for the locks it still wants)"
        )

        self.check_records("at the end")
        records = sum(len(v.history) for v in self.views.values())
        print(flush=True)
        verdict = (
            f"demo OK: {len(self.views)} node incarnations, {records} grants and releases "
            f"recorded, every pair agrees on every primary ring it shared, "
            f"{len(self.live())} survivors with identical lock tables"
        )
        self.say(self.paint(verdict, "1;32"))
        return 0

    def by_id(self, node_id: int) -> _View:
        return next(v for v in self.live() if v.node_id == node_id)

    def check_records(self, when: str) -> None:
        problems = check_histories(
            {k: v.history for k, v in self.views.items()},
            {k: v.spans for k, v in self.views.items()},
        )
        if problems:
            raise DemoFailure(f"records disagree {when}: " + "; ".join(problems))


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to protect
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _table(queues: dict[str, list[int]]) -> str:
    return ", ".join(f"{lock} {q}" for lock, q in sorted(queues.items())) or "(empty)"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def run(args: argparse.Namespace) -> int:
    """Runs the demo with the options of :func:`add_arguments`; returns the exit status."""
    demo = _Demo(args)
    try:
        return demo.play()
    except DemoFailure as e:
        demo.say(demo.paint(f"demo FAILED: {e}", "1;31"))
        return 1
    except KeyboardInterrupt:
        print(flush=True)
        demo.say("interrupted: stopping the nodes")
        return 130
    finally:
        demo.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evs.demo", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    from evs.demo import main as _main  # the children import evs.demo: use that module

    sys.exit(_main())
