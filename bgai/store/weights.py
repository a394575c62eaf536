"""Model weights in Redis: version and blob change together; readers verify before swapping.

`publish` runs one Lua script (atomic: nobody reads a version with another version's blob) that
refuses a version not above the current one. `fetch` reads both keys in one MULTI/EXEC.
`WeightsFollower` is what game and eval workers hold: it swaps to a newer version only after the
codec's checks pass, and otherwise keeps its last good model and logs why.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from bgai.errors import BgaiError
from bgai.store.codec import decode_weights, read_weights_header
from bgai.store.keys import Keys

log = logging.getLogger(__name__)

_PUBLISH = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
local v = tonumber(ARGV[1])
if v <= current then return {0, current} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
return {1, v}
"""


class StaleVersionError(BgaiError):
    """A publish whose version is not above the current one (another trainer moved on)."""


def publish(r: redis.Redis, keys: Keys, version: int, blob: bytes) -> int:
    """Make `blob` (a weights codec blob stamped with `version`) current; returns the version."""
    header = read_weights_header(blob)
    if header.get("version") != version:
        raise ValueError(f"blob is stamped version {header.get('version')}, publishing {version}")
    meta = {k: header.get(k) for k in ("version", "step", "model_hash", "config_hash")}
    ok, current = r.eval(
        _PUBLISH,
        3,
        keys.model_version,
        keys.model_weights,
        keys.model_config,
        version,
        blob,
        json.dumps(meta),
    )
    if not ok:
        raise StaleVersionError(f"cannot publish version {version}: Redis already holds {current}")
    return version


def install(r: redis.Redis, keys: Keys, version: int, blob: bytes) -> None:
    """Make `blob` current as `version` even if Redis holds a higher one (`bgai-runs resume`)."""
    header = read_weights_header(blob)
    if header.get("version") != version:
        raise ValueError(f"blob is stamped version {header.get('version')}, installing {version}")
    meta = {k: header.get(k) for k in ("version", "step", "model_hash", "config_hash")}
    with r.pipeline(transaction=True) as pipe:
        pipe.set(keys.model_version, version)
        pipe.set(keys.model_weights, blob)
        pipe.set(keys.model_config, json.dumps(meta))
        pipe.execute()


def clear(r: redis.Redis, keys: Keys) -> None:
    """No model at all (a new run): the trainer publishes its initial weights as version 0."""
    r.delete(keys.model_version, keys.model_weights, keys.model_config)


def current_version(r: redis.Redis, keys: Keys) -> int | None:
    raw = r.get(keys.model_version)
    return None if raw is None else int(raw)


def model_meta(r: redis.Redis, keys: Keys) -> dict[str, Any] | None:
    raw = r.get(keys.model_config)
    return None if raw is None else json.loads(raw)


def fetch(r: redis.Redis, keys: Keys) -> tuple[int | None, bytes | None]:
    """(version, blob) read together."""
    with r.pipeline(transaction=True) as pipe:
        pipe.get(keys.model_version)
        pipe.get(keys.model_weights)
        version, blob = pipe.execute()
    return (None if version is None else int(version)), blob


class WeightsFollower:
    """The newest good weights for one model shape (`template`, `model_hash`)."""

    def __init__(self, keys: Keys, template: Any, model_hash: str) -> None:
        self.keys = keys
        self.template = template
        self.model_hash = model_hash
        self.params: Any = None
        self.version: int | None = None
        self.refused: dict[int, str] = {}  # version -> reason, so a bad blob is logged once

    def reset(self) -> None:
        """Forget the model (a new run: its versions start again from 0)."""
        self.params, self.version, self.refused = None, None, {}

    def update(self, r: redis.Redis) -> bool:
        """Swap to the newest version if it is newer and passes the checks; True if swapped."""
        latest = current_version(r, self.keys)
        if latest is None or (self.version is not None and latest <= self.version) or latest in self.refused:
            return False
        version, blob = fetch(r, self.keys)
        if version is None or blob is None:
            return False
        return self.offer(version, blob)

    def offer(self, version: int, blob: bytes) -> bool:
        """Take `blob` as `version` if it checks out; otherwise keep the current model."""
        try:
            params, header = decode_weights(blob, self.template, self.model_hash)
            if header.get("version") != version:
                stamped = header.get("version")
                raise _VersionMismatchError(f"blob is stamped version {stamped}, key says {version}")
        except (BgaiError, _VersionMismatchError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.refused[version] = reason
            keep = "no model yet" if self.version is None else f"keeping version {self.version}"
            log.error("refused weights version %s (%s); %s", version, reason, keep)
            return False
        self.params, self.version = params, version
        return True


class _VersionMismatchError(BgaiError):
    pass
