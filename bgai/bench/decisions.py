"""A decision set: positions with a roll, every legal play, and GNU Backgammon's equity of each.

The strength yardstick (`bgai bench strength`) scores a player by the equity it gives up on
these decisions. `bgai bench build-decisions` (bgai.bench.decisions_build) makes the set once;
the committed file `bgai/bench/data/decisions.npz` is the reference afterwards.

Per decision i (boards always from the view of the side to move, bgai.core.rules layout):

    boards[i]        int8[28]  the position before the play
    dice[i]          int8[2]   the roll, high die first
    classes[i]       int8      0 contact, 1 race, 2 bear-off (see `classify`)
    offsets[i:i+2]   int32     its plays are rows offsets[i] .. offsets[i+1]-1 of:
    afterstates[p]   int8[28]  the position after play p, still the mover's view
    equity[p]        float32   reference: the mover's cubeless money equity after play p, by
                               Debian gnubg 1.07 evaluating the afterstate at 1 ply from the
                               opponent's side (a 2-ply move evaluation), gammons counted
    equity_0ply[p]   float32   the same at 0 ply (gnubg's net alone): the gnubg 0-ply anchor

A play that bears off the mover's last checker has its points won (1, 2 or 3) as both
equities. Stored as a compressed .npz of plain arrays (loaded with allow_pickle=False) and a
JSON `meta` string saying how the set was built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bgai.core import rules
from bgai.core.pubeval import is_race

DEFAULT_SET = Path(__file__).parent / "data" / "decisions.npz"
CLASSES = ("contact", "race", "bearoff")
CONTACT, RACE, BEAROFF = range(3)
_ARRAYS = ("boards", "dice", "classes", "offsets", "afterstates", "equity", "equity_0ply")

_is_race = jax.jit(jax.vmap(is_race))


def classify(boards: np.ndarray) -> np.ndarray:
    """Class [N] int8 of positions [N, 28] (mover's view, before the play).

    race: no contact is left (gnubg's ClassifyPosition: every checker of the mover is past
    every checker of the opponent, none on a bar). bear-off: a race in which all the mover's
    checkers still on the board are in its home board (idx 0..5), so it may bear off now.
    contact: everything else.
    """
    b = np.asarray(boards)
    race = np.asarray(_is_race(b.astype(np.int32)))
    home = np.all(b[:, 6 : rules.NUM_POINTS] <= 0, axis=1) & (b[:, rules.BAR] == 0)
    return np.where(race, np.where(home, BEAROFF, RACE), CONTACT).astype(np.int8)


@dataclass(frozen=True)
class DecisionSet:
    """N decisions and their P plays in all (shapes in the module docstring)."""

    boards: np.ndarray  # [N, 28] int8
    dice: np.ndarray  # [N, 2] int8, high die first
    classes: np.ndarray  # [N] int8: CONTACT, RACE, BEAROFF
    offsets: np.ndarray  # [N + 1] int32
    afterstates: np.ndarray  # [P, 28] int8
    equity: np.ndarray  # [P] float32, reference (gnubg 2-ply move evaluation)
    equity_0ply: np.ndarray  # [P] float32, gnubg 0-ply
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.boards)

    @property
    def num_plays(self) -> np.ndarray:
        """Plays per decision [N]."""
        return np.diff(self.offsets)

    @property
    def decision_of(self) -> np.ndarray:
        """The decision of each play [P] int32."""
        return np.repeat(np.arange(self.size, dtype=np.int32), self.num_plays)

    def counts(self) -> dict[str, int]:
        return {name: int(np.sum(self.classes == c)) for c, name in enumerate(CLASSES)}

    def head(self, n: int) -> DecisionSet:
        """The first `n` decisions (the builder shuffles them, so any head is a random sample)."""
        return self.part(0, n)

    def part(self, start: int, stop: int) -> DecisionSet:
        """Decisions start..stop-1 (clipped to the set): a random sample of the set, as a head is."""
        start, stop = min(max(start, 0), self.size), min(max(stop, 0), self.size)
        stop = max(start, stop)
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return DecisionSet(
            self.boards[start:stop],
            self.dice[start:stop],
            self.classes[start:stop],
            self.offsets[start : stop + 1] - lo,
            self.afterstates[lo:hi],
            self.equity[lo:hi],
            self.equity_0ply[lo:hi],
            {**self.meta, "part": [start, stop]} if start else {**self.meta, "head": stop},
        )

    def check(self) -> None:
        """ValueError unless the arrays fit together and hold what the docstring promises."""
        n, p = self.size, len(self.afterstates)
        shapes = {
            "boards": (n, rules.BOARD_SIZE),
            "dice": (n, 2),
            "classes": (n,),
            "offsets": (n + 1,),
            "afterstates": (p, rules.BOARD_SIZE),
            "equity": (p,),
            "equity_0ply": (p,),
        }
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, want {shape}")
        if self.offsets[0] != 0 or self.offsets[-1] != p or np.any(self.num_plays < 2):
            raise ValueError("offsets must run from 0 to the play count, with >= 2 plays a decision")
        if not (np.all(np.isfinite(self.equity)) and np.all(np.isfinite(self.equity_0ply))):
            raise ValueError("equities must be finite")
        if np.any(np.abs(self.equity) > 3) or np.any(np.abs(self.equity_0ply) > 3):
            raise ValueError("an equity is outside [-3, 3]")
        if not np.all(np.isin(self.classes, range(len(CLASSES)))):
            raise ValueError(f"classes must be 0..{len(CLASSES) - 1}")
        if np.any(self.dice < 1) or np.any(self.dice > 6) or np.any(self.dice[:, 0] < self.dice[:, 1]):
            raise ValueError("dice must be 1..6, high die first")

    def save(self, path: Path) -> None:
        save_arrays(path, {name: getattr(self, name) for name in _ARRAYS}, self.meta)

    @staticmethod
    def load(path: Path = DEFAULT_SET) -> DecisionSet:
        """Read a set written by `save` (no pickle) and `check` it."""
        arrays, meta = load_arrays(path, _ARRAYS)
        s = DecisionSet(**arrays, meta=meta)
        s.check()
        return s


def save_arrays(path: Path, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
    """Plain arrays and a JSON `meta` string in one compressed .npz (no pickle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)


def load_arrays(path: Path, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays `names` and the meta of a file written by `save_arrays` (pickles refused)."""
    with np.load(path, allow_pickle=False) as f:
        return {name: f[name] for name in names}, json.loads(str(f["meta"]))
