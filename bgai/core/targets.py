"""Value targets for the outcome head: TD(lambda) returns and exact 1-ply expectations.

An outcome distribution is over the six cubeless outcomes of one side, in `network.OUTCOME_POINTS`
order: win single / gammon / backgammon, lose single / gammon / backgammon. Seen from the other
side it swaps its halves (`flip_outcome`). Every target here is such a distribution for the side
to move at a decision, before it rolls (what the value head predicts), so the train step fits it
with a soft-label cross-entropy.

- `td_lambda_targets` (numpy, host side): the lambda-return over each episode from the values
  V(s_t) of its positions. Movers alternate row by row, so with z_{T-1} = the final outcome
  (one-hot, the last mover's), z_t = flip((1 - lambda) V(s_{t+1}) + lambda z_{t+1}).
  lambda = 1 gives the final outcome (Monte-Carlo); lambda = 0 is TD(0).
- `n_ply_distribution` (JAX): gnubg's n-ply value of a position, the expectation over the 21 rolls
  of the (n-1)-ply distribution after the mover's best 0-ply play; `one_ply_distribution` is its
  1-ply case, the exact 1-ply value of a position, as a target or to play.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgai.core import rules
from bgai.core.afterstate import afterstate_values
from bgai.core.evaluator import ApplyFn, net_outputs
from bgai.core.network import NUM_OUTCOMES, OUTCOME_POINTS, outcome_class

_SWAP = np.array([3, 4, 5, 0, 1, 2])


def flip_outcome(p: Any) -> Any:
    """A side's outcome distribution [..., 6] seen from the other side (numpy or JAX)."""
    return p[..., _SWAP]


def td_lambda_targets(
    values: Sequence[np.ndarray], last_outcome: Sequence[int], lam: float
) -> list[np.ndarray]:
    """lambda-returns [T, 6] float32 of each episode.

    `values[e]`: [T, 6] V(s_t) of episode e's positions, each from its mover's view (rows alternate
    movers); `last_outcome[e]`: the outcome class (0..5) of the mover of its last row.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    lengths = np.array([len(v) for v in values], np.int64)
    if len(lengths) == 0:
        return []
    e, t_max = len(lengths), int(lengths.max())
    v = np.zeros((e, t_max, NUM_OUTCOMES), np.float64)  # right-aligned: row t_max-1 is each last row
    for i, vi in enumerate(values):
        v[i, t_max - len(vi) :] = vi
    z = np.zeros((e, t_max, NUM_OUTCOMES), np.float64)
    z[np.arange(e), t_max - 1, np.asarray(last_outcome, np.int64)] = 1.0
    for t in range(t_max - 2, -1, -1):
        z[:, t] = flip_outcome((1.0 - lam) * v[:, t + 1] + lam * z[:, t + 1])
    return [z[i, t_max - n :].astype(np.float32) for i, n in enumerate(lengths)]


def outcome_distribution(apply_fn: ApplyFn, params: Any, boards: jax.Array) -> jax.Array:
    """V(s) [N, 6]: the network's outcome distribution of each board [N, 28] (side to move)."""
    _, logits = net_outputs(apply_fn, params, boards)
    return jax.nn.softmax(logits, axis=-1)


def afterstate_distribution(
    apply_fn: ApplyFn,
    params: Any,
    after: jax.Array,
    movegen: rules.MoveGenConfig | None = None,
    plies: int = 0,
    eval_slots: int | None = 32,
) -> jax.Array:
    """The mover's outcome distribution [N, 6] after playing to `after` [N, 28] (mover's view):
    exact (one-hot) when the play bore off the last checker, else the flipped opponent's
    distribution at `plies` lookahead (0: the net's own V; `movegen` is needed above 0)."""
    opp = n_ply_distribution(apply_fn, params, rules.flip(after), movegen, plies, eval_slots)
    won = jax.vmap(rules.win_points)(after)
    exact = jax.nn.one_hot(outcome_class(jnp.maximum(won, 1)), NUM_OUTCOMES)
    return jnp.where((won > 0)[:, None], exact, flip_outcome(opp))


def afterstate_equity(
    apply_fn: ApplyFn,
    params: Any,
    after: jax.Array,
    movegen: rules.MoveGenConfig | None = None,
    plies: int = 0,
    eval_slots: int | None = 32,
) -> jax.Array:
    """The mover's cubeless equity [N] after playing to `after` [N, 28], at `plies` lookahead."""
    dist = afterstate_distribution(apply_fn, params, after, movegen, plies, eval_slots)
    return dist @ jnp.asarray(OUTCOME_POINTS)


def n_ply_distribution(
    apply_fn: ApplyFn,
    params: Any,
    boards: jax.Array,
    movegen: rules.MoveGenConfig | None,
    plies: int,
    eval_slots: int | None = 32,
) -> jax.Array:
    """The outcome distribution [N, 6] of each board [N, 28] (side to move, pre-roll) at `plies`.

    0-ply is the network's V. n-ply is, as gnubg's n-ply evaluation, the expectation over the 21
    rolls of the (n-1)-ply distribution after the mover's best play by 0-ply equity: 1-ply costs
    21 move generations and about 21 x (plays + 1) network rows per board, 2-ply 21 + 21 x 21
    move generations. A roll with no legal play keeps the board as it is.
    """
    if plies == 0:
        return outcome_distribution(apply_fn, params, boards)
    if movegen is None:
        raise ValueError("a lookahead needs the move generator's config")
    boards = boards.astype(jnp.int32)

    def after_roll(roll: jax.Array) -> jax.Array:  # [N, 6] after the best play of every board
        plays = rules.legal_plays_batch(boards, jnp.full(boards.shape[0], roll, jnp.int32), movegen)
        values = afterstate_values(apply_fn, params, plays, eval_slots)  # [N, K]
        best = jnp.argmax(values, axis=-1)
        after = rules.play_boards(plays, best)  # [N, 28]
        return afterstate_distribution(apply_fn, params, after, movegen, plies - 1, eval_slots)

    # one roll at a time: the compiled shapes (and the packing's prefix sums) stay those of N boards
    dist = jax.lax.map(after_roll, jnp.arange(rules.NUM_ROLLS, dtype=jnp.int32))  # [21, N, 6]
    return jnp.einsum("rnk,r->nk", dist, jnp.asarray(rules.DICE_PROBS))


def one_ply_distribution(
    apply_fn: ApplyFn,
    params: Any,
    boards: jax.Array,
    movegen: rules.MoveGenConfig,
    eval_slots: int | None = 32,
) -> jax.Array:
    """The exact 1-ply outcome distribution [N, 6] of each board [N, 28] (side to move, pre-roll):
    the 1-ply value target, and the opponent's reply in the 1-ply player."""
    return n_ply_distribution(apply_fn, params, boards, movegen, 1, eval_slots)
