"""The single-trainer lock: a key holding the owner's token, with a TTL the owner keeps refreshing.

The owner is a per-process token, `<worker id>:<nonce>` (`Identity.owner`), never the bare worker
id: two hosts with one hostname (hence one id) are two owners, and only one of them holds the
lock. Refresh and release compare the stored owner first (Lua), so a trainer whose lock expired
and was taken by another never extends or deletes the new owner's lock. `TrainerLock.owner` is
that full token, for scripts that must check the holder (fencing a publish).
"""

from __future__ import annotations

import redis

from bgai.store.keys import Keys

_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class TrainerLock:
    def __init__(self, keys: Keys, owner: str, ttl_s: float) -> None:
        self.key = keys.trainer_lock
        self.owner = owner  # the full token stored in the key: `<worker id>:<nonce>`
        self.ttl_ms = int(ttl_s * 1000)

    def acquire(self, r: redis.Redis) -> bool:
        """Take the lock, or keep it if we hold it; False if another trainer holds it."""
        if r.set(self.key, self.owner, nx=True, px=self.ttl_ms):
            return True
        return bool(r.eval(_REFRESH, 1, self.key, self.owner, self.ttl_ms))

    def release(self, r: redis.Redis) -> bool:
        return bool(r.eval(_RELEASE, 1, self.key, self.owner))

    def holder(self, r: redis.Redis) -> str | None:
        raw = r.get(self.key)
        return raw.decode() if isinstance(raw, bytes) else raw
