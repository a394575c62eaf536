"""FIBS `board:` lines and gnubg move notation for our boards (plain numpy).

A FIBS board line ("boardstyle 3", CLIP) is `board:` then 52 colon-separated fields, here
written for the side to move (the FIBS "player") of a cubeless money game:

    0 name  1 opponent  2 match length (0: money)  3 score  4 opponent's score
    5..30   26 board fields, checker counts, the player's positive, the opponent's negative.
            With direction -1 (what we write and gnubg prints) field 5+p is the player's
            point p (1..24); field 5 (index 0) is the opponent's bar and field 30 (index 25)
            the player's bar. With direction +1 the order is reversed: index 25-p is point p,
            index 0 the player's bar, index 25 the opponent's.
    31 turn (1: the player is on roll, -1: the opponent, 0: game over; compared to color)
    32 33 the player's dice   34 35 the opponent's dice (0 0: not rolled)
    36 cube   37 38 may double (player, opponent; both 1: centred)   39 was doubled
    40 color (+1: the player's checkers count positive)   41 direction   42 home   43 bar
    44 45 borne off (player, opponent)   46 47 on the bar   48 can move   49 forced move
    50 did Crawford   51 redoubles

Checked against GNU Backgammon 1.07 (`set output rawboard on`, `set board <position id>`,
`set turn`, `set dice`, `show board`; tests/opponents/test_fibs.py repeats it): gnubg prints
the board from its player 1's view (color 1, direction -1, home 0, bar 25, turn -1 when its
player 0 is on roll), field 5 = -(opponent's bar), field 30 = +(player's bar), fields 44 45
= the checkers borne off (player, opponent), but zeros in 46 47 whatever is on the bar, the
roll in both dice pairs and 1 in field 51. gnubg's reader (ProcessFIBSBoardInfo) reads the
bars' absolute values and ignores fields 42..49. We write FIBS style (the bar counts in
46 47, the opponent's dice 0 0, field 51 0) and parse like gnubg, checking 44 45. Parsing also
reads the cube fields 36..39: in a cubeful session gnubg sends its external player a line before
the roll (dice 0 0) when it may double, and one with field 39 set when it has been doubled; the
FIBS player is the external player in both, though gnubg's two name fields do not follow it.

Moves use gnubg's notation from the mover's view: points 1..24 are the mover's, `bar` is
its bar (also written 25, as gnubg's external replies do) and `off` bears off (also 0).
`24/18*/13` is one checker hopping twice, `13/7(2)` two checkers; `*` marks a hit and is
ignored, since a hop onto a lone opposing checker hits anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bgai.core.rules import (
    BAR,
    BOARD_SIZE,
    FLIP_IDX,
    NO_STEP,
    NUM_CHECKERS,
    NUM_POINTS,
    OFF,
    OPP_BAR,
    OPP_OFF,
)

NUM_FIELDS = 52  # after "board:"
_BOARD0 = 5  # first of the 26 board fields
_TURN, _DICE, _OPP_DICE = 31, 32, 34
_CUBE, _COLOR, _DIRECTION, _BORNE_OFF = 36, 40, 41, 44
GNUBG_BAR, GNUBG_OFF = 25, 0  # gnubg's point numbers for the bar (a source) and off (a destination)

Hop = tuple[int, int]  # (from, to) in gnubg point numbers: 25 = bar, 0 = off


@dataclass(frozen=True)
class FibsPosition:
    """A parsed board line, seen by the FIBS "player" (the line's first name).

    board: int32[28] from the player's view (player positive). player_on_roll: whose turn.
    dice: the dice of the side on roll, (0, 0) when not rolled yet.
    """

    name: str
    opponent: str
    board: np.ndarray
    player_on_roll: bool
    dice: tuple[int, int]
    cube: int = 1  # the cube's value
    may_double: tuple[bool, bool] = (True, True)  # (the player, the opponent): both for a centred cube
    doubled: bool = False  # the side on roll has doubled: the other side must take or pass

    def mover_board(self) -> np.ndarray:
        """The board from the view of the side on roll."""
        return self.board.copy() if self.player_on_roll else flip(self.board)

    def mover_may_double(self) -> tuple[bool, bool]:
        """(may the side on roll double, may the other side) - (True, True): a centred cube."""
        mine, theirs = self.may_double
        return (mine, theirs) if self.player_on_roll else (theirs, mine)


def flip(board: np.ndarray) -> np.ndarray:
    """The same position seen by the other side (numpy twin of `rules.flip`)."""
    return np.asarray(-np.asarray(board)[..., FLIP_IDX], dtype=np.int32)


def _check_board(board: np.ndarray) -> np.ndarray:
    b = np.asarray(board)
    if b.shape != (BOARD_SIZE,):
        raise ValueError(f"a board has shape ({BOARD_SIZE},), got {b.shape}")
    return b.astype(np.int32)


def _check_dice(dice: tuple[int, int]) -> tuple[int, int]:
    d = (int(dice[0]), int(dice[1]))
    if not all(1 <= x <= 6 for x in d):
        raise ValueError(f"dice must be 1..6, got {dice}")
    return d


def board_line(
    board: np.ndarray,
    dice: tuple[int, int] | None,
    name: str = "bgai",
    opponent: str = "gnubg",
    cube: int = 1,
    may_double: tuple[bool, bool] = (True, True),
) -> str:
    """The FIBS board line of `board` (mover's view) with the mover on roll, money play; the
    cube `cube`, which (the mover, the opponent) `may_double` (both: centred).

    `dice` None writes 0 0: the mover has not rolled yet (a position to evaluate).
    """
    b = _check_board(board)
    d1, d2 = (0, 0) if dice is None else _check_dice(dice)
    names = [n.replace(":", "_") or "_" for n in (name, opponent)]
    fields: list[object] = [*names, 0, 0, 0]
    fields += [int(b[OPP_BAR]), *(int(x) for x in b[:NUM_POINTS]), int(b[BAR])]
    fields += [1, d1, d2, 0, 0]  # turn: the player; the opponent's dice not rolled
    fields += [int(cube), int(may_double[0]), int(may_double[1]), 0]  # not doubled
    fields += [1, -1, 0, 25]  # color, direction, home, bar
    fields += [int(b[OFF]), int(-b[OPP_OFF]), int(b[BAR]), int(-b[OPP_BAR])]
    fields += [0, 0, 0, 0]  # can move, forced move, did Crawford, redoubles
    return "board:" + ":".join(str(f) for f in fields)


def parse_fibs(line: str) -> FibsPosition:
    """Parse a FIBS board line; ValueError says what is malformed."""
    text = line.strip().rstrip("\0").strip()
    if not text.startswith("board:"):
        raise ValueError(f"a FIBS board line starts with 'board:': {line!r}")
    fields = text[len("board:") :].split(":")
    if len(fields) != NUM_FIELDS:
        raise ValueError(f"a FIBS board line has {NUM_FIELDS} fields after 'board:', got {len(fields)}")
    try:
        nums = [int(f) for f in fields[2:]]
    except ValueError as exc:
        raise ValueError(f"fields 2..51 of a FIBS board line are integers: {exc}") from None
    f = [0, 0, *nums]  # index = field number
    turn, color, direction = f[_TURN], f[_COLOR], f[_DIRECTION]
    if turn == 0:
        raise ValueError("turn 0: the game is over")
    if color not in (1, -1) or direction not in (1, -1) or turn not in (1, -1):
        raise ValueError(f"color, direction and turn are +1 or -1, got {color}, {direction}, {turn}")
    cells = f[_BOARD0 : _BOARD0 + 26]
    b = np.zeros(BOARD_SIZE, dtype=np.int32)
    for p in range(1, NUM_POINTS + 1):
        b[p - 1] = color * cells[p if direction < 0 else 25 - p]
    own_bar, opp_bar = (cells[25], cells[0]) if direction < 0 else (cells[0], cells[25])
    b[BAR], b[OPP_BAR] = abs(own_bar), -abs(opp_bar)
    mine = int(np.sum(np.maximum(b[:NUM_POINTS], 0)) + b[BAR])
    theirs = int(np.sum(np.maximum(-b[:NUM_POINTS], 0)) - b[OPP_BAR])
    if mine > NUM_CHECKERS or theirs > NUM_CHECKERS:
        raise ValueError(f"more than {NUM_CHECKERS} checkers a side: {mine} and {theirs}")
    b[OFF], b[OPP_OFF] = NUM_CHECKERS - mine, -(NUM_CHECKERS - theirs)
    if (f[_BORNE_OFF], f[_BORNE_OFF + 1]) != (b[OFF], -b[OPP_OFF]):
        raise ValueError(
            f"borne-off fields {f[_BORNE_OFF]}:{f[_BORNE_OFF + 1]} disagree with the board "
            f"({b[OFF]} and {-b[OPP_OFF]} off)"
        )
    on_roll = turn == color
    own, other = (f[_DICE], f[_DICE + 1]), (f[_OPP_DICE], f[_OPP_DICE + 1])
    dice = own if on_roll else other
    if dice == (0, 0):
        dice = other if on_roll else own  # gnubg writes the roll in both pairs; FIBS in one
    if not all(0 <= x <= 6 for x in dice) or (0 in dice and dice != (0, 0)):
        raise ValueError(f"dice must be 1..6 (or 0 0 before the roll), got {dice}")
    cube, may_player, may_opponent, doubled = f[_CUBE : _CUBE + 4]
    if cube < 1 or cube & (cube - 1):
        raise ValueError(f"the cube is a power of 2, got {cube}")
    may = (bool(may_player), bool(may_opponent))
    return FibsPosition(fields[0], fields[1], b, on_roll, dice, cube, may, bool(doubled))


def parse_board_line(line: str) -> tuple[np.ndarray, tuple[int, int]]:
    """(board from the view of the side on roll, its dice) of a FIBS board line."""
    pos = parse_fibs(line)
    return pos.mover_board(), pos.dice


def _point(token: str, move: str) -> int:
    t = token.lower()
    if t == "bar":
        return GNUBG_BAR
    if t == "off":
        return GNUBG_OFF
    if t.isdigit() and GNUBG_OFF <= int(t) <= GNUBG_BAR:
        return int(t)  # gnubg's external replies write the bar 25 and off 0
    raise ValueError(f"not a point (1..24, bar or 25, off or 0): {token!r} in {move!r}")


_COUNT = re.compile(r"^(?P<path>[^()]+)(?:\((?P<n>[1-4])\))?$")


def parse_move(move: str) -> list[Hop]:
    """gnubg notation as single-checker hops (from, to) in gnubg numbers, in the written order."""
    hops: list[Hop] = []
    for token in move.split():
        m = _COUNT.match(token)
        if not m:
            raise ValueError(f"not a move: {token!r} in {move!r}")
        parts = m["path"].replace("*", "").split("/")
        if len(parts) < 2 or "" in parts:
            raise ValueError(f"a move goes from/to: {token!r} in {move!r}")
        points = [_point(p, move) for p in parts]
        hops += list(zip(points[:-1], points[1:], strict=True)) * int(m["n"] or 1)
    return hops


def apply_hops(board: np.ndarray, hops: Iterable[Hop]) -> np.ndarray:
    """Move one of the mover's checkers per hop (gnubg numbers: from 25 = bar, to 0 = off).

    A hop onto a lone opposing checker hits it (to the opponent's bar). Raises ValueError if
    a hop is impossible: nothing of the mover's at the source, a point the opponent holds,
    a backwards hop. The full rules (dice, entering first, bearing off) are not checked.
    """
    b = _check_board(board).copy()
    for src, dst in hops:
        if not (1 <= src <= GNUBG_BAR and GNUBG_OFF <= dst < NUM_POINTS + 1 and dst < src):
            raise ValueError(f"impossible hop {src}/{dst} (25 = bar, 0 = off, moving down)")
        si = BAR if src == GNUBG_BAR else src - 1
        if b[si] <= 0:
            raise ValueError(f"no checker of the mover on {_name(src)}")
        b[si] -= 1
        if dst == GNUBG_OFF:
            b[OFF] += 1
            continue
        di = dst - 1
        if b[di] < -1:
            raise ValueError(f"point {dst} is held by the opponent ({-b[di]} checkers)")
        if b[di] == -1:
            b[di], b[OPP_BAR] = 0, b[OPP_BAR] - 1
        b[di] += 1
    return b


def apply_move(board: np.ndarray, move: str) -> np.ndarray:
    """`board` (mover's view) after `move` in gnubg notation; ValueError if impossible."""
    return apply_hops(board, parse_move(move))


def _name(point: int) -> str:
    return {GNUBG_BAR: "bar", GNUBG_OFF: "off"}.get(point, str(point))


def format_play(steps: np.ndarray) -> str:
    """Our play's steps [4] (source*6 + die-1, NO_STEP padded) as gnubg notation, one hop a step."""
    parts = []
    for s in np.asarray(steps).ravel().tolist():
        if s == NO_STEP:
            continue
        if not 0 <= s < NO_STEP:
            raise ValueError(f"not a step index: {s}")
        src, die = divmod(s, 6)
        dest = src - (die + 1)  # below idx 0 bears off
        parts.append(f"{_name(GNUBG_BAR if src == BAR else src + 1)}/{_name(max(dest + 1, GNUBG_OFF))}")
    return " ".join(parts)
