"""Test access to the throwaway redis-server helper (see bgai.store.server)."""

from __future__ import annotations

from bgai.store.server import free_port, local_redis, redis_binary

redis_server = local_redis

__all__ = ["free_port", "redis_binary", "redis_server"]
