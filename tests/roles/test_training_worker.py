"""The training worker against a real redis-server, one `run_once` at a time: weights that are
not finite are never published nor checkpointed (it rolls back to its newest good checkpoint), a
buffer of nothing but unusable episodes makes it wait instead of exit, and a corrupt newest
checkpoint is set aside for the newest good one. A trainer with no checkpoint of the run adopts
the weights Redis holds (or refuses, exit 2), never fresh ones; a standby looks in MLflow when it
takes over, not only when it started; a trainer that lost the lock mid-unit cannot publish and
stands by; and a trainer restarted after Redis lost its last second never re-uses a version."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import redis
import zstandard
from redis_server import redis_server

from bgai.clock import FakeClock
from bgai.config import Config, load_config
from bgai.core import rules
from bgai.core.episodes import Episode
from bgai.core.network import BgNet, init_params
from bgai.obs.tracking import Tracker, TrackingQueue
from bgai.roles.base import RoleRunner
from bgai.roles.identity import Identity
from bgai.roles.trainer_start import NoModelToResumeError
from bgai.roles.training_worker import TrainingWorker
from bgai.store import runstate, weights
from bgai.store.client import connect
from bgai.store.codec import EP_HEADER_SIZE, decode_weights, encode_episode, encode_weights, expand_episode
from bgai.store.keys import Keys
from bgai.store.replay import ReplayStore
from bgai.train.checkpoint import list_checkpoints, read_meta

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


def trainer(
    cfg: Config,
    r: redis.Redis,
    keys: Keys,
    name: str = "training",
    tracking: TrackingQueue | None = None,
    clock: FakeClock | None = None,
) -> TrainingWorker:
    identity = Identity(f"test:{name}", "training", "127.0.0.1", "cpu", "test")
    tw = TrainingWorker(cfg, r, keys, identity, tracking=tracking, clock=clock)
    tw.setup()
    return tw


def elsewhere(cfg: Config, checkpoint_dir: Path) -> Config:
    """The same fleet as a trainer on another host sees it: its own (empty) checkpoint dir."""
    overrides = {"redis.port": str(cfg.redis.port), "training.checkpoint_dir": str(checkpoint_dir)}
    return load_config(FLEET_YAML, env={}, overrides=overrides)


def shifted(params: Any, by: float) -> Any:
    """Params as training leaves them (anything but the initial weights)."""
    return jax.tree.map(lambda x: x + by, params)


def same(a: Any, b: Any) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True)
    )


def model_keys(r: redis.Redis, keys: Keys) -> list[bytes | None]:
    return r.mget([keys.model_version, keys.model_weights, keys.model_config])


def fill_buffer(cfg: Config, r: redis.Redis, keys: Keys) -> None:
    """300 positions: past `min_buffer_positions`, so the trainer trains."""
    ReplayStore(r, keys, cfg.buffer.capacity_positions).push_many(
        [encode_episode(episode(50, i)) for i in range(6)]
    )


class DirTracker:
    """MLflow as far as a trainer reads it: the run's checkpoint artifacts, kept in a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        return [f"{path}/{p.name}" for p in sorted(self.root.glob("ckpt_*.bgai"))]

    def download(self, run_id: str, path: str, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(self.root / Path(path).name, dest))


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


def test_a_checkpoint_says_how_many_games_the_run_had_and_its_training_time(env: tuple) -> None:
    """As train-local's do, so `bgai bench curve` draws a fleet run by games and minutes."""
    cfg, r, keys = env
    clock = FakeClock()
    tw = trainer(cfg, r, keys, clock=clock)
    tw.run_once()  # initial weights
    fill_buffer(cfg, r, keys)  # 6 games, 300 positions
    for _ in range(3):
        clock.advance(10.0)
        tw.run_once()
    meta = read_meta(tw.checkpoint())
    assert (meta["games"], meta["positions"], meta["elapsed_s"]) == (6, 300, 30.0)
    tw.lock.release(r)  # it stops; a restarted trainer goes on counting from its checkpoint
    restarted = trainer(cfg, r, keys, "training2", clock=clock)
    restarted.run_once()
    clock.advance(5.0)
    restarted.run_once()
    assert read_meta(restarted.checkpoint())["elapsed_s"] == 35.0


def test_without_a_policy_loss_the_trainer_trains_the_value_head_from_the_buffer(env: tuple) -> None:
    """training.policy_weight 0 (the configs' setting): the trainer samples positions and value
    targets only and steps value-only; the weights it publishes moved, the policy loss is not
    reported as a number."""
    cfg, r, keys = env
    cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, policy_weight=0.0))
    tw = trainer(cfg, r, keys)
    tw.run_once()  # initial weights
    first = tw.state.params
    fill_buffer(cfg, r, keys)
    for _ in range(3):
        unit = tw.run_once()
    assert tw.step > 0 and not same(first, tw.state.params)
    assert "(value " in str(unit) and "policy" not in str(unit), unit


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


def test_a_trainer_with_no_checkpoint_adopts_the_weights_redis_holds(
    env: tuple, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, r, keys = env
    a = trainer(cfg, r, keys)
    a.run_once()  # initial weights, version 0
    a.state = a.state.replace(params=shifted(a.state.params, 0.25), step=a.state.step + 6)
    assert a.publish() == 1  # trained weights; a dies before any checkpoint
    a.lock.release(r)
    # the standby on another host: its own checkpoint directory, empty
    b = trainer(elsewhere(cfg, tmp_path / "host-b"), r, keys, "training-b")
    with caplog.at_level(logging.INFO):
        b.run_once()
    assert "adopted weights of version 1 from Redis at step 6" in caplog.text
    assert "optimizer state starts fresh" in caplog.text
    _, blob = weights.fetch(r, keys)
    held, _ = decode_weights(blob, b.state.params, b.model_hash)
    assert b.version == 1 and b.step == 6 and same(b.state.params, held)
    assert same(b.state.opt_state, b.optimizer.init(held))
    assert b.publish() == 2  # its first version carries Redis's weights, not fresh ones
    _, first = weights.fetch(r, keys)
    assert same(decode_weights(first, b.state.params, b.model_hash)[0], held)


@pytest.mark.parametrize("damage", ["weights gone", "weights of another model"])
def test_with_no_checkpoint_and_no_usable_weights_in_redis_the_trainer_refuses(
    env: tuple, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    cfg, r, keys = env
    a = trainer(cfg, r, keys)
    a.run_once()  # version 0
    a.lock.release(r)
    if damage == "weights gone":
        r.delete(keys.model_weights)
    else:
        other = init_params(BgNet((9,)), jax.random.key(0))
        r.set(
            keys.model_weights, encode_weights(other, version=0, step=0, model_hash="other", config_hash="c")
        )
    before = model_keys(r, keys)
    cfg_b = elsewhere(cfg, tmp_path / "host-b")
    with pytest.raises(NoModelToResumeError, match="refusing to train fresh weights"):
        trainer(cfg_b, r, keys, "training-b").run_once()
    assert model_keys(r, keys) == before  # nothing published
    assert r.get(keys.trainer_lock) is None  # and the lock is left for a trainer that can train
    # as a process: one line, no traceback, exit 2 (supervisord leaves it EXITED)
    b = TrainingWorker(cfg_b, r, keys, Identity("test:training-c", "training", "127.0.0.1", "cpu", "test"))
    with caplog.at_level(logging.ERROR):
        code = RoleRunner(b, "test:training-c", cfg_b, r, keys, FakeClock()).run(install_signals=False)
    assert code == 2 and model_keys(r, keys) == before
    refusals = [rec for rec in caplog.records if "refusing to train fresh weights" in rec.getMessage()]
    assert len(refusals) == 1 and refusals[0].exc_info is None


def test_a_standby_looks_in_mlflow_when_it_takes_over_not_only_at_start(
    env: tuple, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, r, keys = env
    a = trainer(cfg, r, keys)
    a.run_once()  # version 0
    mlflow = TrackingQueue(cast(Tracker, DirTracker(a.dir)))  # a's checkpoints, as logged to the run
    b = trainer(elsewhere(cfg, tmp_path / "host-b"), r, keys, "training-b", tracking=mlflow)
    assert b.run_once().idle_s > 0 and b.status == "standby"  # MLflow has no checkpoint yet
    a.state = a.state.replace(params=shifted(a.state.params, 0.5), step=a.state.step + 4)
    newest = a.checkpoint()  # hours later: a checkpoints (and MLflow gets it), publishes, dies
    a.publish()
    a.lock.release(r)
    with caplog.at_level(logging.INFO):
        b.run_once()
    assert f"resumed from {b.dir / newest.name} at step 4" in caplog.text
    assert b.step == 4 and same(b.state.params, a.state.params) and same(b.state.opt_state, a.state.opt_state)


def test_a_trainer_that_lost_the_lock_mid_unit_cannot_publish_and_stands_by(
    env: tuple, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, r, keys = env
    a = trainer(cfg, r, keys)
    a.run_once()  # version 0
    fill_buffer(cfg, r, keys)
    b = trainer(cfg, r, keys, "training2")
    assert b.run_once().idle_s > 0 and b.status == "standby"
    after_b: list[list[bytes | None]] = []

    def train(tw: TrainingWorker) -> Any:
        def steps(n: int) -> dict[str, float]:
            tw.state = tw.state.replace(step=tw.state.step + n)
            return {"loss": 1.0, "policy_loss": 0.5, "value_loss": 0.5}

        return steps

    def stall(n: int) -> dict[str, float]:
        """a hangs inside its unit past the lock's TTL; meanwhile the standby takes over."""
        r.delete(keys.trainer_lock)  # what the TTL does while a is stopped
        b.run_once()
        assert b.holds_lock
        after_b.append(model_keys(r, keys))
        return train(a)(n)

    monkeypatch.setattr(b, "_train", train(b))
    monkeypatch.setattr(a, "_train", stall)
    with caplog.at_level(logging.WARNING):
        unit = a.run_once()  # a wakes up and reaches its publish
    assert "lost the lead" in unit.summary and "the trainer lock is held by" in unit.summary, unit.summary
    assert a.status == "standby" and not a.holds_lock
    assert model_keys(r, keys) == after_b[0]  # nothing of a's was written
    assert a.run_once().idle_s > 0 and a.status == "standby"  # and it stays a standby


def test_a_restarted_trainer_never_reuses_a_version_that_redis_lost(
    env: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, r, keys = env
    a = trainer(cfg, r, keys)
    a.run_once()  # version 0
    a.checkpoint()  # its newest checkpoint: step 0, version 0
    synced = {k: r.dump(k) for k in (keys.model_version, keys.model_weights, keys.model_config)}
    worker = weights.WeightsFollower(keys, a.state.params, a.model_hash)
    for v in (1, 2):
        a.state = a.state.replace(params=shifted(a.state.params, 0.1), step=a.state.step + 2)
        assert a.publish() == v
    assert worker.update(r) and worker.version == 2  # a game worker plays version 2
    # the head host crashes: Redis comes back without its last second (versions 1 and 2),
    # the trainer restarts from its checkpoint (version 0)
    for k, dumped in synced.items():
        r.restore(k, 0, dumped, replace=True)
    r.delete(keys.trainer_lock)
    restarted = trainer(cfg, r, keys, "training2")
    with caplog.at_level(logging.WARNING):
        restarted.run_once()
        assert restarted.version == 0 and weights.current_version(r, keys) == 0
        assert restarted.publish() == 3  # not 1 or 2 again: other weights under numbers seen
    assert "Redis lost writes" in caplog.text
    assert worker.update(r) and worker.version == 3  # the worker takes it (1 or 2 it would ignore)


def test_an_unreadable_publish_record_is_logged_and_ignored(
    env: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, r, keys = env
    a = trainer(cfg, r, keys)
    a.run_once()  # version 0
    a.dir.mkdir(parents=True, exist_ok=True)
    (a.dir / "published.json").write_bytes(b"\x00 not json")  # a disk that lied
    a.lock.release(r)
    b = trainer(cfg, r, keys, "training2")
    with caplog.at_level(logging.WARNING):
        b.run_once()
        assert b.publish() == 1
    assert "ignoring unreadable publish record" in caplog.text


def test_a_run_of_planned_minutes_fits_the_decay_and_its_checkpoints_carry_it(
    env: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    """training.run_minutes (scripts/fleet-local --minutes): from its measured steps a second the
    trainer fits the decay to end at `decay_share` of the run; a restarted trainer keeps the fit."""
    cfg, r, keys = env
    t = dataclasses.replace(
        cfg.training, lr_schedule="cosine", warmup_steps=0, run_minutes=1.0, decay_share=0.5
    )
    cfg = dataclasses.replace(cfg, training=t)
    clock = FakeClock()
    tw = trainer(cfg, r, keys, clock=clock)
    tw.run_once()  # initial weights
    fill_buffer(cfg, r, keys)
    notes = []
    with caplog.at_level(logging.INFO):
        for _ in range(5):  # 3 s a unit; fit points at 3, 6 and 12 s of the 60 (3 s: the rate's start)
            clock.advance(3.0)
            notes.append(str(tw.run_once()))
    assert "decay fitted to the run's 1 minutes" in caplog.text
    fitted = [n for n in notes if "decay fitted" in n]
    assert len(fitted) == 2 and tw.decay_steps not in (None, t.decay_steps), notes
    assert read_meta(tw.checkpoint())["decay_steps"] == tw.decay_steps
    tw.lock.release(r)
    restarted = trainer(cfg, r, keys, "training2", clock=clock)
    assert restarted.decay_steps == t.decay_steps
    restarted.run_once()
    assert restarted.decay_steps == tw.decay_steps
