"""`bgai bench fleet`: steady rates from checkpoint headers (train-local's directory, the fleet's
run directory under its checkpoint root), CPU per role from Prometheus answers, the ratios."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bgai.bench.fleet import cpu_by_command, cpu_by_role, rates
from bgai.cli.main import cli
from bgai.train.checkpoint import save_checkpoint


def write(directory: Path, points: list[tuple[int, int, int, float]]) -> None:
    """Checkpoints at (step, games, positions, elapsed_s)."""
    for step, games, positions, elapsed in points:
        meta = {"step": step, "games": games, "positions": positions, "elapsed_s": elapsed}
        save_checkpoint(directory, step, {"w": np.zeros(2, np.float32)}, meta, keep=100)


def test_rates_between_the_first_and_the_newest_checkpoint(tmp_path: Path) -> None:
    write(
        tmp_path / "local",
        [(1000, 900, 50_000, 30.0), (2000, 1800, 100_000, 40.0), (3000, 2900, 160_000, 50.0)],
    )
    got = rates(tmp_path / "local")
    assert (got.checkpoints, got.games, got.steps, got.seconds) == (3, 2900, 3000, 20.0)
    assert got.positions_per_s == pytest.approx(110_000 / 20) and got.games_per_s == pytest.approx(100.0)
    assert got.steps_per_s == pytest.approx(100.0)
    # the fleet's checkpoints sit in a run directory under the root
    write(tmp_path / "fleet" / "run-a", [(1000, 700, 40_000, 60.0), (2000, 1500, 80_000, 80.0)])
    assert rates(tmp_path / "fleet").positions_per_s == pytest.approx(2000.0)
    write(tmp_path / "one", [(1000, 1, 1, 1.0)])
    with pytest.raises(ValueError, match="need two"):
        rates(tmp_path / "one")
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        rates(tmp_path / "missing")


def test_cpu_per_role_sums_processes_and_divides_by_their_life() -> None:
    def proc(role: str, cpu_s: float, start: float, time: float) -> dict:
        return {"role": role, "cpu_s": cpu_s, "start": start, "time": time}

    series = {
        "127.0.0.1:1": proc("game", 90.0, 1000.0, 1100.0),
        "127.0.0.1:2": proc("game", 30.0, 1040.0, 1100.0),
        "127.0.0.1:3": proc("training", 50.0, 1000.0, 1200.0),  # the last to stop
    }
    got = cpu_by_role({"series": series})
    assert got["game"] == {"processes": 2, "cpu_s": 120.0, "cores": pytest.approx(0.9 + 0.5)}
    assert got["training"] == {"processes": 1, "cpu_s": 50.0, "cores": pytest.approx(0.25)}
    procs = {  # CPU seconds when first and last seen: only what the fleet's time used counts
        "10": {"comm": "redis-server", "first": 0.0, "cpu_s": 12.0},
        "11": {"comm": "prometheus", "first": 1.0, "cpu_s": 20.0},
        "12": {"comm": "kworker", "first": 700.0, "cpu_s": 701.0},
        "13": {"comm": "prometheus", "first": 0.0, "cpu_s": 1.0},
    }
    assert cpu_by_command({"procs": procs}, top=2) == {"prometheus": 20.0, "redis-server": 12.0}


def test_the_command_prints_the_ratios(tmp_path: Path) -> None:
    write(tmp_path / "local", [(1000, 1000, 60_000, 10.0), (2000, 2000, 120_000, 20.0)])
    write(tmp_path / "fleet" / "r", [(1000, 800, 48_000, 10.0), (2000, 1700, 102_000, 20.0)])
    cpu = tmp_path / "cpu.json"
    cpu.write_text(json.dumps({"series": {}}))
    args = ["bench", "fleet", "--local", str(tmp_path / "local"), "--fleet", str(tmp_path / "fleet")]
    out = CliRunner().invoke(cli, [*args, "--cpu", str(cpu)])
    assert out.exit_code == 0, out.output
    figures = json.loads(out.output.strip().splitlines()[-1])
    assert figures["positions_ratio"] == pytest.approx(0.9) and figures["games_ratio"] == pytest.approx(0.9)
    (tmp_path / "empty").mkdir()
    missing = CliRunner().invoke(cli, [*args[:4], "--fleet", str(tmp_path / "empty")])
    assert missing.exit_code == 2 and "no checkpoints" in missing.output, missing.output
