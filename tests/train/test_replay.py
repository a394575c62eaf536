"""The local replay ring: capacity, O(1) eviction of the oldest, uniform sampling."""

from __future__ import annotations

import numpy as np
import pytest

from bgai.core.episodes import Episode
from bgai.train.replay import LocalReplay

K = 4


def _episode(n: int, tag: int, result: int = 1) -> Episode:
    boards = np.full((n, 28), tag, np.int8)
    return Episode(
        boards=boards,
        dice=np.zeros(n, np.int8),
        mask=np.ones((n, K), bool),
        steps=np.zeros((n, K, 4), np.uint8),
        policy=np.full((n, K), 1 / K, np.float32),
        player=(np.arange(n) % 2).astype(np.int8),
        result=result,
        model_version=0,
    )


def test_capacity_and_eviction() -> None:
    r = LocalReplay(capacity=10, max_plays=K)
    r.add(_episode(6, 1))
    r.add(_episode(6, 2))
    assert r.size == 10 and r.added == 12
    tags = sorted(r.boards[:, 0].tolist())
    assert tags.count(1) == 4 and tags.count(2) == 6, "the two oldest positions were overwritten"


def test_outcome_targets_follow_the_mover() -> None:
    ep = _episode(4, 1, result=2)  # player 0 won a gammon
    assert ep.outcome.tolist() == [1, 4, 1, 4]


def test_uniform_sampling_and_empty() -> None:
    r = LocalReplay(capacity=100, max_plays=K)
    with pytest.raises(ValueError):
        r.sample(1, np.random.default_rng(0))
    for tag in range(10):
        r.add(_episode(10, tag))
    batch = r.sample(20_000, np.random.default_rng(0))
    counts = np.bincount(batch["boards"][:, 0], minlength=10)
    assert counts.min() > 1_700 and counts.max() < 2_300


def test_episodes_wrap_around_the_ring_row_for_row() -> None:
    """An episode that runs past the end of the ring continues at its start: every field of the
    newest `capacity` positions is where a position-by-position ring would put it."""
    rng = np.random.default_rng(1)
    r = LocalReplay(capacity=17, max_plays=K)
    want = {k: np.zeros_like(getattr(r, k)) for k in ("boards", "steps", "mask", "policy", "value")}
    at = 0
    for n in (5, 9, 7, 16, 3, 17):
        ep = _episode(n, 0)
        ep = Episode(
            boards=rng.integers(-5, 6, (n, 28)).astype(np.int8),
            dice=ep.dice,
            mask=rng.random((n, K)) < 0.5,
            steps=rng.integers(0, 150, (n, K, 4)).astype(np.uint8),
            policy=rng.random((n, K)).astype(np.float32),
            player=ep.player,
            result=ep.result,
            model_version=0,
        ).labelled(rng.random((n, 6)).astype(np.float32))
        r.add(ep)
        for i in range(n):
            for k in want:
                want[k][at] = getattr(ep, "value_targets" if k == "value" else k)[i]
            at = (at + 1) % 17
        for k, w in want.items():
            np.testing.assert_array_equal(getattr(r, k), w, err_msg=k)
    assert r.next == at and r.size == 17


def test_a_ring_for_a_value_only_step_keeps_positions_and_targets_only() -> None:
    r = LocalReplay(capacity=30, max_plays=K, plays=False)
    for tag in range(4):
        r.add(_episode(10, tag))
    assert not hasattr(r, "steps") and r.size == 30
    batch = r.sample(50, np.random.default_rng(0))
    assert set(batch) == {"boards", "value"} and batch["boards"].shape == (50, 28)
    assert set(np.unique(batch["boards"][:, 0])) <= {1, 2, 3}, "tag 0 was overwritten"
