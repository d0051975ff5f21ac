"""The lock service of ``evs.locks`` (copy that module: it is ~400 lines and standalone) used
by three nodes of one process: each node asks for the same lock; they get it one after the
other, in the same order at every node; each holder "prints" and releases.

Run: ``python examples/locks.py``.
"""

from __future__ import annotations

import sys
import time

from evs.locks import LockService
from evs.testing import LocalCluster


def main() -> int:
    with LocalCluster(3) as cluster:
        services = [
            LockService(cluster.handle(i, groups="locks"), cluster_size=3) for i in range(3)
        ]
        # Let every service finish its first state exchange on the 3-node ring.
        deadline = time.monotonic() + 60
        while not all(s.status == "primary" for s in services):
            if time.monotonic() > deadline:
                print("no primary component formed in time")
                return 1
            for s in services:
                s.pump(timeout=0.01)
        for s in services:
            s.request("printer")
        order: list[int] = []
        while len(order) < 3 and time.monotonic() < deadline:
            for s in services:
                s.pump(timeout=0.01)
                if s.holds("printer") and s.node_id not in order:
                    order.append(s.node_id)
                    print(f"node {s.node_id} holds the printer, prints, releases it")
                    s.release("printer")
        # The last grant reaches the other nodes a moment after its holder saw it.
        while time.monotonic() < deadline and any(
            sum(h.kind == "grant" for h in s.history) < len(order) for s in services
        ):
            for s in services:
                s.pump(timeout=0.01)
        grants = [[h for h in s.history if h.kind == "grant"] for s in services]
        same = all(
            [(g.lock, g.holder) for g in gs] == [(g.lock, g.holder) for g in grants[0]]
            for gs in grants
        )
        print(f"grant order {order}; every node recorded the same grants: {same}")
        return 0 if len(order) == 3 and same else 1


if __name__ == "__main__":
    sys.exit(main())
