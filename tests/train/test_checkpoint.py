"""Checkpoints restore bit-exact, refuse corrupt or foreign files, fall back past corrupt ones to
the newest good one, and are durable (file and directory fsynced, no stale temporary files)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgai.bench.train import synthetic_batch
from bgai.core.network import BgNet, init_params
from bgai.core.train_step import init_train_state, make_optimizer, make_train_step
from bgai.errors import CorruptDataError, IncompatibleError, NonFiniteWeightsError
from bgai.train.checkpoint import list_checkpoints, load_checkpoint, load_newest, save_checkpoint


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


def test_a_save_fsyncs_the_directory_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    save_checkpoint(tmp_path, 1, _state(), {})
    assert synced == ["file", "dir"]  # the file's bytes, then the rename that names it


def test_temporary_files_of_unfinished_saves_are_removed(tmp_path: Path) -> None:
    state = _state()
    (tmp_path / "ckpt_000000001.tmp").write_bytes(b"a crash mid-save")
    save_checkpoint(tmp_path, 2, state, {})
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / "ckpt_000000007.tmp").write_bytes(b"another")
    assert load_newest(tmp_path, state) is not None and not list(tmp_path.glob("*.tmp"))


def test_the_newest_good_checkpoint_is_restored_and_corrupt_ones_set_aside(tmp_path: Path) -> None:
    state = _state()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, state, {"model_hash": "abc"})
    newest = list_checkpoints(tmp_path)
    newest[2].write_bytes(newest[2].read_bytes()[:-50])  # truncated
    newest[1].write_bytes(b"garbage")
    restored, meta, path = load_newest(tmp_path, state, "abc") or pytest.fail("nothing restored")
    assert path == newest[0] and meta["step"] == 1
    assert list_checkpoints(tmp_path) == [newest[0]]
    assert sorted(p.name for p in tmp_path.glob("*.bad")) == [p.name + ".bad" for p in newest[1:]]
    with pytest.raises(IncompatibleError):  # another model: the config is wrong, nothing renamed
        load_newest(tmp_path, state, "other")
    assert list_checkpoints(tmp_path) == [newest[0]]
    newest[0].rename(tmp_path / "elsewhere")
    assert load_newest(tmp_path, state, "abc") is None


def test_a_state_that_is_not_finite_is_never_written(tmp_path: Path) -> None:
    state = _state()
    state["params"] = jax.tree.map(lambda x: jnp.full_like(x, jnp.inf), state["params"])
    with pytest.raises(NonFiniteWeightsError):
        save_checkpoint(tmp_path, 1, state, {})
    assert not list(tmp_path.iterdir())
