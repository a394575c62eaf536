"""Cubeful money games between two agents inside one compiled loop, with paired dice.

A turn of a cubeful game: the side on roll, if it has access to the cube (centred, or its own),
may double before it rolls; the opponent takes (the cube doubles and changes hands) or passes
(the game ends: the doubler wins the cube's value before the double). Then the side on roll
plays its roll as in a cubeless game. A game that is played out scores cube x its result
(1, 2 or 3); with the Jacoby rule gammons and backgammons count single while the cube has not
been turned.

Each agent is a move decider (`selfplay.Decide`) and a `CubePolicy`: the side on roll's double
and its opponent's take come from the two agents' own policies, each reading the same position.
The dice are paired as in `evaluate.paired_match`: games 2i and 2i+1 share every roll while
both go on, A playing player 0 in even games and player 1 in odd ones. Cube decisions use no
randomness, so a pair's games differ only by who sits where.

The cube state per game is its value and its owner (-1 centred, else the player who owns it);
match play would add the score and the Crawford flag beside them and pass them to the policies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from bgai.core import cube, rules
from bgai.core.evaluator import ApplyFn
from bgai.core.game import advance, new_game
from bgai.core.selfplay import Decide, decided, paired_sides

# (params, boards [B, 28] side on roll's view before its roll, access [B] cube.CENTRED / OWNED /
# UNAVAILABLE of the side on roll) -> (the side on roll doubles [B], a double would be taken [B])
CubePolicy = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

CENTRE = -1  # owner of a centred cube
MAX_CUBE = 1 << 12  # no redoubles beyond it (points stay well inside int32)

_advance = jax.vmap(advance)
_new_game = jax.vmap(new_game)


def naive_cube_policy() -> CubePolicy:
    """Never double, always take."""

    def policy(params: Any, boards: jax.Array, access: jax.Array) -> tuple[jax.Array, jax.Array]:
        del params, boards
        return jnp.zeros(access.shape, bool), jnp.ones(access.shape, bool)

    return policy


def model_cube_policy(
    apply_fn: ApplyFn, plies: int = 0, movegen: rules.MoveGenConfig | None = None, jacoby: bool = False
) -> CubePolicy:
    """The net's cube decisions (Janowski's cubeful equity, `cube.model_decision`) at 0, 1 or 2 plies."""

    def policy(params: Any, boards: jax.Array, access: jax.Array) -> tuple[jax.Array, jax.Array]:
        d = cube.model_decision(apply_fn, params, boards, access, plies, movegen, jacoby)
        return d.double, d.take

    return policy


@struct.dataclass
class CubefulGames:
    """Per game of a paired batch, from A's side (A is player 0 in even games)."""

    points: jax.Array  # [B] int32 points won by A: cube x result, or the cube on a pass
    finished: jax.Array  # [B] bool the game ended within max_turns
    cube: jax.Array  # [B] int32 the cube's final value
    doubles: jax.Array  # [B, 2] int32 doubles offered by A, by B
    takes: jax.Array  # [B, 2] int32 doubles taken by A, by B
    drops: jax.Array  # [B, 2] int32 doubles passed by A, by B


def access_of(owner: jax.Array, player: jax.Array, value: jax.Array) -> jax.Array:
    """The side on roll's access to the cube: CENTRED, OWNED or UNAVAILABLE (also at MAX_CUBE)."""
    mine = jnp.where(owner == player, cube.OWNED, cube.UNAVAILABLE)
    return jnp.where(value >= MAX_CUBE, cube.UNAVAILABLE, jnp.where(owner == CENTRE, cube.CENTRED, mine))


def cube_turn(
    double_wanted: jax.Array, take: jax.Array, access: jax.Array, active: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(doubled, taken, passed) [B] from the side on roll's wish, its opponent's answer, its
    access to the cube and whether the game goes on."""
    doubled = double_wanted & active & (access != cube.UNAVAILABLE)
    return doubled, doubled & take, doubled & ~take


def final_points(
    result: jax.Array, value: jax.Array, passed_by: jax.Array, pass_value: jax.Array, jacoby: bool
) -> jax.Array:
    """Player 0's points: the cube's value before the double to the doubler when a side passed
    (`passed_by` -1: nobody), else the cubeless result (±1..3) times the cube."""
    cubeless = jnp.where(value == 1, jnp.sign(result), result) if jacoby else result
    dropped = jnp.where(passed_by == 0, -pass_value, pass_value)
    return jnp.where(passed_by >= 0, dropped, cubeless * value)


def play_cubeful(
    decide_a: Decide,
    decide_b: Decide,
    cube_a: CubePolicy,
    cube_b: CubePolicy,
    params: tuple[Any, Any],
    key: jax.Array,
    pairs: int,
    max_turns: int,
    movegen: rules.MoveGenConfig,
    jacoby: bool = False,
) -> CubefulGames:
    """`2 * pairs` cubeful money games of A against B with paired dice; consumes `key`. Jit with
    everything but `params` and `key` static."""
    batch = 2 * pairs
    pick = jnp.arange(batch) // 2
    seat = jnp.arange(batch, dtype=jnp.int32) % 2  # A's player number in each game
    decide = paired_sides(decide_a, decide_b)
    pa, pb = params

    def game_keys(key: jax.Array) -> jax.Array:
        return jax.random.split(key, pairs)[pick]

    key, k_new = jax.random.split(key)
    zeros = jnp.zeros((batch,), jnp.int32)
    carry = (
        jnp.zeros((), jnp.int32),
        _new_game(game_keys(k_new)),
        jnp.ones((batch,), jnp.int32),  # cube value
        jnp.full((batch,), CENTRE, jnp.int32),  # owner
        jnp.full((batch,), -1, jnp.int32),  # the player who passed
        zeros,  # the cube's value when a side passed
        jnp.zeros((batch, 6), jnp.int32),  # doubles, takes, drops of players 0 and 1
        key,
    )

    def cond(carry: tuple) -> jax.Array:
        t, states = carry[0], carry[1]
        return (t < max_turns) & ~jnp.all(states.done)

    def body(carry: tuple) -> tuple:
        t, states, value, owner, passed_by, pass_value, actions, key = carry
        key, k_dec, k_roll = jax.random.split(key, 3)
        access = access_of(owner, states.player, value)
        is_a = states.player == seat
        double_a, take_a = cube_a(pa, states.board, access)
        double_b, take_b = cube_b(pb, states.board, access)
        wanted = jnp.where(is_a, double_a, double_b)
        take = jnp.where(is_a, take_b, take_a)  # the opponent of the side on roll answers
        # no double before the opening roll is played
        doubled, taken, passed = cube_turn(wanted, take, access, ~states.done & (states.turn > 0))
        passed_by = jnp.where(passed, 1 - states.player, passed_by)
        pass_value = jnp.where(passed, value, pass_value)
        value = jnp.where(taken, 2 * value, value)
        owner = jnp.where(taken, 1 - states.player, owner)
        mover, answerer = (
            jax.nn.one_hot(states.player, 2, dtype=jnp.int32),
            jax.nn.one_hot(1 - states.player, 2, dtype=jnp.int32),
        )
        counts = jnp.concatenate(
            [mover * doubled[:, None], answerer * taken[:, None], answerer * passed[:, None]], axis=-1
        )
        states = states.replace(done=states.done | passed)
        plays = rules.legal_plays_batch(states.board, states.dice, movegen)
        _, _, chosen = decided(decide((pa, pb), k_dec, states, plays), plays)
        states = _advance(states, chosen, game_keys(k_roll))
        return t + 1, states, value, owner, passed_by, pass_value, actions + counts, key

    _, states, value, owner, passed_by, pass_value, actions, _ = jax.lax.while_loop(cond, body, carry)
    points0 = final_points(states.result, value, passed_by, pass_value, jacoby)
    a_is_0 = seat == 0
    by_player = actions.reshape(batch, 3, 2)  # [B, kind, player]
    ab = jnp.where(a_is_0[:, None, None], by_player, by_player[:, :, ::-1])
    return CubefulGames(
        points=jnp.where(a_is_0, points0, -points0),
        finished=states.done,
        cube=value,
        doubles=ab[:, 0],
        takes=ab[:, 1],
        drops=ab[:, 2],
    )
