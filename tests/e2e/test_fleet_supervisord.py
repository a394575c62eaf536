"""The whole fleet on one host under a real supervisord, with a real redis-server and Prometheus.

Starts `supervisor/local.conf` (the programs scripts/fleet-local runs) with the tiny test config,
then waits, bounded and on conditions, until the model version is >= 3, an eval result exists and
every program is in the registry; checks /metrics, Prometheus (targets through the file_sd file,
every dashboard panel's PromQL, every declared metric set), Alertmanager (the training worker is
stopped: the alert reaches a webhook the test serves; started again: its resolution does),
MLflow, pause and resume, then stops
the workers warmly and checks they deregistered and dropped out of Prometheus's targets. No
program's environment holds a password (/proc/<pid>/environ): each role reads its own file.
Failures have their own suites: kill -9 of every role (the trainer resuming bit-exact), a Redis
restart and a 60 s Redis outage in tests/chaos; an MLflow outage in tests/runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from alert_webhook import AlertWebhook
from dashboards import panel_queries
from prometheus_api import PromAPI, has_gpu
from redis_server import free_port, redis_binary
from supervised import ANY_METRICS_PORTS

from bgai.config import load_config
from bgai.obs.metrics import GPU_METRICS, declared_metrics
from bgai.obs.tracking import Tracker
from bgai.store import evals, registry
from bgai.store.acl import ROLES, ensure_secrets, env_name, host_passwords, local_host, write_password_files
from bgai.store.budget import redis_maxmemory
from bgai.store.keys import Keys

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONF = REPO / "supervisor" / "local.conf"
KEYS = Keys()  # the default prefix, as the fleet's config uses
PROGRAMS = {
    "redis",
    "mlflow",
    "prometheus",
    "alertmanager",
    "coordinator",
    "training-worker",
    "game-worker-0",
    "game-worker-1",
    "eval-worker-0",
}
OPPONENTS = ["random", "pubeval", *(["gnubg_0ply"] if Path("/usr/games/gnubg").exists() else [])]


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, poll_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)  # polling interval of a condition wait, not a fixed delay


@pytest.fixture()
def webhook() -> Iterator[AlertWebhook]:
    with AlertWebhook() as hook:
        yield hook


def quick_rules(directory: Path) -> Path:
    """The shipped rules with every `for:` shortened to 5 s, so that an alert fires in seconds."""
    directory.mkdir()
    for rules in (REPO / "configs" / "rules").glob("*.yml"):
        text = re.sub(r"^(\s+)for: \S+$", r"\1for: 5s", rules.read_text(), flags=re.M)
        (directory / rules.name).write_text(text)
    return directory


@pytest.fixture()
def fleet(tmp_path: Path, webhook: AlertWebhook) -> Iterator[tuple[dict[str, str], redis.Redis]]:
    redis_binary()  # fail clearly if redis-server is missing
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    port, mlflow_port = free_port(), free_port()
    env = {
        **os.environ,
        "BGAI_BIN": str(BIN),
        "BGAI_RUN_DIR": str(run_dir),
        "BGAI_CONFIG": str(REPO / "tests" / "fleet.yaml"),
        "BGAI_GAME_WORKERS": "2",
        "BGAI_NUM_EVAL_WORKERS": "1",
        "BGAI_EXPECTED_GAME_WORKERS": "2",
        "BGAI_EXPECTED_EVAL_WORKERS": "0",
        "BGAI_REDIS__PORT": str(port),
        "BGAI_PROMETHEUS_PORT": str(free_port()),
        "BGAI_ALERTMANAGER_PORT": str(free_port()),
        "BGAI_ALERT_WEBHOOK": webhook.url,
        "BGAI_ALERT_RULES": str(quick_rules(tmp_path / "rules")),
        "BGAI_TRACKING_PORT": str(mlflow_port),
        "BGAI_TRACKING_HOST": "127.0.0.1",
        "BGAI_MLFLOW__TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "BGAI_METRICS_ADDR": "127.0.0.1",
        **ANY_METRICS_PORTS,  # (any free port: other fleets may run on this machine)
        "BGAI_TRAINING__CHECKPOINT_DIR": str(run_dir / "checkpoints"),
        "BGAI_HEAD__TARGETS_FILE": str(run_dir / "targets" / "bgai.json"),
        # the eval worker also plays Debian's GNU Backgammon (a gnubg child process)
        "BGAI_EVAL__OPPONENTS": f"[{', '.join(OPPONENTS)}]",
    }
    env["BGAI_MAXMEMORY"] = str(redis_maxmemory(load_config(env["BGAI_CONFIG"], env=env)))
    # one Redis ACL user per role, as scripts/fleet-local sets them up: each program reads its own
    # password file, and supervisord's environment holds none; the test's own commands are admin
    secrets = ensure_secrets(run_dir / "secrets.env", run_dir / "users.acl", KEYS)
    write_password_files(run_dir / "secrets", host_passwords(secrets, local_host()))  # game@, eval@ this host
    env.update({"BGAI_SECRETS_DIR": str(run_dir / "secrets"), "BGAI_TRACKING_PASSWORD_FILE": ""})
    subprocess.run([BIN / "supervisord", "-c", CONF], env=env, check=True)
    env.update({env_name(role): pw for role, pw in secrets.items()})
    env.update({"BGAI_REDIS__USERNAME": "admin", "BGAI_REDIS__PASSWORD": secrets["admin"]})
    r = redis.Redis(port=port, username="admin", password=secrets["admin"])
    try:
        yield env, r
    finally:
        r.close()
        subprocess.run([BIN / "supervisorctl", "-c", CONF, "shutdown"], env=env, capture_output=True)
        pid_file = run_dir / "supervisord.pid"
        wait_for("supervisord to exit", lambda: not pid_file.exists(), 180)


def program_environ(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """program -> the environment its process started with (/proc/<pid>/environ)."""
    out = subprocess.run(
        [BIN / "supervisorctl", "-c", CONF, "status"], env=env, capture_output=True, text=True
    ).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[2] == "pid":
            raw = Path(f"/proc/{int(parts[3].rstrip(','))}/environ").read_bytes()
            pairs = [item.partition(b"=") for item in raw.split(b"\0") if item]
            found[parts[0].split(":")[-1]] = {k.decode(): v.decode(errors="replace") for k, _, v in pairs}
    return found


def check_no_password_inherited(env: dict[str, str]) -> None:
    """No program starts with a password in its environment (Redis, MLflow and Prometheus inherit
    supervisord's); each bgai role is told only where its own password file is."""
    passwords = {role: env[env_name(role)] for role in ROLES}
    environs = program_environ(env)
    assert set(environs) == PROGRAMS
    for program, environ in environs.items():
        text = "\0".join(f"{k}={v}" for k, v in environ.items())
        leaked = sorted(role for role, pw in passwords.items() if pw in text)
        assert not leaked, f"{program} has the {leaked} password(s) in its environment"
        named = sorted(k for k in environ if k.startswith("BGAI_SECRET_") or k.endswith("PASSWORD"))
        assert not named, f"{program}: {named}"
    for program, role in [("coordinator", "coordinator"), ("training-worker", "training"),
                          ("game-worker-0", "game"), ("eval-worker-0", "eval")]:  # fmt: skip
        assert environs[program]["BGAI_REDIS__PASSWORD_FILE"] == f"{env['BGAI_SECRETS_DIR']}/{role}"


def ctl_status(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        [BIN / "supervisorctl", "-c", CONF, "status"], env=env, capture_output=True, text=True
    ).stdout
    return {line.split()[0].split(":")[-1]: line.split()[1] for line in out.splitlines() if line.strip()}


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def registry_types(r: redis.Redis) -> set[str]:
    try:
        return set(registry.list_workers(r, KEYS))
    except redis.ConnectionError:
        return set()


def version(r: redis.Redis) -> int:
    try:
        raw = r.get(KEYS.model_version)
    except redis.ConnectionError:
        return -1
    return -1 if raw is None else int(raw)


def check_prometheus(env: dict[str, str], prom: PromAPI, instances: set[str]) -> None:
    """Prometheus scrapes every role through the file_sd file; every panel query has series."""
    run_dir = Path(env["BGAI_RUN_DIR"])
    for config in (REPO / "configs" / "prometheus.yml", run_dir / "prometheus.yml"):
        out = subprocess.run(["promtool", "check", "config", config], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    wait_for("Prometheus to answer", prom.ready, 60)
    # the alerting rules are loaded and evaluated: the Watchdog fires
    groups = {g["name"]: g for g in prom.get("rules")["groups"]}
    assert "bgai" in groups and len(groups["bgai"]["rules"]) >= 10, groups.keys()

    wait_for("the Watchdog alert to fire", lambda: bool(prom.firing("Watchdog")), 90)
    wait_for("every role scraped by Prometheus", lambda: set(prom.up_targets()) >= instances, 120)
    assert set(prom.up_targets().values()) == {"coordinator", "training", "game", "eval"}
    for instance in instances:
        text = scrape(int(instance.rsplit(":", 1)[1]))
        out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert out.returncode == 0, f"{instance}: {out.stdout}{out.stderr}"
    gpu = has_gpu()
    queries = panel_queries()
    for _, _, expr, _ in queries:
        prom.query(expr)  # every expression parses and runs, GPU ones included
    pending = {(d, t, e) for d, t, e, needs_gpu in queries if gpu or not needs_gpu}

    def answered() -> bool:
        pending.difference_update({q for q in list(pending) if prom.query(q[2])})
        return not pending

    try:
        wait_for("a series for every dashboard panel", answered, 180, poll_s=2.0)
    except AssertionError as e:
        raise AssertionError(f"{e}: no series for {sorted(pending)}") from None
    skipped = sum(1 for *_, needs_gpu in queries if needs_gpu and not gpu)
    print(f"{len(queries) - skipped} panel queries have series; {skipped} GPU queries skipped (no GPU)")
    # every declared metric is set by the running fleet; target and metric labels stay disjoint
    names = set(prom.get("label/__name__/values"))
    missing = declared_metrics() - set(() if gpu else GPU_METRICS) - names
    assert not missing, f"declared but never set by the fleet: {sorted(missing)}"
    series = prom.get("series", **{"match[]": '{job="bgai"}'})
    assert series and all(not k.startswith("exported_") for s in series for k in s)
    assert all({"role", "device", "instance"} <= set(s) for s in series)


def check_alert_on_missing_trainer(env: dict[str, str], hook: AlertWebhook) -> None:
    """Stop the training worker: BgaiTrainerMissing reaches the webhook; start it: so does its end."""
    out = subprocess.run(["amtool", "check-config", Path(env["BGAI_RUN_DIR"]) / "alertmanager.yml"])
    assert out.returncode == 0
    wait_for("the Watchdog at the webhook", lambda: hook.seen("Watchdog", "firing"), 120)
    alert = "BgaiTrainerMissing"
    # the trainer's first compile may have fired it at start: Alertmanager notifies a change of
    # its group once a minute (group_interval), so a firing it has not yet sent the end of would
    # not be sent again; wait for that end first
    wait_for(f"no {alert} pending at the webhook", lambda: hook.last_status(alert) != "firing", 150)
    mark = hook.mark()
    ctl(env, "stop", "training-worker")
    wait_for(f"{alert} at the webhook", lambda: hook.seen(alert, "firing", mark), 180)
    mark = hook.mark()
    ctl(env, "start", "training-worker")
    wait_for("its resolution at the webhook", lambda: hook.seen(alert, "resolved", mark), 300)


def test_local_fleet_trains_evaluates_and_stops_warmly(
    fleet: tuple[dict[str, str], redis.Redis], webhook: AlertWebhook
) -> None:
    env, r = fleet
    host = os.uname().nodename
    expected = {f"{host}:{k}" for k in ("coordinator", "training", "game:0", "game:1", "eval:0")}
    wait_for("every program RUNNING", lambda: set(ctl_status(env).values()) == {"RUNNING"}, 120)
    assert set(ctl_status(env)) == PROGRAMS
    check_no_password_inherited(env)
    wait_for("model version >= 3", lambda: version(r) >= 3, 600)
    wait_for(
        "an eval result",
        lambda: bool(evals.results(r, KEYS)),
        600,
    )
    wait_for("every program in the registry", lambda: registry_types(r) >= expected, 120)
    # every role serves /metrics on the port it registered, and the coordinator lists them all
    records = {i: json.loads(r.get(KEYS.worker(i))) for i in expected}
    ports = {i: rec["metrics_port"] for i, rec in records.items()}
    assert all(p > 0 for p in ports.values())
    assert {rec["metrics_host"] for rec in records.values()} == {"127.0.0.1"}  # --metrics-addr
    targets = Path(env["BGAI_HEAD__TARGETS_FILE"])
    wait_for(
        "every worker in the Prometheus targets file",
        lambda: (
            {t for g in json.loads(targets.read_text() or "[]") for t in g["targets"]}
            >= {f"{records[i]['metrics_host']}:{p}" for i, p in ports.items()}
        ),
        60,
    )
    must = {
        "game:0": "bgai_games_total{",
        "training": 'bgai_training_loss{kind="total"',
        "eval:0": "bgai_eval_error_rate{",
    }
    for worker_id, port in ports.items():
        kind = worker_id.split(":", 1)[1]
        want = [
            f'bgai_system_cpu_ratio{{hostname="{host}",worker_id="{worker_id}"}}',
            "bgai_worker_status{",
        ]
        want += [must[kind]] if kind in must else []
        wait_for(f"{worker_id}'s metrics", lambda p=port, w=want: all(x in scrape(p) for x in w), 120)
    prom = PromAPI(int(env["BGAI_PROMETHEUS_PORT"]))
    check_prometheus(env, prom, {f"127.0.0.1:{p}" for p in ports.values()})
    check_alert_on_missing_trainer(env, webhook)
    out = subprocess.run(
        [BIN / "bgai", "status", "--config", env["BGAI_CONFIG"], "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    table = subprocess.run(
        [BIN / "bgai", "status", "--config", env["BGAI_CONFIG"]], env=env, capture_output=True, text=True
    ).stdout
    assert "status running" in table and f"{host}:training" in table and "eval version" in table
    assert "error rate: ER " in table  # the decision set's parts the version's slices scored
    assert status["status"] == "running" and status["model_version"] >= 3
    assert status["buffer"]["size"] <= 5000 and set(status["workers"]) >= expected
    run_id = check_mlflow(env, r)
    check_pause_resume(r, env, run_id, host)
    # warm stop by TERM: finish the unit, deregister, exit 0 (not restarted: STOPPED)
    ctl(env, "stop", "game-worker:game-worker-1")
    assert ctl_status(env)["game-worker-1"] == "STOPPED"
    assert f"{host}:game:1" not in registry_types(r)
    # one game worker short of the two the head expects: BgaiFewerWorkers fires
    wait_for("BgaiFewerWorkers", lambda: prom.firing("BgaiFewerWorkers") == [{"worker_type": "game"}], 120)
    # `bgai-runs stop`: every worker finishes its unit and exits 0 by itself (EXITED), the trainer
    # checkpoints, and the run is FINISHED in MLflow
    runs_cli(env, "stop")
    workers = {"game-worker-0", "eval-worker-0", "training-worker"}
    wait_for("workers to exit", lambda: {ctl_status(env)[p] for p in workers} == {"EXITED"}, 180)
    assert registry_types(r) & expected == {f"{host}:coordinator"}
    log = (Path(env["BGAI_RUN_DIR"]) / "training-worker.log").read_text()
    assert "warm stop: checkpoint" in log
    run = Tracker(env["BGAI_MLFLOW__TRACKING_URI"], "bgai").get_run(run_id)
    assert run is not None and run.status == "FINISHED"
    # the stopped workers leave the targets file, and Prometheus's targets with it
    coordinator = f"127.0.0.1:{ports[f'{host}:coordinator']}"
    wait_for("stopped workers to leave Prometheus", lambda: prom.active_targets() == {coordinator}, 120)
    assert list((Path(env["BGAI_RUN_DIR"]) / "checkpoints" / run_id).glob("ckpt_*.bgai"))


def ctl(env: dict[str, str], *args: str) -> None:
    subprocess.run([BIN / "supervisorctl", "-c", CONF, *args], env=env, check=True, capture_output=True)


def runs_cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [BIN / "bgai-runs", *args, "--config", env["BGAI_CONFIG"]], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def check_mlflow(env: dict[str, str], r: redis.Redis) -> str:
    """The coordinator made the fleet's run in MLflow; the trainer and eval worker log to it."""
    run_id = r.get(KEYS.run_id).decode()
    tracker = Tracker(env["BGAI_MLFLOW__TRACKING_URI"], "bgai")

    def logged() -> bool:
        run = tracker.get_run(run_id)
        want = {"loss", "model_version", "eval/decisions/er", *(f"eval/{o}/win_rate" for o in OPPONENTS)}
        return run is not None and want <= set(run.metrics)

    wait_for("training and eval metrics in MLflow", logged, 300)
    wait_for("checkpoints in MLflow", lambda: bool(tracker.list_artifacts(run_id, "checkpoints")), 300)
    assert "config.yaml" in tracker.list_artifacts(run_id)
    assert run_id in runs_cli(env, "list")
    return run_id


def check_pause_resume(r: redis.Redis, env: dict[str, str], run_id: str, host: str) -> None:
    """Pause and resume reach every worker."""
    workers = [f"{host}:{k}" for k in ("training", "game:0", "game:1", "eval:0")]

    def statuses() -> set[str]:
        raws = [r.get(KEYS.worker(w)) for w in workers]
        return {json.loads(raw)["status"] if raw else "gone" for raw in raws}

    runs_cli(env, "pause")
    paused_at = time.monotonic()  # the status key is set once the command returns
    wait_for("every worker paused", lambda: statuses() == {"paused"}, 120, poll_s=0.1)
    print(f"every worker reports paused {time.monotonic() - paused_at:.1f} s after the status changed")
    runs_cli(env, "resume", "--run-id", run_id)
    wait_for("every worker running again", lambda: "paused" not in statuses(), 120)
