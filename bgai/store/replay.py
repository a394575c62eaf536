"""The replay buffer in Redis: whole episodes in, with the capacity enforced on every push.

Push (one Lua script, so an episode is stored whole or not at all): take the next episode id,
store the blob under `buffer:episode:{id}`, append the id to `buffer:episodes`, then evict from
the oldest end while the buffer holds more than `capacity` positions. Each eviction is an LPOP,
a 2-byte GETRANGE of the victim's header and a DEL: O(1) per evicted episode, whatever the
buffer's size. `buffer:stats` is rewritten in the same script. Ids are consecutive, so the live
episodes are exactly `stats.oldest .. stats.newest`.

Sampling is `bgai.store.sampler.ReplayMirror`: the trainer mirrors the live episodes locally,
fetching each episode once, and draws positions from the mirror.
"""

from __future__ import annotations

import json
from typing import Any, cast

import redis

from bgai.errors import CorruptDataError
from bgai.store.codec import MAX_EPISODE_BYTES, read_episode_header
from bgai.store.keys import Keys

_PUSH = """
local prefix, blob, n, cap = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local source, seq, max_bytes = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
if string.len(blob) > max_bytes then
  return redis.error_reply('episode of ' .. string.len(blob) .. ' bytes refused (max ' .. max_bytes .. ')')
end
if source ~= '' then  -- a worker's episodes land once and in order (see store/spool.py)
  local last = tonumber(redis.call('HGET', KEYS[4], source) or '-1')
  if seq <= last then return -1 end
  redis.call('HSET', KEYS[4], source, seq)
end
local id = redis.call('INCR', KEYS[3])
redis.call('SET', prefix .. id, blob)
redis.call('RPUSH', KEYS[1], id)
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
  local a, b = string.byte(redis.call('GETRANGE', prefix .. old, 6, 7), 1, 2)
  local m = a + 256 * b  -- u16 row count from the episode header
  redis.call('DEL', prefix .. old)
  st.size = st.size - m
  st.episodes = st.episodes - 1
  st.evicted_episodes = st.evicted_episodes + 1
  st.evicted_positions = st.evicted_positions + m
  st.oldest = tonumber(old) + 1
end
st.capacity = cap
redis.call('SET', KEYS[2], cjson.encode(st))
return id
"""


class ReplayStore:
    """Push episodes, read stats and episodes."""

    def __init__(self, r: redis.Redis, keys: Keys, capacity: int) -> None:
        self.r = r
        self.keys = keys
        self.capacity = capacity
        self._push = r.register_script(_PUSH)

    def push(self, blob: bytes, pipe: Any = None, source: str = "", seq: int = -1) -> Any:
        """Store one encoded episode (returns its id, or queues the push on `pipe`).

        With a `source` (one game worker process), `seq` numbers its episodes: one at or below
        the highest seen from that source is skipped (returns -1), so a re-sent episode lands
        once. An oversized blob is refused here and by the script (CorruptDataError).
        """
        if len(blob) > MAX_EPISODE_BYTES:
            raise CorruptDataError(f"episode of {len(blob)} bytes refused (max {MAX_EPISODE_BYTES})")
        rows = read_episode_header(blob).rows
        args = (self.keys.buffer_episode_prefix, blob, rows, self.capacity, source, seq, MAX_EPISODE_BYTES)
        ks = (
            self.keys.buffer_episodes,
            self.keys.buffer_stats,
            self.keys.buffer_next_id,
            self.keys.buffer_sources,
        )
        return self._push(keys=ks, args=args, client=pipe if pipe is not None else self.r)

    def push_many(self, blobs: list[bytes], source: str = "", seqs: list[int] | None = None) -> list[int]:
        """Push several episodes in one round trip (each push is still atomic on its own)."""
        seqs = seqs if seqs is not None else [-1] * len(blobs)
        with self.r.pipeline(transaction=False) as pipe:
            for blob, seq in zip(blobs, seqs, strict=True):
                self.push(blob, pipe, source, seq)
            return [int(i) for i in pipe.execute()]

    def stats(self) -> dict[str, Any]:
        raw = self.r.get(self.keys.buffer_stats)
        return json.loads(raw) if raw else {"size": 0, "episodes": 0, "pushed_positions": 0}

    def episodes(self, ids: list[int]) -> list[bytes | None]:
        """The blobs of `ids` (None where evicted), in one MGET."""
        if not ids:
            return []
        return cast(list[bytes | None], self.r.mget([self.keys.buffer_episode(i) for i in ids]))

    def clear(self) -> int:
        """Delete the whole buffer (every key under `prefix:buffer:`); returns keys removed."""
        removed = 0
        batch: list[Any] = []
        for key in self.r.scan_iter(match=self.keys.buffer_pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                removed += int(self.r.unlink(*batch))
                batch = []
        if batch:
            removed += int(self.r.unlink(*batch))
        return removed
