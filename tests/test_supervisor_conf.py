"""The program files supervisord runs: a role that exits 2 (a refusal only an operator can fix:
a bad config, a wrong password, a checkpoint of another model) stays EXITED instead of being
restarted into the same refusal forever; a crash (exit 1, a signal) is restarted."""

from __future__ import annotations

import configparser
from pathlib import Path

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
