"""Hand-built positions with exactly known legal plays, plus dice, flip and scoring.

Points are numbered 1..24 from the mover's side (point p is board idx p - 1);
the mover moves towards point 1 and bears off below it; 25 stands for the bar
and 0 for off in `after` moves.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgai.core import rules
from bgai.core.positionid import from_position_id
from bgai.core.rules import BAR, NO_STEP, NUM_CHECKERS, OFF, OPP_BAR, OPP_OFF

DICE_INDEX = {(int(a), int(b)): i for i, (a, b) in enumerate(rules.DICE)}

_legal_plays = jax.jit(rules.legal_plays, static_argnums=2)
CFG = rules.MoveGenConfig()


def make(mine: dict[int, int], theirs: dict[int, int], bar: int = 0, opp_bar: int = 0) -> np.ndarray:
    """A board from {point: count} for each side; checkers not placed are off."""
    b = np.zeros(rules.BOARD_SIZE, np.int32)
    for p, n in mine.items():
        b[p - 1] += n
    for p, n in theirs.items():
        assert b[p - 1] == 0, "both sides on one point"
        b[p - 1] -= n
    b[BAR], b[OPP_BAR] = bar, -opp_bar
    b[OFF] = NUM_CHECKERS - sum(mine.values()) - bar
    b[OPP_OFF] = -(NUM_CHECKERS - sum(theirs.values()) - opp_bar)
    assert b[OFF] >= 0 and b[OPP_OFF] <= 0
    return b


def after(board: np.ndarray, *moves: tuple[int, int]) -> tuple[int, ...]:
    """The afterstate of single-checker moves (from, to); 25 = bar, 0 = off."""
    b = board.copy()
    for f, t in moves:
        src = BAR if f == 25 else f - 1
        assert b[src] > 0
        b[src] -= 1
        if t <= 0:
            b[OFF] += 1
            continue
        if b[t - 1] == -1:
            b[t - 1] = 0
            b[OPP_BAR] -= 1
        assert b[t - 1] >= 0
        b[t - 1] += 1
    return tuple(int(x) for x in b)


def replay_steps(board: np.ndarray, steps: np.ndarray) -> tuple[int, ...]:
    """Apply step indices (source * 6 + die - 1, NO_STEP padded) to `board`."""
    b = board.copy()
    for s in steps:
        if s == NO_STEP:
            continue
        src, die = divmod(int(s), 6)
        dest = src - (die + 1)
        moves = (25 if src == BAR else src + 1, max(dest + 1, 0))
        b = np.asarray(after(b, moves), np.int32)
    return tuple(int(x) for x in b)


def plays(board: np.ndarray, d1: int, d2: int) -> set:
    """Our legal plays as a set of afterstate tuples (checking the Plays invariants)."""
    p = _legal_plays(jnp.asarray(board), DICE_INDEX[(max(d1, d2), min(d1, d2))], CFG)
    boards, steps, mask = np.asarray(p.boards), np.asarray(p.steps), np.asarray(p.mask)
    assert not bool(p.overflow)
    assert int(p.num_plays) == int(mask.sum()) >= 1
    assert mask[: int(p.num_plays)].all()
    out = {tuple(int(x) for x in r) for r in boards[mask]}
    assert len(out) == int(p.num_plays), "duplicate afterstates"
    n_steps = {int((s != NO_STEP).sum()) for s in steps[mask]}
    assert len(n_steps) == 1, "all plays use the same number of dice"
    for b, s in zip(boards[mask], steps[mask], strict=True):
        assert replay_steps(board, s) == tuple(int(x) for x in b)
        dice = sorted(int(x) % 6 + 1 for x in s if x != NO_STEP)
        if d1 == d2:
            assert set(dice) <= {d1}
        else:
            assert len(dice) == len(set(dice)) and set(dice) <= {d1, d2}
    return out


# ---------------------------------------------------------------- the bar


def test_must_enter_from_bar_first():
    b = make({13: 2, 6: 5}, {22: 2}, bar=1)  # the 3 enters on 22: blocked
    assert plays(b, 3, 1) == {
        after(b, (25, 24), (24, 21)),
        after(b, (25, 24), (13, 10)),
        after(b, (25, 24), (6, 3)),
    }


def test_blocked_entry_is_no_play():
    b = make({13: 5, 6: 5, 8: 3}, {19: 2, 20: 2}, bar=2)
    assert plays(b, 6, 5) == {tuple(int(x) for x in b)}


def test_second_checker_on_bar_cannot_enter():
    b = make({6: 5}, {23: 2}, bar=2)  # the 4 enters, the 2 is blocked
    assert plays(b, 4, 2) == {after(b, (25, 21))}


def test_enter_and_hit():
    b = make({6: 2}, {22: 1}, bar=1, opp_bar=1)
    hit_run, hit_stay = after(b, (25, 22), (22, 21)), after(b, (25, 22), (6, 5))
    assert plays(b, 3, 1) == {hit_run, hit_stay, after(b, (25, 24), (24, 21)), after(b, (25, 24), (6, 3))}
    assert hit_stay[21] == 1 and hit_stay[OPP_BAR] == -2
    assert hit_run[21] == 0 and hit_run[20] == 1 and hit_run[OPP_BAR] == -2


# ------------------------------------------------------------------ hitting


def test_hit_sends_blot_to_bar():
    b = make({24: 1}, {21: 1, 3: 2})
    got = plays(b, 3, 1)
    hit, quiet = after(b, (24, 21), (21, 20)), after(b, (24, 23), (23, 20))
    assert got == {hit, quiet}
    assert hit[OPP_BAR] == -1 and hit[20] == 0 and hit[19] == 1
    assert quiet[OPP_BAR] == 0 and quiet[20] == -1


def test_hit_adds_to_opponent_bar():
    b = make({8: 1, 20: 1}, {5: 1, 12: 2, 17: 2}, opp_bar=2)
    got = plays(b, 3, 3)  # 8/5*/2, then no 3 plays (20/17 blocked, no bearing off)
    assert got == {after(b, (8, 5), (5, 2))}
    (p,) = got
    assert p[OPP_BAR] == -3 and p[4] == 0


# ------------------------------------------------------- which dice must be used


def test_must_use_both_dice():
    b = make({24: 1}, {18: 2})  # 24/18 blocked, but 24/23/17 plays both
    got = plays(b, 6, 1)
    assert got == {after(b, (24, 23), (23, 17))}
    assert after(b, (24, 23)) not in got


def test_one_die_plays_excluded_when_both_playable():
    b = make({24: 1, 8: 1}, {17: 2, 2: 2})
    got = plays(b, 6, 1)
    assert got == {after(b, (24, 18), (8, 7)), after(b, (8, 7), (7, 1))}
    assert after(b, (24, 23)) not in got and after(b, (24, 18)) not in got


def test_larger_die_when_only_one_can_be_played():
    b = make({24: 1}, {17: 2})  # either die alone, never both: play the 6
    assert plays(b, 6, 1) == {after(b, (24, 18))}


def test_smaller_die_when_larger_cannot_be_played():
    b = make({24: 1}, {18: 2, 17: 2})
    assert plays(b, 6, 1) == {after(b, (24, 23))}


def test_doubles_play_as_many_as_possible():
    b = make({24: 1}, {12: 2})
    assert plays(b, 4, 4) == {after(b, (24, 20), (20, 16))}  # 2 of 4
    assert plays(b, 3, 3) == {after(b, (24, 21), (21, 18), (18, 15))}  # 3 of 4
    b2 = make({24: 1, 13: 1}, {16: 2, 5: 2})
    assert plays(b2, 4, 4) == {after(b2, (24, 20), (13, 9))}  # 2 of 4, two checkers


def test_doubles_all_four():
    b = make({24: 1, 13: 1}, {22: 2})
    # 13 off: a checker bears off only once both are home, which takes more than four 6s
    assert plays(b, 6, 6) == {
        after(b, (24, 18), (18, 12), (12, 6), (13, 7)),
        after(b, (24, 18), (18, 12), (13, 7), (7, 1)),
    }


# ------------------------------------------------------------------ bearing off


def test_bear_off_exact_and_overshoot():
    b = make({6: 1, 4: 1}, {20: 2})
    assert plays(b, 6, 4) == {after(b, (6, 0), (4, 0)), after(b, (6, 2), (4, 0))}


def test_overshoot_only_from_highest_point():
    b = make({5: 1, 2: 1}, {20: 2})
    got = plays(b, 6, 1)
    assert got == {after(b, (5, 0), (2, 1)), after(b, (5, 4), (4, 0))}
    assert after(b, (2, 0), (5, 4)) not in got  # 2/off with the 6 while 5 is occupied


def test_no_bear_off_with_a_checker_outside():
    b = make({9: 1, 3: 1}, {20: 2})
    got = plays(b, 2, 1)
    assert got == {after(b, (9, 7), (7, 6)), after(b, (9, 7), (3, 2)), after(b, (9, 8), (3, 1))}
    assert all(p[OFF] == b[OFF] for p in got)


def test_bear_off_after_coming_home_in_the_same_turn():
    b = make({7: 1, 3: 1}, {20: 2})
    assert plays(b, 3, 1) == {
        after(b, (7, 6), (6, 3)),
        after(b, (7, 6), (3, 0)),
        after(b, (7, 4), (3, 2)),
    }


def test_no_bear_off_with_a_checker_on_the_bar():
    b = make({1: 1}, {20: 2}, bar=1)  # the 5 cannot enter; after entering, 19 is not home
    assert plays(b, 6, 5) == {after(b, (25, 19), (19, 14))}


def test_last_checker_off_ends_the_turn():
    b = make({1: 1}, {20: 2})
    assert plays(b, 6, 5) == {after(b, (1, 0))}


# ------------------------------------------------------------------ no move


def test_no_legal_move_is_the_single_unchanged_play():
    b = make({8: 1}, {3: 2, 5: 2})
    p = _legal_plays(jnp.asarray(b), DICE_INDEX[(5, 3)], CFG)
    assert int(p.num_plays) == 1 and not bool(p.overflow)
    assert np.array_equal(np.asarray(p.boards)[0], b)
    assert (np.asarray(p.steps)[0] == NO_STEP).all()


def test_start_position_from_position_id():
    b = from_position_id("4HPwATDgc/ABMA")
    assert np.array_equal(b, np.asarray(rules.start_board()))
    # 6-5 from the start: 24/13 (run) or one of the splits/plays of both dice
    got = plays(b, 6, 5)
    assert after(b, (24, 18), (18, 13)) in got
    assert after(b, (13, 7), (13, 8)) in got
    assert all(sum(max(x, 0) for x in p[:24]) + p[BAR] + p[OFF] == NUM_CHECKERS for p in got)


# ------------------------------------------------------------------ scoring


def test_win_points():
    single = make({}, {20: 2, 1: 1})  # in the winner's home, but the loser bore some off
    assert int(rules.win_points(jnp.asarray(single))) == 1
    gammon = make({}, {20: 5, 13: 10})
    assert int(rules.win_points(jnp.asarray(gammon))) == 2
    bg_home = make({}, {20: 5, 13: 9, 3: 1})
    assert int(rules.win_points(jnp.asarray(bg_home))) == 3
    bg_bar = make({}, {20: 5, 13: 9}, opp_bar=1)
    assert int(rules.win_points(jnp.asarray(bg_bar))) == 3
    not_over = make({1: 1}, {20: 5, 13: 10})
    assert int(rules.win_points(jnp.asarray(not_over))) == 0
    assert int(rules.win_points(rules.start_board())) == 0


# ------------------------------------------------------------------ dice


def test_dice_table():
    assert rules.DICE.shape == (21, 2) and rules.NUM_ROLLS == 21
    assert len({tuple(map(int, d)) for d in rules.DICE}) == 21
    assert (rules.DICE[:, 0] >= rules.DICE[:, 1]).all() and rules.DICE.min() == 1 and rules.DICE.max() == 6
    assert np.isclose(rules.DICE_PROBS.sum(), 1.0)
    doubles = rules.DICE[:, 0] == rules.DICE[:, 1]
    assert doubles.sum() == 6
    np.testing.assert_allclose(rules.DICE_PROBS[doubles], 1 / 36)
    np.testing.assert_allclose(rules.DICE_PROBS[~doubles], 2 / 36)


def test_roll_dice_frequencies():
    n = 36_000
    keys = jax.random.split(jax.random.key(0), n)
    rolls = np.asarray(jax.jit(jax.vmap(rules.roll_dice))(keys))
    counts = np.bincount(rolls, minlength=rules.NUM_ROLLS)
    expected = n * rules.DICE_PROBS
    assert counts.sum() == n
    assert (np.abs(counts - expected) < 5 * np.sqrt(expected)).all(), counts


def test_opening_roll_never_a_double():
    keys = jax.random.split(jax.random.key(1), 2_000)
    rolls = np.asarray(jax.jit(jax.vmap(rules.opening_roll))(keys))
    d = rules.DICE[rolls]
    assert (d[:, 0] != d[:, 1]).all()
    assert set(rolls.tolist()) == set(rules.OPENING_ROLLS.tolist())


# ------------------------------------------------------------------ flip


def test_flip_involution_and_symmetric_start():
    s = rules.start_board()
    assert np.array_equal(np.asarray(rules.flip(s)), np.asarray(s))
    rng = np.random.default_rng(0)
    boards = jnp.asarray(rng.integers(-15, 16, size=(64, rules.BOARD_SIZE)), jnp.int32)
    assert np.array_equal(np.asarray(rules.flip(rules.flip(boards))), np.asarray(boards))
    b = make({24: 1, 6: 2}, {1: 3, 20: 1}, bar=1, opp_bar=2)
    f = np.asarray(rules.flip(jnp.asarray(b)))
    assert f[0] == -1 and f[23] == 3 and f[18] == -2 and f[BAR] == 2 and f[OPP_BAR] == -1
    assert f[OFF] == -b[OPP_OFF] and f[OPP_OFF] == -b[OFF]


def test_pip_counts_start():
    mine, theirs = rules.pip_counts(rules.start_board())
    assert int(mine) == int(theirs) == 167


@pytest.mark.parametrize("d", range(rules.NUM_ROLLS))
def test_start_plays_use_all_dice(d):
    b = np.asarray(rules.start_board())
    hi, lo = (int(x) for x in rules.DICE[d])
    p = _legal_plays(jnp.asarray(b), d, CFG)
    steps = np.asarray(p.steps)[np.asarray(p.mask)]
    assert ((steps != NO_STEP).sum(-1) == (4 if hi == lo else 2)).all()
    plays(b, hi, lo)
