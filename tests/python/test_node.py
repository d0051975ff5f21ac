"""evs.Node: settings, configuration errors, introspection, shutdown; evs.keygen."""

from __future__ import annotations

import datetime
import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import evs
from evs.testing import LocalCluster
from support import free_port, wait_until

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.timeout(120)]


@pytest.fixture
def authkey(tmp_path: Path) -> Path:
    key = tmp_path / "authkey"
    evs.keygen(str(key))
    return key


def solo_settings(key: Path, **extra: Any) -> dict[str, Any]:
    port = free_port("127.0.0.1")
    settings: dict[str, Any] = {
        "bind": "127.0.0.1",
        "port": port,
        "transport": "udpu",
        "members": [{"node_id": 7, "address": f"127.0.0.1:{port}"}],
        "node_id": 7,
        "authkey": key,  # a Path, converted by the facade
        "cluster_name": f"solo-{os.getpid()}-{port}",
    }
    settings.update(extra)
    return settings


def test_node_with_timedelta_and_path_settings(authkey: Path) -> None:
    settings = solo_settings(
        authkey,
        token=datetime.timedelta(milliseconds=1500),
        join=datetime.timedelta(milliseconds=60),
        max_message_size=4096,
    )
    with evs.Node(**settings) as node:
        lines = node.config_toml.splitlines()
        assert "token = 1500" in lines
        assert "join = 60" in lines
        assert "max_message_size = 4096" in lines
        assert f'authkey = "{authkey}"' in lines
        assert node.node_id == 7
        assert node.local_addr == ("127.0.0.1", settings["port"])
        assert node.cluster_name == settings["cluster_name"]
        assert node.is_running


def test_node_from_toml_file_path_with_overrides(tmp_path: Path, authkey: Path) -> None:
    port = free_port("127.0.0.1")
    conf = tmp_path / "evs.toml"
    conf.write_text(
        f'cluster_name = "from-file-{port}"\nbind = "127.0.0.1"\nport = {port}\n'
        f'transport = "udpu"\nmembers = [{{ node_id = 3, address = "127.0.0.1:{port}" }}]\n'
        f'authkey = "{authkey}"\n[totem]\ntoken = 2000\n'
    )
    with evs.Node(conf, token=datetime.timedelta(seconds=1)) as node:  # a Path, then a keyword
        assert node.node_id == 3
        assert node.cluster_name == f"from-file-{port}"
        assert "token = 1000" in node.config_toml.splitlines()


@pytest.mark.parametrize(
    ("settings", "keys", "words"),
    [
        ({"bogus": 1}, {"bogus"}, "unknown config key"),
        ({"port": 70000}, {"port"}, "65535"),
        ({"bind": "0.0.0.0"}, {"bind"}, "wildcard"),
        ({"token": "abc"}, {"token", "totem.token"}, "milliseconds"),
        ({"join": 1.5}, {"join", "totem.join"}, "float"),
        ({"totem": {"token": "x"}}, {"totem.token"}, "milliseconds"),
        ({"token": datetime.timedelta(seconds=-1)}, {"token"}, "negative"),
        ({"token": b"3000"}, {"token"}, "unsupported value type bytes"),
        ({"token": object()}, {"token"}, "unsupported value type object"),
        ({"crypto": "rot13"}, {"crypto"}, "unknown cipher"),
        ({"max_message_size": 0}, {"max_message_size"}, "64 MiB"),
        ({"port": 2**70}, {"port"}, "out of range"),
    ],
)
def test_bad_setting_raises_config_error_naming_the_key(
    authkey: Path, settings: dict[str, object], keys: set[str], words: str
) -> None:
    with pytest.raises(evs.ConfigError) as info:
        evs.Node(**solo_settings(authkey, **settings))
    err = info.value
    assert isinstance(err, ValueError)
    assert isinstance(err, evs.EvsError)
    assert err.key in keys
    assert words in str(err)


def test_missing_authkey_file_and_missing_config_file(tmp_path: Path, authkey: Path) -> None:
    with pytest.raises(evs.ConfigError) as info:
        evs.Node(**solo_settings(authkey, authkey=tmp_path / "nope"))
    assert info.value.key == "authkey"
    with pytest.raises(evs.ConfigError) as info:
        evs.Node(tmp_path / "missing.toml")
    assert info.value.key == ""  # the file as a whole
    assert "missing.toml" in str(info.value)


def test_crypto_needs_a_key_or_an_explicit_none(authkey: Path) -> None:
    settings = solo_settings(authkey)
    del settings["authkey"]
    with pytest.raises(evs.ConfigError) as info:
        evs.Node(**settings)
    assert info.value.key == "authkey"
    with evs.Node(**settings, crypto="none") as node:
        assert 'crypto = "none"' in node.config_toml


def test_check_config_validates_without_starting() -> None:
    text = evs.check_config(None, [("bind", "127.0.0.1"), ("crypto", "none")])
    assert 'bind = "127.0.0.1"' in text
    with pytest.raises(evs.ConfigError) as info:
        evs.check_config(None, [("bind", "127.0.0.1"), ("crypto", "none"), ("port", 0)])
    assert info.value.key == "port"


def test_stats_ring_id_membership_group_view(cluster: LocalCluster) -> None:
    node = cluster[0]
    local, members = node.membership()
    assert (local, members) == (1, [1, 2, 3])
    ring = node.ring_id()
    assert isinstance(ring, evs.RingId)
    assert all(n.ring_id() == ring for n in cluster)
    assert ring.rep == 1

    stats = node.stats()
    assert stats["node_id"] == 1
    assert stats["ring_id"] == ring
    assert stats["members"] == [1, 2, 3]
    assert stats["state"] == "operational"
    assert isinstance(stats["packets_in"], dict)
    assert stats["packets_in"]["orf_token"] > 0
    assert isinstance(stats["rejected"], dict)
    assert stats["handles_overflowed"] == 0
    # Nothing buffered; "auto" for a ring of three: 4 send budgets and a window of packets.
    assert stats["delivery_buffered"] == stats["delivery_buffered_peak"] == 0
    assert stats["delivery_buffer_limit"] == 4 * (1 << 20) + 50 * 1400

    assert node.group_view() == {}
    h = cluster.handle(1, groups=["alpha", b"beta"])
    want = [(2, h.id)]
    wait_until(
        lambda: all(n.group_view() == {b"alpha": want, b"beta": want} for n in cluster),
        "both groups in every node's view",
    )
    before = node.stats()["messages_delivered"]
    h.mcast_joined(b"count me")
    wait_until(lambda: node.stats()["messages_delivered"] > before, "a delivery counted")  # type: ignore[operator]
    assert "members [1, 2, 3]" in repr(node)


def test_shutdown_is_idempotent_and_context_manager_stops(authkey: Path) -> None:
    with evs.Node(**solo_settings(authkey)) as node:
        assert node.is_running
        h = evs.Handle(node)
    assert not node.is_running
    node.shutdown()
    node.close()  # alias
    assert not node.is_running
    assert "(stopped)" in repr(node)
    with pytest.raises(evs.HandleClosedError):
        h.recv(timeout=5)


def test_a_stopped_node_says_so(authkey: Path) -> None:
    node = evs.Node(**solo_settings(authkey))
    h = evs.Handle(node)
    node.shutdown()
    # The node is what stopped: the errors say so (and are HandleClosedErrors too, as every
    # handle of a stopped node is closed).
    for call in (lambda: evs.Handle(node), node.stats, node.handle, h.membership):
        with pytest.raises(evs.NodeStoppedError, match="node stopped"):
            call()
    assert issubclass(evs.NodeStoppedError, evs.HandleClosedError)


def test_keygen_error_names_the_path_given(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "authkey"
    with pytest.raises(evs.EvsOSError) as info:
        evs.keygen(target)
    assert info.value.errno == errno.ENOENT
    assert str(target) in str(info.value)
    assert ".tmp" not in str(info.value), info.value


def test_several_independent_nodes_in_one_process(authkey: Path) -> None:
    nodes = [evs.Node(**solo_settings(authkey)) for _ in range(3)]
    try:
        assert len({n.local_addr for n in nodes}) == 3
        handles = [evs.Handle(n, groups="own") for n in nodes]
        for n in nodes:
            wait_until(lambda n=n: n.membership()[1] == [7], "a ring of one")  # type: ignore[misc]
        for i, h in enumerate(handles):
            wait_until(lambda h=h: h.group_membership("own") == [(7, h.id)], "own join")  # type: ignore[misc]
            h.mcast_joined(b"%d" % i)
        for i, h in enumerate(handles):
            ev = next(e for e in h.events(timeout=30) if isinstance(e, evs.Message))
            assert ev.data == b"%d" % i  # each ring hears only itself
            assert h.try_recv() is None
    finally:
        for n in nodes:
            n.shutdown()


def test_keygen_mode_refuses_overwrite_force(tmp_path: Path) -> None:
    key = tmp_path / "k"
    evs.keygen(str(key))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = key.read_bytes()
    assert len(first) == 32
    with pytest.raises(evs.EvsOSError) as info:
        evs.keygen(str(key))
    assert isinstance(info.value, OSError)
    assert "exists" in str(info.value)
    assert info.value.errno == errno.EEXIST
    assert str(info.value).startswith(f"[Errno {errno.EEXIST}] keygen {key}")
    assert key.read_bytes() == first
    evs.keygen(key, force=True, length=64)  # a Path works too
    second = key.read_bytes()
    assert len(second) == 64 and second[:32] != first
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    for bad in (8, 31, 4097, -1):
        with pytest.raises(ValueError, match=r"32\.\.=4096"):
            evs.keygen(str(tmp_path / "short"), length=bad)
    with pytest.raises(TypeError, match="length must be an int"):
        evs.keygen(str(tmp_path / "short"), length="32")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="length must be an int"):
        evs.keygen(str(tmp_path / "short"), length=True)
    assert not (tmp_path / "short").exists()
    with pytest.raises(evs.EvsOSError) as info:
        evs.keygen(str(tmp_path / "no-such-dir" / "k"))
    assert info.value.errno == errno.ENOENT


def test_native_keygen_checks_length_and_sets_errno(tmp_path: Path) -> None:
    """The native function behind evs.keygen refuses a bad length itself too."""
    from evs import _evs

    with pytest.raises(ValueError, match=r"32\.\.=4096"):
        _evs.keygen(str(tmp_path / "k"), False, 8)
    _evs.keygen(str(tmp_path / "k"), False, 32)
    with pytest.raises(evs.EvsOSError) as info:
        _evs.keygen(str(tmp_path / "k"), False, 32)
    assert info.value.errno == errno.EEXIST
    assert info.value.strerror and "exists" in info.value.strerror


def test_node_bind_failure_carries_errno(authkey: Path) -> None:
    """A node that cannot bind raises EvsOSError with the errno of the failure."""
    with pytest.raises(evs.EvsOSError) as info:
        evs.Node(
            cluster_name="errno-test",
            node_id=1,
            bind="192.0.2.77",  # TEST-NET-1: no interface here has it
            transport="udpu",
            members=[{"node_id": 1, "address": "192.0.2.77:5405"}],
            authkey=str(authkey),
        )
    assert info.value.errno == errno.EADDRNOTAVAIL
