"""The local control socket of ``evs node``: what ``evs status``, ``send`` and ``listen`` use.

A Unix stream socket (mode 0600 in a 0700 directory: only the node's user may use it).
Each connection sends one JSON request line and reads JSON lines back:

* ``{"op": "status"}`` -> one object: node id, cluster, ring id, members, per-group
  membership, stats.
* ``{"op": "send", "groups": [...], "data": "<base64>", "guarantee": "agreed"|"safe"}``
  -> ``{"ok": true}`` once the node accepted the message.
* ``{"op": "listen", "groups": [...]}`` -> ``{"ok": true}``, then one object per event of a
  handle joined to those groups, until the client disconnects or the node stops.

Errors are ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any

from ._evs import ConfigChange, ConfigKind, GroupChange, Guarantee, Message
from ._node import Handle, Node
from ._types import Event
from .errors import EvsError

__all__ = ["ControlServer", "default_socket_path", "event_to_json", "request", "stream"]


def run_dir() -> str:
    """Where control sockets live by default: ``$EVS_RUN_DIR``, else ``/run/evs`` for root,
    else ``$XDG_RUNTIME_DIR/evs``, else ``/tmp/evs-<uid>``."""
    if os.environ.get("EVS_RUN_DIR"):
        return os.environ["EVS_RUN_DIR"]
    if os.geteuid() == 0:
        return "/run/evs"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "evs")
    return f"/tmp/evs-{os.geteuid()}"


def default_socket_path(cluster: str, node_id: int) -> str:
    return os.path.join(run_dir(), f"{cluster}-{node_id}.sock")


def _name(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


def event_to_json(ev: Event) -> dict[str, Any]:
    """An event as a JSON-able dict (payloads in base64, plus ``text`` when UTF-8)."""
    if isinstance(ev, Message):
        out: dict[str, Any] = {
            "type": "message",
            "sender": ev.sender,
            "sender_handle": ev.sender_handle,
            "groups": [_name(g) for g in ev.groups],
            "ring_id": str(ev.ring_id),
            "seq": ev.seq,
            "index": ev.index,
            "guarantee": "safe" if ev.guarantee == Guarantee.SAFE else "agreed",
            "data": base64.b64encode(ev.data).decode(),
        }
        with contextlib.suppress(UnicodeDecodeError):
            out["text"] = ev.data.decode()
        return out
    if isinstance(ev, ConfigChange):
        return {
            "type": "config",
            "kind": "regular" if ev.kind == ConfigKind.REGULAR else "transitional",
            "ring_id": str(ev.ring_id),
            "members": list(ev.members),
            "left": list(ev.left),
            "joined": list(ev.joined),
        }
    assert isinstance(ev, GroupChange)
    return {
        "type": "group",
        "group": _name(ev.group),
        "members": [list(m) for m in ev.members],
        "joined": [list(m) for m in ev.joined],
        "left": [list(m) for m in ev.left],
    }


def _jsonable(v: object) -> object:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def status_of(node: Node) -> dict[str, Any]:
    return {
        "ok": True,
        "node_id": node.node_id,
        "cluster": node.cluster_name,
        "address": list(node.local_addr),
        "ring_id": str(node.ring_id()),
        "members": node.membership()[1],
        "groups": {_name(g): [list(m) for m in ms] for g, ms in node.group_view().items()},
        "stats": _jsonable(node.stats()),
    }


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def _reply(self, obj: object) -> None:
        self.wfile.write(json.dumps(obj).encode() + b"\n")
        self.wfile.flush()

    def handle(self) -> None:
        try:
            line = self.rfile.readline(1 << 20)
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
            op = req.get("op")
            if op == "status":
                self._reply(status_of(self.server.node))
            elif op == "send":
                self._send(req)
            elif op == "listen":
                self._listen(req)
            else:
                self._reply({"ok": False, "error": f"unknown op {op!r}"})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except (ValueError, KeyError, TypeError, EvsError) as e:
            with contextlib.suppress(OSError):
                self._reply({"ok": False, "error": str(e) or type(e).__name__})

    def _send(self, req: dict[str, Any]) -> None:
        groups = req["groups"]
        data = base64.b64decode(req["data"], validate=True)
        guarantee = Guarantee.SAFE if req.get("guarantee") == "safe" else Guarantee.AGREED
        self.server.sender().mcast_groups(groups, data, guarantee, timeout=10.0)
        self._reply({"ok": True})

    def _listen(self, req: dict[str, Any]) -> None:
        groups = req["groups"]
        with Handle(self.server.node, groups=groups) as h:
            self._reply({"ok": True})
            sock = self.connection
            while not self.server.stopping.is_set():
                for ev in h.events(timeout=0.5):
                    self._reply(event_to_json(ev))
                    if self.server.stopping.is_set():
                        break
                else:
                    # Idle: stop when the client went away or the node stopped.
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable and not sock.recv(1, socket.MSG_PEEK):
                        return
                    if not self.server.node.is_running:
                        return
                    continue
                return


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    node: Node
    stopping: threading.Event
    _sender: Handle | None = None
    _lock: threading.Lock

    def sender(self) -> Handle:
        with self._lock:
            if self._sender is None:
                self._sender = Handle(self.node)
            return self._sender


class ControlServer:
    """Serves the control protocol for ``node`` on a Unix socket at ``path`` (in a thread)."""

    def __init__(self, node: Node, path: str) -> None:
        self.path = path
        directory = os.path.dirname(path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if os.path.exists(path):
            if _alive(path):
                raise OSError(f"control socket {path} is in use by a running node")
            os.unlink(path)
        old = os.umask(0o177)
        try:
            self._server = _Server(path, _Handler)
        finally:
            os.umask(old)
        self._server.node = node
        self._server.stopping = threading.Event()
        self._server._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="evs-control", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _alive(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def _connect(path: str, timeout: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except FileNotFoundError:
        s.close()
        raise ConnectionError(f"no node is running at {path} (no such socket)") from None
    except ConnectionRefusedError:
        s.close()
        raise ConnectionError(f"no node is running at {path} (connection refused)") from None
    return s


def request(path: str, req: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
    """Sends one request and returns the one reply."""
    with _connect(path, timeout) as s:
        s.sendall(json.dumps(req).encode() + b"\n")
        with s.makefile("rb") as f:
            line = f.readline()
    if not line:
        raise ConnectionError(f"the node at {path} closed the connection without a reply")
    reply: dict[str, Any] = json.loads(line)
    return reply


def stream(
    path: str, req: dict[str, Any], deadline: float | None = None
) -> Iterator[dict[str, Any]]:
    """Sends one request and yields every reply line (for ``listen``) until the node closes
    the connection or the ``time.monotonic()`` deadline passes."""
    s = _connect(path, 15.0)
    with s:
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                s.settimeout(left)
            else:
                s.settimeout(None)
            try:
                chunk = s.recv(65536)
            except (socket.timeout, TimeoutError):  # socket.timeout: Python 3.9 (an alias since)
                return
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                yield json.loads(line)
