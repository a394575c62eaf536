"""The replay buffer in Redis: whole episodes in, single positions out.

Push (one Lua script, so an episode is stored whole or not at all): take the next episode id,
store the blob, append the id to `buffer:episodes`, write its length and surprise into the meta
ring, then evict from the oldest end while the buffer holds more than `capacity` positions.
Each eviction is an LPOP, a 2-byte GETRANGE of the victim's header and a DEL: O(1) per evicted
episode, whatever the buffer's size. `buffer:stats` is rewritten in the same script.

Sample (client side, two round trips): the sampler mirrors `(length, surprise)` of the live ids,
fetching only ids it has not seen from the meta ring, then draws
- uniform positions: a position index over the whole buffer, mapped to (episode, row) by a
  cumulative sum, so every stored position is equally likely;
- surprise positions (`surprise_fraction` of the draw): episodes with probability proportional
  to their surprise (how wrong the value head was about their outcome), a uniform row in each;
and one Lua call returns exactly those rows (offset table + row: two GETRANGEs each), so a
4,096-position sample moves ~0.7 MB, not thousands of whole episodes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import redis

from bgai.store.codec import decode_rows, read_episode_header
from bgai.store.keys import Keys

SURPRISE_SCALE = 10_000  # surprise stored as u16 = round(surprise * SCALE), clipped
_SLOT = 4

_LUA_BYTES = """
local function u16(s, i) local a, b = string.byte(s, i, i + 1) return a + 256 * b end
local function u32(s, i)
  local a, b, c, d = string.byte(s, i, i + 3)
  return a + 256 * (b + 256 * (c + 256 * d))
end
local function p32(n)
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256,
                     math.floor(n / 16777216) % 256)
end
"""
# (Byte helpers in plain Lua rather than Redis's `struct`, so fakeredis runs the same scripts.)

_PUSH = _LUA_BYTES + """
local prefix, blob, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local cap, slots = tonumber(ARGV[5]), tonumber(ARGV[6])
local id = redis.call('INCR', KEYS[4])
redis.call('SET', prefix .. id, blob)
redis.call('RPUSH', KEYS[1], id)
redis.call('SETRANGE', KEYS[3], (id % slots) * 4, ARGV[4])
local raw = redis.call('GET', KEYS[2])
local st
if raw then st = cjson.decode(raw) else
  st = {size = 0, episodes = 0, oldest = id, newest = id, pushed_positions = 0, pushed_episodes = 0,
        evicted_episodes = 0, evicted_positions = 0}
end
st.size = st.size + n
st.episodes = st.episodes + 1
st.newest = id
st.pushed_positions = st.pushed_positions + n
st.pushed_episodes = st.pushed_episodes + 1
while st.size > cap and st.episodes > 1 do
  local old = redis.call('LPOP', KEYS[1])
  local m = u16(redis.call('GETRANGE', prefix .. old, 6, 7), 1)
  redis.call('DEL', prefix .. old)
  st.size = st.size - m
  st.episodes = st.episodes - 1
  st.evicted_episodes = st.evicted_episodes + 1
  st.evicted_positions = st.evicted_positions + m
  st.oldest = tonumber(old) + 1
end
st.capacity = cap
st.slots = slots
redis.call('SET', KEYS[2], cjson.encode(st))
return id
"""

_FETCH = _LUA_BYTES + """
local prefix, req = ARGV[1], ARGV[2]
local lens, out = {}, {}
for i = 0, #req / 6 - 1 do
  local id, row = u32(req, i * 6 + 1), u16(req, i * 6 + 5)
  local key = prefix .. id
  local at = 16 + 4 * row
  local off = redis.call('GETRANGE', key, at, at + 7)
  if #off == 8 then
    local a, b = u32(off, 1), u32(off, 5)
    local r = redis.call('GETRANGE', key, a, b - 1)
    out[#out + 1] = r
    lens[i + 1] = p32(#r)
  else
    lens[i + 1] = p32(0)
  end
end
return {table.concat(lens), table.concat(out)}
"""


class ReplayStore:
    """Push episodes and sample positions; one per process (the sampler's mirror is local)."""

    def __init__(self, r: redis.Redis, keys: Keys, capacity: int, max_plays: int) -> None:
        self.r = r
        self.keys = keys
        self.capacity = capacity
        self.slots = capacity + 2  # more than the live episodes can ever be
        self.max_plays = max_plays
        self._push = r.register_script(_PUSH)
        self._fetch = r.register_script(_FETCH)
        self._first = 0  # id of self._len[0]
        self._len = np.zeros(0, np.int64)
        self._surprise = np.zeros(0, np.float64)

    # writing

    def push(self, blob: bytes, pipe: Any = None) -> Any:
        """Store one encoded episode (returns its id, or queues the push on `pipe`)."""
        head = read_episode_header(blob)
        q = int(np.clip(round(head.surprise * SURPRISE_SCALE), 0, 65535))
        slot = np.array([head.rows, q], "<u2").tobytes()
        args = (self.keys.buffer_episode_prefix, blob, head.rows, slot, self.capacity, self.slots)
        ks = (
            self.keys.buffer_episodes,
            self.keys.buffer_stats,
            self.keys.buffer_meta,
            self.keys.buffer_next_id,
        )
        return self._push(keys=ks, args=args, client=pipe if pipe is not None else self.r)

    def push_many(self, blobs: list[bytes]) -> list[int]:
        """Push several episodes in one round trip (each push is still atomic on its own)."""
        with self.r.pipeline(transaction=False) as pipe:
            for blob in blobs:
                self.push(blob, pipe)
            return [int(i) for i in pipe.execute()]

    # reading

    def stats(self) -> dict[str, Any]:
        raw = self.r.get(self.keys.buffer_stats)
        return json.loads(raw) if raw else {"size": 0, "episodes": 0, "pushed_positions": 0}

    def _refresh(self) -> dict[str, Any]:
        """Bring the (length, surprise) mirror to the live ids `oldest..newest`."""
        st = self.stats()
        if not st.get("episodes"):
            self._first, self._len, self._surprise = 0, np.zeros(0, np.int64), np.zeros(0)
            return st
        oldest, newest = int(st["oldest"]), int(st["newest"])
        known_end = self._first + len(self._len)  # one past the newest mirrored id
        if known_end <= oldest or known_end > newest + 1 or st.get("slots") != self.slots:
            self._first, self._len, self._surprise, known_end = (
                oldest,
                np.zeros(0, np.int64),
                np.zeros(0),
                oldest,
            )
        if newest >= known_end:
            n, s = self._read_meta(known_end, newest)
            self._len = np.concatenate([self._len, n])
            self._surprise = np.concatenate([self._surprise, s])
        drop = oldest - self._first
        if drop > 0:
            self._len, self._surprise, self._first = self._len[drop:], self._surprise[drop:], oldest
        return st

    def _read_meta(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(lengths, surprises) of ids lo..hi from the ring (two ranges if it wraps)."""
        ids = np.arange(lo, hi + 1)
        slot = ids % self.slots
        runs = np.flatnonzero(np.diff(slot) != 1) + 1
        with self.r.pipeline(transaction=False) as pipe:
            for part in np.split(slot, runs):
                pipe.getrange(self.keys.buffer_meta, int(part[0]) * _SLOT, int(part[-1]) * _SLOT + _SLOT - 1)
            raw = b"".join(pipe.execute())
        meta = np.frombuffer(raw.ljust(len(ids) * _SLOT, b"\0"), np.uint16).reshape(-1, 2)
        return meta[:, 0].astype(np.int64), meta[:, 1] / SURPRISE_SCALE

    def draw(
        self, n: int, rng: np.random.Generator, surprise_fraction: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(episode ids, rows) of `n` positions; refreshes the mirror first."""
        self._refresh()
        lengths = self._len
        total = int(lengths.sum())
        if total == 0:
            raise LookupError("the replay buffer is empty")
        k = int(round(n * surprise_fraction))
        cum = np.cumsum(lengths)
        pos = rng.integers(0, total, n - k)
        ep = np.searchsorted(cum, pos, side="right")
        rows = pos - (cum[ep] - lengths[ep])
        if k:
            weight = self._surprise + 1e-6
            ep_s = rng.choice(len(lengths), size=k, p=weight / weight.sum())
            rows_s = (rng.random(k) * lengths[ep_s]).astype(np.int64)
            ep, rows = np.concatenate([ep, ep_s]), np.concatenate([rows, rows_s])
        return ep + self._first, rows

    def fetch(self, ids: np.ndarray, rows: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray]:
        """(row bytes end to end, start of each row, found mask) for the given positions."""
        req = np.empty(len(ids), dtype=[("id", "<u4"), ("row", "<u2")])
        req["id"], req["row"] = ids, rows
        lens_raw, data = self._fetch(args=(self.keys.buffer_episode_prefix, req.tobytes()))
        lens = np.frombuffer(lens_raw, np.uint32).astype(np.int64)
        starts = np.cumsum(lens) - lens
        return data, starts, lens > 0

    def sample(
        self, n: int, rng: np.random.Generator, surprise_fraction: float = 0.0
    ) -> dict[str, np.ndarray]:
        """`n` training positions (arrays as `codec.decode_rows`). Positions evicted between the
        draw and the fetch are replaced by other drawn ones, so the shapes are always `n`."""
        ids, rows = self.draw(n, rng, surprise_fraction)
        data, starts, found = self.fetch(ids, rows)
        if not found.any():
            raise LookupError("every drawn position was evicted before it was read")
        if not found.all():
            good = np.flatnonzero(found)
            starts = np.where(found, starts, starts[rng.choice(good, len(found))])
        return decode_rows(data, starts, self.max_plays)

    def clear(self) -> int:
        """Delete the whole buffer (every key under `prefix:buffer:`); returns keys removed."""
        removed = 0
        for batch in _chunks(self.r.scan_iter(match=self.keys.buffer_pattern, count=1000), 1000):
            removed += int(self.r.unlink(*batch))
        self._first, self._len, self._surprise = 0, np.zeros(0, np.int64), np.zeros(0)
        return removed


def _chunks(items: Any, size: int) -> Any:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
