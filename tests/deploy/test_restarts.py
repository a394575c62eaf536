"""What a change restarts, under a real supervisord: bgai's program files as the bgai_head and
bgai_worker roles write them (the repository's, with a host's values in their own sections), and
the roles' restart handlers run as Ansible runs them. A bgai change restarts bgai's programs and
only those it concerns; Redis keeps running. The programs are stand-ins (`sleep`) under the real
program names and settings."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_filters
import pytest
import yaml
from ansible_run import BIN, MINIMAL, REPO, ROLES, playbook, results
from supervised import ANY_METRICS_PORTS, wait_for

FILES = {"head": "bgai-head.conf", "game-workers": "bgai-game-workers.conf"}
# Not bgai's: Redis, and a Prometheus that ignores SIGHUP as the real one does (it rereads its files)
OTHERS = """
[program:redis]
command=sleep 1000
startsecs=1

[program:prometheus]
command=sh -c 'trap "" HUP; exec sleep 1000'
startsecs=1
"""


def program_conf() -> Callable[[str, dict[str, Any], dict[str, Any]], str]:
    module = ansible_filters.plugin()
    return module.bgai_program_conf  # type: ignore[no-any-return]


@dataclass
class Supervisord:
    home: Path
    expansions: dict[str, Any]

    @property
    def conf(self) -> Path:
        return self.home / "supervisord.conf"

    def ctl(self, *args: str) -> str:
        cmd = [BIN / "supervisorctl", "-c", self.conf, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout

    def install(self, environment: dict[str, Any], **counts: int) -> None:
        """Write the program files as the roles do, for this host's environment and counts."""
        render = program_conf()
        expansions = self.expansions | {"BGAI_GAME_WORKERS": counts.get("game", 1)}
        for name, dest in FILES.items():
            text = render((REPO / "supervisor" / f"{name}.conf").read_text(), expansions, environment)
            (self.home / "supervisor.d" / dest).write_text(text)

    def pids(self) -> dict[str, int]:
        """process -> pid, once every process is RUNNING."""

        def running() -> dict[str, int]:
            lines = [line.split() for line in self.ctl("status").splitlines()]
            ok = lines and all(len(f) > 3 and f[1] == "RUNNING" for f in lines)
            return {f[0]: int(f[3].rstrip(",")) for f in lines} if ok else {}

        wait_for("every program RUNNING", lambda: bool(running()), 60)
        return running()


@pytest.fixture
def supervisord() -> Iterator[Supervisord]:
    home = Path(tempfile.mkdtemp(prefix="bgai-sv-"))  # (short: the socket's path has a limit)
    try:
        for d in ("supervisor.d", "bin", "log", "secrets"):
            (home / d).mkdir()
        (home / "bin" / "bgai").write_text("#!/bin/sh\nexec sleep 1000\n")
        (home / "bin" / "bgai").chmod(0o755)
        (home / "supervisor.d" / "others.conf").write_text(OTHERS)
        (home / "supervisord.conf").write_text(
            f"[unix_http_server]\nfile={home}/s.sock\n\n"
            f"[supervisord]\nlogfile={home}/log/supervisord.log\npidfile={home}/s.pid\n"
            f"childlogdir={home}/log\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{home}/s.sock\n\n"
            f"[include]\nfiles = {home}/supervisor.d/*.conf\n"
        )
        expansions = {
            "BGAI_BIN": home / "bin",
            "BGAI_CONFIG": home / "bgai.yaml",
            "BGAI_RUN_DIR": home / "log",
            "BGAI_METRICS_ADDR": "127.0.0.1",
            **ANY_METRICS_PORTS,
            "BGAI_SECRETS_DIR": home / "secrets",
            "BGAI_TRACKING_PASSWORD_FILE": "",
            "BGAI_EXPECTED_GAME_WORKERS": 1,
            "BGAI_EXPECTED_EVAL_WORKERS": 0,
        }
        sv = Supervisord(home, expansions)
        sv.install({"BGAI_REDIS__HOST": "10.9.0.1"})
        subprocess.run([BIN / "supervisord", "-c", sv.conf], check=True, env={"PATH": "/usr/bin:/bin"})
        yield sv
    finally:
        if (home / "s.pid").exists():
            subprocess.run([BIN / "supervisorctl", "-c", home / "supervisord.conf", "shutdown"], timeout=60)
            wait_for("supervisord to exit", lambda: not (home / "s.pid").exists(), 60)
        shutil.rmtree(home, ignore_errors=True)


def changed(before: dict[str, int], after: dict[str, int]) -> set[str]:
    """The processes restarted, added or removed between two snapshots."""
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def test_a_program_file_change_restarts_its_programs_alone(supervisord: Supervisord) -> None:
    """`supervisorctl update` (the Update supervisord handler): a host's game worker count
    restarts its game workers; its settings, every bgai program of the host; never Redis or
    Prometheus. The host's values are in the programs' own environment."""
    sv = supervisord
    first = sv.pids()
    assert set(first) == {
        "redis",
        "prometheus",
        "coordinator",
        "training-worker",
        "game-worker:game-worker-0",
    }
    sv.install({"BGAI_REDIS__HOST": "10.9.0.1"}, game=2)
    sv.ctl("update")
    second = sv.pids()
    assert changed(first, second) == {"game-worker:game-worker-0", "game-worker:game-worker-1"}

    sv.install({"BGAI_REDIS__HOST": "10.9.0.1", "BGAI_SELFPLAY__BATCH_SIZE": "4096"}, game=2)
    sv.ctl("update")
    third = sv.pids()
    assert changed(second, third) == set(third) - {"redis", "prometheus"}
    environ = Path(f"/proc/{third['coordinator']}/environ").read_bytes().split(b"\0")
    assert b"BGAI_SELFPLAY__BATCH_SIZE=4096" in environ and b"BGAI_REDIS__USERNAME=coordinator" in environ
    redis_environ = Path(f"/proc/{third['redis']}/environ").read_bytes()
    assert b"BGAI_" not in redis_environ


def test_the_handlers_restart_only_their_programs(supervisord: Supervisord, tmp_path: Path) -> None:
    """The roles' handlers, run by Ansible: bgai's restarts this host's bgai programs (a worker
    host of game workers: those; its first eval worker, whose file is not there yet, is left to
    `update`), Redis's restarts Redis alone, Prometheus's signals it (no restart)."""
    sv = supervisord
    steps = {
        "bgai": ROLES / "bgai" / "handlers" / "main.yml",
        "redis": ROLES / "redis" / "handlers" / "main.yml",
        "prometheus": ROLES / "prometheus" / "handlers" / "main.yml",
    }
    status = {"ansible.builtin.command": f"{BIN}/supervisorctl -c {sv.conf} status", "changed_when": False}
    tasks: list[dict[str, Any]] = [
        {"ansible.builtin.include_vars": str(ROLES / "bgai" / "vars" / "main.yml")}
    ]
    for step, handlers in steps.items():
        tasks += [{**status, "register": f"before_{step}"}, {"ansible.builtin.include_tasks": str(handlers)}]
    snapshots = {s: f"{{{{ before_{s}.stdout }}}}" for s in steps} | {"end": "{{ end.stdout }}"}
    tasks += [{**status, "register": "end"}, {"ansible.builtin.debug": {"msg": snapshots}}]
    play = [{
        "hosts": "all", "gather_facts": False, "tasks": tasks,
        "vars": {
            "supervisor_venv": str(BIN.parent), "supervisor_conf": str(sv.conf),
            "bgai_installed": {"stat": {"exists": True}},
        },
    }]  # fmt: skip
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    # a worker host: what bgai_programs (the bgai role's vars) names for it
    worker = {"bgai_game_workers": 1, "bgai_eval_workers": 1}
    hosts = {"head": {"hosts": {}}, "workers": {"hosts": {"w1": worker}}}
    inventory = {"all": {"vars": {"ansible_connection": "local"}, "children": hosts}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    sv.pids()  # (all RUNNING first)
    out = playbook("-i", tmp_path / "hosts.yml", tmp_path / "play.yml", env=MINIMAL)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    done = [result for _, result in results(out.stdout)]
    (status_at,) = [r["msg"] for r in done if isinstance(r.get("msg"), dict)]
    pids = {step: parse_pids(text) for step, text in status_at.items()}
    assert changed(pids["bgai"], pids["redis"]) == {"game-worker:game-worker-0"}
    assert changed(pids["redis"], pids["prometheus"]) == {"redis"}
    assert changed(pids["prometheus"], pids["end"]) == set()  # SIGHUP: Prometheus rereads its files
    assert {"state": "signalled", "affected": ["prometheus"]}.items() <= next(
        r for r in done if r.get("state") == "signalled"
    ).items()


def parse_pids(status: str) -> dict[str, int]:
    fields = [line.split() for line in status.splitlines()]
    return {f[0]: int(f[3].rstrip(",")) for f in fields if len(f) > 3 and f[2] == "pid"}
