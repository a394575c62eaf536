"""The files `bgai join` writes on a joined worker host (bgai.join.host): secrets private, a config
that reaches the head's Redis over TLS with no password in it, a supervisord that runs the workers
with each role's own user, and a Prometheus agent config that promtool and Prometheus accept."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis_server import free_port

from bgai.config import config_to_dict, load_config
from bgai.config_parse import ConfigError
from bgai.join.host import HostPlan, agent_config, fleet_config, write_files
from bgai.join.token import JoinToken, MetricsAccess, RedisAccess

REPO = Path(__file__).resolve().parents[2]
FLEET_YAML = REPO / "tests" / "fleet.yaml"
CA = "-----BEGIN CERTIFICATE-----\nMIIBfakeCAfakeCAfakeCA0123456789\n-----END CERTIFICATE-----\n"
PASSWORDS = {"game": "pw-game-0123456789abcdef", "eval": "pw-eval-0123456789abcdef"}
METRICS_PW = "pw-metrics-0123456789abcdef"
HOST = "laptop-1"


def head_config() -> dict[str, dict[str, Any]]:
    """The head's fleet config as `bgai token create` shares it (its Redis and MLflow its own)."""
    data = config_to_dict(load_config(FLEET_YAML, env={}))
    data["redis"].update(host="10.0.0.1", port=6380, tls=True, ca_file="/etc/bgai/ca.crt", prefix="bgai")
    data["mlflow"]["tracking_uri"] = "http://10.0.0.1:5000"
    data["selfplay"]["spool_dir"] = "/srv/bgai/spool"
    return data


def make_token(roles: tuple[str, ...] = ("game", "eval"), metrics: bool = True, ca: str = CA) -> JoinToken:
    return JoinToken(
        host=HOST,
        roles=roles,
        redis=RedisAccess("head.example.org", 6380, "fleetA", ca, tls=True, db=2),
        passwords={r: PASSWORDS[r] for r in roles},
        usernames={r: f"{r}@{HOST}" for r in roles},
        config=head_config(),
        created=1_700_000_000,
        metrics=MetricsAccess("https://head.example.org:9090/api/v1/write", HOST, METRICS_PW)
        if metrics
        else None,
    )


def make_plan(home: Path, token: JoinToken | None = None, game: int = 2, evals: int = 1) -> HostPlan:
    return HostPlan(
        token=token or make_token(),
        home=home,
        bin_dir=Path(sys.executable).parent,
        game_workers=game,
        eval_workers=evals,
        device="cpu",
        prometheus="/usr/bin/prometheus",
    )


def read_conf(path: Path) -> configparser.ConfigParser:
    conf = configparser.ConfigParser(interpolation=None)  # supervisord's %(...)s are its own
    conf.read_string(path.read_text())
    return conf


def environment(value: str) -> dict[str, str]:
    """supervisord's `environment=KEY="value",...` (no value here holds a comma or a quote)."""
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_private_and_every_other_file_holds_none(tmp_path: Path) -> None:
    home = tmp_path / "bgai"
    plan = make_plan(home)
    written = write_files(plan)
    secrets = home / "etc" / "secrets"
    assert mode(secrets) == 0o700
    assert {p.name for p in secrets.iterdir()} == {"game", "eval", "metrics"}
    for name, password in (*PASSWORDS.items(), ("metrics", METRICS_PW)):
        assert (secrets / name).read_text() == password + "\n"
        assert mode(secrets / name) == 0o600
    assert set(written) == {
        *(secrets / n for n in ("game", "eval", "metrics")),
        home / "etc" / "ca.crt",
        home / "etc" / "bgai.yaml",
        home / "prometheus-agent.yml",
        home / "supervisord.conf",
    }
    assert (home / "etc" / "ca.crt").read_text() == CA
    for d in ("log", "spool", "agent"):
        assert (home / d).is_dir()
    for path in (home / "etc" / "bgai.yaml", home / "prometheus-agent.yml", home / "supervisord.conf"):
        text = path.read_text()
        assert not any(pw in text for pw in (*PASSWORDS.values(), METRICS_PW)), path.name
    assert not list(home.rglob("*.tmp")) and not list(home.rglob(".*.tmp"))
    # written again (a second `bgai join`): the same files, still private
    assert sorted(write_files(plan)) == sorted(written)
    assert mode(secrets) == 0o700 and mode(secrets / "game") == 0o600


def test_the_config_reaches_the_heads_redis_over_tls_with_each_programs_own_login(tmp_path: Path) -> None:
    home = tmp_path / "bgai"
    plan = make_plan(home)
    write_files(plan)
    raw = yaml.safe_load(plan.config_file.read_text())
    assert raw == fleet_config(plan.token, home)
    assert raw["redis"]["username"] == raw["redis"]["password"] == raw["redis"]["password_file"] == ""
    assert raw["mlflow"]["tracking_uri"] == ""  # the head's MLflow is not reachable from here
    # alone the file holds no login: a Redis off this host wants a password
    with pytest.raises(ConfigError, match="password"):
        load_config(plan.config_file, env={})
    conf = read_conf(plan.supervisord_conf)
    for role in ("game", "eval"):
        env = environment(conf[f"program:{role}-worker"]["environment"])
        assert env == {
            "BGAI_REDIS__USERNAME": f"{role}@{HOST}",
            "BGAI_REDIS__PASSWORD_FILE": str(home / "etc" / "secrets" / role),
        }
        cfg = load_config(plan.config_file, env=env)  # what the program loads
        r = cfg.redis
        assert (r.host, r.port, r.db, r.prefix) == ("head.example.org", 6380, 2, "fleetA")
        assert r.tls is True and r.ca_file == str(home / "etc" / "ca.crt")
        assert Path(r.ca_file).is_relative_to(home)
        assert (r.cert_file, r.key_file) == ("", "")
        assert (r.username, r.password) == (f"{role}@{HOST}", PASSWORDS[role])
        assert cfg.mlflow.tracking_uri == ""
        assert cfg.selfplay.spool_dir == str(home / "spool")
        assert cfg.selfplay.batch_size == 8 and cfg.model.hidden == (16,)  # the fleet's own settings


def test_supervisord_runs_each_roles_workers_on_fixed_loopback_metrics_ports(tmp_path: Path) -> None:
    home = tmp_path / "bgai"
    plan = make_plan(home)
    write_files(plan)
    conf = read_conf(plan.supervisord_conf)
    assert {"unix_http_server", "supervisord", "rpcinterface:supervisor", "supervisorctl"} <= set(conf)
    assert conf["supervisorctl"]["serverurl"] == f"unix://{home}/supervisor.sock"
    assert conf["unix_http_server"]["chmod"] == "0700"
    game, evalw = conf["program:game-worker"], conf["program:eval-worker"]
    assert game["numprocs"] == "2" and evalw["numprocs"] == "1"
    bgai = f"{Path(sys.executable).parent}/bgai"
    for section, role, base in ((game, "game", 9320), (evalw, "eval", 9360)):
        command = section["command"]
        assert command.startswith(f"{bgai} {role}-worker --config {plan.config_file} ")
        assert f"--metrics-port {base} --metrics-port-offset %(process_num)d" in command
        assert "--metrics-addr 127.0.0.1" in command and "--metrics-pushed" in command.split()
        assert f"--worker-id {HOST}:{role}:%(process_num)d" in command  # its ACL user's keys
        assert section["process_name"] == "%(program_name)s-%(process_num)d"
        assert section["exitcodes"] == "0,2"  # stopped run, refused login (revoked): not restarted
        assert section["autorestart"] == "unexpected"
        assert section["stdout_logfile"].startswith(f"{home}/log/")
    agent = conf["program:prometheus-agent"]
    assert agent["command"].split() == [
        "/usr/bin/prometheus",
        "--enable-feature=agent",
        f"--config.file={home}/prometheus-agent.yml",
        f"--storage.agent.path={home}/agent",
        "--web.listen-address=127.0.0.1:9095",
    ]


def test_the_agent_scrapes_the_workers_here_and_writes_to_the_head_with_its_login(tmp_path: Path) -> None:
    home = tmp_path / "bgai"
    plan = make_plan(home)
    write_files(plan)
    agent = yaml.safe_load((home / "prometheus-agent.yml").read_text())
    assert agent == yaml.safe_load(agent_config(plan))
    (job,) = agent["scrape_configs"]
    assert job["job_name"] == "bgai"
    assert job["static_configs"] == [
        {"targets": ["127.0.0.1:9320", "127.0.0.1:9321"], "labels": {"role": "game", "device": "cpu"}},
        {"targets": ["127.0.0.1:9360"], "labels": {"role": "eval", "device": "cpu"}},
    ]
    assert job["relabel_configs"] == [
        {
            "source_labels": ["__address__"],
            "regex": r".*:(\d+)",
            "target_label": "instance",
            "replacement": f"{HOST}:$1",
        }
    ]
    assert agent["remote_write"] == [
        {
            "url": "https://head.example.org:9090/api/v1/write",
            "basic_auth": {"username": HOST, "password_file": str(home / "etc" / "secrets" / "metrics")},
            "tls_config": {"ca_file": str(home / "etc" / "ca.crt")},
        }
    ]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's promtool on PATH")
def test_promtool_accepts_the_agent_config_in_agent_mode(tmp_path: Path) -> None:
    plan = make_plan(tmp_path / "bgai")
    write_files(plan)
    path = plan.home / "prometheus-agent.yml"
    done = subprocess.run(
        ["promtool", "check", "config", "--agent", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus on PATH")
def test_a_running_agent_labels_each_worker_with_this_hosts_name_and_port(tmp_path: Path) -> None:
    """The relabel rule at work in Prometheus itself: instance = `<host>:<port>`, not loopback."""
    certs = tmp_path / "certs"  # Prometheus reads the CA: a real one
    made = subprocess.run(
        [REPO / "scripts" / "tls-certs", certs, "--server", "head", "--san", "DNS:head.example.org"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    plan = make_plan(tmp_path / "bgai", make_token(ca=(certs / "ca.crt").read_text()))
    write_files(plan)
    port = free_port()
    log = (tmp_path / "agent.log").open("w")
    proc = subprocess.Popen(
        [
            "prometheus",
            "--enable-feature=agent",
            f"--config.file={plan.home / 'prometheus-agent.yml'}",
            f"--storage.agent.path={plan.home / 'agent'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # wait on the condition "the agent lists its three targets", bounded
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=10) as resp:
                    active = json.loads(resp.read())["data"]["activeTargets"]
                if len(active) == 3:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert proc.poll() is None, (tmp_path / "agent.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the agent did not list its targets in 60 s"
            time.sleep(0.05)
        labels = sorted((t["labels"]["instance"], t["labels"]["role"], t["scrapeUrl"]) for t in active)
        assert labels == [
            (f"{HOST}:9320", "game", "http://127.0.0.1:9320/metrics"),
            (f"{HOST}:9321", "game", "http://127.0.0.1:9321/metrics"),
            (f"{HOST}:9360", "eval", "http://127.0.0.1:9360/metrics"),
        ]
        assert all(t["labels"]["job"] == "bgai" and t["labels"]["device"] == "cpu" for t in active)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()


def test_without_metrics_in_the_token_no_agent_runs_and_no_agent_file_is_written(tmp_path: Path) -> None:
    home = tmp_path / "bgai"
    plan = make_plan(home, make_token(roles=("game",), metrics=False), game=3, evals=0)
    written = write_files(plan)
    assert not (home / "prometheus-agent.yml").exists()
    assert {p.name for p in (home / "etc" / "secrets").iterdir()} == {"game"}
    assert home / "prometheus-agent.yml" not in written
    conf = read_conf(plan.supervisord_conf)
    programs = [s for s in conf.sections() if s.startswith("program:")]
    assert programs == ["program:game-worker"]  # no agent, and no eval workers asked for
    assert conf["program:game-worker"]["numprocs"] == "3"
    assert "prometheus" not in plan.supervisord_conf.read_text()


def test_without_a_prometheus_binary_the_metrics_stay_on_the_host(tmp_path: Path) -> None:
    home = tmp_path / "bgai"
    plan = HostPlan(make_token(), home, Path(sys.executable).parent, 1, 1, "cuda", prometheus=None)
    write_files(plan)
    assert (
        not (home / "prometheus-agent.yml").exists() and not (home / "etc" / "secrets" / "metrics").exists()
    )
    assert "program:prometheus-agent" not in read_conf(plan.supervisord_conf)
