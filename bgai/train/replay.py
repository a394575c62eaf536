"""An in-process replay buffer of decisions (numpy ring, O(1) insert and evict).

Used by the single-process local run; the fleet's Redis buffer stores the same
per-decision fields.
"""

from __future__ import annotations

import numpy as np

from bgai.core import rules
from bgai.core.episodes import Episode
from bgai.core.train_step import BATCH_FIELDS


class LocalReplay:
    """Fixed-capacity ring of decisions; the oldest are overwritten first."""

    def __init__(self, capacity: int, max_plays: int) -> None:
        self.capacity = capacity
        self.boards = np.zeros((capacity, rules.BOARD_SIZE), np.int8)
        self.steps = np.zeros((capacity, max_plays, rules.MAX_STEPS_PER_PLAY), np.uint8)
        self.mask = np.zeros((capacity, max_plays), bool)
        self.policy = np.zeros((capacity, max_plays), np.float32)
        self.value = np.zeros((capacity, 6), np.float32)  # value targets (mover's outcome distribution)
        self.size = 0
        self.next = 0
        self.added = 0

    def add(self, ep: Episode) -> None:
        """Store an episode with its value targets (`Episode.value_targets`)."""
        n = len(ep.dice)
        rows = (self.next + np.arange(n)) % self.capacity
        self.boards[rows] = ep.boards
        self.steps[rows] = ep.steps
        self.mask[rows] = ep.mask
        self.policy[rows] = ep.policy
        self.value[rows] = ep.value_targets
        self.next = int((self.next + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)
        self.added += n

    def sample(
        self, n: int, rng: np.random.Generator, fields: tuple[str, ...] = BATCH_FIELDS
    ) -> dict[str, np.ndarray]:
        """n decisions drawn uniformly from the whole buffer: their `fields` (`Batch`'s names)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        rows = rng.integers(0, self.size, size=n)
        return {k: getattr(self, k)[rows] for k in fields}
