"""`bgai bench cube-bound`: the cube ER of reference probabilities with a share of a net's error,
or with random logit noise, and where it crosses a target."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_model import ARGS, SETS

from bgai.bench import cube_bound as cb
from bgai.bench.cubes import CubeSet, cube_error_rate, janowski_decisions
from bgai.cli.main import cli
from bgai.config import load_config, model_hash
from bgai.runs.manager import train_template
from bgai.train.checkpoint import save_checkpoint


def consistent(n: int, seed: int) -> np.ndarray:
    """Random cubeless probabilities [n, 5] in gnubg's order, each side's gammons within its wins
    and backgammons within its gammons."""
    rng = np.random.default_rng(seed)
    win = rng.uniform(0.05, 0.95, n)
    wg = win * rng.uniform(0, 0.4, n)
    lg = (1 - win) * rng.uniform(0, 0.4, n)
    return np.stack([win, wg, wg * rng.uniform(0, 0.2, n), lg, lg * rng.uniform(0, 0.2, n)], axis=1)


@pytest.fixture(scope="module")
def cubes() -> CubeSet:
    return CubeSet.load().head(200)


def test_a_share_of_the_error_mixes_the_two_and_stays_consistent(cubes: CubeSet) -> None:
    ref, ours = consistent(cubes.size, 1), consistent(cubes.size, 2)
    np.testing.assert_allclose(cb.shrunk(ref, ours, 0), ref)
    np.testing.assert_allclose(cb.shrunk(ref, ours, 1), ours)
    mid = cb.shrunk(ref, ours, 0.3)
    assert np.all(mid[:, 1] <= mid[:, 0] + 1e-12) and np.all(mid[:, 2] <= mid[:, 1] + 1e-12)
    # the row of the reference itself has no error and scores Janowski on the reference
    r = cb.row(cubes, "ref", ref, ref)
    assert r.win_abs == 0 and r.cube_er == pytest.approx(
        cube_error_rate(cubes, *janowski_decisions(cubes, ref)).er
    )
    contact = cubes.classes == cb.CONTACT
    assert cb.row(cubes, "x", ref, mid).win_abs == pytest.approx(0.3 * np.abs(ours - ref)[contact, 0].mean())


def test_logit_noise_moves_the_win_and_keeps_the_gammon_shares() -> None:
    ref = consistent(5000, 3)
    same = cb.logit_noise(ref, 0.0, np.random.default_rng(0))
    np.testing.assert_allclose(same, ref, atol=1e-9)
    noisy = cb.logit_noise(ref, 0.3, np.random.default_rng(0))
    assert np.all((noisy[:, 0] > 0) & (noisy[:, 0] < 1))
    np.testing.assert_allclose(noisy[:, 1:3] / noisy[:, :1], ref[:, 1:3] / ref[:, :1], rtol=1e-6)
    np.testing.assert_allclose(noisy[:, 3:5] / (1 - noisy[:, :1]), ref[:, 3:5] / (1 - ref[:, :1]), rtol=1e-6)
    logit = np.log(noisy[:, 0] / (1 - noisy[:, 0])) - np.log(ref[:, 0] / (1 - ref[:, 0]))
    assert logit.std() == pytest.approx(0.3, rel=0.05) and abs(logit.mean()) < 0.02


def test_the_noise_rows_are_seeded_and_their_error_grows_with_sigma(cubes: CubeSet) -> None:
    ref = consistent(cubes.size, 4)
    a = cb.noise_rows(cubes, ref, sigmas=(0.05, 0.3), seeds=2)
    assert a == cb.noise_rows(cubes, ref, sigmas=(0.05, 0.3), seeds=2)
    assert a[0].win_abs < a[1].win_abs and [r.label for r in a] == ["sigma 0.05", "sigma 0.3"]


def test_the_crossing_is_interpolated_between_rows() -> None:
    rows = [cb.BoundRow("a", 0.0, 1.0, 0), cb.BoundRow("b", 0.01, 2.0, 0), cb.BoundRow("c", 0.03, 6.0, 0)]
    assert cb.crossing(rows, 1.5) == pytest.approx(0.005)
    assert cb.crossing(rows, 4.0) == pytest.approx(0.02)
    assert cb.crossing(rows, 7.0) is None and cb.crossing(rows, 0.5) is None


@pytest.mark.skipif(not os.access("/usr/games/gnubg", os.X_OK), reason="needs Debian's gnubg")
def test_the_command_on_a_checkpoint(tmp_path: Path) -> None:
    cfg = load_config(None, env={}, overrides=SETS)
    ckpt = save_checkpoint(tmp_path, 5, train_template(cfg), {"model_hash": model_hash(cfg)})
    args = ["bench", "cube-bound", "--checkpoint", str(ckpt), "--decisions", "60", "--seeds", "1", *ARGS]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    res = json.loads(out.output.strip().splitlines()[-1])
    assert res["bench"] == "cube-bound" and res["target"] == pytest.approx(1.5 * res["anchor_gnubg_0ply"])
    shrunk = res["shrunk"]
    assert [r["label"] for r in shrunk][0] == "alpha 0" and shrunk[0]["win_abs"] == 0
    # alpha 1 is the checkpoint itself
    assert shrunk[-1]["cube_er"] == pytest.approx(res["checkpoints"][0]["cube_er"])
    assert len(res["noise"]) == len(cb.SIGMAS) and set(res["crossing"]) == {"shrunk", "noise"}
    out = CliRunner().invoke(cli, ["bench", "cube-bound", "--checkpoint", str(tmp_path / "none.bgai"), *ARGS])
    assert out.exit_code == 2
    bad = tmp_path / "ckpt_000000009.bgai"
    bad.write_bytes(b"not a checkpoint")
    out = CliRunner().invoke(cli, ["bench", "cube-bound", "--checkpoint", str(bad), *ARGS])
    assert out.exit_code == 2 and f"cannot use {bad}" in out.output and "Traceback" not in out.output
