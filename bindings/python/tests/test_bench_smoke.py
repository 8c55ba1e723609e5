"""The calls-per-core benchmark runs: a tiny run of bench/calls_per_core.py
(roomkit's RTP benchmark, its generator built with cargo, against roomkit's
backend and ours) prints one valid JSON document with a point per server.
Nothing about the figures is asserted: they are a measurement. It needs the
network (roomkit's sdist comes from PyPI, the generator's crates from
crates.io): without it the benchmark exits non-zero and this test FAILS.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench" / "calls_per_core.py"


def cache_dir() -> Path:
    """roomkit's sdist and its generator's build, kept in the target dir."""
    root = Path(__file__).resolve().parents[3]
    return Path(os.environ.get("CARGO_TARGET_DIR", root / "target")) / "roomkit-bench"


def test_the_calls_per_core_benchmark_prints_json() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--calls", "2", "--seconds", "1", "--warmup", "0.5",
         "--servers", "roomkit,ours", "--cache", str(cache_dir())],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    points = {(p["server"], p["calls"]) for p in report["points"]}
    assert points == {("roomkit", 2), ("ours", 2)}, report["points"]
    assert set(report["ratio_ours_over_roomkit_calls_per_core"]) <= {"2"}
    # The benchmark ran against the roomkit installed here, whatever its version.
    assert report["environment"]["roomkit"] == importlib.metadata.version("roomkit")
