"""Match statistics and a short real match."""

from __future__ import annotations

import jax
import numpy as np

from bgai.core import players, rules
from bgai.core.evaluate import MatchResult, play_match


def test_statistics() -> None:
    pts = np.array([1, -1, 2, 1, -3, 1, 1, -1, 1, 2])
    r = MatchResult(games=10, wins=7, points=pts)
    assert r.win_rate == 0.7 and np.isclose(r.ppg, 0.4)
    lo, hi = r.win_rate_ci()
    assert 0.39 < lo < 0.40 and 0.89 < hi < 0.90  # Wilson interval for 7/10
    plo, phi = r.ppg_ci()
    assert np.isclose((plo + phi) / 2, 0.4)
    assert r.counts() == {
        "win_single": 5,
        "win_gammon": 2,
        "win_backgammon": 0,
        "lose_single": 2,
        "lose_gammon": 0,
        "lose_backgammon": 1,
    }


def test_pubeval_beats_random() -> None:
    mg = rules.MoveGenConfig(max_plays=64, frontier2=48, frontier3=96)
    res = play_match(
        players.pubeval_decider(),
        None,
        players.random_decider(),
        None,
        jax.random.key(0),
        games=32,
        batch=32,
        movegen=mg,
    )
    assert res.games == 32
    assert res.win_rate > 0.8, res.summary()  # measured here: pubeval wins ~99.9% vs random
