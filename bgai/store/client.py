"""The Redis connection and the errors that mean "the server is away, try again later".

Roles never import redis: they catch `UNAVAILABLE` (re-exported here) and back off.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bgai.config import RedisConfig
from bgai.store.keys import Keys

Redis = redis.Redis

# A lost, refused or timed-out connection, a server still loading its data, or one out of
# memory (its `maxmemory` reached, `noeviction`: it refuses writes, nothing is lost, and room
# comes back as the trainer catches up or an operator raises the limit): worth retrying.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.exceptions.OutOfMemoryError,
)
# The server answered, but refused us (wrong password, ACL): retrying will not help.
REFUSED: tuple[type[BaseException], ...] = (redis.AuthenticationError, redis.exceptions.NoPermissionError)


def is_unavailable(exc: BaseException) -> bool:
    """True for errors worth a retry (AuthenticationError subclasses ConnectionError: not one)."""
    return isinstance(exc, UNAVAILABLE) and not isinstance(exc, REFUSED)


def is_oom(exc: BaseException) -> bool:
    """Redis refused a write for lack of memory (counted by the roles: `bgai_redis_oom_errors`)."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError)


def connect(cfg: RedisConfig, retries: int = 1) -> redis.Redis:
    """A client for `cfg` (lazy: no I/O until the first command), retrying a failed command
    `retries` times at once."""
    return redis.Redis(
        host=cfg.host,
        port=cfg.port,
        db=cfg.db,
        username=cfg.username or None,
        password=cfg.password or None,
        socket_timeout=cfg.socket_timeout_s,
        socket_connect_timeout=cfg.socket_timeout_s,
        health_check_interval=30,
        # one immediate retry (a dropped connection); beyond that the roles' own capped backoff
        # decides (redis-py's default retries 3 times with up to 10 s of sleeps per command)
        retry=Retry(NoBackoff(), retries),
        **tls_options(cfg),
    )


def tls_options(cfg: RedisConfig) -> dict[str, Any]:
    """redis-py's TLS settings for `cfg` (none unless `redis.tls`): the server's certificate must
    chain to `ca_file` (else the system's CAs) and name the host dialled; TLS 1.2 at least; this
    client's certificate and key when given (a server with `tls-auth-clients yes` asks for them)."""
    if not cfg.tls:
        return {}
    return {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": cfg.ca_file or None,
        "ssl_certfile": cfg.cert_file or None,
        "ssl_keyfile": cfg.key_file or None,
        "ssl_min_version": ssl.TLSVersion.TLSv1_2,
    }


def keys_for(cfg: RedisConfig) -> Keys:
    return Keys(cfg.prefix)


def failure_hint(exc: BaseException, cfg: RedisConfig) -> tuple[str, str] | None:
    """(what happened, how to fix it) when `exc` says Redis at `cfg` is unreachable or refused
    these credentials; None for any other error."""
    where = f"Redis at {cfg.host}:{cfg.port}"
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    user = cfg.username or "the default user"
    if isinstance(exc, redis.exceptions.NoPermissionError):  # logged in, but not allowed this
        return f"{where} refused {user} this command: {first}", (
            f"redis.prefix ({cfg.prefix}) must be the fleet's, and the user one that `bgai acl` made"
        )
    if isinstance(exc, REFUSED):
        return f"{where} refused {user}: {first}", (
            "set redis.username and redis.password_file, e.g. "
            "BGAI_REDIS__USERNAME=admin BGAI_REDIS__PASSWORD_FILE=runs/fleet/secrets/admin"
        )
    if not is_unavailable(exc):
        return None
    if cfg.tls and any(w in first for w in ("SSL", "certificate", "TLS")):
        return f"{where} failed TLS: {first}", (
            "redis.ca_file must hold the CA that signed the server's certificate, which must name "
            "redis.host; redis.cert_file and redis.key_file this host's client certificate"
        )
    return f"{where} is unreachable: {first}", "is it running? redis.host, redis.port"


def ping(r: redis.Redis) -> float:
    """Seconds a PING took (raises what the connection raises: refused, unreachable)."""
    t0 = time.perf_counter()
    r.ping()
    return time.perf_counter() - t0


def server_time(r: redis.Redis) -> float:
    """Redis's clock (TIME), seconds since the epoch."""
    seconds, micros = r.time()
    return seconds + micros / 1e6
