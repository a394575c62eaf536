"""A game worker's local spool: finished episodes wait here while Redis is unreachable.

Bounded (`selfplay.spool_episodes`): past the bound the oldest episode is dropped and counted.
Every episode gets the next sequence number of its worker; the buffer's push script keeps the
highest number it has seen per worker and skips anything at or below it. So an episode pushed in
a pipeline that broke midway (some pushes landed, the client cannot know which) is pushed again
on reconnect and lands exactly once, and the order of a worker's episodes is kept.
"""

from __future__ import annotations

import logging
from collections import deque

from bgai.store.replay import ReplayStore

log = logging.getLogger(__name__)

PUSH_BATCH = 256  # episodes per pipeline round trip while draining


class Spool:
    def __init__(self, replay: ReplayStore, source: str, capacity: int, first_seq: int = 0) -> None:
        self.replay, self.source, self.capacity = replay, source, capacity
        self.items: deque[tuple[int, bytes]] = deque()
        self.next_seq = first_seq
        self.dropped = 0  # episodes dropped because the spool was full
        self.pushed = 0  # episodes that landed in the buffer
        self.duplicates = 0  # pushes the buffer skipped as already there

    def __len__(self) -> int:
        return len(self.items)

    def add(self, blobs: list[bytes]) -> None:
        """Queue finished episodes, numbered in order (`drain` trims the queue if it fails)."""
        for blob in blobs:
            self.items.append((self.next_seq, blob))
            self.next_seq += 1

    def trim(self) -> None:
        """Keep the newest `capacity` episodes; the oldest beyond are dropped and counted."""
        while len(self.items) > self.capacity:
            self.items.popleft()
            self.dropped += 1

    def drain(self) -> int:
        """Push what is queued, oldest first, in batches; returns episodes that landed.

        A Redis error propagates with the unsent episodes still queued (those of a batch that
        broke midway are pushed again next time and skipped if they had landed).
        """
        landed = 0
        try:
            while self.items:
                batch = [self.items[i] for i in range(min(PUSH_BATCH, len(self.items)))]
                ids = self.replay.push_many(
                    [b for _, b in batch], source=self.source, seqs=[s for s, _ in batch]
                )
                for _ in batch:
                    self.items.popleft()
                new = sum(1 for i in ids if i >= 0)
                landed += new
                self.duplicates += len(ids) - new
        except Exception:
            self.trim()
            raise
        finally:
            self.pushed += landed
        return landed
