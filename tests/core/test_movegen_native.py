"""The native move generator (`movegen.backend: native`) equals the JAX cascade array for array.

The JAX cascade (`rules.legal_plays_batch`) is proven equal to `legal_plays` (test_movegen_batch),
which is proven against GNU Backgammon (test_rules_oracle). The native generator must give the
same plays in the same slots, the same counts and overflow flags, and even the same filler in
the unused slots, at capacities that overflow often and at the exact ones; and self-play with it
must play the same games.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgai.agent import movegen_of
from bgai.config import Config, MoveGenConfig, config_hash
from bgai.core import movegen_native, rules
from bgai.core.players import random_decider
from bgai.core.selfplay import play_chunk, start_games
from bgai.errors import ConfigError

CONFIGS = {
    "default": rules.DEFAULT_MOVEGEN,
    "tiny": rules.MoveGenConfig(max_plays=16, frontier2=8, frontier3=16),  # overflows often
    "exact": rules.EXACT_MOVEGEN,
}


@pytest.fixture(scope="module")
def positions() -> tuple[np.ndarray, np.ndarray]:
    """4,096 positions from random play, each with a random roll (a sixth of them doubles)."""
    run = jax.jit(
        partial(play_chunk, random_decider(), length=32, max_turns=300, movegen=rules.DEFAULT_MOVEGEN)
    )
    states = start_games(jax.random.key(5), 64)
    boards = []
    for i in range(2):
        states, chunk = run(None, states, jax.random.key(10 + i))
        boards.append(np.asarray(chunk.boards).reshape(-1, rules.BOARD_SIZE))
    b = np.concatenate(boards).astype(np.int32)
    return b, np.random.default_rng(1).integers(0, rules.NUM_ROLLS, len(b)).astype(np.int32)


def _native(cfg: rules.MoveGenConfig) -> rules.MoveGenConfig:
    return cfg._replace(backend="native")


def _assert_equal(got: rules.Plays, want: rules.Plays, where: str) -> None:
    for name in rules.Plays._fields:
        a, b = np.asarray(getattr(got, name)), np.asarray(getattr(want, name))
        assert a.shape == b.shape and a.dtype == b.dtype, (where, name, a.shape, b.shape, a.dtype, b.dtype)
        rows = np.flatnonzero((a != b).reshape(len(a), -1).any(1))
        assert len(rows) == 0, f"{where}: {name} differs in rows {rows[:8]}"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_native_equals_the_jax_cascade(positions: tuple[np.ndarray, np.ndarray], name: str) -> None:
    cfg = CONFIGS[name]
    boards, dice = positions
    count = 1024 if name == "exact" else len(boards)  # exact: 1,024 plays a position, slow in XLA
    cascade = jax.jit(partial(rules.legal_plays_batch, cfg=cfg))
    native = jax.jit(partial(rules.legal_plays_batch, cfg=_native(cfg)))
    overflowed = 0
    for i in range(0, count, 256):
        b, d = jnp.asarray(boards[i : i + 256]), jnp.asarray(dice[i : i + 256])
        want = jax.device_get(cascade(b, d))
        _assert_equal(jax.device_get(native(b, d)), want, f"{name}, rows {i}..")
        overflowed += int(np.sum(want.overflow))
    if name == "tiny":
        assert overflowed > 100  # the truncating paths ran
    print(f"{name}: {count} positions, {overflowed} overflow")


@pytest.mark.parametrize("cores", [2, 3, 8])
def test_a_batch_split_between_threads_gives_the_plays_of_one_thread(
    positions: tuple[np.ndarray, np.ndarray], cores: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    boards, rolls = positions[0][:300], positions[1][:300]
    dice, caps = np.asarray(rules.DICE)[rolls], (128, 0, 0, 48, 128, 96, 192, 128, 40, 64)  # the defaults
    select = np.random.default_rng(3).random(300) < 0.9
    monkeypatch.setattr(movegen_native, "_cores", lambda: 1)
    one = movegen_native.generate(boards, dice, select, caps)
    monkeypatch.setattr(movegen_native, "_cores", lambda: cores)
    split = movegen_native.generate(boards, dice, select, caps)
    assert int(np.sum(one[2])) > 300 * 5  # plays were made
    for a, b in zip(one, split, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("name", ["default", "tiny"])
def test_native_rows_equal_the_jax_rows(positions: tuple[np.ndarray, np.ndarray], name: str) -> None:
    """`legal_plays_rows`: only the selected rows get plays, steps only (boards [B, K, 0])."""
    cfg = CONFIGS[name]
    boards, dice = positions
    select = np.random.default_rng(2).random(len(boards)) < 0.3
    cascade = jax.jit(partial(rules.legal_plays_rows, cap=64, cfg=cfg))
    native = jax.jit(partial(rules.legal_plays_rows, cap=64, cfg=_native(cfg)))
    for i in range(0, 1024, 256):
        args = (
            jnp.asarray(boards[i : i + 256]),
            jnp.asarray(dice[i : i + 256]),
            jnp.asarray(select[i : i + 256]),
        )
        _assert_equal(jax.device_get(native(*args)), jax.device_get(cascade(*args)), f"rows {i}..")


def test_native_under_vmap_and_without_jit(positions: tuple[np.ndarray, np.ndarray]) -> None:
    boards, dice = positions
    b, d = jnp.asarray(boards[:64]).reshape(4, 16, -1), jnp.asarray(dice[:64]).reshape(4, 16)
    cfg = _native(rules.DEFAULT_MOVEGEN)
    vmapped = jax.vmap(partial(rules.legal_plays_batch, cfg=cfg))(b, d)
    flat = rules.legal_plays_batch(b.reshape(64, -1), d.reshape(64), cfg)
    _assert_equal(jax.tree.map(lambda x: x.reshape(64, *x.shape[2:]), vmapped), flat, "vmap")


def test_native_under_vmap_with_one_side_unbatched(positions: tuple[np.ndarray, np.ndarray]) -> None:
    """vmap over the dice of one board set, and over the boards of one roll: the callback gets the
    unbatched argument with a leading 1 and must broadcast it, not size its output by it."""
    boards, dice = positions
    b, d = jnp.asarray(boards[:16]), jnp.asarray(dice[:16])
    cfg = _native(rules.DEFAULT_MOVEGEN)
    gen = partial(rules.legal_plays_batch, cfg=cfg)
    rolls = jnp.stack([d, jnp.roll(d, 1), jnp.roll(d, 5)])  # [3, 16]: the boards fixed
    per_roll = jax.vmap(gen, in_axes=(None, 0))(b, rolls)
    want = rules.legal_plays_batch(jnp.tile(b, (3, 1)), rolls.reshape(-1), cfg)
    _assert_equal(jax.tree.map(lambda x: x.reshape(48, *x.shape[2:]), per_roll), want, "dice batched")
    sets = jnp.stack([b, jnp.roll(b, 3, axis=0)])  # [2, 16, 28]: the dice fixed
    per_set = jax.vmap(gen, in_axes=(0, None))(sets, d)
    want = rules.legal_plays_batch(sets.reshape(32, -1), jnp.tile(d, 2), cfg)
    _assert_equal(jax.tree.map(lambda x: x.reshape(32, *x.shape[2:]), per_set), want, "boards batched")


def test_self_play_plays_the_same_games_with_either_generator() -> None:
    def chunk(cfg: rules.MoveGenConfig) -> list[np.ndarray]:
        run = jax.jit(partial(play_chunk, random_decider(), length=48, max_turns=300, movegen=cfg))
        states, out = run(None, start_games(jax.random.key(3), 32), jax.random.key(4))
        return [np.asarray(x) for x in jax.tree.leaves((states, out))]

    for a, b in zip(chunk(rules.DEFAULT_MOVEGEN), chunk(_native(rules.DEFAULT_MOVEGEN)), strict=True):
        assert np.array_equal(a, b)


def test_the_backend_is_resolved_per_host_and_left_out_of_the_config_hash() -> None:
    cfg = Config()
    assert cfg.movegen.backend == "auto"
    assert movegen_of(cfg).backend == ("native" if jax.default_backend() == "cpu" else "jax")
    jax_cfg = Config(movegen=MoveGenConfig(backend="jax"))
    assert movegen_of(jax_cfg).backend == "jax"
    assert config_hash(jax_cfg) == config_hash(cfg)
    with pytest.raises(ConfigError, match="movegen.backend"):
        MoveGenConfig(backend="fortran")


def test_native_without_numba_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(movegen_native, "numba", None)
    assert not movegen_native.available()
    assert movegen_of(Config()).backend == "jax"
    with pytest.raises(ConfigError, match="numba"):
        movegen_of(Config(movegen=MoveGenConfig(backend="native")))
