"""Cubeful money games in the compiled loop: the cube's rules, pairing, and scoring."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgai.core import cube, cubegame, network, players, rules
from bgai.core.selfplay import paired_points, paired_sides, play_batch

MG = rules.MoveGenConfig(max_plays=64, frontier2=48, frontier3=96)


def policy(double: bool, take: bool) -> cubegame.CubePolicy:
    def fixed(params: Any, boards: jax.Array, access: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jnp.full(access.shape, double), jnp.full(access.shape, take)

    return fixed


def games(
    cube_a: cubegame.CubePolicy,
    cube_b: cubegame.CubePolicy,
    pairs: int = 8,
    jacoby: bool = False,
    seed: int = 3,
):
    run = partial(
        cubegame.play_cubeful,
        players.pubeval_decider(),
        players.random_decider(),
        cube_a,
        cube_b,
        pairs=pairs,
        max_turns=400,
        movegen=MG,
        jacoby=jacoby,
    )
    return jax.tree.map(np.asarray, jax.jit(run)((None, None), jax.random.key(seed)))


def test_without_doubles_the_games_are_the_cubeless_paired_games() -> None:
    """Naive against naive: nobody doubles, so the points are the cubeless loop's, dice for dice."""
    naive = cubegame.naive_cube_policy()
    got = games(naive, naive)
    decide = paired_sides(players.pubeval_decider(), players.random_decider())
    traj = jax.jit(partial(play_batch, decide, batch=16, max_turns=400, movegen=MG, paired=True))(
        (None, None), jax.random.key(3)
    )
    assert got.finished.all() and np.asarray(traj.finished).all()
    np.testing.assert_array_equal(got.points, np.asarray(paired_points(traj.result)))
    assert (got.cube == 1).all() and got.doubles.sum() == got.takes.sum() == got.drops.sum() == 0
    assert (np.abs(got.points) > 1).any()  # gammons count without the Jacoby rule...
    jacoby = games(naive, naive, jacoby=True)
    np.testing.assert_array_equal(jacoby.points, np.sign(got.points))  # ...and not with it, cube unturned


def test_a_pass_ends_the_game_at_the_first_chance_to_double() -> None:
    """A doubles whenever it may and B passes: A wins 1 point in every game, at its first turn
    after the opening roll (no double before the opening roll is played)."""
    got = games(policy(True, True), policy(False, False))
    assert got.finished.all()
    np.testing.assert_array_equal(got.points, 1)
    np.testing.assert_array_equal(got.doubles, [[1, 0]] * 16)
    np.testing.assert_array_equal(got.drops, [[0, 1]] * 16)
    assert got.takes.sum() == 0 and (got.cube == 1).all()


def test_taken_cubes_change_hands_and_multiply_the_points() -> None:
    """Both double whenever they may and both take: the cube goes back and forth, doubling each
    turn after the opening (each turn the side on roll owns it) up to MAX_CUBE, and the game is
    worth the cubeless result times the cube."""
    got = games(policy(True, True), policy(True, True), pairs=4, seed=1)
    naive = games(cubegame.naive_cube_policy(), cubegame.naive_cube_policy(), pairs=4, seed=1)
    assert got.finished.all()
    turned = got.doubles.sum(1)
    np.testing.assert_array_equal(got.cube, 2**turned)
    assert (
        (turned >= 5).all()
        and (got.cube <= cubegame.MAX_CUBE).all()
        and (got.cube == cubegame.MAX_CUBE).any()
    )
    np.testing.assert_array_equal(got.points, naive.points * got.cube)
    np.testing.assert_array_equal(got.takes.sum(1), turned)
    assert (np.abs(got.doubles[:, 0] - got.doubles[:, 1]) <= 1).all()  # they alternate


def test_the_owner_alone_redoubles() -> None:
    """A always wants to double and B always takes but never doubles: A doubles once (after that
    B owns the cube and never gives it back), so every game ends at a cube of 2."""
    got = games(policy(True, True), policy(False, True))
    assert got.finished.all()
    np.testing.assert_array_equal(got.cube, 2)
    np.testing.assert_array_equal(got.doubles, [[1, 0]] * 16)
    np.testing.assert_array_equal(got.takes, [[0, 1]] * 16)


def test_final_points_by_hand() -> None:
    result = jnp.asarray([2, -3, 1, 2, 0, 0])
    value = jnp.asarray([1, 4, 2, 1, 2, 8])
    passed_by = jnp.asarray([-1, -1, -1, -1, 0, 1])
    pass_value = jnp.asarray([0, 0, 0, 0, 2, 4])
    np.testing.assert_array_equal(
        cubegame.final_points(result, value, passed_by, pass_value, False), [2, -12, 2, 2, -2, 4]
    )
    np.testing.assert_array_equal(
        cubegame.final_points(result, value, passed_by, pass_value, True), [1, -12, 2, 1, -2, 4]
    )


def test_the_models_cube_policy_follows_its_decision() -> None:
    from bgai.bench.cubes import probabilities

    net = network.BgNet((8,))
    params = network.init_params(net, jax.random.key(5))
    boards = jnp.stack([rules.start_board()] * 3)
    access = jnp.asarray([cube.CENTRED, cube.OWNED, cube.UNAVAILABLE])
    double, take = cubegame.model_cube_policy(net.apply)(params, boards, access)
    # at 0-ply: Janowski's decision (`decide`) from the net's probabilities
    p = jnp.asarray(probabilities(net.apply, params, np.asarray(boards)))
    d = cube.decide(p, cube.cube_efficiency(boards), access)
    np.testing.assert_array_equal(double, d.double)
    np.testing.assert_array_equal(take, d.take)
    assert not bool(double[2])  # no access, no double
    zero = cube.model_decision(net.apply, params, boards, access, 0)
    np.testing.assert_allclose(zero.no_double, d.no_double, atol=1e-6)
    np.testing.assert_allclose(zero.double_take, d.double_take, atol=1e-6)
    mg = rules.MoveGenConfig(max_plays=32, frontier2=24, frontier3=48)
    double, take = jax.jit(cubegame.model_cube_policy(net.apply, 2, mg))(params, boards, access)
    d = cube.model_decision(net.apply, params, boards, access, 2, mg)
    np.testing.assert_array_equal(double, d.double)
    np.testing.assert_array_equal(take, d.take)
    assert not bool(double[2])
