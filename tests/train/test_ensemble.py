"""Ensembles (`model.ensemble`, `bgai ensemble-checkpoints`): K nets' weights stacked into one
model whose outcome probabilities are the mean of theirs; it loads where a checkpoint loads
(with --set model.ensemble=K) and never trains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner
from tiny_model import ARGS, SETS

from bgai.agent import net_of, optimizer_of, params_template
from bgai.cli.main import cli
from bgai.config import Config, ModelConfig, load_config, model_hash
from bgai.core import rules
from bgai.core.network import BgNet, init_params
from bgai.errors import ConfigError, CorruptDataError, IncompatibleError
from bgai.train.checkpoint import list_checkpoints, load_params, save_checkpoint
from bgai.train.ensemble import ensemble_checkpoints, pick_members, stack_params


def _boards(n: int) -> jax.Array:
    rng = np.random.default_rng(3)
    start = np.asarray(rules.start_board())
    out = [start]
    for _ in range(n - 1):  # the start with a few checkers moved about: varied contact positions
        b = start.copy()
        src = rng.choice(np.flatnonzero(b[:24] > 0))
        b[src] -= 1
        b[rng.integers(0, src + 1)] += 1
        out.append(b)
    return jnp.asarray(np.stack(out), jnp.int32)


def test_the_ensemble_plays_the_mean_of_its_members_probabilities() -> None:
    single, ens = BgNet((8,)), BgNet((8,), ensemble=3)
    members = [init_params(single, jax.random.key(s)) for s in (1, 2, 3)]
    stacked = stack_params(members)
    boards = _boards(5)
    step, value = ens.apply(stacked, boards)
    outs = [single.apply(m, boards) for m in members]
    want = np.mean([jax.nn.softmax(v) for _, v in outs], 0)
    np.testing.assert_allclose(jax.nn.softmax(value), want, atol=1e-6)
    np.testing.assert_allclose(step, np.mean([s for s, _ in outs], 0), atol=1e-6)
    assert not np.allclose(want, jax.nn.softmax(outs[0][1]), atol=1e-4)  # the members differ
    # the stacked params are what the ensemble net itself initialises
    shapes = jax.tree.map(np.shape, init_params(ens, jax.random.key(0)))
    assert jax.tree.map(np.shape, stacked) == shapes
    # three copies of one net play as that net
    _, same = ens.apply(stack_params([members[0]] * 3), boards)
    np.testing.assert_allclose(jax.nn.softmax(same), jax.nn.softmax(outs[0][1]), atol=1e-6)


def test_members_are_picked_back_from_the_newest() -> None:
    paths = [Path(f"ckpt_{i:09d}.bgai") for i in range(1, 8)]
    assert [p.name[-7:-5] for p in pick_members(paths, 3)] == ["05", "06", "07"]
    assert [p.name[-7:-5] for p in pick_members(paths, 3, stride=3)] == ["01", "04", "07"]
    with pytest.raises(ValueError, match="need 9 checkpoints; the run holds 7"):
        pick_members(paths, 3, stride=4)
    with pytest.raises(ValueError, match="at least 2"):
        pick_members(paths, 1)


def _run(directory: Path, seeds: tuple[int, ...], net: BgNet, mh: str) -> list[Path]:
    def state(s: int) -> dict[str, Any]:
        return {"params": init_params(net, jax.random.key(s)), "step": jnp.asarray(s)}

    return [save_checkpoint(directory, s, state(s), {"model_hash": mh, "games": 10 * s}, 10) for s in seeds]


def test_the_ensemble_checkpoint_and_what_is_refused(tmp_path: Path) -> None:
    net = BgNet((8,))
    paths = _run(tmp_path / "run", (1, 2, 3), net, "m1")
    out = ensemble_checkpoints(paths, tmp_path / "ens", "m1", "e3")
    params, meta = load_params(out, init_params(BgNet((8,), ensemble=3), jax.random.key(0)), "e3")
    for k, seed in enumerate((1, 2, 3)):
        member = jax.tree.map(lambda x, k=k: x[k], params["params"]["members"])
        for a, b in zip(
            jax.tree.leaves(member), jax.tree.leaves(init_params(net, jax.random.key(seed))), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    assert meta["ensemble_steps"] == [1, 2, 3] and meta["games"] == 30 and out.name == paths[-1].name
    # read as one net, it is refused, with the setting that reads it
    with pytest.raises(IncompatibleError, match=r"--set model\.ensemble=3"):
        load_params(out, init_params(net, jax.random.key(0)), "m1")
    with pytest.raises(ValueError, match="at least two"):
        ensemble_checkpoints(paths[:1], tmp_path / "e2", "m1", "e1")
    with pytest.raises(ValueError, match="elsewhere"):
        ensemble_checkpoints(paths, tmp_path / "run", "m1", "e3")
    with pytest.raises(IncompatibleError):
        ensemble_checkpoints(paths, tmp_path / "e2", "another model", "e3")
    with pytest.raises(IncompatibleError, match="differ in shape"):
        wider = _run(tmp_path / "wide", (4,), BgNet((9,)), "m1")
        ensemble_checkpoints([*paths, *wider], tmp_path / "e2", "m1", "e3")
    with pytest.raises(IncompatibleError, match="cannot be a member"):
        stack_params([params, params])
    paths[0].write_bytes(paths[0].read_bytes()[:-10])
    with pytest.raises(CorruptDataError):
        ensemble_checkpoints(paths, tmp_path / "e2", "m1", "e3")
    assert not list_checkpoints(tmp_path / "e2")


def test_an_ensemble_never_trains_and_one_net_keeps_its_hash() -> None:
    cfg = load_config(None, env={}, overrides={"model.ensemble": 4})
    assert model_hash(cfg) != model_hash(Config())
    assert model_hash(Config(model=ModelConfig(ensemble=1))) == model_hash(Config())
    with pytest.raises(ConfigError, match=r"^model\.ensemble: is 4: training takes one net"):
        optimizer_of(cfg)
    with pytest.raises(ConfigError, match=r"model\.ensemble"):
        load_config(None, env={}, overrides={"model.ensemble": 0})
    assert net_of(cfg).ensemble == 4
    assert jax.tree.leaves(params_template(cfg))[0].shape[0] == 4


def test_the_command_and_the_strength_of_what_it_writes(tmp_path: Path) -> None:
    cfg = load_config(None, env={}, overrides=SETS)
    net = net_of(cfg)
    _run(tmp_path / "run", (1, 2, 3, 4, 5), net, model_hash(cfg))
    runner = CliRunner()
    run, out_dir = str(tmp_path / "run"), str(tmp_path / "ens")
    out = runner.invoke(
        cli, ["ensemble-checkpoints", run, "--members", "3", "--stride", "2", "--out", out_dir, *ARGS]
    )
    assert out.exit_code == 0, out.output
    assert "ckpt_000000001.bgai, ckpt_000000003.bgai, ckpt_000000005.bgai" in out.output
    assert "--set model.ensemble=3" in out.output
    (ck,) = list_checkpoints(tmp_path / "ens")
    strength = ["bench", "strength", "--checkpoint", str(ck), "--decisions", "40", *ARGS]
    res = runner.invoke(cli, [*strength, "--set", "model.ensemble=3"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["decisions"] == 40
    alone = runner.invoke(cli, strength)
    assert (
        alone.exit_code == 2 and "--set model.ensemble=3" in alone.output and "Traceback" not in alone.output
    )
    few = runner.invoke(
        cli, ["ensemble-checkpoints", run, "--members", "4", "--stride", "2", "--out", out_dir, *ARGS]
    )
    assert few.exit_code == 2 and "the run holds 5" in few.output and "Traceback" not in few.output
    stacked = runner.invoke(
        cli, ["ensemble-checkpoints", run, "--out", out_dir, *ARGS, "--set", "model.ensemble=2"]
    )
    assert stacked.exit_code == 2 and "model.ensemble 1" in stacked.output
