"""Stochastic MCTS over the true game: decisions are plays, chance nodes are the 21 rolls.

Built on `mctx.stochastic_muzero_policy`, but the "model" is our rules engine:
a decision node holds a position and its legal plays, an action index picks
one of those afterstates, and a chance outcome is the opponent's roll, whose
legal plays `legal_plays_batch` generates. Only values and priors come from
the network. By default a chance node branches on all 21 rolls with their
probabilities; `chance_samples` > 0 branches on that many drawn rolls instead.

Sign convention (mctx: a node's value is for the side to move there, and the
backup is `reward + discount * child value`):

    decision node D (side A to move)  value = A's pre-roll equity
      -- action, reward 0, discount 1 (fixed by mctx) -->
    chance node C (afterstate)        value = A's equity after the play
      -- roll, reward r, discount -1 -->
    decision node D' (side B to move) value = B's pre-roll equity

so C's value is `-value(D')` and a decision node maximises its children's
values, as both players should.

Terminal afterstates: a play that bears off the last checker has value = the
points won (`rules.win_points`, 1..3) exactly. Its chance children return
reward = those points and discount 0, so C keeps exactly that value however
often it is visited; everything below a terminal is flagged `terminal`, has
value 0, and cannot reach the nodes above it (the discount is 0).

Invalid actions: mctx masks them at the root only; below the root a masked
play has prior 0 (`play_logits` gives it -1e9) and is therefore practically
never chosen, but nothing forbids it (ties on the 1e-7 tie-break noise, or
action indices of the other node type that mctx's stochastic wrapper feeds to
both recurrent functions). Such an index is mapped to play 0, which is always
legal (the move generator compacts real plays first and always yields at least
one, the empty play when nothing moves): its value is a genuine sample of a
legal play, and unlike a very low value it does not stretch the min-max
normalisation of its siblings' Q-values.

One network forward per simulation: the net sees no dice (encoding.py), so
the forward of the opponent's view of an afterstate gives both the afterstate
value and the step logits that become the priors below every roll of it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import mctx
import numpy as np
from flax import struct

from bgai.core import rules
from bgai.core.afterstate import ApplyFn
from bgai.core.encoding import encode
from bgai.core.network import NEG_INF, equity, play_logits

LOG_DICE_PROBS = np.log(rules.DICE_PROBS).astype(np.float32)  # [21]


@struct.dataclass
class DecisionNode:
    """Embedding of a decision node (a position with its roll), batched [B]."""

    board: jax.Array  # [B, 28] int8 position, mover's view
    plays: jax.Array  # [B, K, 28] int8 afterstates of the legal plays (rules.Plays.boards)
    mask: jax.Array  # [B, K] bool real plays
    terminal: jax.Array  # [B] bool at or below a finished game


@struct.dataclass
class ChanceNode:
    """Embedding of a chance node (an afterstate before the opponent's roll), batched [B]."""

    board: jax.Array  # [B, 28] int8 afterstate, view of the side that just moved
    step_logits: jax.Array  # [B, 150] float32 the opponent's step logits on flip(board)
    opp_value: jax.Array  # [B] float32 the opponent's pre-roll equity of flip(board)
    points: jax.Array  # [B] float32 points won by this play (0 unless it ended the game)
    terminal: jax.Array  # [B] bool the game is over at or above this node


def _evaluate(apply_fn: ApplyFn, params: Any, boards: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Step logits [B, 150] and pre-roll equity [B] of the side to move in boards [B, 28]."""
    step_logits, value_logits = apply_fn(params, encode(boards.astype(jnp.int32)))
    return step_logits.astype(jnp.float32), equity(value_logits).astype(jnp.float32)


def safe_action(action: jax.Array, mask: jax.Array) -> jax.Array:
    """Map an invalid or out-of-range play index [B] to play 0 (always legal), see module doc."""
    k = mask.shape[-1]
    clipped = jnp.clip(action, 0, k - 1)
    legal = (action >= 0) & (action < k) & jnp.take_along_axis(mask, clipped[:, None], axis=1)[:, 0]
    return jnp.where(legal, clipped, 0)


def _chance_logits(key: jax.Array, batch: int, samples: int) -> jax.Array:
    """Chance logits [B, 21]: the exact roll distribution, or `samples` rolls drawn from it.

    mctx visits a chance node's outcomes in proportion to their probabilities,
    so with all 21 rolls a decision node below it is revisited (and the tree
    grows past one ply) only from that afterstate's 18th visit on. Drawing a few
    rolls per afterstate (weights = their counts) lets small budgets look deeper.
    """
    if samples <= 0:
        return jnp.broadcast_to(jnp.asarray(LOG_DICE_PROBS), (batch, rules.NUM_ROLLS))
    draws = jax.random.categorical(key, jnp.asarray(LOG_DICE_PROBS), shape=(batch, samples))  # [B, S]
    counts = jnp.sum(jax.nn.one_hot(draws, rules.NUM_ROLLS), axis=1)  # [B, 21]
    return jnp.where(counts > 0, jnp.log(jnp.maximum(counts, 1.0)), NEG_INF)


def make_recurrent_fns(
    apply_fn: ApplyFn, movegen: rules.MoveGenConfig, chance_samples: int = 0
) -> tuple[Any, Any]:
    """mctx's (decision_recurrent_fn, chance_recurrent_fn) for our rules and `apply_fn`.

    The dynamics are exact; the rng key is used only to draw `chance_samples`
    rolls per afterstate (0: every roll is a chance outcome, key unused).
    """

    def decision_fn(
        params: Any, key: jax.Array, action: jax.Array, node: DecisionNode
    ) -> tuple[mctx.DecisionRecurrentFnOutput, ChanceNode]:
        a = safe_action(action, node.mask)  # [B]
        after = jnp.take_along_axis(node.plays, a[:, None, None], axis=1)[:, 0].astype(jnp.int32)  # [B, 28]
        points = jax.vmap(rules.win_points)(after).astype(jnp.float32)  # [B]
        step_logits, opp_value = _evaluate(apply_fn, params, rules.flip(after))
        ends = points > 0
        terminal = node.terminal | ends
        value = jnp.where(node.terminal, 0.0, jnp.where(ends, points, -opp_value))  # [B] mover's view
        chance = ChanceNode(
            board=after.astype(jnp.int8),
            step_logits=step_logits,
            opp_value=opp_value,
            points=jnp.where(node.terminal, 0.0, points),
            terminal=terminal,
        )
        chance_logits = _chance_logits(key, a.shape[0], chance_samples)  # [B, 21]
        return mctx.DecisionRecurrentFnOutput(chance_logits=chance_logits, afterstate_value=value), chance

    def chance_fn(
        params: Any, key: jax.Array, outcome: jax.Array, node: ChanceNode
    ) -> tuple[mctx.ChanceRecurrentFnOutput, DecisionNode]:
        del key, params
        roll = jnp.clip(outcome, 0, rules.NUM_ROLLS - 1)  # [B]; out of range when mctx evaluates both fns
        board = rules.flip(node.board.astype(jnp.int32))  # [B, 28] the opponent to move
        plays = rules.legal_plays_batch(board, roll, movegen)  # boards [B, K, 28]
        prior = play_logits(node.step_logits, plays.steps, plays.mask)  # [B, K]
        out = mctx.ChanceRecurrentFnOutput(
            action_logits=prior,
            value=jnp.where(node.terminal, 0.0, node.opp_value),
            reward=node.points,  # nonzero only right below the winning play
            discount=jnp.where(node.terminal, 0.0, -1.0),
        )
        nxt = DecisionNode(
            board=board.astype(jnp.int8),
            plays=plays.boards.astype(jnp.int8),
            mask=plays.mask,
            terminal=node.terminal,
        )
        return out, nxt

    return decision_fn, chance_fn


def _noisy_prior(
    key: jax.Array, logits: jax.Array, mask: jax.Array, alpha: float, fraction: float
) -> jax.Array:
    """Root prior logits [B, K] mixed with Dirichlet(alpha) noise over the legal plays only.

    (mctx's own noise is spread over all K slots, most of them masked, which
    would shrink the noise the legal plays actually receive.) Consumes `key`.
    """
    probs = jax.nn.softmax(logits, axis=-1)  # masked slots are exactly 0
    noise = jnp.where(mask, jax.random.gamma(key, alpha, logits.shape), 0.0)
    noise = noise / jnp.maximum(jnp.sum(noise, axis=-1, keepdims=True), 1e-30)
    mixed = (1.0 - fraction) * probs + fraction * noise
    return jnp.where(mask, jnp.log(jnp.maximum(mixed, 1e-30)), NEG_INF)


def run_search(
    apply_fn: ApplyFn,
    params: Any,
    key: jax.Array,
    boards: jax.Array,
    plays: rules.Plays,
    num_simulations: int,
    movegen: rules.MoveGenConfig,
    dirichlet_alpha: float = 0.3,
    dirichlet_fraction: float = 0.25,
    max_depth: int | None = None,
    chance_samples: int = 0,
    qtransform: Any = None,
) -> mctx.PolicyOutput:
    """Search from positions boards [B, 28] (mover's view) with their plays [B, K]; consumes `key`.

    Runs exactly `num_simulations` simulations (the root ends with
    num_simulations + 1 visits: mctx counts its evaluation as one). The result's
    `action_weights` [B, K] are the root visit distribution (0 on masked plays)
    and `search_tree` the decision-masked tree. `plays` must come from
    `movegen` (same K), as the chance nodes generate theirs with it.
    `chance_samples` > 0 replaces each afterstate's 21 rolls by that many
    draws (see `_chance_logits`). `qtransform`: mctx's Q normalisation for
    PUCT (None: its default, `qtransform_by_parent_and_siblings`).
    """
    if plays.mask.shape[-1] != movegen.max_plays:
        raise ValueError(f"plays have K={plays.mask.shape[-1]} but movegen.max_plays={movegen.max_plays}")
    k_noise, k_search = jax.random.split(key)
    step_logits, value = _evaluate(apply_fn, params, boards)
    prior = play_logits(step_logits, plays.steps, plays.mask)  # [B, K]
    if dirichlet_fraction > 0:
        prior = _noisy_prior(k_noise, prior, plays.mask, float(dirichlet_alpha), float(dirichlet_fraction))
    root = mctx.RootFnOutput(
        prior_logits=prior,
        value=value,
        embedding=DecisionNode(
            board=boards.astype(jnp.int8),
            plays=plays.boards.astype(jnp.int8),
            mask=plays.mask,
            terminal=jnp.zeros(boards.shape[:1], bool),
        ),
    )
    decision_fn, chance_fn = make_recurrent_fns(apply_fn, movegen, chance_samples)
    return mctx.stochastic_muzero_policy(
        params,
        k_search,
        root,
        decision_fn,
        chance_fn,
        num_simulations,
        invalid_actions=~plays.mask,
        max_depth=max_depth,
        dirichlet_fraction=0.0,  # the noise is already in `prior`, over legal plays only
        dirichlet_alpha=float(dirichlet_alpha),
        qtransform=qtransform or mctx.qtransform_by_parent_and_siblings,
    )


def select_play(
    key: jax.Array, visits: jax.Array, qvalues: jax.Array, mask: jax.Array, temperature: jax.Array
) -> jax.Array:
    """A play [B] from root visit counts [B, K]; consumes `key`.

    temperature [B] > 0: sample proportionally to visits^(1/T) (visited plays
    only); 0: the most visited play, ties broken by the higher Q-value [B, K].
    """
    t = jnp.maximum(temperature, 1e-6)[:, None]
    sample_logits = jnp.where(mask & (visits > 0), jnp.log(jnp.maximum(visits, 1e-30)) / t, NEG_INF)
    sampled = jax.random.categorical(key, sample_logits, axis=-1)
    # Q is within [-3, 3]: the tie-break term stays below one visit.
    greedy = jnp.argmax(jnp.where(mask, visits + 0.1 * (qvalues + 3.0) / 6.0, NEG_INF), axis=-1)
    return jnp.where(temperature > 0, sampled, greedy)
