"""`ansible-playbook deploy.yml` for real: the head on this machine (local connection) and two
worker hosts, each a Debian rootfs with sshd in network namespaces of its own (hosts.py), with
remote workers on (`bgai_remote_workers`: hosts outside the fleet's network join by token).

After the deployment: every host's `supervisorctl status` shows all its programs RUNNING; the
workers are registered in Redis; Prometheus scrapes them (and every host's node_exporter); the
model version advances; `supervisorctl restart` of a worker program brings it back and it
re-registers; nothing secret is exposed (Redis speaks only TLS and answers nothing without a
password, MLflow and Prometheus want theirs, no program has a password in its environment,
/metrics listens on the fleet address only); a third host the head cannot reach (`r1`, not in
the inventory, its firewall dropping every connection opened towards it) joins with a token
from `bgai token create` and `scripts/join`, plays, follows the model and has its metrics at the
head's Prometheus, and `bgai token revoke` stops it; a second run changes nothing (a joined host's
Redis users and Prometheus user stay), and so does a `--check --diff` run.

The worker hosts have no route to the internet: Python packages come from a wheelhouse this
test downloads on the controller and serves over HTTP on the bridge (bgai_pip_env), which is
how an offline fleet would be deployed too. Needs root (namespaces, bridge, debootstrap).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import yaml
from deploy_cache import REPO, wheelhouse
from deployed import (
    BIN,
    EXPECTED,
    HEAD,
    JOINED,
    KEYS,
    RECAP,
    UNUSED,
    WORKERS,
    Deployed,
    Joined,
    changed_tasks,
    in_ns,
    make_inventory,
    ns_init,
    recap,
    wid,
)
from firewall import wall_off
from hosts import HEAD_ADDRESS, Hosts
from redis_server import free_port
from supervised import wait_for

from bgai.join.token import decode
from bgai.store.acl import ROLES, env_name
from bgai.store.runstate import set_status

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("debootstrap") is None,
    reason="needs root and debootstrap (network namespaces, a bridge, a rootfs)",
)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    tmp = tmp_path_factory.mktemp("deploy")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    hosts = Hosts(tmp / "hosts", (tmp / "id_ed25519.pub").read_text())
    (tmp / "hosts").mkdir()
    server = None
    try:
        hosts.open()
        for name in WORKERS:
            hosts.add(name)
        hosts.wait_ssh()
        # the joined host: its firewall up before anything is put on it (the head cannot ssh in)
        joined = hosts.add(JOINED)
        wall_off(joined.netns)
        wheels = wheelhouse()  # (made in the background by scripts/test, if it ran)
        wheel_port = free_port()
        server = subprocess.Popen(
            [BIN / "python", "-m", "http.server", "--bind", HEAD_ADDRESS, "-d", wheels, str(wheel_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        ports = {k: free_port() for k in ("redis", "mlflow", "prometheus", "node", "alertmanager")}
        inventory = tmp / "inventory.yml"
        workers = {h.name: h for h in hosts.hosts if h.name in WORKERS}
        inventory.write_text(yaml.safe_dump(make_inventory(tmp, key, workers, ports, wheel_port)))
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
        env["ANSIBLE_LOG_PATH"] = str(tmp / "ansible.log")  # timestamped, every run
        env.update({env_name(role): secrets.token_urlsafe(24) for role in ROLES})
        env["MLFLOW_TRACKING_PASSWORD"] = secrets.token_urlsafe(24)  # the MLflow server's basic auth
        env["BGAI_SECRET_PROMETHEUS"] = secrets.token_urlsafe(24)  # Prometheus's admin (basic auth)
        d = Deployed(tmp, inventory, env, key, ports, hosts, wheel_port, subprocess.CompletedProcess([], 0))
        d.first = d.playbook()
        (tmp / "first-run.log").write_text(d.first.stdout + d.first.stderr)
        yield d
    finally:
        if server is not None:
            server.kill()
            server.wait()
        ctl = tmp / "head" / "supervisor-venv" / "bin" / "supervisorctl"
        if ctl.exists():
            subprocess.run([ctl, "-c", tmp / "head" / "supervisord.conf", "shutdown"], capture_output=True)
        hosts.close()


def test_deploy_brings_up_every_program(deployed: Deployed) -> None:
    d = deployed
    assert d.first.returncode == 0, d.first.stdout[-6000:] + d.first.stderr[-2000:]
    assert set(recap(d.first.stdout)) == RECAP
    for host, programs in EXPECTED.items():
        assert d.status(host) == dict.fromkeys(programs, "RUNNING"), (host, d.supervisorctl(host, "status"))
    # the provisioning files (Grafana itself is not installable here)
    prov = d.tmp / "grafana" / "provisioning"
    datasource_file = prov / "datasources" / "bgai.yaml"
    assert "uid: bgai-prometheus" in datasource_file.read_text()
    # Prometheus speaks TLS and wants its admin (remote workers): the datasource has both, 0640
    (datasource,) = yaml.safe_load(datasource_file.read_text())["datasources"]
    assert datasource["basicAuth"] is True and datasource["basicAuthUser"] == "admin"
    assert datasource["jsonData"] == {"timeInterval": "5s", "tlsAuthWithCACert": True}
    assert datasource["secureJsonData"] == {
        "basicAuthPassword": d.env["BGAI_SECRET_PROMETHEUS"],
        "tlsCACert": (d.tmp / "tls" / "ca.crt").read_text().strip(),
    }
    assert datasource_file.stat().st_mode & 0o777 == 0o640
    assert str(d.tmp / "grafana" / "dashboards") in (prov / "dashboards" / "bgai.yaml").read_text()
    assert {p.name for p in (d.tmp / "grafana" / "dashboards").iterdir()} == {"cluster.json", "training.json"}


def test_workers_register_are_scraped_and_training_advances(deployed: Deployed) -> None:
    d = deployed
    r = d.redis()
    head = socket.gethostname()  # supervisord's %(host_node_name)s
    want = {
        wid("w1", "game", 0),
        wid("w1", "eval", 0),
        wid("w2", "game", 0),
        wid(head, "coordinator"),
        wid(head, "training"),
    }
    ids = lambda: {k.decode().split(":", 2)[2] for k in r.scan_iter(KEYS.worker("*"))} - {"index"}  # noqa: E731
    wait_for(f"{want} registered", lambda: ids() >= want, 240)
    records = {i: json.loads(r.get(KEYS.worker(i))) for i in want}
    assert records[wid("w1", "game", 0)]["metrics_host"] == "10.231.0.11"

    def up() -> set[str]:
        targets = d.prometheus("/api/v1/targets")["data"]["activeTargets"]
        return {t["labels"]["instance"] for t in targets if t["health"] == "up"}

    scraped = {f"{rec['metrics_host']}:{rec['metrics_port']}" for rec in records.values()}
    nodes = {f"{a}:{d.ports['node']}" for a in (HEAD_ADDRESS, "10.231.0.11", "10.231.0.12")}
    wait_for("Prometheus scraping every worker and node_exporter", lambda: up() >= scraped | nodes, 120)
    groups = d.prometheus("/api/v1/rules")["data"]["groups"]
    assert "bgai" in {g["name"] for g in groups}, groups  # the alerting rules, installed and loaded
    # ... and what fires goes to the head's Alertmanager: the Watchdog arrives there
    am = f"{HEAD_ADDRESS}:{d.ports['alertmanager']}"

    def watchdog_at_alertmanager() -> bool:
        active = d.prometheus("/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        if am not in {a["url"].split("/")[2] for a in active}:
            return False
        with urllib.request.urlopen(f"http://{am}/api/v2/alerts", timeout=5) as resp:
            return any(a["labels"]["alertname"] == "Watchdog" for a in json.load(resp))

    wait_for("the Watchdog at the head's Alertmanager", watchdog_at_alertmanager, 120)
    # the coordinator expects the inventory's worker counts (BgaiFewerWorkers compares them)
    want = {
        t: sum(int(w.get(f"bgai_{t}_workers", d)) for w in WORKERS.values())
        for t, d in (("game", 1), ("eval", 0))
    }

    def expected() -> dict[str, int]:
        q = urllib.parse.quote('max by (worker_type) (bgai_expected_workers{role="coordinator"})')
        found = d.prometheus(f"/api/v1/query?query={q}")["data"]["result"]
        return {s["metric"]["worker_type"]: int(float(s["value"][1])) for s in found}

    wait_for(f"the coordinator to expect {want}", lambda: expected() == want, 120)

    version = lambda: int(r.get(KEYS.model_version) or -1)  # noqa: E731
    wait_for("the model version to advance past 2", lambda: version() >= 2, 300)


def test_restarted_worker_comes_back_and_reregisters(deployed: Deployed) -> None:
    d = deployed
    r = d.redis()
    key = KEYS.worker(wid("w2", "game", 0))
    wait_for("w2:game:0 registered", lambda: r.get(key) is not None, 240)
    before = json.loads(r.get(key))
    out = d.supervisorctl("w2", "restart", "game-worker:game-worker-0")
    assert "started" in out, out

    def new_record() -> bool:
        raw = r.get(key)
        return raw is not None and json.loads(raw)["metrics_port"] != before["metrics_port"]

    wait_for("w2:game:0 registered again by its new process", new_record, 120)
    assert d.status("w2")["game-worker-0"] == "RUNNING"


def test_no_secret_crosses_the_network_or_sits_in_an_environment(deployed: Deployed) -> None:
    """Redis speaks only TLS and answers nothing without a password (a client certificate is
    optional: hosts joined by token have none); MLflow and Prometheus answer nobody without
    theirs, and the fleet's programs log in; no program on any host has a password in its
    environment (supervisord's, which Redis, MLflow and Prometheus inherit too); /metrics listens
    on the host's fleet address only."""
    d = deployed
    r = d.redis()
    wait_for("the fleet's run", lambda: r.get(KEYS.run_id) is not None, 240)
    run_id = r.get(KEYS.run_id).decode()
    plain = redis.Redis(host=HEAD_ADDRESS, port=d.ports["redis"], socket_timeout=3, retry=None)
    anonymous = redis.Redis(
        host=HEAD_ADDRESS, port=d.ports["redis"], socket_timeout=3, retry=None, ssl=True,
        ssl_ca_certs=str(d.tmp / "tls" / "ca.crt"), ssl_check_hostname=True,
    )  # fmt: skip
    with pytest.raises(redis.ConnectionError) as refused_plain:
        plain.ping()  # no TLS: no answer at all, so no AUTH in clear
    assert not isinstance(refused_plain.value, redis.AuthenticationError), refused_plain.value
    # TLS without a client certificate (as a host joined by token connects): accepted, but
    # nothing is answered without a password (Redis's NOAUTH to the client's first command,
    # redis-py's HELLO), or with a wrong one
    with pytest.raises(
        redis.AuthenticationError, match="must be called with the client already authenticated"
    ):
        anonymous.ping()
    with pytest.raises(redis.AuthenticationError):
        d.redis(ssl_certfile=None, ssl_keyfile=None, password="not-the-password-0123456").ping()
    assert d.redis(ssl_certfile=None, ssl_keyfile=None).ping()  # the password is what lets one in
    plain.close()
    anonymous.close()
    # Prometheus: TLS only (remote writes), nothing answered without its admin's (or a joined
    # host's) login; plain HTTP is told to use HTTPS
    prom = f"{HEAD_ADDRESS}:{d.ports['prometheus']}/api/v1/query?query=up"
    tls = ssl.create_default_context(cafile=str(d.tmp / "tls" / "ca.crt"))
    for url, context, code in ((f"https://{prom}", tls, 401), (f"http://{prom}", None, 400)):
        with pytest.raises(urllib.error.HTTPError) as refused_http:
            urllib.request.urlopen(url, context=context, timeout=10)
        assert refused_http.value.code == code, url
        refused_http.value.close()
    # MLflow: the coordinator (logged in with the vault's password) made the run; nobody else reads it
    mlflow = f"http://{HEAD_ADDRESS}:{d.ports['mlflow']}/api/2.0/mlflow/runs/get?run_id={run_id}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(mlflow, timeout=10)
    assert refused.value.code == 401
    refused.value.close()  # (the refusal holds the response's socket)
    login = base64.b64encode(f"bgai:{d.env['MLFLOW_TRACKING_PASSWORD']}".encode()).decode()
    request = urllib.request.Request(mlflow, headers={"Authorization": f"Basic {login}"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert json.loads(resp.read())["run"]["info"]["run_id"] == run_id
    # no password in any program's environment, on the head or on a worker host
    passwords = [d.env[env_name(role)] for role in ROLES]
    passwords += [d.env["MLFLOW_TRACKING_PASSWORD"], d.env["BGAI_SECRET_PROMETHEUS"]]
    for host, programs in EXPECTED.items():
        for program in programs:
            name = next(n for n in d.supervisorctl(host, "status").split() if n.endswith(program))
            pid = int(d.supervisorctl(host, "pid", name).strip())
            if host == HEAD:
                environ = Path(f"/proc/{pid}/environ").read_text(errors="replace")
            else:
                environ = d.ssh(host, f"cat /proc/{pid}/environ")
            assert environ, (host, program)
            assert not [p for p in passwords if p in environ], (
                f"{host} {program}: a password in its environment"
            )
            assert "BGAI_SECRET_" not in environ, (host, program)
    # /metrics on w1 answers at the fleet address, not on the host's loopback
    record = json.loads(r.get(KEYS.worker(wid("w1", "game", 0))))
    probe = (
        "import socket,sys\n"
        "for a in sys.argv[1:]:\n"
        "    s=socket.socket(); s.settimeout(3)\n"
        f"    print(a, s.connect_ex((a, {record['metrics_port']})) == 0)\n"
    )
    answers = d.ssh("w1", f"python3 -c {shlex.quote(probe)} 10.231.0.11 127.0.0.1").split()
    assert answers == ["10.231.0.11", "True", "127.0.0.1", "False"], answers


@pytest.fixture(scope="module")
def joined(deployed: Deployed) -> Iterator[Joined]:
    """A token made on the head for r1, then scripts/join run inside r1 (not over ssh: its
    firewall drops every connection opened towards it) in a clean environment, in the
    foreground: the wheel deploy.yml built, the checkout's constraints, the wheelhouse on the
    bridge."""
    d = deployed
    write_url = f"https://{HEAD_ADDRESS}:{d.ports['prometheus']}/api/v1/write"
    made = d.bgai("token", "create", "--host", JOINED, "--address", HEAD_ADDRESS, "--expires", "1d",
                  "--metrics-url", write_url)  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    host = d.host(JOINED)
    src = host.root / "root" / "src"
    (src / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "join", src / "scripts" / "join")
    shutil.copy(REPO / "constraints.txt", src / "constraints.txt")
    (wheel,) = (REPO / "build" / "dist").glob("bgai-*.whl")  # (deploy.yml's first play keeps one)
    shutil.copy(wheel, src / wheel.name)
    env = {
        "HOME": "/root",
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"http://{HEAD_ADDRESS}:{d.wheel_port}/",
        "PIP_TRUSTED_HOST": HEAD_ADDRESS,
        "BGAI_PACKAGE": f"/root/src/{wheel.name}",
    }
    wait_for(f"{JOINED}'s sshd (its namespaces' first process)", lambda: ns_init(host) > 0, 30)
    log = d.tmp / f"join-{JOINED}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*in_ns(host), "sh", "/root/src/scripts/join", token, "--foreground"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    j = Joined(host, token, proc, log)
    try:
        yield j
    finally:
        j.stop()


def test_a_host_behind_a_firewall_joins_by_token_plays_and_follows_the_model(
    deployed: Deployed, joined: Joined
) -> None:
    d = deployed
    assert f"user game@{JOINED} " in d.acl_file.read_text()  # Redis's ACL file: a restart keeps it
    r = d.redis()
    worker = wid(JOINED, "game", 0)

    def record() -> dict:  # type: ignore[type-arg]
        raw = r.get(KEYS.worker(worker))
        return {} if raw is None else dict(json.loads(raw))

    waited = wait_for(f"{worker} registered", lambda: joined.running() and bool(record()), 600)
    print(f"{worker} registered {waited:.0f} s after scripts/join started (pip install included)")
    assert record()["metrics_port"] == 0  # no scrape target: its metrics are pushed

    def pushed() -> bool:
        run = r.get(KEYS.run_id)
        sources = r.hgetall(KEYS.buffer(run.decode()).sources) if run else {}
        return any(k.decode().startswith(worker) for k in sources)

    wait_for(f"episodes from {worker} in the buffer", lambda: joined.running() and pushed(), 300)
    first = int(record().get("model_version") or 0)
    wait_for(
        f"{worker} to play a newer model version than {first}",
        lambda: int(record().get("model_version") or 0) > first,
        300,
    )


def test_its_metrics_reach_the_heads_prometheus(deployed: Deployed, joined: Joined) -> None:
    """Its Prometheus agent remote-writes over TLS as the host's own user (which the coordinator
    put into Prometheus's web config); the head's Prometheus, queried over TLS as its admin,
    labels the series as those of a worker it scrapes."""
    d = deployed
    assert JOINED in d.web_users()
    promql = f'bgai_model_version{{job="bgai",instance="{JOINED}:9320",role="game"}}'
    wait_for(
        f"{JOINED}'s series at the head's Prometheus",
        lambda: joined.running() and bool(d.query(promql)),
        240,
        poll_s=2,
    )


def test_the_head_cannot_reach_it_and_a_forged_ca_is_refused(
    deployed: Deployed, joined: Joined, tmp_path: Path
) -> None:
    host = joined.host
    # inside r1, its sshd answers at r1's address and its game worker's /metrics on loopback ...
    probe = (
        "import socket,sys\n"
        "for a, p in ((sys.argv[1], 22), ('127.0.0.1', 9320)):\n"
        "    socket.create_connection((a, p), timeout=2).close()\n"
    )
    inside = subprocess.run(
        [*in_ns(host, files=False), sys.executable, "-c", probe, host.address],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert inside.returncode == 0, inside.stderr
    # ... but the head cannot open a connection to it
    for port in (22, 9320):
        with pytest.raises(OSError):
            socket.create_connection((host.address, port), timeout=2).close()
    # a man in the middle: a token whose CA is another's refuses the head's certificate
    other = tmp_path / "other"
    made = subprocess.run(
        [REPO / "scripts" / "tls-certs", other, "--server", "redis", "--san", f"IP:{HEAD_ADDRESS}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    tok = decode(joined.token, 0)
    forged = replace(tok, redis=replace(tok.redis, ca=(other / "ca.crt").read_text())).encode()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGAI_")}
    done = subprocess.run(
        [BIN / "bgai", "join", forged, "--home", tmp_path / "h", "--no-start"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "failed TLS" in done.stderr, done.stderr


def test_a_revoked_token_stops_the_hosts_workers_and_metrics_user(deployed: Deployed, joined: Joined) -> None:
    d = deployed
    assert JOINED in d.web_users()
    done = d.bgai("token", "revoke", JOINED)
    assert done.returncode == 0, done.stderr
    wait_for(
        f"{JOINED}'s game worker refused by Redis", lambda: "refused by Redis" in joined.worker_log(), 60
    )
    assert f"game@{JOINED}" not in d.acl_file.read_text()
    wait_for(
        f"{JOINED}'s metrics user gone from Prometheus's web config",
        lambda: JOINED not in d.web_users(),
        30,
    )
    listed = d.bgai("token", "list")
    assert listed.returncode == 0 and JOINED not in listed.stdout, listed.stdout + listed.stderr
    joined.stop()


def test_second_run_and_check_mode_change_nothing(deployed: Deployed) -> None:
    """... and a host joined by token keeps its Redis users (Redis's own, in its ACL file) and
    its Prometheus user (in the coordinator's web.yml) through both."""
    d = deployed
    write_url = f"https://{HEAD_ADDRESS}:{d.ports['prometheus']}/api/v1/write"
    made = d.bgai("token", "create", "--host", UNUSED, "--address", HEAD_ADDRESS, "--metrics-url", write_url)
    assert made.returncode == 0, made.stderr
    wait_for(f"{UNUSED}'s metrics user in Prometheus's web config", lambda: UNUSED in d.web_users(), 30)
    users = d.acl_file.read_text()
    assert f"user game@{UNUSED} " in users
    # Pause the run first: idle workers leave the 2 CPUs to Ansible (nothing here needs training)
    r = d.redis()
    set_status(r, KEYS, "paused")
    try:
        again = d.playbook()
        assert again.returncode == 0, again.stdout[-6000:]
        changed = {h: c["changed"] for h, c in recap(again.stdout).items()}
        assert changed == dict.fromkeys(RECAP, 0), changed_tasks(again.stdout)
        check = d.playbook("--check", "--diff")
        assert check.returncode == 0, check.stdout[-6000:]
        changed = {h: c["changed"] for h, c in recap(check.stdout).items()}
        assert changed == dict.fromkeys(RECAP, 0), changed_tasks(check.stdout)
        for host, programs in EXPECTED.items():
            assert d.status(host) == dict.fromkeys(programs, "RUNNING"), host
        assert d.acl_file.read_text() == users
        assert r.acl_getuser(f"game@{UNUSED}") and UNUSED in d.web_users()
    finally:
        set_status(r, KEYS, "running")
