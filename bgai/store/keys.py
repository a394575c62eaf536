"""The Redis key schema: every key bgai uses is built here and nowhere else.

`P` is the configured prefix (`redis.prefix`, default `bgai`); two runs can share one Redis with
two prefixes. Writers and readers name roles: coordinator (C), game worker (G), training worker
(T), eval worker (E), `bgai status` / `bgai-runs` (S).

| key                          | type   | TTL   | writer    | readers   | what                              |
|------------------------------|--------|-------|-----------|-----------|-----------------------------------|
| P:model:version              | string | -     | T         | G E S     | int, newest version; only grows   |
| P:model:weights              | string | -     | T         | G E       | weights codec blob of that version|
| P:model:config               | string | -     | T         | G E S     | JSON {model_hash, config_hash,    |
|                              |        |       |           |           | version, step}                    |
| P:run:id                     | string | -     | C S       | all       | current run id                    |
| P:run:status                 | string | -     | C S       | all       | running | paused | stopped        |
| P:workers:{id}               | string | 60 s  | each role | C S       | JSON {type, device_type,          |
|                              |        |       |           |           | device_name, hostname,            |
|                              |        |       |           |           | metrics_port, status,             |
|                              |        |       |           |           | games_generated, model_version,   |
|                              |        |       |           |           | last_heartbeat} + model_loaded_at,|
|                              |        |       |           |           | last_unit_s, metrics_host, owner, |
|                              |        |       |           |           | unit_age_s (extra); alive while   |
|                              |        |       |           |           | the key exists (Redis's clock)    |
| P:workers:index              | set    | -     | each role | C S       | ids ever registered and not yet   |
|                              |        |       | C (reaps) |           | reaped (the TTL key is the truth) |
| P:buffer:episodes            | list   | -     | G (push)  | T         | episode ids, oldest first         |
|                              |        |       | T (evict) |           |                                   |
| P:buffer:episode:{id}        | string | -     | G         | T         | one whole episode (episode codec) |
| P:buffer:stats               | string | -     | G         | T S       | JSON {size, episodes, oldest,     |
|                              |        |       |           |           | newest, capacity, pushed_*,       |
|                              |        |       |           |           | evicted_episodes}                 |
| P:buffer:meta                | string | -     | G         | T         | ring of 4-byte slots (id % slots):|
|                              |        |       |           |           | u16 length, u16 surprise x 1e4    |
| P:buffer:next_id             | string | -     | G         | -         | int, last episode id given out    |
| P:buffer:sources             | hash   | -     | G         | G         | game worker process -> highest    |
|                              |        |       |           |           | episode seq pushed (dedup)        |
| P:metrics:targets            | string | -     | C         | S, Prom.  | JSON [{host, port, labels}]       |
| P:trainer:lock               | string | 30 s  | T         | T S       | holder's owner token (one trainer)|
| P:eval:target                | string | -     | E         | E S       | JSON {version, games, slice}      |
|                              |        |       |           |           | the version being evaluated       |
| P:eval:weights:{v}           | string | 1 day | E         | E         | weights blob of evaluated v (the  |
|                              |        |       |           |           | newest 16, and unfinished ones);  |
|                              |        |       |           |           | TTL refreshed with its slices     |
| P:eval:claims:{v}            | string | 1 day | E         | E         | int, game slices handed out of v  |
| P:eval:slices:{v}            | hash   | 1 day | E         | E         | slice index -> owner token,       |
|                              |        |       |           |           | `=free` (released) or `=done`;    |
|                              |        |       |           |           | g, s (games, slice size), d       |
|                              |        |       |           |           | (done), reissued, released        |
| P:eval:open                  | zset   | -     | E         | E         | versions with unfinished slices   |
| P:eval:results:{v}           | hash   | 1 day | E         | S         | {opp}:{games,wins,points,sq,      |
|                              |        |       |           |           | w1,w2,w3,l1,l2,l3} (w2: gammon    |
|                              |        |       |           |           | wins, l3: backgammon losses...)   |
| P:eval:versions              | zset   | -     | E         | S         | evaluated versions (score = v),   |
|                              |        |       |           |           | trimmed to the newest 100         |

Episode ids are consecutive integers, so the live ids are exactly `oldest..newest` (stats).

An owner token is `<worker id>:<nonce>`, random per process (roles/identity.py): the registry
record names it (`owner`), the trainer lock and eval slices store it, so two processes under one
worker id (cloned hosts) are two owners. A slice whose token's record is gone or names another
token is re-issued.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "bgai"


@dataclass(frozen=True)
class Keys:
    """Builds every key under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in " {}*?[]"):
            raise ValueError(f"invalid key prefix {self.prefix!r}")

    def _k(self, *parts: object) -> str:
        return ":".join((self.prefix, *map(str, parts)))

    # model
    @property
    def model_version(self) -> str:
        return self._k("model", "version")

    @property
    def model_weights(self) -> str:
        return self._k("model", "weights")

    @property
    def model_config(self) -> str:
        return self._k("model", "config")

    # run
    @property
    def run_id(self) -> str:
        return self._k("run", "id")

    @property
    def run_status(self) -> str:
        return self._k("run", "status")

    # workers
    def worker(self, worker_id: str) -> str:
        return self._k("workers", worker_id)

    @property
    def workers_index(self) -> str:
        return self._k("workers", "index")

    # buffer
    @property
    def buffer_episodes(self) -> str:
        return self._k("buffer", "episodes")

    @property
    def buffer_episode_prefix(self) -> str:
        """`episode(id)` is this string followed by the id (the Lua scripts build it so)."""
        return self._k("buffer", "episode", "")

    def buffer_episode(self, episode_id: int) -> str:
        return self._k("buffer", "episode", episode_id)

    @property
    def buffer_pattern(self) -> str:
        """SCAN pattern matching every buffer key."""
        return self._k("buffer", "*")

    @property
    def buffer_stats(self) -> str:
        return self._k("buffer", "stats")

    @property
    def buffer_meta(self) -> str:
        return self._k("buffer", "meta")

    @property
    def buffer_next_id(self) -> str:
        return self._k("buffer", "next_id")

    @property
    def buffer_sources(self) -> str:
        return self._k("buffer", "sources")

    # metrics
    @property
    def metrics_targets(self) -> str:
        return self._k("metrics", "targets")

    # training
    @property
    def trainer_lock(self) -> str:
        return self._k("trainer", "lock")

    # eval
    @property
    def eval_target(self) -> str:
        return self._k("eval", "target")

    @property
    def eval_weights_prefix(self) -> str:
        """`eval_weights(v)` is this string followed by v (the claim script builds it so)."""
        return self._k("eval", "weights", "")

    def eval_weights(self, version: int) -> str:
        return self._k("eval", "weights", version)

    @property
    def eval_slices_prefix(self) -> str:
        """`eval_slices(v)` is this string followed by v (the claim script builds it so)."""
        return self._k("eval", "slices", "")

    def eval_slices(self, version: int) -> str:
        return self._k("eval", "slices", version)

    @property
    def eval_open(self) -> str:
        return self._k("eval", "open")

    @property
    def eval_claims_prefix(self) -> str:
        """`eval_claims(v)` is this string followed by v (the claim script builds it so)."""
        return self._k("eval", "claims", "")

    def eval_claims(self, version: int) -> str:
        return self._k("eval", "claims", version)

    def eval_results(self, version: int) -> str:
        return self._k("eval", "results", version)

    @property
    def eval_versions(self) -> str:
        return self._k("eval", "versions")

    @property
    def eval_pattern(self) -> str:
        """SCAN pattern matching every eval key."""
        return self._k("eval", "*")

    def all_patterns(self) -> list[str]:
        """SCAN patterns covering every key of this prefix (for cleanup)."""
        return [self._k("*")]
