"""`bgai bench compile`: what a worker's start costs with and without the compilation cache.

Each repeat runs `bgai bench selfplay --repeats 1` twice as fresh processes on one empty cache
directory (`jax.cache_dir`): the first compiles the self-play loop and fills the cache (what the
first start on a host costs), the second loads it (what every later start or restart costs).
Reported: seconds to the first self-play chunk (tracing + compile or cache load + one run) and
the whole process's wall time (imports included), medians over the repeats, and their ratios.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any


def _one(args: Sequence[str], cache_dir: str) -> tuple[float, float]:
    """(first_run_s, process wall s) of one `bgai bench selfplay` process."""
    cmd = [
        sys.executable,
        "-m",
        "bgai.cli.main",
        "bench",
        "selfplay",
        *args,
        "--set",
        f"jax.cache_dir={cache_dir}",
    ]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}{out.stderr}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["first_run_s"]), wall


def bench_compile(
    selfplay_args: Sequence[str], repeats: int, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """selfplay_args: passed to `bgai bench selfplay` (config, sets, mode, batch)."""
    cold: list[tuple[float, float]] = []
    warm: list[tuple[float, float]] = []
    args = [*selfplay_args, "--repeats", "1"]
    for r in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bgai-bench-cache-") as d:
            cold.append(_one(args, d))
            warm.append(_one(args, d))
        log(
            f"repeat {r + 1}: first chunk {cold[-1][0]:.1f} s cold, {warm[-1][0]:.1f} s from the cache; "
            f"process {cold[-1][1]:.1f} s / {warm[-1][1]:.1f} s"
        )

    def med(xs: list[tuple[float, float]], i: int) -> float:
        return statistics.median(x[i] for x in xs)

    result = {
        "repeats": repeats,
        "cold_first_chunk_s": med(cold, 0),
        "cached_first_chunk_s": med(warm, 0),
        "cold_process_s": med(cold, 1),
        "cached_process_s": med(warm, 1),
    }
    result["first_chunk_ratio"] = result["cold_first_chunk_s"] / result["cached_first_chunk_s"]
    result["process_ratio"] = result["cold_process_s"] / result["cached_process_s"]
    log(
        f"first self-play chunk: {result['cold_first_chunk_s']:.1f} s cold, "
        f"{result['cached_first_chunk_s']:.1f} s cached ({result['first_chunk_ratio']:.1f}x); "
        f"whole process {result['cold_process_s']:.1f} s / {result['cached_process_s']:.1f} s "
        f"({result['process_ratio']:.1f}x)"
    )
    return result
