"""Redis over TLS (`redis.tls`), against a real redis-server with `tls-auth-clients yes` and the
certificates `scripts/tls-certs` makes (as deploy.yml does with `redis_tls: true`): a client
with the fleet's CA and its own certificate talks; a server certificate from another CA, or
for another name than the one dialled, is refused, and so is a client without a certificate."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis_server import free_port, redis_server

from bgai.config import load_config
from bgai.errors import ConfigError
from bgai.store.client import connect

REPO = Path(__file__).resolve().parents[2]


def make_certs(directory: Path) -> Path:
    subprocess.run(
        [REPO / "scripts" / "tls-certs", directory, "--server", "redis", "--san", "IP:127.0.0.1",
         "--client", "w1"],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return directory


@dataclass
class TlsServer:
    port: int
    certs: Path

    def client(self, host: str = "127.0.0.1", certs: Path | None = None, **sets: str) -> redis.Redis:
        certs = certs or self.certs
        overrides = {
            "redis.host": host,
            "redis.port": str(self.port),
            "redis.tls": "true",
            "redis.ca_file": str(certs / "ca.crt"),
            "redis.cert_file": str(self.certs / "clients" / "w1.crt"),
            "redis.key_file": str(self.certs / "clients" / "w1.key"),
            "redis.socket_timeout_s": "2",
            **sets,
        }
        return connect(load_config(env={}, overrides=overrides).redis)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    tmp = tmp_path_factory.mktemp("tls")
    certs = make_certs(tmp / "certs")
    port = free_port()
    tls = ("--tls-port", str(port), "--tls-cert-file", str(certs / "redis.crt"),
           "--tls-key-file", str(certs / "redis.key"), "--tls-ca-cert-file", str(certs / "ca.crt"),
           "--tls-auth-clients", "yes")  # fmt: skip
    with redis_server(tmp / "redis", extra=tls):
        yield TlsServer(port, certs)


def test_a_client_with_the_fleet_ca_and_its_certificate_talks_tls(server: TlsServer) -> None:
    r = server.client()
    assert r.ping() and r.set("k", "v") and r.get("k") == b"v"
    plain = redis.Redis(port=server.port, socket_timeout=0.5, retry=None)  # no TLS: no answer
    with pytest.raises(redis.ConnectionError):
        plain.ping()


def test_a_server_certificate_of_another_ca_is_refused(server: TlsServer, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other")
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        server.client(certs=other).ping()


def test_a_certificate_for_another_name_is_refused(server: TlsServer) -> None:
    # the certificate names 127.0.0.1 only: dialled as "localhost", the name does not match
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED|match"):
        server.client(host="localhost").ping()


def test_a_client_without_a_certificate_is_refused(server: TlsServer) -> None:
    with pytest.raises(redis.ConnectionError):
        server.client(**{"redis.cert_file": "", "redis.key_file": ""}).ping()


def test_tls_settings_are_checked_with_the_config() -> None:
    with pytest.raises(ConfigError, match=r"redis\.ca_file.*needs redis\.tls"):
        load_config(env={}, overrides={"redis.ca_file": "/x/ca.crt"})
    with pytest.raises(ConfigError, match=r"redis\.key_file.*goes with cert_file"):
        load_config(env={}, overrides={"redis.tls": "true", "redis.cert_file": "/x/c.crt"})
