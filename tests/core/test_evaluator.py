"""Values with the bear-off database attached (`bgai.core.evaluator`, `bgai.agent.playing`): exact
in the database's positions everywhere a value is taken (afterstates, targets, search), the
network's elsewhere, and never part of the weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgai import bearoff_file
from bgai.agent import EpisodeValues, playing
from bgai.bench.bearoff import race_board, random_races
from bgai.config import Config, JaxConfig, ValuesConfig
from bgai.core import bearoff, rules
from bgai.core.afterstate import afterstate_values
from bgai.core.evaluator import BEAROFF, PACK_FROM, net_outputs, weights_only, with_bearoff
from bgai.core.network import OUTCOME_POINTS, BgNet, init_params
from bgai.core.targets import afterstate_distribution, outcome_distribution

NET = BgNet((16,))


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    return bearoff_file.load_or_build(tmp_path_factory.mktemp("bearoff"))


@pytest.fixture(scope="module")
def params() -> dict:
    return init_params(NET, jax.random.key(3))


def roll(a: int, b: int) -> int:
    return [tuple(d) for d in rules.DICE.tolist()].index((a, b))


def contact_boards() -> np.ndarray:
    """Positions with contact: the start, and the start after a 3-1 (never in the database)."""
    start = np.asarray(rules.start_board())
    after = np.asarray(rules.legal_plays(jnp.asarray(start), jnp.int32(roll(3, 1))).boards[0])
    return np.stack([start, after]).astype(np.int32)


def test_database_positions_get_exact_values_the_rest_the_networks(params: dict, tables: tuple) -> None:
    races = random_races(5, 64).astype(np.int32)
    boards = jnp.asarray(np.concatenate([races, contact_boards()]))
    inside = np.asarray(bearoff.in_database(boards))
    assert inside[:64].all() and not inside[64:].any()
    variables = with_bearoff(params, *tables)
    steps_plain, logits_plain = net_outputs(NET.apply, params, boards)
    steps, logits = net_outputs(NET.apply, variables, boards)
    exact = np.asarray(bearoff.race_outcomes(*tables, jnp.asarray(races)))
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(logits))[:64], exact, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(logits)[64:], np.asarray(logits_plain)[64:])
    np.testing.assert_array_equal(np.asarray(steps), np.asarray(steps_plain))  # the policy is the net's
    # the targets' value function goes through the same door
    dist = np.asarray(outcome_distribution(NET.apply, variables, boards))
    np.testing.assert_allclose(dist[:64], exact, atol=1e-6)


@pytest.mark.parametrize("races_in", [0, 10, 100, 300])
def test_a_large_batch_gets_the_same_values_whatever_share_is_in_the_database(
    params: dict, tables: tuple, races_in: int
) -> None:
    """400 boards (`PACK_FROM` or more): the database rows are looked up packed into 50 rows, else
    100, else all 400; the values are the same as row by row."""
    assert PACK_FROM <= 400
    rng = np.random.default_rng(races_in)
    races = random_races(7, 300).astype(np.int32)[:races_in]
    contact = np.resize(contact_boards(), (400 - races_in, rules.BOARD_SIZE))
    boards = jnp.asarray(rng.permutation(np.concatenate([races, contact])))
    inside = np.asarray(bearoff.in_database(boards))
    assert inside.sum() == races_in
    variables = with_bearoff(params, *tables)
    _, logits = jax.jit(lambda v, b: net_outputs(NET.apply, v, b))(variables, boards)
    _, plain = net_outputs(NET.apply, params, boards)
    exact = np.asarray(bearoff.race_outcomes(*tables, boards))
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(logits))[inside], exact[inside], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(logits)[~inside], np.asarray(plain)[~inside])


def test_a_bear_off_play_is_chosen_by_the_exact_race_value(params: dict, tables: tuple) -> None:
    """A bear-off race (the mover's ace and 6 points against two checkers on the opponent's ace
    point), rolled 2-1: every afterstate's value is minus the opponent's exact equity there, so the
    greedy choice is the database's best play, and the 1-ply targets see the same values."""
    board = jnp.asarray(race_board(np.array([1, 0, 0, 0, 0, 3]), np.array([2, 0, 0, 0, 0, 0])), jnp.int32)
    plays = rules.legal_plays(board, jnp.int32(roll(2, 1)))
    variables = with_bearoff(params, *tables)
    values = np.asarray(afterstate_values(NET.apply, variables, plays))
    legal = np.asarray(plays.mask)
    after = np.asarray(plays.boards)[legal]
    opp = np.asarray(bearoff.race_outcomes(*tables, jnp.asarray(rules.flip(jnp.asarray(after)))))
    np.testing.assert_allclose(values[legal], -(opp @ np.asarray(OUTCOME_POINTS)), atol=1e-5)
    # the mover's own distributions after those plays, as the 1-ply targets take them
    dist = np.asarray(afterstate_distribution(NET.apply, variables, jnp.asarray(after)))
    np.testing.assert_allclose(dist @ np.asarray(OUTCOME_POINTS), values[legal], atol=1e-5)


def test_playing_attaches_the_database_only_when_configured(params: dict, tmp_path: Path) -> None:
    on = Config(jax=JaxConfig(bearoff_dir=str(tmp_path)))
    off = dataclasses.replace(on, values=ValuesConfig(bearoff=False))
    assert playing(off, params) is params and playing(on, None) is None
    variables = playing(on, params)
    assert (tmp_path / bearoff_file.FILE_NAME).exists()  # built once, kept for the next process
    assert set(variables) == {"params", BEAROFF} and variables[BEAROFF]["rolls"].shape == (
        bearoff.NUM_POSITIONS,
        bearoff.MAX_ROLLS,
    )
    assert playing(on, variables).keys() == variables.keys()  # idempotent
    assert set(playing(off, variables)) == {"params"} == set(weights_only(variables))


def test_episode_values_take_the_database(params: dict, tmp_path: Path) -> None:
    cfg = Config(
        model=dataclasses.replace(Config().model, hidden=(16,)), jax=JaxConfig(bearoff_dir=str(tmp_path))
    )
    races = random_races(6, 8).astype(np.int8)
    values = EpisodeValues(cfg, NET).values(params, races)
    rolls, first = bearoff_file.load_or_build(tmp_path)
    exact = np.asarray(bearoff.race_outcomes(rolls, first, jnp.asarray(races.astype(np.int32))))
    np.testing.assert_allclose(values, exact, atol=1e-6)
    plain = EpisodeValues(dataclasses.replace(cfg, values=ValuesConfig(bearoff=False)), NET).values(
        params, races
    )
    assert np.abs(plain - exact).max() > 0.05  # an untrained net is far from them
