"""Afterstate evaluation: the value of each legal play's resulting position.

A play's value for the mover is minus the opponent's pre-roll equity of the
afterstate (flipped to the opponent's view), or the points won outright when
the play bears off the last checker. This is both the fast self-play mode
(pick by value, with exploration) and the greedy 0-ply evaluation player.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from bgai.core import rules
from bgai.core.encoding import encode
from bgai.core.network import NEG_INF, equity

ApplyFn = Callable[..., Any]  # flax apply: (params, features [N, F]) -> (step logits, value logits)


def afterstate_values(apply_fn: ApplyFn, params: dict, plays: rules.Plays) -> jax.Array:
    """Mover's equity after each play [..., K]; -inf-like for masked slots.

    `plays` may carry any leading batch axes; the network runs once on all
    afterstates flattened into one batch.
    """
    boards = plays.boards  # [..., K, 28]
    flat = boards.reshape(-1, rules.BOARD_SIZE)
    _, value_logits = apply_fn(params, encode(rules.flip(flat)))
    opp_equity = equity(value_logits).reshape(boards.shape[:-1])
    won = jax.vmap(rules.win_points)(flat).reshape(boards.shape[:-1]).astype(jnp.float32)
    value = jnp.where(won > 0, won, -opp_equity)
    return jnp.where(plays.mask, value, NEG_INF)


def softmax_policy(values: jax.Array, mask: jax.Array, temperature: float) -> jax.Array:
    """A distribution over plays [..., K] from their values (masked slots 0)."""
    logits = jnp.where(mask, values / jnp.maximum(temperature, 1e-6), NEG_INF)
    return jax.nn.softmax(logits, axis=-1) * mask


def choose(key: jax.Array, values: jax.Array, mask: jax.Array, temperature: float | jax.Array) -> jax.Array:
    """Sample a play index from softmax(values / T); T == 0 means argmax. Consumes `key`."""
    greedy = jnp.argmax(jnp.where(mask, values, NEG_INF), axis=-1)
    t = jnp.maximum(temperature, 1e-6)
    sampled = jax.random.categorical(key, jnp.where(mask, values / t, NEG_INF), axis=-1)
    return jnp.where(temperature > 0, sampled, greedy)
