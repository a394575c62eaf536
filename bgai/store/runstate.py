"""The run's id and status (`running | paused | stopped`), and the runs' key namespaces.

Buffer and eval keys live under their run's id (keys.py); every script writing them checks, in
the same atomic step, that the run is still the one `run:id` names. So a run switch is the one
write of `run:id` (`start_run`), and the keys of the runs left behind, frozen from that moment,
are then deleted (`drop_runs`) without racing a worker.
"""

from __future__ import annotations

from typing import Any

import redis

from bgai.errors import CorruptDataError
from bgai.store.keys import NO_RUN, Keys, check_run_id

STATUSES = ("running", "paused", "stopped")


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


def get_run(r: redis.Redis, keys: Keys) -> tuple[str | None, str | None]:
    """(run id, status), read together."""
    run_id, status = r.mget([keys.run_id, keys.run_status])
    return _text(run_id), _text(status)


def namespace(r: redis.Redis, keys: Keys) -> str:
    """The run whose buffer and eval keys are current: the run id, or NO_RUN when none is set."""
    raw = _text(r.get(keys.run_id))
    if raw is None:
        return NO_RUN
    try:
        return check_run_id(raw)
    except ValueError as exc:  # only an admin can write the run id: one for them to fix
        raise CorruptDataError(f"{keys.run_id}: {exc}") from None


def set_status(r: redis.Redis, keys: Keys, status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    r.set(keys.run_status, status)


def start_run(r: redis.Redis, keys: Keys, run_id: str, clear_model: bool = False) -> None:
    """Make `run_id` current and running (one transaction; with `clear_model`, no model at all
    in the same step: the new run's trainer publishes its initial weights as version 0)."""
    check_run_id(run_id)
    with r.pipeline(transaction=True) as pipe:
        if clear_model:
            pipe.delete(keys.model_version, keys.model_weights, keys.model_config)
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


def unlink_matching(r: redis.Redis, pattern: str, keep_prefix: str | None = None) -> int:
    """UNLINK every key matching `pattern` (SCAN, batches of 1000) except those starting with
    `keep_prefix`; returns keys removed."""
    removed = 0
    batch: list[Any] = []
    keep = keep_prefix.encode() if keep_prefix is not None else None
    for key in r.scan_iter(match=pattern, count=1000):
        name = key if isinstance(key, bytes) else str(key).encode()
        if keep is not None and name.startswith(keep):
            continue
        batch.append(key)
        if len(batch) == 1000:
            removed += int(r.unlink(*batch))
            batch = []
    if batch:
        removed += int(r.unlink(*batch))
    return removed


def drop_runs(r: redis.Redis, keys: Keys, keep: str) -> int:
    """Delete the buffer and eval keys of every run but `keep`; returns keys removed. Safe
    while the fleet works if `keep` is the current run: nothing writes another run's keys."""
    return sum(
        unlink_matching(r, root + "*", root + check_run_id(keep) + ":")
        for root in (keys.buffer_root, keys.eval_root)
    )


def switch_run(r: redis.Redis, keys: Keys, run_id: str, clear_model: bool = False) -> None:
    """Make `run_id` current and running, atomically however busy the fleet is (`bgai-runs start`
    and `resume`): first the keys of runs already left behind go (frozen: `run_id`'s own
    leftovers too), then the one write of `run:id` switches (`start_run`), then the run the
    fleet just left goes, frozen from that write on. A push racing the switch is refused by its
    script, never half-applied, and nothing of the old run lands in the new one."""
    drop_runs(r, keys, keep=namespace(r, keys))
    start_run(r, keys, run_id, clear_model=clear_model)
    drop_runs(r, keys, keep=run_id)
