"""The run lifecycle behind `bgai-runs`: MLflow holds the runs, Redis says which one the fleet works on.

- `start`: a new MLflow run (`{config_hash}_{timestamp}`, every resolved config value a param,
  the resolved config an artifact, secrets masked in both); made current and `running` in one
  atomic switch (no model; its own, empty buffer and evals), while the fleet may be pushing: see
  `_switch_to`. The trainer sees the new run id and starts from fresh weights.
- `resume`: the run's newest checkpoint (local, or downloaded from the run's artifacts) is checked
  against the config's model shape, its weights installed in Redis at its model version, and the
  run made current and `running`; the trainer restores the same checkpoint, bit for bit.
- `pause` / `stop`: the status key; every role reads it before each unit. Stop also ends the run
  in MLflow (FINISHED).
- `delete`: refused while the run is the fleet's current one and not stopped.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from bgai.agent import net_of, optimizer_of
from bgai.config import DEPLOYMENT_SECTIONS, Config, config_hash, config_to_dict, model_hash
from bgai.config_bounds import PATHS
from bgai.core.network import init_params
from bgai.core.train_step import init_train_state
from bgai.errors import BgaiError
from bgai.obs.tracking import FINISHED, KILLED, RUNNING, RunSummary, Tracker
from bgai.store import runstate, weights
from bgai.store.client import Redis
from bgai.store.codec import encode_weights
from bgai.store.keys import Keys
from bgai.train.checkpoint import list_checkpoints, load_checkpoint


class RunError(BgaiError):
    """A run command that cannot be carried out (unknown run, still running, no checkpoint)."""


@dataclass(frozen=True)
class Resumed:
    run_id: str
    checkpoint: Path
    step: int
    model_version: int


def run_params(cfg: Config) -> dict[str, str]:
    """What defines the run, as `section.key` -> text: every resolved value of the learning
    sections (model, selfplay, search, training, buffer, eval...), none of the deployment ones
    (local, redis, head, mlflow, jax: addresses, credentials, this host's view) and no path on a
    host. The whole resolved config (secrets masked) is the run's `config.yaml` artifact."""
    data = config_to_dict(cfg, masked=True)
    return {
        f"{section}.{key}": str(value)
        for section, values in data.items()
        if section not in DEPLOYMENT_SECTIONS
        for key, value in values.items()
        if f"{section}.{key}" not in PATHS
    }


def run_tags(cfg: Config) -> dict[str, str]:
    """The run's tags: its fleet (`bgai.redis_prefix`), hashes and code."""
    from bgai.obs.metrics import bgai_version
    from bgai.roles.champion import git_commit

    code = bgai_version()
    tags = {
        "bgai.redis_prefix": cfg.redis.prefix,
        "bgai.config_hash": config_hash(cfg),
        "bgai.model_hash": model_hash(cfg),
        "bgai.version": code,
    }
    if git_commit(code):
        tags["mlflow.source.git.commit"] = git_commit(code)
    return tags


def run_name(cfg: Config, now: float) -> str:
    return f"{config_hash(cfg)}_{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}"


def checkpoint_dir(cfg: Config, run_id: str) -> Path:
    """Where the trainer writes a run's checkpoints (also logged to the run as artifacts)."""
    return Path(cfg.training.checkpoint_dir) / run_id


def train_template(cfg: Config) -> dict[str, Any]:
    """The checkpoint's structure for this config (shapes are what a checkpoint must match)."""
    net = net_of(cfg)
    state = init_train_state(init_params(net, jax.random.key(0)), optimizer_of(cfg))
    return {"params": state.params, "opt_state": state.opt_state, "step": state.step}


def log_config(tracker: Tracker, run_id: str, cfg: Config, source: str = "") -> None:
    """The run's config as its `config.yaml` artifact: the resolved values (file, env and `--set`
    merged over the defaults) with every secret masked, never a file as given (it may hold a
    password); `source` names where it came from, in a comment."""
    import yaml

    header = f"# bgai's resolved config{f' ({source})' if source else ''}; secrets masked\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(header + yaml.safe_dump(config_to_dict(cfg, masked=True), sort_keys=True))
        tracker.log_artifact(run_id, path)


def newest_checkpoint(tracker: Tracker | None, run_id: str, directory: Path) -> Path | None:
    """The run's newest checkpoint in `directory`, downloaded first from the run's MLflow
    artifacts if MLflow has a newer one (another host trained it, or the local copy is gone)."""
    local = list_checkpoints(directory)
    if tracker is None:
        return local[-1] if local else None
    remote = sorted(a for a in tracker.list_artifacts(run_id, "checkpoints") if a.endswith(".bgai"))
    if remote and (not local or Path(remote[-1]).name > local[-1].name):
        got = tracker.download(run_id, remote[-1], directory / ".download")
        target = directory / got.name
        got.replace(target)  # same filesystem: an atomic rename into place
        shutil.rmtree(directory / ".download", ignore_errors=True)
        return target
    return local[-1] if local else None


class RunManager:
    def __init__(self, cfg: Config, r: Redis, keys: Keys, tracker: Tracker) -> None:
        self.cfg, self.r, self.keys, self.tracker = cfg, r, keys, tracker

    def require(self, run_id: str) -> RunSummary:
        run = self.tracker.get_run(run_id)
        if run is None:
            raise RunError(
                f"no run {run_id!r} in MLflow experiment {self.tracker.experiment!r} ({self.tracker.uri})"
            )
        return run

    def current(self) -> tuple[str | None, str | None]:
        return runstate.get_run(self.r, self.keys)

    def start(self, config_file: Path | None, now: float | None = None) -> str:
        run_id = self.tracker.create_run(
            run_name(self.cfg, time.time() if now is None else now), run_params(self.cfg), run_tags(self.cfg)
        )
        source = f"from {config_file.name}, BGAI_* env and --set" if config_file else ""
        log_config(self.tracker, run_id, self.cfg, source)
        self._end_current()
        self._switch_to(run_id, clear_model=True)
        return run_id

    def resume(self, run_id: str) -> Resumed:
        """Make `run_id` current and running from its newest checkpoint.

        The run the fleet is on and has not stopped just runs again (its trainer never left
        it). Otherwise the checkpoint's weights go to Redis at the checkpoint's model version,
        or, if Redis already holds a later version of this run, as the next version: a version
        number never goes backwards. The trainer restores the same checkpoint.
        """
        self.require(run_id)
        path = self._newest_checkpoint(run_id)
        restored, meta = load_checkpoint(path, train_template(self.cfg), model_hash(self.cfg))
        step, version = int(meta["step"]), int(meta.get("model_version", 0))
        current, status = self.current()
        if current == run_id and status in ("running", "paused"):
            runstate.set_status(self.r, self.keys, "running")
            return Resumed(run_id, path, step, weights.current_version(self.r, self.keys) or version)
        if current != run_id:
            self._end_current()
            weights.clear(self.r, self.keys)  # the new run's model is the checkpoint's
        held = weights.current_version(self.r, self.keys)
        if held is not None and held > version:
            version = held + 1
        blob = encode_weights(
            restored["params"],
            version=version,
            step=step,
            model_hash=model_hash(self.cfg),
            config_hash=str(meta.get("config_hash", config_hash(self.cfg))),
        )
        weights.install(self.r, self.keys, version, blob)
        self._switch_to(run_id)
        self.tracker.set_status(run_id, RUNNING)
        return Resumed(run_id, path, step, version)

    def set_status(self, status: str) -> str:
        run_id, _ = self.current()
        if run_id is None:
            raise RunError("no current run: start one with `bgai-runs start`")
        runstate.set_status(self.r, self.keys, status)
        if status == "stopped":
            self._finish(run_id, FINISHED)
        return run_id

    def delete(self, run_id: str, delete_checkpoints: bool) -> list[str]:
        self.require(run_id)
        current, status = self.current()
        if current == run_id and status != "stopped":
            raise RunError(f"run {run_id} is the fleet's current run ({status}): `bgai-runs stop` it first")
        done = []
        if delete_checkpoints:
            local = checkpoint_dir(self.cfg, run_id)
            if local.is_dir():
                shutil.rmtree(local)
                done.append(f"removed {local}")
            stored = self.tracker.list_artifacts(run_id)
            if "checkpoints" in stored:
                self.tracker.delete_artifacts(run_id, "checkpoints")
                done.append("removed the run's checkpoints from MLflow")
            if "champion" in stored:  # registered models point at them: the registry decides
                done.append(
                    f"kept its champions (champion/: versions of the registered model "
                    f"{self.cfg.mlflow.model_name}; delete those in MLflow's model registry)"
                )
        self.tracker.delete_run(run_id)
        done.append(f"deleted run {run_id} from MLflow")
        return done

    def _newest_checkpoint(self, run_id: str) -> Path:
        path = newest_checkpoint(self.tracker, run_id, checkpoint_dir(self.cfg, run_id))
        if path is None:
            raise RunError(f"run {run_id} has no checkpoint, locally or in MLflow: nothing to resume")
        return path

    def _end_current(self) -> None:
        """The run the fleet leaves behind is ended in MLflow (KILLED unless it was stopped)."""
        current, status = self.current()
        if current is not None:
            self._finish(current, FINISHED if status == "stopped" else KILLED)

    def _finish(self, run_id: str, status: str) -> None:
        run = self.tracker.get_run(run_id)
        if run is not None and run.status == RUNNING:
            self.tracker.set_status(run_id, status)

    def _switch_to(self, run_id: str, clear_model: bool = False) -> None:
        """The fleet moves to `run_id` in one atomic step, even while it pushes and evaluates
        (`runstate.switch_run`)."""
        runstate.switch_run(self.r, self.keys, run_id, clear_model=clear_model)
