"""The run's id and status (`running | paused | stopped`)."""

from __future__ import annotations

import redis

from bgai.store.keys import Keys

STATUSES = ("running", "paused", "stopped")


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


def get_run(r: redis.Redis, keys: Keys) -> tuple[str | None, str | None]:
    """(run id, status), read together."""
    run_id, status = r.mget([keys.run_id, keys.run_status])
    return _text(run_id), _text(status)


def set_status(r: redis.Redis, keys: Keys, status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    r.set(keys.run_status, status)


def start_run(r: redis.Redis, keys: Keys, run_id: str) -> None:
    """Make `run_id` current and running (one transaction)."""
    with r.pipeline(transaction=True) as pipe:
        pipe.set(keys.run_id, run_id)
        pipe.set(keys.run_status, "running")
        pipe.execute()


def ensure_run(r: redis.Redis, keys: Keys, new_id: str) -> tuple[str, str]:
    """The current run, creating `new_id` as running if there is none (never overwrites)."""
    with r.pipeline(transaction=True) as pipe:
        pipe.set(keys.run_id, new_id, nx=True)
        pipe.set(keys.run_status, "running", nx=True)
        pipe.execute()
    run_id, status = get_run(r, keys)
    return run_id or new_id, status or "running"


def clear_run(r: redis.Redis, keys: Keys) -> None:
    """No current run (the coordinator then creates one)."""
    r.delete(keys.run_id, keys.run_status)
