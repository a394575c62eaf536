"""The learner: how a config becomes a player, its value targets and its train step.

One home for what `train/local.py`, the game and training workers, the eval worker, the eval CLI
and the benches share, so the fleet and the single-process run learn the same way:
- `movegen_of`, `optimizer_of`: the configured move generator and Optax optimizer;
- `self_play_decider`, `eval_decider`: the configured self-play mode and evaluation player;
- `EpisodeValues`: one forward pass over every position of a batch of finished episodes, with
  the weights that played them, giving each episode's value targets (`training.value_target`:
  TD(lambda) returns, or exact 1-ply expectations) and its surprise (how wrong the value head
  was about the outcome). Game workers compute them before pushing; the local run before
  storing. The episode carries its targets, so the trainer needs nothing else.
- `train_step_of`: the jitted train step with the configured loss weights.
- `playing`: the variables a player evaluates with: the weights, and the bear-off database when
  `values.bearoff` is on (`bgai.core.evaluator`). Every caller hands its weights through it
  before they enter a compiled game, match or value program; the trainer never does.

Imports run one way: config and core below, nothing here imports a role, the store or the CLI.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgai.bearoff_file import load_or_build
from bgai.config import Config
from bgai.core import movegen_native, rules
from bgai.core.episodes import Episode
from bgai.core.evaluator import has_bearoff, weights_only, with_bearoff
from bgai.core.network import OUTCOME_POINTS, BgNet, init_params
from bgai.core.players import afterstate_decider, greedy_decider, lookahead_decider, search_decider
from bgai.core.selfplay import Decide
from bgai.core.targets import one_ply_distribution, outcome_distribution, td_lambda_targets
from bgai.core.train_step import TrainState, make_optimizer, make_train_step
from bgai.errors import ConfigError

VALUE_ROWS = 4096  # forward-pass bucket (one compiled shape per multiple)
ONE_PLY_ROWS = 256  # 1-ply targets: positions per compiled call (21 move generations each)


def movegen_of(cfg: Config) -> rules.MoveGenConfig:
    """The move generator's static config, its backend resolved for this process's device."""
    backend = cfg.movegen.backend
    if backend == "auto":
        native = movegen_native.available() and jax.default_backend() == "cpu"
        backend = "native" if native else "jax"
    elif backend == "native" and not movegen_native.available():
        raise ConfigError("movegen.backend", "native needs numba, which is not installed here; use jax")
    return rules.MoveGenConfig(**{**dataclasses.asdict(cfg.movegen), "backend": backend})


def optimizer_of(cfg: Config, decay_steps: int | None = None) -> Any:
    """The configured Optax optimizer (`training` section); `decay_steps` replaces the config's
    (train-local fits it to its minutes). Every trainer builds one: an ensemble is refused here."""
    if cfg.model.ensemble != 1:
        raise ConfigError(
            "model.ensemble",
            f"is {cfg.model.ensemble}: training takes one net (1); an ensemble is stacked from a "
            "run's checkpoints by `bgai ensemble-checkpoints`, for evaluation and play",
        )
    t = cfg.training
    decay = t.decay_steps if decay_steps is None else decay_steps
    return make_optimizer(t.learning_rate, t.lr_schedule, t.warmup_steps, decay, t.weight_decay, t.grad_clip)


def net_of(cfg: Config) -> BgNet:
    m = cfg.model
    return BgNet(tuple(m.hidden), m.inputs, m.value_heads, tuple(m.race_hidden), m.ensemble)


def params_template(cfg: Config) -> Any:
    """Fresh parameters of the configured net (seed 0): the template weights load into."""
    return init_params(net_of(cfg), jax.random.key(0))


@functools.cache
def _bearoff_tables(directory: str) -> tuple[jax.Array, jax.Array]:
    """The bear-off database on the default device, loaded (or built) once per process."""
    rolls, first = load_or_build(Path(directory))
    return jnp.asarray(rolls), jnp.asarray(first)


def playing(cfg: Config, params: Any) -> Any:
    """The variables our player evaluates with: `params` (the network's weights), with the
    bear-off database attached when `values.bearoff` is on. Idempotent; None stays None."""
    if params is None:
        return None
    if not cfg.values.bearoff:
        return weights_only(params) if has_bearoff(params) else params
    return with_bearoff(params, *_bearoff_tables(cfg.jax.bearoff_dir))


def self_play_decider(cfg: Config, net: BgNet, simulations: int | None = None) -> Decide:
    """The configured self-play mode: `afterstate` (fast) or `mcts` (stochastic search)."""
    s, q = cfg.selfplay, cfg.search
    if s.mode == "afterstate":
        return afterstate_decider(
            net.apply, s.temperature, s.explore_turns, s.policy_temperature, s.eval_slots
        )
    sims = q.num_simulations if simulations is None else simulations
    return search_decider(
        net.apply,
        sims,
        q.dirichlet_alpha,
        q.dirichlet_fraction,
        q.temperature,
        q.temperature_turns,
        movegen_of(cfg),
    )


def eval_decider(cfg: Config, net: BgNet, plies: int | None = None) -> Decide:
    """Our agent in evaluation: greedy at `plies` (default `eval.plies`: 0, 1 or 2), or search
    without noise or temperature (`eval.player: search`)."""
    if cfg.eval.player == "greedy":
        depth = cfg.eval.plies if plies is None else plies
        if depth > 0:
            e = cfg.eval
            return lookahead_decider(
                net.apply, movegen_of(cfg), depth, e.one_ply_candidates, e.finalists, cfg.selfplay.eval_slots
            )
        return greedy_decider(net.apply, cfg.selfplay.eval_slots)
    return search_decider(
        net.apply, cfg.search.num_simulations, cfg.search.dirichlet_alpha, 0.0, 0.0, 0, movegen_of(cfg)
    )


def train_step_of(
    cfg: Config, net: BgNet, optimizer: Any
) -> Callable[..., tuple[TrainState, dict[str, Any]]]:
    t = cfg.training
    return make_train_step(net.apply, optimizer, t.policy_weight, t.value_weight)


def learner_of(
    cfg: Config, net: BgNet, decay_steps: int
) -> tuple[Any, Callable[..., tuple[TrainState, dict]]]:
    """(optimizer, jitted train step) with a cosine decay `decay_steps` long: what a trainer
    rebuilds when it fits its decay (the optimizer's state keeps its shape, only the schedule
    changes, so training goes on from it)."""
    optimizer = optimizer_of(cfg, decay_steps)
    return optimizer, train_step_of(cfg, net, optimizer)


def _padded(boards: np.ndarray, bucket: int) -> np.ndarray:
    out = np.zeros((-(-len(boards) // bucket) * bucket, rules.BOARD_SIZE), np.int8)
    out[: len(boards)] = boards
    return out


@dataclasses.dataclass(frozen=True)
class Labelled:
    """What a batch of finished episodes carries into the buffer besides the games themselves."""

    targets: list[np.ndarray]  # per episode [T, 6] float32 value target of each position
    surprise: list[float]  # per episode mean |V's equity - points won| / 3


class EpisodeValues:
    """Value targets and surprise of finished episodes, from the weights that played them."""

    def __init__(self, cfg: Config, net: BgNet) -> None:
        self.cfg = cfg
        self.kind = cfg.training.value_target
        self.lam = cfg.training.td_lambda
        self.share = cfg.training.one_ply_share
        self._values = jax.jit(partial(outcome_distribution, net.apply))
        movegen, slots = movegen_of(cfg), cfg.selfplay.eval_slots
        self._one_ply = jax.jit(
            lambda params, boards: one_ply_distribution(net.apply, params, boards, movegen, slots)
        )

    def values(self, params: Any, boards: np.ndarray) -> np.ndarray:
        """V(s) [N, 6] of boards [N, 28] (side to move)."""
        if len(boards) == 0:
            return np.zeros((0, 6), np.float32)
        out = self._values(playing(self.cfg, params), jnp.asarray(_padded(boards, VALUE_ROWS)))
        return np.asarray(out, np.float32)[: len(boards)]

    def one_ply(self, params: Any, boards: np.ndarray) -> np.ndarray:
        """The exact 1-ply distribution [N, 6] of boards [N, 28] (side to move, pre-roll)."""
        padded, params = _padded(boards, ONE_PLY_ROWS), playing(self.cfg, params)
        parts = [
            np.asarray(self._one_ply(params, jnp.asarray(padded[i : i + ONE_PLY_ROWS])), np.float32)
            for i in range(0, len(padded), ONE_PLY_ROWS)
        ]
        return np.concatenate(parts)[: len(boards)] if parts else np.zeros((0, 6), np.float32)

    def label(self, params: Any, episodes: list[Episode]) -> Labelled:
        if not episodes:
            return Labelled([], [])
        boards = np.concatenate([ep.boards for ep in episodes])
        v = self.values(params, boards)
        cuts = np.cumsum([len(ep) for ep in episodes])[:-1]
        per_ep = np.split(v, cuts)
        points = np.asarray(OUTCOME_POINTS)
        surprise = [
            float(np.mean(np.abs(vi @ points - np.where(ep.player == 0, ep.result, -ep.result))) / 3.0)
            for vi, ep in zip(per_ep, episodes, strict=True)
        ]
        if self.kind == "one_ply" and self.share >= 1.0:
            return Labelled(np.split(self.one_ply(params, boards), cuts), surprise)
        targets = td_lambda_targets(per_ep, [int(ep.outcome[-1]) for ep in episodes], self.lam)
        if self.kind == "one_ply":  # a share of the rows: their TD(lambda) return replaced
            rows = np.flatnonzero(np.concatenate([one_ply_rows(ep.dice, self.share) for ep in episodes]))
            flat = np.concatenate(targets)
            flat[rows] = self.one_ply(params, boards[rows])
            targets = np.split(flat, cuts)
        return Labelled(targets, surprise)


_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def one_ply_rows(dice: np.ndarray, share: float) -> np.ndarray:
    """[T] bool: the rows of an episode whose target is the 1-ply expectation, ~`share` of them.

    Drawn from the rolls at and after each row (a splitmix64 hash of the next six rolls and the
    row's index), which the board before the roll does not depend on: the chosen positions are an
    unbiased sample, the same on a resume or on another host, and no generator state is kept.
    """
    n = len(dice)
    padded = np.concatenate([np.asarray(dice, np.uint64), np.full(6, 21, np.uint64)])
    key = np.arange(n, dtype=np.uint64)
    for j in range(6):
        key = key * np.uint64(22) + padded[j : j + n]
    for shift, mult in zip((30, 27), _MIX, strict=True):
        key = (key ^ (key >> np.uint64(shift))) * mult
    key ^= key >> np.uint64(31)
    return (key >> np.uint64(11)).astype(np.float64) < share * 2.0**53
