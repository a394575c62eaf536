"""Prometheus's web config (bgai.obs.webconfig): TLS and bcrypt basic-auth users, written so that
a real Prometheus serves only TLS, only to those users, and takes a user added or removed while it
runs at the next request (what `bgai token create` / `revoke` rely on)."""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml
from redis_server import free_port

from bgai.obs import webconfig
from bgai.obs.doctor import FAIL, OK, check_prometheus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The file's mode is asked of os.open, which the process's umask narrows: fix the umask."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_web_config_serves_tls_to_bcrypt_users(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "web.yml"
    webconfig.write_new(
        path, "/etc/p/cert.pem", "/etc/p/key.pem", {"admin": "pw-admin", "laptop": "pw-laptop"}
    )
    data = yaml.safe_load(path.read_text())
    assert data["tls_server_config"] == {
        "cert_file": "/etc/p/cert.pem",
        "key_file": "/etc/p/key.pem",
        "min_version": "TLS12",
    }
    users = data["basic_auth_users"]
    assert sorted(users) == ["admin", "laptop"]
    assert all(h.startswith("$2b$10$") for h in users.values())
    assert bcrypt.checkpw(b"pw-admin", users["admin"].encode())
    assert bcrypt.checkpw(b"pw-laptop", users["laptop"].encode())
    assert not bcrypt.checkpw(b"pw-admin", users["laptop"].encode())
    assert "pw-admin" not in path.read_text()  # hashes only
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["web.yml"]  # no temporary file left


def test_joined_users_are_added_replaced_and_removed_and_the_base_kept(
    tmp_path: Path, umask_022: None
) -> None:
    path = tmp_path / "web.yml"
    webconfig.write_new(webconfig.base_path(path), "c.pem", "k.pem", {"admin": "pw-admin"})
    admin_hash = webconfig.read(webconfig.base_path(path))["basic_auth_users"]["admin"]
    webconfig.sync(path, {"laptop": webconfig.hash_password("pw-1")})
    webconfig.sync(path, {"laptop": webconfig.hash_password("pw-2")})  # a new token for the host
    data = webconfig.read(path)
    assert data["basic_auth_users"]["admin"] == admin_hash  # untouched
    assert bcrypt.checkpw(b"pw-2", data["basic_auth_users"]["laptop"].encode())
    assert not bcrypt.checkpw(b"pw-1", data["basic_auth_users"]["laptop"].encode())
    assert data["tls_server_config"]["cert_file"] == "c.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert webconfig.sync(path, {}) is True  # revoked
    assert webconfig.sync(path, {}) is False  # gone already
    assert list(webconfig.read(path)["basic_auth_users"]) == ["admin"]
    assert webconfig.read(path)["tls_server_config"]["key_file"] == "k.pem"


def test_a_base_without_users_gets_the_joined_ones(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    webconfig.base_path(path).write_text("tls_server_config: {cert_file: c.pem, key_file: k.pem}\n")
    webconfig.sync(path, {"laptop": "$2b$10$l"})
    assert list(webconfig.read(path)["basic_auth_users"]) == ["laptop"]


def test_the_web_config_is_its_base_plus_the_joined_hosts_and_rewritten_only_on_change(
    tmp_path: Path,
) -> None:
    path = tmp_path / "web.yml"
    base = webconfig.base_path(path)
    assert base == tmp_path / "web.base.yml"
    webconfig.write_new(base, "c.pem", "k.pem", {"admin": "pw-admin"})
    admin_hash = webconfig.read(base)["basic_auth_users"]["admin"]
    assert webconfig.sync(path, {"laptop": "$2b$10$l", "admin": "$2b$10$forged"}) is True
    data = webconfig.read(path)
    assert data["basic_auth_users"] == {"admin": admin_hash, "laptop": "$2b$10$l"}  # the base's admin wins
    assert data["tls_server_config"] == webconfig.read(base)["tls_server_config"]
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert webconfig.sync(path, {"laptop": "$2b$10$l", "admin": "$2b$10$forged"}) is False
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before  # unchanged: not rewritten
    assert webconfig.sync(path, {}) is True  # revoked
    assert list(webconfig.read(path)["basic_auth_users"]) == ["admin"]
    base.unlink()
    with pytest.raises(FileNotFoundError):
        webconfig.sync(path, {})


def test_a_file_that_is_no_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("- a\n- list\n")
    with pytest.raises(ValueError, match="not a Prometheus web config"):
        webconfig.read(path)


class Prometheus:
    """HTTPS requests to a Prometheus whose certificate is signed by the CA at `ca`."""

    def __init__(self, port: int, ca: Path) -> None:
        self.base = f"https://127.0.0.1:{port}"
        self.context = ssl.create_default_context(cafile=str(ca))

    def status(self, path: str, user: str | None = None, password: str = "") -> int:
        request = urllib.request.Request(self.base + path)
        if user is not None:
            auth = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {auth}")
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus on PATH")
def test_a_running_prometheus_serves_only_its_users_and_rereads_them_per_request(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    made = subprocess.run(
        [REPO / "scripts" / "tls-certs", certs, "--server", "prometheus", "--san", "IP:127.0.0.1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    web = tmp_path / "web.yml"
    webconfig.write_new(
        web, str(certs / "prometheus.crt"), str(certs / "prometheus.key"), {"admin": "pw-admin"}
    )
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 15s}\n")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.config.file={web}",
            "--web.enable-remote-write-receiver",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(port, certs / "ca.crt")
    buildinfo = "/api/v1/status/buildinfo"
    try:
        deadline = time.monotonic() + 60
        while True:  # wait on the condition "Prometheus answers", bounded
            try:
                if prom.status("/-/ready", "admin", "pw-admin") == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prometheus did not answer in 60 s"
            time.sleep(0.05)
        assert prom.status(buildinfo, "admin", "pw-admin") == 200
        assert prom.status(buildinfo) == 401
        assert prom.status(buildinfo, "admin", "wrong") == 401
        assert prom.status(buildinfo, "laptop", "pw-laptop") == 401
        # TLS only: in clear, the same port answers that it wants HTTPS
        with pytest.raises(urllib.error.HTTPError) as clear:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{buildinfo}", timeout=10).read()
        assert clear.value.code == 400 and b"HTTPS" in clear.value.read()
        # a certificate from another CA is refused
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(prom.base + buildinfo, timeout=10, context=ssl.create_default_context())
        # `bgai doctor` finds it up over TLS with the fleet CA (a login is needed to read more)
        up = check_prometheus(prom.base, 5.0, str(certs / "ca.crt"))
        assert up.status is OK and "answers over TLS" in up.found, up
        foreign = check_prometheus(prom.base, 5.0, "")  # the system's CAs do not vouch for it
        assert foreign.status is FAIL and "certificate must chain to redis.ca_file" in foreign.fix, foreign
        # a host joined while it runs (the coordinator's way: the base plus the joined hosts'
        # hashes): its user works at the next request, no restart
        cert, key = str(certs / "prometheus.crt"), str(certs / "prometheus.key")
        webconfig.write_new(webconfig.base_path(web), cert, key, {"admin": "pw-admin"})
        assert webconfig.sync(web, {"laptop": webconfig.hash_password("pw-laptop")})
        assert prom.status(buildinfo, "laptop", "pw-laptop") == 200
        assert prom.status(buildinfo, "laptop", "pw-other") == 401
        # the remote-write receiver is behind the same login (a GET is the wrong method, no more)
        assert prom.status("/api/v1/write") == 401
        assert prom.status("/api/v1/write", "laptop", "pw-laptop") == 405
        # revoked: refused at the next request
        assert webconfig.sync(web, {})
        assert prom.status(buildinfo, "laptop", "pw-laptop") == 401
        assert prom.status(buildinfo, "admin", "pw-admin") == 200
        # a new token for the host: its new password
        assert webconfig.sync(web, {"laptop": webconfig.hash_password("pw-3")})
        assert prom.status(buildinfo, "laptop", "pw-3") == 200
        assert webconfig.sync(web, {})
        assert prom.status(buildinfo, "laptop", "pw-3") == 401
        assert prom.status(buildinfo, "admin", "pw-admin") == 200
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()
