"""The local fleet under a real supervisord, for the chaos suite: start, control, inspect.

The same programs as `scripts/fleet-local` (`supervisor/local.conf`): Redis (append-only file,
one ACL user per role), MLflow, Prometheus, coordinator, training worker, game workers, eval
worker; the tiny test config (`tests/fleet.yaml`) plus environment overrides.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from redis_server import free_port, redis_binary

from bgai.config import load_config
from bgai.obs.ports import DEFAULT_METRICS_PORTS, port_env
from bgai.store.acl import ensure_secrets, env_name, host_passwords, local_host, write_password_files
from bgai.store.budget import redis_maxmemory
from bgai.store.keys import Keys

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONF = REPO / "supervisor" / "local.conf"
KEYS = Keys()
# /metrics on any free port (BGAI_METRICS_PORT_<KIND>=0, which the program files need set):
# several fleets run on this machine at once, and the fixed ports may be taken
ANY_METRICS_PORTS = {port_env(kind): "0" for kind in DEFAULT_METRICS_PORTS}


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, poll_s: float = 0.2) -> float:
    """Seconds until `check()` holds; AssertionError after `timeout_s`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)  # polling interval of a condition wait, not a fixed delay
    return time.monotonic() - start


@dataclass
class Fleet:
    env: dict[str, str]
    run_dir: Path
    r: redis.Redis

    def client(self) -> redis.Redis:
        """Another admin connection (for a thread of its own)."""
        port = int(self.env["BGAI_REDIS__PORT"])
        return redis.Redis(
            port=port, username="admin", password=self.env["BGAI_SECRET_ADMIN"], socket_timeout=5
        )

    def ctl(self, *args: str) -> str:
        out = subprocess.run(
            [BIN / "supervisorctl", "-c", CONF, *args], env=self.env, capture_output=True, text=True
        )
        return out.stdout

    def status(self) -> dict[str, tuple[str, int | None]]:
        """program -> (state, pid)."""
        found: dict[str, tuple[str, int | None]] = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else None
                found[parts[0].split(":")[-1]] = (parts[1], pid)
        return found

    def log(self, program: str) -> str:
        path = self.run_dir / f"{program}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def version(self) -> int:
        try:
            raw = self.r.get(KEYS.model_version)
        except redis.ConnectionError:
            return -1
        return -1 if raw is None else int(raw)


@contextmanager
def supervised_fleet(run_dir: Path, overrides: dict[str, str], game_workers: int = 2) -> Iterator[Fleet]:
    redis_binary()  # fail clearly if redis-server is missing
    run_dir.mkdir(parents=True)
    port, mlflow_port = free_port(), free_port()
    env = {
        **os.environ,
        "BGAI_BIN": str(BIN),
        "BGAI_RUN_DIR": str(run_dir),
        "BGAI_CONFIG": str(REPO / "tests" / "fleet.yaml"),
        "BGAI_GAME_WORKERS": str(game_workers),
        "BGAI_NUM_EVAL_WORKERS": "1",
        "BGAI_REDIS__PORT": str(port),
        "BGAI_PROMETHEUS_PORT": str(free_port()),
        "BGAI_ALERTMANAGER_PORT": str(free_port()),
        "BGAI_EXPECTED_GAME_WORKERS": str(game_workers),
        "BGAI_EXPECTED_EVAL_WORKERS": "1",
        "BGAI_ALERT_RULES": str(REPO / "configs" / "rules"),
        "BGAI_TRACKING_PORT": str(mlflow_port),
        "BGAI_TRACKING_HOST": "127.0.0.1",
        "BGAI_MLFLOW__TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "BGAI_METRICS_ADDR": "127.0.0.1",
        **ANY_METRICS_PORTS,
        "BGAI_TRAINING__CHECKPOINT_DIR": str(run_dir / "checkpoints"),
        "BGAI_SELFPLAY__SPOOL_DIR": str(run_dir / "spool"),
        "BGAI_HEAD__TARGETS_FILE": str(run_dir / "targets" / "bgai.json"),
        **overrides,
    }
    env.setdefault("BGAI_MAXMEMORY", str(redis_maxmemory(load_config(env["BGAI_CONFIG"], env=env))))
    # as scripts/fleet-local: each program reads its own password file; supervisord's
    # environment (which every program inherits) holds no password
    secrets = ensure_secrets(run_dir / "secrets.env", run_dir / "users.acl", KEYS)
    write_password_files(run_dir / "secrets", host_passwords(secrets, local_host()))  # game@, eval@ this host
    env.update({"BGAI_SECRETS_DIR": str(run_dir / "secrets"), "BGAI_TRACKING_PASSWORD_FILE": ""})
    subprocess.run([BIN / "supervisord", "-c", CONF], env=env, check=True)
    # this test's own commands (bgai status, bgai-runs, a second trainer) connect with a password
    env.update({env_name(role): pw for role, pw in secrets.items()})
    env.update({"BGAI_REDIS__USERNAME": "admin", "BGAI_REDIS__PASSWORD": secrets["admin"]})
    r = redis.Redis(port=port, username="admin", password=secrets["admin"], socket_timeout=5)
    try:
        yield Fleet(env, run_dir, r)
    finally:
        r.close()
        subprocess.run([BIN / "supervisorctl", "-c", CONF, "shutdown"], env=env, capture_output=True)
        pid_file = run_dir / "supervisord.pid"
        wait_for("supervisord to exit", lambda: not pid_file.exists(), 180)
