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
| P:run:head                   | string | 60 s  | C         | all       | JSON {version, hostname}: the     |
|                              |        |       |           |           | head's bgai (store/head.py); set  |
|                              |        |       |           |           | each coordinator pass, TTL        |
|                              |        |       |           |           | head.heartbeat_ttl_s              |
| P:workers:{id}               | string | 60 s  | each role | C S       | JSON {type, device_type,          |
|                              |        |       |           |           | device_name, hostname,            |
|                              |        |       |           |           | metrics_port, status,             |
|                              |        |       |           |           | games_generated, model_version,   |
|                              |        |       |           |           | last_heartbeat} + model_loaded_at,|
|                              |        |       |           |           | last_unit_s, metrics_host, owner, |
|                              |        |       |           |           | unit_age_s, bgai_version (extra); |
|                              |        |       |           |           | alive while                       |
|                              |        |       |           |           | the key exists (Redis's clock)    |
|                              |        |       |           |           | id: `<host>:<role>[:n]`; a game or|
|                              |        |       |           |           | eval worker's ACL user writes only|
|                              |        |       |           |           | `workers:<its host>:*` (acl.py)   |
| P:workers:index              | set    | -     | C         | C         | ids the coordinator saw (to tell  |
|                              |        |       |           |           | who went); no worker writes it    |
| P:buffer:{run}:episodes      | list   | -     | G (push)  | T         | episode ids, oldest first         |
| P:buffer:{run}:episode:{id}  | string | -     | G         | T         | one whole episode (episode codec) |
| P:buffer:{run}:stats         | string | -     | G         | T S       | JSON {size, episodes, oldest,     |
|                              |        |       |           |           | newest, capacity, pushed_*,       |
|                              |        |       |           |           | evicted_*, repaired}              |
| P:buffer:{run}:next_id       | string | -     | G         | -         | int, last episode id given out    |
| P:buffer:{run}:sources       | hash   | -     | G         | G         | game worker process -> highest    |
|                              |        |       |           |           | episode seq pushed (dedup)        |
| P:metrics:targets            | string | -     | C         | S, Prom.  | JSON [{host, port, labels}]       |
| P:joined:{host}              | string | -     | S (admin) | C S       | JSON {host, roles, created,       |
|                              |        |       |           |           | expires, metrics_hash}: a host    |
|                              |        |       |           |           | joined by token (`bgai token`)    |
| P:trainer:lock               | string | 30 s  | T         | T S       | holder's owner token (one trainer)|
| P:eval:{run}:target          | string | -     | E         | E S       | JSON {version, games, slice}      |
|                              |        |       |           |           | the version being evaluated       |
| P:eval:{run}:weights:{v}     | string | 1 day | E         | E         | weights blob of evaluated v (the  |
|                              |        |       |           |           | newest 16, and unfinished ones);  |
|                              |        |       |           |           | TTL refreshed with its slices     |
| P:eval:{run}:claims:{v}      | string | 1 day | E         | E         | int, game slices handed out of v  |
| P:eval:{run}:slices:{v}      | hash   | 1 day | E         | E         | slice index -> owner token,       |
|                              |        |       |           |           | `=free` (released) or `=done`;    |
|                              |        |       |           |           | g, s (games, slice size), d       |
|                              |        |       |           |           | (done), reissued, released        |
| P:eval:{run}:open            | zset   | -     | E         | E         | versions with unfinished slices   |
| P:eval:{run}:results:{v}     | hash   | 1 day | E         | S         | {opp}:{games,wins,points,sq,      |
|                              |        |       |           |           | w1,w2,w3,l1,l2,l3} (w2: gammon    |
|                              |        |       |           |           | wins, l3: backgammon losses...)   |
| P:eval:{run}:versions        | zset   | -     | E         | S         | evaluated versions (score = v),   |
|                              |        |       |           |           | trimmed to the newest 100         |
| P:eval:{run}:champion        | string | -     | E         | E S       | JSON {version, metric, value}: the|
|                              |        |       |           |           | run's best evaluated version (its |
|                              |        |       |           |           | MLflow model has the `champion`   |
|                              |        |       |           |           | alias); value: higher is better   |

Buffer and eval keys belong to one run: `{run}` is the run id (`P:run:id`), or `-` when Redis
names none. Every script that writes them first checks that its run is still the one `P:run:id`
names, in the same atomic step, so nothing is ever written under a run other than the current
one: switching runs is one write of `P:run:id`, and the runs left behind are frozen and can be
deleted at leisure (`bgai-runs start`/`resume`), racing nobody. A run id is letters, digits,
`_`, `.` and `-` (MLflow's are hex).

Episode ids are consecutive integers, so the live ids are exactly `oldest..newest` (stats).

An owner token is `<worker id>:<nonce>`, random per process (roles/identity.py): the registry
record names it (`owner`), the trainer lock and eval slices store it, so two processes under one
worker id (cloned hosts) are two owners. A slice whose token's record is gone or names another
token is re-issued.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "bgai"
NO_RUN = "-"  # the run namespace used while Redis names no run (`P:run:id` unset)
_RUN_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def check_run_id(run_id: str) -> str:
    """`run_id` if it can name a key namespace (no `:`, no glob characters); ValueError if not."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"invalid run id {str(run_id)[:40]!r} (letters, digits, _ . - only)")
    return run_id


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

    @property
    def head(self) -> str:
        """The head's bgai version (under `run:`, which every role's ACL user may read)."""
        return self._k("run", "head")

    # workers
    def worker(self, worker_id: str) -> str:
        return self._k("workers", worker_id)

    @property
    def workers_index(self) -> str:
        return self._k("workers", "index")

    # buffer and eval: one namespace per run
    def buffer(self, run_id: str) -> BufferKeys:
        """The replay buffer keys of `run_id` (NO_RUN when Redis names no run)."""
        return BufferKeys(self._k("buffer", check_run_id(run_id), ""))

    @property
    def buffer_root(self) -> str:
        """Every run's buffer keys start with this string (SCAN patterns, cleanup)."""
        return self._k("buffer", "")

    # metrics
    @property
    def metrics_targets(self) -> str:
        return self._k("metrics", "targets")

    # hosts joined by token (bgai token create / revoke; their ACL users are Redis's own)
    def joined(self, host: str) -> str:
        return self._k("joined", host)

    @property
    def joined_pattern(self) -> str:
        return self._k("joined", "*")

    # training
    @property
    def trainer_lock(self) -> str:
        return self._k("trainer", "lock")

    # eval
    def eval(self, run_id: str) -> EvalKeys:
        """The fleet evaluation keys of `run_id` (NO_RUN when Redis names no run)."""
        return EvalKeys(self._k("eval", check_run_id(run_id), ""))

    @property
    def eval_root(self) -> str:
        """Every run's eval keys start with this string (SCAN patterns, cleanup)."""
        return self._k("eval", "")

    def all_patterns(self) -> list[str]:
        """SCAN patterns covering every key of this prefix (for cleanup)."""
        return [self._k("*")]


@dataclass(frozen=True)
class BufferKeys:
    """One run's replay buffer, `P:buffer:{run}:...` (`root` ends with the `:`)."""

    root: str

    @property
    def episodes(self) -> str:
        return self.root + "episodes"

    @property
    def episode_prefix(self) -> str:
        """`episode(id)` is this string followed by the id (the push script builds it so)."""
        return self.root + "episode:"

    def episode(self, episode_id: int) -> str:
        return f"{self.episode_prefix}{episode_id}"

    @property
    def stats(self) -> str:
        return self.root + "stats"

    @property
    def next_id(self) -> str:
        return self.root + "next_id"

    @property
    def sources(self) -> str:
        return self.root + "sources"

    @property
    def pattern(self) -> str:
        """SCAN pattern matching every key of this run's buffer."""
        return self.root + "*"


@dataclass(frozen=True)
class EvalKeys:
    """One run's fleet evaluation, `P:eval:{run}:...` (`root` ends with the `:`)."""

    root: str

    @property
    def target(self) -> str:
        return self.root + "target"

    @property
    def weights_prefix(self) -> str:
        """`weights(v)` is this string followed by v (the claim script builds it so)."""
        return self.root + "weights:"

    def weights(self, version: int) -> str:
        return f"{self.weights_prefix}{version}"

    @property
    def slices_prefix(self) -> str:
        """`slices(v)` is this string followed by v (the claim script builds it so)."""
        return self.root + "slices:"

    def slices(self, version: int) -> str:
        return f"{self.slices_prefix}{version}"

    @property
    def open(self) -> str:
        return self.root + "open"

    @property
    def claims_prefix(self) -> str:
        """`claims(v)` is this string followed by v (the claim script builds it so)."""
        return self.root + "claims:"

    def claims(self, version: int) -> str:
        return f"{self.claims_prefix}{version}"

    def results(self, version: int) -> str:
        return f"{self.root}results:{version}"

    @property
    def versions(self) -> str:
        return self.root + "versions"

    @property
    def champion(self) -> str:
        return self.root + "champion"
