"""The jitted train step: losses against a slow reference, and learning on a fixed batch."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bgai.bench.train import synthetic_batch
from bgai.core.network import BgNet, init_params
from bgai.core.train_step import (
    BATCH_FIELDS,
    Batch,
    TrainState,
    batch_fields,
    batch_of,
    init_train_state,
    losses,
    make_optimizer,
    make_train_step,
    reads_plays,
)


def test_losses_match_reference() -> None:
    net = BgNet((8,))
    params = init_params(net, jax.random.key(0))
    batch = synthetic_batch(6, 16)
    p, v = losses(net.apply, params, batch)
    step_logits, value_logits = (np.asarray(x, np.float64) for x in net.apply(params, batch.boards))
    pol, val = [], []
    for i in range(6):
        padded = np.append(step_logits[i], 0.0)
        logits = np.array([padded[s].sum() for s in np.asarray(batch.steps[i]).astype(int)])
        m = np.asarray(batch.mask[i])
        z = logits[m] - logits[m].max()
        logp = z - np.log(np.exp(z).sum())
        pol.append(-(np.asarray(batch.policy[i])[m] * logp).sum())
        vz = value_logits[i] - value_logits[i].max()
        val.append(-(np.asarray(batch.value[i]) * (vz - np.log(np.exp(vz).sum()))).sum())
    assert np.isclose(float(p), np.mean(pol), rtol=1e-4)
    assert np.isclose(float(v), np.mean(val), rtol=1e-4)


def test_step_learns_a_fixed_batch() -> None:
    net = BgNet((32,))
    opt = make_optimizer(3e-3, "cosine", warmup_steps=5, decay_steps=200, weight_decay=1e-4, grad_clip=1.0)
    state = init_train_state(init_params(net, jax.random.key(1)), opt)
    step = make_train_step(net.apply, opt)
    batch = synthetic_batch(64, 16, seed=3)
    rng = np.random.default_rng(4)  # distinct positions, so there is something to fit
    boards = np.zeros((64, 28), np.int8)
    for i in range(64):
        mine = rng.choice(24, size=15)
        np.add.at(boards[i], mine, 1)
        theirs = rng.choice([p for p in range(24) if boards[i, p] == 0], size=15)
        np.add.at(boards[i], theirs, -1)
    batch = dataclasses.replace(batch, boards=jnp.asarray(boards))
    state, first = step(state, batch)
    for _ in range(200):
        state, m = step(state, batch)
    assert int(state.step) == 201
    assert float(m["loss"]) < 0.7 * float(first["loss"]), (float(first["loss"]), float(m["loss"]))
    assert all(np.isfinite(float(x)) for x in m.values())


def test_a_value_only_step_makes_the_updates_of_a_zero_policy_weight() -> None:
    """With policy_weight 0 the step leaves the policy loss out (its gradient is zeros) and reads
    only `batch_fields(0)`: its parameters after ten steps equal those of a step that computes
    the policy loss and weights it by zero (and a test that could not tell them apart would pass
    a step that still learned the policy: that one is checked against a weight of 1)."""
    net = BgNet((16,))
    opt = make_optimizer(3e-3, "cosine", warmup_steps=2, decay_steps=50, weight_decay=1e-4, grad_clip=1.0)
    start = init_train_state(init_params(net, jax.random.key(2)), opt)
    full = synthetic_batch(32, 16, seed=5)
    value_only = batch_of({k: getattr(full, k) for k in batch_fields(0.0)})
    assert batch_fields(0.0) == ("boards", "value") and value_only.steps is None
    assert not reads_plays(0.0) and reads_plays(0.5) and batch_fields(0.5) == BATCH_FIELDS

    def reference(params: Any, batch: Batch) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        p, v = losses(net.apply, params, batch)
        return 0.0 * p + v, (p, v)

    @jax.jit
    def weighted_by_zero(state: TrainState, batch: Batch) -> TrainState:
        grads = jax.grad(reference, has_aux=True)(state.params, batch)[0]
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1)

    step, with_policy = make_train_step(net.apply, opt, 0.0), make_train_step(net.apply, opt, 1.0)
    a, b, c = start, start, start
    for _ in range(10):
        a, m = step(a, value_only)
        b = weighted_by_zero(b, full)
        c, _ = with_policy(c, full)
    assert np.isnan(float(m["policy_loss"])) and np.isfinite(float(m["value_loss"]))
    flat = [jax.tree_util.tree_leaves(s.params) for s in (a, b, c)]
    assert all(np.allclose(x, y, atol=1e-6) for x, y in zip(flat[0], flat[1], strict=True))
    assert not all(np.allclose(x, z, atol=1e-6) for x, z in zip(flat[0], flat[2], strict=True))
