"""JAX's persistent compilation cache, set up from `jax.cache_dir` for the processes that compile.

Compiling a self-play loop takes 10-15 s on a CPU; every worker start (and every restart after a
crash) paid it again. With the cache a process compiles a program once per host and jax version,
and later processes load it (`bgai bench compile`: first self-play chunk after 5.8 s instead of
13.9). Entries are keyed by the program, the compile options and the jax version, so a changed
program or an upgrade simply misses; an unreadable entry is reported by JAX and compiled again,
never used.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bgai.config import JaxConfig

log = logging.getLogger(__name__)

# Programs that compile faster than this are not worth a disk entry.
MIN_COMPILE_S = 1.0


def enable(cfg: JaxConfig) -> Path | None:
    """Point JAX at the cache directory (created if missing); None when off or not writable.

    A directory that cannot be created or written is logged and the process carries on without a
    cache. Eviction above `cache_max_mb` locks the directory with `filelock` (a dependency), so
    processes sharing it do not read each other's half-written entries.
    """
    if not cfg.cache_dir.strip():
        return None
    path = Path(cfg.cache_dir).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("compilation cache off: cannot create %s (%s)", path, exc)
        return None
    if not os.access(path, os.W_OK | os.X_OK):
        log.warning("compilation cache off: %s is not writable", path)
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    jax.config.update("jax_compilation_cache_max_size", cfg.cache_max_mb * 1024 * 1024)
    return path
