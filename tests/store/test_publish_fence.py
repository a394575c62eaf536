"""The publish script is fenced by the trainer lock and never puts fresh weights over a model:
each refusal writes nothing (on fakeredis and on a real redis-server)."""

from __future__ import annotations

import jax
import pytest
import redis

from bgai.core.network import BgNet, init_params
from bgai.store import weights
from bgai.store.codec import encode_weights
from bgai.store.keys import Keys
from bgai.store.lock import TrainerLock

KEYS = Keys("t1")


def blob(version: int, seed: int = 0) -> bytes:
    params = init_params(BgNet((8,)), jax.random.key(seed))
    return encode_weights(params, version=version, step=version, model_hash="m", config_hash="c")


def model(r: redis.Redis) -> list[bytes | None]:
    return r.mget([KEYS.model_version, KEYS.model_weights, KEYS.model_config])


def test_a_publish_is_refused_unless_the_lock_holds_its_owner(r: redis.Redis) -> None:
    a = TrainerLock(KEYS, "host:training:aaaa", 30)
    b = TrainerLock(KEYS, "host:training:bbbb", 30)
    with pytest.raises(weights.NotLockHolderError, match="not held"):
        weights.publish(r, KEYS, 0, blob(0), lock=a)  # nobody holds it
    assert model(r) == [None, None, None]
    assert a.acquire(r)
    assert weights.publish(r, KEYS, 0, blob(0), lock=a, nonce="n0") == 0
    before = model(r)
    r.delete(KEYS.trainer_lock)  # a's lock expired while it stalled (GC, swap, SIGSTOP) ...
    assert b.acquire(r)  # ... and the standby took it
    with pytest.raises(weights.NotLockHolderError, match="held by host:training:bbbb"):
        weights.publish(r, KEYS, 1, blob(1, seed=1), lock=a)  # a wakes up: fenced
    with pytest.raises(weights.NotLockHolderError):
        weights.publish(r, KEYS, 1, blob(1, seed=1))  # nor anyone without the lock
    assert model(r) == before  # nothing written
    assert weights.published(r, KEYS) == weights.Published(0, "n0")
    assert weights.publish(r, KEYS, 1, blob(1), lock=b) == 1


def test_initial_weights_are_refused_over_an_existing_version(r: redis.Redis) -> None:
    lock = TrainerLock(KEYS, "host:training:aaaa", 30)
    assert lock.acquire(r)
    assert weights.publish(r, KEYS, 0, blob(0), lock=lock, fresh=True) == 0  # a new run's start
    weights.publish(r, KEYS, 5, blob(5), lock=lock)
    before = model(r)
    with pytest.raises(weights.ModelExistsError, match="Redis holds version 5"):
        weights.publish(r, KEYS, 6, blob(6, seed=1), lock=lock, fresh=True)
    assert model(r) == before


def test_every_publish_records_a_new_nonce_beside_the_version(r: redis.Redis) -> None:
    assert weights.published(r, KEYS) is None
    weights.publish(r, KEYS, 0, blob(0))
    first = weights.published(r, KEYS)
    weights.install(r, KEYS, 0, blob(0))  # `bgai-runs resume`: the same number, another publish
    again = weights.published(r, KEYS)
    assert first is not None and again is not None
    assert first.version == again.version == 0 and first.nonce and first.nonce != again.nonce
