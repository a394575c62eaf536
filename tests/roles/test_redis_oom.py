"""Redis out of memory (a real redis-server at its `maxmemory`, `noeviction`) is an outage, not a
crash: a refused push leaves the buffer as it was and reads as "unavailable", the role loop backs
off and counts it (`bgai_redis_oom_errors_total`), the spool keeps its episodes, and all of it
carries on, in the same process, once Redis has room again; a game worker plays on into its
spool and pushes it once there is room (the chaos suite does the same to the whole fleet)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import jax
import pytest
import redis
from redis_server import redis_server
from synthetic_episodes import make_episode

from bgai.agent import net_of
from bgai.clock import FakeClock
from bgai.config import config_hash, load_config, model_hash
from bgai.core.network import init_params
from bgai.obs.metrics import RoleMetrics
from bgai.roles.base import RoleRunner
from bgai.roles.coordinator import Coordinator
from bgai.roles.game_worker import GameWorker
from bgai.roles.identity import Identity
from bgai.store import runstate, weights
from bgai.store.client import connect, is_oom, is_unavailable
from bgai.store.codec import encode_episode, encode_weights
from bgai.store.keys import Keys
from bgai.store.replay import ReplayStore
from bgai.store.spool import Spool

FLEET_YAML = Path(__file__).resolve().parents[1] / "fleet.yaml"
KEYS = Keys("oom")


def full(r: redis.Redis) -> None:
    r.config_set("maxmemory", 1)  # below what it holds: every write that needs memory is refused


def room(r: redis.Redis) -> None:
    r.config_set("maxmemory", 0)


def test_a_push_refused_for_memory_is_unavailable_and_leaves_nothing(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis", extra=("--maxmemory-policy", "noeviction")) as port:
        r = redis.Redis(port=port)
        store = ReplayStore(r, KEYS, capacity=1000)
        store.push(encode_episode(make_episode(30, 0)))
        before = store.stats()
        full(r)
        with pytest.raises(redis.RedisError) as refused:
            store.push(encode_episode(make_episode(30, 1)))
        assert is_oom(refused.value) and is_unavailable(refused.value)
        assert store.stats() == before  # refused at its first write: nothing of it is stored
        spool = Spool(store, "oom:game:0", capacity=10)
        spool.add([encode_episode(make_episode(20, i)) for i in range(3)], run="")
        with pytest.raises(redis.RedisError):
            spool.drain()
        assert len(spool) == 3  # kept for later
        room(r)
        assert spool.drain() == 3 and store.stats()["episodes"] == before["episodes"] + 3
        r.close()


def test_the_role_loop_backs_off_while_redis_is_full_and_carries_on(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis", extra=("--maxmemory-policy", "noeviction")) as port:
        cfg = load_config(
            FLEET_YAML,
            env={},
            overrides={
                "redis.port": str(port),
                "redis.backoff_max_s": "0.2",
                "head.targets_file": str(tmp_path / "targets.json"),
            },
        )
        admin = redis.Redis(port=port)
        full(admin)
        r = connect(cfg.redis)
        ident = Identity("oom:coordinator", "coordinator", "127.0.0.1", "cpu", "test")
        metrics = RoleMetrics(ident.worker_id, "coordinator", "h")
        role = Coordinator(cfg, r, KEYS, ident, FakeClock())
        runner = RoleRunner(role, ident.worker_id, cfg, r, KEYS, FakeClock(), metrics)
        thread = threading.Thread(target=runner.run, kwargs={"install_signals": False})
        thread.start()
        try:

            def ooms() -> float:
                got = metrics.registry.get_sample_value(
                    "bgai_redis_oom_errors_total", {"worker_id": ident.worker_id}
                )
                return got or 0.0

            deadline = time.monotonic() + 60
            while ooms() < 3:  # refused, again and again: waiting, not exiting
                thread.join(0.05)
                assert thread.is_alive() and time.monotonic() < deadline
            assert runner.backoff.failures >= 3 and runstate.get_run(admin, KEYS)[0] is None
            room(admin)
            while runstate.get_run(admin, KEYS)[1] != "running" or runner.backoff.failures:
                thread.join(0.05)
                assert thread.is_alive() and time.monotonic() < deadline  # the same process
        finally:
            runner.stop.set()
            thread.join(30)
        assert not thread.is_alive()
        r.close()
        admin.close()


def test_a_game_worker_spools_while_redis_is_full_and_pushes_once_there_is_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with redis_server(tmp_path / "redis", extra=("--maxmemory-policy", "noeviction")) as port:
        overrides = {
            "redis.port": str(port),
            "selfplay.spool_dir": str(tmp_path / "spool"),
        }
        cfg = load_config(FLEET_YAML, env={}, overrides=overrides)
        keys, r = Keys(cfg.redis.prefix), connect(cfg.redis)
        runstate.start_run(r, keys, "run-m")
        params = init_params(net_of(cfg), jax.random.key(0))
        blob = encode_weights(
            params, version=0, step=0, model_hash=model_hash(cfg), config_hash=config_hash(cfg)
        )
        weights.publish(r, keys, 0, blob)
        gw = GameWorker(cfg, r, keys, Identity("oom:game:0", "game", "127.0.0.1", "cpu", "test"))
        gw.setup()
        replay = ReplayStore(r, keys, cfg.buffer.capacity_positions)
        for _ in range(100):  # bounded: until a first game is in the buffer
            gw.run_once()
            if replay.stats().get("pushed_episodes"):
                break
        before = replay.stats()["pushed_episodes"]
        assert before > 0
        full(r)
        for _ in range(100):  # Redis answers but refuses every write: play on into the spool
            gw.run_once()
            if len(gw.spool):
                break
        assert gw.status == "offline" and len(gw.spool) > 0 and gw.spool.dropped == 0
        assert any("Redis out of memory" in m for m in caplog.messages)
        assert replay.stats()["pushed_episodes"] == before  # nothing landed meanwhile
        ooms = gw.metrics.registry.get_sample_value(
            "bgai_redis_oom_errors_total", {"worker_id": "oom:game:0"}
        )
        assert ooms and ooms >= 1
        spooled = len(gw.spool)
        room(r)
        gw.run_once()
        assert gw.status == "running" and len(gw.spool) == 0
        assert replay.stats()["pushed_episodes"] >= before + spooled  # every spooled episode landed
        assert any("Redis back after" in m for m in caplog.messages)
        gw.teardown()
        r.close()
