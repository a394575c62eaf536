"""Seeded random-play positions with all their legal plays (exact move generator), for the gnubg tests."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from bgai.core import rules
from bgai.opponents.fibs import flip

NUM_POSITIONS = 2_500
SEED = 20261130


@dataclass(frozen=True)
class Position:
    board: np.ndarray  # [28] mover's view
    dice: tuple[int, int]  # (high, low)
    boards: np.ndarray  # [K, 28] every legal afterstate
    steps: np.ndarray  # [K, 4] the steps making each

    @property
    def on_bar(self) -> bool:
        return bool(self.board[rules.BAR] > 0)

    @property
    def bears_off(self) -> bool:
        """Some legal play bears a checker off."""
        return bool(np.any(self.boards[:, rules.OFF] > self.board[rules.OFF]))

    def is_legal(self, afterstate: np.ndarray) -> bool:
        return bool(np.any(np.all(self.boards == afterstate, axis=1)))


_exact_plays = jax.jit(lambda board, dice_idx: rules.legal_plays(board, dice_idx, rules.EXACT_MOVEGEN))
DICE_INDEX = {(int(a), int(b)): i for i, (a, b) in enumerate(rules.DICE)}


def legal(board: np.ndarray, dice: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Every legal afterstate [K, 28] of `board` and the steps [K, 4] making each (exact, no overflow)."""
    plays = _exact_plays(board, DICE_INDEX[(max(dice), min(dice))])
    assert not bool(plays.overflow)
    k = int(np.sum(np.asarray(plays.mask)))
    return np.asarray(plays.boards)[:k], np.asarray(plays.steps)[:k]


def random_play(n: int, seed: int) -> list[Position]:
    """`n` positions of seeded random play (random dice, a random legal play, new game at the end)."""
    rng = np.random.default_rng(seed)
    probs = rules.DICE_PROBS.astype(np.float64) / rules.DICE_PROBS.sum(dtype=np.float64)
    start = np.asarray(rules.start_board())
    board, out = start, list[Position]()
    while len(out) < n:
        hi, lo = (int(x) for x in rules.DICE[rng.choice(rules.NUM_ROLLS, p=probs)])
        boards, steps = legal(board, (hi, lo))
        out.append(Position(board, (hi, lo), boards, steps))
        after = boards[rng.integers(len(boards))]
        board = start if after[rules.OFF] == rules.NUM_CHECKERS else flip(after)
    return out
