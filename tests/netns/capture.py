"""Counts how often a marker appears in the frames seen by every interface of the current
network namespace, with a raw ``AF_PACKET`` socket (no tshark/tcpdump needed).

Run inside the bridge namespace by the harness (``ip netns exec <ns> python capture.py``);
prints one JSON object: frames, UDP frames to or from the EVS port, and frames holding the
marker.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--marker", required=True)
    ap.add_argument("--port", type=int, default=5405)
    args = ap.parse_args(argv)
    marker = args.marker.encode()
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.settimeout(0.2)
    frames = udp = hits = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        try:
            frame = s.recv(65535)
        except socket.timeout:
            continue
        frames += 1
        # Ethernet II, IPv4, UDP: count the EVS traffic so an empty capture cannot pass
        if len(frame) >= 42 and frame[12:14] == b"\x08\x00" and frame[23] == 17:
            ihl = (frame[14] & 0x0F) * 4
            sport, dport = struct.unpack_from("!HH", frame, 14 + ihl)
            if args.port in (sport, dport):
                udp += 1
        if marker in frame:
            hits += 1
    print(json.dumps({"frames": frames, "evs_udp_frames": udp, "marker_frames": hits}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
