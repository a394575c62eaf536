"""`jax.cpu_threads`-style limits (`bgai.cpu_threads.limit`): XLA's CPU pool gets the threads asked
for, and every thread of the process can still run on every core. Each case in a fresh process:
the pool is sized once, when JAX creates its CPU client."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import collections, json, os, sys
from bgai.cpu_threads import limit
said = limit(int(sys.argv[1]))
import jax.numpy as jnp
jnp.ones(3).block_until_ready()
tasks = os.listdir("/proc/self/task")
names = collections.Counter(open(f"/proc/self/task/{t}/comm").read().strip() for t in tasks)
cores = sorted({c for t in tasks for c in os.sched_getaffinity(int(t))})
narrow = [t for t in tasks if len(os.sched_getaffinity(int(t))) < len(os.sched_getaffinity(0))]
print(json.dumps({"said": said, "pool": names["tf_XLAEigen"], "cores": cores, "narrow": narrow}))
"""


def probe(n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(n)], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs Linux, 2+ cores"
)
def test_the_pool_gets_the_threads_asked_for_and_keeps_every_core() -> None:
    cores = len(os.sched_getaffinity(0))
    default, one = probe(0), probe(1)
    assert default["pool"] == cores and "default" in default["said"]
    assert one["pool"] == 1 and one["said"] == f"XLA threads: 1 of {cores} cores"
    assert one["cores"] == default["cores"] == sorted(os.sched_getaffinity(0))
    assert one["narrow"] == []  # no thread stays pinned to the core it was created on
    assert "default" in probe(cores)["said"]  # as many as the cores: nothing to narrow
