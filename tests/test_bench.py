"""The benchmarks run and end with one JSON line (they measure; nothing here asserts a speed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bgai.cli.main import cli
from bgai.opponents.gnubg import DEFAULT_BINARY

SMALL = [
    "--set",
    "model.hidden=[16]",
    "--set",
    "movegen.max_plays=32",
    "--set",
    "movegen.frontier2=32",
    "--set",
    "movegen.frontier3=64",
    "--set",
    "selfplay.chunk_turns=4",
]


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_bench_train() -> None:
    out = CliRunner().invoke(cli, ["bench", "train", "--batch", "32", "--repeats", "1", *SMALL])
    assert out.exit_code == 0, out.output
    assert _last_json(out.output)["samples_per_s"] > 0


def test_bench_bearoff(tmp_path: Path) -> None:
    """Builds, writes and reads back the database, and compares with gnubg where it is here."""
    gnubg = os.access(DEFAULT_BINARY, os.X_OK)
    args = ["bench", "bearoff", "--dir", str(tmp_path), "--gnubg", "12" if gnubg else "0"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    res = _last_json(out.output)
    assert res["positions"] == 54264 and res["build_s"] > 0 and res["load_s"] > 0
    assert (tmp_path / "bearoff-os6-15.npz").exists()
    assert not gnubg or res["gnubg_positions"] == 12 and max(res["gnubg_max_abs_diff"]) < 1e-3


def test_bench_targets() -> None:
    out = CliRunner().invoke(cli, ["bench", "targets", "--games", "2", "--repeats", "1", *SMALL])
    assert out.exit_code == 0, out.output
    res = _last_json(out.output)
    assert res["positions"] > 0 and res["td_positions_per_s"] > 0 and res["one_ply_positions_per_s"] > 0


def test_bench_selfplay_afterstate() -> None:
    out = CliRunner().invoke(cli, ["bench", "selfplay", "--batch", "4", "--repeats", "1", *SMALL])
    assert out.exit_code == 0, out.output
    res = _last_json(out.output)
    assert res["decisions_per_s"] > 0 and res["mode"] == "afterstate"


def test_bench_selfplay_profile() -> None:
    """Every stage timed, its share of the chunk, and the achieved rate against the ceiling."""
    from bgai.bench.profile import STAGES

    out = CliRunner().invoke(
        cli, ["bench", "selfplay", "--profile", "--batch", "4", "--repeats", "1", *SMALL]
    )
    assert out.exit_code == 0, out.output
    res = _last_json(out.output)
    assert res["bench"] == "selfplay-profile" and set(res["seconds"]) == {*STAGES, "chunk"}
    assert all(v > 0 for v in res["seconds"].values())
    assert res["ceiling_decisions_per_s"] > 0 and res["ratio_to_ceiling"] > 0
    assert 1 <= res["legal_plays_per_decision"] <= 32
    assert "of it" in out.output and "network alone" in out.output
    bad = CliRunner().invoke(cli, ["bench", "selfplay", "--profile", "--mode", "mcts", *SMALL])
    assert bad.exit_code == 2 and "afterstate" in bad.output


def test_bench_selfplay_mcts_with_baseline() -> None:
    args = ["bench", "selfplay", "--mode", "mcts", "--sims", "2", "--batch", "2", "--repeats", "1", *SMALL]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    res = _last_json(out.output)
    assert {"sims_per_s", "baseline_sims_per_s", "ratio"} <= set(res)


def test_bench_buffer_on_real_redis() -> None:
    args = ["bench", "buffer", "--positions", "20000", "--pushes", "50", "--repeats", "3", "--sample", "256"]
    out = CliRunner().invoke(cli, [*args, *SMALL])
    assert out.exit_code == 0, out.output
    res = _last_json(out.output)
    assert res["bench"] == "buffer" and 20000 - 600 <= res["positions"] <= 20000
    assert res["bytes_per_position"] > 0 and res["push_ms_median"] > 0 and res["sample_ms_median"] > 0


def test_bench_propagation_with_a_real_worker() -> None:
    fleet = str(Path(__file__).parent / "fleet.yaml")
    out = CliRunner().invoke(
        cli, ["bench", "propagation", "--config", fleet, "--workers", "1", "--repeats", "2"]
    )
    assert out.exit_code == 0, out.output
    res = _last_json(out.output)
    assert res["bench"] == "propagation" and res["publishes"] == 2 and res["latency_s_median"] > 0


def test_bench_eval() -> None:
    pytest.importorskip("gnubg_nn")
    args = ["bench", "eval", "--games", "4", "--pairs", "2", "--repeats", "1", *SMALL]
    args += ["--opponent", "pubeval", "--opponent", "gnubg_0ply:nn"]
    if Path("/usr/games/gnubg").exists():
        args += ["--opponent", "gnubg_0ply:external"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    res = _last_json(out.output)
    assert res["pubeval"]["games_per_min"] > 0 and res["gnubg_0ply_nn"]["games_per_min"] > 0


def test_bench_compile() -> None:
    """Two fresh processes on one empty cache: the figures come back (the hit itself is shown by
    tests/test_compile_cache.py)."""
    out = CliRunner().invoke(cli, ["bench", "compile", "--batch", "4", "--repeats", "1", *SMALL])
    assert out.exit_code == 0, out.output
    res = _last_json(out.output)
    assert res["cold_first_chunk_s"] > 0 and res["cached_first_chunk_s"] > 0 and res["process_ratio"] > 0


def test_gpu_check_runs_on_this_cpu() -> None:
    """`scripts/gpu-check` as a user runs it (its CPU sizes here, the configured net): it says no
    GPU was found and ends with one JSON line holding every benchmark's figures."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".venv" / "bin" / "bgai").exists():
        pytest.skip("needs the repository's .venv (scripts/install)")
    proc = subprocess.run(
        [str(root / "scripts" / "gpu-check")], cwd=root, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = _last_json(proc.stdout)
    if res["gpu"]:
        pytest.skip("this host has a GPU: the check ran at GPU sizes")
    assert "no GPU found" in proc.stdout and res["sizes"] == "cpu" and res["backend"] == "cpu"
    runs = res["runs"]
    assert set(runs) == {"selfplay_afterstate_64", "selfplay_mcts_16", "train_256", "targets"}
    assert runs["selfplay_afterstate_64"]["decisions_per_s"] > 0 and runs["train_256"]["samples_per_s"] > 0
    assert runs["targets"]["td_positions_per_s"] > 0 and runs["targets"]["one_ply_positions_per_s"] > 0
