"""Whole episodes, stitched on the host from self-play chunks (plain numpy).

A game slot's decisions arrive chunk by chunk; `EpisodeAssembler` keeps each
slot's unfinished rows and emits an `Episode` when the game ends, so only
whole games ever leave self-play (an abandoned game is dropped).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

FIELDS = ("boards", "dice", "mask", "steps", "policy", "player")


@dataclass(frozen=True)
class Episode:
    """One whole game (T decisions)."""

    boards: np.ndarray  # [T, 28] int8 position before each decision, mover's view
    dice: np.ndarray  # [T] int8 roll index
    mask: np.ndarray  # [T, K] bool legal plays
    steps: np.ndarray  # [T, K, 4] uint8 steps of each play
    policy: np.ndarray  # [T, K] float32 policy target
    player: np.ndarray  # [T] int8 side to move
    result: int  # points won by player 0 (+-1..3)
    model_version: int
    # [T, 6] float32 value target of each position (mover's outcome distribution), once labelled
    # (`bgai.agent.EpisodeValues`); None straight out of self-play
    value: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.dice)

    @property
    def outcome(self) -> np.ndarray:
        """[T] int32 outcome class (0..5) of the mover at each decision."""
        pts = np.where(self.player == 0, self.result, -self.result)
        return np.where(pts > 0, pts - 1, 2 - pts).astype(np.int32)

    @property
    def value_targets(self) -> np.ndarray:
        """[T, 6] float32: the value targets if labelled, else the final outcome (one-hot)."""
        if self.value is not None:
            return self.value
        return np.eye(6, dtype=np.float32)[self.outcome]

    def labelled(self, value: np.ndarray) -> Episode:
        """This episode with its value targets [T, 6]."""
        if value.shape != (len(self), 6):
            raise ValueError(f"value targets of shape {value.shape} for an episode of {len(self)} rows")
        return dataclasses.replace(self, value=np.asarray(value, np.float32))


class EpisodeAssembler:
    """Stitches `Chunk`s of B slots into whole episodes."""

    def __init__(self) -> None:
        self._pending: dict[int, list[dict[str, np.ndarray]]] = {}
        self.abandoned = 0

    def add(self, chunk: Any, model_version: int) -> list[Episode]:
        """Feed one host-side chunk; returns the episodes that ended in it."""
        arrays = {k: np.asarray(getattr(chunk, k)) for k in FIELDS}
        ended, abandoned = np.asarray(chunk.ended), np.asarray(chunk.abandoned)
        result = np.asarray(chunk.result)
        out: list[Episode] = []
        length, batch = ended.shape
        for b in range(batch):
            start = 0
            cuts = np.flatnonzero(ended[:, b] | abandoned[:, b])
            for t in list(cuts) + [length - 1]:
                if t < start:
                    continue
                piece = {k: v[start : t + 1, b] for k, v in arrays.items()}
                self._pending.setdefault(b, []).append(piece)
                if ended[t, b] or abandoned[t, b]:
                    pieces = self._pending.pop(b)
                    if ended[t, b]:
                        parts = {k: np.concatenate([p[k] for p in pieces]) for k in FIELDS}
                        out.append(Episode(**parts, result=int(result[t, b]), model_version=model_version))
                    else:
                        self.abandoned += 1
                start = t + 1
        return out
