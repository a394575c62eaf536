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
