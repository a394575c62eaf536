"""The decision set: the committed file keeps its contract; the builder makes one (real gnubg).

The builder test runs Debian's gnubg and gnubg_nn; it skips where either is missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

from bgai.bench.decisions import BEAROFF, CLASSES, DEFAULT_SET, RACE, DecisionSet, classify
from bgai.bench.decisions_build import our_plays
from bgai.cli.main import cli
from bgai.core import rules
from bgai.opponents.fibs import flip
from bgai.opponents.gnubg import DEFAULT_BINARY, GnubgExternal, money_equity

SAMPLE = 60  # decisions whose plays are generated again

needs_gnubg = pytest.mark.skipif(
    not os.access(DEFAULT_BINARY, os.X_OK), reason=f"GNU Backgammon is not installed at {DEFAULT_BINARY}"
)


@pytest.fixture(scope="module")
def committed() -> DecisionSet:
    return DecisionSet.load()  # checks shapes, offsets, finite equities, classes, dice


def test_the_committed_set_holds_3000_labelled_decisions(committed: DecisionSet) -> None:
    s = committed
    assert DEFAULT_SET.stat().st_size < 5_000_000
    assert s.size >= 3000 and np.all(s.num_plays >= 2)
    counts = s.counts()
    assert set(counts) == set(CLASSES) and min(counts.values()) >= 500, counts
    assert np.array_equal(classify(s.boards), s.classes)
    assert s.meta["mismatches"] == 0 and "1 ply" in s.meta["reference"]
    # a bear-off position has every checker of the mover home; a race has no contact left
    home = np.all(s.boards[:, 6:24] <= 0, axis=1)
    assert np.all(home[s.classes == BEAROFF]) and not np.any(home[s.classes == RACE])


def test_the_committed_plays_are_every_legal_play_by_our_rules(committed: DecisionSet) -> None:
    s = committed
    idx = np.random.default_rng(0).choice(s.size, SAMPLE, replace=False)
    ours = our_plays(s.boards[idx].astype(np.int32), s.dice[idx].astype(np.int32))
    for i, plays in zip(idx, ours, strict=True):
        stored = s.afterstates[s.offsets[i] : s.offsets[i + 1]].astype(np.int32)
        assert len(stored) == len(plays) and {r.tobytes() for r in stored} == {r.tobytes() for r in plays}


def test_a_play_that_ends_the_game_scores_its_points(committed: DecisionSet) -> None:
    s = committed
    won = np.asarray(jax.vmap(rules.win_points)(jnp.asarray(s.afterstates, jnp.int32)))
    done = won > 0
    assert done.any()
    assert np.array_equal(s.equity[done], won[done].astype(np.float32))
    assert np.array_equal(s.equity_0ply[done], won[done].astype(np.float32))
    assert np.all(np.abs(s.equity[~done]) <= 3)


@needs_gnubg
def test_gnubg_evaluates_for_the_side_on_roll() -> None:
    """One checker left on the 1 point, the opponent all home with none off: the side on roll
    wins a gammon whatever it rolls; on roll instead, the opponent bears one off (no gammon)
    and still loses."""
    b = np.zeros(rules.BOARD_SIZE, np.int32)
    b[0], b[rules.OFF] = 1, 14
    b[18:24], b[rules.OPP_OFF] = [-3, -3, -3, -2, -2, -2], 0
    with GnubgExternal(0, DEFAULT_BINARY) as gnubg:
        for plies in (0, 1):
            assert money_equity(gnubg.evaluate(b, plies)) == pytest.approx(2.0, abs=1e-6)
            assert money_equity(gnubg.evaluate(flip(b), plies)) == pytest.approx(-1.0, abs=1e-6)
    assert money_equity(np.array([1.0, 1.0, 0.0, 0.0, 0.0])) == 2.0
    assert money_equity(np.array([0.0, 0.0, 0.0, 1.0, 1.0])) == -3.0


@needs_gnubg
def test_build_decisions_makes_a_small_set_and_strength_reads_it(tmp_path: Path) -> None:
    pytest.importorskip("gnubg_nn")
    path = tmp_path / "tiny.npz"
    args = ["bench", "build-decisions", "--contact", "6", "--race", "2", "--bearoff", "2", "--out", str(path)]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    report = json.loads(out.output.strip().splitlines()[-1])
    assert report["mismatches"] == 0 and report["decisions"] == 10
    assert report["classes"] == {"contact": 6, "race": 2, "bearoff": 2}
    s = DecisionSet.load(path)
    assert s.size == 10 and s.counts() == report["classes"]
    assert not np.array_equal(s.equity, s.equity_0ply)  # two depths, two evaluations
    out = CliRunner().invoke(cli, ["bench", "strength", "--set-file", str(path), "--set", "model.hidden=[8]"])
    assert out.exit_code == 0, out.output
    res = json.loads(out.output.strip().splitlines()[-1])
    assert res["decisions"] == 10 and res["player"].startswith("untrained")
