"""The store on fakeredis and on a real redis-server: weights, replay, registry, run state, lock."""

from __future__ import annotations

import logging

import jax
import numpy as np
import pytest
import redis
from synthetic_episodes import K, make_episode

from bgai.core.network import BgNet, init_params
from bgai.errors import CorruptDataError, IncompatibleError, NonFiniteWeightsError
from bgai.store import codec, runstate, weights
from bgai.store.codec import decode_rows, decode_weights, encode_episode, encode_weights, episode_rows
from bgai.store.keys import NO_RUN, Keys
from bgai.store.lock import TrainerLock
from bgai.store.replay import ReplayStore
from bgai.store.sampler import ReplayMirror

KEYS = Keys("t1")
BUF = KEYS.buffer(NO_RUN)  # no run named in Redis: the buffer of none


def small_params(hidden: tuple[int, ...] = (8,)) -> dict:
    return init_params(BgNet(hidden), jax.random.key(0))


# --- codec -----------------------------------------------------------------------------------


def test_episode_codec_round_trip() -> None:
    ep = make_episode(40, 1)
    blob = encode_episode(ep, surprise=0.25)
    rows = episode_rows(blob)
    starts = np.cumsum([0] + [len(x) for x in rows[:-1]])
    got = decode_rows(b"".join(rows), starts, K)
    np.testing.assert_array_equal(got["boards"], ep.boards)
    np.testing.assert_array_equal(got["mask"], ep.mask)
    np.testing.assert_array_equal(got["outcome"], ep.outcome)
    np.testing.assert_array_equal(got["steps"], ep.steps)
    np.testing.assert_allclose(got["policy"], ep.policy, atol=3 / 255)
    assert len(blob) / len(ep) < 32 + 5 * K + 8
    with pytest.raises(CorruptDataError):
        episode_rows(blob[:-5])
    # a value-only train step's rows: the same positions, targets and outcomes, no plays decoded
    value_only = decode_rows(b"".join(rows), starts, K, plays=False)
    assert set(value_only) == {"boards", "value", "outcome"}
    for key, want in value_only.items():
        np.testing.assert_array_equal(want, got[key])
    with pytest.raises(CorruptDataError, match="past the end"):  # still checked for length
        decode_rows(b"".join(rows)[:-3], starts, K, plays=False)


def test_a_corrupt_episode_is_skipped_not_fatal(r: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    store = ReplayStore(r, KEYS, capacity=10_000)
    mirror = ReplayMirror(store, K)
    eps = [make_episode(30, i) for i in range(3)]
    ids = store.push_many([encode_episode(ep) for ep in eps])
    good = r.get(BUF.episode(ids[1]))
    r.set(BUF.episode(ids[1]), good[:16] + b"garbage" * 10)  # same header, broken body
    with caplog.at_level(logging.WARNING):
        got = mirror.sample(200, np.random.default_rng(0))
    assert mirror.skipped == 1 and f"skipping replay episode {ids[1]}" in caplog.text
    kept = np.concatenate([eps[0].boards, eps[2].boards])
    assert (got["boards"][:, None, :] == kept[None]).all(-1).any(-1).all()


def test_weights_codec_refuses_corrupt_and_foreign_blobs() -> None:
    params = small_params()
    blob = encode_weights(params, version=3, step=30, model_hash="m1", config_hash="c1")
    restored, header = decode_weights(blob, params, "m1")
    assert header["version"] == 3
    jax.tree.map(np.testing.assert_array_equal, restored, params)
    flipped = bytearray(blob)
    flipped[-10] ^= 0xFF
    with pytest.raises(CorruptDataError, match="checksum"):
        decode_weights(bytes(flipped), params, "m1")
    with pytest.raises(CorruptDataError, match="magic"):
        decode_weights(b"\x80\x04pickle", params, "m1")
    with pytest.raises(IncompatibleError, match="model"):
        decode_weights(blob, params, "other")
    with pytest.raises(IncompatibleError, match="shapes"):
        decode_weights(blob, small_params((9,)), "m1")


def nan_params() -> dict:
    """Small params with one NaN (a diverged network)."""
    leaves, tree = jax.tree.flatten(small_params())
    leaves[0] = np.asarray(leaves[0]).copy()
    leaves[0].flat[0] = np.nan
    return jax.tree.unflatten(tree, leaves)


def test_weights_that_are_not_all_finite_are_never_encoded_nor_taken(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(NonFiniteWeightsError, match="not finite"):
        encode_weights(nan_params(), version=2, step=2, model_hash="m", config_hash="c")
    good = encode_weights(small_params(), version=1, step=1, model_hash="m", config_hash="c")
    with monkeypatch.context() as m:  # a blob made behind the encoder's back
        m.setattr(codec, "non_finite_leaves", lambda tree: [])
        forged = encode_weights(nan_params(), version=2, step=2, model_hash="m", config_hash="c")
    with pytest.raises(CorruptDataError, match="not finite"):
        decode_weights(forged, small_params(), "m")
    follower = weights.WeightsFollower(KEYS, small_params(), "m")
    assert follower.offer(1, good)
    with caplog.at_level(logging.ERROR):
        assert not follower.offer(2, forged)
    assert follower.version == 1 and "not finite" in caplog.text


# --- weights in Redis ------------------------------------------------------------------------


def test_publish_is_atomic_and_only_grows(r: redis.Redis) -> None:
    params = small_params()
    blob = encode_weights(params, version=1, step=10, model_hash="m", config_hash="c")
    assert weights.publish(r, KEYS, 1, blob) == 1
    assert weights.fetch(r, KEYS) == (1, blob)
    meta = weights.model_meta(r, KEYS)
    assert meta == {"version": 1, "step": 10, "model_hash": "m", "config_hash": "c", "nonce": meta["nonce"]}
    assert weights.published(r, KEYS) == weights.Published(1, meta["nonce"])
    with pytest.raises(weights.StaleVersionError):
        weights.publish(r, KEYS, 1, blob)
    with pytest.raises(ValueError, match="stamped"):
        weights.publish(r, KEYS, 2, blob)


def test_follower_keeps_last_good_model(r: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    params = small_params()
    follower = weights.WeightsFollower(KEYS, params, "m")
    assert not follower.update(r)  # nothing published yet
    good = encode_weights(params, version=1, step=1, model_hash="m", config_hash="c")
    weights.publish(r, KEYS, 1, good)
    assert follower.update(r) and follower.version == 1
    # a corrupt blob of version 2, written behind the codec's back
    bad = bytearray(encode_weights(params, version=2, step=2, model_hash="m", config_hash="c"))
    bad[-1] ^= 1
    r.set(KEYS.model_version, 2)
    r.set(KEYS.model_weights, bytes(bad))
    with caplog.at_level(logging.ERROR):
        assert not follower.update(r)
    assert follower.version == 1 and follower.params is not None
    assert "refused weights version 2" in caplog.text and "checksum" in caplog.text
    # a foreign model's blob
    weights.publish(
        r, KEYS, 3, encode_weights(small_params((9,)), version=3, step=3, model_hash="m", config_hash="c")
    )
    assert not follower.update(r) and follower.version == 1
    assert "IncompatibleError" in follower.refused[3]
    weights.publish(r, KEYS, 4, encode_weights(params, version=4, step=4, model_hash="m", config_hash="c"))
    assert follower.update(r) and follower.version == 4


# --- replay buffer ---------------------------------------------------------------------------


def test_capacity_is_enforced_on_every_push(r: redis.Redis) -> None:
    store = ReplayStore(r, KEYS, capacity=500)
    lengths = [37, 80, 12, 120, 64, 99, 41, 73, 58, 90, 33, 77]
    for i, n in enumerate(lengths):
        store.push(encode_episode(make_episode(n, i)))
        st = store.stats()
        assert st["size"] <= 500 or st["episodes"] == 1
        live = lengths[st["oldest"] - 1 : st["newest"]]
        assert st["size"] == sum(live) and st["episodes"] == len(live)
        assert r.llen(BUF.episodes) == len(live)
        assert int(r.lindex(BUF.episodes, 0)) == st["oldest"]
    assert not r.exists(BUF.episode(1))  # evicted whole
    assert st["pushed_positions"] == sum(lengths)
    assert st["evicted_positions"] == sum(lengths) - st["size"]


def test_uniform_sampling_covers_the_whole_buffer(r: redis.Redis) -> None:
    store = ReplayStore(r, KEYS, capacity=10_000)
    mirror = ReplayMirror(store, K)
    eps = [make_episode(n, i) for i, n in enumerate([10, 200, 30])]
    store.push_many([encode_episode(ep) for ep in eps])
    mirror.refresh()
    ids = mirror.episode_of(mirror.draw(24_000, np.random.default_rng(0)))
    share = np.bincount(ids, minlength=4)[1:] / len(ids)
    np.testing.assert_allclose(share, [10 / 240, 200 / 240, 30 / 240], atol=0.01)  # by positions
    got = mirror.sample(300, np.random.default_rng(1))
    boards = np.concatenate([ep.boards for ep in eps])
    matches = (got["boards"][:, None, :] == boards[None]).all(-1).any(-1)
    assert matches.all()  # every sampled row is a stored position, decoded intact
    assert len({b.tobytes() for b in got["boards"]}) > 150  # and they are spread out


def test_surprise_weighted_sampling(r: redis.Redis) -> None:
    store = ReplayStore(r, KEYS, capacity=10_000)
    mirror = ReplayMirror(store, K)
    store.push(encode_episode(make_episode(100, 1), surprise=0.01))
    store.push(encode_episode(make_episode(100, 2), surprise=0.99))
    mirror.refresh()
    ids = mirror.episode_of(mirror.draw(10_000, np.random.default_rng(0), surprise_fraction=1.0))
    assert np.mean(ids == 2) > 0.97
    ids = mirror.episode_of(mirror.draw(10_000, np.random.default_rng(0), surprise_fraction=0.5))
    assert 0.7 < np.mean(ids == 2) < 0.8  # half uniform (0.5 each), half by surprise (~0.99)


def test_mirror_follows_pushes_and_evictions(r: redis.Redis) -> None:
    writer = ReplayStore(r, KEYS, capacity=300)
    mirror = ReplayMirror(writer, K)
    rng = np.random.default_rng(0)
    eps = {}
    for i in range(1, 61):
        eps[i] = make_episode(int(rng.integers(20, 80)), i)
        writer.push(encode_episode(eps[i]))
        if i % 3 == 0:  # the trainer samples now and then; pushes and evictions happen between
            got = mirror.sample(64, rng)
            st = writer.stats()
            assert mirror.size == st["size"]
            live = np.concatenate([eps[j].boards for j in range(st["oldest"], st["newest"] + 1)])
            assert (got["boards"][:, None, :] == live[None]).all(-1).any(-1).all()
    assert mirror.arena.used < 3 * 300 * (32 + 5 * K)  # compaction keeps memory bounded
    writer.clear()
    assert mirror.refresh()["size"] == 0 and mirror.size == 0


# --- registry, run state, lock ---------------------------------------------------------------


# the registry's liveness and identity: tests/store/test_registry.py


def test_run_state(r: redis.Redis) -> None:
    assert runstate.get_run(r, KEYS) == (None, None)
    assert runstate.ensure_run(r, KEYS, "run1") == ("run1", "running")
    runstate.set_status(r, KEYS, "paused")
    assert runstate.ensure_run(r, KEYS, "run2") == ("run1", "paused")  # never overwrites
    with pytest.raises(ValueError):
        runstate.set_status(r, KEYS, "sleeping")


def test_trainer_lock_is_exclusive_and_released_safely(r: redis.Redis) -> None:
    a, b = TrainerLock(KEYS, "a", 30), TrainerLock(KEYS, "b", 30)
    assert a.acquire(r) and not b.acquire(r)
    assert a.acquire(r)  # refresh
    assert not b.release(r) and a.holder(r) == "a"  # b cannot release a's lock
    assert a.release(r) and b.acquire(r) and b.holder(r) == "b"


def test_keys_use_the_prefix() -> None:
    assert Keys("x").worker("w") == ":".join(("x", "workers", "w"))
    assert Keys().model_weights == ":".join(("bgai", "model", "weights"))
    with pytest.raises(ValueError):
        Keys("bad prefix")
