"""`jax.cache_dir`: a second process loads what the first compiled; a bad directory only logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bgai import compile_cache
from bgai.config import JaxConfig

# One process: resolve the config from the environment, as every `bgai` command does, turn the
# cache on, compile one program and report JAX's cache events.
_SNIPPET = """
import json
import jax, jax.numpy as jnp
from jax import monitoring
from bgai import compile_cache
from bgai.config import load_config

events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
compile_cache.MIN_COMPILE_S = 0.0  # cache even this tiny program
path = compile_cache.enable(load_config(None).jax)
x = jnp.arange(64.0).reshape(8, 8)
jax.jit(lambda a: jnp.tanh(a) @ a.T + a.sum())(x).block_until_ready()
print(json.dumps({"path": str(path),
                  "hits": sum(e.endswith("/cache_hits") for e in events),
                  "misses": sum(e.endswith("/cache_misses") for e in events)}))
"""


def _run(cache: Path) -> dict[str, object]:
    env = {**os.environ, "BGAI_JAX__CACHE_DIR": str(cache), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", _SNIPPET], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_second_process_loads_the_compiled_program(tmp_path: Path) -> None:
    cache = tmp_path / "nested" / "cache"  # created on demand
    first = _run(cache)
    assert first["path"] == str(cache)
    assert first["hits"] == 0 and int(first["misses"]) >= 1  # type: ignore[call-overload]
    assert any(cache.iterdir()), "the first process wrote no cache entry"
    second = _run(cache)
    assert int(second["hits"]) >= 1 and second["misses"] == 0  # type: ignore[call-overload]


def test_empty_dir_turns_the_cache_off() -> None:
    assert compile_cache.enable(JaxConfig(cache_dir="  ")) is None


def test_unusable_dir_is_logged_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "cache"  # mkdir fails: a file is in the way
    with caplog.at_level(logging.WARNING, logger="bgai.compile_cache"):
        assert compile_cache.enable(JaxConfig(cache_dir=str(target))) is None
    assert "compilation cache off" in caplog.text and str(target) in caplog.text


def test_cache_size_must_be_positive() -> None:
    from bgai.errors import ConfigError

    with pytest.raises(ConfigError, match="jax.cache_max_mb"):
        JaxConfig(cache_max_mb=0)
