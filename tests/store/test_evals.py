"""Eval slices in Redis: atomic claims shared by several eval workers, a dead worker's slice
handed out again, each slice counted once, per-version sums with wins and losses by kind."""

from __future__ import annotations

import json

import redis

from bgai.store import evals
from bgai.store.keys import NO_RUN, Keys

KEYS = Keys("t2")
EK = KEYS.eval(NO_RUN)  # no run named in Redis


def set_model(r: redis.Redis, version: int) -> None:
    r.set(KEYS.model_version, version)
    r.set(KEYS.model_weights, f"weights-{version}".encode())


def token(worker: str, nonce: str = "n0") -> str:
    """A process's owner token, `<worker id>:<nonce>` (roles/identity.py)."""
    return f"{worker}:{nonce}"


def alive(r: redis.Redis, *workers: str, nonce: str = "n0") -> None:
    """Registry records naming their process, as the role loop keeps them (the TTL does not
    matter here)."""
    for w in workers:
        r.set(KEYS.worker(w), json.dumps({"owner": token(w, nonce)}), ex=600)


def claim(
    r: redis.Redis, worker: str, have: int | None = None, every: int = 2, nonce: str = "n0"
) -> evals.Claim | None:
    return evals.claim(r, KEYS, every=every, games=10, slice_games=4, have=have, owner=token(worker, nonce))


def test_nothing_to_claim_without_a_model(r: redis.Redis) -> None:
    assert claim(r, "a") is None


def test_two_workers_share_a_version_then_move_on(r: redis.Redis) -> None:
    alive(r, "a", "b", "c")
    set_model(r, 3)
    a, b, c = claim(r, "a"), claim(r, "b"), claim(r, "c", have=3)
    assert a and b and c
    assert [(x.version, x.slice_index, x.games, x.slices) for x in (a, b, c)] == [
        (3, 0, 4, 3),
        (3, 1, 4, 3),
        (3, 2, 2, 3),
    ]
    assert a.blob == b.blob == b"weights-3" and c.blob is None  # c already has version 3
    done = [
        evals.add_slice(r, KEYS, x, {"pubeval": pts, "random": [1] * len(pts)})
        for x, pts in ((a, [1, -1, 2, 1]), (b, [3, -2, 1, 1]), (c, [-1, 1]))
    ]
    assert done == [1, 2, 3]  # the third completes version 3
    set_model(r, 4)  # not `every` versions past 3 yet
    assert claim(r, "a", have=3) is None
    set_model(r, 5)
    d = claim(r, "a", have=3)
    assert d and (d.version, d.slice_index, d.blob) == (5, 0, b"weights-5")
    # the eval copy is pinned: training moving on does not change what v5's slices play
    set_model(r, 6)
    e = claim(r, "b")
    assert e and (e.version, e.slice_index, e.blob) == (5, 1, b"weights-5")
    res = evals.results(r, KEYS)
    assert res[3]["pubeval"] == {
        "games": 10,
        "wins": 7,
        "points": 6,
        "sq": 24,
        "w1": 5,
        "w2": 1,
        "w3": 1,
        "l1": 2,
        "l2": 1,
        "l3": 0,
    }
    assert res[3]["random"]["games"] == 10
    assert list(res) == [3]  # v5 has no results yet
    assert 0 < r.ttl(EK.results(3)) <= evals.RESULT_TTL_S
    assert r.zrange(EK.open, 0, -1) == [b"5"]  # 3 is finished, 5 is not


def test_a_dead_workers_slice_is_reissued_and_counted_once(r: redis.Redis) -> None:
    alive(r, "a", "b")
    set_model(r, 7)
    a0, b1 = claim(r, "a"), claim(r, "b")
    assert a0 and b1 and evals.add_slice(r, KEYS, a0, {"pubeval": [1, -1, 1, -1]}) == 1
    a2 = claim(r, "a", have=7)
    assert a2 and [x.slice_index for x in (a0, b1, a2)] == [0, 1, 2]
    alive(r, "d")
    assert claim(r, "d", have=7) is None  # all handed out, owners alive, nothing newer
    r.delete(KEYS.worker("b"))  # b dies: its heartbeat key expires
    again = claim(r, "d", have=7)
    assert again and (again.version, again.slice_index, again.games) == (7, 1, 4)
    assert again.blob is None and evals.reissued(r, KEYS, 7) == 1
    # the new target does not strand an unfinished old slice: a restarted worker gets it back
    set_model(r, 9)
    r.delete(KEYS.worker("a"))
    alive(r, "c")
    got = claim(r, "c")
    assert got and (got.version, got.slice_index, got.blob) == (7, 2, b"weights-7")  # kept
    for x in (again, got):
        assert evals.add_slice(r, KEYS, x, {"pubeval": [1, -1, 1, -1][: x.games]}) > 0
    # b was only slow: its late result for slice 1 is not counted twice
    assert evals.add_slice(r, KEYS, b1, {"pubeval": [3, 3, 3, 3]}) == -1
    assert evals.results_of(r, KEYS, 7)["pubeval"]["games"] == 10
    assert r.zscore(EK.open, 7) is None
    nxt = claim(r, "c", have=7)
    assert nxt and nxt.version == 9


def test_one_worker_id_on_two_hosts_never_shares_a_slice(r: redis.Redis) -> None:
    """Two processes under one worker id (cloned hosts, one hostname) are two owners: the second
    never takes the first's slice while the first heartbeats; a restart (a new nonce under the
    same id) gets its dead predecessor's slice back."""
    alive(r, "h:e0", nonce="first")  # the registry holds one record per id: the first's
    set_model(r, 3)
    a = claim(r, "h:e0", nonce="first")
    b = claim(r, "h:e0", nonce="twin")
    assert a and b and (a.slice_index, b.slice_index) == (0, 1)
    assert evals.reissued(r, KEYS, 3) == 0
    assert evals.add_slice(r, KEYS, b, {"pubeval": [1] * b.games}) == 1
    alive(r, "h:e0", nonce="restarted")  # the first died; supervisord restarted it
    again = claim(r, "h:e0", have=3, nonce="restarted")
    assert again and (again.version, again.slice_index) == (3, 0) and evals.reissued(r, KEYS, 3) == 1
    assert not evals.release(r, KEYS, again, token("h:e0", "first"))  # no longer the first's
    assert evals.release(r, KEYS, again, token("h:e0", "restarted"))


def test_past_weights_are_the_newest_kept_version_at_or_below(r: redis.Redis) -> None:
    alive(r, "a")
    for v in (2, 4, 6):
        set_model(r, v)
        while (got := claim(r, "a", have=v)) is not None and got.version == v:
            evals.add_slice(r, KEYS, got, {"pubeval": [1] * got.games})
    assert evals.past_weights(r, KEYS, 5) == (4, b"weights-4")
    assert evals.past_weights(r, KEYS, 4) == (4, b"weights-4")
    assert evals.past_weights(r, KEYS, 1) is None


def test_a_refused_slice_is_released_to_another_worker_and_its_version_skipped(r: redis.Redis) -> None:
    alive(r, "a", "b")
    set_model(r, 5)
    got = claim(r, "a")
    assert got and (got.version, got.slice_index) == (5, 0)
    evals.release(r, KEYS, got, token("a"))  # a cannot play v5 (another model on its host)
    for _ in range(3):  # a skips v5 from now on: neither its released slice nor the next one
        assert evals.claim(r, KEYS, 2, 10, 4, None, token("a"), skip=[5]) is None
    done, seen = 0, []
    while (b := claim(r, "b", have=5 if seen else None)) is not None:
        seen.append(b.slice_index)
        done = evals.add_slice(r, KEYS, b, {"pubeval": [1] * b.games})
    assert sorted(seen) == [0, 1, 2] and done == 3  # b took the released slice and finished v5
    assert evals.results_of(r, KEYS, 5)["pubeval"]["games"] == 10
    assert r.zscore(EK.open, 5) is None


def test_an_eval_targets_weights_live_as_long_as_its_slices(r: redis.Redis) -> None:
    alive(r, "a", "b")
    set_model(r, 3)
    assert claim(r, "a")
    r.expire(EK.weights(3), 10)  # a day has nearly passed since the target was made
    r.expire(EK.slices(3), 10)
    b = claim(r, "b")  # a take refreshes the slices hash and the weights together
    assert b and b.version == 3
    assert r.ttl(EK.slices(3)) > 10 and r.ttl(EK.weights(3)) > 10
    r.expire(EK.weights(3), 10)
    r.delete(KEYS.worker("a"))  # a dies: its slice re-issued, the weights kept alive with it
    again = claim(r, "b", have=3)
    assert again and again.slice_index == 0 and r.ttl(EK.weights(3)) > 10
