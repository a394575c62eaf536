"""`legal_plays_batch` (tiered capacities, sub-batches) equals `legal_plays` game by game.

`legal_plays` is the generator proven against GNU Backgammon (test_rules_oracle);
the batched one must give the same plays in the same slots, overflow flags
included, whichever of its branches a batch takes.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgai.core import rules
from bgai.core.players import random_decider
from bgai.core.selfplay import play_chunk, start_games

CONFIGS = {
    "default": rules.DEFAULT_MOVEGEN,
    "tiny": rules.MoveGenConfig(max_plays=16, frontier2=8, frontier3=16),  # overflows often
    "exact": rules.EXACT_MOVEGEN,
}
EXACT_POSITIONS = 1024


@pytest.fixture(scope="module")
def positions() -> tuple[np.ndarray, np.ndarray]:
    """4,096 positions and rolls from random play (bar, hits, bear-offs and doubles among them)."""
    run = jax.jit(
        partial(play_chunk, random_decider(), length=32, max_turns=300, movegen=rules.DEFAULT_MOVEGEN)
    )
    states = start_games(jax.random.key(5), 64)
    boards, dice = [], []
    for i in range(2):
        states, chunk = run(None, states, jax.random.key(10 + i))
        boards.append(np.asarray(chunk.boards).reshape(-1, rules.BOARD_SIZE))
        dice.append(np.asarray(chunk.dice).reshape(-1))
    return np.concatenate(boards).astype(np.int32), np.concatenate(dice).astype(np.int32)


def _assert_same(batched: rules.Plays, single: rules.Plays) -> None:
    """Equal plays in equal slots (what empty slots hold is not part of the contract)."""
    mask = np.asarray(single.mask)
    for name in rules.Plays._fields:
        a, b = np.asarray(getattr(batched, name)), np.asarray(getattr(single, name))
        if name in ("boards", "steps"):
            a, b = np.where(mask[..., None], a, 0), np.where(mask[..., None], b, 0)
        assert np.array_equal(a, b), (
            f"{name} differs in {np.flatnonzero((a != b).reshape(len(a), -1).any(1))}"
        )


@pytest.fixture(scope="module")
def expected(positions: tuple[np.ndarray, np.ndarray]) -> dict[str, list[rules.Plays]]:
    """`legal_plays` vmapped, per config, in batches of 256 positions.

    "exact" (1,024 plays a position, slow to run on a CPU) covers the first 1,024 positions.
    """
    boards, dice = positions
    out = {}
    for name, cfg in CONFIGS.items():
        single = jax.jit(jax.vmap(partial(rules.legal_plays, cfg=cfg)))
        count = EXACT_POSITIONS if name == "exact" else len(dice)
        out[name] = [
            jax.device_get(single(jnp.asarray(boards[i : i + 256]), jnp.asarray(dice[i : i + 256])))
            for i in range(0, count, 256)
        ]
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_batched_equals_single(
    positions: tuple[np.ndarray, np.ndarray], expected: dict[str, list[rules.Plays]], name: str
) -> None:
    cfg = CONFIGS[name]
    boards, dice = positions
    batched = jax.jit(partial(rules.legal_plays_batch, cfg=cfg))
    for i, want in enumerate(expected[name]):
        rows = slice(256 * i, 256 * (i + 1))
        _assert_same(batched(jnp.asarray(boards[rows]), jnp.asarray(dice[rows])), want)
    overflowed = sum(int(np.sum(w.overflow)) for w in expected[name])
    print(f"{name}: {256 * len(expected[name])} positions, {overflowed} overflow {cfg}")


def test_every_branch(
    positions: tuple[np.ndarray, np.ndarray], expected: dict[str, list[rules.Plays]]
) -> None:
    """Batches where more games than a sub-batch holds roll doubles or overflow the fast tier.

    Those take several rounds of the sub-batch (16 rows: 4 rows for redone non-doubles, 5 for
    doubles, 2 for redone doubles); "no overflow" takes none.
    """
    boards, dice = positions
    cfg = CONFIGS["default"]
    fast, fast_double = rules.fast_tier(cfg)
    want = jax.tree.map(lambda *x: np.concatenate(x), *expected["default"])
    n = want.num_plays
    is_double = rules.DICE[dice, 0] == rules.DICE[dice, 1]
    many = np.flatnonzero(~is_double & (n > fast.max_plays))
    doubles = np.flatnonzero(is_double)
    # a double overflows the fast tier in its frontiers (its play capacity is the full one)
    fast_run = jax.jit(jax.vmap(partial(rules.legal_plays, cfg=fast_double)))
    over = np.asarray(fast_run(jnp.asarray(boards[doubles]), jnp.asarray(dice[doubles])).overflow)
    many_doubles = doubles[over & (n[doubles] <= cfg.max_plays)]
    assert len(many) >= 16 and len(many_doubles) >= 8 and len(doubles) >= 16
    cases = {
        "all overflow the fast tier": many[:16],
        "all doubles": doubles[:16],
        "doubles overflowing": np.concatenate([many_doubles[:8], doubles[:8]]),
        "no overflow": np.flatnonzero(n <= 8)[:16],
        "one game": many[:1],
    }
    batched = jax.jit(partial(rules.legal_plays_batch, cfg=cfg))
    for label, rows in cases.items():
        b, d = jnp.asarray(boards[rows]), jnp.asarray(dice[rows])
        _assert_same(batched(b, d), jax.tree.map(lambda x, rows=rows: x[rows], want))
        print(f"{label}: {len(rows)} games ok")


@pytest.mark.parametrize("n", [1, 25, 32, 33, 96, 1301])
def test_prefix_sum_is_exact(n: int) -> None:
    x = np.random.default_rng(n).integers(0, 2, size=(3, n))
    assert np.array_equal(np.asarray(rules.prefix_sum(jnp.asarray(x))), np.cumsum(x, axis=-1))
    big = np.full((1, n), 7)
    assert np.array_equal(np.asarray(rules.prefix_sum(jnp.asarray(big))), np.cumsum(big, axis=-1))


def test_packed_apply_takes_the_smallest_rung_that_holds_the_rows() -> None:
    rows = jnp.arange(40 * 3, dtype=jnp.int32).reshape(40, 3)
    caps = (8, 16, 24)

    def fn(r: jax.Array) -> jax.Array:  # each row's own value, and the rows it was computed among
        return jnp.stack([r.sum(-1) * 7 + 1, jnp.full(r.shape[0], r.shape[0], jnp.int32)], -1)

    run = jax.jit(lambda valid: rules.packed_apply(fn, rows, valid, caps))
    want = np.asarray(fn(rows))[:, 0]
    rng = np.random.default_rng(0)
    for count, size in [(0, 8), (1, 8), (8, 8), (9, 16), (16, 16), (17, 24), (24, 24), (25, 40), (40, 40)]:
        valid = np.zeros(40, bool)
        valid[rng.choice(40, count, replace=False)] = True
        got = np.asarray(run(jnp.asarray(valid)))
        assert np.array_equal(got[valid, 0], want[valid]), count
        assert np.all(got[valid, 1] == size), (count, got[valid, 1])
        if size < 40:
            assert not np.any(got[~valid]), "rows left out are zeros"


def test_play_boards_gathers_the_chosen_afterstates_widened() -> None:
    """`rules.play_boards`: one index a position ([B, 28]) or several ([B, M, 28]), int32, the
    rows the indices name (not merely the right shape: distinct rows, checked value by value)."""
    boards = jnp.asarray(np.arange(3 * 5 * 28).reshape(3, 5, 28) % 31 - 15, jnp.int8)
    plays = rules.Plays(boards, jnp.zeros((3, 5, 4), jnp.int32), jnp.ones((3, 5), bool), 5, False)
    one = rules.play_boards(plays, jnp.asarray([4, 0, 2]))
    assert one.dtype == jnp.int32 and one.shape == (3, 28)
    assert np.array_equal(one, np.asarray(boards)[[0, 1, 2], [4, 0, 2]])
    several = rules.play_boards(plays, jnp.asarray([[1, 3], [0, 0], [4, 2]]))
    assert several.dtype == jnp.int32 and several.shape == (3, 2, 28)
    assert np.array_equal(several, np.asarray(boards)[[[0, 0], [1, 1], [2, 2]], [[1, 3], [0, 0], [4, 2]]])


def test_applying_a_plays_steps_gives_its_afterstate(
    positions: tuple[np.ndarray, np.ndarray], expected: dict[str, list[rules.Plays]]
) -> None:
    """`rules.apply_play` (the search stores steps, not boards) rebuilds every play of every position."""
    boards, _ = positions
    apply = jax.jit(jax.vmap(jax.vmap(rules.apply_play, in_axes=(None, 0))))
    checked = 0
    for i, want in enumerate(expected["exact"]):
        got = np.asarray(apply(jnp.asarray(boards[256 * i : 256 * (i + 1)]), jnp.asarray(want.steps)))
        mask = np.asarray(want.mask)
        assert np.array_equal(got[mask], np.asarray(want.boards)[mask])
        checked += int(mask.sum())
    assert checked > 12_000
    print(f"apply_play: {checked} plays rebuilt from their steps")


def test_selected_rows_only(
    positions: tuple[np.ndarray, np.ndarray], expected: dict[str, list[rules.Plays]]
) -> None:
    """`legal_plays_rows`: the selected rows equal `legal_plays` (steps only, no boards), the others
    have no plays, in rounds."""
    boards, dice = positions
    rows = jax.jit(partial(rules.legal_plays_rows, cap=16, cfg=rules.DEFAULT_MOVEGEN))
    want = expected["default"][0]
    want = want._replace(boards=want.boards[..., :0])
    select = np.random.default_rng(0).random(256) < 0.3  # ~77 rows: several rounds of 16
    got = rows(jnp.asarray(boards[:256]), jnp.asarray(dice[:256]), jnp.asarray(select))
    assert got.boards.shape == (256, rules.DEFAULT_MOVEGEN.max_plays, 0)
    _assert_same(jax.tree.map(lambda x: x[select], got), jax.tree.map(lambda x: x[select], want))
    assert not np.asarray(got.mask)[~select].any()
    # the tiers past the first are exercised: doubles, and plays beyond the fast tier's capacity
    is_double = rules.DICE[dice[:256], 0] == rules.DICE[dice[:256], 1]
    assert (select & is_double).sum() > 0
    fast_cap = rules.fast_tier(rules.DEFAULT_MOVEGEN)[0].max_plays
    assert (select & (np.asarray(want.num_plays) > fast_cap)).sum() > 0
