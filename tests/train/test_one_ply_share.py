"""A share of 1-ply value targets (`training.value_target: one_ply`, `training.one_ply_share`):
the chosen rows carry the exact 1-ply expectation, the others their TD(lambda) return, and the
choice depends on the dice alone."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from bgai.agent import EpisodeValues, net_of, one_ply_rows
from bgai.bench.decisions import DEFAULT_SET
from bgai.config import Config, MoveGenConfig, ValuesConfig
from bgai.core.episodes import Episode
from bgai.core.network import init_params
from bgai.errors import ConfigError

BOARDS = np.load(DEFAULT_SET)["boards"]  # real positions, from any working directory


def _cfg(kind: str, share: float = 1.0) -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, hidden=(16,)),
        movegen=MoveGenConfig(max_plays=64, frontier2=48, frontier3=96),
        values=ValuesConfig(bearoff=False),
        training=dataclasses.replace(base.training, value_target=kind, one_ply_share=share),
    )


def _episodes(rng: np.random.Generator, lengths: list[int]) -> list[Episode]:
    return [
        Episode(
            boards=BOARDS[rng.integers(0, len(BOARDS), n)],
            dice=rng.integers(0, 21, n).astype(np.int8),
            mask=np.ones((n, 2), bool),
            steps=np.zeros((n, 2, 4), np.uint8),
            policy=np.full((n, 2), 0.5, np.float32),
            player=(np.arange(n) % 2).astype(np.int8),
            result=int(rng.choice([-3, -2, -1, 1, 2, 3])),
            model_version=0,
        )
        for n in lengths
    ]


@pytest.fixture(scope="module")
def params() -> dict:
    return init_params(net_of(_cfg("td")), jax.random.key(5))


def test_the_share_of_rows_follows_the_dice_only() -> None:
    rng = np.random.default_rng(0)
    dice = rng.integers(0, 21, 40_000).astype(np.int8)
    assert not one_ply_rows(dice, 0.0).any() and one_ply_rows(dice, 1.0).all()
    for share in (0.05, 0.3, 0.7):
        chosen = one_ply_rows(dice, share)
        assert abs(chosen.mean() - share) < 0.015, (share, chosen.mean())
        np.testing.assert_array_equal(chosen, one_ply_rows(dice.copy(), share))  # no state
    assert one_ply_rows(dice, 0.3).tolist() != one_ply_rows(rng.integers(0, 21, 40_000), 0.3).tolist()
    small, large = one_ply_rows(dice, 0.2), one_ply_rows(dice, 0.5)
    assert not (small & ~large).any(), "a larger share keeps every row of a smaller one"
    # consecutive rows share five of their six rolls, yet their choices are not alike
    both = one_ply_rows(dice, 0.3)
    assert abs((both[1:] & both[:-1]).mean() - 0.09) < 0.015


def test_chosen_rows_carry_the_one_ply_expectation_the_rest_their_td_return(params: dict) -> None:
    episodes = _episodes(np.random.default_rng(1), [7, 12, 5])
    mixed = EpisodeValues(_cfg("one_ply", 0.4), net_of(_cfg("td")))
    td = EpisodeValues(_cfg("td"), net_of(_cfg("td"))).label(params, episodes).targets
    whole = EpisodeValues(_cfg("one_ply", 1.0), net_of(_cfg("td"))).label(params, episodes).targets
    got = mixed.label(params, episodes)
    chosen_any = False
    for ep, g, t, w in zip(episodes, got.targets, td, whole, strict=True):
        rows = one_ply_rows(ep.dice, 0.4)
        chosen_any |= bool(rows.any())
        assert g.shape == (len(ep), 6)
        np.testing.assert_allclose(g[rows], w[rows], atol=1e-6)
        np.testing.assert_allclose(g[~rows], t[~rows], atol=1e-6)
        np.testing.assert_allclose(w, mixed.one_ply(params, ep.boards), atol=1e-6)
        assert np.abs(w - t).max() > 1e-3  # the two kinds of target differ: the check can fail
    assert chosen_any
    none = EpisodeValues(_cfg("one_ply", 0.0), net_of(_cfg("td"))).label(params, episodes).targets
    for n, t in zip(none, td, strict=True):
        np.testing.assert_allclose(n, t, atol=1e-6)


def test_a_share_outside_zero_to_one_or_without_one_ply_targets_names_the_key() -> None:
    with pytest.raises(ConfigError, match="training.one_ply_share"):
        _cfg("one_ply", 1.5)
    with pytest.raises(ConfigError, match="training.one_ply_share.*value_target: one_ply"):
        _cfg("td", 0.2)  # it would change nothing: refused, not ignored
    assert _cfg("td", 1.0).training.one_ply_share == 1.0
