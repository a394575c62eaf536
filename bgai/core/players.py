"""Deciders: self-play exploration and the evaluation players.

Each returns a `Decide` (see selfplay.py): (params, key, states, plays) ->
(chosen play index [B], policy target [B, K]).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgai.core import rules
from bgai.core.afterstate import afterstate_values, choose, sample_index, softmax_policy
from bgai.core.evaluator import ApplyFn
from bgai.core.game import GameState
from bgai.core.network import NEG_INF
from bgai.core.selfplay import Decide
from bgai.core.targets import afterstate_equity


def afterstate_decider(
    apply_fn: ApplyFn,
    temperature: float,
    explore_turns: int,
    policy_temperature: float,
    eval_slots: int | None = None,
) -> Decide:
    """Fast self-play: value every play's afterstate, sample with softmax(T) early on.

    The policy target is softmax(values / policy_temperature), so the policy
    head learns to predict what the value search would choose.
    """

    def decide(params: Any, key: jax.Array, states: GameState, plays: rules.Plays) -> tuple:
        values = afterstate_values(apply_fn, params, plays, eval_slots)
        target = softmax_policy(values, plays.mask, policy_temperature)
        temp = jnp.where(states.turn < explore_turns, temperature, 0.0)
        return choose(key, values, plays.mask, temp), target

    return decide


def greedy_decider(apply_fn: ApplyFn, eval_slots: int | None = None) -> Decide:
    """0-ply: the play whose afterstate has the highest equity."""
    return afterstate_decider(apply_fn, 0.0, 0, 1.0, eval_slots)


def _lookahead_equities(
    apply_fn: ApplyFn,
    params: Any,
    after: jax.Array,
    valid: jax.Array,
    todo: jax.Array,
    movegen: rules.MoveGenConfig,
    plies: int,
    eval_slots: int | None,
) -> jax.Array:
    """The mover's equities [B, M] of the candidate afterstates `after` [B, M, 28] at `plies`
    (NEG_INF where not `valid`, or in a row not `todo`). Only the games to decide pay: their rows
    are gathered and scored a chunk of a quarter of the batch at a time (in a paired match half
    the games are the other player's turn, and finished games wait for the batch's longest)."""
    b, m = valid.shape
    chunk = max(1, b // 4)
    # the rows to decide first, then `b` (out of range: dropped by the scatter below)
    order = jnp.nonzero(todo, size=b, fill_value=b)[0]
    order = jnp.concatenate([order, jnp.full((-b % chunk,), b, order.dtype)])
    n_chunks = (jnp.sum(todo) + chunk - 1) // chunk

    def score_chunk(i: jax.Array, out: jax.Array) -> jax.Array:
        rows = jax.lax.dynamic_slice(order, (i * chunk,), (chunk,))
        flat = after[jnp.minimum(rows, b - 1)].reshape(-1, rules.BOARD_SIZE)
        eq = afterstate_equity(apply_fn, params, flat, movegen, plies, eval_slots).reshape(chunk, m)
        return out.at[rows].set(eq, mode="drop")

    out = jax.lax.fori_loop(0, n_chunks, score_chunk, jnp.full((b, m), NEG_INF, jnp.float32))
    return jnp.where(valid, out, NEG_INF)


def lookahead_decider(
    apply_fn: ApplyFn,
    movegen: rules.MoveGenConfig,
    plies: int = 1,
    candidates: int = 8,
    finalists: int = 2,
    eval_slots: int | None = None,
) -> Decide:
    """n-ply play (1 or 2) behind gnubg's move filter: the `candidates` best plays by 0-ply equity
    get their 1-ply equity (an exact average over the opponent's 21 rolls of the position after
    its best 0-ply reply); at 2-ply the `finalists` best of those by 1-ply get their 2-ply equity
    (the opponent's 21 rolls, its best 0-ply reply to each, that position valued at 1-ply). The
    best play at the deepest level is played.

    A 1-ply decision costs `candidates` x 21 move generations; 2-ply adds `finalists` x
    (21 + 21 x 21). A finished game's row gets its best 0-ply play, which nobody plays.
    """
    if plies not in (1, 2):
        raise ValueError(f"lookahead is 1 or 2 plies, got {plies}")

    def decide(params: Any, key: jax.Array, states: GameState, plays: rules.Plays) -> tuple:
        del key
        values = afterstate_values(apply_fn, params, plays, eval_slots)  # [B, K]
        top_v, pick = jax.lax.top_k(values, min(candidates, values.shape[-1]))  # [B, M]
        after = rules.play_boards(plays, pick)  # [B, M, 28]
        todo = ~states.done
        eq = _lookahead_equities(apply_fn, params, after, top_v > NEG_INF / 2, todo, movegen, 1, eval_slots)
        for depth in range(2, plies + 1):
            top_eq, j = jax.lax.top_k(eq, min(finalists, eq.shape[-1]))  # [B, F]
            after = jnp.take_along_axis(after, j[..., None], axis=1)
            pick = jnp.take_along_axis(pick, j, axis=1)
            valid = top_eq > NEG_INF / 2
            eq = _lookahead_equities(apply_fn, params, after, valid, todo, movegen, depth, eval_slots)
        action = jnp.take_along_axis(pick, jnp.argmax(eq, axis=-1)[:, None], axis=1)[:, 0]
        return action, jax.nn.one_hot(action, plays.mask.shape[-1])

    return decide


def random_decider() -> Decide:
    """Uniformly random over the distinct legal plays."""

    def decide(params: Any, key: jax.Array, states: GameState, plays: rules.Plays) -> tuple:
        del params, states
        uniform = plays.mask / jnp.maximum(jnp.sum(plays.mask, -1, keepdims=True), 1)
        return sample_index(key, uniform), uniform

    return decide


def pubeval_decider() -> Decide:
    """Tesauro's pubeval: the play with the best linear score (race weights in races)."""
    from bgai.core.pubeval import is_race, pubeval_choose

    def decide(params: Any, key: jax.Array, states: GameState, plays: rules.Plays) -> tuple:
        del params, key
        race = jax.vmap(is_race)(states.board)
        action = jax.vmap(pubeval_choose)(plays, race)
        return action, jax.nn.one_hot(action, plays.mask.shape[-1])

    return decide


# (boards [B, 28], dice [B], play afterstates [B, K, 28], legal mask [B, K], move list overflowed
# [B], active [B]) -> (play index [B] or -1, afterstate played [B, 28])
HostChoose = Callable[..., tuple[np.ndarray, np.ndarray]]


def host_decider(choose: HostChoose) -> Decide:
    """A player that runs outside JAX (GNU Backgammon, say), called once per turn of the batch
    through `jax.pure_callback`. It answers with the afterstate it played for every active game,
    and its index in our plays (-1 where a capacity-limited move list lacks it)."""

    def decide(params: Any, key: jax.Array, states: GameState, plays: rules.Plays) -> tuple:
        del params, key
        b = states.dice.shape[0]
        out = (jax.ShapeDtypeStruct((b,), jnp.int32), jax.ShapeDtypeStruct((b, rules.BOARD_SIZE), jnp.int32))
        action, after = jax.pure_callback(
            choose,
            out,
            states.board,
            states.dice,
            plays.boards.astype(jnp.int32),
            plays.mask,
            plays.overflow,
            ~states.done,
        )
        return action, jax.nn.one_hot(action, plays.mask.shape[-1]), after

    return decide


def search_decider(
    apply_fn: ApplyFn,
    num_simulations: int,
    dirichlet_alpha: float,
    dirichlet_fraction: float,
    temperature: float,
    temperature_turns: int,
    movegen: rules.MoveGenConfig,
    chance_samples: int = 0,
) -> Decide:
    """Stochastic MCTS (search.py) with exactly `num_simulations` simulations per decision.

    The play is sampled from visits^(1/temperature) during a game's first
    `temperature_turns` turns, the most visited one after. The policy target
    is the root visit distribution (0 on masked plays). `plays` must come from
    the same `movegen`. `chance_samples` > 0 draws that many rolls per
    afterstate instead of branching on all 21 (search.py, `_chance_logits`).
    """
    from bgai.core.search import run_search, select_play

    def decide(params: Any, key: jax.Array, states: GameState, plays: rules.Plays) -> tuple:
        k_search, k_select = jax.random.split(key)
        out = run_search(
            apply_fn,
            params,
            k_search,
            states.board,
            plays,
            num_simulations,
            movegen,
            dirichlet_alpha=dirichlet_alpha,
            dirichlet_fraction=dirichlet_fraction,
            chance_samples=chance_samples,
        )
        temp = jnp.where(states.turn < temperature_turns, temperature, 0.0)
        action = select_play(k_select, out.visit_counts, out.qvalues, plays.mask, temp)
        target = out.action_weights * plays.mask
        return action, target

    return decide
