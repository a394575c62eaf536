"""Tesauro's pubeval: a fixed linear move-selection benchmark, as pure JAX.

Gerald Tesauro published pubeval.c (IBM Research, 1993) into the public domain
as a common yardstick for backgammon programs. It scores an afterstate (the
position after the mover's play, still seen by the mover) with one of two
122-weight linear functions, race or contact, and picks the play with the
highest score. This port follows pubeval.c's setx() and pubeval() exactly, so
it makes the same choices as GNU Backgammon's copy of it (checked against
gnubg_nn in tests/core/test_pubeval.py).

pubeval.c numbers the board from the mover's side: pos[1..24] are the mover's
points 1..24 (our idx 0..23), pos[0] the opponent's bar (<= 0), pos[25] the
mover's bar, pos[26] the mover's checkers off. Our layout (see rules.py) is the
same up to that index shift, so no flip is needed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bgai.core import rules

NUM_INPUTS = 122
# pubeval.c returns this for a play that bears off the last checker, so such a
# play always wins the argmax (as a float32 it is 1e8, as C's 99999999.f is).
TERMINAL_SCORE = 99999999.0

# The weight vectors wr[] (race) and wc[] (contact) of Tesauro's pubeval.c
# (public domain, 1993; the same numbers are in GNU Backgammon's pub_eval.c).
# Inputs come five per point, from the mover's point 24 down to point 1:
# [opponent blot, 1 mover checker, >= 2, exactly 3, (n - 3) / 2 for n >= 4];
# then the opponent's checkers on the bar / 2 and the mover's checkers off / 15.
# fmt: off
RACE_WEIGHTS = np.array(
    [
        0.00000, -0.17160, 0.27010, 0.29906, -0.08471,  # point 24
        0.00000, -1.40375, -1.05121, 0.07217, -0.01351,  # point 23
        0.00000, -1.29506, -2.16183, 0.13246, -1.03508,  # point 22
        0.00000, -2.29847, -2.34631, 0.17253, 0.08302,  # point 21
        0.00000, -1.27266, -2.87401, -0.07456, -0.34240,  # point 20
        0.00000, -1.34640, -2.46556, -0.13022, -0.01591,  # point 19
        0.00000, 0.27448, 0.60015, 0.48302, 0.25236,  # point 18
        0.00000, 0.39521, 0.68178, 0.05281, 0.09266,  # point 17
        0.00000, 0.24855, -0.06844, -0.37646, 0.05685,  # point 16
        0.00000, 0.17405, 0.00430, 0.74427, 0.00576,  # point 15
        0.00000, 0.12392, 0.31202, -0.91035, -0.16270,  # point 14
        0.00000, 0.01418, -0.10839, -0.02781, -0.88035,  # point 13
        0.00000, 1.07274, 2.00366, 1.16242, 0.22520,  # point 12
        0.00000, 0.85631, 1.06349, 1.49549, 0.18966,  # point 11
        0.00000, 0.37183, -0.50352, -0.14818, 0.12039,  # point 10
        0.00000, 0.13681, 0.13978, 1.11245, -0.12707,  # point 9
        0.00000, -0.22082, 0.20178, -0.06285, -0.52728,  # point 8
        0.00000, -0.13597, -0.19412, -0.09308, -1.26062,  # point 7
        0.00000, 3.05454, 5.16874, 1.50680, 5.35000,  # point 6
        0.00000, 2.19605, 3.85390, 0.88296, 2.30052,  # point 5
        0.00000, 0.92321, 1.08744, -0.11696, -0.78560,  # point 4
        0.00000, -0.09795, -0.83050, -1.09167, -4.94251,  # point 3
        0.00000, -1.00316, -3.66465, -2.56906, -9.67677,  # point 2
        0.00000, -2.77982, -7.26713, -3.40177, -12.32252,  # point 1
        0.00000, 3.42040,  # opponent bar, mover off
    ],
    dtype=np.float32,
)

CONTACT_WEIGHTS = np.array(
    [
        0.25696, -0.66937, -1.66135, -2.02487, -2.53398,  # point 24
        -0.16092, -1.11725, -1.06654, -0.92830, -1.99558,  # point 23
        -1.10388, -0.80802, 0.09856, -0.62086, -1.27999,  # point 22
        -0.59220, -0.73667, 0.89032, -0.38933, -1.59847,  # point 21
        -1.50197, -0.60966, 1.56166, -0.47389, -1.80390,  # point 20
        -0.83425, -0.97741, -1.41371, 0.24500, 0.10970,  # point 19
        -1.36476, -1.05572, 1.15420, 0.11069, -0.38319,  # point 18
        -0.74816, -0.59244, 0.81116, -0.39511, 0.11424,  # point 17
        -0.73169, -0.56074, 1.09792, 0.15977, 0.13786,  # point 16
        -1.18435, -0.43363, 1.06169, -0.21329, 0.04798,  # point 15
        -0.94373, -0.22982, 1.22737, -0.13099, -0.06295,  # point 14
        -0.75882, -0.13658, 1.78389, 0.30416, 0.36797,  # point 13
        -0.69851, 0.13003, 1.23070, 0.40868, -0.21081,  # point 12
        -0.64073, 0.31061, 1.59554, 0.65718, 0.25429,  # point 11
        -0.80789, 0.08240, 1.78964, 0.54304, 0.41174,  # point 10
        -1.06161, 0.07851, 2.01451, 0.49786, 0.91936,  # point 9
        -0.90750, 0.05941, 1.83120, 0.58722, 1.28777,  # point 8
        -0.83711, -0.33248, 2.64983, 0.52698, 0.82132,  # point 7
        -0.58897, -1.18223, 3.35809, 0.62017, 0.57353,  # point 6
        -0.07276, -0.36214, 4.37655, 0.45481, 0.21746,  # point 5
        0.10504, -0.61977, 3.54001, 0.04612, -0.18108,  # point 4
        0.63211, -0.87046, 2.47673, -0.48016, -1.27157,  # point 3
        0.86505, -1.11342, 1.24612, -0.82385, -2.77082,  # point 2
        1.23606, -1.59529, 0.10438, -1.30206, -4.11520,  # point 1
        5.62596, -2.75800,  # opponent bar, mover off
    ],
    dtype=np.float32,
)
# fmt: on


def pubeval_inputs(afterstate: jax.Array) -> jax.Array:
    """pubeval.c's setx(): the 122 inputs of an afterstate (mover's view) as float32."""
    b = afterstate.astype(jnp.int32)
    # setx() walks j = 1..24 reading pos[25 - j], i.e. the mover's points 24 down to 1.
    n = b[rules.NUM_POINTS - 1 :: -1]  # [24]
    nf = n.astype(jnp.float32)
    per_point = jnp.stack(
        [
            (n == -1).astype(jnp.float32),  # only a lone opponent checker counts, not a point
            (n == 1).astype(jnp.float32),
            (n >= 2).astype(jnp.float32),
            (n == 3).astype(jnp.float32),  # exactly 3: pubeval.c uses ==, not >=
            jnp.where(n >= 4, (nf - 3.0) / 2.0, 0.0),
        ],
        axis=-1,
    )  # [24, 5]
    opp_bar = -b[rules.OPP_BAR].astype(jnp.float32) / 2.0  # x[120] = -pos[0] / 2, pos[0] <= 0
    off = b[rules.OFF].astype(jnp.float32) / 15.0  # x[121] = pos[26] / 15
    return jnp.concatenate([per_point.reshape(-1), jnp.stack([opp_bar, off])])


def is_race(board: jax.Array) -> jax.Array:
    """True when no contact is left: every mover checker is past every opponent checker.

    Same test as gnubg's ClassifyPosition: a checker on either bar means contact,
    and a side with no checkers left (game over) makes it a race.
    """
    b = board.astype(jnp.int32)
    # Mover's rearmost checker: highest idx among points 0..23 and the bar (24);
    # -2 if none, below anything the opponent can have.
    src = jnp.arange(rules.NUM_SOURCES)
    mover_back = jnp.max(jnp.where(b[: rules.NUM_SOURCES] > 0, src, -2))
    # Opponent's rearmost checker in the mover's numbering: lowest idx, its bar
    # sitting just below idx 0 (it re-enters into the mover's home board); 25 if
    # none, above even the mover's bar.
    pts = jnp.arange(rules.NUM_POINTS)
    opp_back = jnp.min(jnp.where(b[: rules.NUM_POINTS] < 0, pts, rules.NUM_SOURCES))
    opp_back = jnp.where(b[rules.OPP_BAR] < 0, -1, opp_back)
    return mover_back < opp_back


def pubeval_score(afterstate: jax.Array, race: jax.Array | bool | None = None) -> jax.Array:
    """pubeval score (float32) of an afterstate in our layout; higher is better for the mover.

    `race` picks the weights. pubeval.c wants it from the position *before* the
    move (so all plays of one decision share one weight vector, even those that
    break contact); None takes it from the afterstate itself, which is what
    gnubg's pub_eval_score does for a lone position.
    """
    x = pubeval_inputs(afterstate)
    flag = is_race(afterstate) if race is None else jnp.asarray(race, dtype=bool)
    w = jnp.where(flag, jnp.asarray(RACE_WEIGHTS), jnp.asarray(CONTACT_WEIGHTS))
    # A plain multiply-and-sum, not jnp.dot: on GPUs a float32 dot may run in TF32,
    # whose ~1e-3 error would break near-ties differently from pubeval.c.
    score = jnp.sum(x * w)
    done = afterstate[rules.OFF] >= rules.NUM_CHECKERS
    return jnp.where(done, jnp.float32(TERMINAL_SCORE), score).astype(jnp.float32)


def pubeval_choose(plays: rules.Plays, race: jax.Array | bool | None = None) -> jax.Array:
    """Index (int32) of the masked play with the highest pubeval score; 0 if none is masked.

    Pass `race = is_race(board)` of the position before the move to play exactly
    as pubeval.c / gnubg's pub_best_move do. With None the flag is inferred from
    the plays: race iff every play is a race. A race stays a race, so this is
    only wrong when the position had contact and every legal play breaks it.
    Ties go to the lowest index. Works on one position's Plays; vmap for a batch.
    """
    boards = plays.boards.astype(jnp.int32)
    if race is None:
        race = jnp.all(jax.vmap(is_race)(boards) | ~plays.mask)
    scores = jax.vmap(pubeval_score, in_axes=(0, None))(boards, race)
    scores = jnp.where(plays.mask, scores, -jnp.inf)
    return jnp.argmax(scores).astype(jnp.int32)
