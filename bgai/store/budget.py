"""Redis's memory budget (`maxmemory`, with `maxmemory-policy noeviction`), from the config.

What the fleet can make Redis hold is bounded by construction, so the budget is a sum of bounds:
- the replay buffer: at most `capacity + 1` episodes (every one holds a row) of at most
  `capacity + MAX_ROWS` rows in all (the newest episode may overshoot), each stored in at most
  `codec.stored_bound(rows)` bytes (the push script refuses more) plus Redis's own cost per key
  (key, value object, dict and list entries);
- model weights: the current version and the eval copies (`evals.KEEP_WEIGHTS`, plus a few
  unfinished versions), each the size of the model's float32 params;
- a fixed headroom for everything small (registry, stats, targets, run keys, scripts, client
  buffers).
With `noeviction` Redis refuses a write past the budget (OutOfMemoryError) instead of dropping
keys (an evicting policy would break the buffer's list and stats); the roles treat that refusal
like an outage (`store.client.is_unavailable`): back off, game workers spool, nothing is lost.
Honest episodes cost ~70 B per row (README), so the buffer normally fills a small part of it.
"""

from __future__ import annotations

from bgai.config import Config
from bgai.core.encoding import num_inputs
from bgai.core.network import NUM_OUTCOMES
from bgai.core.rules import NUM_STEPS
from bgai.store.codec import MAX_STORED_ROW_BYTES, STORED_EPISODE_SLACK
from bgai.store.evals import KEEP_WEIGHTS

MAX_ROWS = 2**16 - 1  # rows of one episode (u16 in its header)
KEY_OVERHEAD = 192  # bytes Redis spends per stored episode beyond its blob (measured ~100)
WEIGHT_COPIES = 1 + KEEP_WEIGHTS + 4  # current, kept eval copies, a few unfinished versions
HEADROOM = 64 * 2**20


def _dense(widths: tuple[int, ...], inputs: int) -> tuple[int, int]:
    """Parameters of ReLU layers `widths` over `inputs` values, and the last one's width."""
    n = 0
    for h in widths:
        n, inputs = n + inputs * h + h, h
    return n, inputs


def param_count(
    hidden: tuple[int, ...], inputs: str = "raw", value_heads: str = "one", race_hidden: tuple[int, ...] = ()
) -> int:
    """Parameters of `BgNet(hidden, inputs, value_heads, race_hidden)`: the MLP trunk, the policy
    and value heads, and a race head or race net."""
    n, width = _dense(hidden, num_inputs(inputs))
    n += (width + 1) * (NUM_STEPS + NUM_OUTCOMES)
    if value_heads == "by_class":
        n += (width + 1) * NUM_OUTCOMES
    if value_heads == "race_net":
        race, race_width = _dense(race_hidden, num_inputs(inputs))
        n += race + (race_width + 1) * NUM_OUTCOMES
    return n


def buffer_bytes(capacity: int) -> int:
    """The most a buffer of `capacity` positions can take in Redis."""
    rows, episodes = capacity + MAX_ROWS, capacity + 1
    return rows * MAX_STORED_ROW_BYTES + episodes * (STORED_EPISODE_SLACK + KEY_OVERHEAD)


def redis_maxmemory(cfg: Config) -> int:
    """The `maxmemory` (bytes) for a Redis serving `cfg`'s fleet."""
    m = cfg.model
    weights = WEIGHT_COPIES * (
        4 * param_count(tuple(m.hidden), m.inputs, m.value_heads, tuple(m.race_hidden)) + 64 * 2**10
    )  # + header
    return buffer_bytes(cfg.buffer.capacity_positions) + weights + HEADROOM
