"""With crypto on, application payload never crosses the wire in plaintext.

Three nodes in network namespaces multicast a known marker in every message while a raw
``AF_PACKET`` socket in the bridge namespace reads every frame on every bridge port (the
multicasts and the unicast tokens alike). With aes256gcm the marker must never be seen; as a
control, the same run with ``crypto = "none"`` must see it, so the check can fail.

    sudo .venv/bin/python -m pytest tests/python/test_netns_capture.py
"""

from __future__ import annotations

import secrets

import pytest
from tests.netns.harness import Cluster, missing_requirements

_why = missing_requirements()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(_why is not None, reason=f"network-namespace capture: {_why}"),
    pytest.mark.timeout(300),
]


def capture_run(crypto: str) -> dict[str, int]:
    marker = f"EVSFT-PLAINTEXT-{secrets.token_hex(8)}"
    with Cluster(3, workdir=f"/tmp/evsft-work/capture-{crypto}", crypto=crypto,
                 marker=marker) as c:  # fmt: skip
        c.start_all()
        c.wait_ring([1, 2, 3], timeout=90)
        seen = c.capture(6.0, marker)
        c.stop()
    print(f"\ncrypto {crypto}: {seen}")
    # the nodes did send during the capture: 3 nodes x 20 messages/s
    assert seen["evs_udp_frames"] > 50, seen
    return seen


@pytest.mark.parametrize("crypto", ["aes256gcm", "chacha20poly1305"])
def test_marker_never_in_plaintext_with_crypto_on(crypto: str) -> None:
    seen = capture_run(crypto)
    assert seen["marker_frames"] == 0, seen


def test_marker_is_seen_without_crypto_control() -> None:
    seen = capture_run("none")
    assert seen["marker_frames"] > 0, seen
