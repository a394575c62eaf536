"""An in-process replay buffer of decisions (numpy ring, O(1) insert and evict).

Used by the single-process local run; the fleet's Redis buffer stores the same
per-decision fields. Episodes are cut from a self-play `Trajectory` on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bgai.core import rules


@dataclass(frozen=True)
class Episode:
    """One whole game as recorded by self-play (T decisions)."""

    boards: np.ndarray  # [T, 28] int8 position before each decision, mover's view
    dice: np.ndarray  # [T] int8
    mask: np.ndarray  # [T, K] bool
    steps: np.ndarray  # [T, K, 4] uint8
    policy: np.ndarray  # [T, K] float32
    player: np.ndarray  # [T] int8
    result: int  # points won by player 0 (+-1..3)
    model_version: int

    @property
    def outcome(self) -> np.ndarray:
        """[T] int32 outcome class (0..5) of the mover at each decision."""
        pts = np.where(self.player == 0, self.result, -self.result)
        return np.where(pts > 0, pts - 1, 2 - pts).astype(np.int32)


def episodes_from_trajectory(traj: Any, model_version: int) -> list[Episode]:
    """Split a (host-side) Trajectory into its finished games; unfinished ones are dropped."""
    t = {k: np.asarray(getattr(traj, k)) for k in ("boards", "dice", "mask", "steps", "policy", "player")}
    out = []
    for b in np.flatnonzero(np.asarray(traj.finished)):
        n = int(np.asarray(traj.length)[b])
        out.append(
            Episode(
                boards=t["boards"][:n, b],
                dice=t["dice"][:n, b],
                mask=t["mask"][:n, b],
                steps=t["steps"][:n, b],
                policy=t["policy"][:n, b],
                player=t["player"][:n, b],
                result=int(np.asarray(traj.result)[b]),
                model_version=model_version,
            )
        )
    return out


class LocalReplay:
    """Fixed-capacity ring of decisions; the oldest are overwritten first."""

    def __init__(self, capacity: int, max_plays: int) -> None:
        self.capacity = capacity
        self.boards = np.zeros((capacity, rules.BOARD_SIZE), np.int8)
        self.steps = np.zeros((capacity, max_plays, rules.MAX_STEPS_PER_PLAY), np.uint8)
        self.mask = np.zeros((capacity, max_plays), bool)
        self.policy = np.zeros((capacity, max_plays), np.float32)
        self.outcome = np.zeros((capacity,), np.int32)
        self.size = 0
        self.next = 0
        self.added = 0

    def add(self, ep: Episode) -> None:
        n = len(ep.dice)
        rows = (self.next + np.arange(n)) % self.capacity
        self.boards[rows] = ep.boards
        self.steps[rows] = ep.steps
        self.mask[rows] = ep.mask
        self.policy[rows] = ep.policy
        self.outcome[rows] = ep.outcome
        self.next = int((self.next + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)
        self.added += n

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """n decisions drawn uniformly from the whole buffer."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        rows = rng.integers(0, self.size, size=n)
        return {
            "boards": self.boards[rows],
            "steps": self.steps[rows],
            "mask": self.mask[rows],
            "policy": self.policy[rows],
            "outcome": self.outcome[rows],
        }
