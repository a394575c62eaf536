"""Ceilings of the configuration: the largest size, count and duration each field may take.

A value past its ceiling is a typo or a hostile file (`capacity_positions: 1e23`), never a real
setting, and would fail later and worse: an out-of-memory when a role builds its model, an
OverflowError in every heartbeat. `check_value` runs on every value as it is coerced (file, env,
`--set` and direct construction alike), so a section's own `_validate` only states its lower
bounds and relations. Every int and float field has an entry in `CEILINGS` or
`BOUNDED_BY_SECTION` (a test checks): a new field gets its ceiling here. The byte formats lean
on these too: the episode codec bounds a row by `MAX_PLAYS`, the plays a decision can keep.

Errors never echo a secret (`is_secret`): the value's type is named, not the value.
"""

from __future__ import annotations

from bgai.errors import ConfigError

# movegen.max_plays: distinct plays kept per decision (the exact generator keeps 1,024), and so
# the most plays an episode row can hold.
MAX_PLAYS = 4096
DAY_S = 86_400.0  # no TTL, interval or timeout is longer
MAX_ROWS = 2**16 - 1  # decisions an episode can store (its header's u16 row count)

# Inclusive upper bound of each int and float field; of each item for a tuple of ints.
CEILINGS: dict[str, float] = {
    "model.hidden": 8192,
    "model.race_hidden": 8192,
    "model.ensemble": 64,  # nets evaluated side by side for every position
    "movegen.max_plays": MAX_PLAYS,
    "movegen.frontier2": 16_384,
    "movegen.frontier3": 16_384,
    "selfplay.batch_size": 65_536,
    "selfplay.max_turns": MAX_ROWS,
    "selfplay.temperature": 100.0,
    "selfplay.explore_turns": MAX_ROWS,
    "selfplay.policy_temperature": 100.0,
    "selfplay.chunk_turns": 4096,
    "selfplay.eval_slots": 4096,
    "selfplay.spool_episodes": 20_000,  # x up to 4 MiB an episode (typically ~20 KB)
    "search.num_simulations": 100_000,
    "search.dirichlet_alpha": 100.0,
    "search.dirichlet_fraction": 1.0,
    "search.temperature": 100.0,
    "search.temperature_turns": MAX_ROWS,
    "training.batch_size": 65_536,
    "training.learning_rate": 1.0,
    "training.warmup_steps": 10**9,
    "training.decay_steps": 10**9,
    "training.weight_decay": 1.0,
    "training.grad_clip": 1e6,
    "training.value_weight": 1000.0,
    "training.policy_weight": 1000.0,
    "training.td_lambda": 1.0,
    "training.samples_per_position": 1000.0,
    "training.min_buffer_positions": 100_000_000,
    "training.publish_every": 10**9,
    "training.checkpoint_every": 10**9,
    "training.keep_checkpoints": 1000,
    "training.sample_block": 2**20,
    "buffer.capacity_positions": 100_000_000,  # ~65 B each in Redis, ~200 B in the trainer
    "buffer.surprise_fraction": 1.0,
    "eval.games": 1_000_000,
    "eval.one_ply_candidates": MAX_PLAYS,
    "eval.finalists": MAX_PLAYS,
    "eval.every_versions": 1_000_000,
    "eval.slice_games": 100_000,
    "eval.er_decisions": 100_000,
    "eval.busy_share": 1.0,
    "local.minutes": 366 * 24 * 60.0,
    "training.decay_share": 1.0,
    "training.one_ply_share": 1.0,
    "training.run_minutes": 366 * 24 * 60.0,
    "local.log_every_s": DAY_S,
    "local.eval_games": 1_000_000,
    "redis.db": 1023,
    "redis.socket_timeout_s": 300.0,
    "redis.backoff_base_s": 60.0,
    "redis.backoff_max_s": 3600.0,
    "head.heartbeat_ttl_s": DAY_S,
    "head.heartbeat_every_s": DAY_S,
    "head.coordinator_every_s": 3600.0,
    "head.trainer_lock_ttl_s": DAY_S,
    "head.stall_after_s": DAY_S,
    "head.expected_game_workers": 100_000,
    "head.expected_eval_workers": 100_000,
    "jax.cache_max_mb": 2**20,
    "jax.game_threads": 1024,
    "jax.training_threads": 1024,
    "jax.eval_threads": 1024,
}

# Numbers whose section's `_validate` already bounds them above, with a message of its own (a
# choice, a TCP port, a uint32 seed).
BOUNDED_BY_SECTION = frozenset({"selfplay.ply", "training.seed", "eval.plies", "redis.port"})

# Most items of a tuple field.
MAX_ITEMS: dict[str, int] = {"model.hidden": 16, "model.race_hidden": 16, "eval.opponents": 64}

# str fields naming a file or directory: never empty (an empty one means the working directory).
PATHS = frozenset(
    {
        "training.checkpoint_dir",
        "head.targets_file",
        "local.checkpoint_dir",
        "eval.gnubg_path",
        "selfplay.spool_dir",
        "jax.bearoff_dir",
    }
)

_SECRET_WORDS = ("password", "secret", "token")


def is_secret(key: str) -> bool:
    """True for a field whose value must never appear in a message (`redis.password`)."""
    name = key.split("[")[0].rpartition(".")[2].lower()
    return any(word in name for word in _SECRET_WORDS)


def check_value(key: str, value: object) -> None:
    """ConfigError unless the coerced `value` of `key` (`model.hidden[1]` for an item) is within
    its ceiling, its item count, and (for a path) non-empty."""
    base = key.split("[")[0]
    if isinstance(value, tuple) and base in MAX_ITEMS and len(value) > MAX_ITEMS[base]:
        raise ConfigError(key, f"must be <= {MAX_ITEMS[base]} items, got {len(value)}")
    ceiling = CEILINGS.get(base)
    if ceiling is not None and isinstance(value, int | float) and value > ceiling:
        shown = "a larger number" if is_secret(key) else f"{value!r}"
        raise ConfigError(key, f"must be <= {ceiling:g}, got {shown}")
    if base in PATHS and isinstance(value, str) and not value.strip():
        raise ConfigError(key, "must be non-empty (a path)")
