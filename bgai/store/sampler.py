"""Sampling the Redis replay buffer through a local mirror of its live episodes.

The trainer keeps a copy of every live episode in one byte arena, so a sample never waits on
thousands of reads. `refresh()` costs a GET of the run id and one of its buffer's stats, plus one
MGET per 256 episodes pushed since the last refresh (each episode crosses the network once), and
drops the episodes Redis evicted; a new run's buffer starts the mirror over. Stats that cannot be
true are a skip, never a crash or an endless fetch (the id range is at most `capacity + 1` long),
and a blob larger than its row count allows is left out like any corrupt episode. A position
table maps every live position to its row's offset in the arena; the live positions are one
contiguous range of it, because episode ids are consecutive and evicted oldest first. Draws:
- uniform: a position index over the whole live range: every stored position equally likely;
- surprise (`surprise_fraction` of a draw): episodes with probability proportional to their
  surprise (how wrong the value head was about their outcome), then a uniform row.
Memory: about the buffer's encoded size, at most twice it between compactions.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bgai.errors import BgaiError, CorruptDataError
from bgai.store.codec import (
    EP_HEADER_SIZE,
    decode_rows,
    expand_episode,
    read_episode_header,
    stored_bound,
)
from bgai.store.replay import ReplayStore

log = logging.getLogger(__name__)

FETCH_BATCH = 256


class _Column:
    """An append-only numpy column with a trimmable front (amortised O(1) per item)."""

    def __init__(self, dtype: Any) -> None:
        self.data = np.zeros(1024, dtype)
        self.used = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.used + len(values)
        if need > len(self.data):
            grown = np.zeros(max(need, 2 * len(self.data)), self.data.dtype)
            grown[: self.used] = self.data[: self.used]
            self.data = grown
        self.data[self.used : need] = values
        self.used = need

    def drop_front(self, count: int) -> None:
        """Forget the first `count` items (copies the rest down)."""
        rest = self.data[count : self.used].copy()
        self.data[: len(rest)] = rest
        self.used = len(rest)

    def view(self) -> np.ndarray:
        return self.data[: self.used]


class ReplayMirror:
    """A local, incrementally refreshed copy of the live buffer (one per sampling process)."""

    def __init__(self, store: ReplayStore, max_plays: int) -> None:
        self.store = store
        self.max_plays = max_plays
        self.skipped = 0  # corrupt or foreign episodes left out
        self.bad_stats = 0  # refreshes skipped because the buffer's stats were impossible
        self._bad_reason = ""
        self.run: str | None = None  # the run whose buffer is mirrored
        self._reset()

    def _reset(self) -> None:
        self.arena = _Column(np.uint8)  # episode blobs back to back
        self.pos_start = _Column(np.int64)  # [positions] arena offset of each row
        self.ep_base = _Column(np.int64)  # [episodes] arena offset of each blob
        self.ep_row0 = _Column(np.int64)  # [episodes] index of its first row in pos_start
        self.ep_len = _Column(np.int64)  # [episodes] rows (0 if it was evicted before we read it)
        self.ep_surprise = _Column(np.float64)
        self.first_id = 0  # id of episode index 0
        self.ep_front = 0  # first live episode index
        self.pos_front = 0  # first live position index

    @property
    def size(self) -> int:
        """Live positions in the mirror."""
        return self.pos_start.used - self.pos_front

    def refresh(self) -> dict[str, Any]:
        """Catch up with Redis: drop evicted episodes, fetch new ones; returns the stats.

        Stats that cannot be true (not JSON, not whole numbers, an id range longer than the
        capacity allows or disagreeing with the episode count: a hand or a hostile writer) are
        a skip: logged once per reason, counted in `bad_stats`, and the mirror stays as it was.
        """
        try:
            run, st = self.store.read_stats()
        except CorruptDataError as exc:
            self.bad_stats += 1
            if str(exc) != self._bad_reason:
                log.warning("replay buffer skipped: %s", exc)
                self._bad_reason = str(exc)
            return {"size": self.size, "episodes": 0, "invalid": str(exc)}
        self._bad_reason = ""
        if run != self.run or not st.episodes:
            self._reset()  # another run's buffer, or an empty one
            self.run = run
            if not st.episodes:
                return st.as_dict()
        oldest, newest = st.oldest, st.newest
        next_id = self.first_id + self.ep_len.used
        if self.ep_len.used == 0 or next_id > newest + 1 or next_id < oldest:
            self._reset()  # first refresh, a cleared buffer, or everything we had is gone
            self.first_id = next_id = oldest
        self._drop_before(oldest)
        for lo in range(next_id, newest + 1, FETCH_BATCH):
            ids = list(range(lo, min(lo + FETCH_BATCH, newest + 1)))
            self._append(ids, self.store.episodes(ids, run))
        self._drop_before(oldest)
        self._compact()
        return st.as_dict()

    def _expand(self, episode_id: int, blob: bytes | None) -> bytes | None:
        if blob is None:  # evicted between the stats read and the MGET
            return None
        try:
            rows = read_episode_header(blob).rows
            if len(blob) > stored_bound(rows):  # written past the push script (a hostile writer)
                raise CorruptDataError(f"{len(blob)} bytes for {rows} rows (at most {stored_bound(rows)})")
            return expand_episode(blob)
        except BgaiError as exc:  # a bad blob is skipped, never fatal to the trainer
            log.warning("skipping replay episode %d: %s", episode_id, exc)
            self.skipped += 1
            return None

    def _append(self, ids: list[int], blobs: list[bytes | None]) -> None:
        """Append consecutive episodes (an unusable one is kept as 0 rows, so ids stay aligned)."""
        raws = [self._expand(i, b) for i, b in zip(ids, blobs, strict=True)]
        heads = [read_episode_header(raw) if raw is not None else None for raw in raws]
        rows = np.array([h.rows if h else 0 for h in heads], np.int64)
        sizes = np.array([len(raw) if raw is not None else 0 for raw in raws], np.int64)
        base = self.arena.used + np.cumsum(sizes) - sizes  # [E] arena offset of each blob
        offsets = [
            b + np.frombuffer(raw, np.uint32, h.rows, EP_HEADER_SIZE)
            for raw, h, b in zip(raws, heads, base, strict=True)
            if raw is not None and h is not None
        ]
        self.ep_base.extend(base)
        self.ep_row0.extend(self.pos_start.used + np.cumsum(rows) - rows)
        self.ep_len.extend(rows)
        self.ep_surprise.extend(np.array([h.surprise if h else 0.0 for h in heads]))
        if offsets:
            self.pos_start.extend(np.concatenate(offsets))
            self.arena.extend(np.frombuffer(b"".join(r for r in raws if r is not None), np.uint8))

    def _drop_before(self, oldest: int) -> None:
        front = min(max(self.ep_front, oldest - self.first_id), self.ep_len.used)
        self.ep_front = front
        self.pos_front = int(self.ep_row0.data[front]) if front < self.ep_len.used else self.pos_start.used

    def _compact(self) -> None:
        """Reclaim the front once the evicted part outweighs the live part."""
        if self.ep_front == 0 or self.pos_front < self.size:
            return
        cut = int(self.ep_base.data[self.ep_front]) if self.ep_front < self.ep_len.used else self.arena.used
        self.arena.drop_front(cut)
        self.pos_start.drop_front(self.pos_front)
        self.pos_start.view()[:] -= cut
        for col in (self.ep_base, self.ep_row0, self.ep_len, self.ep_surprise):
            col.drop_front(self.ep_front)
        self.ep_base.view()[:] -= cut
        self.ep_row0.view()[:] -= self.pos_front
        self.first_id += self.ep_front
        self.ep_front = self.pos_front = 0

    def draw(self, n: int, rng: np.random.Generator, surprise_fraction: float = 0.0) -> np.ndarray:
        """Position indices (into the position table) of `n` draws from the current mirror."""
        if self.size == 0:
            raise LookupError("the replay buffer is empty")
        k = int(round(n * surprise_fraction))
        idx = rng.integers(self.pos_front, self.pos_start.used, n - k)
        if k:
            lengths = self.ep_len.view()[self.ep_front :]
            weight = (self.ep_surprise.view()[self.ep_front :] + 1e-6) * (lengths > 0)
            ep = rng.choice(len(lengths), size=k, p=weight / weight.sum()) + self.ep_front
            rows = (rng.random(k) * self.ep_len.data[ep]).astype(np.int64)
            idx = np.concatenate([idx, self.ep_row0.data[ep] + rows])
        return idx

    def episode_of(self, idx: np.ndarray) -> np.ndarray:
        """The episode id of each position index (for tests and diagnostics)."""
        row0 = self.ep_row0.view()
        return np.searchsorted(row0, idx, side="right") - 1 + self.first_id

    def sample(
        self, n: int, rng: np.random.Generator, surprise_fraction: float = 0.0, plays: bool = True
    ) -> dict[str, np.ndarray]:
        """Refresh, then `n` training positions (arrays as `codec.decode_rows`, `plays` too)."""
        self.refresh()
        idx = self.draw(n, rng, surprise_fraction)
        return decode_rows(self.arena.view(), self.pos_start.data[idx], self.max_plays, plays)
