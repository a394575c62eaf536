"""A slow, readable reference of `bgai.core.features` (plain Python loops over points and rolls),
the random positions it is checked on, and the golden file both must match.

Regenerate the golden file (only when a feature's definition changes, with `features.VERSION`
and `config.INPUT_VERSIONS` bumped): `.venv/bin/python tests/features_reference.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "data" / "features_golden.npz"
BAR, OPP_BAR, OFF, OPP_OFF = 24, 25, 26, 27
ROLLS = [(a, b) for a in range(1, 7) for b in range(1, a + 1)]  # rules.DICE order


def flip(board: np.ndarray) -> np.ndarray:
    out = np.zeros(28, np.int64)
    out[:24] = -board[23::-1]
    out[BAR], out[OPP_BAR] = -board[OPP_BAR], -board[BAR]
    out[OFF], out[OPP_OFF] = -board[OPP_OFF], -board[OFF]
    return out


def shots(board: np.ndarray) -> int:
    """Rolls of 36 with which the opponent (negative, moving from idx 0 to 23, entering from its
    bar as if from idx -1) hits a blot of the side to move; only from the bar while it has one
    there; a combined move needs each intermediate landing point open (< 2 of our checkers)."""
    sources = [-1] if board[OPP_BAR] < 0 else [q for q in range(24) if board[q] < 0]
    count = 0
    for a, b in ROLLS:
        paths = [[a, a, a, a]] if a == b else [[a, b], [b, a]]
        hit = False
        for q in sources:
            for path in paths:
                at = q
                for die in path:
                    at += die
                    if at > 23:
                        break
                    if board[at] == 1:
                        hit = True
                    if board[at] >= 2:
                        break  # blocked: the path stops here
        count += (1 if a == b else 2) if hit else 0
    return count


def longest_run(made: list[bool]) -> int:
    best = run = 0
    for m in made:
        run = run + 1 if m else 0
        best = max(best, run)
    return best


def side(board: np.ndarray) -> list[float]:
    mine = [max(int(board[i]), 0) for i in range(24)]
    made = [n >= 2 for n in mine]
    pips = sum((i + 1) * n for i, n in enumerate(mine)) + 25 * int(board[BAR])
    return [
        pips / 100,
        shots(board) / 36,
        min(longest_run(made), 6) / 6,
        min(sum(made[18:24]), 2) / 2,
        min(sum(mine[18:24]) + int(board[BAR]), 5) / 5,
        sum(made[:6]) / 6,
        min(sum(1 for n in mine if n == 1), 5) / 5,
    ]


def contact(board: np.ndarray) -> bool:
    """A hit is still possible: our rearmost checker (the bar counts as idx 24) is behind their
    rearmost (their bar as idx -1); a side with no checkers left makes it a race."""
    ours = [i for i in range(25) if board[i] > 0]  # idx 24: our bar
    theirs = ([-1] if board[OPP_BAR] < 0 else []) + [i for i in range(24) if board[i] < 0]
    return bool(ours and theirs and max(ours) > min(theirs))


def extended(board: np.ndarray) -> list[float]:
    mine, theirs = side(board), side(flip(board))
    return mine + theirs + [(mine[0] - theirs[0]) * 2, float(contact(board))]


def escape_rolls(board: np.ndarray, start: int) -> int:
    """Rolls of 36 with which a checker moving up from idx `start` (-1: the bar) lands 7 or more
    pips ahead, every landing on the way open (fewer than two of the side to move's checkers;
    past idx 23 is off the board, open): two dice in either order, a double up to four times."""
    count = 0
    for a, b in ROLLS:
        paths = [[a, a, a, a]] if a == b else [[a, b], [b, a]]
        escaped = False
        for path in paths:
            at = start
            for die in path:
                at += die
                if at <= 23 and board[at] >= 2:
                    break  # blocked
                if at - start >= 7:
                    escaped = True
                    break
        count += (1 if a == b else 2) if escaped else 0
    return count


def escapes(board: np.ndarray) -> float:
    """The side to move's rearmost checker, moving up the opponent's view (its bar first)."""
    view = flip(board)
    ours = ([-1] if view[OPP_BAR] < 0 else []) + [q for q in range(24) if view[q] < 0]
    return escape_rolls(view, min(ours)) / 36 if ours else 1.0


def containment(board: np.ndarray) -> float:
    """1 - the fewest escaping rolls of an opponent's checker on its 25 (bar) to 16 points."""
    return 1 - min(escape_rolls(board, start) for start in range(-1, 9)) / 36


def escape_features(board: np.ndarray) -> list[float]:
    other = flip(board)
    return [escapes(board), containment(board), escapes(other), containment(other)]


def random_positions(seed: int, n: int) -> np.ndarray:
    """[n, 28] int8 positions, mover's view: each side's 15 checkers on the bar, points or off,
    never sharing a point; a mix of spread contact positions and races."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 28), np.int8)
    for k in range(n):
        b = np.zeros(28, np.int64)
        race = k % 4 == 3
        for sign, lo, hi in ((1, 0, 24), (-1, 0, 24)):
            if race:  # ours on idx 0..11, theirs on 12..23
                lo, hi = (0, 12) if sign > 0 else (12, 24)
            for _ in range(15):
                r = rng.random()
                if not race and r < 0.04:
                    b[BAR if sign > 0 else OPP_BAR] += sign
                elif r < 0.1:
                    b[OFF if sign > 0 else OPP_OFF] += sign
                else:
                    for _ in range(50):
                        p = int(rng.integers(lo, hi))
                        if b[p] * sign >= 0:
                            b[p] += sign
                            break
                    else:
                        b[OFF if sign > 0 else OPP_OFF] += sign
        out[k] = b
    return out


def main() -> None:
    boards = random_positions(11, 600)
    values = np.array([extended(b.astype(np.int64)) for b in boards], np.float64)
    escape = np.array([escape_features(b.astype(np.int64)) for b in boards], np.float64)
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, boards=boards, features=values, escapes=escape)
    print(f"wrote {GOLDEN}: {len(boards)} positions")


if __name__ == "__main__":
    main()
