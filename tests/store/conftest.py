"""Every store test runs twice: on fakeredis (fast) and on a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis
from redis_server import redis_server


@pytest.fixture(scope="session")
def real_redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with redis_server(tmp_path_factory.mktemp("redis")) as port:
        yield port


@pytest.fixture(params=["fake", "real"])
def r(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[redis.Redis]:
    if request.param == "fake":
        client = fakeredis.FakeRedis()
    else:
        client = redis.Redis(port=request.getfixturevalue("real_redis_port"))
    client.flushall()
    yield client
    client.close()
