"""A game worker rides out a Redis outage: it plays on with its model, keeps finished episodes in
a bounded spool (dropping and counting the oldest beyond it), and pushes them when Redis is back,
each exactly once. The spool is on disk too, so a restart of the worker while Redis is away (a
warm stop, or kill -9 of the real process) loses none of them: the next process of the same worker
pushes them first, each once, and keeps the worker's one dedup field in `buffer:sources`. Real
redis-server (append-only file on), stopped and started on the same port."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import pytest
import redis
from redis_server import free_port, redis_server
from synthetic_episodes import make_episode

from bgai.agent import net_of
from bgai.config import Config, config_hash, load_config, model_hash
from bgai.core.network import init_params
from bgai.roles.game_worker import GameWorker
from bgai.roles.identity import Identity
from bgai.store import runstate, weights
from bgai.store.client import connect
from bgai.store.codec import encode_episode, encode_weights, read_episode_header
from bgai.store.disk_spool import Spooled, decode_file, worker_dir
from bgai.store.keys import Keys
from bgai.store.replay import ReplayStore

FLEET_YAML = Path(__file__).resolve().parents[1] / "fleet.yaml"
BIN = Path(sys.executable).parent
SPOOL = 6
AOF = ("--appendonly", "yes")


def fleet_config(port: int, spool_dir: Path, **extra: str) -> Config:
    overrides = {
        "redis.port": str(port),
        "selfplay.spool_episodes": str(SPOOL),
        "selfplay.spool_dir": str(spool_dir),
        "redis.socket_timeout_s": "1",
        **extra,
    }
    return load_config(FLEET_YAML, env={}, overrides=overrides)


def start_run(cfg: Config, r: redis.Redis, keys: Keys, run_id: str = "run-s") -> None:
    runstate.start_run(r, keys, run_id)
    params = init_params(net_of(cfg), jax.random.key(0))
    blob = encode_weights(params, version=0, step=0, model_hash=model_hash(cfg), config_hash=config_hash(cfg))
    weights.publish(r, keys, 0, blob)


def worker(cfg: Config, r: redis.Redis, keys: Keys, worker_id: str = "test:game:0") -> GameWorker:
    gw = GameWorker(cfg, r, keys, Identity(worker_id, "game", "127.0.0.1", "cpu", "test"))
    gw.setup()
    return gw


def until(what: str, check: Callable[[], bool], timeout_s: float, poll_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)  # the polling interval of a condition wait


def on_disk(directory: Path, prefix: str = "bgai") -> list[Spooled]:
    """The episodes in a worker's spool directory, as a restarted worker will load them."""
    if not directory.is_dir():
        return []
    found = []
    for p in sorted(directory.glob("*.spool")):
        try:
            found += decode_file(p.name, p.read_bytes(), prefix)
        except OSError:  # removed between the listing and the read
            continue
    return found


def buffer_blobs(replay: ReplayStore) -> list[bytes]:
    stats = replay.stats()
    if not stats.get("episodes"):
        return []
    blobs = replay.episodes(list(range(stats["oldest"], stats["newest"] + 1)))
    return [b for b in blobs if b is not None]


def test_outage_spools_then_pushes_each_episode_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port, data = free_port(), tmp_path / "redis"
    cfg = fleet_config(port, tmp_path / "spool")
    keys = Keys(cfg.redis.prefix)
    r = connect(cfg.redis)
    with redis_server(data, port, AOF):
        start_run(cfg, r, keys)
        gw = worker(cfg, r, keys)
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
    # the spool on disk holds exactly what is in memory (the dropped ones are gone from both)
    assert [(x.seq, x.blob) for x in on_disk(gw.spool.disk.dir)] == [(x.seq, x.blob) for x in gw.spool.items]
    # a broken pipeline had already landed the first spooled episode: it must not land twice
    with redis_server(data, port, AOF):
        first = gw.spool.items[0]
        assert replay.push(first.blob, source=first.source, seq=first.seq) >= 0
        gw.run_once()
        assert gw.status == "running" and len(gw.spool) == 0
        assert on_disk(gw.spool.disk.dir) == []  # landed: the files are gone
        stats = replay.stats()
        # before + SPOOL spooled (one of them pushed by hand above) + this unit's own games
        assert stats["pushed_episodes"] == before + SPOOL + (gw.games - played_before - offline_games)
        assert gw.spool.duplicates == 1
        assert any("Redis back" in m and f"pushed {SPOOL - 1} spooled" in m for m in caplog.messages)
        ids = list(range(stats["oldest"], stats["newest"] + 1))
        headers = [read_episode_header(b) for b in replay.episodes(ids) if b is not None]
        assert len(headers) == stats["episodes"]
        # the dedup state survived the restart (append-only file)
        assert replay.last_seq(gw.spool.source) == gw.spool.next_seq - 1
        with pytest.raises(redis.ResponseError, match="refused"):  # the script's own check
            blob = encode_episode(make_episode(10, 0)) + b"x" * (5 * 2**20)
            replay.send(blob, 10, None, "", -1, replay.run())
        gw.teardown()
    r.close()


def test_a_warm_stop_while_redis_is_down_keeps_the_spool_for_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port, data = free_port(), tmp_path / "redis"
    cfg = fleet_config(port, tmp_path / "spool", **{"selfplay.spool_episodes": "1000"})
    keys = Keys(cfg.redis.prefix)
    r = connect(cfg.redis)
    with redis_server(data, port, AOF):
        start_run(cfg, r, keys)
        gw = worker(cfg, r, keys)
        replay = ReplayStore(r, keys, cfg.buffer.capacity_positions)
        for _ in range(100):
            gw.run_once()
            if replay.stats().get("pushed_episodes"):
                break
        assert len(gw.spool) == 0
    for _ in range(100):  # Redis down: play until a few episodes wait in the spool
        gw.run_once()
        if len(gw.spool) >= 3:
            break
    spooled = [x.blob for x in gw.spool.items]
    assert len(spooled) >= 3
    gw.teardown()  # what the role loop runs on SIGTERM
    assert any("kept in" in m and "for the next start" in m for m in caplog.messages)
    assert [x.blob for x in on_disk(gw.spool.disk.dir)] == spooled
    with redis_server(data, port, AOF):
        again = worker(cfg, r, keys)  # the next process of the same worker
        assert again.spool.source == gw.spool.source and len(again.spool) == len(spooled)
        again.run_once()
        assert again.spool.restored == 0 and on_disk(again.spool.disk.dir) == []
        assert any("an earlier process had spooled on disk" in m for m in caplog.messages)
        landed = buffer_blobs(replay)
        assert all(landed.count(b) == 1 for b in spooled)
        # one dedup field for the worker, however often it starts (not one per process)
        assert r.hkeys(replay.buffer_keys().sources) == [gw.spool.source.encode()]
        again.teardown()
    r.close()


def test_episodes_spooled_while_redis_is_down_survive_kill_9(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port, data, spool = free_port(), tmp_path / "redis", tmp_path / "spool"
    big = {"selfplay.spool_episodes": "1000", "buffer.capacity_positions": "1000000"}
    cfg = fleet_config(port, spool, **big)
    keys = Keys(cfg.redis.prefix)
    r = connect(cfg.redis)
    directory = worker_dir(spool, keys.prefix, "test:game:k9")
    sets = [
        x
        for k, v in {
            "redis.port": str(port),
            "redis.socket_timeout_s": "1",
            "selfplay.spool_dir": str(spool),
            **big,
        }.items()
        for x in ("--set", f"{k}={v}")
    ]
    cmd = [
        str(BIN / "bgai"),
        "game-worker",
        "--config",
        str(FLEET_YAML),
        *sets,
        "--worker-id",
        "test:game:k9",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGAI_") or k.startswith("BGAI_JAX__")}
    log = (tmp_path / "worker.log").open("w")
    replay = ReplayStore(r, keys, cfg.buffer.capacity_positions)
    proc = None
    try:
        with redis_server(data, port, AOF):
            start_run(cfg, r, keys)
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            until("the worker to push", lambda: bool(replay.stats().get("pushed_episodes")), 120)
        # Redis is down; the worker plays on and spools to disk; then it is killed outright
        until("5 episodes spooled on disk", lambda: len(on_disk(directory)) >= 5, 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        spooled = on_disk(directory)
        assert len({x.seq for x in spooled}) == len(spooled) >= 5
        with redis_server(data, port, AOF):
            again = worker(cfg, r, keys, "test:game:k9")  # the next process of that worker
            assert len(again.spool) == len(spooled)
            again.run_once()  # Redis answers: the spool first
            assert not list(directory.glob("*.spool"))
            landed = buffer_blobs(replay)
            digests = [hashlib.sha256(b).hexdigest() for b in landed]
            assert len(set(digests)) == len(digests)  # nothing in the buffer twice
            assert all(landed.count(x.blob) == 1 for x in spooled)  # every spooled one, once
            assert r.hlen(replay.buffer_keys().sources) == 1  # both processes pushed as one source
            again.teardown()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
        r.close()
    assert any("an earlier process had spooled on disk" in m for m in caplog.messages)
