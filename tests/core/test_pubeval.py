"""pubeval (bgai.core.pubeval) against GNU Backgammon's copy of Tesauro's pubeval.

gnubg_nn boards are ``[opponent, side to move]`` rows (see positionid.py).
Two conventions of gnubg_nn found by experiment and relied on here:

* ``pub_eval_score(rows)`` scores the position for the player of row 0, i.e. it
  takes an afterstate in gnubg's post-move orientation (the opponent is now on
  roll, in row 1). For our afterstate ``a`` that is ``to_gnubg(flip(a))``. It
  picks race or contact weights from the board it is given.
* ``pub_best_move(rows, d1, d2)`` returns a flat list ``[from, to, ...]`` of
  0-based indices into the mover's row (24 = bar, -1 = borne off), and takes the
  race flag from the position *before* the move, as pubeval.c instructs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgai.core import pubeval, rules
from bgai.core.positionid import from_gnubg, to_gnubg

gnubg = pytest.importorskip("gnubg_nn")

START_ID = "4HPwATDgc/ABMA"
NUM_DECISIONS = 3000
CHUNK = 250
DOUBLES_CHUNK = 120
# Under vmap legal_plays' cond runs both branches and selects one, so each
# group of decisions gets capacities that suit it: non-doubles (at most 91 plays
# here) barely pay for the doubles branch they discard, and doubles of
# random-play positions (up to 490 plays here, more than the default 128) get
# enough room. The test asserts that nothing overflowed.
NON_DOUBLES_CFG = rules.MoveGenConfig(max_plays=128, frontier2=1, frontier3=1)
DOUBLES_CFG = rules.MoveGenConfig(max_plays=512, frontier2=192, frontier3=768)

Rows = list[list[int]]


class Decision(NamedTuple):
    rows: Rows  # gnubg [opponent, mover] before the move
    d1: int
    d2: int
    num_plays: int  # len(gnubg_nn.moves(...))
    gnubg_key: str  # key of the afterstate pub_best_move chooses


def _start() -> Rows:
    return [list(r) for r in gnubg.board_from_position_id(START_ID)]


def _apply(rows: Rows, move: list[int]) -> Rows:
    """Play pub_best_move's flat [from, to, ...] list on gnubg rows (mover = row 1)."""
    opp, me = list(rows[0]), list(rows[1])
    for src, dst in zip(move[::2], move[1::2], strict=True):
        assert me[src] > 0, (rows, move)
        me[src] -= 1
        if dst >= 0:
            me[dst] += 1
            # The mover's point dst+1 is the opponent's point 24-dst (row index 23-dst).
            if opp[23 - dst] == 1:
                opp[23 - dst] = 0
                opp[24] += 1
            assert opp[23 - dst] == 0, (rows, move)
    return [opp, me]


def _dice_idx(d1: int, d2: int) -> int:
    hi, lo = max(d1, d2), min(d1, d2)
    return int(np.flatnonzero((rules.DICE[:, 0] == hi) & (rules.DICE[:, 1] == lo))[0])


def _flip_np(board: np.ndarray) -> np.ndarray:
    return -np.asarray(board)[rules.FLIP_IDX]


@pytest.fixture(scope="module")
def random_play() -> tuple[list[Decision], list[np.ndarray]]:
    """Decisions with >= 2 plays reached by random play, and the afterstates it made."""
    rng = random.Random(20261128)
    rows = _start()
    decisions: list[Decision] = []
    afterstates: list[np.ndarray] = []  # our layout, mover's view after its play
    while len(decisions) < NUM_DECISIONS:
        d1, d2 = rng.randint(1, 6), rng.randint(1, 6)
        keys = gnubg.moves(rows, d1, d2)
        if not keys:  # no legal play: the turn passes
            rows = [rows[1], rows[0]]
            continue
        if len(keys) > 1:
            chosen = _apply(rows, list(gnubg.pub_best_move(rows, d1, d2)))
            decisions.append(Decision(rows, d1, d2, len(keys), gnubg.key_of_board(chosen)))
        after = [list(r) for r in gnubg.board_from_position_key(rng.choice(keys))]
        afterstates.append(from_gnubg(after))
        rows = [after[1], after[0]]
        if sum(rows[0]) == 0:  # the mover bore off its last checker
            rows = _start()
    return decisions, afterstates


def test_start_position_score() -> None:
    start = rules.start_board()
    ours = float(pubeval.pubeval_score(start))
    theirs = gnubg.pub_eval_score(to_gnubg(np.asarray(start)))
    assert ours == pytest.approx(6.84055, abs=1e-4)
    assert ours == pytest.approx(theirs, abs=1e-4)


def test_inputs_follow_setx() -> None:
    board = np.zeros(rules.BOARD_SIZE, dtype=np.int32)
    board[[0, 3, 8, 23, rules.BAR, rules.OFF]] = [1, 2, 6, 3, 1, 2]  # mover: points 1, 4, 9, 24
    board[[5, 10, rules.OPP_BAR, rules.OPP_OFF]] = [-1, -2, -3, -9]  # opponent blot on point 6
    x = np.asarray(pubeval.pubeval_inputs(jnp.asarray(board)))
    expected = np.zeros(pubeval.NUM_INPUTS, dtype=np.float32)

    def group(point: int) -> int:
        return 5 * (24 - point)  # setx() runs from point 24 down to point 1

    expected[group(24) + 2] = expected[group(24) + 3] = 1.0  # exactly 3
    expected[group(9) + 2], expected[group(9) + 4] = 1.0, 1.5  # 6 checkers: (6 - 3) / 2
    expected[group(4) + 2] = 1.0
    expected[group(1) + 1] = 1.0
    expected[group(6) + 0] = 1.0  # an opponent blot; its 2-point on 11 is not an input
    expected[120] = 1.5  # three opponent checkers on the bar / 2
    expected[121] = 2.0 / 15.0
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-7)


def test_is_race() -> None:
    board = np.zeros(rules.BOARD_SIZE, dtype=np.int32)
    board[[0, 4]] = [10, 5]
    board[[5, 20]] = [-7, -8]
    assert bool(pubeval.is_race(jnp.asarray(board)))
    board[5], board[3] = -6, -1  # an opponent checker behind the mover's 5-point
    assert not bool(pubeval.is_race(jnp.asarray(board)))
    board[3], board[5], board[rules.OPP_BAR] = 0, -6, -1
    assert not bool(pubeval.is_race(jnp.asarray(board)))
    assert not bool(pubeval.is_race(rules.start_board()))
    # The opponent has borne off all 15: no contact is possible, as gnubg counts it.
    board[:] = 0
    board[[rules.BAR, 20, rules.OFF, rules.OPP_OFF]] = [1, 2, 12, -15]
    assert bool(pubeval.is_race(jnp.asarray(board)))


def test_terminal_afterstate_scores_highest() -> None:
    done = np.zeros(rules.BOARD_SIZE, dtype=np.int32)
    done[rules.OFF], done[0] = 15, -15
    assert pubeval.pubeval_score(jnp.asarray(done)) == np.float32(pubeval.TERMINAL_SCORE)
    # A play that keeps a checker back loses to bearing off the last one, however
    # good its layout; a masked-out row is never chosen whatever its score.
    kept = done.copy()
    kept[rules.OFF], kept[5] = 14, 1
    plays = rules.Plays(
        boards=jnp.asarray(np.stack([kept, kept, done])),
        steps=jnp.full((3, rules.MAX_STEPS_PER_PLAY), rules.NO_STEP),
        mask=jnp.asarray([True, True, False]),
        num_plays=jnp.asarray(2),
        overflow=jnp.asarray(False),
    )
    assert int(pubeval.pubeval_choose(plays)) == 0
    plays = plays._replace(mask=jnp.asarray([True, False, True]))
    assert int(pubeval.pubeval_choose(plays)) == 2


def test_scores_match_gnubg(random_play: tuple[list[Decision], list[np.ndarray]]) -> None:
    _, afterstates = random_play
    live = np.stack([a for a in afterstates if a[rules.OFF] < rules.NUM_CHECKERS])
    assert len(live) >= 1000
    ours = np.asarray(jax.jit(jax.vmap(pubeval.pubeval_score))(jnp.asarray(live)))
    race = np.asarray(jax.jit(jax.vmap(pubeval.is_race))(jnp.asarray(live)))
    theirs = np.array([gnubg.pub_eval_score(to_gnubg(_flip_np(a))) for a in live], dtype=np.float64)
    num_race = int(race.sum())
    print(f"\nscores compared: {len(live)} ({num_race} race, {len(live) - num_race} contact)")
    assert num_race >= 100 and len(live) - num_race >= 1000
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3)


_is_race = jax.jit(pubeval.is_race)


def _synthetic_board(rng: np.random.Generator, race: bool) -> np.ndarray:
    """A random (not necessarily reachable) board: stacks of any height, bars, checkers off."""
    while True:
        board = np.zeros(rules.BOARD_SIZE, dtype=np.int32)
        if race:
            # Half the time the mover keeps its far points (idx 21..23), which a
            # race rarely allows, so that their inputs get exercised too.
            split = int(rng.integers(1, 25) if rng.random() < 0.5 else rng.integers(22, 25))
            mine, theirs = np.arange(split), np.arange(split, rules.NUM_POINTS)
        else:
            mine = np.arange(rules.NUM_SOURCES)  # points and the bar
            theirs = np.append(np.arange(rules.NUM_POINTS), rules.OPP_BAR)
        n_mine = int(rng.integers(1, rules.NUM_CHECKERS + 1))
        n_theirs = int(rng.integers(0, rules.NUM_CHECKERS + 1)) if len(theirs) else 0
        for n, points, sign in ((n_mine, mine, 1), (n_theirs, theirs, -1)):
            free = points[board[points] == 0]
            if n == 0 or len(free) == 0:
                continue
            spots = rng.choice(free, size=int(rng.integers(1, min(n, len(free)) + 1)), replace=False)
            board[spots] = sign * rng.multinomial(n - len(spots), rng.dirichlet(np.ones(len(spots))))
            board[spots] += sign
        board[rules.OFF] = rules.NUM_CHECKERS - n_mine
        board[rules.OPP_OFF] = -(rules.NUM_CHECKERS - n_theirs)
        if board[rules.OFF] < rules.NUM_CHECKERS - np.maximum(board[: rules.NUM_SOURCES], 0).sum():
            continue  # a mover checker was left unplaced (no free point)
        if bool(_is_race(jnp.asarray(board))) == race:
            return board


def test_scores_match_gnubg_on_synthetic_boards() -> None:
    """Every input of both weight vectors is exercised, to prove all 244 weights to the last digit."""
    rng = np.random.default_rng(7)
    score = jax.jit(jax.vmap(pubeval.pubeval_score))
    inputs = jax.jit(jax.vmap(pubeval.pubeval_inputs))
    for race, weights in ((True, pubeval.RACE_WEIGHTS), (False, pubeval.CONTACT_WEIGHTS)):
        boards = np.stack([_synthetic_board(rng, race) for _ in range(2000)])
        ours = np.asarray(score(jnp.asarray(boards)))
        theirs = np.array([gnubg.pub_eval_score(to_gnubg(_flip_np(b))) for b in boards])
        # Both sides sum in float32 (seen: 4e-6 apart at most); a slip of 1e-5 in
        # any weight (its last digit) moves some score by at least 1e-5.
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=8e-6)
        used = np.any(np.asarray(inputs(jnp.asarray(boards))) != 0, axis=0)
        # In a race nobody is on the bar, so input 120 never fires (and wr[120] is 0).
        assert np.all(used | (weights == 0)), np.flatnonzero(~used & (weights != 0))


def _choose_batch(cfg: rules.MoveGenConfig) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, ...]]:
    """Jitted: plays of a batch, pubeval's choice (pre-move race flag) and its score."""

    @jax.jit
    def run(boards: jax.Array, dice: jax.Array) -> tuple[jax.Array, ...]:
        plays = jax.vmap(lambda b, d: rules.legal_plays(b, d, cfg))(boards, dice)
        race = jax.vmap(pubeval.is_race)(boards)
        idx = jax.vmap(pubeval.pubeval_choose)(plays, race)
        idx_inferred = jax.vmap(pubeval.pubeval_choose)(plays)
        chosen = jnp.take_along_axis(plays.boards, idx[:, None, None], axis=1)[:, 0]
        best = jax.vmap(pubeval.pubeval_score)(chosen, race)
        return chosen, best, race, plays.num_plays, plays.overflow, idx != idx_inferred

    return run


def test_move_choice_matches_gnubg(random_play: tuple[list[Decision], list[np.ndarray]]) -> None:
    decisions, _ = random_play
    t0 = time.perf_counter()
    boards = np.stack([from_gnubg(d.rows) for d in decisions])
    dice = np.array([_dice_idx(d.d1, d.d2) for d in decisions], dtype=np.int32)
    doubles = rules.DICE[dice, 0] == rules.DICE[dice, 1]
    chosen = np.zeros_like(boards)
    best = np.zeros(len(decisions), np.float32)
    race = np.zeros(len(decisions), bool)
    count = np.zeros(len(decisions), np.int64)
    overflow = np.zeros(len(decisions), bool)
    inferred_differs = np.zeros(len(decisions), bool)
    for sel, cfg, chunk in (
        (np.flatnonzero(~doubles), NON_DOUBLES_CFG, CHUNK),
        (np.flatnonzero(doubles), DOUBLES_CFG, DOUBLES_CHUNK),
    ):
        run = _choose_batch(cfg)
        for k in range(0, len(sel), chunk):
            rows = sel[k : k + chunk]
            pad = np.resize(rows, chunk)  # fixed shapes: one compile per config
            out = [np.asarray(o) for o in run(jnp.asarray(boards[pad]), jnp.asarray(dice[pad]))]
            n = len(rows)
            chosen[rows], best[rows], race[rows] = out[0][:n], out[1][:n], out[2][:n]
            count[rows], overflow[rows], inferred_differs[rows] = out[3][:n], out[4][:n], out[5][:n]
    t_ours = time.perf_counter() - t0

    assert not overflow.any()
    assert np.array_equal(count, [d.num_plays for d in decisions])  # same plays as gnubg

    # Our score of gnubg's choice under the same (pre-move) race flag, to tell ties.
    theirs = np.stack([from_gnubg(gnubg.board_from_position_key(d.gnubg_key)) for d in decisions])
    their_score = np.asarray(jax.jit(jax.vmap(pubeval.pubeval_score))(jnp.asarray(theirs), jnp.asarray(race)))
    same = np.array(
        [gnubg.key_of_board(to_gnubg(c)) == d.gnubg_key for c, d in zip(chosen, decisions, strict=True)]
    )
    tie = ~same & (np.abs(best - their_score) <= 1e-4 * np.maximum(1.0, np.abs(best)))
    mismatch = ~same & ~tie
    print(
        f"\nmove choice: {len(decisions)} decisions ({int(doubles.sum())} doubles, {int(race.sum())} race),"
        f" {int(mismatch.sum())} mismatches, {int(tie.sum())} ties,"
        f" {int(inferred_differs.sum())} differ with race=None, ours {t_ours:.1f}s"
    )
    assert len(decisions) >= 3000
    assert int(mismatch.sum()) == 0, np.flatnonzero(mismatch)[:10]
