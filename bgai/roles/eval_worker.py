"""`bgai eval-worker`: plays claimed slices of a model version against fixed opponents.

Each unit claims one slice (`eval.slice_games` games against every opponent in `eval.opponents`)
of the current target version, plays it with that version's weights (checked by the codec) and
adds the points to the version's sums in Redis; several eval workers share a version this way.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import Any

import jax
import numpy as np

from bgai.config import Config, model_hash
from bgai.core.network import BgNet, init_params
from bgai.core.players import pubeval_decider, random_decider
from bgai.core.selfplay import play_batch, two_sided
from bgai.errors import ConfigError
from bgai.obs.metrics import RoleMetrics
from bgai.obs.tracking import TrackingQueue
from bgai.roles.base import Unit, run_gate
from bgai.roles.identity import Identity
from bgai.store import evals, runstate
from bgai.store.client import Redis
from bgai.store.keys import Keys
from bgai.store.registry import WorkerInfo
from bgai.store.weights import WeightsFollower
from bgai.train.local import eval_decider, movegen_of

log = logging.getLogger(__name__)

OPPONENTS = {"random": random_decider, "pubeval": pubeval_decider}


class EvalWorker:
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
        self.status = "starting"
        self.games = 0
        self.tracking = tracking
        self.run_id: str | None = None
        for name in cfg.eval.opponents:
            if name not in OPPONENTS:
                raise ConfigError(
                    "eval.opponents", f"unknown opponent {name!r} (known: {', '.join(OPPONENTS)})"
                )

    def setup(self) -> None:
        cfg = self.cfg
        net = BgNet(tuple(cfg.model.hidden))
        self.follower = WeightsFollower(self.keys, init_params(net, jax.random.key(0)), model_hash(cfg))
        ours = eval_decider(cfg, net)
        self.batch = min(64, cfg.eval.slice_games)
        self.matches = {
            name: jax.jit(
                partial(
                    play_batch,
                    two_sided(ours, OPPONENTS[name]()),
                    batch=self.batch,
                    max_turns=cfg.selfplay.max_turns,
                    movegen=movegen_of(cfg),
                )
            )
            for name in cfg.eval.opponents
        }

    def run_once(self) -> Unit:
        e = self.cfg.eval
        run_id, run_status = runstate.get_run(self.r, self.keys)
        self.status, wait = run_gate(run_status)
        if wait:
            return wait
        if run_id != self.run_id:  # a new run: its versions start again from 0
            self.run_id = run_id
            self.follower.reset()
        got = evals.claim(self.r, self.keys, e.every_versions, e.games, e.slice_games, self.follower.version)
        if got is None:
            self.status = "idle"
            return Unit(idle_s=1.0)
        if got.version != self.follower.version and (
            got.blob is None or not self.follower.offer(got.version, got.blob)
        ):
            return Unit(f"skipped slice {got.slice_index} of version {got.version}: no usable weights")
        self.status = "evaluating"
        parts = []
        for name, match in self.matches.items():
            points = self.play(match, got.version, got.slice_index, got.games)
            now = evals.add_result(self.r, self.keys, got.version, name, points)
            self.games += len(points)
            self.metrics.add_games(len(points))
            totals = evals.results_of(self.r, self.keys, got.version).get(name, {})
            if totals.get("games"):
                n = totals["games"]
                self.metrics.eval_result(name, totals.get("wins", 0) / n, totals.get("points", 0) / n)
            if self.tracking is not None and run_id is not None and now - len(points) < e.games <= now:
                self.tracking.metrics(run_id, eval_metrics(name, totals), got.version)  # version done
            parts.append(f"{name} {sum(p > 0 for p in points)}/{len(points)}")
        return Unit(f"version {got.version} slice {got.slice_index}: won " + ", ".join(parts))

    def play(self, match: Any, version: int, index: int, games: int) -> list[int]:
        """`games` finished games; seeds depend only on (version, slice), so a replayed slice is
        the same games."""
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.cfg.training.seed), version), index)
        points: list[int] = []
        i = 0
        while len(points) < games:
            traj = match((self.follower.params, None), jax.random.fold_in(key, i))
            done = np.asarray(traj.finished)
            points.extend(int(p) for p in np.asarray(traj.result)[done])
            i += 1
        return points[:games]

    def info(self, now: float) -> WorkerInfo:
        follower = getattr(self, "follower", None)
        return self.identity.info(
            now, self.status, self.games, None if follower is None else follower.version
        )

    def teardown(self) -> None:
        """A slice in progress is abandoned; its counters were never touched."""
        if self.tracking is not None:
            self.tracking.close(10.0)


def eval_metrics(opponent: str, s: dict[str, int]) -> dict[str, float]:
    """MLflow metrics of one finished (version, opponent): win rate and ppg with 95% bounds."""
    from bgai.core.evaluate import wilson_interval

    n, wins, points, sq = s.get("games", 0), s.get("wins", 0), s.get("points", 0), s.get("sq", 0)
    lo, hi = wilson_interval(wins, n)
    ppg = points / max(n, 1)
    var = max(sq - n * ppg * ppg, 0.0) / max(n - 1, 1)
    half = 1.96 * math.sqrt(var / max(n, 1))
    return {
        f"eval_win_rate_{opponent}": wins / max(n, 1),
        f"eval_win_rate_{opponent}_lo": lo,
        f"eval_win_rate_{opponent}_hi": hi,
        f"eval_ppg_{opponent}": ppg,
        f"eval_ppg_{opponent}_lo": ppg - half,
        f"eval_ppg_{opponent}_hi": ppg + half,
    }
