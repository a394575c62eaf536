"""The jitted train step: losses against a slow reference, and learning on a fixed batch."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from bgai.bench.train import synthetic_batch
from bgai.core.network import BgNet, init_params
from bgai.core.train_step import init_train_state, losses, make_optimizer, make_train_step


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
