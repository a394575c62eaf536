"""Synthetic episodes for the store tests: random boards, a random number of legal plays per row."""

from __future__ import annotations

import numpy as np

from bgai.core import rules
from bgai.core.episodes import Episode

K = 16  # max plays in these episodes


def make_episode(length: int, seed: int, version: int = 0) -> Episode:
    rng = np.random.default_rng(seed)
    n = rng.integers(1, K + 1, length)
    mask = np.arange(K)[None, :] < n[:, None]
    policy = rng.random((length, K)).astype(np.float32) * mask
    policy /= policy.sum(1, keepdims=True)
    steps = rng.integers(0, rules.NUM_STEPS, (length, K, 4)).astype(np.uint8)
    steps[~mask] = rules.NO_STEP
    return Episode(
        boards=rng.integers(-15, 16, (length, 28)).astype(np.int8),
        dice=rng.integers(0, 21, length).astype(np.int8),
        mask=mask,
        steps=steps,
        policy=policy,
        player=(np.arange(length) % 2).astype(np.int8),
        result=int(rng.choice([-3, -2, -1, 1, 2, 3])),
        model_version=version,
    )
