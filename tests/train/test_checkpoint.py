"""Checkpoints restore bit-exact and refuse corrupt or foreign files."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgai.bench.train import synthetic_batch
from bgai.core.network import BgNet, init_params
from bgai.core.train_step import init_train_state, make_optimizer, make_train_step
from bgai.errors import CorruptDataError, IncompatibleError
from bgai.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint


def _state(hidden: tuple[int, ...] = (8,)) -> dict:
    net = BgNet(hidden)
    opt = make_optimizer(1e-3)
    ts = init_train_state(init_params(net, jax.random.key(0)), opt)
    step = make_train_step(net.apply, opt)
    ts, _ = step(ts, synthetic_batch(8, 16))  # non-trivial optimizer moments
    return {
        "params": ts.params,
        "opt_state": ts.opt_state,
        "step": ts.step,
        "rng": jax.random.key_data(jax.random.key(5)),
    }


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    state = _state()
    path = save_checkpoint(tmp_path, 1, state, {"model_hash": "abc"})
    template = jax.tree.map(jnp.zeros_like, state)
    restored, meta = load_checkpoint(path, template, "abc")
    assert meta["step"] == 1 and meta["model_hash"] == "abc"
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert np.asarray(a).dtype == np.asarray(b).dtype


def test_keeps_newest(tmp_path: Path) -> None:
    state = _state()
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, state, {}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_000000003.bgai", "ckpt_000000004.bgai"]
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupt_and_foreign_are_refused(tmp_path: Path) -> None:
    state = _state()
    path = save_checkpoint(tmp_path, 1, state, {"model_hash": "abc"})
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    bad = tmp_path / "bad.bgai"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CorruptDataError, match="checksum"):
        load_checkpoint(bad, state)
    bad.write_bytes(b"garbage")
    with pytest.raises(CorruptDataError, match="not a bgai checkpoint"):
        load_checkpoint(bad, state)
    bad.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CorruptDataError):
        load_checkpoint(bad, state)
    with pytest.raises(IncompatibleError, match="model hash"):
        load_checkpoint(path, state, "other")
    with pytest.raises(IncompatibleError, match="shape"):
        load_checkpoint(path, _state((16,)))
