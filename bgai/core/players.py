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
from bgai.core.network import NEG_INF, OUTCOME_POINTS
from bgai.core.selfplay import Decide
from bgai.core.targets import one_ply_distribution


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


def one_ply_decider(
    apply_fn: ApplyFn, movegen: rules.MoveGenConfig, candidates: int = 8, eval_slots: int | None = None
) -> Decide:
    """1-ply: the `candidates` best plays by 0-ply equity are scored by an exact expectation over
    the opponent's 21 rolls (its best 0-ply reply to each), and the best of them is played.

    Each decision costs `candidates` x 21 move generations (gnubg's move filter works alike:
    lookahead only for the plays that 0-ply ranks highest). Only the games to decide pay it:
    the rows not done are gathered and scored a chunk of a quarter of the batch at a time (in a
    paired match half the games are the other player's turn, and finished games wait for the
    batch's longest), and a done row gets its best 0-ply play, which nobody plays.
    """

    def decide(params: Any, key: jax.Array, states: GameState, plays: rules.Plays) -> tuple:
        del key
        values = afterstate_values(apply_fn, params, plays, eval_slots)  # [B, K]
        b, m = values.shape[0], min(candidates, values.shape[-1])
        top_v, top_i = jax.lax.top_k(values, m)  # [B, M]
        after = jnp.take_along_axis(plays.boards, top_i[..., None], axis=1)  # [B, M, 28]
        chunk = max(1, b // 4)
        todo = ~states.done
        # the rows to decide first, then `b` (out of range: dropped by the scatter below)
        order = jnp.nonzero(todo, size=b, fill_value=b)[0]
        order = jnp.concatenate([order, jnp.full((-b % chunk,), b, order.dtype)])
        n_chunks = (jnp.sum(todo) + chunk - 1) // chunk

        def score_chunk(i: jax.Array, best: jax.Array) -> jax.Array:
            rows = jax.lax.dynamic_slice(order, (i * chunk,), (chunk,))
            safe = jnp.minimum(rows, b - 1)
            flat = after[safe].reshape(-1, rules.BOARD_SIZE)
            opp = one_ply_distribution(apply_fn, params, rules.flip(flat), movegen, eval_slots)
            won = jax.vmap(rules.win_points)(flat).astype(jnp.float32)
            ply1 = jnp.where(won > 0, won, -(opp @ OUTCOME_POINTS)).reshape(chunk, m)
            ply1 = jnp.where(top_v[safe] > NEG_INF / 2, ply1, NEG_INF)  # fewer legal plays than M
            return best.at[rows].set(jnp.argmax(ply1, axis=-1).astype(best.dtype), mode="drop")

        best = jax.lax.fori_loop(0, n_chunks, score_chunk, jnp.zeros(b, jnp.int32))
        action = jnp.take_along_axis(top_i, best[:, None], axis=1)[:, 0]
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
            choose, out, states.board, states.dice, plays.boards, plays.mask, plays.overflow, ~states.done
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
