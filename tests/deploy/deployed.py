"""What tests/deploy/test_deploy.py works with: the deployed fleet (`Deployed`: its inventory,
ports, hosts, and the ways in: Ansible, ssh, supervisorctl, Redis and Prometheus over TLS), the
inventory it deploys, and the host joined by token from behind a firewall (`Joined`, run inside
the host's namespaces with nsenter: its firewall lets no ssh in)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import redis
from deploy_cache import REPO
from hosts import HEAD_ADDRESS, Host, Hosts

from bgai.obs import webconfig
from bgai.store.acl import env_name
from bgai.store.keys import Keys

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
JOINED = "r1"  # a worker host the head cannot reach, joined by token (not in the inventory)
UNUSED = "r2"  # a host whose token is made and never used: its users must outlive a redeploy


@dataclass
class Deployed:
    tmp: Path
    inventory: Path
    env: dict[str, str]
    key: Path
    ports: dict[str, int]
    hosts: Hosts
    wheel_port: int
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

    def redis(self, **changes: str | None) -> redis.Redis:
        """An admin client over TLS (the fleet CA's, with the head's client certificate), with
        `changes` to its TLS files or password."""
        certs = self.tmp / "tls"
        options = {
            "ssl_ca_certs": str(certs / "ca.crt"),
            "ssl_certfile": str(certs / "clients" / f"{HEAD}.crt"),
            "ssl_keyfile": str(certs / "clients" / f"{HEAD}.key"),
            "password": self.env[env_name("admin")],
            **changes,
        }
        return redis.Redis(
            host=HEAD_ADDRESS, port=self.ports["redis"], username="admin", socket_timeout=5, ssl=True,
            ssl_check_hostname=True, **options,  # type: ignore[arg-type]
        )  # fmt: skip

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts.hosts if h.name == name)

    def prometheus(self, path: str) -> dict:  # type: ignore[type-arg]
        """Prometheus's API over TLS (the fleet CA's certificate), as its admin (basic auth)."""
        url = f"https://{HEAD_ADDRESS}:{self.ports['prometheus']}{path}"
        login = base64.b64encode(f"admin:{self.env['BGAI_SECRET_PROMETHEUS']}".encode()).decode()
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {login}"})
        tls = ssl.create_default_context(cafile=str(self.tmp / "tls" / "ca.crt"))
        with urllib.request.urlopen(request, context=tls, timeout=5) as resp:
            return json.loads(resp.read())

    def query(self, promql: str) -> list[dict]:  # type: ignore[type-arg]
        return list(
            self.prometheus("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))["data"]["result"]
        )

    def bgai(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`bgai ARGS` on the head as its operator: the deployed fleet config, Redis's admin over TLS."""
        certs = self.tmp / "tls"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BGAI_", "MLFLOW_"))}
        env |= {
            "BGAI_CONFIG": str(self.tmp / "head" / "etc" / "bgai.yaml"),
            "BGAI_REDIS__HOST": HEAD_ADDRESS,
            "BGAI_REDIS__PORT": str(self.ports["redis"]),
            "BGAI_REDIS__TLS": "true",
            "BGAI_REDIS__CA_FILE": str(certs / "ca.crt"),
            "BGAI_REDIS__CERT_FILE": str(certs / "clients" / f"{HEAD}.crt"),
            "BGAI_REDIS__KEY_FILE": str(certs / "clients" / f"{HEAD}.key"),
            "BGAI_REDIS__USERNAME": "admin",
            "BGAI_REDIS__PASSWORD": self.env[env_name("admin")],
        }
        return subprocess.run([BIN / "bgai", *args], env=env, capture_output=True, text=True, timeout=120)

    @property
    def acl_file(self) -> Path:
        return self.tmp / "head" / "redis" / "users.acl"

    def web_users(self) -> set[str]:
        """The basic-auth users of Prometheus's web config (the coordinator's web.yml)."""
        return set(webconfig.read(self.tmp / "head" / "prometheus" / "web.yml").get("basic_auth_users") or {})


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
                "bgai_remote_workers": True,  # hosts outside the fleet's network join by token
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


@dataclass
class Joined:
    """scripts/join running inside the joined host (its namespaces, its root), as root there."""

    host: Host
    token: str
    proc: subprocess.Popen[bytes]
    log: Path  # scripts/join's output: pip, `bgai join`, then supervisord's

    def running(self) -> bool:
        """True while scripts/join (then supervisord) runs; an AssertionError with its log if not."""
        assert self.proc.poll() is None, self.log.read_text(errors="replace")[-4000:]
        return True

    def worker_log(self) -> str:
        path = self.host.root / "root" / "bgai" / "log" / "game-worker-0.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """supervisord stops its programs on TERM (the namespace goes at hosts.close() anyway)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=150)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


def ns_init(host: Host) -> int:
    """The pid (here) of the host's sshd, the first process of its namespaces (the child of
    hosts.py's `unshare`), once it runs in the host's root (0 before)."""
    assert host.proc is not None
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == host.proc.pid and os.readlink(proc / "root") == str(host.root):
                # (sshd retitles itself: "sshd: /usr/sbin/sshd -D -e [listener] ...")
                assert b"/usr/sbin/sshd" in (proc / "cmdline").read_bytes(), f"{host.name}: no sshd"
                return int(proc.name)
        except (OSError, IndexError, ValueError):
            continue
    return 0


def in_ns(host: Host, *, files: bool = True) -> list[str]:
    """The nsenter prefix that runs a command in the host: its network, UTS and PID namespaces
    and, with `files`, its mounts, root and working directory (its own files and programs)."""
    pid = ns_init(host)
    assert pid, f"{host.name}: no sshd"
    return ["nsenter", "-t", str(pid), "-n", "-u", "-p", *(["-m", "-r", "-w"] if files else [])]
