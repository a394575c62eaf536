"""An in-process replay buffer of decisions (numpy ring, O(1) insert and evict).

Used by the single-process local run; the fleet's Redis buffer stores the same
per-decision fields.
"""

from __future__ import annotations

import numpy as np

from bgai.core import rules
from bgai.core.episodes import Episode
from bgai.core.train_step import BATCH_FIELDS, VALUE_FIELDS


class LocalReplay:
    """Fixed-capacity ring of decisions; the oldest are overwritten first.

    With `plays` False it keeps the positions and their value targets only (what a value-only
    train step reads, `train_step.batch_fields`): a sixth of the memory, and no plays copied."""

    def __init__(self, capacity: int, max_plays: int, plays: bool = True) -> None:
        self.capacity = capacity
        self.fields = BATCH_FIELDS if plays else VALUE_FIELDS
        self.boards = np.zeros((capacity, rules.BOARD_SIZE), np.int8)
        self.value = np.zeros((capacity, 6), np.float32)  # value targets (mover's outcome distribution)
        if plays:
            self.steps = np.zeros((capacity, max_plays, rules.MAX_STEPS_PER_PLAY), np.uint8)
            self.mask = np.zeros((capacity, max_plays), bool)
            self.policy = np.zeros((capacity, max_plays), np.float32)
        self.size = 0
        self.next = 0
        self.added = 0

    def add(self, ep: Episode) -> None:
        """Store an episode with its value targets (`Episode.value_targets`)."""
        n = len(ep.dice)
        arrays = {"boards": ep.boards, "value": ep.value_targets}
        if self.fields == BATCH_FIELDS:
            arrays.update(steps=ep.steps, mask=ep.mask, policy=ep.policy)
        done = 0
        while done < n:  # at most twice: up to the end of the ring, then from its start
            take = min(n - done, self.capacity - self.next)
            for name, rows in arrays.items():
                getattr(self, name)[self.next : self.next + take] = rows[done : done + take]
            self.next = (self.next + take) % self.capacity
            done += take
        self.size = min(self.capacity, self.size + n)
        self.added += n

    def sample(
        self, n: int, rng: np.random.Generator, fields: tuple[str, ...] | None = None
    ) -> dict[str, np.ndarray]:
        """n decisions drawn uniformly from the whole buffer: their `fields` (`Batch`'s names;
        default: all it keeps)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        rows = rng.integers(0, self.size, size=n)
        return {k: getattr(self, k)[rows] for k in (self.fields if fields is None else fields)}
