"""Matches between two deciders and their statistics (95% confidence intervals).

Pure: a match runs in the compiled game loop with paired dice (games 2i and 2i+1 share every
roll, the agents swapping seats), so the luck of the dice cancels within a pair; the summary is
plain numpy over integer sums, the same sums the fleet adds up in Redis across eval workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import numpy as np

from bgai.core import rules
from bgai.core.selfplay import Decide, paired_points, paired_sides, play_batch

OUTCOMES = {
    1: "win_single",
    2: "win_gammon",
    3: "win_backgammon",
    -1: "lose_single",
    -2: "lose_gammon",
    -3: "lose_backgammon",
}


def wilson_interval(wins: int, games: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson 95% interval of a win rate (0..1 when there are no games)."""
    if games <= 0:
        return (0.0, 1.0)
    n, p = games, wins / games
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def sums_of(points: Any) -> dict[str, int]:
    """Integer sums over games (points won per game by A, ±1..3): games, wins, points, sq, and
    w1..w3 / l1..l3 (single, gammon, backgammon wins and losses)."""
    pts = np.asarray(points, dtype=np.int64).reshape(-1)
    s = {"games": int(pts.size), "wins": int(np.sum(pts > 0)), "points": int(np.sum(pts))}
    s["sq"] = int(np.sum(pts * pts))
    for v in (1, 2, 3):
        s[f"w{v}"] = int(np.sum(pts == v))
        s[f"l{v}"] = int(np.sum(pts == -v))
    return s


@dataclass(frozen=True)
class MatchResult:
    """A's results over `games` games, from the integer sums (see `sums_of`)."""

    games: int
    wins: int
    points: np.ndarray | None = None  # [games] points won by A per game, when known
    sums: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of_points(cls, points: Any) -> MatchResult:
        pts = np.asarray(points, dtype=np.int64).reshape(-1)
        return cls(games=int(pts.size), wins=int(np.sum(pts > 0)), points=pts, sums=sums_of(pts))

    @classmethod
    def of_sums(cls, sums: dict[str, int]) -> MatchResult:
        return cls(games=sums.get("games", 0), wins=sums.get("wins", 0), sums=dict(sums))

    def _sums(self) -> dict[str, int]:
        if self.sums:
            return self.sums
        return sums_of(self.points if self.points is not None else [])

    @property
    def win_rate(self) -> float:
        return self.wins / max(self.games, 1)

    @property
    def ppg(self) -> float:
        return self._sums()["points"] / self.games if self.games else 0.0

    def win_rate_ci(self) -> tuple[float, float]:
        """Wilson 95% interval of the win rate."""
        return wilson_interval(self.wins, self.games)

    def ppg_ci(self) -> tuple[float, float]:
        """Normal 95% interval of the points per game (sample variance from the sums)."""
        n = self.games
        if n < 2:
            return (-3.0, 3.0)
        s = self._sums()
        var = max(s["sq"] - n * self.ppg * self.ppg, 0.0) / (n - 1)
        half = 1.96 * math.sqrt(var / n)
        return (self.ppg - half, self.ppg + half)

    def counts(self) -> dict[str, int]:
        """Single / gammon / backgammon wins and losses of A."""
        s = self._sums()
        return {name: s.get(f"w{v}" if v > 0 else f"l{-v}", 0) for v, name in OUTCOMES.items()}

    def summary(self) -> str:
        lo, hi = self.win_rate_ci()
        plo, phi = self.ppg_ci()
        return (
            f"{self.games} games: win {self.win_rate:.1%} [{lo:.1%}, {hi:.1%}], "
            f"ppg {self.ppg:+.3f} [{plo:+.3f}, {phi:+.3f}]"
        )


def paired_match(
    decide_a: Decide, decide_b: Decide, pairs: int, max_turns: int, movegen: rules.MoveGenConfig
) -> Any:
    """A jitted `(params_a, params_b), key -> (points won by A [2*pairs], finished [2*pairs])`."""
    run = partial(
        play_batch,
        paired_sides(decide_a, decide_b),
        batch=2 * pairs,
        max_turns=max_turns,
        movegen=movegen,
        paired=True,
    )

    def match(params: Any, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        traj = run(params, key)
        return paired_points(traj.result), traj.finished

    return jax.jit(match)


def finished_pairs(points: np.ndarray, finished: np.ndarray) -> np.ndarray:
    """The points of the pairs whose two games both ended (a pair counts whole or not at all)."""
    both = np.asarray(finished).reshape(-1, 2).all(axis=1)
    return np.asarray(points).reshape(-1, 2)[both].reshape(-1)


def run_pairs(
    match: Any,
    params: Any,
    key: jax.Array,
    games: int,
    progress: Callable[[int], None] | None = None,
    max_rounds: int | None = None,
) -> np.ndarray:
    """Points won by A over `games` games (whole pairs) from a `paired_match`; round i uses
    `fold_in(key, i)`, so the same key gives the same games. `progress(n)` after each round."""
    want = games + games % 2
    got: list[np.ndarray] = []
    have, i = 0, 0
    while have < want:
        if max_rounds is not None and i >= max_rounds:
            raise RuntimeError(f"{have} of {want} games ended after {i} rounds: raise selfplay.max_turns")
        points, finished = match(params, jax.random.fold_in(key, i))
        got.append(finished_pairs(np.asarray(points), np.asarray(finished)))
        have += len(got[-1])
        i += 1
        if progress is not None:
            progress(min(len(got[-1]), want - (have - len(got[-1]))))
    return np.concatenate(got)[:want]


def play_match(
    decide_a: Decide,
    params_a: Any,
    decide_b: Decide,
    params_b: Any,
    key: jax.Array,
    games: int,
    batch: int = 64,
    max_turns: int = 512,
    movegen: rules.MoveGenConfig = rules.DEFAULT_MOVEGEN,
) -> MatchResult:
    """A against B over `games` games (rounded up to whole pairs) with paired dice; consumes `key`."""
    pairs = max(1, min(batch, games) // 2)
    match = paired_match(decide_a, decide_b, pairs, max_turns, movegen)
    rounds = 10 * (games // (2 * pairs) + 1)
    return MatchResult.of_points(run_pairs(match, (params_a, params_b), key, games, max_rounds=rounds))
