"""The `bgai` command line (click's CliRunner)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bgai.cli.main import cli


def test_help() -> None:
    out = CliRunner().invoke(cli, ["--help"])
    assert out.exit_code == 0 and "train-local" in out.output and "bench" in out.output


def test_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  learning_rat: 0.1\n")
    out = CliRunner().invoke(cli, ["train-local", "--config", str(bad), "--minutes", "0"])
    assert out.exit_code == 2 and "training.learning_rat" in out.output
    out = CliRunner().invoke(cli, ["train-local", "--set", "selfplay.batch_size=zero", "--minutes", "0"])
    assert out.exit_code == 2 and "selfplay.batch_size" in out.output
    out = CliRunner().invoke(cli, ["train-local", "--config", str(tmp_path / "missing.yaml")])
    assert out.exit_code == 2


def test_train_local_tiny_run_and_resume(tmp_path: Path) -> None:
    args = [
        "train-local",
        "--minutes",
        "0.001",
        "--checkpoint-dir",
        str(tmp_path),
        "--eval-games",
        "8",
        "--set",
        "model.hidden=[16]",
        "--set",
        "selfplay.batch_size=8",
        "--set",
        "selfplay.chunk_turns=200",
        "--set",
        "movegen.max_plays=64",
        "--set",
        "movegen.frontier2=48",
        "--set",
        "movegen.frontier3=96",
        "--set",
        "training.min_buffer_positions=1",
        "--set",
        "training.batch_size=16",
    ]
    out = CliRunner().invoke(cli, [*args, "--set", "eval.opponents=[random]"])
    assert out.exit_code == 0, out.output
    assert "games" in out.output and "eval vs random" in out.output
    first = sorted(tmp_path.glob("ckpt_*.bgai"))
    assert first
    again = CliRunner().invoke(cli, [*args, "--eval-games", "0"])
    assert again.exit_code == 0 and "resumed from" in again.output, again.output
    assert sorted(tmp_path.glob("ckpt_*.bgai"))[-1].name > first[-1].name, "training went on from there"


def test_fleet_commands_refuse_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    for command in ("coordinator", "game-worker", "training-worker", "eval-worker", "status", "check-config"):
        out = CliRunner().invoke(cli, [command, "--set", "redis.port=0"])
        assert out.exit_code == 2 and "redis.port" in out.output, (command, out.output)
    bad = tmp_path / "bad.yaml"
    bad.write_text("redis:\n  hots: 10.0.0.1\n")
    out = CliRunner().invoke(cli, ["game-worker", "--config", str(bad)])
    assert out.exit_code == 2 and "redis.hots" in out.output and "did you mean redis.host" in out.output
    # the config file also comes from BGAI_CONFIG, as supervisord and Ansible set it
    out = CliRunner().invoke(cli, ["check-config"], env={"BGAI_CONFIG": str(bad)})
    assert out.exit_code == 2 and "redis.hots" in out.output, out.output


def test_metrics_listen_on_loopback_unless_told() -> None:
    """/metrics has no authentication: a role started by hand serves it on loopback, never on
    every interface (the supervisor programs pass the host's fleet address, BGAI_METRICS_ADDR)."""
    from bgai.cli.fleet import ROLE_COMMANDS
    from bgai.obs.metrics import RoleMetrics

    for command in ROLE_COMMANDS:
        (addr,) = [p for p in command.params if p.name == "metrics_addr"]
        assert addr.default == "127.0.0.1", command.name
    metrics = RoleMetrics("test:game", "game", "test")
    metrics.serve(0)
    try:
        assert metrics._server.server_address[0] == "127.0.0.1"
    finally:
        metrics.close()
