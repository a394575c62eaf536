"""Batched games inside one compiled loop, recorded as whole trajectories.

`play_batch` runs B games from the opening to the end (or `max_turns`) in a
single `lax.while_loop`; every decision of every game goes through one
`Decide` function, vmapped move generation included. The same loop serves
self-play (one decider for both sides) and matches (`two_sided`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from bgai.core import rules
from bgai.core.game import GameState, advance, new_game

# (params, key, states [B], plays [B, K]) -> (chosen play [B], policy target [B, K]), or with a
# third element, the afterstates [B, 28] played (a player outside our move list: see `decided`)
Decide = Callable[[Any, jax.Array, GameState, rules.Plays], tuple[jax.Array, ...]]


def decided(out: tuple[jax.Array, ...], plays: rules.Plays) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(action, policy target, afterstate played) of a decider's answer: the afterstate is the
    chosen play's unless the decider gave its own (GNU Backgammon may pick a play that a
    capacity-limited move list dropped; its action is then -1)."""
    if len(out) == 3:
        return out[0], out[1], out[2]
    action, target = out
    return action, target, rules.play_boards(plays, action)


@struct.dataclass
class Trajectory:
    """T decisions x B games; rows past a game's end have valid=False."""

    boards: jax.Array  # [T, B, 28] int8 position before the decision, mover's view
    dice: jax.Array  # [T, B] int8 roll index
    mask: jax.Array  # [T, B, K] bool legal plays
    steps: jax.Array  # [T, B, K, 4] uint8 steps making each play (rules.NO_STEP pads)
    policy: jax.Array  # [T, B, K] float32 policy target over plays
    player: jax.Array  # [T, B] int8 side to move
    valid: jax.Array  # [T, B] bool
    result: jax.Array  # [B] int32 points won by player 0
    length: jax.Array  # [B] int32 decisions in each game
    finished: jax.Array  # [B] bool the game ended within max_turns
    overflow: jax.Array  # [] int32 decisions where move generation dropped plays


_advance = jax.vmap(advance)
_new_game = jax.vmap(new_game)


def play_batch(
    decide: Decide,
    params: Any,
    key: jax.Array,
    batch: int,
    max_turns: int,
    movegen: rules.MoveGenConfig,
    paired: bool = False,
) -> Trajectory:
    """Play `batch` games to the end; consumes `key`. Jit with decide/batch/max_turns/movegen/paired
    static.

    `paired`: games 2i and 2i+1 share their dice, turn for turn: the same opening side and
    roll, then the same roll at every turn while both go on (with `paired_sides` the two agents
    swap seats between them, so each gets the other's dice).
    """
    k = movegen.max_plays
    if paired and batch % 2:
        raise ValueError(f"paired games need an even batch, got {batch}")
    pick = jnp.arange(batch) // 2 if paired else jnp.arange(batch)

    def game_keys(key: jax.Array) -> jax.Array:
        return jax.random.split(key, batch // 2 if paired else batch)[pick]

    key, k_new = jax.random.split(key)
    states = _new_game(game_keys(k_new))
    traj = Trajectory(
        boards=jnp.zeros((max_turns, batch, rules.BOARD_SIZE), jnp.int8),
        dice=jnp.zeros((max_turns, batch), jnp.int8),
        mask=jnp.zeros((max_turns, batch, k), bool),
        steps=jnp.zeros((max_turns, batch, k, rules.MAX_STEPS_PER_PLAY), jnp.uint8),
        policy=jnp.zeros((max_turns, batch, k), jnp.float32),
        player=jnp.zeros((max_turns, batch), jnp.int8),
        valid=jnp.zeros((max_turns, batch), bool),
        result=jnp.zeros((batch,), jnp.int32),
        length=jnp.zeros((batch,), jnp.int32),
        finished=jnp.zeros((batch,), bool),
        overflow=jnp.zeros((), jnp.int32),
    )

    def cond(carry: tuple) -> jax.Array:
        t, states, _, _ = carry
        return (t < max_turns) & ~jnp.all(states.done)

    def body(carry: tuple) -> tuple:
        t, states, traj, key = carry
        key, k_dec, k_roll = jax.random.split(key, 3)
        plays = rules.legal_plays_batch(states.board, states.dice, movegen)
        action, target, chosen = decided(decide(params, k_dec, states, plays), plays)
        active = ~states.done
        traj = dataclasses.replace(
            traj,
            boards=traj.boards.at[t].set(states.board.astype(jnp.int8)),
            dice=traj.dice.at[t].set(states.dice.astype(jnp.int8)),
            mask=traj.mask.at[t].set(plays.mask),
            steps=traj.steps.at[t].set(plays.steps.astype(jnp.uint8)),
            policy=traj.policy.at[t].set(target),
            player=traj.player.at[t].set(states.player.astype(jnp.int8)),
            valid=traj.valid.at[t].set(active),
            overflow=traj.overflow + jnp.sum(plays.overflow & active),
        )
        states = _advance(states, chosen, game_keys(k_roll))
        return t + 1, states, traj, key

    _, states, traj, _ = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), states, traj, key))
    return dataclasses.replace(traj, result=states.result, length=states.turn, finished=states.done)


def two_sided(decide_a: Decide, decide_b: Decide) -> Decide:
    """A decider where player 0 is A (params[0]) and player 1 is B (params[1])."""

    def decide(params: Any, key: jax.Array, states: GameState, plays: rules.Plays) -> tuple:
        ka, kb = jax.random.split(key)
        a, b = decide_a(params[0], ka, states, plays), decide_b(params[1], kb, states, plays)
        return _either(states.player == 0, decided(a, plays), decided(b, plays))

    return decide


def _either(is_a: jax.Array, a: tuple[jax.Array, ...], b: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    """Per game, A's (action, target, afterstate) where `is_a`, else B's."""
    return tuple(
        jnp.where(is_a.reshape(is_a.shape + (1,) * (x.ndim - 1)), x, y) for x, y in zip(a, b, strict=True)
    )


def paired_sides(decide_a: Decide, decide_b: Decide) -> Decide:
    """For `play_batch(..., paired=True)`: A is player 0 in even games and player 1 in odd ones.

    Each decider sees the other's games as done (a host-side player skips them).
    """

    def decide(params: Any, key: jax.Array, states: GameState, plays: rules.Plays) -> tuple:
        ka, kb = jax.random.split(key)
        seat = jnp.arange(states.player.shape[0], dtype=states.player.dtype) % 2
        is_a = states.player == seat
        a = decide_a(params[0], ka, dataclasses.replace(states, done=states.done | ~is_a), plays)
        b = decide_b(params[1], kb, dataclasses.replace(states, done=states.done | is_a), plays)
        return _either(is_a, decided(a, plays), decided(b, plays))

    return decide


def paired_points(result: jax.Array) -> jax.Array:
    """Points won by A per game of a paired batch (`result` is player 0's)."""
    return jnp.where(jnp.arange(result.shape[0]) % 2 == 0, result, -result)


@struct.dataclass
class Chunk:
    """T consecutive decisions of B game slots; a slot starts a new game when one ends."""

    boards: jax.Array  # [T, B, 28] int8
    dice: jax.Array  # [T, B] int8
    mask: jax.Array  # [T, B, K] bool
    steps: jax.Array  # [T, B, K, 4] uint8
    policy: jax.Array  # [T, B, K] float32
    player: jax.Array  # [T, B] int8
    ended: jax.Array  # [T, B] bool: this decision ended the slot's game
    abandoned: jax.Array  # [T, B] bool: the game hit max_turns here and was dropped
    result: jax.Array  # [T, B] int32 points won by player 0, where ended
    overflow: jax.Array  # [] int32 decisions where move generation dropped plays


def start_games(key: jax.Array, batch: int) -> GameState:
    """`batch` fresh games (consumes `key`)."""
    return _new_game(jax.random.split(key, batch))


def play_chunk(
    decide: Decide,
    params: Any,
    states: GameState,
    key: jax.Array,
    length: int,
    max_turns: int,
    movegen: rules.MoveGenConfig,
) -> tuple[GameState, Chunk]:
    """`length` decisions in every slot, restarting finished games; consumes `key`.

    Unlike `play_batch`, no slot idles while the longest game finishes, so every
    decision computed is a recorded one. Games span chunks: the caller carries
    `states` over and stitches episodes (see `bgai.core.episodes`).
    """
    batch = states.board.shape[0]

    def body(carry: tuple, key: jax.Array) -> tuple:
        states, overflow = carry
        k_dec, k_roll, k_new = jax.random.split(key, 3)
        plays = rules.legal_plays_batch(states.board, states.dice, movegen)
        action, target, chosen = decided(decide(params, k_dec, states, plays), plays)
        nxt = _advance(states, chosen, jax.random.split(k_roll, batch))
        abandoned = ~nxt.done & (nxt.turn >= max_turns)
        restart = nxt.done | abandoned
        fresh = start_games(k_new, batch)
        row = (
            states.board.astype(jnp.int8),
            states.dice.astype(jnp.int8),
            plays.mask,
            plays.steps.astype(jnp.uint8),
            target,
            states.player.astype(jnp.int8),
            nxt.done,
            abandoned,
            nxt.result,
        )
        nxt = jax.tree.map(lambda f, n: jnp.where(_expand(restart, n), f, n), fresh, nxt)
        return (nxt, overflow + jnp.sum(plays.overflow)), row

    carry: tuple[GameState, jax.Array] = (states, jnp.zeros((), jnp.int32))
    rows: tuple[jax.Array, ...]  # each [T, B, ...]
    (states, overflow), rows = jax.lax.scan(body, carry, jax.random.split(key, length))
    boards, dice, mask, steps, policy, player, ended, abandoned, result = rows
    chunk = Chunk(boards, dice, mask, steps, policy, player, ended, abandoned, result, overflow)
    return states, chunk


def _expand(flag: jax.Array, like: jax.Array) -> jax.Array:
    return flag.reshape(flag.shape + (1,) * (like.ndim - flag.ndim))
