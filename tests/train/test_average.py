"""`bgai average-checkpoints`: the params of a run's newest checkpoints averaged into a checkpoint
of its own, which loads as any other; corrupt, foreign or mixed checkpoints are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

from bgai.cli.main import cli
from bgai.core.network import BgNet, init_params
from bgai.core.train_step import init_train_state, make_optimizer
from bgai.errors import CorruptDataError, IncompatibleError
from bgai.train.average import average_checkpoints
from bgai.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint


def _state(seed: int) -> dict[str, Any]:
    net = BgNet((8,))
    ts = init_train_state(init_params(net, jax.random.key(seed)), make_optimizer(1e-3))
    return {
        "params": ts.params,
        "opt_state": ts.opt_state,
        "step": ts.step + seed,
        "rng": jax.random.key_data(jax.random.key(seed)),
    }


def _run(directory: Path, seeds: tuple[int, ...], model_hash: str = "m1") -> list[Path]:
    return [
        save_checkpoint(directory, s, _state(s), {"model_hash": model_hash, "games": s}, 10) for s in seeds
    ]


def test_the_average_is_the_mean_of_the_params_with_the_newest_state(tmp_path: Path) -> None:
    paths = _run(tmp_path / "run", (1, 2, 3))
    out = average_checkpoints(paths, tmp_path / "avg", "m1")
    restored, meta = load_checkpoint(out, jax.tree.map(jnp.zeros_like, _state(0)), "m1")
    want = jax.tree.map(lambda *xs: (xs[0] + xs[1] + xs[2]) / 3, *[_state(s)["params"] for s in (1, 2, 3)])
    for got, w in zip(jax.tree.leaves(restored["params"]), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-7)
    last = zip(jax.tree.leaves(restored["params"]), jax.tree.leaves(_state(3)["params"]), strict=True)
    assert not all(np.allclose(a, b) for a, b in last), "not the newest's params"
    newest = _state(3)
    assert int(restored["step"]) == int(newest["step"]) and np.array_equal(restored["rng"], newest["rng"])
    assert meta["averaged_steps"] == [1, 2, 3] and meta["games"] == 3 and out.name == paths[-1].name


def test_mixed_foreign_corrupt_or_misplaced_checkpoints_are_refused(tmp_path: Path) -> None:
    paths = _run(tmp_path / "run", (1, 2))
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints(paths[:1], tmp_path / "avg")
    with pytest.raises(ValueError, match="elsewhere"):
        average_checkpoints(paths, tmp_path / "run")
    with pytest.raises(IncompatibleError):
        average_checkpoints(paths, tmp_path / "avg", "another model")
    other = _run(tmp_path / "other", (3,), model_hash="m2")
    with pytest.raises(IncompatibleError, match="different models"):
        average_checkpoints([*paths, *other], tmp_path / "avg")
    paths[0].write_bytes(paths[0].read_bytes()[:-10])
    with pytest.raises(CorruptDataError):
        average_checkpoints(paths, tmp_path / "avg")
    assert not list_checkpoints(tmp_path / "avg")


def test_the_command(tmp_path: Path) -> None:
    _run(tmp_path / "run", (1, 2, 3))
    out = CliRunner().invoke(
        cli, ["average-checkpoints", str(tmp_path / "run"), "--last", "2", "--out", str(tmp_path / "a")]
    )
    assert out.exit_code == 0 and "ckpt_000000002.bgai, ckpt_000000003.bgai" in out.output, out.output
    assert [p.name for p in list_checkpoints(tmp_path / "a")] == ["ckpt_000000003.bgai"]
    few = CliRunner().invoke(
        cli, ["average-checkpoints", str(tmp_path / "run"), "--last", "5", "--out", str(tmp_path / "b")]
    )
    assert few.exit_code == 2 and "fewer than --last 5" in few.output and "Traceback" not in few.output
    here = CliRunner().invoke(
        cli, ["average-checkpoints", str(tmp_path / "run"), "--out", str(tmp_path / "run"), "--last", "2"]
    )
    assert here.exit_code == 2 and "elsewhere" in here.output
