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

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bgai.core import movegen_native
from bgai.core.layout import (  # noqa: F401 (the layout's names stay rules.X for every caller)
    BAR,
    BOARD_SIZE,
    MAX_FIRST,
    MAX_STEPS_PER_PLAY,
    NO_STEP,
    NUM_CHECKERS,
    NUM_POINTS,
    NUM_SOURCES,
    NUM_STEPS,
    OFF,
    OPP_BAR,
    OPP_OFF,
)

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
    # "jax": the XLA cascade below (any device); "native": the same plays from the sequential
    # generator of `movegen_native` on the host (CPU only, ~3x faster there)
    backend: str = "jax"


DEFAULT_MOVEGEN = MoveGenConfig()
EXACT_MOVEGEN = MoveGenConfig(max_plays=1024, frontier2=320, frontier3=1536)


class Plays(NamedTuple):
    """The legal plays of one position and roll (leading axes may be batched)."""

    # [K, 28] afterstates, mover's point of view: int32 from `legal_plays`, int8 from the batch
    # generators, whose [B, K, 28] is the largest array of a turn (gather the rows, then widen)
    boards: jax.Array
    steps: jax.Array  # [K, 4] int32 step indices making each play, NO_STEP padded
    mask: jax.Array  # [K] bool, True for a real play
    num_plays: jax.Array  # [] int32 number of distinct plays (may exceed K if overflow)
    overflow: jax.Array  # [] bool, some plays were dropped for capacity


def play_boards(plays: Plays, index: jax.Array) -> jax.Array:
    """The afterstates of plays `index` [B] ([B, 28]) or [B, M] ([B, M, 28]) of a batch of
    `plays` [B, K, ...], widened to int32: gather the rows, then widen (`Plays.boards`)."""
    one = index.ndim == 1
    idx = index[:, None] if one else index
    rows = jnp.take_along_axis(plays.boards, idx[..., None], axis=1)
    return (rows[:, 0] if one else rows).astype(jnp.int32)


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


def step_legality(board: jax.Array, die: jax.Array) -> jax.Array:
    """legal [25]: may a checker step `die` pips from each source (24 = bar)?

    Written with static slices and no gathers: this runs for every parent
    board of every candidate play, and a gather by a traced index costs a CPU
    far more than six shifted copies of 25 booleans.
    """
    src = jnp.arange(NUM_SOURCES)
    mine = jnp.maximum(board[:NUM_SOURCES], 0)  # [25]
    bar_ok = (board[BAR] == 0) | (src == BAR)
    # landing on idx s - die: open unless the opponent holds it with 2+; idx < 0 is a bear-off
    ext = jnp.concatenate([jnp.zeros(6, bool), board[:NUM_POINTS] >= -1])  # ext[i]: idx i - 6 is open
    land = jnp.zeros(NUM_SOURCES, bool)
    for d in range(1, 7):
        land = land | ((die == d) & ext[6 - d : 6 - d + NUM_SOURCES])
    # bearing off (all checkers home, so only home sources): exactly, or from the highest point
    all_home = jnp.sum(mine[6:]) == 0
    above = jnp.stack([jnp.sum(mine[s + 1 : 6]) for s in range(6)])  # my checkers above each home idx
    dest = src[:6] - die
    bear = all_home & (dest < 0) & ((dest == -1) | (above == 0))
    bear = jnp.concatenate([bear, jnp.zeros(NUM_SOURCES - 6, bool)])
    return (mine > 0) & bar_ok & (land | bear)


def apply_step(board: jax.Array, src: jax.Array, die: jax.Array) -> jax.Array:
    """The board after moving one checker from `src` by `die` (legality not checked)."""
    dest = src - die
    dest_in = dest >= 0
    to = jnp.where(dest_in, dest, OFF)
    hit = (dest_in & (board[jnp.maximum(dest, 0)] == -1)).astype(board.dtype)
    board = board.at[src].add(-1).at[to].add(1 + hit)
    return board.at[OPP_BAR].add(-hit)


def apply_play(board: jax.Array, steps: jax.Array) -> jax.Array:
    """The board after a play's steps [4] (step indices in the order played, NO_STEP padded)."""
    for i in range(MAX_STEPS_PER_PLAY):
        step = steps[i].astype(jnp.int32)
        moved = apply_step(board, jnp.minimum(step // 6, NUM_SOURCES - 1), step % 6 + 1)
        board = jnp.where(step < NO_STEP, moved, board)
    return board


_legality_rows = jax.vmap(step_legality, in_axes=(0, None))
_apply_rows = jax.vmap(apply_step, in_axes=(0, 0, None))
_apply_rows_dice = jax.vmap(apply_step, in_axes=(0, 0, 0))


def _hash(boards: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = jnp.asarray(_HASH)
    return jnp.sum(boards * h[0], axis=-1), jnp.sum(boards * h[1], axis=-1)


def _triangle(n: int, strict: bool = False) -> jax.Array:
    """[n, n] float32 with t[j, i] = 1 where j <= i (j < i if strict): x @ t sums x[:i+1] into i."""
    return jnp.asarray(np.triu(np.ones((n, n), np.float32), k=1 if strict else 0))


def prefix_sum(x: jax.Array) -> jax.Array:
    """Inclusive prefix sums over the last axis, float32 (exact for integers below 2^24).

    Matmuls with a triangle of ones, in blocks of 32: `jnp.cumsum` lowers to a
    reduce-window that costs more on a CPU than the whole move generator's
    arithmetic around it.
    """
    n, blk = x.shape[-1], 32
    x = x.astype(jnp.float32)
    hi = jax.lax.Precision.HIGHEST
    if n <= blk:
        return jnp.matmul(x, _triangle(n), precision=hi)
    nb = -(-n // blk)
    xp = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, nb * blk - n)]).reshape(*x.shape[:-1], nb, blk)
    inner = jnp.matmul(xp, _triangle(blk), precision=hi)  # [..., nb, blk]
    offsets = jnp.matmul(inner[..., -1], _triangle(nb, strict=True), precision=hi)  # [..., nb]
    return (inner + offsets[..., None]).reshape(*x.shape[:-1], nb * blk)[..., :n]


def compact_index(valid: jax.Array, size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Indices of the first `size` valid rows (no sort: `prefix_sum` + a scatter of ints).

    Returns (index [size], mask [size], count); count may exceed size.
    """
    pos = prefix_sum(valid).astype(jnp.int32) - 1
    slot = jnp.where(valid & (pos < size), pos, size)  # `size` is out of range: dropped
    index = jnp.zeros(size, jnp.int32).at[slot].set(jnp.arange(valid.shape[0], dtype=jnp.int32), mode="drop")
    count = jnp.sum(valid)
    return index, jnp.arange(size) < count, count


def packed_apply(
    fn: Callable[[jax.Array], jax.Array], rows: jax.Array, valid: jax.Array, caps: tuple[int, ...]
) -> jax.Array:
    """`fn(rows)` [M, ...] where `valid` [M], computed on the valid rows only; other rows are zeros.

    The valid rows are packed into the first of `caps` (row counts, smallest first) that holds
    them all, else `fn` runs on every row (and the others' values are `fn`'s). Each capacity is a
    branch of a `switch`: only the one taken runs, so a batch pays for about the rows it needs.
    """
    m, count = rows.shape[0], jnp.sum(valid)

    def packed(size: int) -> Callable[[], jax.Array]:
        def run() -> jax.Array:
            idx, used, _ = compact_index(valid, size)
            out = fn(rows[idx])
            slot = jnp.where(used, idx, m)  # `m` is out of range: the padding rows are dropped
            return jnp.zeros((m, *out.shape[1:]), out.dtype).at[slot].set(out, mode="drop")

        return run

    caps = tuple(c for c in caps if c < m)
    if not caps:
        return fn(rows)
    branch = jnp.sum(count > jnp.asarray(caps))  # the first cap >= count; len(caps): none holds them
    return jax.lax.switch(branch, [*(packed(c) for c in caps), lambda: fn(rows)])


def _first_of_duplicates(boards: jax.Array, mask: jax.Array) -> jax.Array:
    """mask & "no earlier masked row holds the same board" (pairwise on hashes, [M, M])."""
    h1, h2 = _hash(boards)
    same = (h1[:, None] == h1[None, :]) & (h2[:, None] == h2[None, :]) & mask[None, :]
    earlier = jnp.tril(jnp.ones(same.shape, bool), k=-1)
    return mask & ~jnp.any(same & earlier, axis=1)


def _step_ids(die: jax.Array) -> jax.Array:
    return jnp.arange(NUM_SOURCES) * 6 + (die - 1)  # [25]


def _plays_non_double(board: jax.Array, hi: jax.Array, lo: jax.Array, cfg: MoveGenConfig) -> Plays:
    """Candidates: high die then low, low then high, one die only, or no move.

    The legal first steps of each die are gathered first (at most 15: one per
    source holding a checker), so second steps are tried from those boards
    only. Candidate c is described by a parent board (0..14: after the high
    die's i-th legal step, 15..29: after the low die's, 30: the position
    itself) and an optional second step; boards are built only for the valid
    ones. Candidates keep the order of their sources, as without the gathering.
    """
    m = MAX_FIRST
    l_hi, l_lo = step_legality(board, hi), step_legality(board, lo)
    src_hi, m_hi, _ = compact_index(l_hi, m)  # the legal sources in increasing order
    src_lo, m_lo, _ = compact_index(l_lo, m)
    b_hi = jax.vmap(apply_step, in_axes=(None, 0, None))(board, src_hi, hi)  # [15, 28]
    b_lo = jax.vmap(apply_step, in_axes=(None, 0, None))(board, src_lo, lo)
    l_hl = _legality_rows(b_hi, lo) & m_hi[:, None]  # [15, 25]
    l_lh = _legality_rows(b_lo, hi) & m_lo[:, None]
    any2 = jnp.any(l_hl) | jnp.any(l_lh)
    any_hi = jnp.any(l_hi)
    any1 = any_hi | jnp.any(l_lo)
    valid = jnp.concatenate(
        [
            l_hl.reshape(-1),
            l_lh.reshape(-1),
            m_hi & ~any2,
            m_lo & ~any2 & ~any_hi,  # the larger die must be played if only one can
            (~any1)[None],
        ]
    )
    parents = jnp.concatenate([b_hi, b_lo, board[None]], 0)  # [31, 28]
    first_src = jnp.concatenate([src_hi, src_lo])  # [30]
    cap = 2 * cfg.max_plays  # the two orders reach many positions twice
    idx, mask, n_valid = compact_index(valid, cap)
    # What candidate idx is, by arithmetic (no per-candidate tables): parent p, second step s2 with die d2
    n2 = m * NUM_SOURCES
    two = idx < 2 * n2
    order = idx // n2  # 0: high die first, 1: low die first (for two-step candidates)
    p = jnp.where(two, order * m + (idx % n2) // NUM_SOURCES, idx - 2 * n2)
    s2 = jnp.where(two, idx % NUM_SOURCES, 0)
    d2 = jnp.where(order == 0, lo, hi)
    first_die = jnp.where(p < m, hi, lo)
    first_step = jnp.where(p < 2 * m, first_src[jnp.minimum(p, 2 * m - 1)] * 6 + first_die - 1, NO_STEP)
    boards = jnp.where(two[:, None], _apply_rows_dice(parents[p], s2, d2), parents[p])
    steps = jnp.stack(
        [first_step, jnp.where(two, s2 * 6 + d2 - 1, NO_STEP)] + [jnp.full(cap, NO_STEP)] * 2,
        axis=-1,
    )
    unique = _first_of_duplicates(boards, mask)
    idx, mask, count = compact_index(unique, cfg.max_plays)
    return Plays(boards[idx], steps[idx], mask, count, (n_valid > cap) | (count > cfg.max_plays))


def _plays_double(board: jax.Array, die: jax.Array, cfg: MoveGenConfig) -> Plays:
    """All plays of a double, generated with non-increasing sources.

    Every play can be ordered so that sources never increase (higher checkers
    first also keeps every bear-off legal), and a multiset of sources fixes the
    resulting position, so each play is generated exactly once: no de-duplication.
    """
    src = jnp.arange(NUM_SOURCES)
    step_ids = _step_ids(die)
    b = board[None]
    s = jnp.full((1, MAX_STEPS_PER_PLAY), NO_STEP)
    last = jnp.full((1,), NUM_SOURCES - 1)
    m = jnp.ones(1, bool)
    levels = [(b, s, m)]
    overflow = jnp.zeros((), bool)
    # a first step has at most MAX_FIRST legal sources; deeper levels keep the configured frontiers
    for depth, cap in enumerate((MAX_FIRST, cfg.frontier2, cfg.frontier3, cfg.max_plays)):
        legal = _legality_rows(b, die) & m[:, None] & (src[None, :] <= last[:, None])  # [n, 25]
        idx, m, count = compact_index(legal.reshape(-1), cap)
        row, last = idx // NUM_SOURCES, idx % NUM_SOURCES
        b = _apply_rows(b[row], last, die)
        s = s[row].at[:, depth].set(step_ids[last])
        overflow = overflow | (count > cap)
        levels.append((b, s, m))
    # Use as many dice as possible: only the deepest non-empty level is legal.
    reached = jnp.stack([jnp.any(lm) for _, _, lm in levels])  # [5]
    deepest = 4 - jnp.argmax(reached[::-1])
    boards = jnp.concatenate([lb for lb, _, _ in levels], 0)
    steps = jnp.concatenate([ls for _, ls, _ in levels], 0)
    valid = jnp.concatenate([lm & (i == deepest) for i, (_, _, lm) in enumerate(levels)], 0)
    idx, mask, count = compact_index(valid, cfg.max_plays)
    return Plays(boards[idx], steps[idx], mask, count, overflow | (count > cfg.max_plays))


def legal_plays(board: jax.Array, dice_idx: jax.Array, cfg: MoveGenConfig = DEFAULT_MOVEGEN) -> Plays:
    """All distinct legal plays of `board` (side to move) for roll `dice_idx`."""
    d = jnp.asarray(DICE)[dice_idx]
    board = board.astype(jnp.int32)
    return jax.lax.cond(
        d[0] == d[1],
        lambda: _plays_double(board, d[0], cfg),
        lambda: _plays_non_double(board, d[0], d[1], cfg),
    )


_FAST_NON_DOUBLE = (48, 32, 48)
# A double's cost lies in its frontiers, not in how many plays it keeps; and it is the play
# count that overflows (early-game doubles: median 49 plays, 37% over 64), so keep 128.
_FAST_DOUBLE = (128, 40, 64)


def fast_tier(cfg: MoveGenConfig) -> tuple[MoveGenConfig, MoveGenConfig]:
    """The small capacities `legal_plays_batch` tries first (never above `cfg`'s).

    Most positions fit them (median 11 plays, 90th percentile 36 on self-play
    positions); the few that overflow are generated again with `cfg`.
    """

    def cap(c: tuple[int, int, int]) -> MoveGenConfig:
        return MoveGenConfig(min(cfg.max_plays, c[0]), min(cfg.frontier2, c[1]), min(cfg.frontier3, c[2]))

    return cap(_FAST_NON_DOUBLE), cap(_FAST_DOUBLE)


def _pad(plays: Plays, k: int, boards: bool = True) -> Plays:
    """Batched plays [n, k'] padded with empty slots to [n, k] (without boards: [n, k, 0])."""
    extra = k - plays.mask.shape[-1]
    return Plays(
        jnp.pad(plays.boards if boards else plays.boards[..., :0], ((0, 0), (0, extra), (0, 0))),
        jnp.pad(plays.steps, ((0, 0), (0, extra), (0, 0)), constant_values=NO_STEP),
        jnp.pad(plays.mask, ((0, 0), (0, extra))),
        plays.num_plays,
        plays.overflow,
    )


def _redo_rows(
    gen: Callable[[jax.Array, jax.Array], Plays],
    boards: jax.Array,
    d: jax.Array,
    select: jax.Array,
    cap: int,
    out: Plays,
) -> Plays:
    """`out` with the selected rows replaced by `gen` (vmapped) on them.

    The selected rows are gathered into sub-batches of `cap` rows, so only they
    pay for `gen`: none selected costs nothing, more than `cap` takes more rounds
    of the same sub-batch (one compiled `gen`, whatever the count).
    """
    batch = boards.shape[0]

    def more(state: tuple[Plays, jax.Array]) -> jax.Array:
        return jnp.any(state[1])

    def redo(state: tuple[Plays, jax.Array]) -> tuple[Plays, jax.Array]:
        plays, todo = state
        idx, taken, _ = compact_index(todo, cap)
        sub = gen(boards[idx], d[idx])
        slot = jnp.where(taken, idx, batch)  # unused slots are dropped
        plays = jax.tree.map(lambda full, part: full.at[slot].set(part, mode="drop"), plays, sub)
        return plays, todo.at[slot].set(False, mode="drop")

    return jax.lax.while_loop(more, redo, (out, select))[0]


def _generators(
    cfg: MoveGenConfig, with_boards: bool
) -> tuple[Callable[[MoveGenConfig], Callable], Callable[[MoveGenConfig], Callable]]:
    """Vmapped non-double and double generators of capacity c, their plays padded to cfg's K."""
    k = cfg.max_plays

    def non_double(c: MoveGenConfig) -> Callable[[jax.Array, jax.Array], Plays]:
        return lambda b, dd: _pad(
            jax.vmap(_plays_non_double, in_axes=(0, 0, 0, None))(b, dd[:, 0], dd[:, 1], c), k, with_boards
        )

    def double(c: MoveGenConfig) -> Callable[[jax.Array, jax.Array], Plays]:
        return lambda b, dd: _pad(
            jax.vmap(_plays_double, in_axes=(0, 0, None))(b, dd[:, 0], c), k, with_boards
        )

    return non_double, double


def _cascade(
    cfg: MoveGenConfig,
    boards: jax.Array,
    d: jax.Array,
    select: jax.Array | None,
    caps: tuple[int, int, int, int],
    with_boards: bool,
) -> Plays:
    """The plays of the selected rows (None: every row) by the four tiers of `legal_plays_batch`:
    non-doubles at the small `fast_tier` capacities, those that overflowed again at `cfg`'s,
    doubles at their fast capacities, their overflows at `cfg`'s. `caps`: each tier's sub-batch
    (`_redo_rows`). With every row selected the first tier runs on the whole batch, ungathered."""
    batch = boards.shape[0]
    is_double = d[:, 0] == d[:, 1]
    fast, fast_double = fast_tier(cfg)
    non_double, double = _generators(cfg, with_boards)
    if select is None:
        plays = non_double(fast)(boards, d)
        select = jnp.ones(batch, bool)
    else:
        k = cfg.max_plays
        empty = Plays(
            jnp.zeros((batch, k, BOARD_SIZE if with_boards else 0), jnp.int32),
            jnp.full((batch, k, MAX_STEPS_PER_PLAY), NO_STEP, jnp.int32),
            jnp.zeros((batch, k), bool),
            jnp.zeros(batch, jnp.int32),
            jnp.zeros(batch, bool),
        )
        plays = _redo_rows(non_double(fast), boards, d, select & ~is_double, caps[0], empty)
    if fast != cfg:
        plays = _redo_rows(non_double(cfg), boards, d, select & ~is_double & plays.overflow, caps[1], plays)
    plays = _redo_rows(double(fast_double), boards, d, select & is_double, caps[2], plays)
    if fast_double != cfg:
        plays = _redo_rows(double(cfg), boards, d, select & is_double & plays.overflow, caps[3], plays)
    return plays


def _native(
    boards: jax.Array, dice_idx: jax.Array, select: jax.Array | None, cfg: MoveGenConfig, with_boards: bool
) -> Plays:
    """The cascade's plays from `movegen_native` (unselected rows: no plays, as `_cascade`)."""
    fast, fast_double = fast_tier(cfg)
    caps = (
        cfg.max_plays,
        0,
        0,
        fast.max_plays,
        cfg.max_plays,
        cfg.frontier2,
        cfg.frontier3,
        *fast_double[:3],
    )
    everyone = jnp.ones(boards.shape[:-1], bool)
    plays = Plays(
        *movegen_native.legal_plays_batch(
            boards, jnp.asarray(DICE)[dice_idx], everyone if select is None else select, caps
        )
    )
    return plays if with_boards else plays._replace(boards=plays.boards[..., :0])


def legal_plays_batch(
    boards: jax.Array, dice_idx: jax.Array, cfg: MoveGenConfig = DEFAULT_MOVEGEN, with_boards: bool = True
) -> Plays:
    """`legal_plays` over a batch [B]: the same plays in the same slots, computed in tiers.

    Under vmap a `cond` evaluates both branches for every game, and a capacity
    costs its full size for every game. So every game is first generated as a
    non-double with the small `fast_tier` capacities; the games that rolled a
    double (1 in 6) are gathered into a sub-batch of B//3 for the doubles path;
    and only the games whose plays overflowed the small capacities are generated
    again with `cfg`'s. Without overflow both capacities give the same plays in
    the same order, so the result equals `legal_plays` game by game.
    """
    if cfg.backend == "native":
        return _native(boards, dice_idx, None, cfg, with_boards)
    batch = boards.shape[0]
    caps = (batch, max(1, batch // 4), max(1, batch // 3), max(1, batch // 8))
    return _narrow(
        _cascade(cfg, boards.astype(jnp.int32), jnp.asarray(DICE)[dice_idx], None, caps, with_boards)
    )


def _narrow(plays: Plays) -> Plays:
    """The batch generators' afterstates as int8 (see `Plays`)."""
    return plays._replace(boards=plays.boards.astype(jnp.int8))


def legal_plays_rows(
    boards: jax.Array, dice_idx: jax.Array, select: jax.Array, cap: int, cfg: MoveGenConfig = DEFAULT_MOVEGEN
) -> Plays:
    """`legal_plays_batch` for the selected rows [B] only, in sub-batches of `cap` rows.

    The other rows get no plays (mask all False). The cost follows the number
    of selected rows: none costs nothing, more than `cap` take more rounds.
    Each tier gathers only its own rows (non-doubles, doubles, then the few
    that overflowed), so no sub-batch slot computes a play that is thrown away.
    Only the steps are kept: `boards` is [B, K, 0] (`apply_play` rebuilds any
    afterstate), which spares every round a [B, K, 28] scatter.
    """
    if cfg.backend == "native":
        return _native(boards, dice_idx, select, cfg, False)
    small = max(1, cap // 4)  # doubles are 1 in 6 rolls, overflows rarer
    d = jnp.asarray(DICE)[dice_idx]
    return _narrow(_cascade(cfg, boards.astype(jnp.int32), d, select, (cap, small, small, small), False))


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
