"""`bgai bench strength`: the ER arithmetic on a hand-built set, and a small run of the command.

Nothing here asserts a strength: only the JSON's shape, that ERs are finite and >= 0, and one
order that the file fixes (random play gives up more than gnubg 0-ply's stored choices).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bgai.bench.cubes import CubeSet, cube_error_rate, gnubg_decisions
from bgai.bench.decisions import BEAROFF, CONTACT, RACE, DecisionSet
from bgai.bench.strength import (
    error_rate,
    evaluate_er,
    gnubg_0ply_scorer,
    paired_difference,
    random_scorer,
)
from bgai.cli.main import cli
from bgai.config import load_config, model_hash
from bgai.core import rules
from bgai.runs.manager import train_template
from bgai.train.checkpoint import save_checkpoint

SETS = {"model.hidden": "[16]"}
ARGS = [x for k, v in SETS.items() for x in ("--set", f"{k}={v}")]
KEYS = ("er", "er_contact", "er_race", "er_bearoff")


def two_decisions() -> DecisionSet:
    """Decision 0 (contact): three plays worth +0.5, +0.2, -0.1; decision 1 (race): 0.0 and -0.4."""
    start = np.asarray(rules.start_board(), np.int8)
    equity = np.array([0.5, 0.2, -0.1, 0.0, -0.4], np.float32)
    return DecisionSet(
        boards=np.stack([start, start]),
        dice=np.array([[3, 1], [6, 5]], np.int8),
        classes=np.array([CONTACT, RACE], np.int8),
        offsets=np.array([0, 3, 5], np.int32),
        afterstates=np.tile(start, (5, 1)),
        equity=equity,
        equity_0ply=np.array([0.1, 0.3, 0.0, -0.2, -0.1], np.float32),  # picks 0.2, then -0.4
    )


def test_error_rate_is_the_mean_equity_lost_per_decision_times_1000() -> None:
    s = two_decisions()
    s.check()
    # decision 0 plays +0.2 (loses 0.3); decision 1 ties its two plays (loses 0.4 / 2 = 0.2)
    r = error_rate(s, np.array([0.0, 1.0, 0.5, 7.0, 7.0]))
    assert r.decisions == 2
    assert r.er == pytest.approx(250.0, abs=1e-4)
    assert r.er_contact == pytest.approx(300.0, abs=1e-4)
    assert r.er_race == pytest.approx(200.0, abs=1e-4)
    assert r.er_bearoff is None
    assert r.best == pytest.approx(0.25)  # decision 1's tie holds the best play half the time
    # losses 300 and 200: sample sd 70.7, so the 95% half-width is 1.96 * 70.7 / sqrt(2) = 98
    assert r.er_ci == pytest.approx(1.96 * np.std([300.0, 200.0], ddof=1) / np.sqrt(2), abs=1e-3)


def test_the_best_play_loses_nothing_and_the_anchors_read_the_file() -> None:
    s = two_decisions()
    perfect = error_rate(s, s.equity)
    assert perfect.er == 0.0 and perfect.best == 1.0
    # random: the mean loss over each decision's plays, (0 + 0.3 + 0.6) / 3 and (0 + 0.4) / 2
    assert evaluate_er(s, random_scorer).er == pytest.approx(1000 * (0.3 + 0.2) / 2, abs=1e-4)
    assert evaluate_er(s, gnubg_0ply_scorer).er == pytest.approx(1000 * (0.3 + 0.4) / 2, abs=1e-4)


def test_error_rate_refuses_scores_that_do_not_fit() -> None:
    s = two_decisions()
    with pytest.raises(ValueError, match="finite score per play"):
        error_rate(s, np.zeros(4))
    with pytest.raises(ValueError, match="finite score per play"):
        error_rate(s, np.array([0.0, np.nan, 0.0, 0.0, 0.0]))


def test_the_paired_difference_is_taken_decision_by_decision() -> None:
    s = two_decisions()
    ours = np.array([0.0, 1.0, 0.5, 7.0, 7.0])  # loses 300 and 200 (the tie)
    theirs = s.equity  # the best plays: loses 0 and 0
    p = paired_difference(s, ours, theirs)
    assert p["all"]["diff"] == pytest.approx(250.0, abs=1e-4)  # ER 250 minus ER 0
    assert p["all"]["decisions"] == 2
    assert p["all"]["ci"] == pytest.approx(1.96 * np.std([300.0, 200.0], ddof=1) / np.sqrt(2), abs=1e-3)
    assert p["contact"]["diff"] == pytest.approx(300.0, abs=1e-4) and p["contact"]["ci"] == 0.0
    assert p["race"]["diff"] == pytest.approx(200.0, abs=1e-4)
    assert p["bearoff"] is None
    back = paired_difference(s, theirs, ours)  # the other way round: the sign flips
    assert back["all"]["diff"] == pytest.approx(-250.0, abs=1e-4)
    # the same losses on both sides: no difference and no spread, however large the ER
    assert paired_difference(s, ours, ours)["all"] == {"diff": 0.0, "ci": 0.0, "decisions": 2}


def test_head_keeps_whole_decisions() -> None:
    s = two_decisions().head(1)
    s.check()
    assert s.size == 1 and len(s.afterstates) == 3 and s.classes.tolist() == [CONTACT]
    assert BEAROFF not in s.classes


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(None, env={}, overrides=SETS)
    meta = {"model_hash": model_hash(cfg), "model_version": 1}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), 1, train_template(cfg), meta)


def strength(*args: str) -> tuple[int, str]:
    out = CliRunner().invoke(cli, ["bench", "strength", *args, *ARGS])
    return out.exit_code, out.output


def test_bench_strength_on_300_decisions(ckpt: Path) -> None:
    code, out = strength("--checkpoint", str(ckpt), "--decisions", "300")
    assert code == 0, out
    assert "gnubg_0ply" in out and "pubeval" in out and ckpt.name in out
    res = json.loads(out.strip().splitlines()[-1])
    assert res["bench"] == "strength" and res["decisions"] == 300 and res["player"] == ckpt.name
    assert sum(res["classes"].values()) == 300 and all(res["classes"].values())
    assert set(res["anchors"]) == {"pubeval", "gnubg_0ply", "random"}
    for r in [res, *res["anchors"].values()]:
        assert r["decisions"] == 300
        assert all(math.isfinite(r[k]) and r[k] >= 0 for k in KEYS), r
    anchors = res["anchors"]
    assert anchors["random"]["er"] > anchors["gnubg_0ply"]["er"]  # fixed by the file alone


def test_bench_strength_against_a_second_checkpoint(ckpt: Path, tmp_path: Path) -> None:
    import jax

    from bgai.agent import net_of
    from bgai.core.network import init_params

    cfg = load_config(None, env={}, overrides=SETS)
    other = train_template(cfg)
    other["params"] = init_params(net_of(cfg), jax.random.key(7))  # another untrained net
    meta = {"model_hash": model_hash(cfg), "model_version": 1}
    theirs = save_checkpoint(tmp_path, 1, other, meta)  # the same file name as `ckpt`'s
    code, out = strength("--checkpoint", str(ckpt), "--against", str(theirs), "--decisions", "300")
    assert code == 0, out
    res = json.loads(out.strip().splitlines()[-1])
    assert res["player"] == str(ckpt) and res["against"] == str(theirs)  # told apart by path
    paired = res["paired"]
    assert paired["all"]["decisions"] == 300
    assert paired["all"]["diff"] == pytest.approx(res["er"] - res["against_er"]["er"], abs=1e-3)
    assert paired["all"]["diff"] != 0.0  # two different nets: not the same plays everywhere
    assert "paired" in out and "minus" in out
    code, out = strength("--checkpoint", str(ckpt), "--against", str(ckpt), "--decisions", "50")
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["paired"]["all"]["diff"] == 0.0
    code, out = strength("--checkpoint", str(ckpt), "--against", str(tmp_path / "none.bgai"))
    assert code == 2 and "cannot use" in out


def test_an_ensemble_against_its_member_with_against_set(ckpt: Path, tmp_path: Path) -> None:
    """--against-set gives the --against checkpoint its own model: an ensemble of two nets
    (--set model.ensemble=2) paired with one of its members (--against-set model.ensemble=1), on
    checker-play decisions and (--cube) on cube decisions."""
    import jax

    from bgai.agent import net_of
    from bgai.core.network import init_params
    from bgai.train.ensemble import ensemble_checkpoints

    cfg = load_config(None, env={}, overrides=SETS)
    other = train_template(cfg)
    other["params"] = init_params(net_of(cfg), jax.random.key(7))
    member = save_checkpoint(
        tmp_path / "members", 2, other, {"model_hash": model_hash(cfg), "model_version": 2}
    )
    ens_cfg = load_config(None, env={}, overrides={**SETS, "model.ensemble": "2"})
    ens = ensemble_checkpoints([ckpt, member], tmp_path / "ens", model_hash(cfg), model_hash(ens_cfg))
    mine = ["--set", "model.ensemble=2", "--checkpoint", str(ens), "--against", str(member)]
    code, out = strength(*mine, "--against-set", "model.ensemble=1", "--decisions", "200")
    assert code == 0, out
    res = json.loads(out.strip().splitlines()[-1])
    # the ensemble sits at its newest member's step: the same file name, told apart by the path
    assert res["paired"]["all"]["decisions"] == 200 and res["against"] == str(member)
    assert res["paired"]["all"]["diff"] == pytest.approx(res["er"] - res["against_er"]["er"], abs=1e-3)
    code, out = strength(*mine, "--against-set", "model.ensemble=1", "--cube", "--decisions", "12")
    assert code == 0, out
    res = json.loads(out.strip().splitlines()[-1])
    vs = res["paired_vs_against"]
    assert res["against"] == str(member) and vs["decisions"] == 12
    assert vs["diff"] == pytest.approx(res["er"] - res["rows"][f"{member} 0-ply"]["er"], abs=1e-6)
    assert "ours minus" in out
    code, out = strength(*mine, "--decisions", "10")  # the member read as an ensemble: refused
    assert code == 2
    code, out = strength("--checkpoint", str(ckpt), "--against-set", "model.ensemble=1")
    assert code == 2 and "--against-set needs --against" in out


def test_bench_strength_refuses_bad_input(ckpt: Path, tmp_path: Path) -> None:
    code, out = strength("--checkpoint", str(ckpt), "--version", "3")
    assert code == 2 and "not both" in out
    code, out = strength("--plies", "3")
    assert code == 2
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a set")
    code, out = strength("--set-file", str(bad))
    assert code == 2 and "cannot read the decision set" in out


@pytest.mark.parametrize("plies", [1])  # 2-ply compiles for minutes: `bench strength --plies 2` runs it
def test_lookahead_scorer_plays_only_its_candidates(ckpt: Path, plies: int) -> None:
    """The 1-ply (2-ply) player on a few decisions: finite ER, and per decision only its top-2
    0-ply plays (its one finalist among them at 2-ply) can score above the never-played floor."""
    import jax

    from bgai.bench.decisions import DEFAULT_SET
    from bgai.bench.strength import lookahead_scorer, network_scorer
    from bgai.core.network import BgNet, init_params

    s = DecisionSet.load(DEFAULT_SET).head(12 if plies == 1 else 4)
    net = BgNet((16,))
    params = init_params(net, jax.random.key(0))
    mg = rules.MoveGenConfig(max_plays=64, frontier2=48, frontier3=96)
    scores = lookahead_scorer(net.apply, params, mg, plies, candidates=2, finalists=1)(s)
    zero = network_scorer(net.apply, params)(s)
    for d in range(s.size):
        lo, hi = s.offsets[d], s.offsets[d + 1]
        live = np.flatnonzero(scores[lo:hi] > -10.0)
        assert 1 <= len(live) <= (2 if plies == 1 else 1)
        assert set(live) <= set(np.argsort(-zero[lo:hi], kind="stable")[:2].tolist())
    report = evaluate_er(s, lambda _: scores)
    assert math.isfinite(report.er) and report.er >= 0


def test_bench_curve_measures_each_checkpoint(tmp_path: Path) -> None:
    cfg = load_config(None, env={}, overrides=SETS)
    for step in (1, 2, 3):
        meta = {"model_hash": model_hash(cfg), "model_version": step, "games": 10 * step}
        meta["elapsed_s"] = 60 * step
        save_checkpoint(tmp_path, step, train_template(cfg), meta, keep=5)
    png = tmp_path / "curve.png"
    out = CliRunner().invoke(
        cli,
        ["bench", "curve", "--checkpoint-dir", str(tmp_path), "--games", "4", "--points", "2"]
        + ["--decisions", "40", "--out", str(png), "--cube", *ARGS],
    )
    assert out.exit_code == 0, out.output
    res = json.loads(out.output.strip().splitlines()[-1])
    assert [p["games"] for p in res["points"]] == [10, 30]  # the oldest and the newest
    assert [p["minutes"] for p in res["points"]] == [1.0, 3.0]
    assert all(math.isfinite(p["er"]) and 0 <= p["win_rate"] <= 1 for p in res["points"])
    # --cube: each checkpoint's cube ER, gnubg 0-ply's as the anchor
    cubes = CubeSet.load()
    assert res["cube_plies"] == 0 and res["cube_decisions"] == cubes.size
    anchor = cube_error_rate(cubes, *gnubg_decisions(cubes.equities_0ply)).er
    assert res["anchors"]["gnubg 0-ply cube ER"] == pytest.approx(anchor)
    assert all(p["cube_er"] >= 0 and p["cube_er_contact"] >= 0 for p in res["points"])
    assert "cube ER" in out.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "none"
    empty.mkdir()
    out = CliRunner().invoke(cli, ["bench", "curve", "--checkpoint-dir", str(empty), *ARGS])
    assert out.exit_code == 2 and "no checkpoints" in out.output
    for name, why in (("past_1", "fixed opponent"), ("gnubg", "opponent")):
        args = ["--checkpoint-dir", str(tmp_path), "--opponent", name, *ARGS]
        out = CliRunner().invoke(cli, ["bench", "curve", *args])
        assert out.exit_code == 2 and why in out.output, out.output


@pytest.mark.skipif(not os.access("/usr/games/gnubg", os.X_OK), reason="needs Debian's gnubg")
def test_bench_curve_against_gnubg(tmp_path: Path) -> None:
    """The curve's matches can be against GNU Backgammon (the engine is started once, closed)."""
    cfg = load_config(None, env={}, overrides=SETS)
    save_checkpoint(tmp_path, 1, train_template(cfg), {"model_hash": model_hash(cfg), "games": 10}, keep=5)
    args = [
        "--checkpoint-dir",
        str(tmp_path),
        "--games",
        "4",
        "--decisions",
        "20",
        "--opponent",
        "gnubg_0ply",
    ]
    out = CliRunner().invoke(cli, ["bench", "curve", *args, "--out", str(tmp_path / "c.png"), *ARGS])
    assert out.exit_code == 0, out.output
    res = json.loads(out.output.strip().splitlines()[-1])
    assert res["opponent"] == "gnubg_0ply" and 0 <= res["points"][0]["win_rate"] <= 1


def test_er_sums_of_parts_add_up_to_the_er_of_their_union() -> None:
    """The fleet's way (each eval slice scores its own part of the set, the sums add up in Redis)
    gives the ER of the whole, per class too; parts are whole decisions of the set."""
    from bgai.bench.decisions import DEFAULT_SET
    from bgai.bench.strength import er_of_sums, er_sums

    s = DecisionSet.load(DEFAULT_SET).head(300)
    parts = [s.part(0, 120), s.part(120, 250), s.part(250, 900)]  # the last clipped to the set
    assert [p.size for p in parts] == [120, 130, 50]
    np.testing.assert_array_equal(np.concatenate([p.afterstates for p in parts]), s.afterstates)
    for p in parts:
        p.check()
    total: dict[str, int] = {}
    for p in parts:
        for k, v in er_sums(p, p.equity_0ply).items():
            total[k] = total.get(k, 0) + v
    whole, got = error_rate(s, s.equity_0ply), er_of_sums(total)
    assert got["decisions"] == 300
    for key in ("er", "er_contact", "er_race", "er_bearoff", "best"):
        assert got[key] == pytest.approx(getattr(whole, key), abs=1e-3), key
    assert er_of_sums({}) == {}
