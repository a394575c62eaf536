"""Fleet evaluation in Redis: one target version at a time, split into claimable game slices.

`claim` (one Lua script) hands out, in this order:
1. a slice of an unfinished version whose owner died or released it — re-issued. An owner is a
   process's token `<worker id>:<nonce>` (roles/identity.py); it is alive while the registry
   record `workers:{worker id}` exists (Redis expires it: no worker clock is compared) and names
   that same token. A restart under the same id is a new owner, so its predecessor's slice is
   re-issued; two hosts with one hostname never share a slice. The caller's own slice counts as
   dead too: a worker only claims when it holds nothing;
2. the next slice of the current target;
3. when the target's slices are all claimed and the model is at least `every` versions past it,
   a first slice of the newest version, which becomes the target; its weights are copied to
   `eval:weights:{v}` so every eval worker plays the same bytes even after training moves on.
Versions in the caller's `skip` (ones whose weights it refused) are never handed to it. Every
hand-out refreshes the version's slices hash and its weights together, so the weights live as
long as the slices that need them.

`release` gives a claimed slice back (its owner becomes `=free`) when the worker cannot play it
(it refused the version's weights): another worker takes it at once, and the refusing worker
skips that version instead of taking the same slice again in a loop.

`add_slice` (one Lua script) adds a finished slice's sums for every opponent at once, and only
once: a slice finished twice (re-issued while its first owner was merely slow) counts once, so
a version's totals are exactly the games of its slices. Slices are counters and small hashes,
not a queue: nothing grows with time, and everything of a version expires after a day.

Every key is the current run's (`eval:{run}:...`, keys.py): each script first checks that the
run it was given is still the one `run:id` names, before it writes anything, so a slice claimed
before `bgai-runs start` or `resume` never counts in the next run (`add_slice` answers -1).
`add_slice` also checks the sums are whole numbers before its first write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis

from bgai.store import runstate
from bgai.store.keys import NO_RUN, EvalKeys, Keys

RESULT_TTL_S = 86_400
KEEP_VERSIONS = 100
KEEP_WEIGHTS = 16  # weights of the newest evaluated versions (re-issued slices, `past_K` opponents)
SUM_FIELDS = ("games", "wins", "points", "sq", "w1", "w2", "w3", "l1", "l2", "l3")
ER = "er"  # the results table of the decision-set sums (never an opponent's name)

_LIB = """
-- the process `owner` (`<worker id>:<nonce>`) still heartbeats: its record exists, names it
local function alive(owner, hb_prefix)
  local wid = string.match(owner, '^(.*):[^:]*$')
  if not wid then return false end
  local raw = redis.call('GET', hb_prefix .. wid)
  if not raw then return false end
  local ok, rec = pcall(cjson.decode, raw)
  return ok and type(rec) == 'table' and rec.owner == owner
end
local function reply(v, idx, games, slice, have, weights_prefix)
  local blob = false
  if v ~= have then blob = redis.call('GET', weights_prefix .. v) end
  return {v, idx, games, slice, blob}
end
"""

_CLAIM = (
    _LIB
    + """
local target_k, versions_k, open_k = KEYS[1], KEYS[2], KEYS[3]
-- the caller's run is no longer the fleet's: nothing to hand out (and nothing written)
if (redis.call('GET', ARGV[16]) or ARGV[18]) ~= ARGV[17] then return false end
-- read-only keys go by name (an ACL user reading the model may not write it; declared keys
-- count as written)
local version_k, weights_k = ARGV[13], ARGV[14]
local every, games, slice, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local claims_prefix, slices_prefix, weights_prefix = ARGV[5], ARGV[6], ARGV[7]
local have, keep, keep_w = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local me, hb_prefix = ARGV[11], ARGV[12]
local skip = {}  -- versions the caller will not play (it refused their weights)
for sv in string.gmatch(ARGV[15], '[^,]+') do skip[sv] = true end
-- a hand-out keeps the version's slices and weights alive together
local function touch(v)
  redis.call('EXPIRE', slices_prefix .. v, ttl)
  redis.call('EXPIRE', weights_prefix .. v, ttl)
end
-- 1. a slice whose owner died or released it
for _, ov in ipairs(redis.call('ZRANGE', open_k, 0, -1)) do
  local sk = slices_prefix .. ov
  local h = {}
  if not skip[ov] then h = redis.call('HGETALL', sk) end
  if #h == 0 and not skip[ov] then
    redis.call('ZREM', open_k, ov)
  elseif #h > 0 then
    local meta = {}
    for i = 1, #h, 2 do meta[h[i]] = h[i + 1] end
    for i = 1, #h, 2 do
      local f, owner = h[i], h[i + 1]
      if tonumber(f) and owner ~= '=done'
        and (owner == me or owner == '=free' or not alive(owner, hb_prefix)) then
        redis.call('HSET', sk, f, me)
        redis.call('HINCRBY', sk, 'reissued', 1)
        touch(ov)
        return reply(tonumber(ov), tonumber(f), tonumber(meta.g), tonumber(meta.s), have, weights_prefix)
      end
    end
  end
end
-- 2. the next slice of the target
local raw = redis.call('GET', target_k)
local t = nil
if raw then t = cjson.decode(raw) end
local function take(v, idx, g, s)
  local sk = slices_prefix .. v
  redis.call('HSET', sk, idx, me, 'g', g, 's', s)
  touch(v)
  redis.call('ZADD', open_k, v, v)
  return reply(v, idx, g, s, have, weights_prefix)
end
if t and not skip[tostring(t.version)] then
  local n = redis.call('INCR', claims_prefix .. t.version)
  redis.call('EXPIRE', claims_prefix .. t.version, ttl)
  if (n - 1) * t.slice < t.games then return take(t.version, n - 1, t.games, t.slice) end
end
-- 3. a new target
local v = tonumber(redis.call('GET', version_k) or '-1')
if v < 0 or (t and v < t.version + every) or skip[tostring(v)] then return false end
local w = redis.call('GET', weights_k)
if not w then return false end
t = {version = v, games = games, slice = slice}
redis.call('SET', target_k, cjson.encode(t))
redis.call('SET', weights_prefix .. v, w, 'EX', ttl)
redis.call('ZADD', versions_k, v, v)
redis.call('ZREMRANGEBYRANK', versions_k, 0, -keep - 1)
local old = redis.call('ZREVRANGE', versions_k, keep_w, -1)
for _, ov in ipairs(old) do
  if not redis.call('ZSCORE', open_k, ov) then redis.call('DEL', weights_prefix .. ov) end
end
redis.call('SET', claims_prefix .. v, 1, 'EX', ttl)
return take(v, 0, games, slice)
"""
)

_RELEASE = """
if (redis.call('GET', ARGV[3]) or ARGV[5]) ~= ARGV[4] then return 0 end  -- another run's slice
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], '=free')
redis.call('HINCRBY', KEYS[1], 'released', 1)
return 1
"""

_ADD = """
local slices_k, results_k, open_k = KEYS[1], KEYS[2], KEYS[3]
local idx, version, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
-- checks before the first write: the slice's run is the fleet's, and the sums are whole numbers
if (redis.call('GET', ARGV[5]) or ARGV[7]) ~= ARGV[6] then return -1 end
local ok, sums = pcall(cjson.decode, ARGV[4])
if not ok or type(sums) ~= 'table' then return redis.error_reply('eval sums: not a JSON object') end
for opp, s in pairs(sums) do
  if type(s) ~= 'table' then return redis.error_reply('eval sums: not an object per opponent') end
  for f, n in pairs(s) do
    if type(n) ~= 'number' or n ~= math.floor(n) then return redis.error_reply('eval sums: not whole') end
  end
end
if redis.call('HGET', slices_k, idx) == '=done' then return -1 end
redis.call('HSET', slices_k, idx, '=done')
local done = redis.call('HINCRBY', slices_k, 'd', 1)
for opp, s in pairs(sums) do
  for f, n in pairs(s) do redis.call('HINCRBY', results_k, opp .. ':' .. f, n) end
end
redis.call('EXPIRE', results_k, ttl)
local g, s = tonumber(redis.call('HGET', slices_k, 'g')), tonumber(redis.call('HGET', slices_k, 's'))
if g and s and done * s >= g then redis.call('ZREM', open_k, version) end
return done
"""


@dataclass(frozen=True)
class Claim:
    version: int
    slice_index: int
    games: int  # games of this slice (per opponent)
    blob: bytes | None  # the version's weights, unless the caller already has this version
    slices: int = 1  # slices of this version in all
    run: str = NO_RUN  # the run it was claimed in (its eval keys; a slice of a run left is void)


def claim(
    r: redis.Redis,
    keys: Keys,
    every: int,
    games: int,
    slice_games: int,
    have: int | None,
    owner: str,
    skip: Iterable[int] = (),
) -> Claim | None:
    """The next slice to play for `owner` (the process's `<worker id>:<nonce>` token, whose
    registry record must name it for the slice to stay its own), or None when there is nothing to
    evaluate now. No slice of a version in `skip` (versions this worker refused) is handed out.
    The slice belongs to the current run's evaluation (`Claim.run`)."""
    run = runstate.namespace(r, keys)
    ek = keys.eval(run)
    got = r.eval(
        _CLAIM,
        3,
        ek.target,
        ek.versions,
        ek.open,
        every,
        games,
        slice_games,
        RESULT_TTL_S,
        ek.claims_prefix,
        ek.slices_prefix,
        ek.weights_prefix,
        -1 if have is None else have,
        KEEP_VERSIONS,
        KEEP_WEIGHTS,
        owner,
        keys.worker(""),
        keys.model_version,
        keys.model_weights,
        ",".join(str(int(v)) for v in skip),
        keys.run_id,
        run,
        NO_RUN,
    )
    if not got:
        return None
    version, index, total, size = (int(x) for x in got[:4])
    blob = got[4]
    n = min(size, total - index * size)
    return Claim(version, index, n, blob or None, -(-total // size), run)


def release(r: redis.Redis, keys: Keys, got: Claim, owner: str) -> bool:
    """Give back a claimed slice `owner` cannot play: the next claim by any other worker takes
    it. False if the slice is no longer this process's (re-issued, counted, or of a run left)."""
    sk = keys.eval(got.run).slices(got.version)
    return bool(r.eval(_RELEASE, 1, sk, got.slice_index, owner, keys.run_id, got.run, NO_RUN))


def slice_sums(points: list[int]) -> dict[str, int]:
    """One opponent's sums over games (points won per game by our model: ±1..3 cubeless, cube x
    result in cubeful games). w1..w3 / l1..l3 count the games won / lost by that many points
    (single, gammon, backgammon in cubeless games; a cubeful game of more points is in the
    other sums only)."""
    s = {f: 0 for f in SUM_FIELDS}
    s["games"] = len(points)
    for p in points:
        s["wins"] += p > 0
        s["points"] += p
        s["sq"] += p * p
        if 0 < abs(p) <= 3:
            s[f"w{p}" if p > 0 else f"l{-p}"] += 1
    return s


def add_slice(
    r: redis.Redis,
    keys: Keys,
    got: Claim,
    points: dict[str, list[int]],
    er: dict[str, int] | None = None,
) -> int:
    """Count one finished slice ({opponent: points per game}, and the whole-number ER sums of
    its part of the decision set, kept as the table `ER`) once; returns the version's finished
    slices now (== `got.slices` for the adder that completes it), or -1 if this slice was
    already counted or its run is no longer the fleet's (it counts nowhere)."""
    sums = {opp: slice_sums(p) for opp, p in points.items()} | ({ER: er} if er else {})
    ek = keys.eval(got.run)
    return int(
        r.eval(
            _ADD,
            3,
            ek.slices(got.version),
            ek.results(got.version),
            ek.open,
            got.slice_index,
            got.version,
            RESULT_TTL_S,
            json.dumps(sums),
            keys.run_id,
            got.run,
            NO_RUN,
        )
    )


def _of(r: redis.Redis, keys: Keys, run: str | None) -> EvalKeys:
    """The eval keys of `run` (None: the current run)."""
    return keys.eval(run if run is not None else runstate.namespace(r, keys))


def reissued(r: redis.Redis, keys: Keys, version: int, run: str | None = None) -> int:
    """How many slices of `version` were handed out again after their owner died."""
    return int(r.hget(_of(r, keys, run).slices(version), "reissued") or 0)


def past_weights(
    r: redis.Redis, keys: Keys, version: int, run: str | None = None
) -> tuple[int, bytes] | None:
    """The newest evaluated version <= `version` whose weights are still kept, with them."""
    ek = _of(r, keys, run)
    found = cast(list[bytes], r.zrevrangebyscore(ek.versions, version, "-inf", 0, KEEP_WEIGHTS))
    for v in (int(x) for x in found):
        blob = cast(bytes | None, r.get(ek.weights(v)))
        if blob is not None:
            return v, blob
    return None


def clear(r: redis.Redis, keys: Keys, run: str | None = None) -> int:
    """Forget one run's eval targets, claims and results; returns keys removed."""
    return runstate.unlink_matching(r, _of(r, keys, run).root + "*")


def results(
    r: redis.Redis, keys: Keys, limit: int = 10, run: str | None = None
) -> dict[int, dict[str, dict[str, int]]]:
    """{version: {opponent: sums (SUM_FIELDS)}} of a run (default: the current one), newest first."""
    run = run if run is not None else runstate.namespace(r, keys)
    versions = [int(v) for v in cast(list[bytes], r.zrevrange(keys.eval(run).versions, 0, limit - 1))]
    out: dict[int, dict[str, dict[str, int]]] = {}
    for v in versions:
        table = results_of(r, keys, v, run)
        if table:
            out[v] = table
    return out


def results_of(r: redis.Redis, keys: Keys, version: int, run: str | None = None) -> dict[str, dict[str, int]]:
    """{opponent: sums (SUM_FIELDS)} of one version."""
    table: dict[str, dict[str, int]] = {}
    for field, value in r.hgetall(_of(r, keys, run).results(version)).items():
        opp, _, name = (field.decode() if isinstance(field, bytes) else field).rpartition(":")
        table.setdefault(opp, {})[name] = int(value)
    return table


def target(r: redis.Redis, keys: Keys, run: str | None = None) -> dict[str, int] | None:
    raw = r.get(_of(r, keys, run).target)
    return None if raw is None else json.loads(raw)


# Promote a version to champion when it beats the one there by the same yardstick (or there is
# none, or the yardstick changed): one atomic step, so two eval workers finishing versions at
# once cannot both win. KEYS: champion. ARGV: version, metric, value, record, run, NO_RUN, the
# run id's key (an argument, as in _ADD: Redis checks a script's KEYS for write access, and an
# eval worker's user may only read the run id).
_PROMOTE = """
if (redis.call('GET', ARGV[7]) or ARGV[6]) ~= ARGV[5] then return 0 end
local cur = redis.call('GET', KEYS[1])
if cur then
  local c = cjson.decode(cur)
  if c['metric'] == ARGV[2] and tonumber(c['value']) >= tonumber(ARGV[3]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[4])
return 1
"""


def promote(r: redis.Redis, keys: Keys, run: str, version: int, metric: str, value: float) -> bool:
    """Make `version` the champion of `run` if its `value` by `metric` (higher is better) beats
    the champion's, or there is none; False (nothing written) otherwise, or if `run` is no
    longer the fleet's."""
    record = json.dumps({"version": version, "metric": metric, "value": value})
    ek = keys.eval(run)
    args = (version, metric, repr(value), record, run, NO_RUN, keys.run_id)
    return bool(r.eval(_PROMOTE, 1, ek.champion, *args))


def champion(r: redis.Redis, keys: Keys, run: str | None = None) -> dict[str, Any] | None:
    """{version, metric, value} of a run's champion (default: the current run's), or None."""
    raw = r.get(_of(r, keys, run).champion)
    return None if raw is None else cast(dict[str, Any], json.loads(raw))


def kept_weights(r: redis.Redis, keys: Keys, version: int, run: str) -> bytes | None:
    """The weights blob of evaluated `version`, while Redis keeps it (the newest ones)."""
    return cast(bytes | None, r.get(keys.eval(run).weights(version)))
