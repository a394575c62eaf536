"""A throwaway `redis-server` on loopback, for benchmarks and tests (never for a real fleet)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server is missing (apt-get install redis-server; .ci/run installs it)")
    return path


@contextmanager
def local_redis(directory: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> Iterator[int]:
    """Yields the port of a fresh server in `directory` (no persistence unless `extra` asks)."""
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    args = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", ""]
    proc = subprocess.Popen([*args, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    # no retries: redis-py's default retries an AuthenticationError (a ConnectionError) with
    # backoff, seconds lost on every server started with an ACL file
    client = redis.Redis(port=port, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        deadline = time.monotonic() + 20
        while True:  # wait on the condition "the server answers PING", bounded
            try:
                if client.ping():
                    break
            except (redis.AuthenticationError, redis.ResponseError):  # answering, wants a user (ACL)
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} did not start") from None
                time.sleep(0.02)
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
