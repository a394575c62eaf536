"""A batch-friendly game state and its transitions (no search, no network).

The state is always seen from the side to move; `player` says which side
(0 or 1) that is, so results can be reported from player 0's point of view.
A turn = `legal_plays` for the rolled dice, pick one afterstate, then
`advance` (flip to the opponent and roll for it). Chance stays explicit: the
caller passes the key that `advance` consumes for the next roll.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from bgai.core import rules


@struct.dataclass
class GameState:
    board: jax.Array  # [28] int32, side to move's view
    dice: jax.Array  # [] int32 roll index (rules.DICE) of the side to move
    player: jax.Array  # [] int32, 0 or 1: who is to move
    done: jax.Array  # [] bool
    result: jax.Array  # [] int32 points won by player 0 (negative: lost), 0 while playing
    turn: jax.Array  # [] int32 decisions played so far


def new_game(key: jax.Array, first_player: jax.Array | int | None = None) -> GameState:
    """Start position, opening roll (never a double); consumes `key`.

    The side to open is random unless `first_player` is given.
    """
    k_roll, k_first = jax.random.split(key)
    if first_player is None:
        player = jax.random.bernoulli(k_first).astype(jnp.int32)
    else:
        player = jnp.asarray(first_player, jnp.int32)
    return GameState(
        board=rules.start_board(),
        dice=rules.opening_roll(k_roll),
        player=player,
        done=jnp.zeros((), bool),
        result=jnp.zeros((), jnp.int32),
        turn=jnp.zeros((), jnp.int32),
    )


def advance(state: GameState, afterstate: jax.Array, key: jax.Array) -> GameState:
    """Apply the chosen afterstate (mover's view); consumes `key` for the next roll.

    A finished game is left unchanged, so a batch can keep stepping until all end.
    """
    points = rules.win_points(afterstate)
    ends = points > 0
    sign = jnp.where(state.player == 0, 1, -1)
    nxt = GameState(
        board=jnp.where(ends, afterstate, rules.flip(afterstate)),
        dice=rules.roll_dice(key),
        player=jnp.where(ends, state.player, 1 - state.player),
        done=ends,
        result=jnp.where(ends, points * sign, 0),
        turn=state.turn + 1,
    )
    return jax.tree.map(lambda old, new: jnp.where(state.done, old, new), state, nxt)


def mover_points(result: jax.Array, player: jax.Array) -> jax.Array:
    """Final points from the point of view of `player` (result is player 0's)."""
    return jnp.where(player == 0, result, -result)
