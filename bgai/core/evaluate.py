"""Matches between two deciders and their statistics (95% confidence intervals).

Pure: the match runs in the compiled game loop; the summary is plain numpy.
Paired dice and the fleet's aggregation across eval workers come later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import numpy as np

from bgai.core import rules
from bgai.core.selfplay import Decide, play_batch, two_sided


def wilson_interval(wins: int, games: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson 95% interval of a win rate (0..1 when there are no games)."""
    if games <= 0:
        return (0.0, 1.0)
    n, p = games, wins / games
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


@dataclass(frozen=True)
class MatchResult:
    games: int
    wins: int
    points: np.ndarray  # [games] points won by A per game (+-1..3)

    @property
    def win_rate(self) -> float:
        return self.wins / max(self.games, 1)

    @property
    def ppg(self) -> float:
        return float(np.mean(self.points)) if self.games else 0.0

    def win_rate_ci(self) -> tuple[float, float]:
        """Wilson 95% interval of the win rate."""
        return wilson_interval(self.wins, self.games)

    def ppg_ci(self) -> tuple[float, float]:
        """Normal 95% interval of the points per game."""
        if self.games < 2:
            return (-3.0, 3.0)
        half = 1.96 * float(np.std(self.points, ddof=1)) / math.sqrt(self.games)
        return (self.ppg - half, self.ppg + half)

    def counts(self) -> dict[str, int]:
        """Single / gammon / backgammon wins and losses of A."""
        names = {
            1: "win_single",
            2: "win_gammon",
            3: "win_backgammon",
            -1: "lose_single",
            -2: "lose_gammon",
            -3: "lose_backgammon",
        }
        return {name: int(np.sum(self.points == v)) for v, name in names.items()}

    def summary(self) -> str:
        lo, hi = self.win_rate_ci()
        plo, phi = self.ppg_ci()
        return (
            f"{self.games} games: win {self.win_rate:.1%} [{lo:.1%}, {hi:.1%}], "
            f"ppg {self.ppg:+.3f} [{plo:+.3f}, {phi:+.3f}]"
        )


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
    """A (player 0) against B over `games` games (the opening side is random); consumes `key`."""
    run = jax.jit(
        partial(play_batch, two_sided(decide_a, decide_b), batch=batch, max_turns=max_turns, movegen=movegen)
    )
    points = []
    for i in range((games + batch - 1) // batch):
        traj = run((params_a, params_b), jax.random.fold_in(key, i))
        finished = np.asarray(traj.finished)
        points.append(np.asarray(traj.result)[finished])
    pts = np.concatenate(points)[:games]
    return MatchResult(games=len(pts), wins=int(np.sum(pts > 0)), points=pts)
