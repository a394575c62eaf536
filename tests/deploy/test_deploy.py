"""`ansible-playbook deploy.yml` for real: the head on this machine (local connection) and two
worker hosts, each a Debian rootfs with sshd in network namespaces of its own (hosts.py).

After the deployment: every host's `supervisorctl status` shows all its programs RUNNING; the
workers are registered in Redis; Prometheus scrapes them (and every host's node_exporter); the
model version advances; `supervisorctl restart` of a worker program brings it back and it
re-registers; nothing secret is exposed (Redis speaks only TLS with client certificates, MLflow
wants its password, no program has a password in its environment, /metrics listens on the fleet
address only); a second run changes nothing, and so does a `--check --diff` run.

The worker hosts have no route to the internet: Python packages come from a wheelhouse this
test downloads on the controller and serves over HTTP on the bridge (bgai_pip_env), which is
how an offline fleet would be deployed too. Needs root (namespaces, bridge, debootstrap).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import yaml
from deploy_cache import REPO, wheelhouse
from hosts import HEAD_ADDRESS, Host, Hosts
from redis_server import free_port
from supervised import wait_for

from bgai.store.acl import ROLES, env_name
from bgai.store.keys import Keys
from bgai.store.runstate import set_status

BIN = Path(sys.executable).parent
KEYS = Keys()
WORKERS = {"w1": {"bgai_game_workers": 1, "bgai_eval_workers": 1}, "w2": {"bgai_game_workers": 1}}
HEAD = "bgai-head"  # the head's inventory name
RECAP = {"localhost", HEAD, *WORKERS}  # localhost: the controller builds bgai's wheel
EXPECTED = {
    HEAD: {
        "redis",
        "mlflow",
        "prometheus",
        "alertmanager",
        "node-exporter",
        "coordinator",
        "training-worker",
    },
    "w1": {"node-exporter", "game-worker-0", "eval-worker-0"},
    "w2": {"node-exporter", "game-worker-0"},
}

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("debootstrap") is None,
    reason="needs root and debootstrap (network namespaces, a bridge, a rootfs)",
)


@dataclass
class Deployed:
    tmp: Path
    inventory: Path
    env: dict[str, str]
    key: Path
    ports: dict[str, int]
    hosts: Hosts
    first: subprocess.CompletedProcess[str]

    def playbook(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN / "ansible-playbook", "-i", self.inventory, "deploy.yml", *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip

    def ssh(self, host: str, command: str) -> str:
        address = next(h.address for h in self.hosts.hosts if h.name == host)
        out = subprocess.run(
            ["ssh", "-i", self.key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "LogLevel=ERROR", f"root@{address}", command],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return out.stdout

    def supervisorctl(self, host: str, *args: str) -> str:
        home = self.tmp / "head" if host == HEAD else Path("/opt/bgai")
        cmd = [f"{home}/supervisor-venv/bin/supervisorctl", "-c", f"{home}/supervisord.conf", *args]
        if host == HEAD:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
        return self.ssh(host, " ".join(cmd))

    def status(self, host: str) -> dict[str, str]:
        """process name -> state."""
        lines = self.supervisorctl(host, "status").splitlines()
        return {ln.split()[0].split(":")[-1]: ln.split()[1] for ln in lines if len(ln.split()) > 1}

    def redis(self, **tls: str | None) -> redis.Redis:
        """An admin client over TLS (the fleet CA's, with the head's client certificate)."""
        certs = self.tmp / "tls"
        options = {
            "ssl_ca_certs": str(certs / "ca.crt"),
            "ssl_certfile": str(certs / "clients" / f"{HEAD}.crt"),
            "ssl_keyfile": str(certs / "clients" / f"{HEAD}.key"),
            **tls,
        }
        return redis.Redis(
            host=HEAD_ADDRESS, port=self.ports["redis"], username="admin",
            password=self.env[env_name("admin")], socket_timeout=5, ssl=True, ssl_check_hostname=True,
            **options,  # type: ignore[arg-type]
        )  # fmt: skip

    def prometheus(self, path: str) -> dict:  # type: ignore[type-arg]
        url = f"http://{HEAD_ADDRESS}:{self.ports['prometheus']}{path}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())


def wid(*parts: str | int) -> str:
    """A worker id (supervisord's program: host, role, process number)."""
    return ":".join(map(str, parts))


def recap(out: str) -> dict[str, dict[str, int]]:
    """host -> {ok, changed, failed, ...} from ansible-playbook's PLAY RECAP."""
    found = {}
    for m in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", out, re.M):
        found[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return found


def changed_tasks(out: str) -> list[str]:
    """The tasks a run reported changed (for the failure message)."""
    task, hits = "", []
    for line in out.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line
        elif line.startswith("changed:"):
            hits.append(f"{task} {line}")
    return hits


# Debian 12's Python is 3.11.2: what its pip asks for beyond what this venv's Python needed
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
        wheels = wheelhouse()  # (made in the background by scripts/test, if it ran)
        wheel_port = free_port()
        server = subprocess.Popen(
            [BIN / "python", "-m", "http.server", "--bind", HEAD_ADDRESS, "-d", wheels, str(wheel_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        ports = {k: free_port() for k in ("redis", "mlflow", "prometheus", "node", "alertmanager")}
        inventory = tmp / "inventory.yml"
        inventory.write_text(
            yaml.safe_dump(make_inventory(tmp, key, {h.name: h for h in hosts.hosts}, ports, wheel_port))
        )
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
        env["ANSIBLE_LOG_PATH"] = str(tmp / "ansible.log")  # timestamped, every run
        env.update({env_name(role): secrets.token_urlsafe(24) for role in ROLES})
        env["MLFLOW_TRACKING_PASSWORD"] = secrets.token_urlsafe(24)  # the MLflow server's basic auth
        d = Deployed(tmp, inventory, env, key, ports, hosts, subprocess.CompletedProcess([], 0))
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


def make_inventory(
    tmp: Path, key: Path, hosts: dict[str, Host], ports: dict[str, int], wheel_port: int
) -> dict:  # type: ignore[type-arg]
    ssh = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    workers = {
        name: {
            "ansible_host": h.address,
            "bgai_address": h.address,
            "bgai_accelerator": "cpu",
            **WORKERS[name],
        }
        for name, h in hosts.items()
    }
    return {
        "all": {
            "vars": {
                "bgai_become": False,
                "bgai_apt_cache_valid_time": 10 * 365 * 86400,  # the hosts have no route to apt
                "bgai_pip_env": {
                    "PIP_NO_INDEX": "1",
                    "PIP_FIND_LINKS": f"http://{HEAD_ADDRESS}:{wheel_port}/",
                    "PIP_TRUSTED_HOST": HEAD_ADDRESS,
                },
                "bgai_config_src": str(REPO / "tests" / "fleet.yaml"),
                "bgai_redis_tls": True,  # (the default, said out loud: this test is of TLS)
                "bgai_tls_dir": str(tmp / "tls"),
                "bgai_redis_port": ports["redis"],
                "bgai_mlflow_port": ports["mlflow"],
                "bgai_prometheus_port": ports["prometheus"],
                "bgai_node_exporter_port": ports["node"],
                "bgai_alertmanager_port": ports["alertmanager"],
                # /metrics on any free port: a restarted worker is told from its old process by its
                # new port (test_restarted_worker_comes_back_and_reregisters)
                "bgai_metrics_ports": {"coordinator": 0, "training": 0, "game": 0, "eval": 0},
                "grafana_install": False,  # not installable here: the provisioning files are tested
                "grafana_provisioning_dir": str(tmp / "grafana" / "provisioning"),
                "grafana_dashboards_dir": str(tmp / "grafana" / "dashboards"),
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": ssh,
            },
            "children": {
                "head": {
                    "hosts": {
                        HEAD: {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": "/usr/bin/python3",
                            "bgai_address": HEAD_ADDRESS,
                            "bgai_home": str(tmp / "head"),
                        }
                    }
                },
                "workers": {"hosts": workers},
            },
        }
    }


def test_deploy_brings_up_every_program(deployed: Deployed) -> None:
    d = deployed
    assert d.first.returncode == 0, d.first.stdout[-6000:] + d.first.stderr[-2000:]
    assert set(recap(d.first.stdout)) == RECAP
    for host, programs in EXPECTED.items():
        assert d.status(host) == dict.fromkeys(programs, "RUNNING"), (host, d.supervisorctl(host, "status"))
    # the provisioning files (Grafana itself is not installable here)
    prov = d.tmp / "grafana" / "provisioning"
    assert "uid: bgai-prometheus" in (prov / "datasources" / "bgai.yaml").read_text()
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
    """Redis speaks only TLS and wants a client certificate of the fleet's CA; MLflow answers
    nobody without the password, and the fleet's programs log in; no program on any host has a
    password in its environment (supervisord's, which Redis, MLflow and Prometheus inherit too);
    /metrics listens on the host's fleet address only."""
    d = deployed
    r = d.redis()
    wait_for("the fleet's run", lambda: r.get(KEYS.run_id) is not None, 240)
    run_id = r.get(KEYS.run_id).decode()
    plain = redis.Redis(host=HEAD_ADDRESS, port=d.ports["redis"], socket_timeout=3, retry=None)
    no_cert = d.redis(ssl_certfile=None, ssl_keyfile=None)
    with pytest.raises(redis.ConnectionError):
        plain.ping()  # no TLS: no answer at all, so no AUTH in clear
    with pytest.raises(redis.ConnectionError):
        no_cert.ping()  # TLS without a client certificate
    plain.close()
    no_cert.close()
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
    passwords = [d.env[env_name(role)] for role in ROLES] + [d.env["MLFLOW_TRACKING_PASSWORD"]]
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


def test_second_run_and_check_mode_change_nothing(deployed: Deployed) -> None:
    d = deployed
    # Pause the run first: idle workers leave the 2 CPUs to Ansible (nothing here needs training)
    r = d.redis()
    set_status(r, KEYS, "paused")
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
    set_status(r, KEYS, "running")
