"""`bgai bench bearoff`: build the bear-off database (timed), write it, read it back (timed), and
measure its race values against Debian gnubg's 0-ply evaluation (gnubg's own one-sided database)
on random bear-off races."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from bgai import bearoff_file
from bgai.core import bearoff, rules
from bgai.core.network import gnubg_probabilities


def race_board(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """A board (mover's view) with `mine` [6] on idx 0..5 and the opponent's counts [6] on its
    own points 1..6 (idx 23 down to 18); the rest of each side's 15 borne off."""
    b = np.zeros(rules.BOARD_SIZE, np.int32)
    b[:6] = mine
    b[23:17:-1] = -np.asarray(theirs)
    b[rules.OFF] = rules.NUM_CHECKERS - int(np.sum(mine))
    b[rules.OPP_OFF] = -(rules.NUM_CHECKERS - int(np.sum(theirs)))
    return b


def random_races(seed: int, n: int) -> np.ndarray:
    """[n, 28] bear-off races in four kinds by turn: 15 checkers a side; the mover's 15 on its
    5-6 points against 1..8 (it may lose a gammon); 1..8 against the opponent's 15 on its 5-6
    points (the mover may win one); 1..15 a side. Each checker on a uniform point of its range."""
    rng = np.random.default_rng(seed)
    full = rules.NUM_CHECKERS

    def side(count: int, low: int = 0) -> np.ndarray:
        return np.bincount(rng.integers(low, 6, count), minlength=6)

    boards = []
    for i in range(n):
        few = int(rng.integers(1, 9))
        kind = i % 4
        if kind == 0:
            mine, theirs = side(full), side(full)
        elif kind == 1:
            mine, theirs = side(full, 4), side(few)
        elif kind == 2:
            mine, theirs = side(few), side(full, 4)
        else:
            mine, theirs = side(int(rng.integers(1, full + 1))), side(int(rng.integers(1, full + 1)))
        boards.append(race_board(mine, theirs))
    return np.stack(boards)


def small_races(boards: np.ndarray) -> np.ndarray:
    """[n] bool: both sides have at most 6 checkers left (gnubg evaluates these two-sided, exactly,
    where the one-sided model is an approximation: up to ~0.006 apart in P(win) here)."""
    return (boards[:, :6].sum(1) <= 6) & (-boards[:, 18:24].sum(1) <= 6)


def ours(rolls: np.ndarray, first: np.ndarray, boards: np.ndarray) -> np.ndarray:
    """Our five probabilities of the side to roll for each race board."""
    out = bearoff.race_outcomes(jnp.asarray(rolls), jnp.asarray(first), jnp.asarray(boards))
    return np.asarray(gnubg_probabilities(out))


def gnubg_five(boards: np.ndarray) -> np.ndarray:
    from bgai.opponents.gnubg import GnubgExternal

    with GnubgExternal(plies=0) as gnubg:
        return np.stack([gnubg.evaluate(b, 0) for b in boards])


def measure(directory: Path | None, gnubg_positions: int, seed: int = 3) -> dict[str, Any]:
    """Build, write and read back the database (in `directory`, else a temporary one); compare
    with gnubg on `gnubg_positions` random races (0: skip)."""
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(directory) if directory is not None else Path(tmp)
        start = time.perf_counter()
        rolls, first = bearoff.build()
        built = time.perf_counter() - start
        where.mkdir(parents=True, exist_ok=True)
        path = where / bearoff_file.FILE_NAME
        path.write_bytes(bearoff_file.encode(rolls, first))
        start = time.perf_counter()
        again = bearoff_file.load_or_build(where)
        loaded = time.perf_counter() - start
        assert np.array_equal(again[0], rolls) and np.array_equal(again[1], first)
        mean = rolls @ np.arange(bearoff.MAX_ROLLS)
        report: dict[str, Any] = {
            "positions": bearoff.NUM_POSITIONS,
            "build_s": round(built, 2),
            "load_s": round(loaded, 3),
            "file_mb": round(path.stat().st_size / 1e6, 2),
            "mean_rolls_15_on_6pt": round(float(mean[int(bearoff.rank(np.array([0, 0, 0, 0, 0, 15])))]), 4),
        }
    if gnubg_positions > 0:
        boards = random_races(seed, gnubg_positions)
        diff = np.abs(ours(rolls, first, boards) - gnubg_five(boards))
        small = small_races(boards)
        report.update(
            gnubg_positions=gnubg_positions,
            gnubg_max_abs_diff=[round(float(x), 6) for x in diff[~small].max(0)],
            gnubg_small_races=int(small.sum()),
            gnubg_small_max_abs_diff_win=round(float(diff[small, 0].max(initial=0.0)), 6),
        )
    return report
