"""The worker registry: one JSON key per live worker, with a TTL refreshed by each heartbeat.

Liveness is Redis's clock only: a worker is alive while its key exists (every heartbeat sets it
with a TTL of `head.heartbeat_ttl_s`, and Redis expires it), and its heartbeat's age is the TTL
gone by (`ttl - PTTL`). `last_heartbeat` is the worker's own clock, shown and never compared: a
worker whose clock is minutes off stays live, scraped, and keeps its eval slices. Tests kill a
worker the way Redis does, by removing its key.

Each record names its process (`owner`: `<worker id>:<nonce>`, roles/identity.py). A heartbeat
writes only over a record of its own owner, an absent or owner-less one, or the one stale record
the caller names (`replace`: a dead predecessor it watched), so two processes with one worker id
are never both registered: the second is told who holds the id (`Taken`). Deregistering removes
only one's own record.

Records are found by SCAN (`workers:*`): a worker writes its own key and nothing else (per host
ACL users, store/acl.py). `workers:index` is the coordinator's own memory of the ids it saw, so
`reap` can report who went; no worker writes it.

A heartbeat also carries the age of the unit of work in progress (`unit_age_s`: two readings of
the worker's own clock, so skew cancels); past `head.stall_after_s` the worker is `stalled`.
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
    status: str  # starting | running | idle | paused | stopping | stalled | ...
    games_generated: int
    model_version: int | None
    last_heartbeat: float  # seconds since the epoch, from the worker's clock (display only)
    # beyond the plan's fields (see keys.py):
    model_loaded_at: float | None = None  # when model_version was swapped in (epoch seconds)
    last_unit_s: float | None = None  # duration of the last unit of work (e.g. one self-play batch)
    metrics_host: str = ""  # address Prometheus scrapes (empty: hostname)
    owner: str = ""  # `<worker id>:<nonce>` of the process writing this record
    unit_age_s: float | None = None  # seconds the unit in progress has run (None: between units)
    bgai_version: str = ""  # the code this process runs (`bgai --version`; status flags a mix)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Taken:
    """A worker id's record written by another process (`owner`), as a heartbeat found it."""

    raw: bytes  # the record's bytes: `replace=` them to take over from a dead predecessor
    owner: str
    hostname: str
    pttl_ms: int  # its TTL left, by Redis's clock

    @classmethod
    def of(cls, raw: bytes, pttl_ms: int) -> Taken:
        rec = _loads(raw) or {}
        return cls(raw, str(rec.get("owner", "")), str(rec.get("hostname", "")), int(pttl_ms))


# A record of another live owner is left alone: {its bytes, its PTTL}; else 0 once written.
_OWNER = """
local function foreign(raw, me)
  local ok, rec = pcall(cjson.decode, raw)
  return ok and type(rec) == 'table' and type(rec.owner) == 'string' and rec.owner ~= ''
    and rec.owner ~= me
end
"""
_BEAT = (
    _OWNER
    + """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[4] and foreign(cur, ARGV[2]) then return {cur, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 0
"""
)
_DELETE_IF = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_DEREGISTER = (
    _OWNER
    + """
local cur = redis.call('GET', KEYS[1])
if cur and (ARGV[1] == '' or not foreign(cur, ARGV[1])) then return redis.call('DEL', KEYS[1]) end
return 0
"""
)


def heartbeat(
    r: redis.Redis, keys: Keys, info: WorkerInfo, ttl_s: float, replace: bytes = b""
) -> Taken | None:
    """Write the worker's record with a fresh TTL (its own key only: a worker's ACL user may write
    no other); `Taken` (and nothing written) when another live process's record holds the id,
    unless it is `replace`."""
    got = r.eval(
        _BEAT, 1, keys.worker(info.worker_id), info.to_json(), info.owner, int(ttl_s * 1000), replace
    )
    return Taken.of(got[0], got[1]) if isinstance(got, list) else None


def holder(r: redis.Redis, keys: Keys, worker_id: str) -> Taken | None:
    """The record under `worker_id` as it is now, or None when there is none (read only)."""
    with r.pipeline(transaction=True) as pipe:
        pipe.get(keys.worker(worker_id))
        pipe.pttl(keys.worker(worker_id))
        raw, pttl = pipe.execute()
    return None if raw is None else Taken.of(raw, pttl)


def deregister(r: redis.Redis, keys: Keys, worker_id: str, owner: str = "") -> None:
    """Remove `worker_id`'s record (only if `owner` wrote it, when `owner` is given)."""
    r.eval(_DEREGISTER, 1, keys.worker(worker_id), owner)


def _loads(raw: bytes | str) -> dict[str, Any] | None:
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def registered(r: redis.Redis, keys: Keys) -> list[str]:
    """The ids of every record there is now (SCAN `workers:*`), sorted."""
    root = keys.worker("")
    found = (k.decode() if isinstance(k, bytes) else k for k in r.scan_iter(match=root + "*", count=5000))
    return sorted(k[len(root) :] for k in found if k != keys.workers_index)


def list_workers(r: redis.Redis, keys: Keys) -> dict[str, dict[str, Any] | None]:
    """{id: record, or None if unreadable} for every record there is (gone ones: not listed)."""
    ids = registered(r, keys)
    if not ids:
        return {}
    raws = r.mget([keys.worker(i) for i in ids])
    return {i: _loads(raw) for i, raw in zip(ids, raws, strict=True) if raw is not None}


def is_alive(record: dict[str, Any] | None) -> bool:
    """A record read from Redis is a live worker: its key has not expired (Redis's clock)."""
    return record is not None


def live_workers(r: redis.Redis, keys: Keys) -> dict[str, dict[str, Any]]:
    return {i: rec for i, rec in list_workers(r, keys).items() if rec is not None and is_alive(rec)}


def heartbeat_ages(r: redis.Redis, keys: Keys, ids: list[str], ttl_s: float) -> dict[str, float | None]:
    """Seconds since each worker's last heartbeat by Redis's clock (`ttl_s` - PTTL); None when
    its key is gone or has no TTL."""
    with r.pipeline(transaction=False) as pipe:
        for i in ids:
            pipe.pttl(keys.worker(i))
        pttls = pipe.execute()
    return {i: max(0.0, ttl_s - p / 1000) if p >= 0 else None for i, p in zip(ids, pttls, strict=True)}


def stalled(unit_age_s: object, stall_after_s: float) -> bool:
    """The unit in progress has run past `stall_after_s`: the process is hung (a JAX call, a
    gnubg read, a deadlock) although its heartbeat thread still beats."""
    return isinstance(unit_age_s, int | float) and unit_age_s > stall_after_s


def reap(r: redis.Redis, keys: Keys) -> list[str]:
    """Forget workers whose key expired (Redis's clock) or holds no readable record; returns
    them (the coordinator's: `workers:index` is its own memory of the ids it saw, which no worker
    writes; the records are found by SCAN). Only an unreadable record is deleted: an expired one
    is already gone, and deleting by id could remove a record its worker wrote again meanwhile."""
    seen = {m.decode() if isinstance(m, bytes) else m for m in r.smembers(keys.workers_index)}
    ids = sorted(seen | set(registered(r, keys)))
    raws = r.mget([keys.worker(i) for i in ids]) if ids else []
    dead = [(i, raw) for i, raw in zip(ids, raws, strict=True) if raw is None or _loads(raw) is None]
    live = [i for i, raw in zip(ids, raws, strict=True) if raw is not None and _loads(raw) is not None]
    with r.pipeline(transaction=True) as pipe:
        for i, raw in dead:
            if raw is not None:
                pipe.eval(_DELETE_IF, 1, keys.worker(i), raw)
        if dead:
            pipe.srem(keys.workers_index, *[i for i, _ in dead])
        if live:
            pipe.sadd(keys.workers_index, *live)
        pipe.execute()
    return [i for i, _ in dead]
