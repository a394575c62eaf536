"""The roles' contracts, without deploying: every role's argument spec (what a wrong value is
told), the tags that push one phase (`--tags bgai`: bgai's code alone), the inventory (an example
committed, the real one ignored) and the per-OS values an inventory overrides.

The runs here use `--check --tags validate-only`: a tag no task has, so only what always runs
does (the inventory's checks, each role's argument validation), and nothing changes."""

from __future__ import annotations

import configparser
import json
import re
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from ansible_run import BIN, EXAMPLE_INVENTORY, MINIMAL, REPO, ROLES, playbook, results, run

ALL_ROLES = {"bgai", "bgai_head", "bgai_worker", "grafana", "mlflow", "prometheus", "redis", "supervisor"}
VALIDATE_ONLY = ("--check", "--tags", "validate-only")
# The phases deploy.yml can push alone, and the roles whose tasks each one runs
PHASES = {
    "bgai": {"bgai", "bgai_head", "bgai_worker"},
    "redis": {"redis"},
    "mlflow": {"mlflow"},
    "prometheus": {"prometheus"},
    "grafana": {"grafana"},
    "supervisor": {"supervisor"},
}


def spec(role: str) -> dict[str, Any]:
    return yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


def example_inventory(**host_vars: Any) -> dict[str, Any]:
    """inventory.example.yml, its one host (head and worker) with `host_vars` added."""
    inventory = yaml.safe_load(EXAMPLE_INVENTORY.read_text())
    (host,) = inventory["all"]["children"]["workers"]["hosts"]
    inventory["all"]["children"]["workers"]["hosts"][host].update(host_vars)
    return inventory


def validated_roles(stdout: str) -> set[str]:
    return set(re.findall(r"^TASK \[(\w+) : Validating arguments against arg spec", stdout, re.M))


def test_every_role_has_an_argument_spec_for_all_its_defaults() -> None:
    """Each role documents every variable of its defaults/main.yml, with the same default where
    the spec gives one; ansible-doc reads them all."""
    assert {p.name for p in ROLES.iterdir()} == ALL_ROLES
    for role in ALL_ROLES:
        options = spec(role)["main"]["options"]
        defaults_file = ROLES / role / "defaults" / "main.yml"
        defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
        assert set(defaults) <= set(options), f"{role}: undocumented {set(defaults) - set(options)}"
        for name, option in options.items():
            assert option.get("type") and option.get("description"), f"{role}: {name}"
            if "default" in option:
                assert defaults[name] == option["default"], f"{role}: {name}"
    # the entry points deploy.yml includes (tasks_from) have specs of their own
    assert {"main", "node_exporter"} <= set(spec("prometheus"))
    assert {"main", "check"} <= set(spec("supervisor"))
    assert spec("bgai")["main"]["options"]["bgai_accelerator"]["choices"] == ["cuda", "metal", "cpu"]
    out = run(BIN / "ansible-doc", "-t", "role", "--list", "--json")
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)) == ALL_ROLES


def test_a_wrong_accelerator_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """deploy.yml says what to choose before any role starts; the bgai role alone refuses it too
    (its argument spec), before any of its tasks."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump(example_inventory(bgai_accelerator="tpu", bgai_home=str(tmp_path))))
    out = playbook("-i", inventory, "deploy.yml", *VALIDATE_ONLY)
    assert out.returncode != 0
    assert "bgai_accelerator: choose cuda, metal or cpu (got tpu)" in out.stdout, out.stdout[-3000:]
    assert not validated_roles(out.stdout), "the check comes before every role"

    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"hosts": "head", "gather_subset": ["min"], "roles": ["bgai"]}]))
    out = playbook("-i", inventory, play, "-e", json.dumps({"bgai_secrets": {}}), *VALIDATE_ONLY)
    assert out.returncode != 0
    refused = "value of bgai_accelerator must be one of: cuda, metal, cpu, got: tpu"
    assert refused in out.stdout, out.stdout[-3000:]
    assert validated_roles(out.stdout) == {"supervisor", "bgai"}  # (supervisor: bgai's dependency)


def test_metrics_ports_are_given_whole(tmp_path: Path) -> None:
    """bgai_metrics_ports replaces the default dict whole (Ansible merges no dicts): one with a
    kind left out is refused by the bgai role's spec, naming the missing ones, before any task."""
    inventory = tmp_path / "inventory.yml"
    partial = example_inventory(bgai_metrics_ports={"game": 9400}, bgai_home=str(tmp_path))
    inventory.write_text(yaml.safe_dump(partial))
    out = playbook("-i", inventory, "deploy.yml", *VALIDATE_ONLY)
    assert out.returncode != 0
    refused = "missing required arguments: coordinator, eval, training found in bgai_metrics_ports"
    assert refused in out.stdout, out.stdout[-3000:]


def test_remote_workers_without_redis_tls_are_refused_before_anything_runs(tmp_path: Path) -> None:
    """Hosts joined by token log in to Redis from outside the fleet's network: never in clear."""
    inventory = tmp_path / "inventory.yml"
    off = example_inventory(bgai_remote_workers=True, bgai_redis_tls=False, bgai_home=str(tmp_path))
    inventory.write_text(yaml.safe_dump(off))
    out = playbook("-i", inventory, "deploy.yml", *VALIDATE_ONLY)
    assert out.returncode != 0
    assert "bgai_remote_workers needs bgai_redis_tls" in out.stdout, out.stdout[-3000:]
    assert not validated_roles(out.stdout), "the check comes before every role"


def test_the_example_inventory_passes_every_role_spec() -> None:
    out = playbook("-i", EXAMPLE_INVENTORY, "deploy.yml", *VALIDATE_ONLY)
    assert out.returncode == 0, out.stdout[-4000:]
    assert validated_roles(out.stdout) == ALL_ROLES


def test_the_deployment_tests_inventory_passes_every_role_spec(tmp_path: Path) -> None:
    """The variables test_deploy.py's fleet sets (its inventory, built by its own code) are what
    the roles accept; its SSH hosts are this machine here (a local connection)."""
    from hosts import Host
    from test_deploy import WORKERS, make_inventory

    hosts = {name: Host(name, f"10.231.0.{11 + i}", tmp_path, f"ns-{name}") for i, name in enumerate(WORKERS)}
    ports = {"redis": 16379, "mlflow": 15000, "prometheus": 19090, "node": 19100, "alertmanager": 19093}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump(make_inventory(tmp_path, tmp_path / "key", hosts, ports, 18000)))
    out = playbook("-i", inventory, "deploy.yml", "-e", "ansible_connection=local", *VALIDATE_ONLY)
    assert out.returncode == 0, out.stdout[-4000:]
    assert validated_roles(out.stdout) == ALL_ROLES


def listed_tasks(*args: str) -> list[tuple[str, str, set[str]]]:
    """(role or "", task name, tags) of every task `ansible-playbook --list-tasks ARGS` lists."""
    out = run(BIN / "ansible-playbook", "-i", EXAMPLE_INVENTORY, "deploy.yml", "--list-tasks", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    found = []
    for m in re.finditer(r"^ {6}(?:(\w+) : )?(.+?)\tTAGS: \[(.*)\]$", out.stdout, re.M):
        found.append((m[1] or "", m[2], {t.strip() for t in m[3].split(",") if t.strip()}))
    return found


@pytest.mark.parametrize("phase", sorted(PHASES))
def test_a_tag_runs_one_phase(phase: str) -> None:
    """`--tags bgai` lists bgai's tasks (the wheel, the virtualenv, the config, the programs) and
    none of Redis, MLflow, Prometheus, Grafana or supervisord; so for every phase. Besides them
    only what always runs: the inventory's checks and each role's argument validation."""
    tasks = listed_tasks("--tags", phase)
    for role, name, tags in tasks:
        if role and not name.startswith("Validating arguments against arg spec"):
            assert role in PHASES[phase], f"--tags {phase} runs {role}: {name}"
        assert "always" in tags or phase in tags, (role, name, tags)
    ran = {role for role, name, tags in tasks if phase in tags}
    assert ran >= PHASES[phase], ran
    if phase == "bgai":
        names = {f"{role}: {name}" for role, name, _ in tasks}
        assert {
            ": Build the wheel into build/dist",
            "bgai: Copy bgai's wheel",
            "bgai: Write the fleet config",
            "bgai_head: Install the coordinator and training worker programs",
            "bgai_worker: Install the game and eval worker programs",
        } <= names


def notified(tasks: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for task in tasks:
        found |= set([task["notify"]] if isinstance(task.get("notify"), str) else task.get("notify", []))
        found |= notified(task.get("block", []) + task.get("rescue", []) + task.get("always", []))
    return found


def test_bgai_changes_restart_only_bgai_programs() -> None:
    """What bgai's roles notify restarts bgai's programs alone: `update` restarts only the
    programs whose files changed, and the restart handler loops over this host's bgai programs;
    nothing reloads supervisord (which would restart every program, Redis too)."""
    for role in PHASES["bgai"]:
        tasks = yaml.safe_load((ROLES / role / "tasks" / "main.yml").read_text())
        assert notified(tasks) <= {"Restart bgai programs", "Update supervisord"}, role
    (handler,) = yaml.safe_load((ROLES / "bgai" / "handlers" / "main.yml").read_text())
    assert handler["community.general.supervisorctl"]["state"] == "restarted"
    assert handler["loop"] == "{{ bgai_programs }}"
    # ... which are the programs of the files bgai_head and bgai_worker install
    programs = yaml.safe_load((ROLES / "bgai" / "vars" / "main.yml").read_text())["bgai_programs"]
    files = [REPO / "supervisor" / f"{n}.conf" for n in ("head", "game-workers", "eval-workers")]
    defined = {m for f in files for m in re.findall(r"^\[program:([\w-]+)\]", f.read_text(), re.M)}
    lists = re.findall(r"\[([^][]*)\] if", programs)  # (['coordinator', 'training-worker'] if ...)
    assert {name.rstrip(":") for items in lists for name in re.findall(r"'(.+?)'", items)} == defined


def test_os_values_come_from_the_inventory_first(tmp_path: Path) -> None:
    """Each role's per-OS values (vars/main.yml) are defaults: a host's inventory overrides them."""
    os_vars = {
        "supervisor": ["supervisor_os_python"],
        "redis": ["redis_os_binary", "redis_os_package", "redis_os_service"],
        "prometheus": [
            "prometheus_os_binary",
            "prometheus_os_promtool",
            "prometheus_os_node_exporter_package",
        ],
        "grafana": ["grafana_os_binary", "grafana_os_homepath"],
    }
    names = [name for group in os_vars.values() for name in group]
    custom = {name: f"/custom/{name}" for name in names}
    common = {"ansible_connection": "local", "bgai_home": str(tmp_path), "bgai_secrets": {}}
    hosts = {"custom": {"bgai_address": "10.9.0.1", **custom}, "plain": {"bgai_address": "10.9.0.2"}}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"vars": common, "hosts": hosts}}))
    show = {name: f"{{{{ {name} }}}}" for name in names} | {"os": "{{ ansible_facts.os_family }}"}
    play = [{
        "hosts": "all", "gather_subset": ["min"], "roles": ["redis", "prometheus", "grafana"],
        "vars": {"redis_maxmemory": 1 << 30},  # (its filter reads the fleet config beside the play)
        "tasks": [{"ansible.builtin.debug": {"msg": show}, "tags": ["always"]}],
    }]  # fmt: skip
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    out = playbook("-i", inventory, tmp_path / "play.yml", *VALIDATE_ONLY, env=MINIMAL)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    got = {host: result["msg"] for host, result in results(out.stdout) if "msg" in result}
    assert got["custom"] == custom | {"os": got["custom"]["os"]}
    for role, role_names in os_vars.items():
        table = yaml.safe_load((ROLES / role / "vars" / "main.yml").read_text())[f"_{role}_os"]
        for name in role_names:
            value = table[got["plain"]["os"]][name.removeprefix(f"{role}_os_")]
            if "{{" not in value:  # (macOS's are templates of Homebrew's prefix)
                assert got["plain"][name] == value, name


def test_the_example_inventory_is_committed_and_parses() -> None:
    """A fresh clone has the example only: ansible.cfg names inventory.yml (the user's copy), and
    deploy.yml without one says in a line what to do."""
    out = run(BIN / "ansible-inventory", "-i", EXAMPLE_INVENTORY, "--list")
    assert out.returncode == 0, out.stderr
    inventory = json.loads(out.stdout)
    assert len(inventory["head"]["hosts"]) == 1 and inventory["workers"]["hosts"]
    choices = spec("bgai")["main"]["options"]["bgai_accelerator"]["choices"]
    for host, host_vars in inventory["_meta"]["hostvars"].items():
        assert host_vars.get("bgai_accelerator", "cpu") in choices, host
        assert host_vars.get("bgai_address"), host
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "ansible.cfg")
    assert cfg["defaults"]["inventory"] == "inventory.yml"
    out = run(BIN / "ansible-playbook", "-i", REPO / "no-such-inventory.yml", "deploy.yml")
    assert out.returncode != 0
    assert "no head in the inventory: copy inventory.example.yml to inventory.yml" in out.stdout, out.stdout


def test_an_old_python_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """A host whose Python is older than requires-python stops at the bgai role's check, with
    the fix, before any virtualenv or pip; a new enough one passes."""
    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\necho 3.10.12\n")
    old.chmod(0o755)
    checks = ROLES / "bgai" / "tasks" / "python.yml"  # alone: not the role's dependencies
    play = [{
        "hosts": "localhost", "gather_facts": False,
        "vars": {"bgai_python_min": "3.11"},
        "tasks": [{"ansible.builtin.import_tasks": str(checks)}],
    }]  # fmt: skip
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    for python, ok in ((old, False), (Path(sys.executable), True)):
        out = playbook(tmp_path / "play.yml", "-e", f"supervisor_os_python={python}")
        assert (out.returncode == 0) == ok, out.stdout[-2000:]
        if not ok:
            assert "is Python 3.10.12; bgai needs 3.11 or newer" in out.stdout
            assert "set supervisor_os_python" in out.stdout


def test_a_mac_runs_jax_on_its_cpu_and_says_so() -> None:
    """bgai_accelerator metal installs no Metal plugin (jax-metal cannot load beside the pinned
    JAX) and tells bgai doctor the backend is the CPU; cuda adds the CUDA wheels."""
    defaults = yaml.safe_load((ROLES / "bgai" / "defaults" / "main.yml").read_text())
    assert defaults["bgai_jax_packages"] == {"cuda": ["jax[cuda12]"], "metal": [], "cpu": []}
    tasks = (ROLES / "bgai" / "tasks" / "main.yml").read_text()
    assert "bgai_accelerator metal runs JAX on the CPU" in tasks
    backend = jinja2.Template(defaults["bgai_jax_backend"])
    for accelerator, want in (("metal", "cpu"), ("cuda", "cuda"), ("cpu", "cpu")):
        assert backend.render(bgai_accelerator=accelerator) == want
