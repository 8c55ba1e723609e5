"""Shared helpers of the roomkit_media tests."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def udp_pairs(count: int) -> list[int]:
    """`count` even loopback ports p whose p + 1 is free too (RTP and RTCP)."""
    found: list[int] = []
    for _ in range(200):
        if len(found) == count:
            return found
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1] & ~1
        if port in found or port < 1024:
            continue
        held = []
        try:
            for p in (port, port + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", p))
            found.append(port)
        except OSError:
            pass
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free UDP port pairs on loopback")


def native_threads() -> list[str]:
    """Names of this process's OS threads started by the engine (`rkm-*`)."""
    names = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue  # the thread ended while we looked
        if name.startswith("rkm"):
            names.append(name)
    return names
