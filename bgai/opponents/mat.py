"""GNU Backgammon's MAT match files (Jellyfish's text format, which gnubg reads with
`import mat FILE`), written from games recorded move by move: host-side numpy, no I/O.

    ; [Event "bgai-v3 vs pubeval"]

     0 point match                        0: money games (gnubg writes a money session so)

     Game 1
     bgai-v3 : 0                    pubeval : 0        names; points won before this game
      1)                             31: 8/5 6/5       row n: the left player's move, the right's
      2) 52: 13/8 24/22              66:               66 with no move: a dance
      ...
     30) 55: 2/0 1/0 1/0
          Wins 1 point

A move is the roll, high die first, then one hop per checker step in the order played, from the
mover's side: points 1..24 are the mover's, 25 its bar and 0 off (as gnubg's own MAT export
writes them: `25/22`, `6/0`); `*` marks a hop that hits. gnubg finds the right column at the
second roll of a row (two characters before its colon), so every move starts with its roll.

Checked against GNU Backgammon 1.07's reader (import.c `ImportGame`, `ParseMatMove`) and by
importing (tests/test_export_games.py): gnubg takes each hop as written, checks only that it can
be made (`IsValidMove`: a checker to move, a point not held), and records a roll without a move
as a dance when there is no legal play, else as a roll not played yet. A money game's scores
line carries no rule; gnubg applies its own `set jacoby` and `set cube use` when it imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bgai.core.layout import BAR, NO_STEP, NUM_CHECKERS, OFF
from bgai.core.rules import DICE, start_board
from bgai.opponents.fibs import apply_hops, flip

MAT_BAR, MAT_OFF = 25, 0  # MAT's point numbers for the bar (a source) and off (a destination)
_COLUMN = 27  # the left column's width after "NNN) ", as gnubg writes it


@dataclass(frozen=True)
class Turn:
    """One decision: who moved, the roll, and the play as single-checker steps."""

    player: int  # 0: the left column (the first name), 1: the right
    dice: tuple[int, int]  # high die first
    steps: tuple[int, ...]  # source * 6 + (die - 1) as in `bgai.core.layout`, in the order played


@dataclass(frozen=True)
class GameRecord:
    """A whole game from the opening roll to the last checker borne off."""

    turns: tuple[Turn, ...]
    points: int  # won by player 0: +1..3, or -1..-3 when player 1 won


def turn_of(player: int, dice_index: int, steps: Sequence[int]) -> Turn:
    """A `Turn` from our encodings: the roll's index (`rules.DICE`) and a play's steps, NO_STEP padded."""
    hi, lo = (int(x) for x in DICE[int(dice_index)])
    return Turn(int(player), (hi, lo), tuple(int(s) for s in steps if int(s) != NO_STEP))


def hop(step: int) -> tuple[int, int]:
    """(from, to) in MAT's numbers of one step: our source index 0..23 is point 1..24, 24 the bar;
    a destination below point 1 is off."""
    if not 0 <= step < NO_STEP:
        raise ValueError(f"not a step index: {step}")
    src, die = divmod(step, 6)
    frm = MAT_BAR if src == BAR else src + 1
    return frm, max(frm - (die + 1), MAT_OFF)


def play(board: np.ndarray, turn: Turn) -> tuple[str, np.ndarray]:
    """(the move as MAT text, the board after it) of `turn` from `board` (the mover's view).
    ValueError if a step cannot be made from that board."""
    hops = []
    for step in turn.steps:
        frm, to = hop(step)
        hit = to != MAT_OFF and board[to - 1] == -1
        board = apply_hops(board, [(frm, to)])
        hops.append(f"{frm}/{to}{'*' if hit else ''}")
    return " ".join([f"{turn.dice[0]}{turn.dice[1]}:", *hops]), board


def replay(game: GameRecord) -> tuple[list[str], list[np.ndarray]]:
    """The moves as MAT text and the position after each (its mover's view), from the start.
    ValueError if a step is impossible or the game does not end with the last play."""
    board, texts, after = np.asarray(start_board(), np.int32), [], []
    for i, turn in enumerate(game.turns):
        if i and turn.player == game.turns[i - 1].player:
            raise ValueError(f"turn {i + 1}: player {turn.player} moves twice in a row")
        text, board = play(board, turn)
        texts.append(text)
        after.append(board)
        board = flip(board)
    if not after or after[-1][OFF] != NUM_CHECKERS:
        raise ValueError("the game does not end with its last play")
    if (game.points > 0) != (game.turns[-1].player == 0) or not 1 <= abs(game.points) <= 3:
        raise ValueError(f"{game.points:+d} points for player 0, but player {game.turns[-1].player} won")
    return texts, after


def _name(name: str) -> str:
    """gnubg splits the scores line at colons and lines at newlines: neither may be in a name."""
    return " ".join(name.replace(":", "_").split()) or "_"


def game_text(game: GameRecord, number: int, names: tuple[str, str], scores: tuple[int, int]) -> str:
    """Game `number` (from 1) with the players' points before it, rows as gnubg writes them."""
    texts, _ = replay(game)
    head = f"{_name(names[0])} : {scores[0]}"
    lines = [f" Game {number}", f" {head:<31s}{_name(names[1])} : {scores[1]}"]
    rows: list[list[str | None]] = []
    for turn, text in zip(game.turns, texts, strict=True):
        if turn.player == 0 or not rows or rows[-1][1] is not None:
            rows.append([None, None])
        rows[-1][turn.player] = text
    for n, (left, right) in enumerate(rows, start=1):
        cells = (" " * (_COLUMN + 1) if left is None else f"{left:<{_COLUMN}s} ") + (right or "")
        lines.append(f"{n:3d}) {cells}".rstrip())
    won = abs(game.points)
    lines.append(f"{' ' * (6 if game.points > 0 else 34)}Wins {won} point{'s' if won > 1 else ''}")
    return "\n".join(lines) + "\n"


def mat_text(games: Sequence[GameRecord], names: tuple[str, str], event: str | None = None) -> str:
    """A MAT file of money games between `names` (the left and right columns): the scores lines
    carry the running points each side has won."""
    title = _name(event or "").replace('"', "'")  # gnubg reads the event up to `"]`
    out = [f'; [Event "{title}"]\n' if event else "", "\n 0 point match\n"]
    scores = [0, 0]
    for number, game in enumerate(games, start=1):
        out.append("\n" + game_text(game, number, names, (scores[0], scores[1])))
        scores[0 if game.points > 0 else 1] += abs(game.points)
    return "".join(out)
