"""The single-process local run: self-play, replay, train, checkpoint, evaluate.

`LocalRun.run_once()` does one unit (a self-play batch, then the train steps
that the samples-per-position ratio asks for) and returns a report; `run()`
is the thin timed loop around it. The Redis fleet splits these same pieces
across processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgai.agent import (
    EpisodeValues,
    eval_decider,
    learner_of,
    movegen_of,
    net_of,
    playing,
    self_play_decider,
)
from bgai.config import Config, config_hash, model_hash
from bgai.core.episodes import EpisodeAssembler
from bgai.core.evaluate import MatchResult, play_match
from bgai.core.network import init_params
from bgai.core.selfplay import play_chunk, start_games
from bgai.core.train_step import TrainState, batch_of, init_train_state, reads_plays
from bgai.opponent_names import parse_opponent
from bgai.opponents.players import build_opponent
from bgai.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from bgai.train.decay_fit import decay_fitter
from bgai.train.replay import LocalReplay


@dataclass(frozen=True)
class Report:
    games: int
    positions: int
    train_steps: int
    model_version: int
    loss: float
    policy_loss: float
    value_loss: float
    selfplay_s: float
    train_s: float


class LocalRun:
    """Owns the model, optimizer, replay buffer and counters of one local run."""

    def __init__(self, cfg: Config, checkpoint_dir: Path, log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.dir = checkpoint_dir
        self.log = log
        self.net = net_of(cfg)
        self.movegen = movegen_of(cfg)
        self.games = 0
        self.positions = 0
        self._state: TrainState | None = None
        self.elapsed_s = 0.0  # wall-clock training time, carried across resumes
        self.decay_steps = cfg.training.decay_steps  # fitted to the run's minutes by run()
        self._built_for: int | None = None  # the decay the optimizer and train step were built with

    def setup(self) -> None:
        """Build the compiled functions; resume from the newest checkpoint if any."""
        t, s = self.cfg.training, self.cfg.selfplay
        self.fit_decay(self.decay_steps)
        self.values = EpisodeValues(self.cfg, self.net)
        decide = self_play_decider(self.cfg, self.net)
        self.selfplay = jax.jit(
            partial(play_chunk, decide, length=s.chunk_turns, max_turns=s.max_turns, movegen=self.movegen)
        )
        self.assembler = EpisodeAssembler()
        plays = reads_plays(t.policy_weight)  # a value-only step reads no plays
        self.replay = LocalReplay(self.cfg.buffer.capacity_positions, self.movegen.max_plays, plays)
        self.rng = np.random.default_rng(t.seed)
        self.key = jax.random.key(t.seed)
        params = init_params(self.net, jax.random.fold_in(self.key, 1))
        self._state = init_train_state(params, self.optimizer)
        self.games_state = start_games(jax.random.fold_in(self.key, 2), s.batch_size)
        ckpts = list_checkpoints(self.dir)
        if ckpts:
            self.restore(ckpts[-1])
            self.log(f"resumed from {ckpts[-1]} at step {int(self.state.step)}")

    def restore(self, path: Path) -> dict[str, Any]:
        """Load a checkpoint of this model (refused if its model hash differs); returns its meta."""
        restored, meta = load_checkpoint(path, self._checkpoint_template(), model_hash(self.cfg))
        self._state = TrainState(restored["params"], restored["opt_state"], jnp.asarray(restored["step"]))
        self.key = jax.random.wrap_key_data(jnp.asarray(restored["rng"]))
        self.games, self.positions = int(meta["games"]), int(meta["positions"])
        self.elapsed_s = float(meta.get("elapsed_s", 0.0))
        if "decay_steps" in meta:  # the schedule the run was on
            self.fit_decay(int(meta["decay_steps"]))
        return meta

    def fit_decay(self, steps: int) -> None:
        """The optimizer and the train step with a decay `steps` long (`agent.learner_of`); kept
        as they are where the decay is unchanged (a resume on its own schedule, a refit to the
        same step), so nothing is rebuilt or recompiled for nothing."""
        self.decay_steps = steps
        if steps == self._built_for:
            return
        self._built_for = steps
        self.optimizer, self.train_step = learner_of(self.cfg, self.net, steps)

    @property
    def state(self) -> TrainState:
        if self._state is None:
            raise RuntimeError("call setup() first")
        return self._state

    @property
    def model_version(self) -> int:
        return int(self.state.step) // self.cfg.training.publish_every

    def _checkpoint_template(self) -> dict[str, Any]:
        return {
            "params": self.state.params,
            "opt_state": self.state.opt_state,
            "step": self.state.step,
            "rng": jax.random.key_data(self.key),
        }

    def run_once(self) -> Report:
        """One self-play chunk, then the train steps that the configured ratio asks for."""
        t0 = time.perf_counter()
        self.key, k_play = jax.random.split(self.key)
        params = playing(self.cfg, self.state.params)
        self.games_state, chunk = self.selfplay(params, self.games_state, k_play)
        episodes = self.assembler.add(jax.device_get(chunk), self.model_version)
        labels = self.values.label(params, episodes)
        for ep, target in zip(episodes, labels.targets, strict=True):
            self.replay.add(ep.labelled(target))
        new_positions = sum(len(ep.dice) for ep in episodes)
        self.games += len(episodes)
        self.positions += new_positions
        t1 = time.perf_counter()
        tc = self.cfg.training
        steps = 0
        metrics: dict[str, float] = {
            "loss": float("nan"),
            "policy_loss": float("nan"),
            "value_loss": float("nan"),
        }
        if self.replay.size >= min(tc.min_buffer_positions, self.replay.capacity):
            steps = max(1, round(new_positions * tc.samples_per_position / tc.batch_size))
            for _ in range(steps):
                batch = batch_of(self.replay.sample(tc.batch_size, self.rng))
                self._state, m = self.train_step(self.state, batch)
            metrics = {k: float(v) for k, v in m.items()}
            now_step = int(self.state.step)
            if now_step // tc.checkpoint_every != (now_step - steps) // tc.checkpoint_every:
                self.checkpoint()
        t2 = time.perf_counter()
        return Report(
            len(episodes),
            new_positions,
            steps,
            self.model_version,
            metrics["loss"],
            metrics["policy_loss"],
            metrics["value_loss"],
            t1 - t0,
            t2 - t1,
        )

    def checkpoint(self) -> Path:
        meta = {
            "config_hash": config_hash(self.cfg),
            "model_hash": model_hash(self.cfg),
            "model_version": self.model_version,
            "games": self.games,
            "elapsed_s": self.elapsed_s,
            "positions": self.positions,
            "decay_steps": self.decay_steps,
        }
        return save_checkpoint(
            self.dir,
            int(self.state.step),
            self._checkpoint_template(),
            meta,
            self.cfg.training.keep_checkpoints,
        )

    def evaluate(self, opponent: str, games: int, seed: int = 0) -> MatchResult:
        """The current model (eval.player) against an opponent (random, pubeval, gnubg_Nply)."""
        op = parse_opponent(opponent)
        if op.kind == "past":
            raise ValueError(f"{opponent}: earlier versions are evaluated by the fleet's eval workers")
        if op.cube:  # cubeful money games inside gnubg (its dice: not paired)
            from bgai.opponents.cubeful import play_cubeful
            from bgai.opponents.players import ExternalAgent

            agent = ExternalAgent(self.cfg).load(self.state.params)
            binary = self.cfg.eval.gnubg_path
            return play_cubeful(agent, games, opponent_plies=op.plies, seed=seed + 1, binary=binary).result
        ours = eval_decider(self.cfg, self.net)
        built = build_opponent(op, self.cfg.eval, ours)
        try:
            return play_match(
                ours,
                playing(self.cfg, self.state.params),
                built.decide,
                None,
                jax.random.key(seed),
                games,
                batch=min(64, games),
                movegen=self.movegen,
            )
        finally:
            built.close()

    def run(
        self,
        minutes: float,
        log_every_s: float,
        on_progress: Callable[[Report, float], None],
        max_games: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """The timed loop: run_once until `minutes` have passed (or the run has played
        `max_games` games in all), reporting every `log_every_s`. With `training.decay_share` the
        learning-rate decay is fitted to end at that share of the run's time (resumes included)."""
        start = last = clock()
        base = self.elapsed_s
        fitter = decay_fitter(self.cfg.training, base + minutes * 60)
        while clock() - start < minutes * 60 and (max_games is None or self.games < max_games):
            report = self.run_once()
            now = clock()
            self.elapsed_s = base + now - start
            if fitter and (fitted := fitter.observe(self.elapsed_s, int(self.state.step))) is not None:
                self.fit_decay(fitted)
                self.log(
                    f"learning-rate decay fitted to the run: the floor at step {fitted} "
                    f"(~{fitter.end_s / 60:.1f} min)"
                )
            if now - last >= log_every_s:
                on_progress(report, now - start)
                last = now
        self.checkpoint()
