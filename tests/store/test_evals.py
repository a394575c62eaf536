"""Eval slices in Redis: atomic claims shared by several eval workers, per-version sums."""

from __future__ import annotations

import redis

from bgai.store import evals
from bgai.store.keys import Keys

KEYS = Keys("t2")


def set_model(r: redis.Redis, version: int) -> None:
    r.set(KEYS.model_version, version)
    r.set(KEYS.model_weights, f"weights-{version}".encode())


def test_nothing_to_claim_without_a_model(r: redis.Redis) -> None:
    assert evals.claim(r, KEYS, every=1, games=10, slice_games=4, have=None) is None


def test_two_workers_share_a_version_then_move_on(r: redis.Redis) -> None:
    set_model(r, 3)
    a = evals.claim(r, KEYS, every=2, games=10, slice_games=4, have=None)
    b = evals.claim(r, KEYS, every=2, games=10, slice_games=4, have=None)
    c = evals.claim(r, KEYS, every=2, games=10, slice_games=4, have=3)
    assert a and b and c
    assert [(x.version, x.slice_index, x.games) for x in (a, b, c)] == [(3, 0, 4), (3, 1, 4), (3, 2, 2)]
    assert a.blob == b.blob == b"weights-3" and c.blob is None  # c already has version 3
    set_model(r, 4)  # not `every` versions past 3 yet
    assert evals.claim(r, KEYS, every=2, games=10, slice_games=4, have=3) is None
    set_model(r, 5)
    d = evals.claim(r, KEYS, every=2, games=10, slice_games=4, have=3)
    assert d and (d.version, d.slice_index, d.blob) == (5, 0, b"weights-5")
    # the eval copy is pinned: training moving on does not change what v5's slices play
    set_model(r, 6)
    e = evals.claim(r, KEYS, every=2, games=10, slice_games=4, have=None)
    assert e and (e.version, e.blob) == (5, b"weights-5")
    for x, pts in ((a, [1, -1, 2, 1]), (b, [3, -2, 1, 1]), (c, [-1, 1])):
        evals.add_result(r, KEYS, x.version, "pubeval", pts)
    res = evals.results(r, KEYS)
    assert res[3]["pubeval"] == {
        "games": 10,
        "wins": 7,
        "points": 6,
        "sq": 24,
        "gammons": 2,
        "backgammons": 1,
    }
    assert list(res) == [3]  # v5 has no results yet
    assert 0 < r.ttl(KEYS.eval_results(3)) <= evals.RESULT_TTL_S
