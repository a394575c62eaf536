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


MG = rules.MoveGenConfig(max_plays=64, frontier2=48, frontier3=96)


def test_paired_games_share_their_dice_and_swap_seats() -> None:
    from functools import partial

    from bgai.core.selfplay import paired_points, paired_sides, play_batch

    decide = paired_sides(players.pubeval_decider(), players.random_decider())
    run = jax.jit(partial(play_batch, decide, batch=16, max_turns=400, movegen=MG, paired=True))
    traj = run((None, None), jax.random.key(3))
    dice, valid, player = (np.asarray(x) for x in (traj.dice, traj.valid, traj.player))
    both = valid[:, 0::2] & valid[:, 1::2]
    assert both.sum() > 100
    assert np.array_equal(dice[:, 0::2][both], dice[:, 1::2][both])  # the same roll, turn for turn
    assert np.array_equal(player[0, 0::2], player[0, 1::2])  # the same side opens...
    pts = np.asarray(paired_points(traj.result))
    assert np.mean(pts[np.asarray(traj.finished)] > 0) > 0.8  # ...and A is pubeval in both games
    # unpaired, neighbouring games roll differently
    free = jax.jit(partial(play_batch, decide, batch=16, max_turns=400, movegen=MG))(
        (None, None), jax.random.key(3)
    )
    fd, fv = np.asarray(free.dice), np.asarray(free.valid)
    fb = fv[:, 0::2] & fv[:, 1::2]
    assert not np.array_equal(fd[:, 0::2][fb], fd[:, 1::2][fb])


def test_a_host_player_is_called_for_its_own_games_only() -> None:
    calls: list[int] = []

    def choose(boards, dice, play_boards, mask, overflow, active):  # type: ignore[no-untyped-def]
        calls.append(int(active.sum()))
        assert mask[active].any(axis=-1).all()
        first = np.argmax(mask, axis=-1).astype(np.int32)  # the first legal play
        return first, play_boards[np.arange(len(first)), first]

    res = play_match(
        players.host_decider(choose),
        None,
        players.pubeval_decider(),
        None,
        jax.random.key(1),
        16,
        16,
        movegen=MG,
    )
    assert res.games == 16 and len(calls) > 20
    assert max(calls) <= 8  # 16 games: the host player is to move in at most half of them
    assert sum(res.counts().values()) == 16
    assert res.win_rate < 0.5, res.summary()  # "first legal play" loses to pubeval
