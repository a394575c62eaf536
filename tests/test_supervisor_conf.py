"""The program files supervisord runs: a role that exits 2 (a refusal only an operator can fix:
a bad config, a wrong password, a checkpoint of another model) stays EXITED instead of being
restarted into the same refusal forever; a crash (exit 1, a signal) is restarted. Each serves
/metrics on a fixed port, its kind's base plus its number, which every starter of the files sets."""

from __future__ import annotations

import configparser
from pathlib import Path

import yaml
from supervised import ANY_METRICS_PORTS

from bgai.obs.ports import DEFAULT_METRICS_PORTS, port_env

REPO = Path(__file__).resolve().parents[1]


def bgai_programs() -> dict[str, configparser.SectionProxy]:
    found = {}
    for conf in sorted((REPO / "supervisor").glob("*.conf")):
        parser = configparser.RawConfigParser(strict=False)
        parser.read(conf)
        for section in parser.sections():
            if section.startswith("program:") and "/bgai " in parser[section].get("command", ""):
                found[f"{conf.name} {section}"] = parser[section]
    return found


def test_every_bgai_program_stops_on_a_refusal_and_restarts_on_a_crash() -> None:
    programs = bgai_programs()
    assert {name.split()[1] for name in programs} == {
        "program:coordinator",
        "program:training-worker",
        "program:game-worker",
        "program:eval-worker",
    }
    for name, program in programs.items():
        assert program.get("autorestart") == "unexpected", name
        codes = {int(c) for c in program.get("exitcodes", "0").split(",")}
        assert codes == {0, 2}, f"{name}: exitcodes {sorted(codes)}"


def test_no_program_is_handed_a_password_through_its_environment() -> None:
    """Each role reads its own password from its own file (`redis.password_file`): a program's
    `environment=` names that file, never a secret, and no file expands one from supervisord's
    environment (which every program, Redis, MLflow and Prometheus too, would then inherit)."""
    for conf in sorted((REPO / "supervisor").glob("*.conf")):
        assert "ENV_BGAI_SECRET_" not in conf.read_text(), conf.name
    for name, program in bgai_programs().items():
        env = program.get("environment", "")
        assert "BGAI_REDIS__PASSWORD_FILE=" in env, name
        assert "PASSWORD=" not in env and "BGAI_SECRET_" not in env, f"{name}: {env}"


# program -> (its kind, whether supervisord runs several: numprocs)
KINDS = {
    "program:coordinator": ("coordinator", False),
    "program:training-worker": ("training", False),
    "program:game-worker": ("game", True),
    "program:eval-worker": ("eval", True),
}


def test_every_bgai_program_serves_metrics_on_its_kinds_port_plus_its_number() -> None:
    """Fixed ports a firewall can open: the program's kind's base (BGAI_METRICS_PORT_<KIND>, which
    every starter sets) plus its process number where supervisord runs several (game-worker-N)."""
    for name, program in bgai_programs().items():
        kind, numbered = KINDS[name.split()[1]]
        command = program["command"]
        assert f"--metrics-port %(ENV_{port_env(kind)})s " in command, name
        assert ("--metrics-port-offset %(process_num)d " in command) == numbered, name
        assert "--metrics-addr %(ENV_BGAI_METRICS_ADDR)s " in command, name


def test_every_starter_of_the_program_files_sets_every_metrics_port() -> None:
    """supervisord refuses a file naming an unset %(ENV_X)s: scripts/fleet-local defaults each base
    to bgai.obs.ports's (its caller's environment first), the Ansible bgai role writes its
    bgai_metrics_ports (the same defaults) into the programs, and the tests use 0 (any free
    port: several fleets run at once)."""
    fleet_local = (REPO / "scripts" / "fleet-local").read_text()
    role = REPO / "ansible" / "roles" / "bgai"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    expansions = yaml.safe_load((role / "vars" / "main.yml").read_text())["bgai_program_expansions"]
    assert defaults["bgai_metrics_ports"] == DEFAULT_METRICS_PORTS
    for kind, port in DEFAULT_METRICS_PORTS.items():
        name = port_env(kind)
        assert f"{name}=${{{name}:-{port}}}" in fleet_local, name
        assert expansions[name] == f"{{{{ bgai_metrics_ports.{kind} }}}}", name
        assert ANY_METRICS_PORTS[name] == "0", name
