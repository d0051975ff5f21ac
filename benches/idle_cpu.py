#!/usr/bin/env python3
"""CPU use of node processes on an idle ring.

Starts N node processes (tests/netns/harness.py: one per network namespace, aes256gcm, the
default protocol configuration except the harness's token 1000 ms / consensus 1200 ms), waits
until they form one ring, lets the ring settle (the representative then holds the token), and
reads each process's user + system CPU time from /proc over ``--seconds``. The harness's
worker sends one message per ``1 / rate`` seconds; here the rate is one per 1000 s, so nothing is
sent, and writes a stats line to its trace every 2 s.

    sudo .venv/bin/python benches/idle_cpu.py --nodes 3 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.netns.harness import Cluster, missing_requirements


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=10.0)
    a = ap.parse_args(argv)
    why = missing_requirements()
    if why:
        print(f"idle_cpu.py: {why}", file=sys.stderr)
        return 2
    hz = os.sysconf("SC_CLK_TCK")
    with Cluster(
        a.nodes,
        prefix="evsic",
        subnet="10.213.12",
        mcast="239.192.213.12",
        workdir="/tmp/evsic-work",
        rate=0.001,
    ) as c:
        hosts = list(range(1, a.nodes + 1))
        c.start_all(hosts)
        c.wait_ring(hosts, timeout=120)
        time.sleep(a.settle)
        pids = {w.host: w.proc.pid for w in c.workers}
        before = {h: cpu_ticks(p) for h, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(a.seconds)
        elapsed = time.monotonic() - t0
        after = {h: cpu_ticks(p) for h, p in pids.items()}
        c.stop()
    print(f"| node | CPU % over {elapsed:.0f} s (user + system, 1/{hz} s ticks) |")
    print("|---:|---:|")
    for h in hosts:
        pct = 100.0 * (after[h] - before[h]) / hz / elapsed
        print(f"| {h} | {pct:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
