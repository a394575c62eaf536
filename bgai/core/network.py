"""The policy/value network and what is derived from its outputs.

Action encoding: a play (a whole turn) is the sequence of its single-checker
steps, each step = (source 0..24, die 1..6) -> index source*6 + die-1 (150).
The policy head gives one logit per step; a play's logit is the sum of its
steps' logits. This keeps the head a fixed 150-wide layer evaluated once per
position (a search needs priors for every play without evaluating every
afterstate), while the policy is still a distribution over whole plays.

Value head: logits over the six cubeless outcomes of the side to move, before
it rolls: win single / gammon / backgammon, lose single / gammon / backgammon.
gnubg's five probabilities and the money equity follow from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bgai.core.encoding import encode_as
from bgai.core.pubeval import is_race
from bgai.core.rules import BOARD_SIZE, NUM_STEPS

NUM_OUTCOMES = 6
OUTCOME_POINTS = jnp.array([1.0, 2.0, 3.0, -1.0, -2.0, -3.0])
NEG_INF = -1e9


def mlp_trunk(x: jax.Array, hidden: Sequence[int]) -> jax.Array:
    """ReLU MLP layers; call inside an `nn.compact` method (the layers belong to that module)."""
    for width in hidden:
        x = nn.relu(nn.Dense(width)(x))
    return x


class BgNet(nn.Module):
    """Boards [N, 28] (side to move) -> encoded by `inputs` (`encoding.encode_as`) -> MLP trunk ->
    (step logits [N, 150], outcome logits [N, 6]).

    `value_heads`: "one" outcome head for every position; "by_class": one for contact positions
    and one for races (`pubeval.is_race`, gnubg's split), on the same trunk; "race_net": races
    valued by a second MLP of `race_hidden` widths on the same inputs, with its own head (gnubg's
    separate race net). The step logits always come from the main trunk.

    `ensemble` > 1: that many such nets side by side (their weights stacked under `members`),
    the outcome probabilities their mean (returned as its log: a softmax of it gives the mean)
    and the step logits their mean. The members are trained one at a time and stacked
    afterwards (`bgai.train.ensemble`, which says what the mean gains)."""

    hidden: Sequence[int] = (128, 128)
    inputs: str = "raw"
    value_heads: str = "one"
    race_hidden: Sequence[int] = ()
    ensemble: int = 1

    @nn.compact
    def __call__(self, boards: jax.Array) -> tuple[jax.Array, jax.Array]:
        boards = boards.astype(jnp.int32)
        if self.ensemble > 1:
            return self._ensemble(boards)
        inputs = encode_as(self.inputs, boards)
        x = mlp_trunk(inputs, self.hidden)
        step_logits = nn.Dense(NUM_STEPS)(x)
        value_logits = nn.Dense(NUM_OUTCOMES)(x)
        if self.value_heads == "one":
            return step_logits, value_logits
        if self.value_heads == "by_class":
            race_logits = nn.Dense(NUM_OUTCOMES, name="race_value")(x)
        elif self.value_heads == "race_net":
            r = inputs
            for i, width in enumerate(self.race_hidden):
                r = nn.relu(nn.Dense(width, name=f"race_{i}")(r))
            race_logits = nn.Dense(NUM_OUTCOMES, name="race_value")(r)
        else:
            raise ValueError(f"unknown value_heads {self.value_heads!r} (one, by_class, race_net)")
        race = jax.vmap(is_race)(boards.reshape(-1, BOARD_SIZE)).reshape(boards.shape[:-1])
        return step_logits, jnp.where(race[..., None], race_logits, value_logits)

    def _ensemble(self, boards: jax.Array) -> tuple[jax.Array, jax.Array]:
        members = nn.vmap(
            BgNet,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.ensemble,
        )(self.hidden, self.inputs, self.value_heads, self.race_hidden, name="members")
        step_logits, value_logits = members(boards)  # [K, ..., 150], [K, ..., 6]
        logp = jax.nn.log_softmax(value_logits, axis=-1)
        mean = jax.scipy.special.logsumexp(logp, axis=0) - jnp.log(float(self.ensemble))
        return jnp.mean(step_logits, axis=0), mean


def init_params(net: BgNet, key: jax.Array) -> Any:
    """Fresh parameters (consumes `key`)."""
    return net.init(key, jnp.zeros((1, BOARD_SIZE), jnp.int32))


def equity(value_logits: jax.Array) -> jax.Array:
    """Cubeless money equity [...] of the side the logits belong to."""
    return jnp.sum(jax.nn.softmax(value_logits, axis=-1) * OUTCOME_POINTS, axis=-1)


def gnubg_probabilities(p: jax.Array) -> jax.Array:
    """The six outcome probabilities [..., 6] (softmax of the value logits, or exact ones) ->
    gnubg's five [..., 5]: P(win), P(win gammon+), P(win bg), P(lose gammon+), P(lose bg)."""
    return jnp.stack(
        [
            p[..., 0] + p[..., 1] + p[..., 2],
            p[..., 1] + p[..., 2],
            p[..., 2],
            p[..., 4] + p[..., 5],
            p[..., 5],
        ],
        axis=-1,
    )


def play_logits(step_logits: jax.Array, steps: jax.Array, mask: jax.Array) -> jax.Array:
    """Logits over plays [..., K] from step logits [..., 150] and plays' steps [..., K, 4]."""
    padded = jnp.concatenate([step_logits, jnp.zeros((*step_logits.shape[:-1], 1), step_logits.dtype)], -1)
    gathered = jnp.take_along_axis(padded[..., None, :], steps.astype(jnp.int32), axis=-1)  # [..., K, 4]
    return jnp.where(mask, jnp.sum(gathered, axis=-1), NEG_INF)


def outcome_class(points: jax.Array) -> jax.Array:
    """Points won (+1..+3) or lost (-1..-3) by a side -> outcome class 0..5."""
    return jnp.where(points > 0, points - 1, 2 - points)
