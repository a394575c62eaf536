"""How the trainer numbers and publishes versions: never one number for two models, never
without the trainer lock.

Redis keeps its append-only file with `appendfsync everysec`, so a host crash can cost it its
last second: Redis comes back holding version V while the trainer had published up to L > V, and
workers already play L. Publishing V+1..L again would put other weights under numbers workers
have seen (they only swap to a higher one, so they would ignore them) and stamp episodes and eval
results with aliased versions. So, before each publish:

1. The trainer reads Redis's (version, nonce) (`weights.published`; every publish stores a random
   nonce beside the version in `model:config`) and compares it with its own last publish (in
   memory, or after a restart the record below). Equal: all is as it left it. Redis lower, or
   no version at all: Redis lost writes, logged, and the lost numbers are skipped, never reused.
   Redis higher, or the same number with another nonce: another publisher (a trainer before a
   takeover, `bgai-runs resume`).
2. The new version is one above the highest of Redis's version, its own last publish and the
   version of the state it trains (the checkpoint it resumed from).
3. It writes that (version, nonce) to `{checkpoint_dir}/{run_id}/published.json` (temporary file,
   fsync, rename, directory fsync) *before* publishing: a write-ahead record that survives the
   crash that cost Redis its last second. A crash between the record and the publish only skips
   a number.
4. It publishes through the fenced script (`weights.publish` with its `TrainerLock`): refused,
   with nothing written, unless the lock holds this trainer's owner token, and refused for
   initial weights whenever Redis holds a version.

What this cannot see: a standby on another host (its own checkpoint directory) has no record of
the versions another trainer published; it learns the version from Redis and from the run's
checkpoints in MLflow.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from bgai.store import weights
from bgai.store.client import Redis
from bgai.store.codec import encode_weights
from bgai.store.keys import Keys
from bgai.store.lock import TrainerLock
from bgai.store.weights import Published
from bgai.train.checkpoint import write_durably

log = logging.getLogger(__name__)

RECORD = "published.json"


def load_record(path: Path) -> Published | None:
    """The (version, nonce) a trainer wrote before its last publish; None if there is none. An
    unreadable record is logged and ignored (Redis and the checkpoint still bound the version)."""
    try:
        raw = json.loads(path.read_bytes())
        version, nonce = raw["version"], raw["nonce"]
        if type(version) is not int or version < 0 or not isinstance(nonce, str):
            raise ValueError(f"version {version!r}, nonce {nonce!r}")
        return Published(version, nonce)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring unreadable publish record %s (%s: %s)", path, type(exc).__name__, exc)
        return None


def save_record(path: Path, rec: Published) -> None:
    write_durably(path, json.dumps({"version": rec.version, "nonce": rec.nonce}).encode())


class Publisher:
    """Publishes one trainer's params as versions (the module docstring says how they are
    numbered); `enter` points it at a run's checkpoint directory."""

    def __init__(self, r: Redis, keys: Keys, lock: TrainerLock, model_hash: str, config_hash: str) -> None:
        self.r, self.keys, self.lock = r, keys, lock
        self.model_hash, self.config_hash = model_hash, config_hash
        self.record: Path | None = None
        self.last: Published | None = None  # this trainer's newest publish, or the record's

    def enter(self, directory: Path) -> None:
        """Publish for the run whose checkpoints are in `directory` (called on each takeover):
        read its record, which another trainer sharing the directory may have moved on."""
        if self.record != directory / RECORD:
            self.record, self.last = directory / RECORD, None
        found = load_record(self.record)
        if found is not None and (self.last is None or found.version > self.last.version):
            self.last = found

    def next_version(self, state_version: int | None) -> int:
        """The number the next publish gets (step 2), after comparing with Redis (step 1)."""
        now = weights.published(self.r, self.keys)
        self._compare(now)
        known = [rec.version for rec in (now, self.last) if rec is not None]
        if state_version is not None:
            known.append(state_version)
        return max(known, default=-1) + 1

    def publish(self, params: Any, step: int, state_version: int | None) -> int:
        """Publish `params` (of a state at `state_version`; None: initial weights, never trained)
        as the next version; NotLockHolderError when the lock is not ours, ModelExistsError for
        initial weights over an existing version (nothing is written in either case)."""
        version = self.next_version(state_version)
        blob = encode_weights(
            params, version=version, step=step, model_hash=self.model_hash, config_hash=self.config_hash
        )
        ours = Published(version, weights.new_nonce())
        if self.record is not None:
            save_record(self.record, ours)
        weights.publish(
            self.r, self.keys, version, blob, lock=self.lock, nonce=ours.nonce, fresh=state_version is None
        )
        self.last = ours
        log.info("published version %d (step %d, nonce %s)", version, step, ours.nonce)
        return version

    def _compare(self, now: Published | None) -> None:
        last = self.last
        if last is None or now == last:
            return
        if now is None or now.version < last.version:
            held = "no version" if now is None else f"version {now.version}"
            log.warning(
                "Redis holds %s, below version %d this trainer published (Redis lost writes, e.g. its "
                "last second in a crash, or `bgai-runs resume` went back to an older checkpoint): "
                "publishing above %d, never reusing a number",
                held,
                last.version,
                last.version,
            )
        elif now.version == last.version:
            log.warning(
                "version %d in Redis is not the one this trainer published (nonce %s, ours %s): "
                "another publisher used that number; publishing above it",
                last.version,
                now.nonce or "none",
                last.nonce,
            )
