"""`bgai bench device` (`scripts/gpu-check`): what JAX sees, and the hot paths measured on it.

One command for a new host: the device JAX runs on (a GPU, or the CPU said plainly), then
self-play (afterstate and mcts), the train step and the learner's value targets, each at the
sizes that fit the device (on a GPU: self-play batches of 1024 and 4096; on a CPU: small
ones, so the check takes a minute or two), and one JSON line with every figure. Each
benchmark is the same code as `bgai bench selfplay|train|targets`, with fewer repeats.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax

from bgai.config import Config

# (selfplay afterstate batches, mcts batches, mcts sims, train batch, target games) per kind
SIZES = {
    "gpu": ((1024, 4096), (1024, 4096), 16, 4096, 256),
    "cpu": ((64,), (16,), 4, 256, 8),
}


def device_report() -> dict[str, Any]:
    """The backend JAX uses and its devices; `gpu` is whether any is a GPU."""
    devices = jax.devices()
    kinds = sorted({d.platform for d in devices})
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind if devices else "",
        "platforms": kinds,
        "gpu": any(p in ("gpu", "cuda", "rocm") for p in kinds),
        "jax": jax.__version__,
    }


def bench_device(cfg: Config, force: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every hot-path benchmark at the device's sizes (`force`: "cpu" or "gpu" sizes regardless)."""
    from bgai.bench.selfplay import bench_selfplay
    from bgai.bench.targets import bench_targets
    from bgai.bench.train import bench_train

    t0 = time.perf_counter()
    dev = device_report()
    kind = force or ("gpu" if dev["gpu"] else "cpu")
    if dev["gpu"]:
        log(f"JAX sees {dev['device_kind']} ({dev['backend']}): {', '.join(dev['devices'])}")
    else:
        log(f"no GPU found: JAX runs on the CPU ({dev['device_kind'] or 'cpu'}); {kind} sizes")
    after_batches, mcts_batches, sims, train_batch, target_games = SIZES[kind]
    quiet = dataclasses.replace(cfg, selfplay=dataclasses.replace(cfg.selfplay, batch_size=after_batches[0]))
    runs: dict[str, Any] = {}
    for b in after_batches:
        r = bench_selfplay(quiet, mode="afterstate", batch=b, sims=None, repeats=2, baseline=False, log=log)
        runs[f"selfplay_afterstate_{b}"] = _pick(r, "games_per_s", "decisions_per_s", "first_run_s")
    for b in mcts_batches:
        r = bench_selfplay(quiet, mode="mcts", batch=b, sims=sims, repeats=2, baseline=False, log=log)
        runs[f"selfplay_mcts_{b}"] = _pick(r, "decisions_per_s", "sims_per_s", "first_run_s")
    r = bench_train(cfg, batch=train_batch, repeats=2, log=log)
    runs[f"train_{train_batch}"] = {k: v for k, v in r.items() if isinstance(v, int | float)}
    r = bench_targets(cfg, games=target_games, repeats=2, log=log)
    runs["targets"] = {k: v for k, v in r.items() if isinstance(v, int | float)}
    return {
        "bench": "device",
        **dev,
        "sizes": kind,
        "hidden": list(cfg.model.hidden),
        "inputs": cfg.model.inputs,
        "seconds": time.perf_counter() - t0,
        "runs": runs,
    }


def _pick(r: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: r[n] for n in names if n in r}
