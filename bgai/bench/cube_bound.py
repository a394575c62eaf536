"""How good the probabilities must be for a cube ER: `bgai bench cube-bound`.

The cube ER of Janowski's model fed gnubg 0-ply's cubeless probabilities is gnubg 0-ply's own
(~1.1 on the shipped set); fed our net's, it is several times that, and the whole gap is the
net's probability error (docs/results.md, stop 34). This module measures how the cube ER grows
with that error, on the cube decision set, with gnubg 0-ply's probabilities as the reference:

- **shrunk**: the reference plus a share `alpha` of our net's error, `ref + alpha * (ours - ref)`
  (alpha 1 is our net, 0 is gnubg): the cube ER of a net whose errors point where ours do but are
  `alpha` times as large;
- **noise**: the reference's P(win) moved by independent Gaussian noise of standard deviation
  `sigma` in logit, its gammon and backgammon rates kept in proportion: the cube ER of a net
  whose errors are random.

Both keep the five probabilities consistent (a convex mix of two consistent vectors is one; the
noise rescales the conditional rates). Every figure is at 0 ply; the reference is gnubg's
evaluation, so what it says holds against gnubg 0-ply's equities, not against rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bgai.bench.cubes import CubeSet, cube_error_rate, janowski_decisions, probability_gap
from bgai.bench.decisions import CLASSES

CONTACT = CLASSES.index("contact")
ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
SIGMAS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
_EPS = 1e-6


@dataclass(frozen=True)
class BoundRow:
    label: str  # "alpha 0.3", "sigma 0.2"
    win_abs: float  # mean |P(win) - the reference's| over the contact positions
    cube_er: float  # on the whole set, 0-ply decisions
    cube_er_contact: float


def shrunk(reference: np.ndarray, ours: np.ndarray, alpha: float) -> np.ndarray:
    """The reference probabilities [N, 5] plus `alpha` times our error."""
    return reference + alpha * (ours - reference)


def logit_noise(reference: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The reference [N, 5] with P(win) moved by N(0, sigma) in logit, the gammon and backgammon
    rates of each side kept as shares of that side's wins (gnubg's order: win, win g, win bg,
    lose g, lose bg)."""
    p = np.clip(reference[:, 0], _EPS, 1 - _EPS)
    q = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + sigma * rng.standard_normal(len(p)))))
    win_share = reference[:, 1:3] / p[:, None]
    lose_share = reference[:, 3:5] / (1 - p)[:, None]
    return np.concatenate([q[:, None], win_share * q[:, None], lose_share * (1 - q)[:, None]], axis=1)


def row(s: CubeSet, label: str, reference: np.ndarray, probs: np.ndarray) -> BoundRow:
    """The cube ER of Janowski's 0-ply decisions from `probs`, and their contact P(win) error."""
    r = cube_error_rate(s, *janowski_decisions(s, probs))
    win_abs = probability_gap(s, probs, reference)["contact"]["win_abs"]
    return BoundRow(label, win_abs, r.er, r.by_class["contact"] or 0.0)


def shrink_rows(
    s: CubeSet, reference: np.ndarray, ours: np.ndarray, alphas: tuple[float, ...] = ALPHAS
) -> list[BoundRow]:
    return [row(s, f"alpha {a:g}", reference, shrunk(reference, ours, a)) for a in alphas]


def noise_rows(
    s: CubeSet, reference: np.ndarray, sigmas: tuple[float, ...] = SIGMAS, seeds: int = 5
) -> list[BoundRow]:
    """Per sigma, the mean over `seeds` draws (seeded: the same rows on every run)."""
    out = []
    for sigma in sigmas:
        draws = [
            row(
                s, "", reference, logit_noise(reference, sigma, np.random.default_rng([k, int(1000 * sigma)]))
            )
            for k in range(seeds)
        ]
        out.append(
            BoundRow(
                f"sigma {sigma:g}",
                float(np.mean([d.win_abs for d in draws])),
                float(np.mean([d.cube_er for d in draws])),
                float(np.mean([d.cube_er_contact for d in draws])),
            )
        )
    return out


def crossing(rows: list[BoundRow], target: float) -> float | None:
    """The contact P(win) error at which the cube ER first reaches `target`, interpolated
    linearly between the rows (ordered by growing error); None where no row reaches it."""
    for a, b in zip(rows, rows[1:], strict=False):
        if a.cube_er <= target < b.cube_er:
            return a.win_abs + (target - a.cube_er) / (b.cube_er - a.cube_er) * (b.win_abs - a.win_abs)
    return None
