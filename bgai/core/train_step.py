"""The jitted optimisation step: policy cross-entropy + value loss + weight decay.

A training sample is one decision: the position (for the value head), the
legal plays' steps and mask (to turn step logits into play logits) and two
targets: a distribution over plays and a distribution over the mover's six outcomes (a soft
label: a TD(lambda) return or a 1-ply expectation, `bgai.core.targets`; one-hot for the final
outcome).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from bgai.core.evaluator import ApplyFn
from bgai.core.network import play_logits


@struct.dataclass
class Batch:
    boards: jax.Array  # [N, 28] int8 mover's view
    steps: jax.Array | None  # [N, K, 4] uint8 (None: a value-only step, `batch_fields`)
    mask: jax.Array | None  # [N, K] bool
    policy: jax.Array | None  # [N, K] float32 target over plays
    value: jax.Array  # [N, 6] float32 target outcome distribution of the mover


BATCH_FIELDS = ("boards", "steps", "mask", "policy", "value")
VALUE_FIELDS = ("boards", "value")


def reads_plays(policy_weight: float) -> bool:
    """Whether a train step reads a sample's plays: only for a policy loss (its weight not 0)."""
    return bool(policy_weight)


def batch_fields(policy_weight: float) -> tuple[str, ...]:
    """The fields a train step reads: without a policy loss, the position and its value target
    (a sample's plays, ~1 kB of its ~1.1 kB, are then neither sampled nor copied)."""
    return BATCH_FIELDS if reads_plays(policy_weight) else VALUE_FIELDS


def batch_of(arrays: Mapping[str, Any]) -> Batch:
    """A Batch of the `arrays` given (numpy or JAX, by field name); the fields left out are None.
    Numpy arrays stay numpy: the jitted step takes them in its own fast path (a `jnp.asarray`
    each was 0.4 ms a step here, as much as the value-only step itself)."""
    fields: dict[str, Any] = {k: arrays.get(k) for k in BATCH_FIELDS}
    return Batch(**fields)


def loss_text(loss: float, policy_loss: float, value_loss: float) -> str:
    """'loss L (policy P, value V)' for a log line; the policy left out where it is not computed."""
    parts = ([] if np.isnan(policy_loss) else [f"policy {policy_loss:.4f}"]) + [f"value {value_loss:.4f}"]
    return f"loss {loss:.4f} ({', '.join(parts)})"


@struct.dataclass
class TrainState:
    params: Any
    opt_state: Any
    step: jax.Array  # [] int32


def make_optimizer(
    learning_rate: float,
    schedule: str = "constant",
    warmup_steps: int = 0,
    decay_steps: int = 100_000,
    weight_decay: float = 1e-4,
    grad_clip: float = 1.0,
) -> optax.GradientTransformation:
    """AdamW with global-norm clipping and a constant or warmup-cosine schedule."""
    if schedule == "cosine":
        lr: float | optax.Schedule = optax.warmup_cosine_decay_schedule(
            0.0, learning_rate, max(warmup_steps, 1), max(decay_steps, warmup_steps + 1), learning_rate * 0.05
        )
    elif schedule == "constant":
        lr = learning_rate
    else:
        raise ValueError(f"unknown lr schedule {schedule!r}")
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adamw(lr, weight_decay=weight_decay))


def init_train_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32))


def losses(apply_fn: ApplyFn, params: Any, batch: Batch, policy: bool = True) -> tuple[jax.Array, jax.Array]:
    """(policy_loss, value_loss), each a mean over the batch; with `policy` False the policy loss
    is not computed (NaN)."""
    step_logits, value_logits = apply_fn(params, batch.boards.astype(jnp.int32))
    value_loss = jnp.mean(optax.softmax_cross_entropy(value_logits, batch.value))
    if not policy:
        return jnp.float32(jnp.nan), value_loss
    if batch.steps is None or batch.mask is None or batch.policy is None:
        raise ValueError("a policy loss needs the batch's steps, mask and policy (batch_fields)")
    logits = play_logits(step_logits, batch.steps, batch.mask)  # [N, K]
    logp = jax.nn.log_softmax(logits, axis=-1)
    policy_loss = -jnp.mean(jnp.sum(jnp.where(batch.mask, batch.policy * logp, 0.0), axis=-1))
    return policy_loss, value_loss


def make_train_step(
    apply_fn: ApplyFn,
    optimizer: optax.GradientTransformation,
    policy_weight: float = 1.0,
    value_weight: float = 1.0,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
    """One jitted step -> (new state, {loss, policy_loss, value_loss, grad_norm}).

    With `policy_weight` 0 the step is value-only: the policy loss, whose gradient would be zeros,
    is not computed (2.3x fewer seconds a step here, the same updates: `tests/core/test_train_step.py`),
    its metric is NaN, and the batch needs only `batch_fields(0)`."""
    policy = reads_plays(policy_weight)

    def loss_fn(params: Any, batch: Batch) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        p, v = losses(apply_fn, params, batch, policy)
        return (policy_weight * p if policy else 0.0) + value_weight * v, (p, v)

    @jax.jit
    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        (loss, (p, v)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = TrainState(params=params, opt_state=opt_state, step=state.step + 1)
        metrics = {"loss": loss, "policy_loss": p, "value_loss": v, "grad_norm": optax.tree.norm(grads)}
        return new, metrics

    return step
