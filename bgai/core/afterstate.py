"""Afterstate evaluation: the value of each legal play's resulting position.

A play's value for the mover is minus the opponent's pre-roll equity of the
afterstate (flipped to the opponent's view), or the points won outright when
the play bears off the last checker. This is both the fast self-play mode
(pick by value, with exploration) and the greedy 0-ply evaluation player.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from bgai.core import rules
from bgai.core.evaluator import ApplyFn, net_outputs
from bgai.core.network import NEG_INF, equity


def _values_of(apply_fn: ApplyFn, params: Any, flat: jax.Array) -> jax.Array:
    """Mover's equity after each afterstate [N] (flat [N, 28], mover's view)."""
    flat = flat.astype(jnp.int32)  # the generator's int8, widened on the rows evaluated only
    _, value_logits = net_outputs(apply_fn, params, rules.flip(flat))
    won = jax.vmap(rules.win_points)(flat).astype(jnp.float32)
    return jnp.where(won > 0, won, -equity(value_logits))


def afterstate_values(
    apply_fn: ApplyFn, params: Any, plays: rules.Plays, slots_per_position: int | None = None
) -> jax.Array:
    """Mover's equity after each play [..., K]; -inf-like for masked slots.

    `plays` may carry leading batch axes; the network runs once on all
    afterstates flattened into one batch. With `slots_per_position` (S) only the
    legal afterstates are evaluated, packed into rows: a position has ~18 plays
    on average but K slots, so this saves most of the network's work. The rows
    come in rungs (`packing_rungs`, N positions): the first of N*S*18/32,
    20/32 or 22/32 rows that holds the batch's plays, as one does in most of
    self-play's turns, else N*S, else all K*N slots (`rules.packed_apply`).
    """
    boards = plays.boards  # [..., K, 28]
    flat = boards.reshape(-1, rules.BOARD_SIZE)
    positions = flat.shape[0] // boards.shape[-2]
    caps = tuple(positions * slots for slots in packing_rungs(slots_per_position, boards.shape[-2]))
    value = rules.packed_apply(partial(_values_of, apply_fn, params), flat, plays.mask.reshape(-1), caps)
    return jnp.where(plays.mask, value.reshape(boards.shape[:-1]), NEG_INF)


# Rungs below S, in 32nds of it. A self-play batch of 256 positions averages ~18 plays a
# position, 16-22 from turn to turn, so these fit most turns within two rows a position: one
# rung at 20/32 handed the network 20.8 rows a decision, these 19.0. Each rung is one more
# compiled copy of the network (~1 s); 18/19/20/22 was 2% faster still, for 2 s more.
_RUNG_32NDS = (18, 20, 22)


def packing_rungs(slots_per_position: int | None, k: int) -> tuple[int, ...]:
    """The rows per position `afterstate_values` packs the legal plays into, smallest first."""
    if slots_per_position is None or slots_per_position >= k:
        return ()
    small = {max(1, slots_per_position * n // 32) for n in _RUNG_32NDS}
    return tuple(sorted(small | {slots_per_position}))


def softmax_policy(values: jax.Array, mask: jax.Array, temperature: float | jax.Array) -> jax.Array:
    """A distribution over plays [..., K] from their values (masked slots 0)."""
    logits = jnp.where(mask, values / jnp.maximum(temperature, 1e-6), NEG_INF)
    return jax.nn.softmax(logits, axis=-1) * mask


def sample_index(key: jax.Array, probs: jax.Array) -> jax.Array:
    """One index per row of `probs` [..., K] (rows need not be normalised); consumes `key`.

    Inverse CDF with one uniform per row: `jax.random.categorical` draws K
    Gumbels per row, and on a CPU those random bits cost as much as the network.
    A zero-probability slot is never returned.
    """
    cdf = rules.prefix_sum(probs)
    u = jax.random.uniform(key, probs.shape[:-1]) * cdf[..., -1]
    idx = jnp.minimum(jnp.sum(cdf <= u[..., None], axis=-1), probs.shape[-1] - 1)
    ok = jnp.take_along_axis(probs, idx[..., None], axis=-1)[..., 0] > 0
    return jnp.where(ok, idx, jnp.argmax(probs, axis=-1))


def choose(key: jax.Array, values: jax.Array, mask: jax.Array, temperature: float | jax.Array) -> jax.Array:
    """Sample a play index [...] from softmax(values / T) over [..., K]; T == 0 means argmax.
    Consumes `key`."""
    greedy = jnp.argmax(jnp.where(mask, values, NEG_INF), axis=-1)
    t = jnp.maximum(temperature, 1e-6)
    t = jnp.reshape(t, jnp.shape(t) + (1,)) if jnp.ndim(t) else t
    sampled = sample_index(key, softmax_policy(values, mask, t))
    return jnp.where(temperature > 0, sampled, greedy)
