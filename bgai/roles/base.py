"""The one role loop: signals, heartbeats, backoff. Roles only implement one unit of work.

Failure policy, in one place:
- Redis unreachable or out of memory (`store.client.is_unavailable`; OOM is also counted in
  `bgai_redis_oom_errors`): wait with capped, jittered exponential
  backoff and try again, forever: the process never exits for it, so supervisord never marks
  it FATAL.
- SIGTERM / SIGINT: finish the unit in progress, run `teardown`, deregister, exit 0.
- A `BgaiError` refusal (bad config, incompatible data at startup), or Redis refusing the
  credentials or a key (ACL): log it, exit 2.
- Anything else is a bug: log the traceback, exit 1, and supervisord restarts the process.

Heartbeats run on their own thread, so a long unit (or the first JIT compile) never lets the
registry key expire while the process is alive. Each carries the age of the unit in progress
(setup counts as one): past `head.stall_after_s` the record's status is `stalled`, until a unit
finishes. Before its first heartbeat the loop claims its worker id (`register`): another live
process under the same id (two hosts with one hostname) is a refusal, exit 2; a record that is
not refreshed while it watches is a dead predecessor's (a kill -9, restarted before its key
expired) and is taken over. A process whose record another takes over mid-run stops, exit 2.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from dataclasses import dataclass, replace
from types import FrameType
from typing import Protocol

from bgai.clock import Clock
from bgai.config import Config
from bgai.errors import BgaiError
from bgai.obs.metrics import RoleMetrics
from bgai.store import registry
from bgai.store.client import REFUSED, Redis, is_oom, is_unavailable
from bgai.store.keys import Keys
from bgai.store.registry import WorkerInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unit:
    """What one `run_once` did."""

    summary: str = ""
    idle_s: float = 0.0  # wait this long before the next unit (nothing to do now)
    done: bool = False  # the run is over for this role: exit 0


def run_gate(status: str | None) -> tuple[str, Unit | None]:
    """How a worker reacts to the run status: (its registry status, a unit to return instead of
    working, or None to go ahead). stopped: exit 0; paused or no run yet: idle; running: work."""
    if status == "stopped":
        return "stopping", Unit("run stopped: exiting", done=True)
    if status != "running":
        return ("paused" if status == "paused" else "idle"), Unit(idle_s=1.0)
    return "running", None


class DuplicateWorkerError(BgaiError):
    """Another live process holds this worker id in the registry."""

    def __init__(self, worker_id: str, taken: registry.Taken) -> None:
        where = f" on host {taken.hostname!r}" if taken.hostname else ""
        super().__init__(
            f"worker id {worker_id!r} is in use by another live process ({taken.owner}{where}): "
            "give each worker a unique --worker-id (two hosts with the same hostname?)"
        )


class Role(Protocol):
    def setup(self) -> None:
        """Build what the role needs (may touch Redis; retried while it is unreachable)."""

    def run_once(self) -> Unit: ...

    def info(self, now: float) -> WorkerInfo:
        """The registry record as of `now`."""
        ...

    def teardown(self) -> None:
        """Last words on a warm stop (checkpoint, release a lock); Redis may be away."""


class Backoff:
    """Capped exponential backoff with full jitter (`rng` injectable for tests)."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        self.base, self.cap = base_s, cap_s
        self.failures = 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self.rng.random())

    def reset(self) -> None:
        self.failures = 0


class RoleRunner:
    """Runs a role until the run stops or a signal arrives; returns the exit code."""

    def __init__(
        self,
        role: Role,
        worker_id: str,
        cfg: Config,
        r: Redis,
        keys: Keys,
        clock: Clock,
        metrics: RoleMetrics | None = None,
    ) -> None:
        self.role, self.worker_id, self.cfg = role, worker_id, cfg
        self.metrics = metrics
        self.r, self.keys, self.clock = r, keys, clock
        self.stop = threading.Event()
        self.backoff = Backoff(cfg.redis.backoff_base_s, cfg.redis.backoff_max_s)
        self._beat_failing = False
        self.log_every_s = 5.0  # unit summaries are logged at most this often
        self.unit_started: float | None = None  # clock.now() when the unit in progress began
        self.owner = ""  # the registry record's owner once `register` claimed the id
        self.taken: DuplicateWorkerError | None = None  # another process took the id mid-run

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s: signal %d, stopping after this unit", self.worker_id, signum)
        self.stop.set()

    def record(self) -> WorkerInfo:
        """The role's registry record, with the age of the unit in progress and, past
        `head.stall_after_s`, the status `stalled`."""
        now = self.clock.now()
        info = self.role.info(now)
        started = self.unit_started
        age = None if started is None else max(0.0, now - started)
        stalled = registry.stalled(age, self.cfg.head.stall_after_s)
        return replace(info, unit_age_s=age, status="stalled" if stalled else info.status)

    def register(self) -> bool:
        """Claim the worker id with a first heartbeat; False if a stop came first.

        A record of another owner under this id is watched for up to two heartbeat intervals
        (time on this host, Redis's TTL for the record): refreshed, it is a live process and
        this one is refused (DuplicateWorkerError, exit 2); not refreshed, it is a dead
        predecessor's and is replaced."""
        ttl, every = self.cfg.head.heartbeat_ttl_s, self.cfg.head.heartbeat_every_s
        info = self.record()
        seen = registry.heartbeat(self.r, self.keys, info, ttl)
        if seen is not None:
            log.info(
                "%s: the id is registered by %s; watching whether it is alive", self.worker_id, seen.owner
            )
            deadline = time.monotonic() + 2 * every + 1.0
            while time.monotonic() < deadline:
                if self.stop.wait(min(0.5, every / 4)):
                    return False
                now = registry.holder(self.r, self.keys, self.worker_id)
                if now is None:
                    break  # expired: free
                if now.raw != seen.raw or now.pttl_ms > seen.pttl_ms:  # it beat: alive
                    raise DuplicateWorkerError(self.worker_id, now)
            again = registry.heartbeat(self.r, self.keys, info, ttl, replace=seen.raw)
            if again is not None:
                raise DuplicateWorkerError(self.worker_id, again)
            log.info("%s: took over the id from %s (no heartbeat)", self.worker_id, seen.owner)
        self.owner = info.owner
        return True

    def heartbeat(self) -> None:
        if not self.owner or self.taken is not None:
            return  # the id is not ours (yet, or any more)
        try:
            info = self.record()
            if self.metrics is not None:
                self.metrics.set_status(info.status)
                self.metrics.set_model_version(info.model_version)
                self.metrics.unit_age(info.unit_age_s)
            taken = registry.heartbeat(self.r, self.keys, info, self.cfg.head.heartbeat_ttl_s)
            if taken is not None:
                self.taken = DuplicateWorkerError(self.worker_id, taken)
                log.error("%s: refused: %s", self.worker_id, self.taken)
                self.stop.set()
                return
            if self._beat_failing:
                log.info("%s: heartbeat restored", self.worker_id)
            self._beat_failing = False
        except Exception as exc:
            if not self._beat_failing:
                log.warning("%s: heartbeat failed (%s); retrying", self.worker_id, exc)
            self._beat_failing = True

    def _beat_loop(self) -> None:
        while not self.stop.wait(self.cfg.head.heartbeat_every_s):
            self.heartbeat()

    def run(self, install_signals: bool = True) -> int:
        if install_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        beat = threading.Thread(target=self._beat_loop, name="heartbeat", daemon=True)
        beat.start()
        code = 0
        ready = False
        last_log = -float("inf")
        try:
            while not self.stop.is_set():
                try:
                    self.unit_started = self.clock.now()
                    if not ready:
                        if not self.owner and not self.register():
                            break
                        self.role.setup()
                        ready = True
                        self.heartbeat()
                    unit = self.role.run_once()
                    self.unit_started = None
                except BgaiError as exc:
                    log.error("%s: refused: %s", self.worker_id, exc)
                    return 2
                except REFUSED as exc:  # wrong password or a key this role may not touch
                    log.error(
                        "%s: refused by Redis as user %r: %s (check redis.username / password;"
                        " a host joined by token: the token was revoked or replaced)",
                        self.worker_id,
                        self.cfg.redis.username or "default",
                        exc,
                    )
                    return 2
                except Exception as exc:
                    if not is_unavailable(exc):
                        raise
                    self.unit_started = None  # waiting for Redis is not a hung unit
                    if self.metrics is not None and is_oom(exc):
                        self.metrics.redis_oom()
                    wait = self.backoff.next()
                    log.warning("%s: Redis unavailable (%s); retry in %.1f s", self.worker_id, exc, wait)
                    self.stop.wait(wait)
                    continue
                self.backoff.reset()
                if unit.summary and (unit.done or time.monotonic() - last_log >= self.log_every_s):
                    log.info("%s: %s", self.worker_id, unit.summary)
                    last_log = time.monotonic()
                if unit.done:
                    break
                if unit.idle_s > 0:
                    self.stop.wait(unit.idle_s)
        except Exception:
            log.exception("%s: crashed", self.worker_id)
            code = 1
        finally:
            self.stop.set()
            beat.join(timeout=5)
            self._finish(ready)
        return 2 if self.taken is not None else code

    def _finish(self, ready: bool) -> None:
        try:
            if ready:
                self.role.teardown()
        except Exception as exc:
            log.warning("%s: teardown incomplete: %s", self.worker_id, exc)
        if not self.owner or self.taken is not None:
            return  # the record is not ours to remove
        try:
            registry.deregister(self.r, self.keys, self.worker_id, self.owner)
        except Exception as exc:
            log.warning("%s: could not deregister (%s); the registry TTL will", self.worker_id, exc)
