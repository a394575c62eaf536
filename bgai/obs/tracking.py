"""MLflow tracking: a thin client over one tracking server, and a queue that never blocks a role.

`Tracker` wraps `MlflowClient` (no fluent API, no global active run) for the calls bgai makes.
`TrackingQueue` is what the roles use: `metrics()` and `artifact()` only append to a bounded
in-memory queue; a daemon thread sends it to the server, and when the server is down it keeps
the items and retries with capped exponential backoff. A role therefore trains on while MLflow
is away, and its metrics arrive when MLflow is back (the oldest are dropped, counted, past
`max_items`).

A version that becomes a run's champion (its best by the yardstick, roles/champion.py) is logged
as artifacts (`champion/v<N>/`: its weights, config and evaluation), registered as a version of
the model `mlflow.model_name`, and given the alias `champion`: `bgai eval --model champion`.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bgai.config import MlflowConfig

log = logging.getLogger(__name__)

RUNNING, FINISHED, KILLED = "RUNNING", "FINISHED", "KILLED"
CHAMPION = "champion"  # the registered model's alias for a run's best evaluated version
# Evaluation metrics are logged at step = model version under `eval/` (`eval/<opponent>/win_rate`,
# `.../ppg` with `_lo`/`_hi` 95% bounds, `eval/decisions/er`...); the trainer's at step = train
# step, outside `eval/`: the MLflow UI groups charts by that first part, so no chart mixes them.
EVAL_PREFIX = "eval/"


def eval_key(group: str, name: str) -> str:
    """`eval/<group>/<name>`: group is an opponent, or `decisions` for the decision set's ER."""
    return f"{EVAL_PREFIX}{group}/{name}"


def win_rate_keys(keys: Any) -> dict[str, str]:
    """{opponent: its win-rate metric key} among `keys` (bounds left out)."""
    out = {}
    for k in keys:
        group, _, name = str(k).removeprefix(EVAL_PREFIX).partition("/")
        if str(k).startswith(EVAL_PREFIX) and name == "win_rate":
            out[group] = str(k)
    return out


def client_env(cfg: MlflowConfig | None = None) -> None:
    """MLflow client settings for bgai processes (call once, from a command's entry point).

    Fail fast (our queue retries, rather than MLflow's 7 retries of up to 120 s each), and keep
    MLflow's "View run at ..." lines out of our output. A basic-auth user and password in `cfg`
    (`mlflow.password_file`: the password comes from a file, not the process's environment)
    are what MLflow's client sends; set only in this process.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if cfg is not None and cfg.username:
        os.environ["MLFLOW_TRACKING_USERNAME"] = cfg.username
    if cfg is not None and cfg.password:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = cfg.password


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    name: str
    status: str  # MLflow's: RUNNING | FINISHED | KILLED | FAILED | SCHEDULED
    start_time: float  # seconds since the epoch
    metrics: dict[str, float]  # latest value of each metric
    params: dict[str, str]
    tags: dict[str, str] = field(default_factory=dict)


class Tracker:
    """The MLflow calls bgai makes, for one tracking URI and experiment."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri, self.experiment = uri, experiment
        self._client: Any = None
        self._experiment_id: str | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            self._experiment_id = (
                found.experiment_id if found is not None else self.client.create_experiment(self.experiment)
            )
        return self._experiment_id

    def create_run(self, name: str, params: dict[str, str], tags: dict[str, str] | None = None) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id(), run_name=name, tags=tags)
        run_id = str(run.info.run_id)
        items = [Param(k, v) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=items[i : i + 100])
        return run_id

    def log_rows(self, run_id: str, rows: list[tuple[str, float, int, int]]) -> None:
        """(key, value, step, time ms) rows in one request (MLflow takes up to 1000)."""
        from mlflow.entities import Metric

        self.client.log_batch(run_id, metrics=[Metric(k, float(v), at, step) for k, v, step, at in rows])

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        return [a.path for a in self.client.list_artifacts(run_id, path)]

    def download(self, run_id: str, path: str, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, path, str(dest)))

    def delete_artifacts(self, run_id: str, path: str) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        run = self.client.get_run(run_id)
        get_artifact_repository(run.info.artifact_uri, tracking_uri=self.uri).delete_artifacts(path)

    def set_status(self, run_id: str, status: str) -> None:
        if status == RUNNING:
            self.client.update_run(run_id, status=RUNNING)
        else:
            self.client.set_terminated(run_id, status)

    def get_run(self, run_id: str) -> RunSummary | None:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        if run.info.lifecycle_stage == "deleted":
            return None
        return _summary(run)

    def runs(self, status: str | None = None) -> list[RunSummary]:
        """Every live run of the experiment (only those of `status`, e.g. RUNNING), newest first."""
        where = f"attributes.status = '{status}'" if status else ""
        found = self.client.search_runs(
            [self.experiment_id()], filter_string=where, order_by=["attribute.start_time DESC"]
        )
        return [_summary(r) for r in found]

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(int(m.step), float(m.value)) for m in self.client.get_metric_history(run_id, key)]

    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    def register_champion(self, run_id: str, artifact_path: str, name: str, tags: dict[str, str]) -> str:
        """Register the run's artifacts at `artifact_path` as a version of model `name` (made if
        new) and move its `champion` alias there; returns the registry's version. Idempotent: a
        retry after a lost answer finds the version it made (same run, same `model_version` tag)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(
                name, description="bgai backgammon models; the alias `champion` is a run's best."
            )
        except MlflowException as exc:
            if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
        made = [
            mv
            for mv in self.client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
            if mv.tags.get("model_version") == tags.get("model_version")
        ]
        if made:
            version = str(made[0].version)
        else:
            source = f"{self.client.get_run(run_id).info.artifact_uri}/{artifact_path}"
            mv = self.client.create_model_version(name, source, run_id=run_id, tags=tags)
            version = str(mv.version)
        self.client.set_registered_model_alias(name, CHAMPION, version)
        return version

    def registered(self, name: str, which: str) -> tuple[str, str, dict[str, str]]:
        """(run id, artifact path, tags) of model `name`'s version `which`: a number, or an
        alias such as `champion`. MlflowException when there is none."""
        if which.isdigit():
            mv = self.client.get_model_version(name, which)
        else:
            mv = self.client.get_model_version_by_alias(name, which)
        tags = dict(mv.tags)
        return str(mv.run_id), tags.get("artifact_path", ""), tags


def _summary(run: Any) -> RunSummary:
    return RunSummary(
        run_id=str(run.info.run_id),
        name=str(run.info.run_name or ""),
        status=str(run.info.status),
        start_time=(run.info.start_time or 0) / 1000.0,
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags=dict(run.data.tags),
    )


class TrackingQueue:
    """Fire-and-forget logging for the roles: a bounded queue sent by a daemon thread."""

    def __init__(
        self, tracker: Tracker, max_items: int = 20_000, backoff_s: tuple[float, float] = (1.0, 60.0)
    ) -> None:
        self.tracker = tracker
        self.max_items = max_items
        self.backoff_s = backoff_s
        self.dropped = 0
        self.sent = 0
        self._items: collections.deque[tuple[str, tuple[Any, ...]]] = collections.deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._inflight = 0  # items at the head being sent (they stay queued until they are)
        # In-flight items already counted as dropped to keep the bound (the queue was full and
        # all of it in flight): removed if their send fails, uncounted if it succeeds.
        self._owed = 0

    def metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        self._put("metrics", (run_id, dict(metrics), int(step), int(time.time() * 1000)))

    def artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self._put("artifact", (run_id, Path(path), artifact_path))

    def delete(self, run_id: str, artifact_path: str) -> None:
        """Remove an artifact (a checkpoint pruned locally is pruned in MLflow too); if its
        upload is still queued, the upload is dropped instead."""
        folder, _, name = artifact_path.rpartition("/")
        with self._cv:
            for i, (kind, args) in enumerate(self._items):
                if i < self._inflight:
                    continue
                if (
                    kind == "artifact"
                    and args[0] == run_id
                    and args[1].name == name
                    and args[2] == (folder or None)
                ):
                    del self._items[i]
                    return
        self._put("delete", (run_id, artifact_path))

    def champion(
        self, run_id: str, files: dict[str, bytes], folder: str, name: str, tags: dict[str, str]
    ) -> None:
        """Log `files` ({file name: bytes}) under `folder` of the run, register them as a version
        of model `name` with `tags` and move the `champion` alias to it."""
        self._put("champion", (run_id, dict(files), folder, name, dict(tags)))

    def curves(self, run_id: str) -> None:
        """Redraw the run's PNG curves from its metric history and log them (`curves/`)."""
        with self._cv:
            if any(kind == "curves" and args == (run_id,) for kind, args in self._items):
                return  # one redraw pending is enough
        self._put("curves", (run_id,))

    def pending(self) -> int:
        """Items queued and not given up (at most `max_items`)."""
        with self._cv:
            return len(self._items) - self._owed

    def _put(self, kind: str, args: tuple[Any, ...]) -> None:
        with self._cv:
            if kind == "artifact" and args[2] == "checkpoints":
                # only the newest checkpoint needs uploading: it takes the place in the queue of
                # a queued older one (in place, so that a steady stream never starves it)
                for i, (k, a) in enumerate(self._items):
                    if k == "artifact" and a[0] == args[0] and a[2] == args[2] and i >= self._inflight:
                        self._items[i] = (kind, args)
                        return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mlflow", daemon=True)
                self._thread.start()
            if len(self._items) - self._owed >= self.max_items:
                if self._owed < self._inflight:
                    self._owed += 1  # the oldest one being sent: dropped if its send fails
                else:
                    del self._items[self._inflight]  # the oldest item not being sent
                self.dropped += 1
            self._items.append((kind, args))
            self._cv.notify()

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued is sent (True) or `timeout_s` passes (False)."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._items or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.2))
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued, for at most `timeout_s`, then stop the thread."""
        self.flush(timeout_s)
        with self._cv:
            self._closing = True
            self._cv.notify_all()

    def _head(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The next request: the first item, with the metrics items after it batched in."""
        kind, args = self._items[0]
        if kind != "metrics":
            return [(kind, args)]
        group, count = [], 0
        for item in self._items:
            if item[0] != "metrics" or item[1][0] != args[0] or count + len(item[1][1]) > 1000:
                break
            group.append(item)
            count += len(item[1][1])
        return group or [(kind, args)]

    def _run(self) -> None:
        delay = self.backoff_s[0]
        down = False
        while True:
            with self._cv:
                while not self._items and not self._closing:
                    self._cv.wait()
                if not self._items:
                    return
                group = self._head()
                self._inflight = len(group)
            try:
                self._send(group)
            except Exception as exc:  # server down or refusing: keep the items, retry later
                with self._cv:
                    for _ in range(self._owed):
                        self._items.popleft()
                    self._inflight = self._owed = 0
                    self._drop_superseded_head()
                    if self._closing:
                        return
                if not down:
                    log.warning("MLflow logging failed (%s); retrying with backoff", _short(exc))
                    down = True
                time.sleep(delay)
                delay = min(delay * 2, self.backoff_s[1])
                continue
            if down:
                log.info("MLflow logging resumed")
                down = False
            delay = self.backoff_s[0]
            with self._cv:
                for _ in group:
                    self._items.popleft()
                self.sent += len(group)
                self.dropped -= self._owed  # sent after all
                self._inflight = self._owed = 0
                self._cv.notify_all()

    def _drop_superseded_head(self) -> None:
        """A checkpoint upload that failed while a newer one of its run and folder was queued
        behind it is not retried: only the newest checkpoint needs uploading."""
        if not self._items:
            return
        kind, args = self._items[0]
        if kind != "artifact" or args[2] != "checkpoints":
            return
        if any(k == "artifact" and a[0] == args[0] and a[2] == args[2] for k, a in list(self._items)[1:]):
            self._items.popleft()

    def _send(self, group: list[tuple[str, tuple[Any, ...]]]) -> None:
        kind, args = group[0]
        if kind == "metrics":
            rows = [(k, v, a[2], a[3]) for _, a in group for k, v in a[1].items()]
            self.tracker.log_rows(args[0], rows)
        elif kind == "artifact":
            if Path(args[1]).exists():  # a checkpoint pruned meanwhile is skipped
                self.tracker.log_artifact(*args)
        elif kind == "champion":
            self._register(*args)
        elif kind == "delete":
            folder, _, name = args[1].rpartition("/")
            if name in {p.rpartition("/")[2] for p in self.tracker.list_artifacts(args[0], folder or None)}:
                self.tracker.delete_artifacts(*args)
        else:
            self._draw(args[0])

    def _register(
        self, run_id: str, files: dict[str, bytes], folder: str, name: str, tags: dict[str, str]
    ) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for file, data in files.items():
                (Path(tmp) / file).write_bytes(data)
            self.tracker.client.log_artifacts(run_id, tmp, folder)
        version = self.tracker.register_champion(run_id, folder, name, {**tags, "artifact_path": folder})
        log.info("model %s version %s (%s) is the champion", name, version, folder)

    def _draw(self, run_id: str) -> None:
        import tempfile

        from bgai.obs.curves import LOSSES, plot_curves

        run = self.tracker.get_run(run_id)
        if run is None:
            return
        losses = {k: self.tracker.history(run_id, k) for k in LOSSES if k in run.metrics}
        evals = {opp: self.tracker.history(run_id, k) for opp, k in win_rate_keys(run.metrics).items()}
        with tempfile.TemporaryDirectory() as tmp:
            path = plot_curves(losses, evals, Path(tmp) / "training_curves.png")
            self.tracker.log_artifact(run_id, path, "curves")


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
