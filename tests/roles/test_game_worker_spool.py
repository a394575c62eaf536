"""A game worker rides out a Redis outage: it plays on with its model, keeps finished episodes in
a bounded spool (dropping and counting the oldest beyond it), and pushes them when Redis is back,
each exactly once. Real redis-server (append-only file on), stopped and started on the same port."""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import pytest
import redis
from redis_server import free_port, redis_server

from bgai.config import config_hash, load_config, model_hash
from bgai.core.network import BgNet, init_params
from bgai.roles.game_worker import GameWorker
from bgai.roles.identity import Identity
from bgai.store import runstate, weights
from bgai.store.client import connect
from bgai.store.codec import encode_weights, read_episode_header
from bgai.store.keys import Keys
from bgai.store.replay import ReplayStore

FLEET_YAML = Path(__file__).resolve().parents[1] / "fleet.yaml"
SPOOL = 6
AOF = ("--appendonly", "yes")


def test_outage_spools_then_pushes_each_episode_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port, data = free_port(), tmp_path / "redis"
    overrides = {
        "redis.port": str(port),
        "selfplay.spool_episodes": str(SPOOL),
        "redis.socket_timeout_s": "1",
    }
    cfg = load_config(FLEET_YAML, env={}, overrides=overrides)
    keys = Keys(cfg.redis.prefix)
    r = connect(cfg.redis)
    gw = GameWorker(cfg, r, keys, Identity("test:game:0", "game", "127.0.0.1", "cpu", "test"))
    with redis_server(data, port, AOF):
        runstate.start_run(r, keys, "run-s")
        params = init_params(BgNet(tuple(cfg.model.hidden)), jax.random.key(0))
        blob = encode_weights(
            params, version=0, step=0, model_hash=model_hash(cfg), config_hash=config_hash(cfg)
        )
        weights.publish(r, keys, 0, blob)
        gw.setup()
        replay = ReplayStore(r, keys, cfg.buffer.capacity_positions)
        for _ in range(100):  # bounded: until a first game is in the buffer
            gw.run_once()
            if replay.stats().get("pushed_episodes"):
                break
        before = replay.stats()["pushed_episodes"]
        assert before > 0
    # Redis is down: the worker plays on, spooling; past SPOOL episodes the oldest are dropped
    played_before = gw.games
    for _ in range(400):
        unit = gw.run_once()
        assert "offline" in unit.summary and gw.status == "offline"
        if gw.spool.dropped >= 3:
            break
    assert len(gw.spool) == SPOOL and gw.spool.dropped >= 3
    offline_games = gw.games - played_before
    assert offline_games == SPOOL + gw.spool.dropped
    assert any("Redis unreachable" in m for m in caplog.messages)
    # a broken pipeline had already landed the first spooled episode: it must not land twice
    with redis_server(data, port, AOF):
        first_seq, first_blob = gw.spool.items[0]
        assert replay.push(first_blob, source=gw.spool.source, seq=first_seq) >= 0
        gw.run_once()
        assert gw.status == "running" and len(gw.spool) == 0
        stats = replay.stats()
        # before + SPOOL spooled (one of them pushed by hand above) + this unit's own games
        assert stats["pushed_episodes"] == before + SPOOL + (gw.games - played_before - offline_games)
        assert gw.spool.duplicates == 1
        assert any("Redis back" in m and f"pushed {SPOOL - 1} spooled" in m for m in caplog.messages)
        ids = list(range(stats["oldest"], stats["newest"] + 1))
        headers = [read_episode_header(b) for b in replay.episodes(ids) if b is not None]
        assert len(headers) == stats["episodes"]
        # the dedup state survived the restart (append-only file)
        assert int(r.hget(keys.buffer_sources, gw.spool.source)) == gw.spool.next_seq - 1
        with pytest.raises(redis.ResponseError, match="refused"):
            r.evalsha(
                replay._push.sha,
                4,
                *(keys.buffer_episodes, keys.buffer_stats, keys.buffer_next_id, keys.buffer_sources),
                keys.buffer_episode_prefix,
                b"x" * (5 * 2**20),
                1,
                10,
                "",
                -1,
                4 * 2**20,
            )
    r.close()
