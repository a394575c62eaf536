"""The worker registry: one JSON key per live worker, with a TTL refreshed by each heartbeat.

Liveness is data: a worker is alive while `now - last_heartbeat < ttl`, judged against the
caller's clock (tests move a fake clock instead of sleeping). The key's own TTL removes a worker
that vanished even when no coordinator runs; the coordinator's `reap` also clears the index.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import redis

from bgai.store.keys import Keys


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker says about itself in `workers:{id}` (the schema's fields, plus its id)."""

    worker_id: str
    type: str  # coordinator | game | training | eval
    device_type: str  # cuda | metal | cpu
    device_name: str
    hostname: str
    metrics_port: int
    status: str  # starting | running | idle | paused | stopping
    games_generated: int
    model_version: int | None
    last_heartbeat: float  # seconds since the epoch, from the worker's clock
    # beyond the plan's fields (see keys.py):
    model_loaded_at: float | None = None  # when model_version was swapped in (epoch seconds)
    last_unit_s: float | None = None  # duration of the last unit of work (e.g. one self-play batch)
    metrics_host: str = ""  # address Prometheus scrapes (empty: hostname)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def heartbeat(r: redis.Redis, keys: Keys, info: WorkerInfo, ttl_s: float) -> None:
    """Write the worker's record with a fresh TTL and index it: one round trip."""
    with r.pipeline(transaction=True) as pipe:
        pipe.set(keys.worker(info.worker_id), info.to_json(), px=int(ttl_s * 1000))
        pipe.sadd(keys.workers_index, info.worker_id)
        pipe.execute()


def deregister(r: redis.Redis, keys: Keys, worker_id: str) -> None:
    with r.pipeline(transaction=True) as pipe:
        pipe.delete(keys.worker(worker_id))
        pipe.srem(keys.workers_index, worker_id)
        pipe.execute()


def list_workers(r: redis.Redis, keys: Keys) -> dict[str, dict[str, Any] | None]:
    """{id: record or None (key expired)} for every indexed worker."""
    ids = sorted(m.decode() if isinstance(m, bytes) else m for m in r.smembers(keys.workers_index))
    if not ids:
        return {}
    raws = r.mget([keys.worker(i) for i in ids])
    out: dict[str, dict[str, Any] | None] = {}
    for worker_id, raw in zip(ids, raws, strict=True):
        try:
            out[worker_id] = json.loads(raw) if raw is not None else None
        except ValueError:
            out[worker_id] = None  # unreadable: treated as gone
    return out


def is_alive(record: dict[str, Any] | None, now: float, ttl_s: float) -> bool:
    if record is None:
        return False
    try:
        return now - float(record["last_heartbeat"]) < ttl_s
    except (KeyError, TypeError, ValueError):
        return False


def live_workers(r: redis.Redis, keys: Keys, now: float, ttl_s: float) -> dict[str, dict[str, Any]]:
    return {
        i: rec for i, rec in list_workers(r, keys).items() if rec is not None and is_alive(rec, now, ttl_s)
    }


def reap(r: redis.Redis, keys: Keys, now: float, ttl_s: float) -> list[str]:
    """Remove workers whose key expired or whose heartbeat is older than `ttl_s`; returns them."""
    dead = [i for i, rec in list_workers(r, keys).items() if not is_alive(rec, now, ttl_s)]
    if dead:
        with r.pipeline(transaction=True) as pipe:
            pipe.delete(*[keys.worker(i) for i in dead])
            pipe.srem(keys.workers_index, *dead)
            pipe.execute()
    return dead
