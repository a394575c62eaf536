"""Where a training worker's state comes from when it becomes a run's trainer.

In order (`TrainingWorker.take_over`): the run's checkpoints in MLflow, fetched into the local
directory when newer (`fetch_from_mlflow`); the newest good local checkpoint, with its optimizer
state and sampling RNG (`from_checkpoint`); with no checkpoint anywhere, the weights Redis holds
for the run (`from_redis`: decoded and checked like any follower's, the optimizer state fresh).
Each `Start` carries the line the trainer logs, with a digest of what it restored, so a test can
compare it with the file or the blob.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import optax

from bgai.core.train_step import TrainState
from bgai.errors import BgaiError
from bgai.obs.tracking import TrackingQueue
from bgai.runs.manager import newest_checkpoint
from bgai.store import weights
from bgai.store.client import Redis
from bgai.store.codec import decode_weights
from bgai.store.keys import Keys
from bgai.train.checkpoint import load_newest, state_digest

log = logging.getLogger(__name__)


class NoModelToResumeError(BgaiError):
    """Redis holds a version of the run, but neither a checkpoint nor Redis's weights can be
    trained on: starting from fresh weights would replace the trained model."""


@dataclass(frozen=True)
class Start:
    """A state to train from: its model version, the sampling RNG's state (None: from the
    seed) and what it is, for the log."""

    state: TrainState
    version: int
    rng_state: dict[str, Any] | None
    note: str
    elapsed_s: float = 0.0  # the run's training time when it was saved (0: unknown)
    decay_steps: int | None = None  # the length of the decay it was trained on (None: unknown)


def as_tree(state: TrainState) -> dict[str, Any]:
    """The checkpoint's structure of a train state."""
    return {"params": state.params, "opt_state": state.opt_state, "step": state.step}


def fetch_from_mlflow(tracking: TrackingQueue | None, run_id: str, directory: Path) -> None:
    """Download the run's newest checkpoint from MLflow into `directory` if it is newer than the
    newest there (another host trained it, or the local copy is gone); MLflow down: logged."""
    if tracking is None:
        return
    try:
        newest_checkpoint(tracking.tracker, run_id, directory)
    except Exception as exc:  # continue from what is here, or from Redis's weights
        log.warning("could not fetch run %s's checkpoints from MLflow: %s", run_id, exc)


def from_checkpoint(directory: Path, template: TrainState, model_hash: str, how: str) -> Start | None:
    """The newest good checkpoint in `directory` (a corrupt newer one is set aside:
    `checkpoint.load_newest`), or None."""
    found = load_newest(directory, as_tree(template), model_hash)
    if found is None:
        return None
    restored, meta, path = found
    state = TrainState(restored["params"], restored["opt_state"], jnp.asarray(restored["step"]))
    version = int(meta.get("model_version", 0))
    note = f"{how} {path} at step {meta['step']}, version {version}, state {state_digest(as_tree(state))}"
    decay = meta.get("decay_steps")
    elapsed = float(meta.get("elapsed_s", 0.0))
    return Start(state, version, meta.get("rng"), note, elapsed, None if decay is None else int(decay))


def from_redis(
    r: Redis,
    keys: Keys,
    template: TrainState,
    optimizer: optax.GradientTransformation,
    model_hash: str,
    why: str,
) -> Start | None:
    """The weights Redis holds, with a fresh optimizer state, or None when Redis holds no version.
    `why` says why they are needed (no checkpoint where); NoModelToResumeError (exit 2) when a
    version is there but its weights are missing or unusable."""
    version, blob = weights.fetch(r, keys)
    if version is None:
        return None
    if blob is None:
        problem = f"Redis holds version {version} but no weights for it"
    else:
        try:
            params, header = decode_weights(blob, template.params, model_hash)
        except BgaiError as exc:
            problem = f"Redis's weights of version {version} are unusable ({type(exc).__name__}: {exc})"
        else:
            step = int(header.get("step") or 0)
            state = TrainState(params, optimizer.init(params), jnp.asarray(step, jnp.int32))
            note = (
                f"adopted weights of version {version} from Redis at step {step}, params "
                f"{state_digest(params)}; optimizer state starts fresh ({why})"
            )
            return Start(state, version, None, note)
    raise NoModelToResumeError(
        f"{problem}, and {why}: refusing to train fresh weights over it (`bgai-runs resume` the run "
        "from a checkpoint, or `bgai-runs start` a new one)"
    )
