"""Calls per core, in one run: roomkit's own RTP backend against ours under
roomkit, measured with roomkit's own RTP benchmark (``benchmarks/rtp`` in its
sdist).

roomkit's benchmark runs a system under test (an RTP echo server, one session
per call, pinned to its own CPU) and its native load generator (``rtp-bench
load``: G.711 every 20 ms per call, phases spread over the frame, each payload
stamped with its send time and call so the echo gives loss and round-trip
time), and reads the server's CPU from ``/proc/<pid>/stat`` over a shared
window. This script drives that machinery as it is (``run_point``, its limits
and verdicts) on these servers, one after the other:

- ``aiortp``: roomkit's own ``aiortp_echo`` (raw aiortp sessions, no roomkit
  classes), as roomkit's benchmark ships it;
- ``roomkit``: roomkit's ``RTPVoiceBackend`` echoing through roomkit's backend
  API (``on_audio_received`` -> ``send_audio_sync``), see ``rtp_echo.py``;
- ``ours``: our ``roomkit_media.backends.RTPVoiceBackend``, the same echo code.

For each point it prints (on stderr) the server's CPU in cores, µs of server
CPU per packet carried (roomkit's figure to compare engines), the calls one
core carries at that cost (10^6 / (µs x 100 packets/s per call)), whether the
point was carried (roomkit's limits on the server: loss <= 0.1 %, RTT p99 - p50
<= 40 ms, RTT p50 <= the server's lightest point's + 20 ms; its checks on the
generator and on other processes are reported, not applied), the generator's
loss and RTT, the loop's lag and our queue drops; at the end, one JSON document
on stdout with every point, the ratio of calls per core ours/roomkit at each
count both carried, and the most calls each carried. A measurement, never a
test: nothing is asserted::

    python bench/calls_per_core.py --calls 50,100,200,300,400

roomkit's sdist is downloaded with pip (``--roomkit-src`` points at an
unpacked one instead) and its generator built with cargo (needs crates.io
once, for ``libc``). Linux only.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import os
import subprocess  # nosec B404
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ECHO = HERE / "rtp_echo.py"
SERVERS = ("aiortp", "roomkit", "ours")
#: RTP packets per second per call through the server: 50 in, 50 echoed.
PACKETS_PER_CALL = 100


def roomkit_source(given: Path | None, cache: Path) -> Path:
    """An unpacked roomkit sdist of the installed version (with ``benchmarks/rtp``)."""
    if given is not None:
        return given
    version = importlib.metadata.version("roomkit")
    root = cache / f"roomkit-{version}"
    if not (root / "benchmarks" / "rtp").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # nosec B603
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
             f"roomkit=={version}", "--no-deps", "--no-binary", ":all:", "-d", str(cache)],
            check=True,
        )  # fmt: skip
        with tarfile.open(cache / f"roomkit-{version}.tar.gz") as sdist:
            sdist.extractall(cache, filter="data")
    standalone(root / "benchmarks" / "rtp" / "native" / "Cargo.toml")
    return root


def standalone(manifest: Path) -> None:
    """Makes the generator's crate its own workspace: unpacked under a directory inside
    another Cargo workspace (our repo's ``target/``, the default cache of the tests),
    cargo would refuse to build it as a stray member of ours."""
    text = manifest.read_text()
    if "[workspace]" not in text:
        manifest.write_text(text.rstrip("\n") + "\n\n[workspace]\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", default="50,100,200", help="call counts, lowest first")
    p.add_argument("--servers", default=",".join(SERVERS), help="among " + ",".join(SERVERS))
    p.add_argument("--seconds", type=float, default=15.0, help="measurement window")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--server-cpus", help="CPU list of the server (default: the last CPU)")
    p.add_argument("--gen-threads", type=int, default=2)
    p.add_argument("--io-threads", type=int, default=1, help="ours: shared I/O threads")
    p.add_argument("--retries", type=int, default=0, help="re-runs of a disturbed point")
    p.add_argument("--roomkit-src", type=Path, help="an unpacked roomkit sdist")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "roomkit-media-bench")
    p.add_argument("--no-build", action="store_true", help="rtp-bench is built already")
    args = p.parse_args(argv)
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        p.error(f"unknown servers {sorted(unknown)}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    src = roomkit_source(args.roomkit_src, args.cache)
    # roomkit's driver modules, and its aiortp server run as `-m benchmarks.rtp...`.
    sys.path.insert(0, str(src))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    os.environ.pop("PYTHONASYNCIODEBUG", None)  # the servers run as in production
    from benchmarks.rtp import processes
    from benchmarks.rtp.__main__ import default_gen_cpus, environment
    from benchmarks.rtp.analysis import (
        OK,
        Limits,
        parse_cpus,
        retry_while_disturbed,
        row,
        verdict,
    )

    if not args.no_build:
        # roomkit's driver runs the generator from its crate's own target dir.
        os.environ["CARGO_TARGET_DIR"] = str(processes.NATIVE_DIR / "target")
        processes.build_native()
    server_cpus = (
        parse_cpus(args.server_cpus) if args.server_cpus else [max(os.sched_getaffinity(0))]
    )
    gen_cpus = default_gen_cpus(server_cpus) or server_cpus
    their_command = processes.server_command

    def server_command(cfg: Any, calls: int, ports_file: Path) -> list[str]:
        if cfg.server == "aiortp":
            return their_command(cfg, calls, ports_file)
        return [
            sys.executable, str(ECHO), "--backend", cfg.server, "--calls", str(calls),
            "--ports-file", str(ports_file), "--io-threads", str(args.io_threads),
            *(["--cpus", ",".join(map(str, cfg.server_cpus))] if cfg.server_cpus else []),
        ]  # fmt: skip

    processes.server_command = server_command
    limits = Limits()
    # roomkit's limits on the system under test alone (loss, RTT spread,
    # queueing over the floor), without its checks on the generator and on
    # other load: on a shared machine those void every point.
    alone = dataclasses.replace(
        limits,
        max_send_lateness_ms=math.inf,
        max_generator_cpu=math.inf,
        max_background_cores=math.inf,
        max_machine_background_cores=math.inf,
    )
    calls_list = [int(c) for c in args.calls.split(",")]
    points: list[dict[str, Any]] = []
    floors: dict[str, float | None] = {}
    # Call count by call count, the servers in turn: each comparison is made
    # minutes apart at most, under the same background load.
    for calls in calls_list:
        for server in args.servers.split(","):
            cfg = processes.PointConfig(
                server=server,
                server_cpus=server_cpus,
                gen_threads=args.gen_threads,
                gen_cpus=gen_cpus,
                warmup=args.warmup,
                seconds=args.seconds,
            )
            floor = floors.get(server)
            point = retry_while_disturbed(
                lambda cfg=cfg, calls=calls: processes.run_point(cfg, calls),
                limits,
                args.retries,
                pause=lambda: time.sleep(20),
            )
            point["verdict"] = verdict(point, limits, floor)
            # The first (lightest) point of each server sets its RTT floor.
            floors.setdefault(server, point["generator"]["rtt_ms"]["p50"])
            r = row(point, limits)
            us = r["us_per_packet"]
            rep = point["server"]
            summary = {
                "server": server,
                "calls": calls,
                "server_cores": round(point["server_cpu_seconds"] / cfg.seconds, 3),
                "us_per_packet": None if us is None else round(us, 2),
                # Each call is 50 packets/s in and 50 out: the calls one core
                # carries at this CPU cost per packet.
                "calls_per_core": round(1e6 / (us * PACKETS_PER_CALL), 1) if us else None,
                # Carried: within roomkit's limits on the server alone. A
                # server that falls behind keeps a lower cost per packet
                # (bigger batches) while it drops or queues: only carried
                # points compare.
                "carried": verdict(point, alone, floor) == OK,
                "loss_pct": r["loss_pct"],
                "rtt_ms_p50": r["rtt_p50_ms"],
                "rtt_ms_p99": r["rtt_p99_ms"],
                "gaps_40ms": r["gaps_40ms"],
                "loop_lag_ms_p50": rep.get("loop_lag_ms_p50"),
                "loop_lag_ms_p99": rep.get("loop_lag_ms_p99"),
                "loop_lag_ms_max": rep.get("loop_lag_ms_max"),
                "queue_drops": rep.get("queue_drops"),
                "kernel_drops": r["kernel_drops"],
                "server_threads": rep.get("threads"),
                "rss_mb": r["rss_mb"],
                "verdict": point["verdict"],
                "check": r["check"],
                "other_load_pct_on_server_cpu": None
                if r["background_pct"] is None
                else round(r["background_pct"], 1),
                "loadavg_1m": round(point["loadavg_1m"], 2),
            }
            print(json.dumps(summary), file=sys.stderr, flush=True)
            points.append({"summary": summary, "point": point})

    by = {(p["summary"]["server"], p["summary"]["calls"]): p["summary"] for p in points}
    # At each count both carried: roomkit's CPU per packet over ours.
    ratios = {}
    for calls in calls_list:
        ours, theirs = by.get(("ours", calls)), by.get(("roomkit", calls))
        if ours and theirs and ours["carried"] and theirs["carried"] and ours["us_per_packet"]:
            ratios[str(calls)] = round(theirs["us_per_packet"] / ours["us_per_packet"], 2)
    most = {
        server: max((p["calls"] for p in by.values() if p["server"] == server and p["carried"]),
                    default=None)
        for server in args.servers.split(",")
    }
    print(
        json.dumps(
            {
                "command": "python bench/calls_per_core.py " + " ".join(argv),
                "environment": {**environment(), "roomkit": importlib.metadata.version("roomkit")},
                "config": {
                    "server_cpus": server_cpus,
                    "gen_cpus": gen_cpus,
                    "gen_threads": args.gen_threads,
                    "io_threads_ours": args.io_threads,
                    "seconds": args.seconds,
                    "warmup": args.warmup,
                    "limits": dataclasses.asdict(limits),
                },
                "points": [p["summary"] for p in points],
                "ratio_ours_over_roomkit_calls_per_core": ratios,
                "most_calls_carried": most,
                "raw": [p["point"] for p in points],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
