"""The files a joined worker host runs from, written by `bgai join` under its home (~/bgai):

    etc/bgai.yaml            the fleet's config (from the token), Redis over TLS to the head
    etc/ca.crt               the CA that signed the head's certificates (Redis, Prometheus)
    etc/secrets/{game,eval}  this host's Redis passwords, one per role (0600)
    etc/secrets/metrics      its Prometheus remote-write password (0600)
    prometheus-agent.yml     Prometheus in agent mode: scrapes the workers here, writes home
    supervisord.conf         the workers and the agent under a supervisord of the host's own
    log/ spool/ agent/       logs, episodes waiting for Redis, the agent's write-ahead log

Each worker serves /metrics on loopback only, on a fixed port (bgai.obs.ports: a base port plus
the process number), and registers no scrape target (`--metrics-pushed`): the head cannot reach
this host, so the agent scrapes the workers and remote-writes their series to the head's
Prometheus over TLS with basic auth, labelled as the head labels the workers it scrapes
(job `bgai`, `role`, `device`; `instance` = `<host>:<port>`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bgai.join.token import JoinToken
from bgai.obs.ports import DEFAULT_METRICS_PORTS, metrics_port

AGENT_PORT = 9095  # the agent's own web port (loopback)


@dataclass(frozen=True)
class HostPlan:
    """What runs on the joined host."""

    token: JoinToken
    home: Path
    bin_dir: Path  # the virtualenv's bin (bgai, supervisord)
    game_workers: int
    eval_workers: int
    device: str  # the device label of this host's workers (cpu, cuda, ...)
    prometheus: str | None  # the prometheus binary for the agent (None: metrics stay here)
    agent_port: int = AGENT_PORT

    @property
    def etc(self) -> Path:
        return self.home / "etc"

    @property
    def config_file(self) -> Path:
        return self.etc / "bgai.yaml"

    @property
    def supervisord_conf(self) -> Path:
        return self.home / "supervisord.conf"

    def counts(self) -> dict[str, int]:
        return {"game": self.game_workers, "eval": self.eval_workers}

    def metrics_ports(self) -> dict[str, list[int]]:
        """role -> the /metrics ports of its processes (base + process number)."""
        return {
            role: [metrics_port(DEFAULT_METRICS_PORTS[role], n) for n in range(count)]
            for role, count in self.counts().items()
        }


def fleet_config(token: JoinToken, plan_home: Path) -> dict[str, Any]:
    """The token's fleet config for this host: Redis over TLS at the head, no MLflow (the head's
    is not reachable from here: results reach it through Redis), local paths."""
    cfg = {section: dict(values) for section, values in token.config.items()}
    r = token.redis
    cfg["redis"] = {
        **cfg.get("redis", {}),
        "url": "",
        "host": r.host,
        "port": r.port,
        "db": r.db,
        "prefix": r.prefix,
        "tls": r.tls,
        "ca_file": str(plan_home / "etc" / "ca.crt") if r.tls else "",
        "cert_file": "",
        "key_file": "",
        "username": "",
        "password": "",
        "password_file": "",
    }
    cfg.setdefault("mlflow", {})["tracking_uri"] = ""
    cfg.setdefault("selfplay", {})["spool_dir"] = str(plan_home / "spool")
    return cfg


def write_files(plan: HostPlan) -> list[Path]:
    """Write every file of the host (secrets 0600 in a 0700 directory); the paths written."""
    t = plan.token
    secrets_dir = plan.etc / "secrets"
    for d in (plan.etc, plan.home / "log", plan.home / "spool", plan.home / "agent"):
        d.mkdir(parents=True, exist_ok=True)
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    written = []
    for role in t.roles:
        written.append(_private(secrets_dir / role, t.passwords[role] + "\n"))
    if t.redis.ca:
        written.append(_plain(plan.etc / "ca.crt", t.redis.ca))
    written.append(_plain(plan.config_file, yaml.safe_dump(fleet_config(t, plan.home), sort_keys=True)))
    if t.metrics is not None and plan.prometheus is not None:
        written.append(_private(secrets_dir / "metrics", t.metrics.password + "\n"))
        written.append(_plain(plan.home / "prometheus-agent.yml", agent_config(plan)))
    written.append(_plain(plan.supervisord_conf, supervisord_conf(plan)))
    return written


def agent_config(plan: HostPlan) -> str:
    """Prometheus agent mode: scrape this host's workers, remote-write to the head."""
    t = plan.token
    assert t.metrics is not None
    scrape = [
        {
            "targets": [f"127.0.0.1:{port}" for port in ports],
            "labels": {"role": role, "device": plan.device},
        }
        for role, ports in plan.metrics_ports().items()
        if ports
    ]
    data = {
        "global": {"scrape_interval": "5s", "scrape_timeout": "4s"},
        "scrape_configs": [
            {
                "job_name": "bgai",
                "static_configs": scrape,
                # the instance the head would give a worker it scrapes: this host's name, not loopback
                "relabel_configs": [
                    {
                        "source_labels": ["__address__"],
                        "regex": r".*:(\d+)",
                        "target_label": "instance",
                        "replacement": f"{t.host}:$1",
                    }
                ],
            }
        ],
        "remote_write": [
            {
                "url": t.metrics.url,
                "basic_auth": {
                    "username": t.metrics.username,
                    "password_file": str(plan.etc / "secrets" / "metrics"),
                },
                "tls_config": {"ca_file": str(plan.etc / "ca.crt")},
            }
        ],
    }
    return "# written by `bgai join`\n" + yaml.safe_dump(data, sort_keys=False)


def supervisord_conf(plan: HostPlan) -> str:
    """This host's supervisord: its workers (exit 0: the run stopped; 2: refused, e.g. revoked:
    neither restarted) and the metrics agent."""
    home, t = plan.home, plan.token
    lines = [
        "; written by `bgai join`",
        "[unix_http_server]",
        f"file={home}/supervisor.sock",
        "chmod=0700",
        "[supervisord]",
        f"logfile={home}/log/supervisord.log",
        f"pidfile={home}/supervisord.pid",
        f"childlogdir={home}/log",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{home}/supervisor.sock",
    ]
    for role, count in plan.counts().items():
        if count <= 0:
            continue
        base = DEFAULT_METRICS_PORTS[role]
        lines += [
            f"[program:{role}-worker]",
            f"command={plan.bin_dir}/bgai {role}-worker --config {plan.config_file} --metrics-port {base}"
            f" --metrics-port-offset %(process_num)d --metrics-addr 127.0.0.1 --metrics-pushed"
            f" --worker-id {t.host}:{role}:%(process_num)d",
            "process_name=%(program_name)s-%(process_num)d",
            f"numprocs={count}",
            "autorestart=unexpected",
            "exitcodes=0,2",
            "startsecs=3",
            "stopsignal=TERM",
            "stopwaitsecs=120",
            "redirect_stderr=true",
            f"stdout_logfile={home}/log/%(program_name)s-%(process_num)d.log",
            f'environment=BGAI_REDIS__USERNAME="{t.usernames[role]}",'
            f'BGAI_REDIS__PASSWORD_FILE="{plan.etc}/secrets/{role}"',
        ]
    if t.metrics is not None and plan.prometheus is not None:
        lines += [
            "[program:prometheus-agent]",
            f"command={plan.prometheus} --enable-feature=agent --config.file={home}/prometheus-agent.yml"
            f" --storage.agent.path={home}/agent --web.listen-address=127.0.0.1:{plan.agent_port}",
            "autorestart=true",
            "startsecs=2",
            "redirect_stderr=true",
            f"stdout_logfile={home}/log/prometheus-agent.log",
        ]
    return "\n".join(lines) + "\n"


def find_prometheus() -> str | None:
    """A prometheus binary that has agent mode (2.32 and later), on PATH."""
    return shutil.which("prometheus")


def _private(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def _plain(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
