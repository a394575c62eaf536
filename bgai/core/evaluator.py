"""The value of a position wherever one is needed: the network, or an exact database where one
applies.

Every value in play, search and targets comes through `net_outputs`: the network's step logits
and outcome logits of boards [N, 28] (side to move). If the variables it is given carry the
bear-off database (collection `BEAROFF`, attached by `with_bearoff`), the outcome logits of the
positions in it (`bearoff.in_database`: both sides all home or off) are replaced by the log of
their exact outcome probabilities, so a softmax of them gives those probabilities back.

The database travels with the weights as an argument of the compiled programs (two float32
arrays of 6.9 MB): closed over, it would be copied into every program's text. It is never part of
what is trained, checkpointed or published: `weights_only` takes it off again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from bgai.core import bearoff, rules

ApplyFn = Callable[..., Any]  # flax apply: (variables, boards [N, 28]) -> (step logits, value logits)
BEAROFF = "bearoff"
_TINY = 1e-30  # log(0) stand-in: impossible outcomes get a vanishing probability
PACK_FROM = 256  # batches of this many boards or more look the database up only where it applies


def with_bearoff(variables: Mapping[str, Any], rolls: Any, first: Any) -> dict[str, Any]:
    """The network's variables with the bear-off database attached (`bearoff.build`'s arrays)."""
    return {**weights_only(variables), BEAROFF: {"rolls": rolls, "first": first}}


def weights_only(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The network's own variables (no database)."""
    return {k: v for k, v in variables.items() if k != BEAROFF}


def has_bearoff(variables: Any) -> bool:
    return isinstance(variables, Mapping) and BEAROFF in variables


def net_outputs(apply_fn: ApplyFn, variables: Any, boards: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(step logits [N, 150], outcome logits [N, 6]) of boards [N, 28], side to move; exact
    outcome logits for the positions in the bear-off database when `variables` carry it."""
    boards = boards.astype(jnp.int32)
    if not has_bearoff(variables):
        return apply_fn(variables, boards)
    step_logits, value_logits = apply_fn(weights_only(variables), boards)
    inside = bearoff.in_database(boards)
    flat = boards.reshape(-1, boards.shape[-1])
    exact = _exact_logits(variables[BEAROFF], flat, inside.reshape(-1)).reshape(value_logits.shape)
    return step_logits, jnp.where(inside[..., None], exact.astype(value_logits.dtype), value_logits)


def _exact_logits(tables: Mapping[str, Any], boards: jax.Array, inside: jax.Array) -> jax.Array:
    """Log outcome probabilities [N, 6] of the rows of `boards` [N, 28] in the database (`inside`
    [N]); the other rows' are meaningless. A database value costs about as much as the network's
    (its rolls distributions gathered and summed), and in self-play a small share of the
    afterstates are in it: a large batch looks up only those rows, packed into N / 8 rows (else
    N / 4, else all, as `cond` branches: the one taken runs)."""

    def lookup(b: jax.Array) -> jax.Array:
        return jnp.log(jnp.maximum(bearoff.race_outcomes(tables["rolls"], tables["first"], b), _TINY))

    n = boards.shape[0]
    return rules.packed_apply(lookup, boards, inside, (n // 8, n // 4) if n >= PACK_FROM else ())
