"""A game worker's local spool: finished episodes wait here while Redis is unreachable.

Bounded (`selfplay.spool_episodes`): past the bound the oldest episode is dropped and counted.
Every episode gets the next sequence number of its worker's source; the buffer's push script
keeps the highest number it has seen per source and skips anything at or below it. So an episode
pushed in a pipeline that broke midway (some pushes landed, the client cannot know which) is
pushed again on reconnect and lands exactly once, and the order of a worker's episodes is kept.

With a `DiskSpool` (`bgai.store.disk_spool`) the spool also survives the process: episodes a push
could not deliver because Redis is unreachable are written to disk before the error goes on, and
a file is deleted only once its episodes have landed (or were skipped as already there, or
dropped). The next process of the same worker loads them at `open`, reuses the worker's source
name (so `buffer:sources` holds one field per worker, not one per process start), continues its
numbering above what Redis last took (`sync`), and pushes them first, oldest first, each once.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections import Counter, deque

from bgai.store.client import is_unavailable
from bgai.store.disk_spool import DiskSpool, Spooled
from bgai.store.replay import ReplayStore

log = logging.getLogger(__name__)

PUSH_BATCH = 256  # episodes per pipeline round trip while draining


class Spool:
    def __init__(
        self, replay: ReplayStore, worker_id: str, capacity: int, disk: DiskSpool | None = None
    ) -> None:
        self.replay, self.capacity, self.disk = replay, capacity, disk
        self.source = f"{worker_id}/{uuid.uuid4().hex[:12]}"  # `open` reads the disk's instead
        self.worker_id = worker_id
        self.items: deque[Spooled] = deque()
        self.next_seq = 0
        self.synced = disk is None  # a fresh source needs no look at Redis
        self.restored = 0  # episodes loaded from disk by `open` and not yet reported
        self.dropped = 0  # episodes dropped because the spool was full
        self.pushed = 0  # episodes that landed in the buffer
        self.duplicates = 0  # pushes the buffer skipped as already there
        self._files: Counter[str] = Counter()  # spool file -> its episodes still in the spool

    def __len__(self) -> int:
        return len(self.items)

    def open(self) -> None:
        """Take the worker's spool directory and load what an earlier process left in it."""
        if self.disk is None:
            return
        self.source, loaded = self.disk.open(self.worker_id)
        self.items = deque(loaded)
        self._files = Counter(it.file for it in loaded if it.file is not None)
        self.next_seq = loaded[-1].seq + 1 if loaded else 0
        self.restored = len(loaded)
        self.trim()
        self.restored = min(self.restored, len(self.items))
        if loaded:
            log.info(
                "%s: %d spooled episodes kept on disk by an earlier process (%s): pushed first",
                self.worker_id,
                len(self.items),
                self.disk.dir,
            )

    def sync(self) -> None:
        """Number new episodes above the last one Redis took from this source (call once, with
        Redis reachable, before the first `add`)."""
        last = self.replay.last_seq(self.source)
        self.next_seq = max(self.next_seq, last + 1)
        self.synced = True

    def add(self, blobs: list[bytes], run: str) -> None:
        """Queue finished episodes of `run`, numbered in order (`drain` trims if it fails)."""
        if not self.synced:
            raise RuntimeError("Spool.sync() must run before the first add()")
        for blob in blobs:
            self.items.append(Spooled(self.source, run, self.next_seq, blob))
            self.next_seq += 1

    def trim(self) -> None:
        """Keep the newest `capacity` episodes; the oldest beyond are dropped and counted."""
        gone = []
        while len(self.items) > self.capacity:
            gone.append(self.items.popleft())
            self.dropped += 1
        self._forget(gone)

    def discard_run(self, run: str) -> int:
        """Drop the episodes of any run but `run` (the fleet moved on); returns how many."""
        keep = [it for it in self.items if it.run == run]
        gone = [it for it in self.items if it.run != run]
        self.items = deque(keep)
        self._forget(gone)
        self.restored = min(self.restored, len(self.items))
        return len(gone)

    def drain(self) -> int:
        """Push what is queued, oldest first, in batches; returns episodes that landed.

        A Redis error propagates with the unsent episodes still queued (those of a batch that
        broke midway are pushed again next time and skipped if they had landed); if Redis is
        unreachable they are written to disk first.
        """
        landed = 0
        try:
            while self.items:
                batch = self._next_batch()
                ids = self.replay.push_many(  # an episode of a run the fleet left is not stored
                    [it.blob for it in batch],
                    source=batch[0].source,
                    seqs=[it.seq for it in batch],
                    run_id=batch[0].run or None,
                )
                for _ in batch:
                    self.items.popleft()
                self._forget(batch)
                new = sum(1 for i in ids if i >= 0)
                landed += new
                self.duplicates += len(ids) - new
        except Exception as exc:
            self.trim()
            if is_unavailable(exc):
                self.persist()
            raise
        finally:
            self.pushed += landed
        return landed

    def persist(self) -> None:
        """Write the episodes only in memory to disk (a disk error is logged: they stay in
        memory, and are lost only if the process ends before Redis is back)."""
        fresh = [it for it in self.items if it.file is None]
        if self.disk is None or not fresh:
            return
        try:
            self.disk.write(fresh)
        except OSError as exc:
            log.warning(
                "%s: cannot write %d spooled episodes to %s (%s): kept in memory only",
                self.worker_id,
                len(fresh),
                self.disk.dir,
                exc,
            )
            return
        self._files.update(it.file for it in fresh if it.file is not None)

    def close(self) -> None:
        """At exit: whatever is still queued goes to disk (for the next process); unlock."""
        self.persist()
        if self.disk is not None:
            self.disk.close()

    def _next_batch(self) -> list[Spooled]:
        """Up to PUSH_BATCH queued episodes from the front, all of one source and run."""
        first = self.items[0]
        batch = [first]
        for it in itertools.islice(self.items, 1, PUSH_BATCH):
            if it.source != first.source or it.run != first.run:
                break
            batch.append(it)
        return batch

    def _forget(self, items: list[Spooled]) -> None:
        """These episodes left the spool: delete the files none of whose episodes remain."""
        done = []
        for it in items:
            if it.file is not None:
                self._files[it.file] -= 1
                if self._files[it.file] <= 0:
                    del self._files[it.file]
                    done.append(it.file)
        if done and self.disk is not None:
            self.disk.remove(done)
