"""A worker host joins a head it can reach but that cannot reach it, with `bgai join TOKEN`.

The head is set up by hand, as the README's "Rented or remote workers" says: `bgai tls init`
makes the CA and the certificates; Redis speaks only TLS (client certificates optional: a joined
host logs in with the password its token holds); Prometheus takes remote writes over TLS with
basic auth (`--web.config.file`); a coordinator and a training worker run the tiny test fleet.
The joined host lives in a network namespace of its own whose firewall (nftables) drops every
connection opened towards it: it can open connections to the head, the head none to it.

Shown: the token's host registers, its episodes land in the buffer, its metrics reach the head's
Prometheus (queried there, labelled as scraped workers are), the model version it plays
advances; the head cannot open a connection to it; a token whose CA is another's (a
man-in-the-middle certificate) is refused, and so is a plain-text connection to the TLS port;
`bgai token revoke` stops its workers at once (they exit, refused) and its metrics user.
Needs root (a network namespace) and nft.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis
from firewall import wall_off
from redis_server import free_port
from supervised import wait_for

from bgai.join.token import decode
from bgai.obs import webconfig
from bgai.store.acl import ensure_secrets, write_password_files
from bgai.store.keys import Keys

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NS = "bgai-join1"
VETH = "bgaij0"
HEAD = "10.232.0.1"
JOINED = "10.232.0.2"
HOST = "r1"
KEYS = Keys()

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("prometheus") is None,
    reason="needs root (a network namespace), nft and prometheus",
)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=60)


@dataclass
class Head:
    tmp: Path
    env: dict[str, str]  # the head's admin environment (bgai token ...)
    redis_port: int
    prom_port: int
    admin_password: str
    web_config: Path
    procs: list[subprocess.Popen[bytes]]

    def redis(self) -> redis.Redis:
        return redis.Redis(
            host=HEAD, port=self.redis_port, username="admin", password=self.admin_password, ssl=True,
            ssl_ca_certs=str(self.tmp / "tls" / "ca.crt"), socket_timeout=5,
        )  # fmt: skip

    def bgai(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN / "bgai", *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def query(self, promql: str) -> list[dict[str, object]]:
        """Prometheus's instant query result, over TLS with the admin's basic auth."""
        url = f"https://{HEAD}:{self.prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        auth = base64.b64encode(f"admin:{self.admin_password}".encode()).decode()
        req = urllib.request.Request(url, headers={"Authorization": f"Basic {auth}"})
        ctx = ssl.create_default_context(cafile=str(self.tmp / "tls" / "ca.crt"))
        with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
            return list(json.load(resp)["data"]["result"])


def _network() -> None:
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "link", "del", VETH, check=False)
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", VETH, "type", "veth", "peer", "name", "eth0", "netns", NS)
    sh("ip", "addr", "add", f"{HEAD}/24", "dev", VETH)
    sh("ip", "link", "set", VETH, "up")
    sh("ip", "-n", NS, "addr", "add", f"{JOINED}/24", "dev", "eth0")
    sh("ip", "-n", NS, "link", "set", "eth0", "up")
    sh("ip", "-n", NS, "link", "set", "lo", "up")
    wall_off(NS)


def _start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    tmp = tmp_path_factory.mktemp("joinhead")
    _network()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        tls = tmp / "tls"
        made = subprocess.run(
            [BIN / "bgai", "tls", "init", tls, "--san", f"IP:{HEAD},IP:127.0.0.1", "--server", "redis",
             "--server", "prometheus"], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        passwords = ensure_secrets(tmp / "secrets.env", tmp / "users.acl", KEYS, hosts=[])
        write_password_files(tmp / "secrets", passwords)
        redis_port, prom_port = free_port(), free_port()
        procs.append(_start([
            "redis-server", "--port", "0", "--tls-port", str(redis_port), "--bind", HEAD, "127.0.0.1",
            "--tls-cert-file", str(tls / "redis.crt"), "--tls-key-file", str(tls / "redis.key"),
            "--tls-ca-cert-file", str(tls / "ca.crt"), "--tls-auth-clients", "optional",
            "--aclfile", str(tmp / "users.acl"), "--dir", str(tmp), "--save", "",
        ], tmp / "redis.log"))  # fmt: skip
        # the head's own users and TLS in web.base.yml; web.yml is the coordinator's (+ joined hosts)
        web = tmp / "web.yml"
        base = webconfig.base_path(web)
        webconfig.write_new(
            base, str(tls / "prometheus.crt"), str(tls / "prometheus.key"), {"admin": passwords["admin"]}
        )
        shutil.copy(base, web)
        (tmp / "prometheus.yml").write_text("global: {scrape_interval: 5s}\n")
        procs.append(_start([
            "prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address={HEAD}:{prom_port}", f"--web.config.file={web}",
            "--web.enable-remote-write-receiver",
        ], tmp / "prometheus.log"))  # fmt: skip
        env = {
            **os.environ,
            "BGAI_CONFIG": str(REPO / "tests" / "fleet.yaml"),
            "BGAI_REDIS__HOST": HEAD,
            "BGAI_REDIS__PORT": str(redis_port),
            "BGAI_REDIS__TLS": "true",
            "BGAI_REDIS__CA_FILE": str(tls / "ca.crt"),
            "BGAI_REDIS__USERNAME": "admin",
            "BGAI_REDIS__PASSWORD_FILE": str(tmp / "secrets" / "admin"),
            "BGAI_HEAD__TARGETS_FILE": str(tmp / "targets" / "bgai.json"),
            "BGAI_HEAD__PROMETHEUS_WEB_CONFIG": str(web),
            "BGAI_TRAINING__CHECKPOINT_DIR": str(tmp / "checkpoints"),
            "BGAI_MLFLOW__TRACKING_URI": "",
            "BGAI_JAX__CACHE_DIR": str(REPO / "runs" / "cache" / "jax"),
        }
        h = Head(tmp, env, redis_port, prom_port, passwords["admin"], web, procs)
        wait_for("Redis over TLS", lambda: _answers(h), 30)
        for program, user in (("coordinator", "coordinator"), ("training-worker", "training")):
            own = {
                **env,
                "BGAI_REDIS__USERNAME": user,
                "BGAI_REDIS__PASSWORD_FILE": str(tmp / "secrets" / user),
            }
            argv = [str(BIN / "bgai"), program, "--worker-id", f"head:{program}"]
            procs.append(_start(argv, tmp / f"{program}.log", own))
        yield h
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        sh("ip", "netns", "del", NS, check=False)
        sh("ip", "link", "del", VETH, check=False)


def _answers(h: Head) -> bool:
    try:
        return bool(h.redis().ping())
    except redis.ConnectionError:
        return False


@dataclass
class Joined:
    home: Path
    token: str
    proc: subprocess.Popen[bytes]

    def ctl(self, *args: str) -> str:
        out = subprocess.run(
            [BIN / "supervisorctl", "-c", self.home / "supervisord.conf", *args],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return out.stdout

    def log(self, name: str) -> str:
        path = self.home / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def joined(head: Head, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Joined]:
    made = head.bgai("token", "create", "--host", HOST, "--address", HEAD, "--expires", "1d",
                     "--metrics-url", f"https://{HEAD}:{head.prom_port}/api/v1/write")  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert "bgai token revoke r1" in made.stderr
    assert f"user game@{HOST} on #" in (head.tmp / "users.acl").read_text()  # a Redis restart keeps it
    home = tmp_path_factory.mktemp("joinedhost") / "bgai"
    env = {
        **os.environ,
        "HOME": str(home.parent),
        "BGAI_JAX__CACHE_DIR": str(REPO / "runs" / "cache" / "jax"),
    }
    proc = _start(
        ["ip", "netns", "exec", NS, str(BIN / "bgai"), "join", token, "--home", str(home), "--foreground"],
        home.parent / "join.log",
        env,
    )
    j = Joined(home, token, proc)
    try:
        yield j
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=120)


def _record(head: Head, worker_id: str) -> dict[str, object] | None:
    raw = head.redis().get(KEYS.worker(worker_id))
    return None if raw is None else dict(json.loads(raw))


def test_the_joined_host_registers_plays_and_follows_the_model(head: Head, joined: Joined) -> None:
    wid = f"{HOST}:game:0"
    wait_for("the joined game worker's registry record", lambda: _record(head, wid) is not None, 240)
    rec = _record(head, wid)
    assert rec is not None and rec["metrics_port"] == 0  # no scrape target: its metrics are pushed
    r = head.redis()

    def pushed() -> bool:
        run = r.get(KEYS.run_id)
        if run is None:
            return False
        sources = r.hgetall(KEYS.buffer(run.decode()).sources)
        return any(k.decode().startswith(wid) for k in sources)

    wait_for("episodes from the joined host in the buffer", pushed, 300)
    first = int(_record(head, wid)["model_version"] or 0)  # type: ignore[index, call-overload]
    wait_for(
        "the joined worker to play a newer model version",
        lambda: int((_record(head, wid) or {}).get("model_version") or 0) > first,  # type: ignore[call-overload]
        300,
    )


def test_its_metrics_reach_the_heads_prometheus_labelled_like_scraped_workers(
    head: Head, joined: Joined
) -> None:
    def arrived() -> bool:
        return bool(head.query(f'bgai_model_version{{job="bgai",instance="{HOST}:9320",role="game"}}'))

    wait_for("the joined host's series at the head's Prometheus", arrived, 240, poll_s=2)
    series = head.query(f'{{job="bgai",instance="{HOST}:9320"}}')
    assert {s["metric"]["device"] for s in series} == {"cpu"}  # type: ignore[index]


def test_the_head_cannot_open_a_connection_to_the_joined_host(head: Head, joined: Joined) -> None:
    wait_for(
        "the joined worker's /metrics inside its namespace",
        lambda: "game-worker-0" in joined.ctl("status"),
        60,
    )
    for port in (9320, 22):
        with pytest.raises(OSError):
            socket.create_connection((JOINED, port), timeout=2).close()


def test_a_man_in_the_middle_certificate_and_plain_text_are_refused(
    head: Head, joined: Joined, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    made = subprocess.run(
        [BIN / "bgai", "tls", "init", other, "--san", f"IP:{HEAD}"], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    tok = decode(joined.token, 0)
    forged = replace(tok, redis=replace(tok.redis, ca=(other / "ca.crt").read_text())).encode()
    done = subprocess.run(
        [BIN / "bgai", "join", forged, "--home", str(tmp_path / "h"), "--no-start"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "failed TLS" in done.stderr, done.stderr
    plain = redis.Redis(host=HEAD, port=head.redis_port, socket_timeout=2, retry=None)
    with pytest.raises(redis.ConnectionError):
        plain.ping()


def test_a_revoked_token_stops_the_hosts_workers_and_metrics(head: Head, joined: Joined) -> None:
    wait_for("the joined worker running", lambda: _record(head, f"{HOST}:game:0") is not None, 240)
    assert HOST in (webconfig.read(head.web_config).get("basic_auth_users") or {})  # the coordinator's doing
    done = head.bgai("token", "revoke", HOST)
    assert done.returncode == 0, done.stderr
    wait_for("the joined game worker to exit", lambda: "EXITED" in joined.ctl("status", "game-worker:*"), 60)
    assert "refused by Redis" in joined.log("game-worker-0")
    assert f"game@{HOST}" not in (head.tmp / "users.acl").read_text()
    wait_for(
        "its metrics user gone from Prometheus's web config",
        lambda: HOST not in (webconfig.read(head.web_config).get("basic_auth_users") or {}),
        30,
    )
    listed = head.bgai("token", "list")
    assert HOST not in listed.stdout
