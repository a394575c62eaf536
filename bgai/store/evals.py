"""Fleet evaluation in Redis: one target version at a time, split into claimable game slices.

`claim` (one Lua script) hands out the next slice of the current target. When the target's
slices are all claimed and the model is at least `every` versions past it, the same call makes
the newest version the target and copies its weights to `eval:weights`, so every eval worker
evaluates the same bytes even after training moves on. Slices are counters, not a queue: nothing
grows with time, and results (`eval:results:{v}`, a hash of integer sums) expire after a day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

import redis

from bgai.store.keys import Keys

RESULT_TTL_S = 86_400
KEEP_VERSIONS = 100

_CLAIM = """
local target_k, eweights_k, version_k, weights_k, versions_k = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local every, games, slice, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local claims_prefix, have, keep = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local raw = redis.call('GET', target_k)
local t = nil
if raw then t = cjson.decode(raw) end
local function reply(tv, idx)
  local blob = false
  if tv ~= have then blob = redis.call('GET', eweights_k) end
  return {tv, idx, t.games, t.slice, blob}
end
if t then
  local n = redis.call('INCR', claims_prefix .. t.version)
  redis.call('EXPIRE', claims_prefix .. t.version, ttl)
  if (n - 1) * t.slice < t.games then return reply(t.version, n - 1) end
end
local v = tonumber(redis.call('GET', version_k) or '-1')
if v < 0 or (t and v < t.version + every) then return false end
local w = redis.call('GET', weights_k)
if not w then return false end
t = {version = v, games = games, slice = slice}
redis.call('SET', target_k, cjson.encode(t))
redis.call('SET', eweights_k, w)
redis.call('ZADD', versions_k, v, v)
redis.call('ZREMRANGEBYRANK', versions_k, 0, -keep - 1)
redis.call('SET', claims_prefix .. v, 1, 'EX', ttl)
return reply(v, 0)
"""


@dataclass(frozen=True)
class Claim:
    version: int
    slice_index: int
    games: int  # games of this slice (per opponent)
    blob: bytes | None  # the target's weights, unless the caller already has this version


def claim(
    r: redis.Redis, keys: Keys, every: int, games: int, slice_games: int, have: int | None
) -> Claim | None:
    """The next slice to play, or None when there is nothing to evaluate now."""
    claims_prefix = keys.eval_claims_prefix
    got = r.eval(
        _CLAIM,
        5,
        keys.eval_target,
        keys.eval_weights,
        keys.model_version,
        keys.model_weights,
        keys.eval_versions,
        every,
        games,
        slice_games,
        RESULT_TTL_S,
        claims_prefix,
        -1 if have is None else have,
        KEEP_VERSIONS,
    )
    if not got:
        return None
    version, index, total, size, blob = got
    n = min(int(size), int(total) - int(index) * int(size))
    return Claim(int(version), int(index), n, blob or None)


def clear(r: redis.Redis, keys: Keys) -> int:
    """Forget every eval target, claim and result (a new run); returns keys removed."""
    found = list(r.scan_iter(match=keys.eval_pattern, count=1000))
    return int(r.unlink(*found)) if found else 0


def add_result(r: redis.Redis, keys: Keys, version: int, opponent: str, points: list[int]) -> int:
    """Add one slice's games (points won per game by our model) to the version's sums; returns
    the version's games against `opponent` now (the adder that completes a version sees it)."""
    key = keys.eval_results(version)
    with r.pipeline(transaction=True) as pipe:
        pipe.hincrby(key, f"{opponent}:games", len(points))
        pipe.hincrby(key, f"{opponent}:wins", sum(1 for p in points if p > 0))
        pipe.hincrby(key, f"{opponent}:points", sum(points))
        pipe.hincrby(key, f"{opponent}:sq", sum(p * p for p in points))
        pipe.hincrby(key, f"{opponent}:gammons", sum(1 for p in points if p >= 2))
        pipe.hincrby(key, f"{opponent}:backgammons", sum(1 for p in points if p >= 3))
        pipe.expire(key, RESULT_TTL_S)
        return int(pipe.execute()[0])


def results(r: redis.Redis, keys: Keys, limit: int = 10) -> dict[int, dict[str, dict[str, int]]]:
    """{version: {opponent: {games, wins, points, sq, gammons, backgammons}}}, newest first."""
    versions = [int(v) for v in cast(list[bytes], r.zrevrange(keys.eval_versions, 0, limit - 1))]
    out: dict[int, dict[str, dict[str, int]]] = {}
    for v in versions:
        table = results_of(r, keys, v)
        if table:
            out[v] = table
    return out


def results_of(r: redis.Redis, keys: Keys, version: int) -> dict[str, dict[str, int]]:
    """{opponent: {games, wins, points, sq, gammons, backgammons}} of one version."""
    table: dict[str, dict[str, int]] = {}
    for field, value in r.hgetall(keys.eval_results(version)).items():
        opp, _, name = (field.decode() if isinstance(field, bytes) else field).rpartition(":")
        table.setdefault(opp, {})[name] = int(value)
    return table


def target(r: redis.Redis, keys: Keys) -> dict[str, int] | None:
    raw = r.get(keys.eval_target)
    return None if raw is None else json.loads(raw)
