"""Value targets: TD(lambda) returns against their unrolled definition, the exact 1-ply and
2-ply distributions and the 1-ply and 2-ply players against a slow roll-by-roll reference."""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgai.core import afterstate, network, players, rules, targets
from bgai.core.game import GameState

MG = rules.MoveGenConfig(max_plays=64, frontier2=48, frontier3=96)
NET = network.BgNet((8,))


def _unrolled(values: np.ndarray, last: int, lam: float) -> np.ndarray:
    """z_t = (1-lam) sum_n lam^(n-1) F^n V_{t+n} + lam^N F^N onehot(last), N = T-1-t, F = flip."""
    t_len = len(values)
    out = np.zeros((t_len, 6))
    final = np.eye(6)[last]
    for t in range(t_len):
        n_max = t_len - 1 - t
        z = np.zeros(6)
        for n in range(1, n_max + 1):
            v = values[t + n]
            z += (1 - lam) * lam ** (n - 1) * (targets.flip_outcome(v) if n % 2 else v)
        z += lam**n_max * (targets.flip_outcome(final) if n_max % 2 else final)
        out[t] = z
    return out


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.7, 1.0])
def test_td_lambda_equals_its_unrolled_definition(lam: float) -> None:
    rng = np.random.default_rng(0)
    values = [rng.dirichlet(np.ones(6), size=n) for n in (1, 2, 7, 30)]
    last = [0, 1, 2, 0]
    got = targets.td_lambda_targets(values, last, lam)
    for v, lo, g in zip(values, last, got, strict=True):
        assert g.shape == v.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, _unrolled(v, lo, lam), atol=1e-6)
        np.testing.assert_allclose(g.sum(-1), 1.0, atol=1e-5)  # still distributions


def test_lambda_one_is_the_final_outcome_of_each_mover() -> None:
    v = np.full((5, 6), 1 / 6)
    (z,) = targets.td_lambda_targets([v], [1], 1.0)  # the last mover won a gammon
    assert z.argmax(-1).tolist() == [1, 4, 1, 4, 1] and np.allclose(z.max(-1), 1.0)


def test_td_zero_bootstraps_on_the_next_position_only() -> None:
    v = np.eye(6)[[0, 3, 5]]  # V(s_0) is never used; V(s_1) = lose single, V(s_2) = lose bg
    z = targets.td_lambda_targets([v], [0], 0.0)[0]
    np.testing.assert_allclose(z[0], np.eye(6)[0])  # the opponent loses single: we win single
    np.testing.assert_allclose(z[1], np.eye(6)[2])  # it loses a backgammon: we win one
    np.testing.assert_allclose(z[2], np.eye(6)[0])  # the last row: the final outcome


def test_lambda_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="lambda"):
        targets.td_lambda_targets([np.ones((2, 6)) / 6], [0], 1.5)


@jax.jit
def _dist(params: object, after: jax.Array) -> jax.Array:
    return targets.afterstate_distribution(network.BgNet((8,)).apply, params, after)


def _after_dist(net: network.BgNet, params: object, after: np.ndarray) -> jax.Array:
    assert tuple(net.hidden) == (8,)
    return _dist(params, jnp.asarray(after))


@pytest.fixture(scope="module")
def net_params() -> tuple[network.BgNet, object]:
    net = network.BgNet((8,))
    return net, network.init_params(net, jax.random.key(3))


def _boards() -> np.ndarray:
    """A start position, a mid-game contact position, a bear-off race, and a last checker that
    every roll bears off against an opponent who has borne off none (mover's view)."""
    start = np.asarray(rules.start_board())
    race = np.zeros(28, np.int32)
    race[[0, 1, 2, 4]] = [3, 2, 2, 1]
    race[rules.OFF] = 7
    race[[23, 22, 20]] = [-4, -4, -2]
    race[rules.OPP_OFF] = -5
    mid = start.copy()
    mid[[5, 7]] -= 1
    mid[[3, 4]] += 1
    last = np.zeros(28, np.int32)
    last[0], last[rules.OFF], last[23] = 1, 14, -15
    return np.stack([start, mid, race, last]).astype(np.int32)


_legal_plays = jax.jit(rules.legal_plays, static_argnums=2)
_win_points = jax.jit(rules.win_points)
_flip = jax.jit(rules.flip)


@jax.jit
def _dist(params: object, after: jax.Array) -> jax.Array:
    return targets.afterstate_distribution(NET.apply, params, after)


def _reference_one_ply(params: object, board: np.ndarray) -> np.ndarray:
    """Roll by roll: the best play by 0-ply equity, its afterstate distribution, weighted."""
    total = np.zeros(6)
    for r in range(rules.NUM_ROLLS):
        plays = jax.tree.map(np.asarray, _legal_plays(jnp.asarray(board), jnp.int32(r), MG))
        # every slot in one compiled shape; the empty ones are left out
        dist = np.asarray(_dist(params, jnp.asarray(plays.boards)), np.float64)[np.flatnonzero(plays.mask)]
        eq = dist @ np.asarray(network.OUTCOME_POINTS)
        total += rules.DICE_PROBS[r] * dist[int(np.argmax(eq))]
    return total


def test_one_ply_distribution_equals_the_roll_by_roll_reference() -> None:
    params = network.init_params(NET, jax.random.key(3))
    boards = _boards()
    one_ply = jax.jit(lambda p, b: targets.one_ply_distribution(NET.apply, p, b, MG, eval_slots=16))
    got = np.asarray(one_ply(params, jnp.asarray(boards)))
    for b, g in zip(boards, got, strict=True):
        np.testing.assert_allclose(g, _reference_one_ply(params, b), atol=1e-5)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got[3], np.eye(6)[1], atol=1e-6)  # the last checker: a sure gammon


def test_one_ply_player_plays_the_best_candidate_by_the_reference() -> None:
    params = network.init_params(NET, jax.random.key(3))
    m = 3
    decide = players.lookahead_decider(NET.apply, MG, 1, candidates=m, eval_slots=16)
    boards = _boards()[:3]
    dice = np.array([3, 10, 7], np.int32)  # two non-doubles and a double
    plays = jax.jit(rules.legal_plays_batch, static_argnums=2)(jnp.asarray(boards), jnp.asarray(dice), MG)
    zero = jnp.zeros(3, jnp.int32)
    states = GameState(jnp.asarray(boards), jnp.asarray(dice), zero, jnp.zeros(3, bool), zero, zero)
    jitted = jax.jit(decide)
    action, target = jitted(params, jax.random.key(0), states, plays)
    zero_ply = np.asarray(jax.jit(partial(afterstate.afterstate_values, NET.apply))(params, plays))
    want = []
    for i in range(3):
        top = np.argsort(-zero_ply[i], kind="stable")[:m]  # the candidates: best by 0-ply
        value = []
        for a in np.asarray(plays.boards[i])[top]:
            won = int(_win_points(jnp.asarray(a)))
            opp = _reference_one_ply(params, np.asarray(_flip(jnp.asarray(a))))
            value.append(won if won else -float(opp @ np.asarray(network.OUTCOME_POINTS)))
        want.append(top[int(np.argmax(value))])
        assert int(action[i]) == want[i]
        assert float(target[i, int(action[i])]) == 1.0
    # a done row (the other player's turn in a paired match, a finished game) is not searched:
    # it gets its best 0-ply play, and the rows to decide are still scored right
    done = jnp.asarray([False, True, False])
    action, _ = jitted(params, jax.random.key(0), dataclasses.replace(states, done=done), plays)
    assert [int(a) for a in action] == [want[0], int(np.argmax(zero_ply[1])), want[2]]


def _reference_after(params: object, after: np.ndarray, plies: int) -> np.ndarray:
    """The mover's distribution after playing to `after`: exact when it ends the game, else the
    flipped opponent's `plies` distribution (0: the net; 1: `_reference_one_ply`)."""
    won = int(_win_points(jnp.asarray(after)))
    if won:
        return np.eye(6)[won - 1]
    if plies == 0:
        return np.asarray(_dist(params, jnp.asarray(after)[None]), np.float64)[0]
    return targets.flip_outcome(_reference_one_ply(params, np.asarray(_flip(jnp.asarray(after)))))


def _reference_two_ply(params: object, board: np.ndarray) -> np.ndarray:
    """gnubg's 2-ply, roll by roll: the best play by 0-ply, that position valued at 1-ply."""
    total = np.zeros(6)
    for r in range(rules.NUM_ROLLS):
        plays = jax.tree.map(np.asarray, _legal_plays(jnp.asarray(board), jnp.int32(r), MG))
        legal = plays.boards[np.flatnonzero(plays.mask)]
        eq = np.asarray(_dist(params, jnp.asarray(plays.boards)))[np.flatnonzero(plays.mask)]
        best = legal[int(np.argmax(eq @ np.asarray(network.OUTCOME_POINTS)))]
        total += rules.DICE_PROBS[r] * _reference_after(params, best, 1)
    return total


def test_two_ply_distribution_equals_the_roll_by_roll_reference() -> None:
    params = network.init_params(NET, jax.random.key(3))
    boards = _boards()[[1, 2]]  # a contact position and a bear-off race
    two_ply = jax.jit(lambda p, b: targets.n_ply_distribution(NET.apply, p, b, MG, 2, eval_slots=16))
    got = np.asarray(two_ply(params, jnp.asarray(boards)))
    for b, g in zip(boards, got, strict=True):
        np.testing.assert_allclose(g, _reference_two_ply(params, b), atol=1e-5)
    # and it is not the 1-ply value (the lookahead is really deeper)
    one = np.asarray(
        jax.jit(lambda p, b: targets.one_ply_distribution(NET.apply, p, b, MG, 16))(params, boards)
    )
    assert np.abs(one - got).max() > 1e-4


def test_two_ply_player_plays_the_best_finalist_by_the_reference() -> None:
    """Three candidates by 0-ply, the two best of them by 1-ply, the better of those by 2-ply."""
    params = network.init_params(NET, jax.random.key(3))
    decide = players.lookahead_decider(NET.apply, MG, 2, candidates=3, finalists=2, eval_slots=16)
    boards = _boards()[[1, 2]]
    dice = np.array([10, 3], np.int32)
    plays = jax.jit(rules.legal_plays_batch, static_argnums=2)(jnp.asarray(boards), jnp.asarray(dice), MG)
    zero = jnp.zeros(2, jnp.int32)
    states = GameState(jnp.asarray(boards), jnp.asarray(dice), zero, jnp.zeros(2, bool), zero, zero)
    action, _ = jax.jit(decide)(params, jax.random.key(0), states, plays)
    zero_ply = np.asarray(jax.jit(partial(afterstate.afterstate_values, NET.apply))(params, plays))
    points = np.asarray(network.OUTCOME_POINTS)
    for i in range(2):
        top = np.argsort(-zero_ply[i], kind="stable")[:3]
        after = np.asarray(plays.boards[i])
        one = [float(_reference_after(params, after[a], 1) @ points) for a in top]
        finalists = top[np.argsort(-np.asarray(one), kind="stable")[:2]]
        two = []
        for a in finalists:
            won = int(_win_points(jnp.asarray(after[a])))
            opp = _reference_two_ply(params, np.asarray(_flip(jnp.asarray(after[a]))))
            two.append(won if won else -float(opp @ points))
        assert int(action[i]) == finalists[int(np.argmax(two))]
