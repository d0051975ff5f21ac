"""The ``evs`` command: ``keygen | node | status | send | listen | bench | demo``.

Every error is one line on stderr (``evs: error: ...``) and a non-zero exit status: 1 for a
failure at run time, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import importlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from . import _bench, _control
from ._cli_common import CliError, settings_from_pairs
from ._evs import ConfigChange
from ._node import Handle, Node
from .errors import EvsError

__all__ = ["main"]


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="FILE", help="node configuration (TOML)")
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        help="a configuration key over the file (repeatable), e.g. --set token=1000",
    )


def _control_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--control",
        metavar="PATH",
        help="control socket of the node (default: the only socket in "
        f"{_control.run_dir()}, or the one matching -c)",
    )
    _config_args(p)


def _find_socket(args: argparse.Namespace) -> str:
    if args.control:
        return str(args.control)
    if args.config or args.set:
        from ._evs import check_config

        text = check_config(args.config, list(settings_from_pairs(args.set).items()))
        cfg = _toml_loads(text)
        return _control.default_socket_path(str(cfg["cluster_name"]), int(cfg["node_id"]))
    found = sorted(glob.glob(os.path.join(_control.run_dir(), "*.sock")))
    if len(found) == 1:
        return found[0]
    if not found:
        raise CliError(
            f"no running node found in {_control.run_dir()} (start one with `evs node`, "
            "or give --control PATH)"
        )
    raise CliError(f"several nodes are running ({', '.join(found)}): choose one with --control")


def _toml_loads(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    # Python < 3.11 has no TOML parser; the keys we need are flat `key = value` lines.
    out: dict[str, Any] = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep and not line.startswith(("[", "#")):
            v = v.strip()
            out[k.strip()] = v.strip('"') if v.startswith('"') else int(v) if v.isdigit() else v
    return out


# -- keygen ---------------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    from . import keygen

    path = args.key_file
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CliError(f"directory {directory} does not exist")
    keygen(path, force=args.force, length=args.length)
    print(f"wrote a {args.length}-byte authkey to {path} (mode 0600)")
    return 0


# -- node -----------------------------------------------------------------------------------


def _stats_line(node: Node) -> str:
    s = node.stats()
    rej = s.get("rejected", {})
    rejected = sum(int(v) for v in rej.values()) if isinstance(rej, dict) else 0
    return (
        f"stats: ring {s['ring_id']} members {s['members']} state {s['state']} "
        f"delivered {s['messages_delivered']} retransmits {s['retransmits_requested']} "
        f"rotation {float(str(s['token_rotation_s'])) * 1e3:.2f} ms rejected {rejected}"
    )


def cmd_node(args: argparse.Namespace) -> int:
    settings = settings_from_pairs(args.set)
    node = Node(args.config, **settings)
    path = args.control or _control.default_socket_path(node.cluster_name, node.node_id)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server = None
    try:
        server = _control.ControlServer(node, path)
        out = sys.stdout
        host, port = node.local_addr
        print(
            f"node {node.node_id} of cluster {node.cluster_name!r} on {host}:{port}, "
            f"control socket {path}",
            file=out,
            flush=True,
        )
        watcher = Handle(node)
        next_stats = time.monotonic() + args.stats_interval if args.stats_interval else None
        while not stop.is_set():
            for ev in watcher.events(timeout=0.2):
                if isinstance(ev, ConfigChange):
                    as_json = _control.event_to_json(ev)
                    print(
                        json.dumps(as_json) if args.json else _describe_json(as_json),
                        file=out,
                        flush=True,
                    )
                if stop.is_set():
                    break
            if not node.is_running:
                raise CliError("the node stopped")
            if next_stats is not None and time.monotonic() >= next_stats:
                if args.json:
                    print(json.dumps({"type": "stats", **_control.status_of(node)}), flush=True)
                else:
                    print(_stats_line(node), file=out, flush=True)
                next_stats = time.monotonic() + args.stats_interval
        print("shutting down: leaving the ring", file=out, flush=True)
        return 0
    finally:
        if server is not None:
            server.close()
        node.shutdown()
        for s, h in old.items():
            signal.signal(s, h)


# -- status ---------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    path = _find_socket(args)
    st = _control.request(path, {"op": "status"})
    if not st.get("ok"):
        raise CliError(str(st.get("error")))
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True))
        return 0
    stats = st["stats"]
    print(
        f"node {st['node_id']} of cluster {st['cluster']!r} at {st['address'][0]}:"
        f"{st['address'][1]}"
    )
    print(f"ring {st['ring_id']}  state {stats['state']}  members {st['members']}")
    print(f"token rotation {stats['token_rotation_s'] * 1e3:.3f} ms (mean)")
    print("groups:")
    if not st["groups"]:
        print("  (none)")
    for g, members in sorted(st["groups"].items()):
        who = ", ".join(f"{n}/{h}" for n, h in members)
        print(f"  {g}: {who}")
    print("counters:")
    for k in (
        "messages_submitted",
        "messages_delivered",
        "retransmits_requested",
        "retransmits_sent",
        "token_retransmits",
        "rings_formed",
        "token_lost",
        "failed_to_receive",
        "quarantined",
        "probes_sent",
        "datagrams_in",
        "datagrams_out",
        "crypto_accepted",
    ):
        print(f"  {k:<24}{stats[k]}")
    rejected = {k: v for k, v in stats["rejected"].items() if v}
    print(f"  {'rejected':<24}{sum(rejected.values())}")
    for k, v in sorted(rejected.items()):
        print(f"    {k:<22}{v}")
    print(
        f"queues: {stats['queue_depths']} send budget {stats['send_budget_used']}/"
        f"{stats['send_budget_cap']} bytes"
    )
    print(
        f"delivery buffer: {stats['delivery_buffered']} bytes now, "
        f"{stats['delivery_buffered_peak']} at most, limit {stats['delivery_buffer_limit']} "
        "per handle"
    )
    return 0


# -- send / listen --------------------------------------------------------------------------


def _groups_arg(text: str) -> list[str]:
    groups = [g for g in text.split(",") if g]
    if not groups:
        raise CliError("no group given")
    return groups


def cmd_send(args: argparse.Namespace) -> int:
    path = _find_socket(args)
    groups = _groups_arg(args.groups)
    if args.message is not None:
        # The bytes of the argument as the OS gave them (not necessarily UTF-8).
        messages = [os.fsencode(args.message)]
    elif args.lines:
        messages = [line.rstrip(b"\n") for line in sys.stdin.buffer]
    else:
        messages = [sys.stdin.buffer.read()]
    for m in messages:
        reply = _control.request(
            path,
            {
                "op": "send",
                "groups": groups,
                "data": base64.b64encode(m).decode(),
                "guarantee": "safe" if args.safe else "agreed",
            },
        )
        if not reply.get("ok"):
            raise CliError(str(reply.get("error")))
    if not args.quiet:
        print(f"sent {len(messages)} message(s) to {','.join(groups)}", file=sys.stderr)
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    path = _find_socket(args)
    groups = [g for spec in args.groups for g in _groups_arg(spec)]
    got = 0
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    replies = _control.stream(path, {"op": "listen", "groups": groups}, deadline)
    first = next(replies, None)
    if first is None or not first.get("ok"):
        raise CliError(str((first or {}).get("error", "the node closed the connection")))
    for ev in replies:
        if ev.get("type") == "message":
            got += 1
            if args.json:
                print(json.dumps(ev), flush=True)
            else:
                text = ev.get("text", "<" + ev["data"] + " (base64)>")
                print(
                    f"[{ev['ring_id']}:{ev['seq']}] node {ev['sender']} -> "
                    f"{','.join(ev['groups'])}: {text}",
                    flush=True,
                )
            if args.count and got >= args.count:
                return 0
        elif not args.messages_only:
            print(json.dumps(ev) if args.json else _describe_json(ev), flush=True)
    if args.count and got < args.count:
        raise CliError(f"received {got} of {args.count} message(s) before the timeout")
    return 0


def _describe_json(ev: dict[str, Any]) -> str:
    if ev.get("type") == "config":
        s = f"{ev['kind']} configuration ring {ev['ring_id']}: members {ev['members']}"
        if ev["left"]:
            s += f" left {ev['left']}"
        if ev["joined"]:
            s += f" joined {ev['joined']}"
        return s
    return f"group {ev['group']}: members {ev['members']}"


# -- bench ----------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    return _bench.run(args)


# -- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evs",
        description="Extended Virtual Synchrony group messaging: tools and demo.",
    )
    from ._evs import __version__

    p.add_argument("--version", action="version", version=f"evs {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    k = sub.add_parser("keygen", help="write a new authkey file (mode 0600)")
    k.add_argument(
        "key_file",
        nargs="?",
        default="/etc/evs/authkey",
        metavar="PATH",
        help="where to write it (default /etc/evs/authkey)",
    )
    k.add_argument("-f", "--force", action="store_true", help="overwrite an existing file")
    k.add_argument("--length", type=int, default=32, help="key bytes, 32..4096 (default 32)")
    k.set_defaults(func=cmd_keygen)

    n = sub.add_parser("node", help="run a node in the foreground")
    _config_args(n)
    n.add_argument(
        "--control",
        metavar="PATH",
        help=f"control socket path (default: {_control.run_dir()}/<cluster>-<node id>.sock)",
    )
    n.add_argument(
        "--stats-interval",
        type=float,
        default=10.0,
        metavar="S",
        help="print stats every S seconds (0: never; default 10)",
    )
    n.add_argument("--json", action="store_true", help="print JSON lines")
    n.set_defaults(func=cmd_node)

    s = sub.add_parser("status", help="ring, members, groups and stats of a running node")
    _control_arg(s)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_status)

    sd = sub.add_parser("send", help="send a message through a running node")
    _control_arg(sd)
    sd.add_argument("groups", metavar="GROUP[,GROUP...]")
    sd.add_argument("message", nargs="?", help="the message (default: read stdin)")
    sd.add_argument("--lines", action="store_true", help="send each stdin line as a message")
    sd.add_argument("--safe", action="store_true", help="safe delivery (default agreed)")
    sd.add_argument("-q", "--quiet", action="store_true")
    sd.set_defaults(func=cmd_send)

    ls = sub.add_parser("listen", help="print what a running node delivers to groups")
    _control_arg(ls)
    ls.add_argument("groups", nargs="+", metavar="GROUP")
    ls.add_argument("-n", "--count", type=int, default=0, help="stop after N messages")
    ls.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds (an error if --count was not reached)",
    )
    ls.add_argument("--json", action="store_true", help="print JSON lines")
    ls.add_argument("--messages-only", action="store_true", help="omit membership changes")
    ls.set_defaults(func=cmd_listen)

    b = sub.add_parser("bench", help="throughput and latency on a local cluster")
    _bench.add_arguments(b)
    _config_args(b)
    b.set_defaults(func=cmd_bench)

    d = sub.add_parser("demo", help="the distributed lock service on a local cluster")
    try:
        demo = importlib.import_module("evs.demo")
    except ImportError:  # pragma: no cover - the demo module is optional in a partial build
        demo = None
    if demo is not None:
        demo.add_arguments(d)
        d.set_defaults(func=demo.run)
    return p


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses the command line, letting a subcommand's options come between its positionals
    (``evs send locks -q text``): argparse alone assigns the positionals before the first
    option and refuses the rest."""
    words = list(sys.argv[1:] if argv is None else argv)
    args, extras = parser.parse_known_args(words)
    command = getattr(args, "command", None)
    sub = _subcommand_parser(parser, command)
    if not extras or sub is None or command not in words:
        return parser.parse_args(words)  # the usual error (or result)
    rest = words[words.index(command) + 1 :]
    return sub.parse_intermixed_args(rest, namespace=argparse.Namespace(command=command))


def _subcommand_parser(
    parser: argparse.ArgumentParser, command: str | None
) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser | None = action.choices.get(command or "")
            return found
    return None


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``evs status | head``): stop without a word, as a
    tool killed by SIGPIPE does. Later writes (the interpreter's own flush at exit) go to
    /dev/null."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    if not hasattr(args, "func"):
        parser.error("this command is not available in this build")
    try:
        rc: int = args.func(args)
        sys.stdout.flush()  # here, so that a reader gone away is handled below
        return rc
    except KeyboardInterrupt:
        print("evs: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (CliError, EvsError, OSError, ValueError, ConnectionError) as e:
        msg = str(e) or type(e).__name__
        print(f"evs: error: {msg}", file=sys.stderr)
        return 1
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_broken_pipe()
        except Exception:  # best effort
            pass


if __name__ == "__main__":
    sys.exit(main())
