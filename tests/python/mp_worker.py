"""One process of the multi-process test: an evs.Node of its own, sending its share of the
messages while recording every message it delivers.

Usage: python mp_worker.py CONFIG.json NODE_ID OUTFILE
Prints "joined" once all three handles are in the group, "done" once it has written OUTFILE,
then waits for its stdin to close before it shuts its node down (so that no node leaves while
another is still receiving).
"""

from __future__ import annotations

import json
import sys
import threading
import time

import evs


def main() -> None:
    with open(sys.argv[1]) as f:
        conf = json.load(f)
    me = int(sys.argv[2])
    out = sys.argv[3]
    ports = {int(k): v for k, v in conf["ports"].items()}
    members = [{"node_id": i, "address": f"127.0.0.{i}:{p}"} for i, p in sorted(ports.items())]
    node = evs.Node(
        cluster_name=conf["cluster_name"],
        node_id=me,
        bind=f"127.0.0.{me}",
        port=ports[me],
        transport="udpu",
        members=members,
        authkey=conf["authkey"],
    )
    per_sender, total = conf["per_sender"], conf["per_sender"] * len(ports)
    deadline = time.monotonic() + conf["timeout"]
    h = evs.Handle(node, groups="mp")
    # Once this node's view holds all three handles, its messages are ordered after their
    # joins and so reach all of them.
    while len(h.group_membership("mp")) < len(ports):
        if time.monotonic() > deadline:
            sys.exit(f"node {me}: the group never filled: {h.group_membership('mp')}")
        time.sleep(0.01)
    print("joined", flush=True)

    def send() -> None:
        for k in range(per_sender):
            h.mcast_joined(b"%d:%d" % (me, k), timeout=None)

    sender = threading.Thread(target=send)
    sender.start()
    delivered: list[tuple[int, bytes]] = []
    while len(delivered) < total:
        left = deadline - time.monotonic()
        if left <= 0:
            sys.exit(f"node {me}: {len(delivered)} of {total} messages delivered")
        try:
            events = h.recv_many(4096, timeout=left)
        except evs.TimeoutError:
            continue
        delivered += [(e.sender, e.data) for e in events if isinstance(e, evs.Message)]
    sender.join()
    with open(out, "w") as f:
        for sender_id, data in delivered:
            f.write(f"{sender_id} {data.decode()}\n")
    print("done", flush=True)
    sys.stdin.read()
    node.shutdown()


if __name__ == "__main__":
    main()
