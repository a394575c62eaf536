"""The Redis connection and the errors that mean "the server is away, try again later".

Roles never import redis: they catch `UNAVAILABLE` (re-exported here) and back off.
"""

from __future__ import annotations

import ssl
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


def connect(cfg: RedisConfig) -> redis.Redis:
    """A client for `cfg` (lazy: no I/O until the first command)."""
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
        retry=Retry(NoBackoff(), 1),
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
