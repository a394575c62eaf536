"""Running Ansible from the tests that need no hosts: this checkout's ansible.cfg, plain output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
ROLES = REPO / "ansible" / "roles"
EXAMPLE_INVENTORY = REPO / "inventory.example.yml"
MINIMAL = {**ENV, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.minimal"}  # host | SUCCESS => {json}


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(c) for c in cmd]
    return subprocess.run(argv, cwd=REPO, env=env or ENV, capture_output=True, text=True, timeout=300)


def playbook(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`ansible-playbook ARGS` on this machine: local hosts run this venv's Python (interpreter
    discovery can find a shim that is no Python at all)."""
    python = f"ansible_python_interpreter={sys.executable}"
    return run(BIN / "ansible-playbook", "-e", python, *args, env=env)


def results(stdout: str) -> list[tuple[str, dict[str, Any]]]:
    """(host, result) of every task that succeeded, from the minimal callback's output."""
    found = []
    for m in re.finditer(r"^(\S+) \| (?:SUCCESS|CHANGED) => ", stdout, re.M):
        result, _ = json.JSONDecoder().raw_decode(stdout, m.end())
        found.append((m[1], result))
    return found
