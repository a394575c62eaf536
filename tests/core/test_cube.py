"""Cubeful money equity (`bgai.core.cube`): hand-computed cases, the model's limits, decisions."""

from __future__ import annotations

import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgai.core import cube, rules


def p5(*values: float) -> jax.Array:
    return jnp.asarray(values, jnp.float32)


def test_a_gammonless_position_by_hand() -> None:
    p = p5(0.7, 0, 0, 0, 0)  # W = L = 1: take point 0.5 / 2.5 = 0.2, cash point 2 / 2.5 = 0.8
    assert float(cube.dead_equity(p)) == pytest.approx(0.4)
    live = {s: float(cube.live_equity(p, s)) for s in (cube.CENTRED, cube.OWNED, cube.UNAVAILABLE)}
    assert live[cube.CENTRED] == pytest.approx(-1 + 2 * (0.7 - 0.2) / (0.8 - 0.2))
    assert live[cube.OWNED] == pytest.approx(-1 + 2 * 0.7 / 0.8)
    assert live[cube.UNAVAILABLE] == pytest.approx(-1 + 2 * (0.7 - 0.2) / (1 - 0.2))
    x = 0.68
    nd = (1 - x) * 0.4 + x * live[cube.CENTRED]
    dt = 2 * ((1 - x) * 0.4 + x * live[cube.UNAVAILABLE])
    d = cube.decide(p, x)
    assert float(d.no_double) == pytest.approx(nd, abs=1e-6)
    assert float(d.double_take) == pytest.approx(dt, abs=1e-6)
    assert bool(d.double) is (min(dt, 1.0) > nd) is True and bool(d.take)
    assert float(d.equity) == pytest.approx(dt, abs=1e-6)


def test_a_gammonish_position_by_hand() -> None:
    p = p5(0.6, 0.2, 0.05, 0.1, 0.02)
    w, lo = 1 + 0.25 / 0.6, 1 + 0.12 / 0.4
    tp, cp = (lo - 0.5) / (w + lo + 0.5), (lo + 1) / (w + lo + 0.5)
    got_w, got_l = cube.win_loss_values(p)
    assert (float(got_w), float(got_l)) == pytest.approx((w, lo))
    assert float(cube.take_point(got_w, got_l)) == pytest.approx(tp)
    assert float(cube.cash_point(got_w, got_l)) == pytest.approx(cp)
    dead = 2 * 0.6 - 1 + 0.25 - 0.12
    centred = -1 + 2 * (0.6 - tp) / (cp - tp)  # tp < 0.6 < cp
    unavailable = -1 + (w + 1) * (0.6 - tp) / (1 - tp)
    assert float(cube.cubeful_equity(p, 0.68, cube.CENTRED)) == pytest.approx(0.32 * dead + 0.68 * centred)
    assert float(cube.cubeful_equity(p, 0.68, cube.UNAVAILABLE)) == pytest.approx(
        0.32 * dead + 0.68 * unavailable
    )


def test_no_efficiency_is_the_cubeless_equity() -> None:
    rng = np.random.default_rng(0)
    six = rng.dirichlet(np.ones(6), size=50)
    from bgai.core.network import gnubg_probabilities

    p = gnubg_probabilities(jnp.asarray(six, jnp.float32))
    for state in (cube.CENTRED, cube.OWNED, cube.UNAVAILABLE):
        np.testing.assert_allclose(cube.cubeful_equity(p, 0.0, state), cube.dead_equity(p), atol=1e-6)
    # the cubeless equity is the six outcomes' points
    points = six @ np.array([1, 2, 3, -1, -2, -3])
    np.testing.assert_allclose(cube.dead_equity(p), points, atol=1e-5)


@pytest.mark.parametrize(("x", "take_point"), [(0.0, 0.25), (1.0, 0.2)])
def test_gammonless_take_points(x: float, take_point: float) -> None:
    """Without gammons the taker needs 25% with a dead cube (the classic figure) and 20% with a
    fully live one (it owns the cube afterwards)."""
    win = 1.0 - take_point
    below, above = p5(win - 1e-3, 0, 0, 0, 0), p5(win + 1e-3, 0, 0, 0, 0)
    assert bool(cube.decide(below, x).take) and not bool(cube.decide(above, x).take)
    assert float(cube.decide(p5(win, 0, 0, 0, 0), x).double_take) == pytest.approx(1.0, abs=1e-5)


def test_live_equity_is_continuous_with_its_end_points() -> None:
    """With the gammon rates fixed (W = 1.32, L = 1.28), live equity against P(win) runs from -L
    to W without a jump, never down."""
    wins = jnp.linspace(0.0, 1.0, 2001)
    rows = jnp.stack([wins, 0.3 * wins, 0.02 * wins, 0.24 * (1 - wins), 0.04 * (1 - wins)], -1)
    for state in (cube.CENTRED, cube.OWNED, cube.UNAVAILABLE):
        eq = np.asarray(cube.live_equity(rows, state))
        assert eq[0] == pytest.approx(-1.28, abs=1e-4) and eq[-1] == pytest.approx(1.32, abs=1e-4)
        assert np.abs(np.diff(eq)).max() < 0.01  # no jumps
        assert (np.diff(eq) >= -1e-6).all()  # more wins are never worth less
    jacoby = cube.live_equity(p5(0.95, 0.5, 0.1, 0.0, 0.0), cube.CENTRED, jacoby=True)
    assert float(jacoby) == pytest.approx(1.0)  # too good to double: a centred cube cashes 1


def test_owning_the_cube_is_worth_more() -> None:
    p = p5(0.55, 0.1, 0.0, 0.08, 0.0)
    by_state = [float(cube.cubeful_equity(p, 0.68, s)) for s in (cube.UNAVAILABLE, cube.CENTRED, cube.OWNED)]
    assert by_state == sorted(by_state) and by_state[0] < by_state[-1]


def test_decisions_and_beavers() -> None:
    weak = cube.decide(p5(0.5, 0.1, 0, 0.1, 0), 0.68)
    assert not bool(weak.double) and bool(weak.take)
    too_good = cube.decide(p5(0.97, 0.6, 0.02, 0.0, 0.0), 0.68)  # gammons: play on for them
    assert not bool(too_good.double) and float(too_good.no_double) > 1.0
    pass_ = cube.decide(p5(0.85, 0.05, 0, 0.01, 0), 0.68)
    assert bool(pass_.double) and not bool(pass_.take) and float(pass_.equity) == 1.0
    # a double the taker is favourite in: with beavers it redoubles, doubling the doubler's loss
    bad = cube.decide(p5(0.35, 0.05, 0, 0.1, 0), 0.68, beavers=True)
    plain = cube.decide(p5(0.35, 0.05, 0, 0.1, 0), 0.68)
    assert bool(bad.beaver) and float(bad.double_take) == pytest.approx(2 * float(plain.double_take))
    # an opponent who owns the cube leaves nothing to decide
    held = cube.decide(p5(0.9, 0, 0, 0, 0), 0.68, cube.UNAVAILABLE)
    assert not bool(held.double)
    # batched, with a cube state per row
    rows = jnp.stack([p5(0.7, 0, 0, 0, 0)] * 3)
    states = jnp.asarray([cube.CENTRED, cube.OWNED, cube.UNAVAILABLE])
    d = jax.jit(cube.decide)(rows, 0.68, states)
    assert d.double.tolist() == [True, False, False]  # owned: 0.7 is still below the cash point


def test_cube_efficiency_by_class() -> None:
    start = jnp.asarray(rules.start_board())
    assert float(cube.cube_efficiency(start)) == pytest.approx(0.68)

    def race(mine: dict[int, int]) -> jax.Array:
        b = np.zeros(28, np.int32)
        for i, n in mine.items():
            b[i] = n
        b[rules.OFF] = 15 - sum(mine.values())
        b[23], b[rules.OPP_OFF] = -5, -10
        return jnp.asarray(b)

    hundred = race({9: 10})  # 10 checkers on the 10-point: 100 pips
    few = race({0: 5})
    many = race({17: 15})  # 270 pips
    got = cube.cube_efficiency(jnp.stack([hundred, few, many]))
    np.testing.assert_allclose(got, [0.55 + 0.00125 * 100, 0.6, 0.7], atol=1e-6)


_KEPT = {cube.CENTRED: cube.CENTRED, cube.OWNED: cube.UNAVAILABLE, cube.UNAVAILABLE: cube.OWNED}


def _race_board() -> np.ndarray:
    race = np.zeros(28, np.int32)
    race[[0, 1, 2, 4]], race[rules.OFF] = [3, 2, 2, 1], 7
    race[[23, 22, 20]], race[rules.OPP_OFF] = [-4, -4, -2], -5
    return race


def _check_roll_by_roll(plies: int, boards: np.ndarray, states: list[int], mg: rules.MoveGenConfig) -> None:
    """`model_decision` at `plies` against a reference written roll by roll: the 21 rolls, our
    best 0-ply play to each, the opponent's own cube action at `plies` - 1 there (the cube as no
    double and as a take leave it), weighted by the rolls."""
    from bgai.core import network, targets

    net = network.BgNet((8,))
    params = network.init_params(net, jax.random.key(4 + plies))
    decide = partial(cube.model_decision, net.apply, movegen=mg, eval_slots=16)
    got = jax.jit(lambda p, b, c: decide(p, b, c, plies))(params, jnp.asarray(boards), jnp.asarray(states))
    legal = jax.jit(rules.legal_plays, static_argnums=2)
    after_equity = jax.jit(
        lambda p, a: targets.afterstate_distribution(net.apply, p, a) @ network.OUTCOME_POINTS
    )
    theirs = jax.jit(lambda p, a, c: decide(p, rules.flip(a)[None], c, plies - 1).equity[0])

    def leaf(after: np.ndarray, c: int) -> float:
        won = int(rules.win_points(jnp.asarray(after)))
        return float(won) if won else -float(theirs(params, jnp.asarray(after), jnp.int32(c)))

    for i, state in enumerate(states):
        nd = dt = 0.0
        for r in range(rules.NUM_ROLLS):
            plays = jax.tree.map(np.asarray, legal(jnp.asarray(boards[i]), jnp.int32(r), mg))
            live = np.flatnonzero(plays.mask)
            eq = np.asarray(after_equity(params, jnp.asarray(plays.boards)))[live]
            best = plays.boards[live[int(np.argmax(eq))]]
            nd += rules.DICE_PROBS[r] * leaf(best, _KEPT[state])
            dt += rules.DICE_PROBS[r] * 2 * leaf(best, cube.OWNED)
        assert float(got.no_double[i]) == pytest.approx(nd, abs=1e-5), i
        assert float(got.double_take[i]) == pytest.approx(dt, abs=1e-5), i
        assert bool(got.double[i]) == (state != cube.UNAVAILABLE and min(dt, 1.0) > nd)


def test_one_ply_decision_equals_the_roll_by_roll_reference() -> None:
    """At 1-ply the opponent's 0-ply cube action at the leaves."""
    start = np.asarray(rules.start_board())
    boards = np.stack([start, _race_board(), start]).astype(np.int32)
    mg = rules.MoveGenConfig(max_plays=64, frontier2=48, frontier3=96)
    _check_roll_by_roll(1, boards, [cube.CENTRED, cube.CENTRED, cube.OWNED], mg)


def test_two_ply_decision_is_one_ply_at_the_leaves() -> None:
    """At 2-ply the opponent's 1-ply cube action at the leaves, each of the three cube states;
    an opponent-owned cube leaves us nothing to double."""
    race = _race_board()
    boards = np.stack([race, np.asarray(rules.start_board()), race]).astype(np.int32)
    mg = rules.MoveGenConfig(max_plays=32, frontier2=24, frontier3=48)
    _check_roll_by_roll(2, boards, [cube.CENTRED, cube.OWNED, cube.UNAVAILABLE], mg)


def test_three_ply_decision_is_two_ply_at_the_leaves() -> None:
    """At 3-ply (the benchmark's deepest) the opponent's 2-ply cube action at the leaves: a race
    (few plays a roll, so the reference's 21 two-ply decisions stay cheap), centred and owned."""
    race = _race_board()
    mg = rules.MoveGenConfig(max_plays=16, frontier2=16, frontier3=16)
    _check_roll_by_roll(3, np.stack([race, race]).astype(np.int32), [cube.CENTRED, cube.OWNED], mg)


def test_lookahead_beyond_three_plies_is_refused() -> None:
    from bgai.core import network

    net = network.BgNet((8,))
    params = network.init_params(net, jax.random.key(0))
    board = jnp.asarray(rules.start_board())[None]
    with pytest.raises(ValueError, match="0 to 3 plies"):
        cube.model_decision(net.apply, params, board, cube.CENTRED, 4, rules.MoveGenConfig())
    with pytest.raises(ValueError, match="move generator"):
        cube.model_decision(net.apply, params, board, cube.CENTRED, 1)


@pytest.mark.skipif(not os.access("/usr/games/gnubg", os.X_OK), reason="needs Debian's gnubg")
def test_equal_to_gnubgs_cubeful_evaluation_of_its_own_probabilities() -> None:
    """gnubg's 0-ply cubeful money equity of a position (`evaluation ... cube on`), against ours
    from gnubg's own five probabilities, for a centred cube, one the side on roll owns and one
    the opponent owns: equal within 1e-5 (gnubg prints 6 decimals) on contact and race positions,
    the side on roll's best cube action included. Bear-offs are left out: gnubg takes their
    cubeful equity from its two-sided bear-off database, not from Janowski's formula."""
    from bgai.bench.decisions import DecisionSet
    from bgai.opponents.gnubg import GnubgExternal

    s = DecisionSet.load().head(150)
    keep = np.flatnonzero(s.classes < 2)[:100]  # contact and race
    states = {(True, True): cube.CENTRED, (True, False): cube.OWNED, (False, True): cube.UNAVAILABLE}
    probs, boards, cubes, want = [], [], [], []
    with GnubgExternal(0) as gnubg:
        for i in keep:
            for may, state in states.items():
                p, eq = gnubg.evaluate_cubeful(s.boards[i].astype(np.int32), 0, 1, may)
                probs.append(p)
                boards.append(s.boards[i])
                cubes.append(state)
                want.append(eq)
    b = jnp.asarray(np.stack(boards).astype(np.int32))
    d = cube.decide(jnp.asarray(np.stack(probs), jnp.float32), cube.cube_efficiency(b), jnp.asarray(cubes))
    np.testing.assert_allclose(np.asarray(d.equity), want, atol=1e-5)
    assert 0 < int(d.double.sum()) < len(want)  # doubles and no doubles both met
