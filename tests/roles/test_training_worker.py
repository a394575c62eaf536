"""The training worker against a real redis-server, one `run_once` at a time: weights that are
not finite are never published nor checkpointed (it rolls back to its newest good checkpoint), a
buffer of nothing but unusable episodes makes it wait instead of exit, and a corrupt newest
checkpoint is set aside for the newest good one."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import redis
import zstandard
from redis_server import redis_server

from bgai.config import Config, load_config
from bgai.core import rules
from bgai.core.episodes import Episode
from bgai.roles.identity import Identity
from bgai.roles.training_worker import TrainingWorker
from bgai.store import runstate, weights
from bgai.store.client import connect
from bgai.store.codec import EP_HEADER_SIZE, encode_episode, expand_episode
from bgai.store.keys import Keys
from bgai.store.replay import ReplayStore
from bgai.train.checkpoint import list_checkpoints

FLEET_YAML = Path(__file__).resolve().parents[1] / "fleet.yaml"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Config, redis.Redis, Keys]]:
    with redis_server(tmp_path / "redis") as port:
        cfg = load_config(
            FLEET_YAML,
            env={},
            overrides={"redis.port": str(port), "training.checkpoint_dir": str(tmp_path / "ckpt")},
        )
        r = connect(cfg.redis)
        keys = Keys(cfg.redis.prefix)
        runstate.start_run(r, keys, "run-a")
        yield cfg, r, keys
        r.close()


def trainer(cfg: Config, r: redis.Redis, keys: Keys, name: str = "training") -> TrainingWorker:
    tw = TrainingWorker(cfg, r, keys, Identity(f"test:{name}", "training", "127.0.0.1", "cpu", "test"))
    tw.setup()
    return tw


def episode(rows: int, seed: int) -> Episode:
    rng = np.random.default_rng(seed)
    k = 8
    steps = rng.integers(0, rules.NUM_STEPS, (rows, k, 4)).astype(np.uint8)
    return Episode(
        boards=rng.integers(-2, 3, (rows, 28)).astype(np.int8),
        dice=rng.integers(0, 21, rows).astype(np.int8),
        mask=np.ones((rows, k), bool),
        steps=steps,
        policy=np.full((rows, k), 1 / k, np.float32),
        player=(np.arange(rows) % 2).astype(np.int8),
        result=1,
        model_version=0,
    )


def with_nan(tw: TrainingWorker) -> None:
    """The trainer's params as a diverged step leaves them."""
    params = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), tw.state.params)
    tw.state = tw.state.replace(params=params)


def test_weights_that_are_not_finite_are_never_published_nor_checkpointed(
    env: tuple, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, r, keys = env
    tw = trainer(cfg, r, keys)
    assert "initial weights" in tw.run_once().summary
    good = tw.checkpoint()  # the newest good checkpoint (step 0, version 0)
    ReplayStore(r, keys, cfg.buffer.capacity_positions).push_many(
        [encode_episode(episode(50, i)) for i in range(6)]
    )

    def diverge(steps: int) -> dict[str, float]:
        tw.state = tw.state.replace(step=tw.state.step + steps)
        with_nan(tw)
        return {"loss": float("nan"), "policy_loss": float("nan"), "value_loss": float("nan")}

    monkeypatch.setattr(tw, "_train", diverge)
    with caplog.at_level(logging.ERROR):
        unit = tw.run_once()
    assert "not finite" in unit.summary and "rolled back" in unit.summary, unit.summary
    assert weights.current_version(r, keys) == 0  # Redis keeps the last good version
    assert list_checkpoints(tw.dir) == [good]  # nothing written from the diverged state
    assert "not finite" in caplog.text
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tw.state.params))
    assert tw.step == 0 and tw.version == 0  # back on the checkpoint


def test_a_buffer_of_only_unusable_episodes_makes_the_trainer_wait(env: tuple) -> None:
    cfg, r, keys = env
    tw = trainer(cfg, r, keys)
    tw.run_once()  # initial weights
    store = ReplayStore(r, keys, cfg.buffer.capacity_positions)
    for i in range(6):  # 300 positions, each episode without its zstd checksum: all refused
        raw = expand_episode(encode_episode(episode(50, i)))
        store.push(raw[:EP_HEADER_SIZE] + zstandard.ZstdCompressor().compress(raw[EP_HEADER_SIZE:]))
    unit = tw.run_once()
    assert unit.idle_s > 0 and tw.status == "waiting"
    assert tw.mirror.skipped == 6


def test_a_corrupt_newest_checkpoint_is_set_aside_for_the_newest_good_one(
    env: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, r, keys = env
    tw = trainer(cfg, r, keys)
    tw.run_once()
    tw.state = tw.state.replace(step=tw.state.step + 4)
    older = tw.checkpoint()
    tw.state = tw.state.replace(step=tw.state.step + 4)
    newest = tw.checkpoint()
    newest.write_bytes(newest.read_bytes()[:-100])  # truncated (a disk that lied)
    (tw.dir / "ckpt_000000009.tmp").write_bytes(b"half a checkpoint")  # a crash mid-save
    tw.lock.release(r)  # it dies; another takes over from the same directory
    restarted = trainer(cfg, r, keys, "training2")
    with caplog.at_level(logging.WARNING):
        restarted.run_once()
    assert restarted.step == 4  # the newest good one
    assert list_checkpoints(restarted.dir) == [older]
    assert (restarted.dir / (newest.name + ".bad")).exists() and newest.name in caplog.text
    assert not list(restarted.dir.glob("*.tmp"))
