"""The worker registry on fakeredis and on a real redis-server: a worker is alive while its key
lives (Redis's clock, whatever the worker's own clock says), one process holds a worker id, and
owner tokens keep two processes with one id from both holding the trainer lock."""

from __future__ import annotations

import json

import redis

from bgai.clock import FakeClock
from bgai.roles.identity import Identity
from bgai.store import registry
from bgai.store.keys import Keys
from bgai.store.lock import TrainerLock

KEYS = Keys("t3")
TTL = 60.0
PLAN_FIELDS = {
    "type",
    "device_type",
    "device_name",
    "hostname",
    "metrics_port",
    "status",
    "games_generated",
    "model_version",
    "last_heartbeat",
}


def ident(worker_id: str = "h1:game:0", hostname: str = "h1") -> Identity:
    return Identity(worker_id, "game", hostname, "cpu", "test cpu", 9100)


def test_a_worker_is_alive_while_its_key_lives_whatever_its_clock_says(r: redis.Redis) -> None:
    now = FakeClock().now()
    behind, ahead = ident("h1:game:0"), ident("h2:game:0", "h2")
    registry.heartbeat(r, KEYS, behind.info(now - 300, "running"), TTL)  # its clock 5 min slow
    registry.heartbeat(r, KEYS, ahead.info(now + 300, "running"), TTL)  # 5 min fast
    rec = json.loads(r.get(KEYS.worker(behind.worker_id)))
    assert set(rec) >= PLAN_FIELDS | {"owner", "unit_age_s"} and rec["owner"] == behind.owner
    assert 0 < r.pttl(KEYS.worker(behind.worker_id)) <= 60_000
    both = {behind.worker_id, ahead.worker_id}
    assert set(registry.live_workers(r, KEYS)) == both and registry.reap(r, KEYS) == []
    ages = registry.heartbeat_ages(r, KEYS, sorted(both), TTL)
    assert all(a is not None and 0 <= a < 10 for a in ages.values()), ages  # Redis's clock
    r.delete(KEYS.worker(behind.worker_id))  # what Redis does when its TTL runs out
    assert set(registry.live_workers(r, KEYS)) == {ahead.worker_id}
    assert registry.reap(r, KEYS) == [behind.worker_id]
    assert set(registry.list_workers(r, KEYS)) == {ahead.worker_id}
    assert registry.heartbeat_ages(r, KEYS, [behind.worker_id], TTL) == {behind.worker_id: None}
    registry.deregister(r, KEYS, ahead.worker_id, ahead.owner)
    assert registry.list_workers(r, KEYS) == {}


def test_an_unreadable_record_is_reaped(r: redis.Redis) -> None:
    w = ident("h1:e0")
    registry.heartbeat(r, KEYS, w.info(0.0, "running"), TTL)
    r.set(KEYS.worker(w.worker_id), b"\xff not json", px=60_000)
    assert registry.live_workers(r, KEYS) == {}
    assert registry.reap(r, KEYS) == [w.worker_id] and not r.exists(KEYS.worker(w.worker_id))


def test_one_worker_id_is_registered_by_one_process_at_a_time(r: redis.Redis) -> None:
    first, twin = ident(), ident()  # one id (two hosts with one hostname): two processes
    key = KEYS.worker(first.worker_id)
    assert first.owner != twin.owner and first.owner.startswith(first.worker_id + ":")
    assert registry.heartbeat(r, KEYS, first.info(0.0, "running"), TTL) is None
    taken = registry.heartbeat(r, KEYS, twin.info(0.0, "running"), TTL)
    assert taken is not None and (taken.owner, taken.hostname) == (first.owner, "h1")
    assert 0 < taken.pttl_ms <= 60_000
    assert json.loads(r.get(key))["owner"] == first.owner  # nothing written
    seen = registry.holder(r, KEYS, first.worker_id)
    assert seen is not None and seen.raw == taken.raw
    registry.deregister(r, KEYS, first.worker_id, twin.owner)  # not its record: left alone
    assert r.exists(key)
    # the twin, having watched the record go unrefreshed, replaces exactly those bytes
    assert registry.heartbeat(r, KEYS, twin.info(1.0, "running"), TTL, replace=taken.raw) is None
    assert json.loads(r.get(key))["owner"] == twin.owner
    assert registry.heartbeat(r, KEYS, first.info(2.0, "running"), TTL, replace=taken.raw) is not None
    # a record naming no owner (an older bgai) does not hold the id
    r.set(key, "{}", px=60_000)
    assert registry.heartbeat(r, KEYS, first.info(3.0, "running"), TTL) is None
    registry.deregister(r, KEYS, first.worker_id, first.owner)
    assert not r.exists(key)


def test_two_processes_with_one_worker_id_never_both_hold_the_trainer_lock(r: redis.Redis) -> None:
    a, b = ident("h1:training"), ident("h1:training")  # cloned hosts: one hostname
    la, lb = TrainerLock(KEYS, a.owner, 30), TrainerLock(KEYS, b.owner, 30)
    assert la.owner == a.owner and a.owner.startswith("h1:training:")
    assert la.acquire(r) and not lb.acquire(r)
    assert not lb.release(r) and la.holder(r) == a.owner
    assert la.release(r) and lb.acquire(r) and lb.holder(r) == b.owner
