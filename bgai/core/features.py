"""Hand-crafted input features of a board (the `extended` inputs), batched JAX.

Tesauro's raw units say where the checkers are; a small net learns slowly what follows from that
(how many rolls hit a blot, how long a prime is). gnubg feeds about 25 such features per side;
Higgins' TD nets gained most of their strength over raw inputs from prime and hitting-shot
inputs. These are computed for each side by the same function on its own view of the board
(`rules.flip` for the opponent), so they are symmetric by construction.

Per side S (the side whose checkers count positive on its view), `side_features`:

    0  pips       S's pip count / 100 (a checker on the bar counts 25)
    1  shots      the share of the 36 rolls with which the other side can hit a blot of S: a
                  checker at distance d of a blot hits it with a die of d, or with a combination
                  of both dice (a double: up to four steps) whose intermediate landing points are
                  not blocked by S (2+ checkers); while the other side has checkers on the bar,
                  only shots from the bar count
    2  prime      S's longest run of consecutive made points (2+ checkers) / 6, capped at 1
    3  anchors    S's made points in the other side's home board / 2, capped at 1
    4  back       S's checkers in the other side's home board or on the bar / 5, capped at 1
    5  home       S's made points in its own home board / 6
    6  blots      S's blots (single checkers on a point) / 5, capped at 1

and two common ones, from the mover's view: the pip difference (mover - opponent) / 50 and
the contact flag (1 while a hit is still possible: `pubeval.is_race` is false).

The `escapes` inputs add four more (`escape_features`), after gnubg's back-escapes and containment
inputs, for each side S: a checker *escapes* with a roll when, moving one way, it lands 7 or more
pips ahead, every landing (the intermediate ones and that one) on a point the other side has not
made; a double moves it up to four times its number.

    escapes   the share of the 36 rolls with which S's rearmost checker (the bar first) escapes
              past the other side's points (1 when S has no checker left on the board)
    contain   1 - the fewest rolls (of 36) with which a checker of the other side escapes past
              S's points, over the places it could stand on its 25 (the bar) to 16 points

`tests/core/test_features.py` holds a slow, readable Python reference of every feature and a
golden file of random positions both must match. Changing a feature changes `VERSION` (and
`ESCAPE_VERSION`, whose inputs include the extended ones; a change to an escapes feature changes
only it), which is part of the model hash (the `model.inputs` setting names it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bgai.core import rules
from bgai.core.pubeval import is_race

VERSION = 1
SIDE_FEATURES = 7
NUM_EXTRA = 2 * SIDE_FEATURES + 2
ESCAPE_FEATURES = 4  # escapes, contain: the mover's, the opponent's
ESCAPE_VERSION = 1

_ESCAPE = 7  # pips a checker must land ahead to escape
_WINDOW = 13  # places from a checker's own to 12 ahead: every first landing 7+ ahead is in it
_CONTAIN_STARTS = 10  # places 0..9: the bar and idx 0..8 (the moving side's 25 to 16 points)

_ROLL_WEIGHT = np.where(rules.DICE[:, 0] == rules.DICE[:, 1], 1.0, 2.0).astype(np.float32)


_PLACES = (1 << 25) - 1  # the 25 places idx -1..23 of `_shots`' sets, as bits 0..24


def _bits(b: jax.Array, first: int = 0) -> jax.Array:
    """A set as bits: [..., n] bool -> [...] int32 with bit `first` + i set where b[..., i]."""
    weight = jnp.left_shift(jnp.int32(1), jnp.arange(b.shape[-1], dtype=jnp.int32) + first)
    return jnp.sum(jnp.where(b, weight, 0), -1, dtype=jnp.int32)


def _up(places: jax.Array, d: int) -> jax.Array:
    """A set of places moved d places up (what lands past idx 23 is gone)."""
    return jnp.left_shift(places, d) & _PLACES


def _shots(board: jax.Array) -> jax.Array:
    """Rolls (of 36) with which the opponent hits a blot of the side to move: [...] float32.

    The opponent moves up the board (idx 0 -> 23) and enters from its bar as from idx -1. Sets of
    places idx -1..23 are the bits 0..24 of an int32 (a set's shift is a bit shift, so a row costs
    a few integer operations a roll): the places each roll's steps reach from all the opponent's
    checkers at once, a step going on only from an open point."""
    pts = board[..., : rules.NUM_POINTS]
    blot = _bits(pts == 1, 1)
    open_ = _bits(pts < 2, 1)  # a point the opponent may land on and go on from
    sources = jnp.where(board[..., rules.OPP_BAR] < 0, 1, _bits(pts < 0, 1))  # the bar first
    one = [_up(sources, d) for d in range(7)]  # one[d]: reached with a single die d (one[0] unused)
    total = jnp.zeros(pts.shape[:-1], jnp.float32)
    for (a, b), weight in zip(rules.DICE.tolist(), _ROLL_WEIGHT.tolist(), strict=True):
        if a == b:
            reach, at = one[a], one[a]
            for _ in range(3):
                at = _up(at & open_, a)
                reach = reach | at
        else:
            reach = one[a] | one[b] | _up(one[a] & open_, b) | _up(one[b] & open_, a)
        total = total + weight * ((reach & blot) != 0)
    return total


def _prime(made: jax.Array) -> jax.Array:
    """The longest run of made points, capped at 6: [..., 24] bool -> [...] int32. After k - 1
    steps of `x & (x >> 1)` a bit is left where a run of k starts, so the count of steps that
    leave any bit is the run's length."""
    x = _bits(made)
    run = jnp.zeros(made.shape[:-1], jnp.int32)
    for _ in range(6):
        run = run + (x != 0)
        x = x & jnp.right_shift(x, 1)
    return run


def side_features(board: jax.Array) -> jax.Array:
    """The side to move's seven features [..., 7] float32 (see the module's table)."""
    b = board.astype(jnp.int32)
    pts = b[..., : rules.NUM_POINTS]
    mine = jnp.maximum(pts, 0)
    made = mine >= 2
    pips = jnp.sum(mine * jnp.arange(1, 25), -1) + 25 * b[..., rules.BAR]
    # the opponent's view: its shots at our blots are `_shots` of our board as it is
    shots = _shots(b) / 36.0
    prime = _prime(made) / 6.0
    anchors = jnp.minimum(jnp.sum(made[..., 18:24], -1), 2) / 2.0
    back = jnp.minimum(jnp.sum(mine[..., 18:24], -1) + b[..., rules.BAR], 5) / 5.0
    home = jnp.sum(made[..., :6], -1) / 6.0
    blots = jnp.minimum(jnp.sum(mine == 1, -1), 5) / 5.0
    return jnp.stack([pips / 100.0, shots, prime, anchors, back, home, blots], -1).astype(jnp.float32)


def extended_features(board: jax.Array) -> jax.Array:
    """[..., NUM_EXTRA] float32: the mover's seven, the opponent's seven, pip difference, contact."""
    b = board.astype(jnp.int32)
    mine, theirs = side_features(b), side_features(rules.flip(b))
    flat = b.reshape(-1, rules.BOARD_SIZE)
    contact = (~jax.vmap(is_race)(flat)).reshape(b.shape[:-1]).astype(jnp.float32)
    diff = (mine[..., 0] - theirs[..., 0]) * 2.0  # pips / 100 each: the difference / 50
    return jnp.concatenate([mine, theirs, diff[..., None], contact[..., None]], -1)


def _escape_rolls(window: np.ndarray) -> np.ndarray:
    """Rolls (of 36) that escape a checker: `window` [..., 13] bool, True where a landing k pips
    ahead of it is open (k = 0 is its own place). One way and no doubles: the two dice in either
    order, so the sum 7+ ahead and a die's landing open; a double d: its first landing 7+ ahead
    and each one before it open (1-1 never gets there in four steps)."""
    total = np.zeros(window.shape[:-1], np.float32)
    for a, b in rules.DICE.tolist():
        if a == b:
            steps = -(-_ESCAPE // a)
            if steps <= 4:
                total += np.all(window[..., a : a * steps + 1 : a], -1)
        elif a + b >= _ESCAPE:
            total += 2.0 * (window[..., a + b] & (window[..., a] | window[..., b]))
    return total


# `_escape_rolls` of every window, indexed by the window as bits (bit k: the landing k pips ahead
# is open): a window's count is one lookup in 32 kB
_ESCAPE_TABLE = _escape_rolls((np.arange(1 << _WINDOW)[:, None] >> np.arange(_WINDOW)) & 1 == 1)
_WINDOW_BITS = (1 << _WINDOW) - 1
_ALL = 0xFFFFFFFF


def _open_bits(b: jax.Array) -> jax.Array:
    """[...] uint32: the places of a checker that moves up the board past the side to move's
    points as bits (bit 0 its bar, bit i + 1 idx i, bits 25-31 off the board): set where the
    side to move has fewer than two checkers (the bar and off the board: always)."""
    inside = _bits(b[..., : rules.NUM_POINTS] < 2, 1).astype(jnp.uint32)
    return inside | jnp.uint32(1) | jnp.uint32(_ALL << (rules.NUM_POINTS + 1) & _ALL)


def _escapes_from(open_bits: jax.Array, start: jax.Array | int) -> jax.Array:
    """The escaping rolls [...] float32 of a checker on place `start` of `open_bits` (the places
    past bit 31 are off the board: open)."""
    start = jnp.asarray(start, jnp.uint32)
    beyond = jnp.uint32(_ALL) ^ jnp.right_shift(jnp.uint32(_ALL), start)  # the top `start` bits
    window = (jnp.right_shift(open_bits, start) | beyond) & jnp.uint32(_WINDOW_BITS)
    return jnp.asarray(_ESCAPE_TABLE)[window.astype(jnp.int32)]


def _side_escapes(b: jax.Array) -> jax.Array:
    """[..., 2] float32: the side to move's escapes and containment (see the module's table)."""
    places = _open_bits(b)
    escaping = jnp.stack([_escapes_from(places, s) for s in range(_CONTAIN_STARTS)], -1)
    contain = 1.0 - jnp.min(escaping, -1) / 36.0
    # our rearmost checker moves up the opponent's view past its points
    fb = rules.flip(b)
    ours = jnp.concatenate(
        [fb[..., rules.OPP_BAR : rules.OPP_BAR + 1] < 0, fb[..., : rules.NUM_POINTS] < 0], -1
    )
    start = jnp.argmax(ours, -1)
    escapes = jnp.where(jnp.any(ours, -1), _escapes_from(_open_bits(fb), start) / 36.0, 1.0)
    return jnp.stack([escapes, contain], -1).astype(jnp.float32)


def escape_features(board: jax.Array) -> jax.Array:
    """[..., ESCAPE_FEATURES] float32: the mover's escapes and containment, then the opponent's."""
    b = board.astype(jnp.int32)
    return jnp.concatenate([_side_escapes(b), _side_escapes(rules.flip(b))], -1)
