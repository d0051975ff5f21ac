"""`evs demo` end to end: separate node processes on loopback, its verdict and exit status,
Ctrl-C, and the cleanup after a failure."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from evs import demo

PYTHON_DIR = Path(demo.__file__).resolve().parents[1]


def run_demo(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evs.demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(PYTHON_DIR)},
        check=False,
    )


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_the_demo_plays_every_scene_and_says_ok() -> None:
    out = run_demo("--fast")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1].split(maxsplit=2)[2].startswith("demo OK: "), lines[-1]
    for scene in ("(a) ", "(b) kill -9", "(c) Partition", "(d) The partition heals"):
        assert scene in out.stdout
    assert "sent SIGKILL" in out.stdout
    assert "no quorum" in out.stdout
    assert "\033[" not in out.stdout  # no colour when stdout is not a terminal
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_the_demo_with_five_nodes() -> None:
    """With 5 nodes the minority (2 nodes) forms a ring of its own, still without quorum."""
    out = run_demo("--nodes", "5", "--no-color", "--fast")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "demo OK: 6 node incarnations" in out.stdout
    assert "no quorum (2 of 5 nodes)" in out.stdout


def test_ctrl_c_stops_the_nodes_and_exits_130() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "evs.demo", "--no-color"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PYTHON_DIR)},
        start_new_session=True,  # Ctrl-C goes to the whole process group, as in a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        seen.append(line)
        if "(a) " in line or time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    out = "".join(seen) + rest
    assert proc.returncode == 130, out + err
    assert "interrupted: stopping the nodes" in out
    assert "Traceback" not in err, err
    pids = [int(p) for p in re.findall(r"started \(pid (\d+)\)", out)]
    assert pids
    deadline = time.monotonic() + 5
    while not all(gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(gone(p) for p in pids)


def test_a_failure_kills_the_nodes_and_removes_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[str] = []
    real = tempfile.TemporaryDirectory

    def recording(*args: Any, **kwargs: Any) -> tempfile.TemporaryDirectory[str]:
        d = real(*args, **kwargs)
        made.append(d.name)
        return d

    monkeypatch.setattr(demo.tempfile, "TemporaryDirectory", recording)
    monkeypatch.setattr(demo, "TOTAL_TIMEOUT", 3.0)
    monkeypatch.setattr(demo._Demo, "one_ring", lambda self, views, status="primary": False)
    args = argparse.Namespace(nodes=3, no_color=True, fast=True, token=500, verbose=False)
    assert demo.run(args) == 1
    out = capsys.readouterr().out
    assert "demo FAILED: timed out waiting for a ring of all 3 nodes" in out
    assert multiprocessing.active_children() == []
    assert made and not any(os.path.exists(d) for d in made)


def test_the_options() -> None:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.nodes, args.fast, args.no_color, args.token) == (3, False, False, 500)
    assert parser.parse_args(["--nodes", "9", "--fast"]).nodes == 9
    for bad in ("2", "10", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--nodes", bad])
