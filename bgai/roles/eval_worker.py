"""`bgai eval-worker`: plays claimed slices of a model version against independent opponents.

Each unit claims one slice (`eval.slice_games` games, in pairs with shared dice, against every
opponent in `eval.opponents`) of a version, plays it with that version's weights (checked by the
codec) and adds the slice's sums to the version's totals in Redis, once; several eval workers
share a version this way, and a slice whose worker died is handed out again (store/evals.py).

A slice also scores its part of the decision set (`eval.er_decisions` decisions of
`bgai bench strength`'s set, the same part for every version) with the version's greedy 0-ply
player; the parts add up in Redis like the games, so each version gets an error rate (overall
and per class) beside its win rates: in `bgai status`, MLflow (`eval/decisions/er`, `.../er_contact`)
and Prometheus (`bgai_eval_error_rate`).

A cube opponent (`gnubg_Nply_cube`) plays its part of a slice as cubeful money games inside
gnubg (its external player: `opponents.cubeful.play_cubeful`), our moves and cube decisions
answered by the version's weights; gnubg's dice, seeded by (version, slice), so a re-issued
slice replays the same session. Its points (cube x result) add up like the others'.

The worker that completes a version's evaluation measures it by the yardstick (roles/champion.py):
a version better than the run's champion becomes it, in Redis and as the MLflow model alias
`champion`.

`eval.busy_share` bounds the share of wall-clock time evaluation takes: after each slice (but
the process's first, which compiles) the worker rests in proportion to the slice's time, so on
a host that also plays and trains most of the cores stay with self-play and training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import jax

from bgai.agent import eval_decider, movegen_of, net_of, playing
from bgai.bench.decisions import DecisionSet
from bgai.bench.strength import er_of_sums, er_sums, score_afterstates
from bgai.config import Config, model_hash
from bgai.core.evaluate import MatchResult, paired_match, run_pairs
from bgai.core.network import init_params
from bgai.errors import CorruptDataError, IncompatibleError
from bgai.obs.metrics import RoleMetrics
from bgai.obs.tracking import TrackingQueue, eval_key
from bgai.opponent_names import parse_opponent
from bgai.opponents.cubeful import play_cubeful
from bgai.opponents.players import Built, ExternalAgent, build_opponent
from bgai.roles.base import Unit, run_gate
from bgai.roles.champion import crown
from bgai.roles.identity import Identity
from bgai.store import evals, runstate
from bgai.store.client import Redis
from bgai.store.codec import decode_weights
from bgai.store.keys import Keys
from bgai.store.registry import WorkerInfo
from bgai.store.weights import WeightsFollower

log = logging.getLogger(__name__)


class EvalWorker:
    def __init__(
        self,
        cfg: Config,
        r: Redis,
        keys: Keys,
        identity: Identity,
        metrics: RoleMetrics | None = None,
        tracking: TrackingQueue | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.cfg, self.r, self.keys, self.identity = cfg, r, keys, identity
        self.clock = clock
        self.metrics = metrics or RoleMetrics(identity.worker_id, identity.type, identity.hostname)
        self.status = "starting"
        self.games = 0
        self.slices = 0  # slices this process has played
        self.tracking = tracking
        self.run_id: str | None = None
        self.opponents = [parse_opponent(name) for name in cfg.eval.opponents]
        self.built: list[Built] = []
        self.skipped: dict[int, str] = {}  # version -> why this worker does not play it (this run)

    def setup(self) -> None:
        cfg = self.cfg
        self.net = net = net_of(cfg)
        self.decisions = DecisionSet.load() if cfg.eval.er_decisions > 0 else None
        self.template = init_params(net, jax.random.key(0))
        self.follower = WeightsFollower(self.keys, self.template, model_hash(cfg))
        ours = eval_decider(cfg, net)
        pairs = max(1, min(64, cfg.eval.slice_games) // 2)
        for op in self.opponents:
            if not op.cube:
                self.built.append(build_opponent(op, cfg.eval, ours))
        self.agent = ExternalAgent(cfg) if any(op.cube for op in self.opponents) else None
        self.matches = {
            b.opponent.name: paired_match(ours, b.decide, pairs, cfg.selfplay.max_turns, movegen_of(cfg))
            for b in self.built
        }
        self._past: dict[int, Any] = {}  # version -> params, for past_K opponents

    def run_once(self) -> Unit:
        e = self.cfg.eval
        run_id, run_status = runstate.get_run(self.r, self.keys)
        self.status, wait = run_gate(run_status)
        if wait:
            return wait
        if run_id != self.run_id:  # a new run: its versions start again from 0
            self.run_id = run_id
            self.follower.reset()
            self._past.clear()
            self.skipped.clear()
        got = evals.claim(
            self.r,
            self.keys,
            e.every_versions,
            e.games,
            e.slice_games,
            self.follower.version,
            self.identity.owner,
            skip=sorted(self.skipped)[-evals.KEEP_VERSIONS :],
        )
        if got is None:
            self.status = "idle"
            return Unit(idle_s=1.0)
        if got.version != self.follower.version and (
            got.blob is None or not self.follower.offer(got.version, got.blob)
        ):
            return self.skip_version(got)
        self.status = "evaluating"
        started = self.clock()
        points: dict[str, list[int]] = {}
        parts = []
        for op in self.opponents:
            if op.cube:
                pts = points[op.name] = self.play_cubeful(op.plies, got.version, got.slice_index, got.games)
                parts.append(f"{op.name} {sum(pts):+d} points/{len(pts)}")
        for b in self.built:
            name, opp_params = b.opponent.name, None
            if b.opponent.kind == "past":
                past = self.past_params(got.version - b.opponent.back)
                if past is None:  # nothing that old is kept (yet): this opponent sits out
                    parts.append(f"{name} -")
                    continue
                name_v, opp_params = f"{name} (v{past[0]})", past[1]
            else:
                name_v = name
            pts = points[name] = self.play(name, opp_params, got.version, got.slice_index, got.games)
            parts.append(f"{name_v} {sum(p > 0 for p in pts)}/{len(pts)}")
        er = self.score_decisions(got.slice_index)
        if er:
            parts.append(f"ER {er_of_sums(er)['er']:.1f} on {er['n']} decisions")
        done = evals.add_slice(self.r, self.keys, got, points, er)
        if done < 0:
            return Unit(f"version {got.version} slice {got.slice_index}: already counted (re-issued)")
        totals = evals.results_of(self.r, self.keys, got.version)
        for name, pts in points.items():
            self.games += len(pts)
            self.metrics.add_games(len(pts))
            t = totals.get(name, {})
            if t.get("games"):
                self.metrics.eval_result(name, t.get("wins", 0) / t["games"], t.get("points", 0) / t["games"])
        if er:
            self.metrics.eval_error_rate(er_of_sums(totals.get(evals.ER, {})))
        if done == got.slices:  # the version is complete
            if self.tracking is not None and run_id is not None:
                for name, t in totals.items():
                    self.tracking.metrics(run_id, eval_metrics(name, t), got.version)
            if crown(self.cfg, self.r, self.keys, self.tracking, run_id, got.run, got.version, totals):
                parts.append("now the run's champion")
        summary = f"version {got.version} slice {got.slice_index}: won " + ", ".join(parts)
        first, self.slices = self.slices == 0, self.slices + 1
        # the first slice compiles this worker's matches: no rest for that one-off time
        return Unit(summary, idle_s=0.0 if first else self.rest_after(self.clock() - started))

    def rest_after(self, busy_s: float) -> float:
        """Seconds to rest after `busy_s` seconds of evaluation, so that evaluating takes at most
        `eval.busy_share` of the wall-clock time."""
        share = self.cfg.eval.busy_share
        return max(0.0, busy_s) * (1.0 - share) / share

    def score_decisions(self, index: int) -> dict[str, int] | None:
        """ER sums of slice `index`'s part of the decision set by the current version (greedy
        0-ply), or None when `eval.er_decisions` is 0."""
        if self.decisions is None:
            return None
        k = self.cfg.eval.er_decisions
        start = (index * k) % self.decisions.size
        part = self.decisions.part(start, start + k)
        variables = playing(self.cfg, self.follower.params)
        return er_sums(part, score_afterstates(self.net.apply, variables, part.afterstates))

    def skip_version(self, got: evals.Claim) -> Unit:
        """This worker cannot play `got.version` (its weights were refused, or are gone): give the
        slice back for another worker and never claim that version again (this run)."""
        reason = self.follower.refused.get(got.version, "its weights are no longer in Redis")
        self.skipped[got.version] = reason
        evals.release(self.r, self.keys, got, self.identity.owner)
        log.warning(
            "skipping version %d on this worker (%s); slice %d released to the others",
            got.version,
            reason,
            got.slice_index,
        )
        self.status = "idle"
        return Unit(f"skipped version {got.version} ({reason}); released slice {got.slice_index}", idle_s=1.0)

    def past_params(self, version: int) -> tuple[int, Any] | None:
        """(version, params) of the newest evaluated version <= `version` still kept, or None."""
        if version < 0:
            return None
        found = evals.past_weights(self.r, self.keys, version)
        if found is None:
            return None
        v, blob = found
        if v not in self._past:
            try:
                params, _ = decode_weights(blob, self.template, model_hash(self.cfg))
            except (CorruptDataError, IncompatibleError) as exc:
                log.warning("past weights of version %d refused: %s", v, exc)
                return None
            self._past = {v: params}  # one at a time: slices go version by version
        return v, self._past[v]

    def play(self, name: str, opp_params: Any, version: int, index: int, games: int) -> list[int]:
        """`games` finished games (whole pairs); seeds depend only on (version, slice), so a
        re-issued slice is the same games."""
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.cfg.training.seed), version), index)
        both = (playing(self.cfg, self.follower.params), playing(self.cfg, opp_params))
        pts = run_pairs(self.matches[name], both, key, games, max_rounds=100)
        return [int(p) for p in pts]

    def play_cubeful(self, plies: int, version: int, index: int, games: int) -> list[int]:
        """Points of `games` cubeful money games against gnubg at `plies` (one gnubg session)."""
        assert self.agent is not None
        seed = (version * 100_003 + index) % (1 << 31)  # gnubg's `set seed`: per (version, slice)
        session = play_cubeful(
            self.agent.load(self.follower.params),
            games,
            opponent_plies=plies,
            seed=seed,
            binary=self.cfg.eval.gnubg_path,
        )
        if session.referee is not None and session.referee.mismatches:
            log.warning("gnubg did not play %d of our moves as sent", len(session.referee.mismatches))
        assert session.result.points is not None
        return [int(p) for p in session.result.points]

    def info(self, now: float) -> WorkerInfo:
        follower = getattr(self, "follower", None)
        return self.identity.info(
            now, self.status, self.games, None if follower is None else follower.version
        )

    def teardown(self) -> None:
        """A slice in progress is abandoned (re-issued once this worker's heartbeat is gone);
        its counters were never touched."""
        for b in self.built:
            b.close()
        if self.tracking is not None:
            self.tracking.close(10.0)


def eval_metrics(opponent: str, s: dict[str, int]) -> dict[str, float]:
    """MLflow metrics of one finished (version, opponent), logged at step = version:
    `eval/<opponent>/win_rate` and `.../ppg` with 95% bounds (`_lo`, `_hi`); of the decision-set
    table (`evals.ER`): `eval/decisions/er`, `.../er_contact`... and `.../best`."""
    if opponent == evals.ER:
        return {eval_key("decisions", k): float(v) for k, v in er_of_sums(s).items() if k != "decisions"}
    res = MatchResult.of_sums(s)
    (lo, hi), (plo, phi) = res.win_rate_ci(), res.ppg_ci()
    values = {"win_rate": res.win_rate, "win_rate_lo": lo, "win_rate_hi": hi}
    values |= {"ppg": res.ppg, "ppg_lo": plo, "ppg_hi": phi}
    return {eval_key(opponent, k): v for k, v in values.items()}
