"""`bgai training-worker`: samples the Redis buffer, trains, publishes weights, checkpoints.

Exactly one trains (the trainer lock); a second one waits as a standby. A unit is the train steps
the replay ratio allows right now, at most up to the next publish: steps are owed at
`training.samples_per_position` sampled positions per position pushed since this worker started
(the positions already in the buffer count as new), and training starts once the buffer holds
`training.min_buffer_positions`. Every `publish_every` steps a new version is published; every
`checkpoint_every` steps, and on a warm stop, a checkpoint is written to
`training.checkpoint_dir/{run_id}/` and, with MLflow configured, logged to the run.

The trainer follows the run id in Redis: on a run it has not seen (at start, after
`bgai-runs start` or `resume`) it starts from fresh weights, or from that run's newest checkpoint
if it has one. MLflow logging goes through a background queue: a dead MLflow server never stops
training.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgai.agent import movegen_of, net_of, optimizer_of, train_step_of
from bgai.config import Config, config_hash, model_hash
from bgai.core.network import init_params
from bgai.core.train_step import BATCH_FIELDS, Batch, TrainState, init_train_state
from bgai.errors import BgaiError, NonFiniteWeightsError
from bgai.obs.metrics import RoleMetrics
from bgai.obs.tracking import TrackingQueue
from bgai.roles.base import Unit, run_gate
from bgai.roles.identity import Identity
from bgai.store import runstate, weights
from bgai.store.client import Redis
from bgai.store.codec import check_finite, encode_weights
from bgai.store.keys import Keys
from bgai.store.lock import TrainerLock
from bgai.store.registry import WorkerInfo
from bgai.store.replay import ReplayStore
from bgai.store.sampler import ReplayMirror
from bgai.train.checkpoint import list_checkpoints, load_newest, save_checkpoint, state_digest

log = logging.getLogger(__name__)


class TrainingDivergedError(BgaiError):
    """The weights went NaN or infinite with no good checkpoint to go back to."""


class TrainingWorker:
    def __init__(
        self,
        cfg: Config,
        r: Redis,
        keys: Keys,
        identity: Identity,
        metrics: RoleMetrics | None = None,
        tracking: TrackingQueue | None = None,
    ) -> None:
        self.cfg, self.r, self.keys, self.identity = cfg, r, keys, identity
        self.metrics = metrics or RoleMetrics(identity.worker_id, identity.type, identity.hostname)
        self.tracking = tracking
        self.run_id: str | None = None
        self.status = "starting"
        self.version: int | None = None  # the version this trainer last published
        self.base_pushed: int | None = None
        self.base_step = 0
        self.holds_lock = True  # as if: a fresh trainer has just restored in setup()

    def setup(self) -> None:
        cfg, t = self.cfg, self.cfg.training
        self.net = net_of(cfg)
        self.optimizer = optimizer_of(cfg)
        self.train_step = train_step_of(cfg, self.net, self.optimizer)
        self.fresh_state()
        self.dir = Path(t.checkpoint_dir)
        self.lock = TrainerLock(self.keys, self.identity.owner, cfg.head.trainer_lock_ttl_s)
        self.replay = ReplayStore(self.r, self.keys, cfg.buffer.capacity_positions)
        self.mirror = ReplayMirror(self.replay, movegen_of(cfg).max_plays)
        self.model_hash, self.config_hash = model_hash(cfg), config_hash(cfg)

    def fresh_state(self) -> None:
        t = self.cfg.training
        self.state = init_train_state(init_params(self.net, jax.random.key(t.seed)), self.optimizer)
        self.rng = np.random.default_rng(t.seed)
        self.version = None

    def enter_run(self, run_id: str) -> None:
        """Work on `run_id` from now on: its newest checkpoint, or fresh weights."""
        self.run_id = run_id
        self.dir = Path(self.cfg.training.checkpoint_dir) / run_id
        self.fresh_state()
        if self.tracking is not None and not list_checkpoints(self.dir):
            from bgai.runs.manager import newest_checkpoint

            try:  # a run resumed on this host that trained elsewhere
                newest_checkpoint(self.tracking.tracker, run_id, self.dir)
            except Exception as exc:  # MLflow down: start from what is here
                log.warning("could not fetch run %s's checkpoints from MLflow: %s", run_id, exc)
        self.restore_latest()
        log.info("run %s: step %d, version %s", run_id, self.step, self.version)

    def restore_latest(self) -> None:
        """Continue from the newest good checkpoint if it is ahead of us (a corrupt newer one is
        set aside: `checkpoint.load_newest`); restart the replay-ratio count."""
        found = load_newest(self.dir, self._template(), self.model_hash)
        if found is not None and int(found[1]["step"]) > self.step:
            self._adopt(*found, "resumed from")
        self.base_step = self.step
        self.base_pushed = None

    def _adopt(self, restored: dict[str, Any], meta: dict[str, Any], path: Path, how: str) -> None:
        self.state = TrainState(restored["params"], restored["opt_state"], jnp.asarray(restored["step"]))
        self.rng = np.random.default_rng(self.cfg.training.seed)
        if "rng" in meta:
            self.rng.bit_generator.state = meta["rng"]
        self.version = int(meta.get("model_version", 0))
        log.info(
            "%s %s at step %d, version %d, state %s",
            how,
            path,
            meta["step"],
            self.version,
            state_digest(self._template()),
        )

    def roll_back(self, why: str) -> str:
        """Back to the newest good checkpoint after a diverged step (nothing of the bad state is
        published or written); TrainingDivergedError (exit 2) if there is none to go back to."""
        found = load_newest(self.dir, self._template(), self.model_hash)
        if found is None:
            raise TrainingDivergedError(
                f"{why}, and no checkpoint in {self.dir} to roll back to "
                "(lower training.learning_rate or training.grad_clip)"
            )
        self._adopt(*found, "rolled back to")
        self.base_step = self.step
        self.base_pushed = None
        return f"{why}: rolled back to {found[2].name} (step {self.step}, version {self.version})"

    @property
    def step(self) -> int:
        return int(self.state.step)

    def _template(self) -> dict[str, Any]:
        return {"params": self.state.params, "opt_state": self.state.opt_state, "step": self.state.step}

    def publish(self) -> int:
        """Publish the current params as the next version (above whatever Redis holds)."""
        current = weights.current_version(self.r, self.keys)
        version = (
            max(current if current is not None else -1, self.version if self.version is not None else -1) + 1
        )
        blob = encode_weights(
            self.state.params,
            version=version,
            step=self.step,
            model_hash=self.model_hash,
            config_hash=self.config_hash,
        )
        weights.publish(self.r, self.keys, version, blob)
        self.version = version
        return version

    def checkpoint(self) -> Path:
        meta = {
            "model_hash": self.model_hash,
            "config_hash": self.config_hash,
            "model_version": self.version or 0,
            "run_id": self.run_id,
            "rng": self.rng.bit_generator.state,
        }
        before = {p.name for p in list_checkpoints(self.dir)}
        path = save_checkpoint(
            self.dir, self.step, self._template(), meta, self.cfg.training.keep_checkpoints
        )
        if self.tracking is not None and self.run_id is not None:
            self.tracking.artifact(self.run_id, path, "checkpoints")
            for gone in sorted(before - {p.name for p in list_checkpoints(self.dir)}):
                self.tracking.delete(self.run_id, f"checkpoints/{gone}")
            self.tracking.curves(self.run_id)
        return path

    def run_once(self) -> Unit:
        t = self.cfg.training
        run_id, run_status = runstate.get_run(self.r, self.keys)
        self.status, wait = run_gate(run_status)
        if wait and wait.done:
            return wait
        if run_id is None:
            return Unit(idle_s=1.0)
        if run_id != self.run_id:
            self.enter_run(run_id)
        if not self.lock.acquire(self.r):
            self.status, self.holds_lock = "standby", False
            return Unit(idle_s=min(5.0, self.cfg.head.trainer_lock_ttl_s / 3))
        if not self.holds_lock:  # newly the trainer: take over from the last checkpoint written
            self.holds_lock = True
            self.restore_latest()
        if wait:
            return wait
        if self.version is None or weights.current_version(self.r, self.keys) is None:
            return Unit(f"published initial weights as version {self.publish()}")
        stats = self.replay.stats()
        self.metrics.buffer(stats)
        size, pushed = int(stats.get("size", 0)), int(stats.get("pushed_positions", 0))
        if self.base_pushed is None:
            self.base_pushed = pushed - size
        if size < t.min_buffer_positions:
            self.status = "waiting"
            return Unit(idle_s=1.0)
        self.mirror.refresh()
        if self.mirror.size == 0:  # every live episode was refused (logged and counted)
            self.status = "waiting"
            return Unit(f"no usable episodes in the buffer ({self.mirror.skipped} skipped)", idle_s=1.0)
        owed = int((pushed - self.base_pushed) * t.samples_per_position / t.batch_size) - (
            self.step - self.base_step
        )
        to_publish = t.publish_every - self.step % t.publish_every
        steps = min(owed, to_publish)
        if steps < 1:
            self.status = "waiting"
            return Unit(idle_s=0.2)
        self.status = "training"
        started = time.perf_counter()
        metrics = self._train(steps)
        took = max(time.perf_counter() - started, 1e-9)
        try:  # a diverged step is never published nor checkpointed
            check_finite(self.state.params, f"params after step {self.step}")
        except NonFiniteWeightsError as exc:
            log.error("%s: not publishing; Redis keeps version %s", exc, self.version)
            return Unit(f"step {self.step}: {self.roll_back(str(exc))}")
        losses = {"total": metrics["loss"], "policy": metrics["policy_loss"], "value": metrics["value_loss"]}
        self.metrics.training(losses, steps / took, steps * t.batch_size / took)
        note = ""
        if self.step % t.publish_every == 0:
            note = f", published version {self.publish()}"
        if self.tracking is not None:
            progress = {
                "buffer_positions": size,
                "games_collected": int(stats.get("pushed_episodes", 0)),
                "model_version": self.version or 0,
            }
            self.tracking.metrics(run_id, {**metrics, **progress}, self.step)
        if self.step // t.checkpoint_every != (self.step - steps) // t.checkpoint_every:
            note += f", checkpoint {self.checkpoint().name}"
        return Unit(
            f"step {self.step} loss {metrics['loss']:.4f} (policy {metrics['policy_loss']:.4f}, "
            f"value {metrics['value_loss']:.4f}){note}"
        )

    def _train(self, steps: int) -> dict[str, float]:
        t = self.cfg.training
        per_block = max(1, t.sample_block // t.batch_size)
        m: dict[str, Any] = {}
        done = 0
        while done < steps:
            n = min(per_block, steps - done)
            block = self.mirror.sample(n * t.batch_size, self.rng, self.cfg.buffer.surprise_fraction)
            for i in range(n):
                part = {
                    k: jnp.asarray(block[k][i * t.batch_size : (i + 1) * t.batch_size]) for k in BATCH_FIELDS
                }
                self.state, m = self.train_step(self.state, Batch(**part))
            done += n
        return {k: float(v) for k, v in m.items()}

    def info(self, now: float) -> WorkerInfo:
        return self.identity.info(now, self.status, 0, self.version)

    def teardown(self) -> None:
        if self.step > self.base_step:
            log.info("warm stop: checkpoint %s", self.checkpoint())
        self.lock.release(self.r)
        if self.tracking is not None and not self.tracking.flush(30.0):
            log.warning("MLflow unreachable: %d logging items not sent", self.tracking.pending())
