"""The head's record, `P:run:head`: the bgai version its coordinator runs, and where.

Any host compares its own bgai with it (`bgai doctor`). The coordinator sets it on each pass with
a TTL (`head.heartbeat_ttl_s`), so it is gone a minute after the coordinator is. It lives under
`run:` because every role's ACL user may read that namespace and the coordinator may write it
(store/acl.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis

from bgai.store.keys import Keys


@dataclass(frozen=True)
class HeadInfo:
    version: str  # the bgai package's version (what `bgai_build_info` exports)
    hostname: str  # the coordinator's host

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def publish(
    r: redis.Redis, keys: Keys, info: HeadInfo, ttl_s: float, pipeline: redis.client.Pipeline | None = None
) -> None:
    """Set the head's record for `ttl_s` seconds (in `pipeline` when given)."""
    (pipeline if pipeline is not None else r).set(keys.head, info.to_json(), px=int(ttl_s * 1000))


def read(r: redis.Redis, keys: Keys) -> HeadInfo | None:
    """The head's record, or None when there is none (no coordinator this past minute) or it is
    unreadable."""
    raw = r.get(keys.head)
    try:
        rec = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    return HeadInfo(str(rec.get("version", "")), str(rec.get("hostname", "")))
