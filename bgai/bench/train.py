"""`bgai bench train`: samples/s of the jitted train step on synthetic batches."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgai.agent import net_of, optimizer_of
from bgai.config import Config
from bgai.core import rules
from bgai.core.network import init_params
from bgai.core.train_step import Batch, init_train_state, make_train_step


def synthetic_batch(n: int, max_plays: int, seed: int = 0) -> Batch:
    """Random but well-formed samples: legal-looking masks, normalised targets."""
    rng = np.random.default_rng(seed)
    boards = np.tile(np.asarray(rules.start_board(), np.int8), (n, 1))
    steps = rng.integers(0, rules.NO_STEP + 1, size=(n, max_plays, rules.MAX_STEPS_PER_PLAY)).astype(np.uint8)
    mask = np.arange(max_plays)[None, :] < rng.integers(1, 40, size=(n, 1))
    policy = rng.random((n, max_plays)).astype(np.float32) * mask
    policy /= policy.sum(-1, keepdims=True)
    # soft outcome targets, mostly on one outcome (as TD returns late in a game are)
    value = (0.9 * np.eye(6)[rng.integers(0, 6, size=n)] + 0.1 * rng.dirichlet(np.ones(6), size=n)).astype(
        np.float32
    )
    return Batch(
        jnp.asarray(boards), jnp.asarray(steps), jnp.asarray(mask), jnp.asarray(policy), jnp.asarray(value)
    )


def bench_train(
    cfg: Config, batch: int | None, repeats: int, log: Callable[[str], None] = print
) -> dict[str, Any]:
    t = cfg.training
    n = t.batch_size if batch is None else batch
    net = net_of(cfg)
    opt = optimizer_of(cfg)
    state = init_train_state(init_params(net, jax.random.key(0)), opt)
    step = make_train_step(net.apply, opt, t.policy_weight, t.value_weight)
    data = synthetic_batch(n, cfg.movegen.max_plays)
    state, m = step(state, data)
    jax.block_until_ready(m)
    iters = max(10, 20_000 // n)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            state, m = step(state, data)
        jax.block_until_ready(m)
        rates.append(iters * n / (time.perf_counter() - t0))
    med = statistics.median(rates)
    log(
        f"train step, batch {n}, net {list(cfg.model.hidden)}, K={cfg.movegen.max_plays}: "
        f"{med:.0f} samples/s (median of {repeats})"
    )
    return {"batch": n, "hidden": list(cfg.model.hidden), "samples_per_s": med, "repeats": repeats}
