"""Backgammon rules as pure JAX functions (money play, no cube).

Board layout, always from the point of view of the side to move (int32[28]):

    idx 0..23   points 1..24 of the side to move; its checkers count positive,
                the opponent's negative. The side to move moves towards idx 0
                and bears off below it; its home board is idx 0..5.
    idx 24      the mover's bar (>= 0)
    idx 25      the opponent's bar (<= 0)
    idx 26      the mover's checkers borne off (>= 0)
    idx 27      the opponent's checkers borne off (<= 0)

`flip` turns the board to the other side's point of view. Dice are a chance
function of their own (`roll_dice`): 21 outcomes, doubles 1/36, others 2/36.
A *play* is a whole turn (all dice used as the rules demand); `legal_plays`
returns the distinct resulting positions (afterstates) with, for each, the
single-checker steps that make it, so a policy over steps can score plays.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

NUM_POINTS = 24
BAR = 24
OPP_BAR = 25
OFF = 26
OPP_OFF = 27
BOARD_SIZE = 28
NUM_CHECKERS = 15
NUM_SOURCES = 25  # points 0..23 and the bar (24)
NUM_STEPS = NUM_SOURCES * 6  # a single-checker step: source * 6 + (die - 1)
NO_STEP = NUM_STEPS  # padding step index; policies give it logit 0
MAX_STEPS_PER_PLAY = 4

FLIP_IDX = np.array(list(range(23, -1, -1)) + [OPP_BAR, BAR, OPP_OFF, OFF])

# The 21 distinct rolls, high die first, and their probabilities.
DICE = np.array([(a, b) for a in range(1, 7) for b in range(1, a + 1)], dtype=np.int32)  # [21, 2]
DICE_PROBS = np.where(DICE[:, 0] == DICE[:, 1], 1.0 / 36.0, 2.0 / 36.0).astype(np.float32)  # [21]
NUM_ROLLS = len(DICE)
OPENING_ROLLS = np.flatnonzero(DICE[:, 0] != DICE[:, 1])  # the 15 non-doubles

_START = np.zeros(BOARD_SIZE, dtype=np.int32)
_START[[23, 12, 7, 5]] = [2, 5, 3, 5]
_START[[0, 11, 16, 18]] = [-2, -5, -3, -5]

# Two independent 32-bit linear hashes of a board: distinct positions collide
# with probability ~2^-64, used only to find duplicate afterstates.
_HASH = np.random.default_rng(20261128).integers(1, 2**31 - 1, size=(2, BOARD_SIZE), dtype=np.int64)
_HASH = (_HASH | 1).astype(np.int32)


class MoveGenConfig(NamedTuple):
    """Static capacities of the move generator (they fix compiled shapes).

    max_plays: distinct plays kept per decision (more are dropped and `overflow` set).
    frontier2 / frontier3: distinct partial positions kept after 2 / 3 steps of a double.
    """

    max_plays: int = 128
    frontier2: int = 96
    frontier3: int = 192


EXACT_MOVEGEN = MoveGenConfig(max_plays=1024, frontier2=320, frontier3=1536)


class Plays(NamedTuple):
    """The legal plays of one position and roll (leading axes may be batched)."""

    boards: jax.Array  # [K, 28] int32 afterstates, mover's point of view
    steps: jax.Array  # [K, 4] int32 step indices making each play, NO_STEP padded
    mask: jax.Array  # [K] bool, True for a real play
    count: jax.Array  # [] int32 number of distinct plays (may exceed K if overflow)
    overflow: jax.Array  # [] bool, some plays were dropped for capacity


def start_board() -> jax.Array:
    return jnp.asarray(_START)


def flip(board: jax.Array) -> jax.Array:
    """The same position seen by the other side."""
    return -board[..., FLIP_IDX]


def roll_dice(key: jax.Array) -> jax.Array:
    """Chance: one of the 21 rolls (index into DICE), consumes `key`."""
    return jax.random.choice(key, NUM_ROLLS, p=jnp.asarray(DICE_PROBS))


def opening_roll(key: jax.Array) -> jax.Array:
    """The first roll of a game: never a double (each side rolled one die)."""
    return jnp.asarray(OPENING_ROLLS)[jax.random.randint(key, (), 0, len(OPENING_ROLLS))]


def single_steps(board: jax.Array, die: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Every one-checker step with `die` from each of the 25 sources.

    Returns boards [25, 28] and legal [25]; illegal rows hold garbage.
    """
    src = jnp.arange(NUM_SOURCES)
    dest = src - die  # the bar (24) enters at 24 - die, i.e. idx 23..18
    mine = jnp.maximum(board[:NUM_SOURCES], 0)  # [25]
    has = mine > 0
    bar_ok = (board[BAR] == 0) | (src == BAR)
    dest_in = dest >= 0
    dest_val = board[jnp.clip(dest, 0, NUM_POINTS - 1)]
    land_ok = dest_val >= -1
    all_home = jnp.sum(mine[6:]) == 0
    # checkers of mine on points strictly above each source (within the 24 points)
    above = jnp.cumsum(mine[:NUM_POINTS][::-1])[::-1] - mine[:NUM_POINTS]
    above = jnp.concatenate([above, jnp.zeros(1, above.dtype)])
    bear_ok = all_home & ((dest == -1) | (above == 0))
    legal = has & bar_ok & jnp.where(dest_in, land_ok, bear_ok)
    hit = dest_in & (dest_val == -1)
    eye = jnp.eye(BOARD_SIZE, dtype=board.dtype)
    to = jnp.where(dest_in, jnp.clip(dest, 0, NUM_POINTS - 1), OFF)
    new = (
        board[None, :]
        - eye[src]
        + eye[to] * (1 + hit)[:, None].astype(board.dtype)
        - eye[OPP_BAR][None, :] * hit[:, None].astype(board.dtype)
    )
    return new, legal


_multi_steps = jax.vmap(single_steps, in_axes=(0, None))


def _hash(boards: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = jnp.asarray(_HASH)
    return jnp.sum(boards * h[0], axis=-1), jnp.sum(boards * h[1], axis=-1)


def _compact_unique(
    boards: jax.Array, steps: jax.Array, valid: jax.Array, last_src: jax.Array, size: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Keep the distinct valid boards, at most `size` of them.

    Among duplicates the row with the highest `last_src` wins (a double is
    generated with non-increasing sources, so that row has most continuations);
    ties keep the earliest row. Returns boards, steps, last_src, mask, count.
    """
    h1, h2 = _hash(boards)
    order = jnp.lexsort((-last_src, h2, h1, ~valid))
    v, a, b = valid[order], h1[order], h2[order]
    new = jnp.concatenate([jnp.ones(1, bool), (a[1:] != a[:-1]) | (b[1:] != b[:-1])])
    unique = v & new
    count = jnp.sum(unique)
    pos = jnp.nonzero(unique, size=size, fill_value=0)[0]
    idx = order[pos]
    mask = jnp.arange(size) < count
    return boards[idx], steps[idx], last_src[idx], mask, count


def _step_ids(die: jax.Array) -> jax.Array:
    return jnp.arange(NUM_SOURCES) * 6 + (die - 1)  # [25]


def _plays_non_double(board: jax.Array, hi: jax.Array, lo: jax.Array, cfg: MoveGenConfig) -> Plays:
    src = jnp.arange(NUM_SOURCES)
    b_hi, l_hi = single_steps(board, hi)  # [25, 28], [25]
    b_lo, l_lo = single_steps(board, lo)
    b_hl, l_hl = _multi_steps(b_hi, lo)  # [25, 25, 28]
    b_lh, l_lh = _multi_steps(b_lo, hi)
    l_hl = l_hl & l_hi[:, None]
    l_lh = l_lh & l_lo[:, None]
    any2 = jnp.any(l_hl) | jnp.any(l_lh)
    any_hi = jnp.any(l_hi)
    any1 = any_hi | jnp.any(l_lo)
    s_hi, s_lo = _step_ids(hi), _step_ids(lo)
    pad = jnp.full((NUM_SOURCES,), NO_STEP)
    n2 = NUM_SOURCES * NUM_SOURCES
    steps_hl = jnp.stack([jnp.repeat(s_hi, NUM_SOURCES), jnp.tile(s_lo, NUM_SOURCES)], -1)
    steps_lh = jnp.stack([jnp.repeat(s_lo, NUM_SOURCES), jnp.tile(s_hi, NUM_SOURCES)], -1)
    boards = jnp.concatenate(
        [b_hl.reshape(n2, -1), b_lh.reshape(n2, -1), b_hi, b_lo, board[None]], axis=0
    )
    steps2 = jnp.concatenate(
        [steps_hl, steps_lh, jnp.stack([s_hi, pad], -1), jnp.stack([s_lo, pad], -1),
         jnp.full((1, 2), NO_STEP)], axis=0
    )
    steps = jnp.concatenate([steps2, jnp.full((steps2.shape[0], 2), NO_STEP)], axis=1)
    valid = jnp.concatenate(
        [
            l_hl.reshape(-1),
            l_lh.reshape(-1),
            l_hi & ~any2,
            l_lo & ~any2 & ~any_hi,  # the larger die must be played if only one can
            (~any1)[None],
        ]
    )
    last = jnp.zeros(valid.shape[0], jnp.int32)
    del src
    out_b, out_s, _, mask, count = _compact_unique(boards, steps, valid, last, cfg.max_plays)
    return Plays(out_b, out_s, mask, count, count > cfg.max_plays)


def _expand_double(
    boards: jax.Array, steps: jax.Array, last: jax.Array, mask: jax.Array, die: jax.Array, depth: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One more step of a double from each frontier row, sources non-increasing."""
    n = boards.shape[0]
    src = jnp.arange(NUM_SOURCES)
    nb, nl = _multi_steps(boards, die)  # [n, 25, 28], [n, 25]
    nl = nl & mask[:, None] & (src[None, :] <= last[:, None])
    new_steps = jnp.repeat(steps, NUM_SOURCES, axis=0).at[:, depth].set(
        jnp.tile(_step_ids(die), n)
    )
    return (
        nb.reshape(n * NUM_SOURCES, -1),
        new_steps,
        jnp.tile(src, n),
        nl.reshape(-1),
    )


def _plays_double(board: jax.Array, die: jax.Array, cfg: MoveGenConfig) -> Plays:
    steps0 = jnp.full((1, MAX_STEPS_PER_PLAY), NO_STEP)
    last0 = jnp.full((1,), NUM_SOURCES - 1)
    levels_b, levels_s, levels_m = [board[None]], [steps0], [jnp.ones(1, bool)]
    b, s, last, m = board[None], steps0, last0, jnp.ones(1, bool)
    overflow = jnp.zeros((), bool)
    for depth, cap in enumerate((NUM_SOURCES, cfg.frontier2, cfg.frontier3, cfg.max_plays)):
        b, s, last, m = _expand_double(b, s, last, m, die, depth)
        if depth > 0:  # a single step from one position needs no de-duplication
            b, s, last, m, count = _compact_unique(b, s, m, last, cap)
            overflow = overflow | (count > cap)
        levels_b.append(b)
        levels_s.append(s)
        levels_m.append(m)
    # Use as many dice as possible: only the deepest non-empty level is legal.
    reached = jnp.stack([jnp.any(x) for x in levels_m])  # [5]
    deepest = 4 - jnp.argmax(reached[::-1])
    masks = [x & (i == deepest) for i, x in enumerate(levels_m)]
    boards = jnp.concatenate(levels_b, 0)
    steps = jnp.concatenate(levels_s, 0)
    valid = jnp.concatenate(masks, 0)
    last = jnp.zeros(valid.shape[0], jnp.int32)
    out_b, out_s, _, mask, count = _compact_unique(boards, steps, valid, last, cfg.max_plays)
    return Plays(out_b, out_s, mask, count, overflow | (count > cfg.max_plays))


def legal_plays(board: jax.Array, dice_idx: jax.Array, cfg: MoveGenConfig = MoveGenConfig()) -> Plays:
    """All distinct legal plays of `board` (side to move) for roll `dice_idx`."""
    d = jnp.asarray(DICE)[dice_idx]
    board = board.astype(jnp.int32)
    return jax.lax.cond(
        d[0] == d[1],
        lambda: _plays_double(board, d[0], cfg),
        lambda: _plays_non_double(board, d[0], d[1], cfg),
    )


def win_points(board: jax.Array) -> jax.Array:
    """Points the mover has won in `board` (its own point of view), 0 if not over.

    1 single, 2 gammon (opponent bore off none), 3 backgammon (and the opponent
    still has a checker on the bar or in the winner's home board).
    """
    won = board[OFF] >= NUM_CHECKERS
    gammon = board[OPP_OFF] == 0
    backgammon = gammon & ((board[OPP_BAR] < 0) | jnp.any(board[:6] < 0))
    return jnp.where(won, 1 + gammon.astype(jnp.int32) + backgammon.astype(jnp.int32), 0)


def pip_counts(board: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pip counts (mover, opponent)."""
    pts = jnp.arange(1, NUM_POINTS + 1)
    mine = jnp.sum(jnp.maximum(board[:NUM_POINTS], 0) * pts) + 25 * board[BAR]
    theirs = jnp.sum(jnp.maximum(-board[:NUM_POINTS], 0) * (25 - pts)) - 25 * board[OPP_BAR]
    return mine, theirs
