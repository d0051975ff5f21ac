"""The evs command: every subcommand, its output and its error paths (one line, no traceback,
non-zero exit). Runs the real console entry point in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

EVS = [sys.executable, "-m", "evs"]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EVS, *args], capture_output=True, text=True, timeout=timeout, env=env, input=stdin
    )


def assert_one_line_error(p: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert p.returncode != 0, p
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("evs: error:"), p.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_version_and_help() -> None:
    p = run("--version")
    assert p.returncode == 0 and p.stdout.startswith("evs ")
    p = run("--help")
    assert p.returncode == 0
    for cmd in ("keygen", "node", "status", "send", "listen", "bench", "demo"):
        assert cmd in p.stdout


def test_bad_command_line_is_exit_2_without_traceback() -> None:
    p = run("frobnicate")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "invalid choice" in p.stderr
    p = run("listen")
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_keygen_writes_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "authkey"
    p = run("keygen", str(key))
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = key.read_bytes()
    assert len(first) == 32
    assert_one_line_error(run("keygen", str(key)), "already exists")
    assert key.read_bytes() == first
    p = run("keygen", "--force", "--length", "64", str(key))
    assert p.returncode == 0 and len(key.read_bytes()) == 64 and key.read_bytes() != first
    assert_one_line_error(
        run("keygen", str(tmp_path / "no" / "such" / "dir" / "k")), "does not exist"
    )
    assert_one_line_error(run("keygen", "--length", "8", str(tmp_path / "short")))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, subprocess.Popen[str]]]:
    """A running `evs node` (one-node udpu ring on 127.0.0.1) with its own run directory."""
    key = tmp_path / "authkey"
    assert run("keygen", str(key)).returncode == 0
    port = free_port()
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        'cluster_name = "clitest"\nbind = "127.0.0.1"\n'
        f'port = {port}\ntransport = "udpu"\n'
        f'members = [{{ node_id = 7, address = "127.0.0.1:{port}" }}]\n'
        f'authkey = "{key}"\n'
    )
    env = dict(os.environ, EVS_RUN_DIR=str(tmp_path / "run"))
    proc = subprocess.Popen(
        [*EVS, "node", "-c", str(cfg), "--stats-interval", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    sock = tmp_path / "run" / "clitest-7.sock"
    deadline = time.monotonic() + 60
    while not sock.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "node did not open its control socket"
        time.sleep(0.05)
    try:
        yield env, cfg, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)  # also closes the pipes
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_node_status_send_listen_and_clean_shutdown(
    node: tuple[dict[str, str], Path, subprocess.Popen[str]],
) -> None:
    env, cfg, proc = node
    # status finds the only running node by itself, as text and as JSON
    p = run("status", env=env)
    assert p.returncode == 0, p.stderr
    assert "node 7 of cluster 'clitest'" in p.stdout and "members [7]" in p.stdout
    # the delivery buffer: "auto" on a ring of one is 2 send budgets and a window of packets
    limit = 2 * (1 << 20) + 50 * 1400
    assert f"delivery buffer: 0 bytes now, 0 at most, limit {limit} per handle" in p.stdout
    st = json.loads(run("status", "--json", env=env).stdout)
    assert st["node_id"] == 7 and st["members"] == [7] and st["stats"]["state"] == "operational"
    # and by configuration file
    assert run("status", "-c", str(cfg), env=env).returncode == 0

    listener = subprocess.Popen(
        [*EVS, "listen", "chat", "--count", "3", "--timeout", "60", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # Wait until the listener's handle has joined (visible in the node's group view).
    deadline = time.monotonic() + 60
    while "chat" not in json.loads(run("status", "--json", env=env).stdout)["groups"]:
        assert time.monotonic() < deadline and listener.poll() is None
        time.sleep(0.05)
    assert run("send", "chat,other", "hello", "--safe", env=env).returncode == 0
    p = run("send", "chat", "--lines", env=env, stdin="two\nthree\n")
    assert p.returncode == 0, p.stderr
    out, err = listener.communicate(timeout=60)
    assert listener.returncode == 0, err
    msgs = [json.loads(line) for line in out.splitlines()]
    texts = [m["text"] for m in msgs if m["type"] == "message"]
    assert texts == ["hello", "two", "three"]
    first = next(m for m in msgs if m["type"] == "message")
    assert first["groups"] == ["chat", "other"] and first["guarantee"] == "safe"
    assert all(m["sender"] == 7 for m in msgs if m["type"] == "message")
    seqs = [m["seq"] for m in msgs if m["type"] == "message"]
    assert seqs == sorted(seqs)

    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "regular configuration" in out and "stats: ring" in out and "shutting down" in out
    assert "Traceback" not in err
    # the socket is gone with the node
    assert_one_line_error(run("status", env=env), "no running node")


def test_listen_times_out_with_an_error_when_count_not_reached(
    node: tuple[dict[str, str], Path, subprocess.Popen[str]],
) -> None:
    env, _, _ = node
    p = run("listen", "quiet", "--count", "1", "--timeout", "0.5", env=env)
    assert_one_line_error(p, "received 0 of 1")


def test_send_errors(node: tuple[dict[str, str], Path, subprocess.Popen[str]]) -> None:
    env, _, _ = node
    assert_one_line_error(run("send", "x" * 33, "m", env=env), "32 bytes")
    assert_one_line_error(run("send", ",", "m", env=env), "no group")


def test_commands_without_a_node_fail_cleanly(tmp_path: Path) -> None:
    env = dict(os.environ, EVS_RUN_DIR=str(tmp_path / "empty"))
    for args in (("status",), ("send", "g", "m"), ("listen", "g")):
        assert_one_line_error(run(*args, env=env), "no running node")
    assert_one_line_error(
        run("status", "--control", str(tmp_path / "nope.sock"), env=env), "no node is running"
    )


def test_node_configuration_errors_are_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run("node", "-c", str(tmp_path / "missing.toml")), "missing.toml")
    assert_one_line_error(run("node", "--set", "bogus=1"), "bogus")
    assert_one_line_error(run("node", "--set", "bind"), "KEY=VALUE")
    key = tmp_path / "k"
    assert_one_line_error(
        run(
            "node",
            "--set",
            "bind=127.0.0.1",
            "--set",
            f"authkey={key}",
            "--set",
            "transport=udpu",
            "--set",
            "members=1=127.0.0.1",
        ),
        "authkey",
    )


def test_bench_on_a_local_cluster_prints_a_table_and_json() -> None:
    p = run("bench", "--nodes", "2", "--duration", "1", "--count", "50", "--size", "64")
    assert p.returncode == 0, p.stderr
    assert "msg/s" in p.stdout and "p50" in p.stdout
    p = run(
        "bench", "--nodes", "1", "--duration", "1", "--count", "20", "--crypto", "off", "--json"
    )
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["throughput"]["delivered_msgs"] > 0
    assert res["latency"]["round_trips"] == 20 and res["latency"]["p50_us"] > 0
    assert_one_line_error(run("bench", "--size", "4"), "--size")


def test_evs_demo_through_the_command_reaches_its_verdict() -> None:
    """`evs demo`, the README's first command, run non-interactively: exit 0 and `demo OK`."""
    p = run("demo", "--fast", "--no-color", timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "demo OK: " in p.stdout.strip().splitlines()[-1]
    bad = run("demo", "--nodes", "1")
    assert bad.returncode == 2 and "3 to 9 nodes" in bad.stderr and "Traceback" not in bad.stderr


def test_node_stops_cleanly_on_sigterm(
    node: tuple[dict[str, str], Path, subprocess.Popen[str]],
) -> None:
    env, _, proc = node
    assert run("status", env=env).returncode == 0
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "shutting down: leaving the ring" in out and "Traceback" not in err
    assert_one_line_error(run("status", env=env), "no running node")


def test_bench_with_a_config_runs_one_node_of_that_cluster(tmp_path: Path) -> None:
    """`evs bench -c FILE` measures through one node of a configured cluster: here node 1 of
    a two-node udpu cluster whose node 2 is an `evs node` process."""
    key = tmp_path / "authkey"
    assert run("keygen", str(key)).returncode == 0
    ports = {1: free_port(), 2: free_port()}
    members = ", ".join(f'{{ node_id = {i}, address = "127.0.0.1:{p}" }}' for i, p in ports.items())
    cfgs = {}
    for i, p in ports.items():
        cfgs[i] = tmp_path / f"node{i}.toml"
        cfgs[i].write_text(
            f'cluster_name = "benchtest"\nnode_id = {i}\nbind = "127.0.0.1"\nport = {p}\n'
            f'transport = "udpu"\nmembers = [{members}]\nauthkey = "{key}"\n'
        )
    env = dict(os.environ, EVS_RUN_DIR=str(tmp_path / "run"))
    other = subprocess.Popen(
        [*EVS, "node", "-c", str(cfgs[2]), "--json", "--stats-interval", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        p = run("bench", "-c", str(cfgs[1]), "--duration", "1", "--count", "20", "--json")
        assert p.returncode == 0, p.stderr
        res = json.loads(p.stdout)
        assert res["mode"] == "one node of cluster 'benchtest' (node 1)"
        assert res["throughput"]["delivered_msgs"] > 0
        assert res["latency"]["round_trips"] == 20 and res["latency"]["p50_us"] > 0
        assert other.poll() is None, other.communicate()
    finally:
        other.send_signal(signal.SIGTERM)
        out, err = other.communicate(timeout=30)
    # Node 2 saw node 1 join its ring while the benchmark ran.
    configs = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    assert any(c.get("type") == "config" and c["members"] == [1, 2] for c in configs), out + err


def test_send_options_anywhere_any_bytes_and_a_closed_pipe_is_quiet(
    node: tuple[dict[str, str], Path, subprocess.Popen[str]],
) -> None:
    env, _, _ = node
    listener = subprocess.Popen(
        [*EVS, "listen", "raw", "-n", "2", "--timeout", "60", "--json", "--messages-only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    while "raw" not in json.loads(run("status", "--json", env=env).stdout)["groups"]:
        assert time.monotonic() < deadline and listener.poll() is None
        time.sleep(0.05)
    # An option between the positionals, as with most commands.
    p = run("send", "raw", "-q", "between", env=env)
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    # Arguments are bytes on POSIX: a message that is not UTF-8 is sent as it is.
    p = subprocess.run([*EVS, "send", "raw", b"\xff\xfe"], capture_output=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    out, err = listener.communicate(timeout=60)
    assert listener.returncode == 0, err
    msgs = [json.loads(line) for line in out.splitlines()]
    assert msgs[0]["text"] == "between"
    assert msgs[1]["data"] == "//4="  # base64 of ff fe
    # `evs status | head -0`: the reader is gone before the output; no error, no traceback.
    status = subprocess.Popen(
        [*EVS, "status"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert status.stdout is not None
    status.stdout.close()
    _, err = status.communicate(timeout=60)
    assert err == "", err
    assert status.returncode == 141  # 128 + SIGPIPE, as a tool killed by the signal


def test_bench_size_over_max_message_size_is_one_line() -> None:
    p = run("bench", "--nodes", "1", "--size", "2000000", "--duration", "1", "--count", "5")
    assert_one_line_error(p, "--size 2000000", "max_message_size")
    assert "Exception in thread" not in p.stderr
