"""Behaviour at the process level, each in a child interpreter: Ctrl-C interrupts blocking
calls, the interpreter exits cleanly with live nodes and handles, the default node follows
EVS_CONFIG."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

import evs
from support import PYTHON, child_env, free_port

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.timeout(180)]

# The bound for Ctrl-C is 100 ms from the signal to KeyboardInterrupt. Blocking calls
# wait in slices of 50 ms, so the expected figure is at most ~55 ms; the allowance covers a
# noisy 2-core machine scheduling the woken thread late.
CTRL_C_BOUND = 0.100
CTRL_C_ALLOWANCE = 0.050


def run_child(code: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    # -X dev: warnings such as ResourceWarning at exit show up on stderr.
    return subprocess.run(
        [PYTHON, "-X", "dev", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(**env),
    )


# A node whose ring has lost its token for a minute: a two-node ring with a long token
# timeout, whose second node (a grandchild process) is then killed without leaving. Until the
# token-loss timeout nothing is sent or delivered, so a receive waits, and so does a send once
# the send budget (about one message) is used up.
STUCK_NODE = """
import os, subprocess, sys, threading, time, json, tempfile
import evs

tmp = tempfile.mkdtemp()
key = os.path.join(tmp, "authkey")
evs.keygen(key)
ports = {{1: {port1}, 2: {port2}}}
members = [{{"node_id": i, "address": f"127.0.0.{{i}}:{{p}}"}} for i, p in ports.items()]
settings = dict(transport="udpu", authkey=key, members=members, token=60000,
                cluster_name="stuck-{port1}", max_message_size=1000, send_queue_bytes=1000)
peer_code = f\"\"\"
import sys, evs
node = evs.Node(bind="127.0.0.2", port={{ports[2]}}, node_id=2, **{{settings!r}})
sys.stdin.read()  # until the parent goes away
\"\"\"
peer = subprocess.Popen([sys.executable, "-c", peer_code], stdin=subprocess.PIPE)
node = evs.Node(bind="127.0.0.1", port=ports[1], node_id=1, **settings)
deadline = time.monotonic() + 60
while node.membership()[1] != [1, 2]:
    assert time.monotonic() < deadline, "no ring of two"
    time.sleep(0.01)
h = evs.Handle(node, groups="g")
while h.group_membership("g") != [(1, h.id)]:
    assert time.monotonic() < deadline, "own join not delivered"
    time.sleep(0.01)
peer.kill()
peer.wait()
# Node 1 may hold the token at this moment and deliver what it sends with it; probe until
# a message stays undelivered, which means the token went to the dead peer.
while True:
    while h.try_recv() is not None:
        pass
    h.mcast_joined(b"probe", timeout=5)
    try:
        while not isinstance(h.recv(timeout=2), evs.Message):
            pass
    except evs.TimeoutError:
        break
    assert time.monotonic() < deadline, "the ring never stalled"
"""

CTRL_C_CHILD = """
entered = threading.Event()
sent_at = []

def interrupt():
    entered.wait()
    time.sleep(0.3)  # let the main thread settle into the wait
    sent_at.append(time.monotonic())
    os.kill(os.getpid(), 2)

threading.Thread(target=interrupt, daemon=True).start()
if "{what}" == "mcast":
    try:
        for _ in range(100):
            h.mcast_joined(b"x" * 500, timeout=0)  # fills the send budget; never sent
        raise SystemExit("the send budget never ran out")
    except evs.TryAgainError:
        pass
try:
    entered.set()
    if "{what}" == "recv":
        h.recv(timeout=None)
    else:
        h.mcast_joined(b"y" * 500, timeout=None)
except KeyboardInterrupt:
    print(json.dumps({{"elapsed": time.monotonic() - sent_at[0]}}))
    sys.exit(0)
print(json.dumps({{"error": "the call returned"}}))
sys.exit(1)
"""


@pytest.mark.parametrize("what", ["recv", "mcast"])
def test_ctrl_c_interrupts_a_blocking_call_quickly(what: str) -> None:
    ports = {"port1": free_port("127.0.0.1"), "port2": free_port("127.0.0.2")}
    code = STUCK_NODE.format(**ports) + CTRL_C_CHILD.format(what=what)
    proc = run_child(code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(what, result)
    assert result["elapsed"] < CTRL_C_BOUND + CTRL_C_ALLOWANCE, result


def test_interpreter_exit_with_live_nodes_and_handles() -> None:
    # Nodes, handles with queued events, threads blocked in recv and in a send, the default
    # node: nothing is closed by the program. Exit must neither hang nor crash.
    code = """
    import threading
    import evs
    from evs.testing import LocalCluster

    cluster = LocalCluster(3)
    handles = [cluster.handle(i, groups="left-open") for i in range(3)]
    for i in range(50):
        handles[0].mcast_joined(b"%d" % i)
    blocked = cluster.handle(1)
    while blocked.try_recv() is not None:
        pass

    def wait():
        try:
            blocked.recv()
        except evs.HandleClosedError:  # the exit handler stopped the node: expected
            pass

    threading.Thread(target=wait, daemon=True).start()
    threading.Thread(target=lambda: list(handles[2].events()), daemon=True).start()
    default = evs.Handle(groups="dflt")
    default.mcast_joined(b"pending")
    stuck = cluster.handle(2, queue_capacity=1, groups="left-open")  # will overflow
    print("ready", flush=True)
    """
    proc = run_child(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ready"
    assert "Traceback" not in proc.stderr
    assert "panicked" not in proc.stderr
    # The default node's key directory is the library's to remove (an unclosed LocalCluster
    # may warn about its own: that one is the program's to close).
    assert "evs-default" not in proc.stderr


def test_default_node_follows_evs_config(tmp_path: Path) -> None:
    key = tmp_path / "authkey"
    evs.keygen(str(key))
    port = free_port("127.0.0.1")
    conf = tmp_path / "evs.toml"
    conf.write_text(
        f'cluster_name = "from-env"\nnode_id = 42\nbind = "127.0.0.1"\nport = {port}\n'
        f'transport = "udpu"\nmembers = [{{ node_id = 42, address = "127.0.0.1:{port}" }}]\n'
        f'authkey = "{key}"\n'
    )
    code = """
    import json, evs
    with evs.Handle(groups="env") as h:
        node = evs.default_node()
        assert h.node is node
        for ev in h.events(timeout=30):
            if isinstance(ev, evs.GroupChange):
                break
        h.mcast_joined(b"hi")
        msg = next(e for e in h.events(timeout=30) if isinstance(e, evs.Message))
        print(json.dumps([node.cluster_name, node.node_id, list(node.local_addr),
                          msg.sender, msg.data.decode()]))
    """
    proc = run_child(code, EVS_CONFIG=str(conf))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["from-env", 42, ["127.0.0.1", port], 42, "hi"]


def test_default_node_with_a_bad_evs_config_is_a_config_error(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('bind = "127.0.0.1"\nport = "many"\ncrypto = "none"\n')
    code = """
    import evs
    try:
        evs.Handle()
    except evs.ConfigError as e:
        print(e.key)
    """
    proc = run_child(code, EVS_CONFIG=str(conf))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "port"


def test_library_adds_no_logging_handlers() -> None:
    code = """
    import logging, evs
    from evs.testing import LocalCluster
    with LocalCluster(2) as c:
        h = c.handle(0, groups="x")
        h.mcast_joined(b"x")
        names = [n for n in logging.root.manager.loggerDict if n.startswith("evs")]
        assert logging.root.handlers == [], logging.root.handlers
        for n in ["evs", *names]:
            assert logging.getLogger(n).handlers == [], n
    print("ok")
    """
    proc = run_child(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_fork_child_gets_clear_errors_at_once_and_exits_at_once() -> None:
    # The child of a fork inherits the parent's node and handle objects but not the runtime
    # thread that serves them: every call on them raises NodeStoppedError at once, shutdown
    # and close are quiet no-ops, the child exits at once, and the parent's node carries on.
    code = """
    import json, os, sys, time, warnings
    import evs

    warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (3.12+)
    h = evs.Handle(groups="g")
    node = h.node
    h.mcast_joined(b"before")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out = {}
        def timed(name, call):
            t = time.monotonic()
            try:
                call()
                out[name] = "returned"
            except evs.NodeStoppedError as e:
                out[name] = "NodeStoppedError: " + str(e)
            out[name + "_s"] = time.monotonic() - t
        timed("mcast", lambda: h.mcast_joined(b"from child"))
        timed("recv", lambda: h.recv(timeout=5))
        timed("try_recv", h.try_recv)
        timed("join", lambda: h.join("other"))
        timed("membership", h.membership)
        timed("stats", node.stats)
        timed("handle", lambda: evs.Handle(node))
        out["is_running"] = node.is_running
        t = time.monotonic()
        h.close()
        node.shutdown()
        out["close_s"] = time.monotonic() - t
        fresh = evs.Handle(groups="child")  # a new default node of the child's own
        fresh.mcast_joined(b"mine")
        while not isinstance(fresh.recv(timeout=10), evs.Message):
            pass
        out["fresh_node"] = fresh.node is not node
        os.write(w, (json.dumps(out) + "\\n").encode())
        os.write(w, (json.dumps(time.monotonic()) + "\\n").encode())
        sys.exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        child = json.loads(f.readline())
        exit_started = json.loads(f.readline())
    os.waitpid(pid, 0)
    child["exit_s"] = time.monotonic() - exit_started
    # The parent's node is unaffected: its own messages still come back.
    h.mcast_joined(b"after")
    got = []
    while len(got) < 2:
        ev = h.recv(timeout=10)
        if isinstance(ev, evs.Message):
            got.append(ev.data)
    child["parent_got"] = [g.decode() for g in got]
    print(json.dumps(child))
    """
    proc = run_child(code, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(out)
    for name in ["mcast", "recv", "try_recv", "join", "membership", "stats", "handle"]:
        assert out[name].startswith("NodeStoppedError"), (name, out[name])
        assert "fork" in out[name], out[name]
        assert out[name + "_s"] < 0.5, (name, out)
    assert out["is_running"] is False
    assert out["close_s"] < 0.5, out
    assert out["fresh_node"] is True
    assert out["exit_s"] < 2.0, out
    assert out["parent_got"] == ["before", "after"]


def test_exit_with_a_non_daemon_thread_blocked_in_recv() -> None:
    # The main thread ends while a non-daemon thread waits without limit: interpreter
    # shutdown stops the nodes before it joins such threads, so the wait ends with
    # HandleClosedError and the process exits.
    code = """
    import threading, time
    import evs

    h = evs.Handle(groups="g")

    def wait():
        try:
            h.recv(None)
            while True:
                h.recv(None)
        except evs.HandleClosedError as e:
            print("closed:", type(e).__name__, flush=True)

    threading.Thread(target=wait).start()
    time.sleep(0.2)
    print("main done", flush=True)
    """
    t = time.monotonic()
    proc = run_child(code, timeout=30)
    elapsed = time.monotonic() - t
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split("\n")[:2] == ["main done", "closed: HandleClosedError"], proc.stdout
    assert "Traceback" not in proc.stderr
    assert elapsed < 15, elapsed


def test_closed_handles_free_their_descriptors_for_new_ones_at_once() -> None:
    # The case: at the descriptor limit, close every handle and open as many again.
    code = """
    import resource
    import evs

    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    node = evs.Handle().node
    handles = []
    try:
        while True:
            handles.append(evs.Handle(node))
    except OSError:
        pass
    assert len(handles) > 200, len(handles)
    for h in handles:
        h.close()
    again = [evs.Handle(node) for _ in handles]
    print(len(again))
    """
    proc = run_child(code)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 200
