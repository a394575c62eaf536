"""`bgai game-worker`: batched self-play with the newest good weights; pushes whole episodes.

One unit = one self-play chunk (`selfplay.chunk_turns` decisions in each of `batch_size` game
slots). Between chunks the worker checks the run status (paused: idle; stopped: exit 0) and
swaps to newer weights if they pass the codec's checks.

Finished episodes go through the spool (`bgai.store.spool`): while Redis is unreachable they wait
there, on disk too (`selfplay.spool_dir/{prefix}/{worker id}`), so a restart of the worker loses
none; the next process of the same worker id pushes them first, once Redis answers.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bgai.agent import EpisodeValues, movegen_of, net_of, playing, self_play_decider
from bgai.clock import Clock, SystemClock
from bgai.config import Config, model_hash
from bgai.core.episodes import EpisodeAssembler
from bgai.core.network import init_params
from bgai.core.selfplay import play_chunk, start_games
from bgai.obs.metrics import RoleMetrics
from bgai.roles.base import Unit, run_gate
from bgai.roles.identity import Identity
from bgai.store import runstate
from bgai.store.client import Redis, is_oom, is_unavailable
from bgai.store.codec import encode_episode
from bgai.store.disk_spool import DiskSpool, worker_dir
from bgai.store.keys import Keys
from bgai.store.registry import WorkerInfo
from bgai.store.replay import ReplayStore
from bgai.store.spool import Spool
from bgai.store.weights import WeightsFollower

log = logging.getLogger(__name__)


class GameWorker:
    def __init__(
        self,
        cfg: Config,
        r: Redis,
        keys: Keys,
        identity: Identity,
        seed: int = 0,
        clock: Clock | None = None,
        metrics: RoleMetrics | None = None,
    ) -> None:
        self.cfg, self.r, self.keys, self.identity = cfg, r, keys, identity
        self.metrics = metrics or RoleMetrics(identity.worker_id, identity.type, identity.hostname)
        self.seed = seed
        self.clock: Clock = clock or SystemClock()
        self.loaded_at: float | None = None
        self.unit_s: float | None = None
        self.games = 0
        self.positions = 0
        self.status = "starting"
        self.run_id: str | None = None

    def setup(self) -> None:
        cfg = self.cfg
        self.net = net_of(cfg)
        template = init_params(self.net, jax.random.key(0))
        self.follower = WeightsFollower(self.keys, template, model_hash(cfg))
        movegen = movegen_of(cfg)
        s = cfg.selfplay
        self.play = jax.jit(
            partial(
                play_chunk,
                self_play_decider(cfg, self.net),
                length=s.chunk_turns,
                max_turns=s.max_turns,
                movegen=movegen,
            )
        )
        self.values = EpisodeValues(cfg, self.net)
        self.replay = ReplayStore(self.r, self.keys, cfg.buffer.capacity_positions)
        self.offline_since: float | None = None
        self.assembler = EpisodeAssembler()
        self.key = jax.random.key(self.seed)
        self.key, k = jax.random.split(self.key)
        self.slots = start_games(k, s.batch_size)
        wid = self.identity.worker_id
        directory = worker_dir(Path(s.spool_dir).expanduser(), self.keys.prefix, wid)
        self.spool = Spool(self.replay, wid, s.spool_episodes, DiskSpool(directory, self.keys.prefix))
        self.spool.open()  # last: what an earlier process left is ours now (SpoolDirError: exit 2)

    def run_once(self) -> Unit:
        reachable = True
        try:
            run_id, run_status = runstate.get_run(self.r, self.keys)
            if not self.spool.synced:  # once, before this process numbers an episode
                self.spool.sync()
        except Exception as exc:
            if not (is_unavailable(exc) and self.can_play_offline()):
                raise
            self.go_offline(exc)
            run_id, run_status, reachable = self.run_id, "running", False
        self.status, wait = run_gate(run_status)
        if wait:
            return wait
        if run_id != self.run_id:  # a new run: its own versions, and no half-played old games
            self.run_id = run_id
            self.follower.reset()
            old = self.spool.discard_run(run_id or "")
            if old:
                log.info("%s: dropped %d spooled episodes of an earlier run", self.identity.worker_id, old)
            self.assembler = EpisodeAssembler()
            self.key, k = jax.random.split(self.key)
            self.slots = start_games(k, self.cfg.selfplay.batch_size)
        if reachable and (self.offline_since is not None or self.spool.restored):
            self.push_spool(reachable=True)  # Redis answers (again): the backlog first
        swapped = False
        if self.offline_since is None:
            try:
                swapped = self.follower.update(self.r)
            except Exception as exc:
                if not (is_unavailable(exc) and self.can_play_offline()):
                    raise
                self.go_offline(exc)
        if swapped:
            self.loaded_at = self.clock.now()
        if self.follower.params is None:
            self.status = "idle"
            return Unit(idle_s=1.0)
        self.status = "running" if self.offline_since is None else "offline"
        start = time.perf_counter()
        version = self.follower.version
        assert version is not None
        self.key, k = jax.random.split(self.key)
        params = playing(self.cfg, self.follower.params)
        self.slots, chunk = self.play(params, self.slots, k)
        host = jax.device_get(chunk)
        episodes = self.assembler.add(host, version)
        labels = self.values.label(params, episodes)  # value targets and surprise
        self.spool.add(
            [
                encode_episode(ep.labelled(v), s)
                for ep, v, s in zip(episodes, labels.targets, labels.surprise, strict=True)
            ],
            run=self.run_id or "",
        )
        self.push_spool()
        self.metrics.spool(len(self.spool), self.spool.dropped)
        self.games += len(episodes)
        self.metrics.add_games(len(episodes))
        n = sum(len(ep) for ep in episodes)
        self.positions += n
        self.unit_s = time.perf_counter() - start
        self.metrics.selfplay(n, self.leaf_evaluations(host) / max(self.unit_s, 1e-9))
        note = f" (now version {version})" if swapped else ""
        if self.offline_since is not None:
            return Unit(f"played {len(episodes)} games offline, {len(self.spool)} spooled{note}")
        return Unit(f"pushed {len(episodes)} games, {n} positions{note}")

    def can_play_offline(self) -> bool:
        """Redis is down: play on (spooling) if there is a model and the run was running."""
        return self.follower.params is not None and self.status in ("running", "offline")

    def go_offline(self, exc: BaseException) -> None:
        if is_oom(exc):  # Redis answers but is full: spool on until it takes writes again
            self.metrics.redis_oom()
        if self.offline_since is None:
            self.offline_since = self.clock.now()
            log.warning(
                "%s: Redis %s (%s): playing on with version %s, spooling episodes (up to %d)",
                self.identity.worker_id,
                "out of memory" if is_oom(exc) else "unreachable",
                exc,
                self.follower.version,
                self.spool.capacity,
            )
        self.status = "offline"

    def push_spool(self, reachable: bool = False) -> None:
        """Push the spool (this unit's episodes and any kept while Redis was down). Offline, a
        push that reached Redis (or `reachable`: another command just did) means it is back."""
        pushed_before, dups_before, had = self.spool.pushed, self.spool.duplicates, len(self.spool)
        try:
            self.spool.drain()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self.go_offline(exc)
            return
        if self.spool.restored:
            log.info(
                "%s: pushed %d episodes an earlier process had spooled on disk (%d duplicates "
                "skipped: they had landed)",
                self.identity.worker_id,
                self.spool.pushed - pushed_before,
                self.spool.duplicates - dups_before,
            )
            self.spool.restored = 0
        if self.offline_since is not None and (reachable or had):
            down = self.clock.now() - self.offline_since
            log.info(
                "%s: Redis back after %.0f s: pushed %d spooled episodes (%d duplicates skipped, "
                "%d dropped in all because the spool was full)",
                self.identity.worker_id,
                down,
                self.spool.pushed - pushed_before,
                self.spool.duplicates,
                self.spool.dropped,
            )
            self.offline_since = None
            self.status = "running"

    def leaf_evaluations(self, chunk: Any) -> int:
        """Search work in a chunk: simulations per decision (mcts), or legal plays scored."""
        if self.cfg.selfplay.mode == "mcts":
            return int(np.prod(chunk.dice.shape)) * self.cfg.search.num_simulations
        return int(np.asarray(chunk.mask).sum())

    def info(self, now: float) -> WorkerInfo:
        return self.identity.info(
            now, self.status, self.games, self.follower_version(), self.loaded_at, self.unit_s
        )

    def follower_version(self) -> int | None:
        follower = getattr(self, "follower", None)
        return None if follower is None else follower.version

    def teardown(self) -> None:
        """Unfinished games are dropped: an episode is pushed whole or not at all. Finished ones
        Redis cannot take now stay in the spool directory for the next process."""
        spool = getattr(self, "spool", None)
        if spool is None:
            return
        if len(spool):
            try:
                spool.drain()
            except Exception as exc:
                log.warning(
                    "%s: %d spooled episodes kept in %s for the next start (%s)",
                    self.identity.worker_id,
                    len(spool),
                    spool.disk.dir if spool.disk is not None else "memory (lost)",
                    exc,
                )
        spool.close()
