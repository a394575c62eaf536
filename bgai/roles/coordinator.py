"""`bgai coordinator`: the run's lifecycle, reaping dead workers, and Prometheus targets.

One unit: publish the head's bgai version (`run:head`, store/head.py), make sure a run exists
(if Redis has none: a new MLflow run when `mlflow.tracking_uri` is set, else a random id; made
current and `running`), forget workers whose registry key
expired (Redis's clock: a worker's own clock is never compared with ours), note the workers whose
unit in progress ran past `head.stall_after_s` (a warning when one stalls or recovers, and the
`bgai_stalled_workers` gauge), then publish the live workers' metrics endpoints to
`metrics:targets` and to a Prometheus file_sd file (written to a temporary file and renamed, so
Prometheus never reads half a file).
A Redis that lost its run (emptied: its append-only file removed or replaced) while MLflow shows
a run of this fleet (same `redis.prefix`) RUNNING gets no new run, which would silently restart
training from scratch: the coordinator says so in one log line, reports `blocked` (registry
status, and `bgai_run_info{run_status="not_in_redis"}`) and waits for `bgai-runs resume` or
`bgai-runs start`.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from bgai.clock import Clock
from bgai.config import Config
from bgai.obs import webconfig
from bgai.obs.metrics import RoleMetrics, bgai_version
from bgai.obs.tracking import RUNNING, RunSummary, Tracker
from bgai.roles.base import Unit
from bgai.roles.identity import Identity
from bgai.store import head, joined, registry, runstate
from bgai.store.client import Redis
from bgai.store.keys import Keys
from bgai.store.registry import WorkerInfo

log = logging.getLogger(__name__)


def targets_of(workers: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """[{host, port, labels}] of live workers serving /metrics, sorted for stable output."""
    out = []
    for _, rec in sorted(workers.items()):
        port = int(rec.get("metrics_port") or 0)
        if port > 0:
            # target labels only: metric labels (worker_id, ...) come from the worker itself
            labels = {"role": str(rec.get("type", "")), "device": str(rec.get("device_type", ""))}
            host = str(rec.get("metrics_host") or rec.get("hostname", ""))
            out.append({"host": host, "port": port, "labels": labels})
    return out


def file_sd(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prometheus file_sd groups: one per target (its labels are per worker)."""
    return [{"targets": [f"{t['host']}:{t['port']}"], "labels": t["labels"]} for t in targets]


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Coordinator:
    def __init__(
        self,
        cfg: Config,
        r: Redis,
        keys: Keys,
        identity: Identity,
        clock: Clock,
        metrics: RoleMetrics | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self.cfg, self.r, self.keys, self.identity, self.clock = cfg, r, keys, identity, clock
        self.metrics = metrics
        self.tracker = tracker
        self.status = "starting"
        self.reaped = 0  # workers reaped by this process (a count: a list would grow forever)
        self.stalled: set[str] = set()  # live workers stalled as of the last pass
        self._last_targets: str | None = None
        self._web_config_error = ""  # the last failure to write Prometheus's web config (logged once)
        self.orphans: tuple[str, ...] = ()  # RUNNING MLflow runs it waits on (Redis has none)
        self.head = head.HeadInfo(bgai_version(), identity.hostname)

    def setup(self) -> None:
        self.targets_path = Path(self.cfg.head.targets_file)

    def sync_web_config(self) -> None:
        """Prometheus's basic-auth users = its base file's + one per host joined by token
        (`head.prometheus_web_config`; bgai.obs.webconfig): a revoked host is refused from here on."""
        path = self.cfg.head.prometheus_web_config
        if not path:
            return
        users = joined.metrics_users(self.r, self.keys)
        try:
            if webconfig.sync(Path(path), users):
                log.info("Prometheus web config %s: %d joined host(s)", path, len(users))
        except (OSError, ValueError) as exc:  # a missing or broken base file: the operator's to fix
            if str(exc) != self._web_config_error:
                log.error("cannot write Prometheus's web config %s: %s", path, exc)
            self._web_config_error = str(exc)
        else:
            self._web_config_error = ""

    def run_once(self) -> Unit:
        h = self.cfg.head
        head.publish(self.r, self.keys, self.head, h.heartbeat_ttl_s)
        if runstate.get_run(self.r, self.keys)[0] is None:
            new_id = self.new_run_id()
            if new_id is None:  # MLflow down (waiting), or a run Redis lost (blocked)
                return Unit(idle_s=5.0)
            runstate.ensure_run(self.r, self.keys, new_id)
        run_id, status = runstate.get_run(self.r, self.keys)
        if run_id is None or status is None:  # cleared meanwhile: next unit
            return Unit(idle_s=h.coordinator_every_s)
        self.status = "running"
        if self.orphans:
            log.info("run %s is current: carrying on", run_id)
            self.orphans = ()
        if self.metrics is not None:
            self.metrics.run(run_id, status)
        dead = registry.reap(self.r, self.keys)
        self.reaped += len(dead)
        live = registry.live_workers(self.r, self.keys)
        self.note_stalls(live)
        if self.metrics is not None:
            self.metrics.expected_workers("game", h.expected_game_workers)
            self.metrics.expected_workers("eval", h.expected_eval_workers)
        targets = targets_of(live)
        text = json.dumps(targets, sort_keys=True)
        self.r.set(self.keys.metrics_targets, text)
        if text != self._last_targets or not self.targets_path.exists():
            write_atomic(self.targets_path, json.dumps(file_sd(targets), indent=1, sort_keys=True) + "\n")
            self._last_targets = text
        self.sync_web_config()
        summary = f"reaped {', '.join(dead)}" if dead else ""
        return Unit(summary, idle_s=h.coordinator_every_s)

    def note_stalls(self, live: dict[str, dict[str, Any]]) -> None:
        """Which live workers are stalled now (their own heartbeat says so, or reports a unit
        older than `head.stall_after_s`): logged when that changes, and exported."""
        limit = self.cfg.head.stall_after_s
        now = {
            i
            for i, rec in live.items()
            if rec.get("status") == "stalled" or registry.stalled(rec.get("unit_age_s"), limit)
        }
        for i in sorted(now - self.stalled):
            age = live[i].get("unit_age_s")
            shown = f"{age:.0f}" if isinstance(age, int | float) else "?"
            log.warning("worker %s stalled: its unit in progress has run %s s (> %g s)", i, shown, limit)
        for i in sorted(self.stalled - now):
            log.info("worker %s %s", i, "progresses again" if i in live else "is gone")
        self.stalled = now
        if self.metrics is not None:
            self.metrics.stalled_workers(len(now))

    def new_run_id(self) -> str | None:
        """A run for a fleet that has none: a new MLflow run if tracking is on. None: wait, for
        MLflow (down or refusing: `waiting`) or for an operator (MLflow shows a run of this fleet
        RUNNING that Redis lost: `blocked`)."""
        if self.tracker is None:
            return uuid.uuid4().hex
        from bgai.runs.manager import log_config, run_name, run_params, run_tags

        try:
            running = self.lost_runs(self.tracker)
            if running:
                self.block(running)
                return None
            name = run_name(self.cfg, self.clock.now())
            run_id = self.tracker.create_run(name, run_params(self.cfg), run_tags(self.cfg))
            log_config(self.tracker, run_id, self.cfg)
            return run_id
        except Exception as exc:  # MLflow down or refusing: the fleet waits for a run
            log.warning("cannot create an MLflow run at %s: %s", self.tracker.uri, str(exc).splitlines()[0])
            self.status = "waiting"
            return None

    def lost_runs(self, tracker: Tracker) -> list[RunSummary]:
        """Runs of this fleet (its `redis.prefix`, or no prefix recorded) that MLflow shows
        RUNNING, newest first: with none in Redis, Redis has lost them."""
        prefix = self.cfg.redis.prefix

        def fleet_of(run: RunSummary) -> str:  # a tag; a param in runs made before stop 36
            return run.tags.get("bgai.redis_prefix", run.params.get("redis.prefix", prefix))

        return [r for r in tracker.runs(RUNNING) if fleet_of(r) == prefix]

    def block(self, running: list[RunSummary]) -> None:
        """Wait for `bgai-runs` instead of starting a new run; said once per set of runs."""
        self.status = "blocked"
        ids = tuple(r.run_id for r in running)
        if ids != self.orphans:
            self.orphans = ids
            log.error(
                "Redis holds no run, but MLflow shows %s RUNNING for prefix %r (was Redis emptied?): "
                "not starting a new run over it; `bgai-runs resume --run-id %s` continues it, "
                "`bgai-runs start` begins a new one",
                ", ".join(ids),
                self.cfg.redis.prefix,
                ids[0],
            )
        if self.metrics is not None:
            self.metrics.run(ids[0], "not_in_redis")

    def info(self, now: float) -> WorkerInfo:
        return self.identity.info(now, self.status)

    def teardown(self) -> None:
        """Nothing to hand over: the next coordinator rebuilds everything from Redis."""
