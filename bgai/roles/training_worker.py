"""`bgai training-worker`: samples the Redis buffer, trains, publishes weights, checkpoints.

Exactly one trains (the trainer lock); a second one waits as a standby. A unit is the train steps
the replay ratio allows right now, at most up to the next publish: steps are owed at
`training.samples_per_position` sampled positions per position pushed since this worker started
(the positions already in the buffer count as new), and training starts once the buffer holds
`training.min_buffer_positions`. Every `publish_every` steps a new version is published; every
`checkpoint_every` steps, and on a warm stop, a checkpoint is written to
`training.checkpoint_dir/{run_id}/` and, with MLflow configured, logged to the run. Its meta
says, as `bgai train-local`'s do, how many games and positions the run had pushed by then and
its training time (`elapsed_s`: wall-clock seconds this run has had a trainer leading it,
carried across restarts), so `bgai bench curve` draws a fleet run's curve by games and minutes.

The trainer follows the run id in Redis. Each time it becomes the run's trainer (its first
start, a standby taking over, the lock won back, a run it has not seen: `bgai-runs start` or
`resume`) it catches up in `take_over`, and never publishes fresh weights over a version Redis
holds: it continues from the run's newest checkpoint, local or (with MLflow configured) fetched
from the run's artifacts right then; with no checkpoint at all it adopts the weights Redis holds
for the run (decoded and checked; the optimizer state starts fresh, and it says so); with
neither, Redis holding no version, from fresh weights published as version 0. A version in
Redis whose weights are missing or unusable, and no checkpoint: it refuses (exit 2).

Publishing is fenced by the trainer lock and never reuses a version number (`publisher`): a
trainer that finds its publish refused because it lost the lock (it stalled past the TTL and a
standby took over) goes back to standing by. MLflow logging goes through a background queue: a
dead MLflow server never stops training.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bgai.agent import learner_of, movegen_of, net_of
from bgai.clock import Clock, SystemClock
from bgai.config import Config, config_hash, model_hash
from bgai.core.network import init_params
from bgai.core.train_step import batch_fields, batch_of, init_train_state, loss_text, reads_plays
from bgai.errors import BgaiError, NonFiniteWeightsError
from bgai.obs.metrics import RoleMetrics
from bgai.obs.tracking import TrackingQueue
from bgai.roles import trainer_start
from bgai.roles.base import Unit, run_gate
from bgai.roles.identity import Identity
from bgai.roles.publisher import Publisher
from bgai.store import runstate, weights
from bgai.store.client import Redis
from bgai.store.codec import check_finite
from bgai.store.keys import Keys
from bgai.store.lock import TrainerLock
from bgai.store.registry import WorkerInfo
from bgai.store.replay import ReplayStore
from bgai.store.sampler import ReplayMirror
from bgai.train.checkpoint import list_checkpoints, save_checkpoint
from bgai.train.decay_fit import decay_fitter

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
        clock: Clock | None = None,
    ) -> None:
        self.cfg, self.r, self.keys, self.identity = cfg, r, keys, identity
        self.clock = clock or SystemClock()
        self.metrics = metrics or RoleMetrics(identity.worker_id, identity.type, identity.hostname)
        self.tracking = tracking
        self.run_id: str | None = None
        self.status = "starting"
        self.version: int | None = None  # of the state trained: published, restored or adopted
        self.base_pushed: int | None = None
        self.base_step = 0
        self.holds_lock = False  # holds the lock and has caught up with the run (`take_over`)
        self.pushed = {"games": 0, "positions": 0}  # the run's buffer stats, last read
        self.elapsed_s = 0.0  # the run's training time (checkpoint meta)
        self.led_at: float | None = None  # when `elapsed_s` was last brought up to date

    def setup(self) -> None:
        cfg, t = self.cfg, self.cfg.training
        self.net = net_of(cfg)
        self.decay_steps: int | None = None
        self.fresh_state()
        self.dir = Path(t.checkpoint_dir)
        self.lock = TrainerLock(self.keys, self.identity.owner, cfg.head.trainer_lock_ttl_s)
        self.replay = ReplayStore(self.r, self.keys, cfg.buffer.capacity_positions)
        self.mirror = ReplayMirror(self.replay, movegen_of(cfg).max_plays)
        self.model_hash, self.config_hash = model_hash(cfg), config_hash(cfg)
        self.publisher = Publisher(self.r, self.keys, self.lock, self.model_hash, self.config_hash)

    def fresh_state(self) -> None:
        t = self.cfg.training
        self.fit_decay(t.decay_steps)
        self.fitter = decay_fitter(t, t.run_minutes * 60)  # a new run's plan
        self.state = init_train_state(init_params(self.net, jax.random.key(t.seed)), self.optimizer)
        self.rng = np.random.default_rng(t.seed)
        self.version = None
        self.elapsed_s, self.led_at = 0.0, None
        self.pushed = {"games": 0, "positions": 0}

    def enter_run(self, run_id: str) -> None:
        """Work on `run_id` from now on; what to train from is decided when it holds the lock."""
        self.run_id = run_id
        self.dir = Path(self.cfg.training.checkpoint_dir) / run_id
        self.fresh_state()
        self.holds_lock = False

    def take_over(self) -> None:
        """Newly the run's trainer: catch up (module docstring) before training or publishing."""
        run_id = str(self.run_id)
        self.publisher.enter(self.dir)
        trainer_start.fetch_from_mlflow(self.tracking, run_id, self.dir)
        self.restore_latest()
        if self.version is None:  # no checkpoint of the run anywhere: Redis's weights, if any
            where = f"no checkpoint of run {run_id} in {self.dir}" + (" or MLflow" if self.tracking else "")
            found = trainer_start.from_redis(
                self.r, self.keys, self.state, self.optimizer, self.model_hash, where
            )
            if found is not None:
                self._start_from(found)
        log.info("run %s: training from step %d, version %s", run_id, self.step, self.version)

    def restore_latest(self) -> None:
        """Continue from the newest good checkpoint if it is ahead of us, or if we have nothing
        of the run yet; restart the replay-ratio count."""
        found = trainer_start.from_checkpoint(self.dir, self.state, self.model_hash, "resumed from")
        if found is not None and (self.version is None or int(found.state.step) > self.step):
            self._start_from(found)
        self.base_step = self.step
        self.base_pushed = None

    def fit_decay(self, steps: int) -> None:
        """The optimizer and the train step with a decay `steps` long (`agent.learner_of`)."""
        if steps != self.decay_steps:
            self.decay_steps = steps
            self.optimizer, self.train_step = learner_of(self.cfg, self.net, steps)

    def _start_from(self, start: trainer_start.Start) -> None:
        if start.decay_steps is not None:  # the schedule the run was on
            self.fit_decay(start.decay_steps)
        self.state, self.version = start.state, start.version
        self.elapsed_s = max(self.elapsed_s, start.elapsed_s)  # a roll back keeps the time spent
        self.rng = np.random.default_rng(self.cfg.training.seed)
        if start.rng_state is not None:
            self.rng.bit_generator.state = start.rng_state
        self.base_step = self.step
        self.base_pushed = None
        log.info("%s", start.note)

    def roll_back(self, why: str) -> str:
        """Back to the newest good checkpoint after a diverged step (nothing of the bad state is
        published or written); TrainingDivergedError (exit 2) if there is none to go back to."""
        found = trainer_start.from_checkpoint(self.dir, self.state, self.model_hash, "rolled back to")
        if found is None:
            raise TrainingDivergedError(
                f"{why}, and no checkpoint in {self.dir} to roll back to "
                "(lower training.learning_rate or training.grad_clip)"
            )
        self._start_from(found)
        return f"{why}: {found.note}"

    @property
    def step(self) -> int:
        return int(self.state.step)

    def _template(self) -> dict[str, Any]:
        return trainer_start.as_tree(self.state)

    def publish(self) -> int:
        """Publish the current params as the next version (`publisher`: above every number Redis
        or this trainer handed out; fenced by the lock); NotLockHolderError if the lock is lost."""
        self.version = self.publisher.publish(self.state.params, self.step, self.version)
        return self.version

    def stand_by(self, exc: BgaiError) -> Unit:
        """Our publish was refused: another trainer leads (or Redis moved on). Stand by, and
        catch up (`take_over`) when the lock is ours again."""
        self.status, self.holds_lock, self.led_at = "standby", False, None
        log.warning("not publishing (%s): standing by", exc)
        return Unit(
            f"lost the lead ({exc}): standing by", idle_s=min(5.0, self.cfg.head.trainer_lock_ttl_s / 3)
        )

    def checkpoint(self) -> Path:
        meta = {
            "model_hash": self.model_hash,
            "config_hash": self.config_hash,
            "model_version": self.version or 0,
            "run_id": self.run_id,
            "rng": self.rng.bit_generator.state,
            **self.pushed,
            "elapsed_s": self.elapsed_s,
            "decay_steps": self.decay_steps,
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
            self.status, self.holds_lock, self.led_at = "standby", False, None
            return Unit(idle_s=min(5.0, self.cfg.head.trainer_lock_ttl_s / 3))
        if not self.holds_lock:  # newly the trainer: catch up, then renew the lock (it may be slow)
            try:
                self.take_over()
            except BaseException:  # any failure (a refusal: nothing to resume) leaves the lock to another
                self.lock.release(self.r)
                raise
            if not self.lock.acquire(self.r):
                self.status, self.led_at = "standby", None
                return Unit("lost the lock while taking over: standing by", idle_s=1.0)
            self.holds_lock = True
        now = self.clock.now()
        if self.led_at is not None:
            self.elapsed_s += max(0.0, now - self.led_at)
        self.led_at = now
        if wait:
            return wait
        if self.version is None or weights.current_version(self.r, self.keys) is None:
            initial = "initial" if self.version is None else "our"
            try:
                return Unit(f"published {initial} weights as version {self.publish()}")
            except (weights.NotLockHolderError, weights.ModelExistsError) as exc:
                return self.stand_by(exc)
        stats = self.replay.stats()
        self.metrics.buffer(stats)
        size, pushed = int(stats.get("size", 0)), int(stats.get("pushed_positions", 0))
        self.pushed = {"games": int(stats.get("pushed_episodes", 0)), "positions": pushed}
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
        note = self._refit()
        if self.step % t.publish_every == 0:
            try:
                note += f", published version {self.publish()}"
            except weights.NotLockHolderError as exc:
                return self.stand_by(exc)
        if self.tracking is not None:
            progress = {
                "buffer_positions": size,
                "games_collected": int(stats.get("pushed_episodes", 0)),
                "model_version": self.version or 0,
            }
            self.tracking.metrics(run_id, {**metrics, **progress}, self.step)
        if self.step // t.checkpoint_every != (self.step - steps) // t.checkpoint_every:
            note += f", checkpoint {self.checkpoint().name}"
        losses_now = loss_text(metrics["loss"], metrics["policy_loss"], metrics["value_loss"])
        return Unit(f"step {self.step} {losses_now}{note}")

    def _refit(self) -> str:
        """Fit the decay to the run's planned minutes where a fit point has passed (the note)."""
        fitted = self.fitter.observe(self.elapsed_s, self.step) if self.fitter else None
        if fitted is None:
            return ""
        self.fit_decay(fitted)
        log.info(
            "learning-rate decay fitted to the run's %g minutes: the floor at step %d",
            self.cfg.training.run_minutes,
            fitted,
        )
        return f", learning-rate decay fitted to the run: the floor at step {fitted}"

    def _train(self, steps: int) -> dict[str, float]:
        t = self.cfg.training
        per_block = max(1, t.sample_block // t.batch_size)
        m: dict[str, Any] = {}
        fields = batch_fields(t.policy_weight)
        done = 0
        while done < steps:
            n = min(per_block, steps - done)
            block = self.mirror.sample(
                n * t.batch_size,
                self.rng,
                self.cfg.buffer.surprise_fraction,
                plays=reads_plays(t.policy_weight),
            )
            for i in range(n):
                part = {k: block[k][i * t.batch_size : (i + 1) * t.batch_size] for k in fields}
                self.state, m = self.train_step(self.state, batch_of(part))
            done += n
        return {k: float(v) for k, v in m.items()}

    def info(self, now: float) -> WorkerInfo:
        return self.identity.info(now, self.status, 0, self.version)

    def teardown(self) -> None:
        if self.holds_lock and self.step > self.base_step:
            log.info("warm stop: checkpoint %s", self.checkpoint())
        self.lock.release(self.r)
        if self.tracking is not None and not self.tracking.flush(30.0):
            log.warning("MLflow unreachable: %d logging items not sent", self.tracking.pending())
