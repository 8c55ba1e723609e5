"""Many A/V sessions through the loop bridge: loop lag and queue drops.

Two of our RTPVideoBackends on loopback with N sessions between them. Every
20 ms side A sends 20 ms of PCMU audio on each session and, every 40 ms, a
test-clip picture; side B's callbacks (on the asyncio loop) count what
arrives. A ticker task measures the loop's lag: how late a 10 ms sleep wakes.
Run it under asyncio's debug mode, which raises on a loop call from another
thread::

    PYTHONASYNCIODEBUG=1 python -X dev bench/sessions.py --sessions 50 --seconds 30

Prints one JSON line. A measurement, never a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from conftest import native_threads  # noqa: E402

from roomkit_media import _native  # noqa: E402
from roomkit_media.backends import RTPVideoBackend  # noqa: E402

LOOP = "127.0.0.1"
DISCARD = (LOOP, 9)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def ticker(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append((time.perf_counter() - t - 0.01) * 1000)


async def run(sessions: int, seconds: float) -> dict[str, object]:
    before = set(native_threads())
    cpu0 = os.times()
    a = RTPVideoBackend(local_addr=(LOOP, 0), video_local_addr=(LOOP, 0),
                        remote_addr=DISCARD, video_remote_addr=DISCARD)
    b = RTPVideoBackend(local_addr=(LOOP, 0), video_local_addr=(LOOP, 0))
    got = {"audio": 0, "video": 0}

    def on_audio(s: object, f: object) -> None:
        got["audio"] += 1

    def on_video(s: object, f: object) -> None:
        got["video"] += 1

    b.on_audio_received(on_audio)
    b.video.on_video_received(on_video)
    pairs = []
    for i in range(sessions):
        sa = await a.connect("r", f"a{i}", "av")
        va = a.video.get_session(sa.id)
        sb = await b.connect("r", f"b{i}", "av", metadata={
            "remote_addr": sa.metadata["local_addr"],
            "video_remote_addr": va.metadata["video_local_addr"]})
        vb = b.video.get_session(sb.id)
        a.update_remote(sa, sb.metadata["local_addr"], vb.metadata["video_local_addr"])
        pairs.append((sa, va))
    pcm = struct.pack("<160h", *(int(8000 * math.sin(2 * math.pi * 440 * i / 8000))
                                 for i in range(160)))
    pictures = _native.test_clip(50)
    lags: list[float] = []
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(lags, stop))
    start = time.perf_counter()
    n = 0
    sent_pictures = 0
    while time.perf_counter() - start < seconds:
        for sa, va in pairs:
            a._core.send_audio(sa.id, pcm)
            if n % 2 == 0:
                a._core.send_video(va.id, pictures[(n // 2) % len(pictures)][0], None)
        sent_pictures += sessions if n % 2 == 0 else 0
        n += 1
        next_at = start + n * 0.02
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    await asyncio.sleep(0.5)
    stop.set()
    await tick
    elapsed = time.perf_counter() - start
    dropped = a.events_dropped + b.events_dropped
    await a.close()
    await b.close()
    cpu1 = os.times()
    return {
        "sessions": sessions,
        "seconds": round(elapsed, 1),
        "audio_frames_sent": n * sessions,
        "audio_frames_received": got["audio"],
        "pictures_sent": sent_pictures,
        "video_nal_units_received": got["video"],
        "queue_drops": dropped,
        "loop_lag_ms_p50": round(percentile(lags, 0.5), 2),
        "loop_lag_ms_p99": round(percentile(lags, 0.99), 2),
        "loop_lag_ms_max": round(max(lags, default=0.0), 2),
        "cpu_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 1),
        "threads_left": sorted(set(native_threads()) - before),
        "loadavg_1m": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args.sessions, args.seconds))))


if __name__ == "__main__":
    main()
