"""Session-wide: one JAX compilation cache for this test run, shared by every process it starts.

Most tests compile the same few programs (the tiny fleet of `tests/fleet.yaml`, the default
self-play loop) in many processes: role subprocesses, supervisord programs, restarts after kill -9.
`BGAI_JAX__CACHE_DIR` points all of them (through `bgai.compile_cache`) and this process at a
fresh directory, so each program is compiled once per run. It starts empty: nothing carries over
between runs, and a run never reads the developer's own `~/.cache/bgai/jax`. Likewise
`BGAI_JAX__BEAROFF_DIR`: the bear-off database is built once per run, by the first process that
plays, and read back by the rest.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from bgai import compile_cache
from bgai.config import JaxConfig

_ENV = "BGAI_JAX__CACHE_DIR"
_BEAROFF_ENV = "BGAI_JAX__BEAROFF_DIR"


def pytest_configure(config: pytest.Config) -> None:
    _fast_compiles()
    for name, prefix in ((_ENV, "bgai-jax-cache-"), (_BEAROFF_ENV, "bgai-bearoff-")):
        if os.environ.get(name) is None:
            path = tempfile.mkdtemp(prefix=prefix)
            os.environ[name] = path
            config.add_cleanup(lambda path=path: shutil.rmtree(path, ignore_errors=True))
    compile_cache.enable(JaxConfig(cache_dir=os.environ[_ENV]))


# LLVM's optimisation of the compiled programs, which XLA runs after its own HLO passes: most of a
# CPU compile's time, and most of this suite's CPU is compiling. Level 0 leaves the programs and
# their results as they are (the HLO passes still run; XLA's CPU backend uses no fast-math), only
# less tuned: the suite takes about a quarter less CPU (test_bench.py and test_cli.py together,
# 258 -> 191 CPU seconds; test_selfplay.py 89 -> 54). Set before JAX starts its backend, in this
# process and (inherited) in every process a test starts. An XLA_FLAGS that already says a level
# is left alone; benchmarks and the fleet's own programs never see this.
_OPT_FLAG = "--xla_backend_optimization_level"


def _fast_compiles() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if _OPT_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_OPT_FLAG}=0".strip()


# Files whose tests mostly wait (the deployment test: Ansible's tasks one after another, about one
# core's worth) run first, so that under pytest-xdist (scripts/test) they overlap with the
# compile-bound rest instead of running after it on a machine otherwise idle.
WAITING_FILES = ("tests/deploy/test_deploy.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in WAITING_FILES)  # stable
