"""Where and how processes run (`bgai.config`'s deployment sections): the Redis they reach, the
head's liveness rules, MLflow, train-local's budget and the JAX compilation cache. Left out of
`config_hash` (see `bgai.config.DEPLOYMENT_SECTIONS`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import unquote, urlsplit

from bgai.config_parse import coerce, field_types
from bgai.config_section import _Section
from bgai.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RedisConfig(_Section):
    """How every role reaches the head's Redis. Put the password in a file named by
    `password_file`, env BGAI_REDIS__PASSWORD or an untracked config file, never a committed one."""

    SECTION: ClassVar[str] = "redis"
    # The address as one URL, `redis://[user[:password]@]host[:port][/db]` (`rediss://`: TLS), as
    # rq and MLflow take theirs; env BGAI_REDIS_URL sets it too. When given it is read into host,
    # port (6379 if it names none), db (0), tls, and the user and password it names, over
    # whatever set those keys, and then left empty: the resolved config holds one address.
    url: str = ""
    # The head's address (set it per host: BGAI_REDIS__HOST or an untracked config file).
    host: str = "127.0.0.1"
    # TCP port of the head's Redis.
    port: int = 6379
    # Database number.
    db: int = 0
    # Every key starts with this (two runs can share one Redis with two prefixes).
    prefix: str = "bgai"
    # ACL user ("" = the default user).
    username: str = ""
    # That user's password ("" = none). Never commit one: BGAI_REDIS__PASSWORD.
    password: str = ""
    # Or a file holding it (read when the config loads): how supervisord gives each role its own.
    password_file: str = ""
    # TLS to the server (its certificate checked against ca_file and the host name).
    tls: bool = False
    # The CA that signed the server's certificate ("" = the system's CAs).
    ca_file: str = ""
    # This client's certificate, for a server that asks for one (tls-auth-clients)...
    cert_file: str = ""
    # ...and its private key.
    key_file: str = ""
    # Seconds a command may take before the connection counts as lost.
    socket_timeout_s: float = 5.0
    # Reconnect backoff: the first wait, doubled per failure (with jitter)...
    backoff_base_s: float = 0.2
    # ...up to this cap.
    backoff_max_s: float = 5.0

    def _normalise(self) -> None:
        if not self.url:
            return
        hints = field_types(type(self))
        for name, value in parse_redis_url(self.url).items():
            object.__setattr__(self, name, coerce(f"redis.{name}", value, hints[name]))
        object.__setattr__(self, "url", "")
        plain = [
            f"redis.{n}" for n in ("ca_file", "cert_file", "key_file") if not self.tls and getattr(self, n)
        ]
        if plain:
            raise ConfigError("redis.url", f"is redis:// (no TLS) but {plain[0]} is set: use rediss://")

    def _validate(self) -> None:
        self._need("host", bool(self.host.strip()), "must be non-empty")
        self._need("port", 0 < self.port < 65536, "must be a TCP port (1..65535)")
        self._non_negative("db")
        ok = bool(re.fullmatch(r"[A-Za-z0-9_.-]+", self.prefix))
        self._need("prefix", ok, "must match [A-Za-z0-9_.-]+")
        self._positive("socket_timeout_s", "backoff_base_s", "backoff_max_s")
        self._need("backoff_max_s", self.backoff_max_s >= self.backoff_base_s, "must be >= backoff_base_s")
        loopback = self.host in ("127.0.0.1", "localhost", "::1")
        self._need("password", loopback or bool(self.password), "is required for a Redis off this host")
        for name in ("ca_file", "cert_file", "key_file"):
            self._need(name, self.tls or not getattr(self, name), "needs redis.tls: true")
        self._need("key_file", bool(self.cert_file) == bool(self.key_file), "goes with cert_file")


def parse_redis_url(url: str) -> dict[str, object]:
    """The `redis` keys a `redis[s]://[user[:password]@]host[:port][/db]` URL sets; ConfigError
    on `redis.url` for anything else. The message never repeats the URL: it may hold a password."""
    shape = "redis://[user[:password]@]host[:port][/db] or rediss://... (TLS)"

    def bad(problem: str) -> ConfigError:
        return ConfigError("redis.url", f"not a Redis URL ({problem}); expected {shape}")

    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port  # .port raises on a port that is no number
    except ValueError:  # (its message could quote a password taken for a port)
        raise bad("a malformed host or port") from None
    if parts.scheme not in ("redis", "rediss"):
        raise bad("the scheme is not redis:// or rediss://")
    if not host:
        raise bad("no host")
    if parts.query or parts.fragment:
        raise bad("query parameters are not read: set redis.* keys instead")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise bad("the path must be a database number")
    out: dict[str, object] = {"host": host, "port": port or 6379, "db": int(db or 0)}
    out["tls"] = parts.scheme == "rediss"
    if parts.username:
        out["username"] = unquote(parts.username)
    if parts.password:
        out["password"] = unquote(parts.password)
    return out


@dataclass(frozen=True, slots=True)
class HeadConfig(_Section):
    """The coordinator and the liveness rules every role follows."""

    SECTION: ClassVar[str] = "head"
    # Its registry key's TTL: a worker silent this long is dead (Redis expires the key; no worker
    # clock is compared, so a skewed clock changes nothing).
    heartbeat_ttl_s: float = 60.0
    # Seconds between heartbeats (each refreshes the TTL in one round trip).
    heartbeat_every_s: float = 5.0
    # Seconds between coordinator passes (reaping, targets).
    coordinator_every_s: float = 2.0
    # Prometheus file_sd JSON the coordinator writes (atomic replace).
    targets_file: str = "runs/fleet/targets/bgai.json"
    # Prometheus's HTTP address, e.g. http://head:9090 ("" = unknown): `bgai doctor` checks it answers.
    prometheus_url: str = ""
    # Prometheus's web config (`--web.config.file`: TLS and basic-auth users), for a head that
    # takes remote writes from hosts joined by token ("" = none). The coordinator writes it: the
    # users of `<name>.base.<ext>` beside it (the admin's, TLS settings) plus one per joined host
    # (`bgai token create` stores its bcrypt hash in Redis; revoked: gone at the next pass).
    prometheus_web_config: str = ""
    # TTL of the single-trainer lock; the holder refreshes it every unit of work.
    trainer_lock_ttl_s: float = 30.0
    # A worker whose unit of work in progress (a self-play chunk, train steps, an eval slice, its
    # setup with the first compile) has run longer than this is "stalled" (hung; its heartbeat
    # thread still beats): shown in its registry status and counted by the coordinator's metric.
    stall_after_s: float = 600.0
    # How many game and eval workers the fleet should have up (0 = no expectation): the
    # coordinator exports them (bgai_expected_workers) and BgaiFewerWorkers fires when fewer are
    # up. scripts/fleet-local and deploy.yml set them from the worker counts they start.
    expected_game_workers: int = 0
    # The eval workers the fleet should have up (0 = no expectation), as expected_game_workers.
    expected_eval_workers: int = 0

    def _validate(self) -> None:
        self._positive(
            "heartbeat_ttl_s",
            "heartbeat_every_s",
            "coordinator_every_s",
            "trainer_lock_ttl_s",
            "stall_after_s",
        )
        self._non_negative("expected_game_workers", "expected_eval_workers")
        ok = self.heartbeat_every_s < self.heartbeat_ttl_s
        self._need("heartbeat_every_s", ok, "must be < heartbeat_ttl_s")
        self._need("targets_file", bool(self.targets_file.strip()), "must be non-empty")


@dataclass(frozen=True, slots=True)
class MlflowConfig(_Section):
    """Experiment tracking (used from the MLflow issue on)."""

    SECTION: ClassVar[str] = "mlflow"
    # Tracking server URI ("" = no tracking).
    tracking_uri: str = ""
    # Experiment the runs are filed under.
    experiment: str = "bgai"
    # Registered model each run's champion (its best evaluated version) is a version of; the
    # alias `champion` points at the newest champion (`bgai eval --model champion`).
    model_name: str = "bgai"
    # A server's basic-auth user ("" = none; MLFLOW_TRACKING_USERNAME works too)...
    username: str = ""
    # ...and password (MLFLOW_TRACKING_PASSWORD works too)...
    password: str = ""
    # ...or a file holding it (as redis.password_file).
    password_file: str = ""

    def _validate(self) -> None:
        self._need("model_name", bool(self.model_name.strip()), "must be non-empty")


@dataclass(frozen=True, slots=True)
class LocalConfig(_Section):
    """`bgai local`: self-play and training in one process, no Redis."""

    SECTION: ClassVar[str] = "local"
    # Wall-clock budget of the run in minutes.
    minutes: float = 30.0
    # Where checkpoints and the final weights are written.
    checkpoint_dir: str = "runs/local"
    # Seconds between progress lines.
    log_every_s: float = 10.0
    # Games per opponent in the final evaluation (0 = skip it).
    eval_games: int = 200

    def _validate(self) -> None:
        self._positive("minutes", "log_every_s")
        self._need("checkpoint_dir", bool(self.checkpoint_dir.strip()), "must be non-empty")
        self._non_negative("eval_games")


@dataclass(frozen=True, slots=True)
class JaxConfig(_Section):
    """What this host keeps on disk between runs: JAX's compiled programs, the bear-off database."""

    SECTION: ClassVar[str] = "jax"
    # Directory of JAX's persistent compilation cache ("" = none; "~" is expanded). A restarted
    # worker loads its compiled self-play from here instead of compiling it again.
    cache_dir: str = "~/.cache/bgai/jax"
    # Size the cache is kept under, least recently used entries evicted first.
    cache_max_mb: int = 2048
    # Directory of the bear-off database (`values.bearoff`; "~" is expanded): built there once
    # (about 5 s) by the first process that needs it, read back by the others.
    bearoff_dir: str = "~/.cache/bgai"
    # XLA's CPU threads in a game worker's process (0: one per core, JAX's default). Where roles
    # share a few cores (the one-host fleet) each process starts a pool as wide as the host;
    # `bgai bench fleet` measures what a narrower one does (docs/results.md, Speed).
    game_threads: int = 0
    # XLA's CPU threads in the training worker's process (0: one per core).
    training_threads: int = 0
    # XLA's CPU threads in an eval worker's process (0: one per core).
    eval_threads: int = 0
    # What this host should compute on: cuda, rocm, metal or cpu (Ansible's `bgai_accelerator`;
    # "" = whatever JAX finds). `bgai doctor` compares JAX's backend with it.
    accelerator: str = ""

    def _validate(self) -> None:
        self._positive("cache_max_mb")
        self._choice("accelerator", ("", "cuda", "rocm", "metal", "cpu"))
        self._non_negative("game_threads", "training_threads", "eval_threads")
