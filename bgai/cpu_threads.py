"""How many threads this process's XLA computes with on the CPU (`jax.cpu_threads`).

XLA sizes its CPU thread pools by the cores the process may run on, once, when JAX creates its
CPU client (the first computation). On a host whose cores are shared by several bgai processes
(the one-host fleet: a game worker, the trainer, an eval worker on 2 cores) each would start a
pool as wide as the host and they would oversubscribe it. `limit(n)` narrows the process to n
cores just while the client is created, so its pools get n threads, then gives every thread of
the process all its cores back: the scheduler still places the n threads on any free core.

Linux only (`os.sched_setaffinity`); elsewhere, or with n = 0 or n >= the cores available, JAX
keeps its default and `limit` says so in its answer.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def limit(n: int) -> str:
    """Create JAX's CPU client with `n` threads (0: the default, every core); what was done, in words.
    Must run before the process's first JAX computation (a later call only reports)."""
    if n <= 0:
        return "XLA threads: default (every core)"
    if not hasattr(os, "sched_setaffinity"):
        return f"XLA threads: default (jax.cpu_threads = {n} needs Linux)"
    allowed = sorted(os.sched_getaffinity(0))
    if n >= len(allowed):
        return f"XLA threads: default ({len(allowed)} cores, jax.cpu_threads = {n})"
    import jax

    os.sched_setaffinity(0, allowed[:n])
    try:
        jax.devices("cpu")  # creates the CPU client; its pools take the cores this thread may use
    finally:
        for task in Path("/proc/self/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(task.name), allowed)
    return f"XLA threads: {n} of {len(allowed)} cores"
