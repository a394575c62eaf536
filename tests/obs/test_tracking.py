"""The tracking queue's own logic with a recording stand-in for MLflow (the real server is in
tests/runs): batching, coalesced checkpoint uploads, retry after failures, nothing lost."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from bgai.obs.tracking import TrackingQueue


class Recorder:
    """Records calls; fails while `down` is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.down = False

    def _call(self, name: str, *args: Any) -> None:
        if self.down:
            raise ConnectionError("MLflow is down")
        self.calls.append((name, args))

    def log_rows(self, run_id: str, rows: list) -> None:
        self._call("rows", run_id, list(rows))

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self._call("artifact", run_id, Path(path).name, artifact_path)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        return []


def test_metrics_are_batched_and_survive_an_outage(tmp_path: Path) -> None:
    rec = Recorder()
    q = TrackingQueue(rec, backoff_s=(0.01, 0.05))  # type: ignore[arg-type]
    rec.down = True
    for step in range(400):
        q.metrics("run", {"loss": 1.0, "policy_loss": 0.5, "value_loss": 0.5}, step)
    assert not q.flush(0.3) and q.pending() == 400  # kept while down
    rec.down = False
    assert q.flush(10)
    rows = [row for name, (run, batch) in rec.calls if name == "rows" for row in batch]
    assert len(rows) == 1200 and sorted({r[2] for r in rows}) == list(range(400))
    assert len(rec.calls) == 2  # 1000 metrics per request at most: 333 steps, then 67
    q.close(1)


def test_only_the_newest_checkpoint_upload_waits(tmp_path: Path) -> None:
    rec = Recorder()
    rec.down = True
    q = TrackingQueue(rec, backoff_s=(0.01, 0.05))  # type: ignore[arg-type]
    files = []
    for i in range(5):
        f = tmp_path / f"ckpt_{i:09d}.bgai"
        f.write_bytes(b"x")
        files.append(f)
        q.artifact("run", f, "checkpoints")
    q.delete("run", "checkpoints/ckpt_000000000.bgai")  # its upload was superseded: nothing to do
    q.artifact("run", tmp_path / "ckpt_000000004.bgai", "other")
    rec.down = False
    assert q.flush(10)
    uploads = [args[1:] for name, args in rec.calls if name == "artifact"]
    checkpoints = [n for n, folder in uploads if folder == "checkpoints"]
    # Each newer checkpoint took the queued one's place, and a failed upload with a newer one
    # queued behind it is not retried: besides ckpt 4, at most the one whose send was under way
    # when the server came back goes up (if that was ckpt 0, its delete is a no-op: not listed)
    assert checkpoints[-1] == "ckpt_000000004.bgai" and len(checkpoints) <= 2
    assert ("ckpt_000000004.bgai", "other") in uploads  # another folder is not coalesced
    q.close(1)


def test_a_full_queue_drops_the_oldest_unsent_items() -> None:
    rec = Recorder()
    rec.down = True
    q = TrackingQueue(rec, max_items=10, backoff_s=(0.01, 0.05))  # type: ignore[arg-type]
    for step in range(25):
        q.metrics("run", {"loss": float(step)}, step)
    assert q.pending() == 10 and q.dropped == 15
    rec.down = False
    assert q.flush(10)
    steps = sorted(r[2] for name, (run, batch) in rec.calls if name == "rows" for r in batch)
    assert len(steps) == 10 and steps[-1] == 24  # the newest kept, each sent once
    q.close(1)


class Gate(Recorder):
    """A send blocks until `release` is set (it is in flight meanwhile); `failed` is set once a
    send has failed."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release, self.failed = threading.Event(), threading.Event(), threading.Event()

    def _call(self, name: str, *args: Any) -> None:
        self.entered.set()
        assert self.release.wait(10)
        try:
            super()._call(name, *args)
        except ConnectionError:
            self.failed.set()
            raise


def test_the_bound_holds_while_the_whole_queue_is_in_flight() -> None:
    """Items put while everything queued is being sent: the oldest in flight are given up first
    (counted at once, removed if the send fails), so the queue never holds more than `max_items`
    and always the newest; if the send succeeds after all, nothing was lost and the count says so."""
    for fails in (True, False):
        rec = Gate()
        rec.down = fails
        q = TrackingQueue(rec, max_items=4, backoff_s=(0.01, 0.05))  # type: ignore[arg-type]
        with q._cv:  # the sender cannot take a request until all four are queued
            for step in range(4):
                q.metrics("run", {"loss": float(step)}, step)
        assert rec.entered.wait(10)  # the sender holds all four in one request
        for step in range(4, 7):
            q.metrics("run", {"loss": float(step)}, step)
            assert q.pending() == 4
        assert q.dropped == 3
        rec.release.set()
        if fails:
            assert rec.failed.wait(10)
            rec.down = False  # a retry succeeds
        assert q.flush(10)
        steps = sorted(r[2] for name, (run, batch) in rec.calls if name == "rows" for r in batch)
        if fails:  # 0, 1 and 2 given up; 3 and the three newer sent
            assert steps == [3, 4, 5, 6] and q.dropped == 3
        else:  # the four in flight arrived after all: nothing dropped
            assert steps == list(range(7)) and q.dropped == 0
        q.close(1)


def test_a_failed_checkpoint_upload_with_a_newer_one_queued_is_not_retried(tmp_path: Path) -> None:
    rec = Gate()
    rec.down = True
    q = TrackingQueue(rec, backoff_s=(0.01, 0.05))  # type: ignore[arg-type]
    for i in range(2):
        (tmp_path / f"ckpt_{i}.bgai").write_bytes(b"x")
    q.artifact("run", tmp_path / "ckpt_0.bgai", "checkpoints")
    assert rec.entered.wait(10)  # ckpt 0 is being sent
    q.artifact("run", tmp_path / "ckpt_1.bgai", "checkpoints")  # queued behind it
    assert q.pending() == 2
    rec.release.set()
    assert rec.failed.wait(10)
    rec.down = False
    assert q.flush(10)
    assert [args[1] for name, args in rec.calls if name == "artifact"] == ["ckpt_1.bgai"]
    q.close(1)
