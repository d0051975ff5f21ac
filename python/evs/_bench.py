"""``evs bench``: throughput and latency through the Python API.

On a local cluster (default: 3 nodes in this process over UDP on loopback, crypto on), every
node sends as fast as the send budget allows for ``--duration`` seconds while node 1 counts
what it delivers; then node 1 measures self-delivery latency (send one message, wait for it)
on the idle ring. With ``-c/--set`` it instead starts one node of an existing cluster in this
process, which sends alone while the others only forward.

A progress bar goes to stderr when it is a terminal; the summary table to stdout (``--json``
for a JSON object).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import threading
import time
from typing import Any

from ._cli_common import CliError, settings_from_pairs
from ._evs import Message
from ._node import Handle, Node
from .errors import EvsError, HandleClosedError
from .errors import TimeoutError as EvsTimeoutError

GROUP = "evs-bench"
_HDR = struct.Struct("<IQ")  # sender node id, sequence


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=3, help="local cluster size (default 3)")
    p.add_argument("--size", type=int, default=1024, help="message bytes (default 1024)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of sending (default 5)")
    p.add_argument("--count", type=int, default=2000, help="latency round trips (default 2000)")
    p.add_argument("--crypto", choices=["on", "off"], default="on", help="default on")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


class _Progress:
    def __init__(self, total: float, enabled: bool) -> None:
        self.total, self.enabled, self.start = total, enabled, time.monotonic()

    def show(self, label: str, done: float, extra: str = "") -> None:
        if not self.enabled:
            return
        frac = min(1.0, done / self.total) if self.total else 1.0
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{label:<11}[{bar:<30}] {frac * 100:5.1f}% {extra:<30}")
        sys.stderr.flush()

    def end(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def _wait_group(h: Handle, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(h.group_membership(GROUP)) < n:
        if time.monotonic() > deadline:
            raise EvsTimeoutError(f"the bench group did not reach {n} members in {timeout:.0f} s")
        time.sleep(0.02)


def _throughput(
    handles: list[Handle], receiver: Handle, size: int, duration: float, prog: _Progress
) -> dict[str, Any]:
    stop = threading.Event()
    payload_tail = b"x" * max(0, size - _HDR.size)

    failures: list[EvsError] = []

    def send(h: Handle) -> None:
        seq = 0
        with_id = h.node_id
        while not stop.is_set():
            try:
                h.mcast_groups(GROUP, _HDR.pack(with_id, seq) + payload_tail, timeout=0.2)
                seq += 1
            except EvsTimeoutError:
                continue
            except HandleClosedError:
                return
            except EvsError as e:  # reported by the main thread, not as a thread traceback
                failures.append(e)
                stop.set()
                return

    threads = [threading.Thread(target=send, args=(h,), daemon=True) for h in handles]
    start = time.monotonic()
    for t in threads:
        t.start()
    delivered = 0
    nbytes = 0
    end = start + duration
    while not failures:
        now = time.monotonic()
        if now >= end:
            break
        try:
            batch = receiver.recv_many(4096, timeout=min(0.25, end - now))
        except EvsTimeoutError:
            batch = []
        for ev in batch:
            if isinstance(ev, Message):
                delivered += 1
                nbytes += len(ev)
        elapsed = time.monotonic() - start
        prog.show("throughput", elapsed, f"{delivered / max(elapsed, 1e-9):,.0f} msg/s")
    elapsed = time.monotonic() - start
    stop.set()
    for t in threads:
        t.join(5)
    if failures:
        raise failures[0]
    # Drain what is left so the latency phase starts on an idle ring.
    while True:
        try:
            receiver.recv_many(4096, timeout=0.5)
        except EvsTimeoutError:
            break
    prog.end()
    return {
        "senders": len(handles),
        "delivered_msgs": delivered,
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(delivered / elapsed, 1),
        "MB_per_s": round(nbytes / elapsed / 1e6, 3),
    }


def _latency(h: Handle, size: int, count: int, prog: _Progress) -> dict[str, Any]:
    samples: list[float] = []
    tail = b"l" * max(0, size - _HDR.size)
    me = h.node_id
    for i in range(count):
        t0 = time.perf_counter()
        h.mcast_joined(_HDR.pack(me, i) + tail)
        while True:
            ev = h.recv(timeout=10.0)
            if (
                isinstance(ev, Message)
                and ev.sender == me
                and ev.sender_handle == h.id
                and _HDR.unpack_from(ev.data)[1] == i
            ):
                break
        samples.append((time.perf_counter() - t0) * 1e6)
        if i % 50 == 0:
            prog.show("latency", i + 1)
    prog.show("latency", count)
    prog.end()
    samples.sort()
    return {
        "round_trips": count,
        "p50_us": round(_percentile(samples, 0.5), 1),
        "p90_us": round(_percentile(samples, 0.9), 1),
        "p99_us": round(_percentile(samples, 0.99), 1),
        "max_us": round(samples[-1], 1),
    }


def run(args: argparse.Namespace) -> int:
    if args.size < _HDR.size:
        raise CliError(f"--size must be at least {_HDR.size} bytes")
    if args.duration <= 0 or args.count < 1 or args.nodes < 1:
        raise CliError("--duration, --count and --nodes must be positive")
    tty = sys.stderr.isatty()
    settings = settings_from_pairs(getattr(args, "set", None))
    cluster = None
    nodes: list[Node]
    if getattr(args, "config", None) or settings:
        nodes = [Node(args.config, **settings)]
        mode = f"one node of cluster {nodes[0].cluster_name!r} (node {nodes[0].node_id})"
    else:
        from .testing import LocalCluster

        if args.crypto == "off":
            settings["crypto"] = "none"
        cluster = LocalCluster(args.nodes, **settings)
        nodes = list(cluster)
        mode = f"local cluster of {args.nodes} node(s), crypto {args.crypto}"
    try:
        largest = nodes[0].max_message_size
        if args.size > largest:
            raise CliError(
                f"--size {args.size} exceeds the nodes' max_message_size ({largest} bytes)"
            )
        # Node 1's handle sends and counts; the others only send (to the group, without
        # joining it), so that no unread queue fills up.
        handles = [Handle(nodes[0], groups=GROUP, queue_capacity=1 << 20)]
        handles += [Handle(n) for n in nodes[1:]]
        _wait_group(handles[0], 1)
        tput = _throughput(
            handles, handles[0], args.size, args.duration, _Progress(args.duration, tty)
        )
        # Other nodes' handles must not fill up while node 1 measures latency.
        for h in handles[1:]:
            h.close()
        lat = _latency(handles[0], args.size, args.count, _Progress(args.count, tty))
    except EvsError as e:
        raise CliError(f"benchmark failed: {e}") from e
    finally:
        if cluster is not None:
            cluster.close()
        else:
            for n in nodes:
                n.shutdown()
    result = {"mode": mode, "size": args.size, "throughput": tput, "latency": lat}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"evs bench: {mode}, {args.size}-byte messages")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| senders | {tput['senders']} |")
    print(
        f"| delivered at node {nodes[0].node_id} | {tput['msgs_per_s']:,.0f} msg/s "
        f"({tput['MB_per_s']:.2f} MB/s) |"
    )
    print(
        f"| self-delivery latency p50 / p90 / p99 | {lat['p50_us']:.0f} / {lat['p90_us']:.0f}"
        f" / {lat['p99_us']:.0f} µs |"
    )
    return 0
