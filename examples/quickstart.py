"""Quick start: three nodes in this process, real UDP on loopback, AES-256-GCM.

Every node multicasts to group "chat" at the same time; every node delivers the messages in
the same agreed order (its own included). Then node 3 stops, and the others see the
configuration change. Run: ``python examples/quickstart.py``.
"""

from __future__ import annotations

import sys
import threading

import evs
from evs.testing import LocalCluster

PER_NODE = 5


def main() -> int:
    with LocalCluster(3) as cluster:
        print(f"ring {cluster[0].ring_id()} formed with members {cluster[0].membership()[1]}")
        handles = [cluster.handle(i, groups="chat") for i in range(3)]
        for h in handles:  # wait until every node's view has all three handles in "chat"
            next(
                e
                for e in h.events(timeout=30)
                if isinstance(e, evs.GroupChange) and len(e.members) == 3
            )

        def talk(h: evs.Handle) -> None:
            for k in range(PER_NODE):
                h.mcast_joined(f"node {h.node_id} says {k}".encode())

        senders = [threading.Thread(target=talk, args=(h,)) for h in handles]
        for t in senders:
            t.start()
        for t in senders:
            t.join()

        orders = []
        for h in handles:
            got = []
            for ev in h.events(timeout=30):
                if isinstance(ev, evs.Message):
                    got.append(ev.data.decode())
                    if len(got) == 3 * PER_NODE:
                        break
            orders.append(got)
        for line in zip(*orders):
            print("  |  ".join(f"{m:<14}" for m in line))
        same = all(o == orders[0] for o in orders)
        print("every node delivered the same order:", same)

        cluster.stop(2)
        for ev in handles[0].events(timeout=30):
            if isinstance(ev, evs.ConfigChange):
                print(
                    f"node 1 sees {ev.kind.__repr__()}: members {list(ev.members)}, "
                    f"left {list(ev.left)}"
                )
                if ev.kind == evs.REGULAR:
                    break
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
