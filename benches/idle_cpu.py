#!/usr/bin/env python3
"""CPU use of node processes on an idle ring.

Starts N node processes, one per network namespace (tests/netns/harness.py: a bridge,
aes256gcm, multicast), waits until they form one ring, lets the ring settle (the
representative then holds the token between rotations), and reads each process's CPU time
(the sum of its threads' /proc schedstat run time) over ``--seconds``. Nothing is sent.

``--app`` picks the process:

* ``lib`` (default): ``benches/idle_app.py``, the smallest real application: one node, one
  handle joined to a group, the main thread blocked in ``Handle.events()``;
* ``cli``: ``evs node --json --stats-interval 0`` (the CLI's node, with its control socket);
* ``worker``: the fault-test worker of tests/netns (a receiver thread, a sender thread with
  nothing to send, a trace it writes a stats line to every 2 s).

``--timers`` picks the protocol timers: ``default`` (the library's: token 3000 ms +
650 ms per member beyond two, hold 561 ms at 3 nodes) or ``harness`` (the fault tests':
token 1000 ms, token_coefficient 0, so the representative holds the token 180 ms and the
token goes round about 5 times a second).

    sudo .venv/bin/python benches/idle_cpu.py --nodes 3 --seconds 60 --app lib --timers default
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.netns.harness import PORT, Cluster, missing_requirements  # noqa: E402

HARNESS_TIMERS = {"token": 1000, "token_coefficient": 0, "consensus": 1200}


def cpu_ns(pid: int) -> int:
    """CPU time of the process's live threads in ns (schedstat: exact, unlike the 10 ms
    ticks of /proc/PID/stat). The apps keep their threads for the whole run."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{t}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def start_app(
    c: Cluster, i: int, app: str, timers: dict[str, int]
) -> tuple[subprocess.Popen[bytes], Path]:
    """Starts the lib or cli app on host i; its stdout (JSON lines) goes to a file."""
    settings = {
        "cluster_name": c.cluster_name,
        "node_id": i,
        "bind": c.addr(i),
        "port": PORT,
        "transport": "multicast",
        "multicast_address": c.mcast,
        "crypto": c.crypto,
        "authkey": str(c.key),
        **timers,
    }
    sets = [x for k, v in settings.items() for x in ("--set", f"{k}={v}")]
    if app == "lib":
        cmd = [c.python, str(ROOT / "benches" / "idle_app.py"), *sets]
    else:
        control = c.workdir / f"h{i}.sock"
        cmd = [c.python, "-m", "evs", "node", "--json", "--stats-interval", "0",
               "--control", str(control), *sets]  # fmt: skip
    out = c.workdir / f"h{i}.out"
    with out.open("wb") as f, (c.workdir / f"h{i}.err").open("wb") as err:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", c.ns(i), *cmd], stdout=f, stderr=err, start_new_session=True
        )
    with c.pidfile.open("a") as pf:
        pf.write(f"{proc.pid}\n")
    return proc, out


def last_members(out: Path) -> list[int] | None:
    members = None
    with contextlib.suppress(FileNotFoundError):
        for line in out.read_text().splitlines():
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if ev.get("type") == "config" and ev.get("kind") == "regular":
                    members = ev["members"]
    return members


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--app", choices=("lib", "cli", "worker"), default="lib")
    ap.add_argument("--timers", choices=("default", "harness"), default="default")
    a = ap.parse_args(argv)
    why = missing_requirements()
    if why:
        print(f"idle_cpu.py: {why}", file=sys.stderr)
        return 2
    timers = HARNESS_TIMERS if a.timers == "harness" else {}
    hosts = list(range(1, a.nodes + 1))
    apps: dict[int, subprocess.Popen[bytes]] = {}
    with Cluster(
        a.nodes,
        prefix="evsic",
        subnet="10.213.12",
        mcast="239.192.213.12",
        workdir="/tmp/evsic-work",
        rate=0.001,
    ) as c:
        try:
            if a.app == "worker":
                c.settings = dict(timers)
                c.start_all(hosts)
                c.wait_ring(hosts, timeout=120)
                pids = {w.host: w.proc.pid for w in c.workers}
            else:
                outs = {}
                for i in hosts:
                    apps[i], outs[i] = start_app(c, i, a.app, timers)
                deadline = time.monotonic() + 120
                while not all(last_members(outs[i]) == hosts for i in hosts):
                    dead = [i for i in hosts if apps[i].poll() is not None]
                    if dead or time.monotonic() > deadline:
                        raise RuntimeError(f"no ring of {hosts} (exited: {dead})")
                    time.sleep(0.2)
                pids = {i: p.pid for i, p in apps.items()}
            time.sleep(a.settle)
            before = {h: cpu_ns(p) for h, p in pids.items()}
            t0 = time.monotonic()
            time.sleep(a.seconds)
            elapsed = time.monotonic() - t0
            after = {h: cpu_ns(p) for h, p in pids.items()}
        finally:
            for p in apps.values():
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
            for p in apps.values():
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if a.app == "worker":
                c.stop()
    print(f"app {a.app}, timers {a.timers}, {a.nodes} nodes")
    print(f"| node | CPU % over {elapsed:.0f} s (all threads, schedstat) |")
    print("|---:|---:|")
    for h in hosts:
        pct = 100.0 * (after[h] - before[h]) / 1e9 / elapsed
        print(f"| {h} | {pct:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
