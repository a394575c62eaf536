"""The replay buffer in Redis: whole episodes in, with the capacity enforced on every push.

Each run has its own buffer (`P:buffer:{run}:...`, keys.py). Push is one Lua script, so an
episode is stored whole or not at all, and it runs in two phases:

1. checks, before anything is written: the pusher's run is still the current one (else -2: the
   episode belongs to a run the fleet left), the blob is an episode whose header's row count is
   > 0 and equals the caller's, it is at most `codec.stored_bound(rows)` bytes (so capacity in
   positions bounds memory), its (source, seq) is new (else -1: it landed before), and the stats
   agree with the list (same length, same first and last id, consecutive). A refused push leaves
   no trace; a Redis out of memory refuses the script at its first write, which comes after
   every check.
2. writes: take the next id, store the blob, append the id, then evict from the oldest end while
   the buffer holds more than `capacity` positions. An eviction is an LPOP, a 2-byte GETRANGE of
   the victim's header and a DEL: O(1) whatever the buffer's size. `stats` is rewritten.

Stats that do not agree with the list (the list lost, stats garbage or missing, the work of a
hand or a hostile user) are rebuilt before the push: from the stats' id range if it is sound,
else from the list's, counting each live episode's rows (O(buffer), only then; `repaired`
counts it). A victim whose blob is gone counts as unknown rows: the rest is recounted once. So
no push evicts itself and no push errors half-way.

Ids are consecutive, so the live episodes are exactly `stats.oldest .. stats.newest`. Sampling
is `bgai.store.sampler.ReplayMirror`: the trainer mirrors the live episodes locally, fetching
each episode once, and draws positions from the mirror.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis

from bgai.errors import BgaiError, CorruptDataError
from bgai.store import runstate
from bgai.store.codec import (
    MAGIC_E,
    MAX_EPISODE_BYTES,
    MAX_STORED_ROW_BYTES,
    STORED_EPISODE_SLACK,
    read_episode_header,
    stored_bound,
)
from bgai.store.keys import NO_RUN, BufferKeys, Keys

log = logging.getLogger(__name__)

DUPLICATE = -1  # push result: this (source, seq) landed before
OTHER_RUN = -2  # push result: the fleet moved to another run; the episode is not stored
REFUSED = -3  # push result (push_many): the blob is not a storable episode; logged, not sent

_PUSH = """
local list_k, stats_k, next_k, sources_k = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, blob, n, cap = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local source, seq = ARGV[5], tonumber(ARGV[6])
local max_bytes, per_row, slack = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local run_k, run, no_run, magic = ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local function refuse(why) return redis.error_reply('episode refused: ' .. why) end
local function count(x)  -- a whole number >= 0, or nil
  if type(x) == 'number' and x >= 0 and x == math.floor(x) and x < 2^53 then return x end
  return nil
end
local function rows_of(id)  -- u16 row count from a stored episode's header; nil if it is gone
  local a, b = string.byte(redis.call('GETRANGE', prefix .. id, 6, 7), 1, 2)
  if a and b then return a + 256 * b end
  return nil
end
local FIELDS = {'size', 'episodes', 'oldest', 'newest', 'pushed_positions', 'pushed_episodes',
                'evicted_episodes', 'evicted_positions', 'repaired'}
local function parse(raw)  -- the stats as a table of whole numbers, or nil if they are not that
  local ok, t = pcall(cjson.decode, raw)
  if not ok or type(t) ~= 'table' then return nil end
  local st = {}
  for i, f in ipairs(FIELDS) do
    local v = t[f]
    if v == nil and i > 4 then v = 0 end
    st[f] = count(v)
    if st[f] == nil then return nil end
  end
  return st
end

-- 1. checks: nothing is written until all of them pass
if (redis.call('GET', run_k) or no_run) ~= run then return -2 end
if not (cap and cap >= 1 and seq and max_bytes and per_row and slack) then return refuse('bad arguments') end
local size = string.len(blob)
if size < 16 or string.sub(blob, 1, 4) ~= magic then return refuse('not an episode blob') end
local lo, hi = string.byte(blob, 7, 8)
local rows = lo + 256 * hi
if rows < 1 then return refuse('no rows') end
if rows ~= n then return refuse('its header says ' .. rows .. ' rows, the pusher ' .. tostring(n)) end
local bound = math.min(max_bytes, slack + rows * per_row)
if size > bound then return refuse(size .. ' bytes for ' .. rows .. ' rows (at most ' .. bound .. ')') end
if source ~= '' then  -- a worker's episodes land once and in order (see store/spool.py)
  local last = tonumber(redis.call('HGET', sources_k, source) or '-1') or -1
  if seq <= last then return -1 end
end
local raw = redis.call('GET', stats_k)
local st = nil
if raw then st = parse(raw) end
local listed = redis.call('LLEN', list_k)
local sound
if st and st.episodes == 0 then
  sound = listed == 0
elseif st then
  sound = listed == st.episodes and st.newest - st.oldest + 1 == st.episodes
    and tonumber(redis.call('LINDEX', list_k, 0)) == st.oldest
    and tonumber(redis.call('LINDEX', list_k, -1)) == st.newest
else
  sound = not raw and listed == 0  -- a new buffer
end

-- 2. writes
local function recount()
  local total = 0
  for _, x in ipairs(redis.call('LRANGE', list_k, 0, -1)) do total = total + (rows_of(x) or 0) end
  return total
end
local function rebuild(old)
  -- the live ids: the stats' range if it is sound and no longer than the capacity allows (an
  -- episode holds a row at least), else the list's if its ends span its length; else none
  local first, last = nil, nil
  if old and old.episodes > 0 and old.newest - old.oldest + 1 == old.episodes and old.episodes <= cap + 1 then
    first, last = old.oldest, old.newest
  elseif listed > 0 and listed <= cap + 1 then
    local a, z = tonumber(redis.call('LINDEX', list_k, 0)), tonumber(redis.call('LINDEX', list_k, -1))
    if count(a) and count(z) and z - a + 1 == listed then first, last = a, z end
  end
  local fresh = {size = 0, episodes = 0, oldest = 0, newest = 0}
  for i = 5, #FIELDS do fresh[FIELDS[i]] = old and old[FIELDS[i]] or 0 end
  fresh.repaired = fresh.repaired + 1
  redis.call('DEL', list_k)
  if first then
    local batch = {}
    for id = first, last do
      batch[#batch + 1] = id
      fresh.size = fresh.size + (rows_of(id) or 0)
      if #batch == 1000 or id == last then
        redis.call('RPUSH', list_k, unpack(batch))
        batch = {}
      end
    end
    fresh.episodes, fresh.oldest, fresh.newest = last - first + 1, first, last
  end
  return fresh
end
if source ~= '' then redis.call('HSET', sources_k, source, seq) end
if not sound then
  st = rebuild(st)
elseif not st then
  st = {size = 0, episodes = 0, oldest = 0, newest = 0}
  for i = 5, #FIELDS do st[FIELDS[i]] = 0 end
end
local id = math.max(tonumber(redis.call('GET', next_k)) or 0, st.newest) + 1
redis.call('SET', next_k, id)
redis.call('SET', prefix .. id, blob)
redis.call('RPUSH', list_k, id)
if st.episodes == 0 then st.oldest = id end
st.size = st.size + rows
st.episodes = st.episodes + 1
st.newest = id
st.pushed_positions = st.pushed_positions + rows
st.pushed_episodes = st.pushed_episodes + 1
local recounted = false
while st.size > cap and st.episodes > 1 do
  local old = redis.call('LPOP', list_k)
  if not old then break end
  local m = rows_of(old)
  redis.call('DEL', prefix .. old)
  st.episodes = st.episodes - 1
  st.evicted_episodes = st.evicted_episodes + 1
  st.oldest = (tonumber(old) or st.oldest) + 1
  if m then
    st.size = st.size - m
    st.evicted_positions = st.evicted_positions + m
  elseif not recounted then  -- its rows are unknown: count what is left instead, once
    recounted = true
    st.size = recount()
    st.repaired = st.repaired + 1
  end
end
st.capacity = cap
redis.call('SET', stats_k, cjson.encode(st))
return id
"""


@dataclass(frozen=True)
class BufferStats:
    """`buffer:{run}:stats` as written by the push script, checked as read (`parse`)."""

    size: int = 0  # live positions
    episodes: int = 0  # live episodes: ids oldest..newest
    oldest: int = 0
    newest: int = 0
    capacity: int = 0
    pushed_positions: int = 0
    pushed_episodes: int = 0
    evicted_episodes: int = 0
    evicted_positions: int = 0
    repaired: int = 0  # times the push script rebuilt stats that disagreed with the list

    @classmethod
    def parse(cls, raw: bytes | str | None, capacity: int) -> BufferStats:
        """The stats in `raw` (None: an empty buffer); CorruptDataError when they are impossible:
        not a JSON object of whole numbers >= 0, or a live id range that disagrees with the
        episode count or is longer than a buffer of `capacity` positions can hold."""
        if raw is None:
            return cls()
        try:
            got = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise CorruptDataError("buffer stats: not JSON") from None
        if not isinstance(got, dict):
            raise CorruptDataError(f"buffer stats: a JSON {type(got).__name__}, not an object")
        values: dict[str, int] = {}
        for name in cls.__dataclass_fields__:
            v = got.get(name, 0)
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**53:
                raise CorruptDataError(f"buffer stats: {name} is {str(v)[:20]!r}, not a whole number >= 0")
            values[name] = v
        st = cls(**values)
        if st.episodes and st.newest - st.oldest + 1 != st.episodes:
            raise CorruptDataError(f"buffer stats: ids {st.oldest}..{st.newest} for {st.episodes} episodes")
        if st.episodes > capacity + 1:  # every episode holds a position
            raise CorruptDataError(f"buffer stats: {st.episodes} episodes, capacity {capacity} positions")
        return st

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReplayStore:
    """Push episodes, read stats and episodes, of one run's buffer.

    `run_id` None follows whichever run Redis names at each call (tools, tests); a game worker
    pins the run it plays for (`use_run`), so an episode of a run the fleet has left is never
    stored in the next one.
    """

    def __init__(self, r: redis.Redis, keys: Keys, capacity: int, run_id: str | None = None) -> None:
        self.r = r
        self.keys = keys
        self.capacity = capacity
        self.run_id = run_id
        self._push = r.register_script(_PUSH)

    def use_run(self, run_id: str | None) -> None:
        """Push to (and read) `run_id`'s buffer from now on (None: the current run's)."""
        self.run_id = run_id

    def run(self) -> str:
        """The run whose buffer the next call uses."""
        return self.run_id if self.run_id is not None else runstate.namespace(self.r, self.keys)

    def buffer_keys(self, run_id: str | None = None) -> BufferKeys:
        return self.keys.buffer(run_id if run_id is not None else self.run())

    def check(self, blob: bytes) -> int:
        """The row count of a storable episode blob; CorruptDataError (or IncompatibleError) if
        the push script would refuse it."""
        if len(blob) > MAX_EPISODE_BYTES:
            raise CorruptDataError(f"episode of {len(blob)} bytes refused (max {MAX_EPISODE_BYTES})")
        rows = read_episode_header(blob).rows
        if rows < 1:
            raise CorruptDataError("episode refused: no rows")
        if len(blob) > stored_bound(rows):
            raise CorruptDataError(
                f"episode refused: {len(blob)} bytes for {rows} rows (at most {stored_bound(rows)})"
            )
        return rows

    def push(
        self, blob: bytes, pipe: Any = None, source: str = "", seq: int = -1, run_id: str | None = None
    ) -> Any:
        """Store one encoded episode in `run_id`'s buffer (default: `run()`); returns its id,
        DUPLICATE or OTHER_RUN (or queues the push on `pipe`).

        With a `source` (one game worker process), `seq` numbers its episodes: one at or below
        the highest seen from that source is skipped (DUPLICATE), so a re-sent episode lands
        once. A blob the script would refuse raises CorruptDataError here first.
        """
        rows = self.check(blob)
        return self.send(blob, rows, pipe, source, seq, run_id if run_id is not None else self.run())

    def send(self, blob: bytes, rows: int, pipe: Any, source: str, seq: int, run: str) -> Any:
        """Run the push script as it is, no client-side check (`push` checks first)."""
        bk = self.keys.buffer(run)
        args = (
            bk.episode_prefix,
            blob,
            rows,
            self.capacity,
            source,
            seq,
            MAX_EPISODE_BYTES,
            MAX_STORED_ROW_BYTES,
            STORED_EPISODE_SLACK,
            self.keys.run_id,
            run,
            NO_RUN,
            MAGIC_E,
        )
        ks = (bk.episodes, bk.stats, bk.next_id, bk.sources)
        return self._push(keys=ks, args=args, client=pipe if pipe is not None else self.r)

    def push_many(
        self, blobs: list[bytes], source: str = "", seqs: list[int] | None = None, run_id: str | None = None
    ) -> list[int]:
        """Push several episodes of `run_id` (default: `run()`) in one round trip (each push is
        still atomic on its own). A blob that is not a storable episode is logged and answered
        REFUSED, never sent."""
        seqs = seqs if seqs is not None else [-1] * len(blobs)
        run = run_id if run_id is not None else self.run()
        try:
            self.keys.buffer(run)
        except ValueError as exc:  # e.g. a spool file's run, read back from disk
            log.error("%d episodes of %s not pushed: %s", len(blobs), source or "?", exc)
            return [REFUSED] * len(blobs)
        out: list[int | None] = []
        with self.r.pipeline(transaction=False) as pipe:
            for blob, seq in zip(blobs, seqs, strict=True):
                try:
                    self.push(blob, pipe, source, seq, run)
                    out.append(None)
                except BgaiError as exc:
                    log.error("episode %s of %s not pushed: %s", seq, source or "?", exc)
                    out.append(REFUSED)
            landed = iter(pipe.execute())
        return [int(next(landed)) if x is None else x for x in out]

    def last_seq(self, source: str, run_id: str | None = None) -> int:
        """The highest episode seq of `source` that `run_id`'s buffer took (-1: none)."""
        raw = self.r.hget(self.buffer_keys(run_id).sources, source)
        try:
            return int(raw) if raw is not None else -1
        except ValueError:  # not written by the push script
            return -1

    def read_stats(self, run_id: str | None = None) -> tuple[str, BufferStats]:
        """(the run read, its buffer's stats); CorruptDataError when the stats are impossible."""
        run = run_id if run_id is not None else self.run()
        return run, BufferStats.parse(self.r.get(self.keys.buffer(run).stats), self.capacity)

    def stats(self) -> dict[str, Any]:
        """The current buffer's stats as a dict (`BufferStats` fields, plus `run`); impossible
        stats read as an empty buffer, with `invalid` saying why."""
        run = self.run()
        try:
            return {**self.read_stats(run)[1].as_dict(), "run": run}
        except CorruptDataError as exc:
            return {**BufferStats().as_dict(), "run": run, "invalid": str(exc)}

    def episodes(self, ids: list[int], run_id: str | None = None) -> list[bytes | None]:
        """The blobs of `ids` (None where evicted) in `run_id`'s buffer, in one MGET."""
        if not ids:
            return []
        bk = self.buffer_keys(run_id)
        return cast(list[bytes | None], self.r.mget([bk.episode(i) for i in ids]))

    def clear(self, run_id: str | None = None) -> int:
        """Delete one run's whole buffer; returns keys removed."""
        return runstate.unlink_matching(self.r, self.buffer_keys(run_id).pattern)
