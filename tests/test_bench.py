"""The benchmarks run and end with one JSON line (they measure; nothing here asserts a speed)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from bgai.cli.main import cli

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


def test_bench_selfplay_afterstate() -> None:
    out = CliRunner().invoke(cli, ["bench", "selfplay", "--batch", "4", "--repeats", "1", *SMALL])
    assert out.exit_code == 0, out.output
    res = _last_json(out.output)
    assert res["decisions_per_s"] > 0 and res["mode"] == "afterstate"


def test_bench_selfplay_mcts_with_baseline() -> None:
    args = ["bench", "selfplay", "--mode", "mcts", "--sims", "2", "--batch", "2", "--repeats", "1", *SMALL]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    res = _last_json(out.output)
    assert {"sims_per_s", "baseline_sims_per_s", "ratio"} <= set(res)
