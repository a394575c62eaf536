"""An exact one-sided bear-off database, computed here, and race-to-off values from two of them.

One side's bear-off position: up to 15 checkers on its six home points (idx 0..5 of the board,
the rest borne off): C(21, 6) = 54,264 positions, each ranked by `rank` (the combinatorial
number system: the points' counts are bars and stars in a row of 21, the bars' places are a
6-subset of 0..20). For each position the database holds

- `rolls[i, n]`: the probability that the side, playing to bear off in as few rolls as it can on
  average, needs exactly n rolls (n = 0 only for the empty position); and
- `first[i, n]`, for the positions of all 15 checkers: the probability that its first checker
  is off after exactly n rolls, playing for that (how long a side needs to save the gammon).

Both are computed by dynamic programming over pip counts (every step lowers the count, so a
level depends only on lower ones), vectorised over the positions of a level: for a die d,
`succ[i, d]` lists the positions one checker step can reach; a roll's plays are the chains of
two steps (either order) or four of a double, and the play chosen is the one whose expected
number of rolls is lowest (gnubg's one-sided choice). A die is always playable in a bear-off
(a step inside the home board is never blocked), so every chain is a legal play.

`race_outcomes` turns two sides' rows into the six cubeless outcome probabilities of the side to
roll: it wins if it needs no more rolls than the other (who rolls second); a gammon when the
loser has none off and cannot take one off in time. The two sides' rolls are independent under
the one-sided model (each plays to minimise its own expected rolls), as in gnubg's one-sided
bear-off evaluation. No backgammon is possible: every checker is home.
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import jax
import jax.numpy as jnp
import numpy as np

from bgai.core.rules import BAR, DICE, DICE_PROBS, NUM_CHECKERS, OFF, OPP_BAR, OPP_OFF

POINTS = 6
NUM_POSITIONS = comb(NUM_CHECKERS + POINTS, POINTS)  # 54,264
MAX_ROLLS = 32  # 15 checkers need at most 30 rolls (asserted when built)
_SLOTS = NUM_CHECKERS + POINTS  # 21
_BINOM = np.array([[comb(n, k) for k in range(POINTS + 1)] for n in range(_SLOTS)], dtype=np.int64)


def rank(counts: np.ndarray | jax.Array) -> jax.Array:
    """Checker counts [..., 6] on the home points (idx 0..5) -> the position's index (int32).

    Bars after each point's stars: bar i sits at (checkers on points 0..i) + i, and the six bar
    places, increasing, rank as sum C(place_i, i + 1)."""
    c = jnp.asarray(counts, jnp.int32)
    places = jnp.cumsum(c, axis=-1) + jnp.arange(POINTS)
    return jnp.sum(jnp.asarray(_BINOM, jnp.int32)[places, jnp.arange(1, POINTS + 1)], axis=-1)


def all_positions() -> np.ndarray:
    """Every position [54264, 6] (int8), in rank order."""
    out = np.zeros((NUM_POSITIONS, POINTS), np.int8)
    for places in combinations(range(_SLOTS), POINTS):
        counts = np.diff(np.array((-1, *places))) - 1
        out[sum(comb(p, i + 1) for i, p in enumerate(places))] = counts
    return out


def successors(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(succ, legal), each [P, 6 dice, 6 sources]: the index of the position after moving a
    checker from that source (idx) with that die, and whether that step is legal. A checker
    moves inside the home board, or bears off from the point equal to the die, or from the
    highest occupied point when the die is larger. The empty position's "steps" lead to itself."""
    p = positions.astype(np.int64)
    n = len(p)
    own = np.asarray(rank(p))
    succ = np.repeat(own[:, None, None], POINTS, 1).repeat(POINTS, 2)
    legal = np.zeros((n, POINTS, POINTS), bool)
    occupied = p > 0
    highest = np.where(occupied.any(1), POINTS - 1 - np.argmax(occupied[:, ::-1], axis=1), -1)
    for d in range(1, 7):
        for src in range(POINTS):
            ok = occupied[:, src] & ((src + 1 >= d) | (src == highest))
            after = p[ok].copy()
            after[:, src] -= 1
            if src + 1 > d:
                after[:, src - d] += 1
            succ[ok, d - 1, src] = np.asarray(rank(after))
            legal[:, d - 1, src] = ok
    empty = ~occupied.any(1)
    legal[empty] = True  # (its successor is itself)
    return succ, legal


def _solve(positions: np.ndarray, terminal: np.ndarray) -> np.ndarray:
    """dist [P, MAX_ROLLS]: how many rolls until a terminal position, each roll played to the
    lowest expected count; a terminal position needs 0."""
    n = len(positions)
    succ, legal = successors(positions)
    pips = positions.astype(np.int64) @ np.arange(1, POINTS + 1)
    mean = np.zeros(n)
    dist = np.zeros((n, MAX_ROLLS + 1))
    dist[terminal, 0] = 1.0
    # chain[d][k]: the best k steps of die d from each position, as (expected rolls, final
    # position); k = 0 is the position itself. Terminal positions: 0 rolls, stay where they are.
    ident = np.arange(n)
    chain = [[(mean, ident)] + [(np.zeros(n), ident.copy()) for _ in range(3)] for _ in range(POINTS)]

    def best(level: np.ndarray, die: int, then: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """A step of `die` from each `level` position, then the best k - 1 steps of `then`."""
        ys = succ[level, die]  # [L, 6 sources]
        value, final = chain[then][k - 1]
        vals = np.where(legal[level, die], value[ys], np.inf)
        pick = np.argmin(vals, axis=1)
        rows = np.arange(len(level))
        return vals[rows, pick], final[ys[rows, pick]]

    for p in np.unique(pips[~terminal]):  # a step lowers the pips: lower levels are done
        level = np.flatnonzero((pips == p) & ~terminal)
        expect = np.ones(len(level))
        mix = np.zeros((len(level), MAX_ROLLS + 1))
        for (a, b), prob in zip(DICE, DICE_PROBS, strict=True):
            a, b = int(a) - 1, int(b) - 1
            if a == b:
                val, fin = best(level, a, a, 4)
            else:
                va, fa = best(level, a, b, 2)  # a then b
                vb, fb = best(level, b, a, 2)  # b then a
                val, fin = np.where(vb < va, vb, va), np.where(vb < va, fb, fa)
            expect += float(prob) * val
            mix += float(prob) * dist[fin]
        if mix[:, -1].any():
            raise AssertionError("a bear-off needs more than MAX_ROLLS rolls")
        mean[level] = expect
        dist[level, 1:] = mix[:, :-1]
        for d in range(POINTS):
            for k in (1, 2, 3):
                chain[d][k][0][level], chain[d][k][1][level] = best(level, d, d, k)
    return dist[:, :MAX_ROLLS].astype(np.float32)


def build() -> tuple[np.ndarray, np.ndarray]:
    """(rolls [54264, 32], first [54264, 32]) float32, in rank order; `first` is zero for the
    positions of fewer than 15 checkers (where it does not apply)."""
    positions = all_positions()
    count = positions.astype(np.int64).sum(1)
    rolls = _solve(positions, terminal=count == 0)
    first = _solve(positions, terminal=count < NUM_CHECKERS)
    first[count < NUM_CHECKERS] = 0.0
    return rolls, first


def in_database(boards: jax.Array) -> jax.Array:
    """[...] bool: both sides' checkers all home or off (a pure bear-off race, no contact)."""
    mine = jnp.all(boards[..., 6:24] <= 0, axis=-1) & (boards[..., BAR] == 0)
    theirs = jnp.all(boards[..., :18] >= 0, axis=-1) & (boards[..., OPP_BAR] == 0)
    return mine & theirs


def race_outcomes(rolls: jax.Array, first: jax.Array, boards: jax.Array) -> jax.Array:
    """The six outcome probabilities [..., 6] of the side to roll in `boards` [..., 28] (mover's
    view), both sides in the database (`in_database`; other rows give meaningless numbers):
    win single / gammon / backgammon, lose single / gammon / backgammon."""
    mine = jnp.maximum(boards[..., :POINTS], 0)
    theirs = jnp.maximum(-boards[..., 23:17:-1], 0)  # their home, their point order
    i, j = rank(mine), rank(theirs)
    a, b, fa, fb = rolls[i], rolls[j], first[i], first[j]  # [..., N] each
    # the mover (rolling first) finishes on its n-th roll; the other has had n - 1 by then
    win = jnp.sum(a * _at_least(b), -1)
    win_gammon = jnp.where(boards[..., OPP_OFF] == 0, jnp.sum(a * _at_least(fb), -1), 0.0)
    # the other finishes on its m-th roll, after the mover's m-th: the mover's first off is later
    lose_gammon = jnp.where(boards[..., OFF] == 0, jnp.sum(b * (_at_least(fa) - fa), -1), 0.0)
    zero = jnp.zeros_like(win)
    return jnp.stack([win - win_gammon, win_gammon, zero, 1 - win - lose_gammon, lose_gammon, zero], -1)


def _at_least(dist: jax.Array) -> jax.Array:
    """[..., n] P(count >= n) from a distribution over counts [..., N]."""
    return jnp.flip(jnp.cumsum(jnp.flip(dist, -1), -1), -1)
