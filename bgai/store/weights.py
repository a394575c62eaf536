"""Model weights in Redis: version and blob change together; readers verify before swapping.

`publish` runs one Lua script (atomic: nobody reads a version with another version's blob) that
refuses, writing nothing:
- a version not above the current one (`StaleVersionError`);
- any publish while the trainer lock is not held by the caller (`NotLockHolderError`): a trainer
  passes its `TrainerLock` and the script compares the lock key with the lock's owner token, so a
  trainer that stalled past the lock's TTL (GC, swap, SIGSTOP) and lost it to a standby cannot
  publish again when it wakes up (a fencing token); a publish without a lock (tools, tests) is
  refused while any trainer holds the lock;
- initial weights (`fresh=True`: a new network, never trained) when Redis already holds a
  version (`ModelExistsError`): a trained model is never replaced by fresh weights.
Each publish stamps `model:config` with a random nonce beside the version: `published` reads the
pair back, so a trainer can tell its own last publish from one it never made (a Redis that lost
its last second of writes, or another publisher).
`fetch` reads version and blob in one MULTI/EXEC. `WeightsFollower` is what game and eval
workers hold: it swaps to a newer version only after the codec's checks pass, and otherwise
keeps its last good model and logs why.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import redis

from bgai.errors import BgaiError
from bgai.store.codec import decode_weights, read_weights_header
from bgai.store.keys import Keys
from bgai.store.lock import TrainerLock

log = logging.getLogger(__name__)

# KEYS: version, weights, config, trainer lock. ARGV: version, blob, config JSON, lock owner ('':
# no trainer may hold the lock), fresh ('1': only while no version exists).
# Returns {1, v} published; {0, current} not above current; {-1, holder} lock not ours;
# {-2, current} fresh weights over an existing version. Every check runs before the first write.
_PUBLISH = """
local holder = redis.call('GET', KEYS[4])
if ARGV[4] == '' then
  if holder then return {-1, holder} end
elseif holder ~= ARGV[4] then
  return {-1, holder or ''}
end
local raw = redis.call('GET', KEYS[1])
if ARGV[5] == '1' and raw then return {-2, raw} end
local current = tonumber(raw or '-1')
local v = tonumber(ARGV[1])
if v <= current then return {0, current} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
return {1, v}
"""


class StaleVersionError(BgaiError):
    """A publish whose version is not above the current one (another trainer moved on)."""


class ModelExistsError(StaleVersionError):
    """Initial (untrained) weights offered while Redis already holds a version of the run."""


class NotLockHolderError(BgaiError):
    """A publish by a trainer that does not hold the trainer lock (it lost it: a stale leader)."""


@dataclass(frozen=True)
class Published:
    """One publish as `model:config` records it: the version and that publish's random nonce
    (empty for a record written before nonces existed)."""

    version: int
    nonce: str


def new_nonce() -> str:
    return secrets.token_hex(8)


def _meta(header: dict[str, Any], nonce: str) -> str:
    meta = {k: header.get(k) for k in ("version", "step", "model_hash", "config_hash")}
    return json.dumps({**meta, "nonce": nonce})


def publish(
    r: redis.Redis,
    keys: Keys,
    version: int,
    blob: bytes,
    *,
    lock: TrainerLock | None = None,
    nonce: str | None = None,
    fresh: bool = False,
) -> int:
    """Make `blob` (a weights codec blob stamped with `version`) current; returns the version.

    `lock`: the caller's trainer lock (the script checks `lock.key` holds `lock.owner`); None
    only where no trainer runs. `nonce`: recorded with the version (a new random one if None).
    `fresh`: these are initial weights, refused if any version exists."""
    header = read_weights_header(blob)
    if header.get("version") != version:
        raise ValueError(f"blob is stamped version {header.get('version')}, publishing {version}")
    code, info = r.eval(
        _PUBLISH,
        4,
        keys.model_version,
        keys.model_weights,
        keys.model_config,
        keys.trainer_lock if lock is None else lock.key,
        version,
        blob,
        _meta(header, nonce or new_nonce()),
        "" if lock is None else lock.owner,
        "1" if fresh else "0",
    )
    info = info.decode() if isinstance(info, bytes) else info
    if code == -1:
        held = f"held by {info}" if info else "not held"
        raise NotLockHolderError(f"cannot publish version {version}: the trainer lock is {held}")
    if code == -2:
        raise ModelExistsError(f"refusing initial weights as version {version}: Redis holds version {info}")
    if not code:
        raise StaleVersionError(f"cannot publish version {version}: Redis already holds {info}")
    return version


def install(r: redis.Redis, keys: Keys, version: int, blob: bytes) -> None:
    """Make `blob` current as `version` even if Redis holds a higher one (`bgai-runs resume`)."""
    header = read_weights_header(blob)
    if header.get("version") != version:
        raise ValueError(f"blob is stamped version {header.get('version')}, installing {version}")
    with r.pipeline(transaction=True) as pipe:
        pipe.set(keys.model_version, version)
        pipe.set(keys.model_weights, blob)
        pipe.set(keys.model_config, _meta(header, new_nonce()))
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


def published(r: redis.Redis, keys: Keys) -> Published | None:
    """The current (version, nonce), read together; None when Redis holds no version."""
    with r.pipeline(transaction=True) as pipe:
        pipe.get(keys.model_version)
        pipe.get(keys.model_config)
        raw_version, raw_meta = pipe.execute()
    if raw_version is None:
        return None
    try:
        meta: Any = json.loads(raw_meta) if raw_meta is not None else {}
    except ValueError:
        meta = {}
    nonce = meta.get("nonce") if isinstance(meta, dict) else None
    return Published(int(raw_version), nonce if isinstance(nonce, str) else "")


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
