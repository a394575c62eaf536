"""Eval workers against a real redis-server, driven one `run_once` at a time: GNU Backgammon
and an earlier version of our own model as opponents, slices shared by two workers, a dead
worker's slice played by the other, totals equal to the games played."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import jax
import pytest
import redis
from redis_server import redis_server

from bgai.agent import net_of, playing
from bgai.bench.decisions import DecisionSet
from bgai.bench.strength import er_of_sums, error_rate, score_afterstates
from bgai.config import Config, config_hash, load_config, model_hash
from bgai.core.network import init_params
from bgai.roles.eval_worker import EvalWorker
from bgai.roles.identity import Identity
from bgai.store import evals, registry, runstate, weights
from bgai.store.client import connect
from bgai.store.codec import encode_weights
from bgai.store.keys import Keys

FLEET_YAML = Path(__file__).resolve().parents[1] / "fleet.yaml"
GNUBG = "/usr/games/gnubg"
# Debian's gnubg where installed (CI), else gnubg-nn: one backend (each costs ~2 min of compiles)
BACKENDS = ["external" if os.path.exists(GNUBG) else "nn"]


def ident(name: str) -> Identity:
    return Identity(f"test:{name}", "eval", "127.0.0.1", "cpu", "test")


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    pytest.importorskip("gnubg_nn")
    tmp = tmp_path_factory.mktemp("evalw")
    with redis_server(tmp / "redis") as port:
        cfg = load_config(
            FLEET_YAML,
            env={},
            overrides={
                "redis.port": str(port),
                "eval.opponents": "[pubeval, gnubg_0ply, past_2]",
                "eval.gnubg_backend": request.param,
                "training.checkpoint_dir": str(tmp / "ckpt"),
            },
        )
        r = connect(cfg.redis)
        keys = Keys(cfg.redis.prefix)
        runstate.start_run(r, keys, "run-a")
        workers = [EvalWorker(cfg, r, keys, ident(n)) for n in ("e1", "e2")]
        for w in workers:
            w.setup()
            beat(cfg, r, keys, w)
        yield cfg, r, keys, workers
        for w in workers:
            w.teardown()
        r.close()


def beat(cfg: Config, r: redis.Redis, keys: Keys, w: EvalWorker) -> None:
    registry.heartbeat(r, keys, w.info(0.0), cfg.head.heartbeat_ttl_s)


def publish(cfg: Config, r: redis.Redis, keys: Keys, version: int) -> None:
    params = init_params(net_of(cfg), jax.random.key(version))
    blob = encode_weights(
        params, version=version, step=version, model_hash=model_hash(cfg), config_hash=config_hash(cfg)
    )
    weights.publish(r, keys, version, blob)


def test_two_workers_share_versions_against_gnubg_and_the_past(env: tuple) -> None:
    cfg, r, keys, (e1, e2) = env
    publish(cfg, r, keys, 0)
    s1, s2 = e1.run_once().summary, e2.run_once().summary
    assert "version 0 slice 0" in s1 and "version 0 slice 1" in s2
    assert "gnubg_0ply" in s1 and "past_2 -" in s1  # nothing two versions back yet: sits out
    res = evals.results_of(r, keys, 0)
    assert set(res) == {"pubeval", "gnubg_0ply", evals.ER}
    assert all(res[o]["games"] == cfg.eval.games for o in ("pubeval", "gnubg_0ply"))
    # each slice scored its own part of the decision set: together, the version's ER over all
    # of them, equal to the bench's ER of that player on those decisions
    k, slices = cfg.eval.er_decisions, cfg.eval.games // cfg.eval.slice_games
    assert res[evals.ER]["n"] == k * slices and "ER " in s1
    part = DecisionSet.load().head(k * slices)
    variables = playing(cfg, init_params(net_of(cfg), jax.random.key(0)))
    want = error_rate(part, score_afterstates(e1.net.apply, variables, part.afterstates))
    got = er_of_sums(res[evals.ER])
    assert got["er"] == pytest.approx(want.er, abs=1e-3) and got["er_race"] == pytest.approx(
        want.er_race, abs=1e-3
    )
    assert e1.run_once().idle_s > 0  # all of version 0 played, nothing newer
    for v in (1, 2, 3):
        publish(cfg, r, keys, v)
        for w in (e1, e2):
            assert f"version {v} slice" in w.run_once().summary
    res = evals.results_of(r, keys, 3)
    assert res["past_2"]["games"] == cfg.eval.games  # version 3 against version 1
    assert sum(res["gnubg_0ply"][f"{k}{n}"] for k in "wl" for n in (1, 2, 3)) == cfg.eval.games


def test_a_dead_workers_slice_is_played_by_the_other(env: tuple) -> None:
    cfg, r, keys, (e1, e2) = env
    publish(cfg, r, keys, 4)
    e = cfg.eval
    # e1 claims a slice and dies before adding it (a SIGKILL): its heartbeat key expires
    lost = evals.claim(r, keys, e.every_versions, e.games, e.slice_games, 3, e1.identity.owner)
    assert lost is not None and lost.version == 4
    registry.deregister(r, keys, "test:e1")
    summaries = [e2.run_once().summary, e2.run_once().summary]
    assert any(f"version 4 slice {lost.slice_index}" in s for s in summaries), summaries
    assert evals.reissued(r, keys, 4) == 1
    res = evals.results_of(r, keys, 4)
    assert all(s["games"] == e.games for o, s in res.items() if o != evals.ER), res
    assert res[evals.ER]["n"] == e.er_decisions * e.games // e.slice_games  # the re-issued slice counted once
    beat(cfg, r, keys, e1)
    assert e1.run_once().idle_s > 0 and e2.run_once().idle_s > 0


def test_a_worker_that_refuses_a_version_releases_its_slice_and_skips_it(
    env: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, r, keys, (e1, e2) = env
    for w in (e1, e2):
        beat(cfg, r, keys, w)
    v = (weights.current_version(r, keys) or 0) + 1
    publish(cfg, r, keys, v)
    e1.follower.model_hash = "another-model"  # as on a host configured with another model.hidden
    try:
        with caplog.at_level(logging.WARNING):
            unit = e1.run_once()
        assert f"skipped version {v}" in unit.summary and unit.idle_s > 0, unit.summary
        assert "IncompatibleError" in caplog.text
        for _ in range(3):  # it never takes version v's slices again (no tight loop)
            assert e1.run_once().idle_s > 0
        owners = r.hgetall(keys.eval("run-a").slices(v))
        assert b"test:e1" not in owners.values(), owners
        # the other worker takes the released slice and finishes the version
        played = [e2.run_once().summary for _ in range(cfg.eval.games // cfg.eval.slice_games)]
        assert all(f"version {v} slice" in s for s in played), played
        totals = evals.results_of(r, keys, v)
        assert all(t["games"] == cfg.eval.games for o, t in totals.items() if o != evals.ER)
        assert r.zscore(keys.eval("run-a").open, v) is None
    finally:
        e1.follower.model_hash = model_hash(cfg)


@pytest.mark.skipif(not os.access(GNUBG, os.X_OK), reason="needs Debian's gnubg")
def test_cubeful_games_against_gnubg_add_up_per_version(tmp_path: Path) -> None:
    """A cube opponent: each slice is a cubeful gnubg session seeded by (version, slice), its
    points (cube x result) in the version's totals like any opponent's; a replayed slice is
    the same session. The worker rests after each slice as `eval.busy_share` asks."""
    with redis_server(tmp_path / "redis") as port:
        cfg = load_config(
            FLEET_YAML,
            env={},
            overrides={
                "redis.port": str(port),
                "eval.opponents": "[gnubg_0ply_cube]",
                "eval.er_decisions": "0",
                "eval.busy_share": "0.25",
            },
        )
        r, keys = connect(cfg.redis), Keys(cfg.redis.prefix)
        runstate.start_run(r, keys, "run-c")
        ticks = iter(range(0, 10_000, 2))  # each reading of the clock 2 s after the last
        w = EvalWorker(cfg, r, keys, ident("c1"), clock=lambda: float(next(ticks)))
        w.setup()
        try:
            beat(cfg, r, keys, w)
            publish(cfg, r, keys, 0)
            units = [w.run_once() for _ in range(cfg.eval.games // cfg.eval.slice_games)]
            # eval.busy_share 0.25: a slice that took 2 s is followed by 6 s of rest, but the
            # first (it compiles the worker's matches)
            assert [u.idle_s for u in units] == [0.0] + [6.0] * (len(units) - 1)
            summaries = [u.summary for u in units]
            assert all("gnubg_0ply_cube" in s and "points/4" in s for s in summaries), summaries
            t = evals.results_of(r, keys, 0)["gnubg_0ply_cube"]
            assert t["games"] == cfg.eval.games and t["sq"] >= cfg.eval.games  # every game scores
            again = w.play_cubeful(0, 0, 1, cfg.eval.slice_games)
            assert again == w.play_cubeful(0, 0, 1, cfg.eval.slice_games)
        finally:
            w.teardown()
            r.close()
