"""The cube decision set and the cube ER: losses by hand, the file format, a small build with
Debian's gnubg, and `bgai bench strength --cube` on it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bgai.bench.cubes import CubeSet, cube_error_rate, cube_losses, gnubg_decisions
from bgai.cli.main import cli

SETS = ["--set", "model.hidden=[16]", "--set", "movegen.max_plays=64"]
SETS += ["--set", "movegen.frontier2=48", "--set", "movegen.frontier3=96"]


def test_losses_by_hand() -> None:
    eq = np.array(
        [
            [0.50, 0.80, 1.0],  # double, take
            [0.70, 1.30, 1.0],  # double, pass
            [0.40, 0.20, 1.0],  # no double, take
            [1.40, 1.80, 1.0],  # too good: no double (the opponent would pass)
        ]
    )
    double, take = gnubg_decisions(eq)
    assert double.tolist() == [True, True, False, False] and take.tolist() == [True, False, True, False]
    ld, lt = cube_losses(eq, double, take)
    assert np.allclose(ld, 0) and np.allclose(lt, 0)  # the reference's own decisions lose nothing
    ld, lt = cube_losses(eq, ~double, ~take)  # every decision the other way
    np.testing.assert_allclose(ld, [0.30, 0.30, 0.20, 0.40])
    np.testing.assert_allclose(lt, [0.20, 0.30, 0.80, 0.80])


def _tiny(n: int = 4) -> CubeSet:
    rng = np.random.default_rng(0)
    eq = np.column_stack([rng.uniform(-0.5, 1.0, n), rng.uniform(-1.0, 2.0, n), np.ones(n)])
    boards = np.zeros((n, 28), np.int8)
    return CubeSet(
        boards, rng.random(n) < 0.5, np.zeros(n, np.int8), eq.astype(np.float32), eq.astype(np.float32)
    )


def test_the_file_round_trips_and_bad_sets_are_refused(tmp_path: Path) -> None:
    s = _tiny()
    s.save(tmp_path / "c.npz")
    back = CubeSet.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.equities, s.equities)
    r = cube_error_rate(back, *gnubg_decisions(back.equities))
    assert r.er == 0.0 and r.right == 1.0
    bad = CubeSet(s.boards, s.owned, s.classes, s.equities * 2, s.equities_0ply)  # a pass worth 2 cubes
    with pytest.raises(ValueError, match="double/pass"):
        bad.check()


@pytest.mark.skipif(not os.access("/usr/games/gnubg", os.X_OK), reason="needs Debian's gnubg")
def test_a_small_build_and_our_cube_er(tmp_path: Path) -> None:
    pytest.importorskip("gnubg_nn")
    path = tmp_path / "cubes.npz"
    runner = CliRunner()
    args = [
        "bench",
        "build-cubes",
        "--decisions",
        "12",
        "--candidates",
        "60",
        "--workers",
        "1",
        "--out",
        str(path),
    ]
    out = runner.invoke(cli, args)
    assert out.exit_code == 0, out.output
    s = CubeSet.load(path)
    assert s.size == 12 and s.meta["gnubg"].startswith("GNU Backgammon")
    # the 0-ply and 2-ply analyses agree on most close decisions, not on all
    d0, d2 = gnubg_decisions(s.equities_0ply)[0], gnubg_decisions(s.equities)[0]
    assert np.mean(d0 == d2) > 0.5
    out = runner.invoke(cli, ["bench", "strength", "--cube", "--set-file", str(path), *SETS])
    assert out.exit_code == 0, out.output
    res = json.loads(out.output.strip().splitlines()[-1])
    assert res["bench"] == "strength-cube" and res["decisions"] == 12
    assert res["er"] >= 0 and 0 <= res["anchor_gnubg_0ply"]["er"] < 1000
    assert "ours on gnubg 0-ply probs" in res["rows"] and set(res["probability_gap"]) <= {
        "contact",
        "race",
        "bearoff",
    }
    out = runner.invoke(cli, ["bench", "strength", "--cube", "--plies", "2", "--set-file", str(path), *SETS])
    assert out.exit_code == 0, out.output
    res = json.loads(out.output.strip().splitlines()[-1])
    assert res["player"].endswith(" 2-ply") and res["decisions"] == 12 and res["plies"] == 2
    # the shallower depths' rows, and the paired differences: on the same positions, the mean
    # of the per-position differences is the difference of the two cube ERs
    for k in ("0", "1"):
        row = res["rows"][res["player"].replace(" 2-ply", f" {k}-ply")]
        p = res["paired_vs_shallower"][k]
        assert p["decisions"] == 12 and p["ci"] >= 0
        assert p["diff"] == pytest.approx(res["er"] - row["er"], abs=1e-6)
    out = runner.invoke(cli, ["bench", "strength", "--cube", "--plies", "4", "--set-file", str(path), *SETS])
    assert out.exit_code == 2 and "--plies" in out.output
    out = runner.invoke(cli, ["bench", "strength", "--plies", "3", *SETS])  # checker play: 2 at most
    assert out.exit_code == 2 and "3 only with --cube" in out.output
    againsts = ["--against", str(path), "--set-file", str(path), *SETS]
    out = runner.invoke(cli, ["bench", "strength", "--cube", *againsts])  # the set is no checkpoint
    assert out.exit_code == 2 and "cannot use" in out.output


@pytest.mark.skipif(not os.access("/usr/games/gnubg", os.X_OK), reason="needs Debian's gnubg")
def test_our_cube_logic_on_gnubgs_probabilities_makes_gnubgs_decisions() -> None:
    """On the shipped set's contact and race positions, Janowski's model as bgai computes it,
    fed gnubg 0-ply's own cubeless probabilities, makes the decisions of gnubg's 0-ply cube
    analysis (bear-offs aside: gnubg values those from its two-sided database, cubefully)."""
    from bgai.bench.cubes import janowski_decisions
    from bgai.opponents.gnubg import GnubgExternal

    s = CubeSet.load()
    keep = s.classes != 2
    s = CubeSet(s.boards[keep], s.owned[keep], s.classes[keep], s.equities[keep], s.equities_0ply[keep])
    with GnubgExternal() as gnubg:
        p = np.stack([gnubg.evaluate(b.astype(np.int32), 0) for b in s.boards])
    double, take = janowski_decisions(s, p)
    want_double, want_take = gnubg_decisions(s.equities_0ply)
    assert s.size > 400
    assert np.mean(double == want_double) > 0.99 and np.mean(take == want_take) > 0.99
    ours, theirs = cube_error_rate(s, double, take), cube_error_rate(s, want_double, want_take)
    assert ours.er == pytest.approx(theirs.er, abs=0.05)
