"""Each bgai program's /metrics port: its kind's base plus its process number (bgai/obs/ports.py),
as the command line takes it (`--metrics-port BASE --metrics-port-offset N`)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bgai.cli.main import cli
from bgai.obs.ports import DEFAULT_METRICS_PORTS, metrics_port, port_env


def test_a_program_serves_its_kinds_base_plus_its_number() -> None:
    assert metrics_port(9320, 0) == 9320
    assert metrics_port(9320, 3) == 9323
    assert metrics_port(65000, 535) == 65535


def test_base_0_is_any_free_port_whatever_the_number() -> None:
    assert metrics_port(0, 0) == 0
    assert metrics_port(0, 7) == 0


def test_a_port_past_65535_or_a_negative_one_is_refused() -> None:
    with pytest.raises(ValueError, match="65536 is past 65535"):
        metrics_port(65535, 1)
    with pytest.raises(ValueError, match=">= 0"):
        metrics_port(9320, -1)
    with pytest.raises(ValueError, match=">= 0"):
        metrics_port(-1, 0)


def test_the_default_ports_are_fixed_and_leave_40_game_workers_room() -> None:
    assert DEFAULT_METRICS_PORTS == {"coordinator": 9310, "training": 9311, "game": 9320, "eval": 9360}
    ports = DEFAULT_METRICS_PORTS
    game = {metrics_port(ports["game"], n) for n in range(40)}
    assert not game & {ports["coordinator"], ports["training"], ports["eval"]}
    assert port_env("game") == "BGAI_METRICS_PORT_GAME"
    assert port_env("coordinator") == "BGAI_METRICS_PORT_COORDINATOR"
    with pytest.raises(ValueError, match="no metrics port for role kind 'gnubg'"):
        port_env("gnubg")


def test_every_role_command_takes_an_offset_and_refuses_a_port_past_65535() -> None:
    """--metrics-port-offset: 0 to 1000, default 0, on every role command; a sum past 65535 is a
    usage error (exit 2) naming the option, before any config or Redis is touched."""
    from bgai.cli.fleet import ROLE_COMMANDS

    for command in ROLE_COMMANDS:
        (offset,) = [p for p in command.params if p.name == "metrics_port_offset"]
        assert offset.default == 0, command.name
        out = CliRunner().invoke(
            cli, [str(command.name), "--metrics-port", "65535", "--metrics-port-offset", "1"]
        )
        assert out.exit_code == 2 and "--metrics-port-offset" in out.output, (command.name, out.output)
        assert "65536 is past 65535" in out.output, out.output
    out = CliRunner().invoke(cli, ["game-worker", "--metrics-port", "9320", "--metrics-port-offset", "1001"])
    assert out.exit_code == 2 and "1001 is not in the range 0<=x<=1000" in out.output, out.output
