"""An RTP echo server on a roomkit voice backend: the system under test that
``calls_per_core.py`` puts beside roomkit's own ``benchmarks/rtp`` servers.

One ``VoiceSession`` per call on roomkit's ``RTPVoiceBackend`` (aiortp, on the
asyncio loop) or ours (``roomkit_media``: the engine's threads, the loop
bridge), each echoing what it receives through roomkit's backend API: every
``AudioFrame`` from ``on_audio_received`` goes back as an ``AudioChunk`` through
``send_audio_sync`` (decoded, re-encoded). It speaks the protocol of roomkit's
``benchmarks/rtp/aiortp_echo.py``: lists its ports in the ports file, prints
``READY``, reads ``<start> <end>`` (epoch seconds) on stdin, prints what it did
inside that window as one JSON line (plus the loop's lag, how late a 10 ms
sleep wakes, and our queue drops), then echoes on until it is killed.

The load generator sends from ports it does not announce, so each session
answers wherever its media comes from (symmetric RTP): ours with
``symmetric_rtp=True``; roomkit 0.109's ``RTPVoiceBackend`` has no such
argument, so aiortp's own flag is set on each of its sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from roomkit.voice.base import AudioChunk

LOOP = "127.0.0.1"
#: Where a session sends until the generator's first packet shows its address.
DISCARD = (LOOP, 9)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


class Roomkit:
    """roomkit's own ``RTPVoiceBackend`` (aiortp)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from roomkit.voice.backends.rtp import RTPVoiceBackend

        self.backend = RTPVoiceBackend(local_addr=(LOOP, 0), remote_addr=DISCARD)

    def port(self, session: Any) -> int:
        rtp = self.backend._rtp_sessions[session.id]
        rtp._symmetric_rtp = True  # aiortp's latch (RFC 4961); roomkit does not expose it
        return int(rtp._rtp_transport._transport.get_extra_info("sockname")[1])

    def counters(self, sessions: list[Any]) -> dict[str, int]:
        rx = tx = 0
        for s in sessions:
            stats = self.backend._rtp_sessions[s.id].stats
            rx += stats.get("packets_received", 0)
            tx += stats.get("packets_sent", 0)
        return {"rx": rx, "tx": tx, "queue_drops": 0}


class Ours:
    """Our ``RTPVoiceBackend`` (roomkit_media)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from roomkit_media.backends import RTPVoiceBackend

        self.backend = RTPVoiceBackend(
            local_addr=(LOOP, 0),
            remote_addr=DISCARD,
            symmetric_rtp=True,
            io_threads=args.io_threads,
        )

    def port(self, session: Any) -> int:
        return int(session.metadata["local_addr"][1])

    def counters(self, sessions: list[Any]) -> dict[str, int]:
        rx = tx = 0
        for s in sessions:
            audio = self.backend.stats(s)["audio"]
            rx += audio["rtp_packets_received"]
            tx += audio["rtp_packets_sent"]
        return {"rx": rx, "tx": tx, "queue_drops": self.backend.events_dropped}


async def ticker(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append((time.perf_counter() - t - 0.01) * 1000)


async def serve(args: argparse.Namespace) -> None:
    side = Roomkit(args) if args.backend == "roomkit" else Ours(args)
    backend = side.backend

    def echo(session: Any, frame: Any) -> None:
        backend.send_audio_sync(
            session, AudioChunk(data=frame.data, sample_rate=frame.sample_rate)
        )

    backend.on_audio_received(echo)
    sessions = [await backend.connect("bench", f"call-{i}", "rtp") for i in range(args.calls)]
    ports = [side.port(s) for s in sessions]
    await asyncio.to_thread(Path(args.ports_file).write_text, "".join(f"{p}\n" for p in ports))
    print("READY", flush=True)

    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    start, end = (float(x) for x in line.split())
    await asyncio.sleep(max(0.0, start - time.time()))
    lags: list[float] = []
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(lags, stop))
    cpu0, before = cpu_seconds(), side.counters(sessions)
    await asyncio.sleep(max(0.0, end - time.time()))
    cpu1, after = cpu_seconds(), side.counters(sessions)
    stop.set()
    await tick
    p50, p99 = percentile(lags, 0.5), percentile(lags, 0.99)
    report = {
        "backend": args.backend,
        "cpu_seconds": round(cpu1 - cpu0, 4),
        "window_seconds": round(end - start, 4),
        "threads": len(os.listdir("/proc/self/task")),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **{key: after[key] - before[key] for key in after},
        "loop_lag_ms_p50": None if p50 is None else round(p50, 2),
        "loop_lag_ms_p99": None if p99 is None else round(p99, 2),
        "loop_lag_ms_max": round(max(lags), 2) if lags else None,
    }
    print(json.dumps(report), flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["roomkit", "ours"], required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--ports-file", required=True)
    parser.add_argument("--cpus", type=lambda s: {int(c) for c in s.split(",")})
    parser.add_argument("--io-threads", type=int, default=1, help="ours: shared I/O threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.cpus:
        # Before any thread starts: the engine's threads inherit it.
        os.sched_setaffinity(0, args.cpus)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
