"""FIBS board lines and gnubg move notation: hand-built cases, random-play sweeps, gnubg itself.

The sweeps use seeded random play over our own legal plays (`random_positions.random_play`): every
legal play written with `format_play` must replay with `apply_move` to its afterstate, every
board line must parse back, and gnubg_nn's best play must be one of our legal plays.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from random_positions import Position, random_play

from bgai.core import rules
from bgai.core.positionid import position_id
from bgai.core.rules import BAR, NO_STEP, OFF, OPP_BAR, OPP_OFF
from bgai.opponents.fibs import (
    apply_hops,
    apply_move,
    board_line,
    flip,
    format_play,
    parse_board_line,
    parse_fibs,
    parse_move,
)
from bgai.opponents.gnubg import GnubgNN

START = np.asarray(rules.start_board())
START_LINE_53 = (  # gnubg 1.07: `new game`, `set dice 5 3`, `show board` with root to move
    "board:root:gnubg:0:0:0:0:-2:0:0:0:0:5:0:3:0:0:0:-5:5:0:0:0:-3:0:-5:0:0:0:0:2:0:"
    "1:5:3:5:3:1:1:1:0:1:-1:0:25:0:0:0:0:0:0:0:1"
)


def board(points: dict[int, int], bar: int = 0, opp_bar: int = 0) -> np.ndarray:
    """A board from {our point 1..24: count (negative: theirs)}; checkers off fill up to 15."""
    b = np.zeros(28, np.int32)
    for p, n in points.items():
        b[p - 1] = n
    b[BAR], b[OPP_BAR] = bar, -opp_bar
    b[OFF] = 15 - int(np.maximum(b[:24], 0).sum()) - bar
    b[OPP_OFF] = -(15 - int(np.maximum(-b[:24], 0).sum()) - opp_bar)
    return b


def step(point: int | str, die: int) -> int:
    src = BAR if point == "bar" else int(point) - 1
    return src * 6 + die - 1


# --- board lines ---------------------------------------------------------------------------


def test_start_position_line_is_gnubgs() -> None:
    b, dice = parse_board_line(START_LINE_53)
    assert np.array_equal(b, START) and dice == (5, 3)
    ours = board_line(START, (5, 3), "root", "gnubg").split(":")
    theirs = START_LINE_53.split(":")
    # FIBS style where gnubg differs: the opponent's dice not rolled (35, 36), field 52 0.
    assert [i for i, (a, c) in enumerate(zip(ours, theirs, strict=True)) if a != c] == [35, 36, 52]


def test_bar_and_off_fields() -> None:
    b = board({6: 3, 5: 2, 1: -2, 24: -1, 20: -2}, bar=1, opp_bar=2)
    fields = board_line(b, (6, 1)).split(":")[1:]
    assert fields[5] == "-2" and fields[30] == "1"  # the opponent's bar, ours
    assert fields[44:48] == [str(b[OFF]), str(-b[OPP_OFF]), "1", "2"]
    got, dice = parse_board_line(board_line(b, (6, 1)))
    assert np.array_equal(got, b) and dice == (6, 1)


def test_opponent_to_move_is_flipped() -> None:
    """turn -1 (gnubg prints it when its player 0 moves): the board comes back from that side."""
    b = board({6: 5, 8: 3, 13: 5, 24: 2, 1: -2, 12: -5, 17: -3, 19: -5})
    fields = board_line(b, (4, 2)).split(":")
    fields[32], fields[33:37] = "-1", ["0", "0", "4", "2"]  # turn, our dice, theirs
    pos = parse_fibs(":".join(fields))
    assert not pos.player_on_roll and pos.dice == (4, 2)
    assert np.array_equal(pos.board, b)
    assert np.array_equal(parse_board_line(":".join(fields))[0], flip(b))


def test_other_color_and_direction() -> None:
    """FIBS lines for X (color -1) count X's checkers negative and may run direction +1."""
    b = board({6: 4, 8: 3, 13: 5, 24: 1, 1: -2, 12: -5, 17: -3, 19: -4, 22: -1}, bar=1)
    f = board_line(b, (3, 2)).split(":")
    cells = [-int(x) for x in f[6:32]]  # color -1: the player's checkers negative
    cells = cells[::-1]  # direction +1: index 25 - p is point p, 0 the player's bar
    f[6:32] = [str(x) for x in cells]
    f[32], f[41], f[42], f[43], f[44] = "-1", "-1", "1", "25", "0"  # turn = color: player on roll
    got, dice = parse_board_line(":".join(f))
    assert np.array_equal(got, b) and dice == (3, 2)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("bord:a:b", "starts with 'board:'"),
        (START_LINE_53.rsplit(":", 1)[0], "52 fields"),
        (START_LINE_53 + ":0", "52 fields"),
        (START_LINE_53.replace(":5:3:5:3:", ":5:x:5:3:"), "integers"),
        (START_LINE_53.replace(":0:1:5:3:5:3:", ":0:0:5:3:5:3:"), "game is over"),
        (START_LINE_53.replace(":1:-1:0:25:", ":2:-1:0:25:"), r"\+1 or -1"),
        (START_LINE_53.replace(":5:3:5:3:", ":7:3:7:3:"), "dice"),
        (START_LINE_53.replace("0:0:-2:0:", "0:0:-12:0:", 1), "more than 15"),
        (START_LINE_53.replace(":25:0:0:", ":25:1:0:"), "borne-off"),
    ],
)
def test_malformed_lines_raise(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_board_line(line)


# --- moves ---------------------------------------------------------------------------------


def test_apply_move_notation() -> None:
    b = board({24: 2, 13: 5, 8: 3, 6: 5, 18: -1, 11: -1, 1: -2, 12: -5, 19: -5, 20: -1})
    after = apply_move(b, "24/18*/11* 13/7(2)")
    assert after[23] == 1 and after[17] == 0 and after[10] == 1 and after[OPP_BAR] == -2
    assert after[12] == 3 and after[6] == 2
    assert np.array_equal(apply_move(b, "24/18* 18/11*"), apply_move(b, "24/18*/11*"))
    assert np.array_equal(apply_move(b, ""), b)
    assert parse_move("bar/22 6/off 25/20 3/0 8/3*(2)") == [
        (25, 22),
        (6, 0),
        (25, 20),
        (3, 0),
        (8, 3),
        (8, 3),
    ]
    home = board({1: 1, 24: -1}, bar=1)
    assert apply_move(home, "bar/off")[OFF] == 14  # impossible by the rules, but applicable


@pytest.mark.parametrize(
    ("move", "message"),
    [
        ("23/17", "no checker"),  # empty point
        ("bar/20", "no checker"),  # nothing on the bar
        ("13/12", "held by the opponent"),
        ("8/13", "impossible hop"),
        ("6/bar", "impossible hop"),
        ("off/3", "impossible hop"),
        ("26/20", "not a point"),
        ("13-7", "from/to"),
        ("13//7", "from/to"),
        ("13/7(5)", "not a move"),
    ],
)
def test_impossible_moves_raise(move: str, message: str) -> None:
    b = board({24: 2, 13: 5, 8: 3, 6: 5, 12: -2, 19: -5, 1: -8})
    with pytest.raises(ValueError, match=message):
        apply_move(b, move)


def test_apply_hops_is_gnubg_numbering() -> None:
    b = board({6: 2, 3: 1, 22: -1, 2: -14}, bar=1)
    after = apply_hops(b, [(25, 22), (3, 0)])
    assert after[BAR] == 0 and after[21] == 1 and after[OPP_BAR] == -1 and after[OFF] == b[OFF] + 1


def test_format_play() -> None:
    assert format_play(np.array([step("bar", 3), step(6, 6), NO_STEP, NO_STEP])) == "bar/22 6/off"
    assert (
        format_play(np.array([step(4, 6), step(4, 6), step(4, 6), step(2, 6)])) == "4/off 4/off 4/off 2/off"
    )
    assert format_play(np.full(4, NO_STEP)) == ""
    with pytest.raises(ValueError, match="step index"):
        format_play(np.array([151, NO_STEP, NO_STEP, NO_STEP]))


# --- sweeps over random play ---------------------------------------------------------------


def test_every_legal_play_replays_from_its_notation(positions: list[Position]) -> None:
    plays = 0
    for pos in positions:
        for after, steps in zip(pos.boards, pos.steps, strict=True):
            got = apply_move(pos.board, format_play(steps))
            assert np.array_equal(got, after), (position_id(pos.board), pos.dice, format_play(steps))
            plays += 1
    bar = sum(p.on_bar for p in positions)
    off = sum(p.bears_off for p in positions)
    print(f"{plays} plays of {len(positions)} positions ({bar} from the bar, {off} bearing off) replayed")
    assert bar >= 100 and off >= 100


def test_board_lines_round_trip(positions: list[Position]) -> None:
    for pos in positions:
        for dice in (pos.dice, pos.dice[::-1]):
            got, got_dice = parse_board_line(board_line(pos.board, dice))
            assert np.array_equal(got, pos.board) and got_dice == dice


def test_gnubg_nn_plays_one_of_our_legal_plays(positions: list[Position]) -> None:
    pytest.importorskip("gnubg_nn")
    with GnubgNN(0) as nn:
        illegal = [p for p in positions if not p.is_legal(nn.best_afterstate(p.board, p.dice))]
    bar = sum(p.on_bar for p in positions)
    off = sum(p.bears_off for p in positions)
    print(f"gnubg_nn 0-ply: {len(positions)} positions ({bar} from the bar, {off} bearing off)")
    assert len(positions) >= 2_000 and bar >= 100 and off >= 100
    assert not illegal, [(position_id(p.board), p.dice) for p in illegal[:5]]


def test_gnubg_prints_our_layout(gnubg_binary: str) -> None:
    """Set positions with checkers on the bar and off in gnubg; its raw boards parse to ours."""
    chosen = [
        p for p in random_play(600, 7) if p.on_bar or p.board[OFF] or p.board[OPP_OFF] or p.board[OPP_BAR]
    ]
    chosen = chosen[::4][:50]
    commands = ["set output rawboard on", "new game"]
    for i, p in enumerate(chosen):
        commands += [f"set turn {i % 2}", f"set board {position_id(p.board)}"]
        commands += [f"set dice {p.dice[0]} {p.dice[1]}", "show board"]
    out = subprocess.run(
        [gnubg_binary, "-t", "-q"],
        input="\n".join(commands) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    blocks = out.split("The dice have been set to")[1:]
    assert len(blocks) == len(chosen)
    for i, (p, block) in enumerate(zip(chosen, blocks, strict=True)):
        line = next(x for x in block.splitlines() if x.startswith("board:"))
        shown = parse_fibs(line)
        assert shown.player_on_roll == (i % 2 == 1) and shown.dice == p.dice  # player 1 = the FIBS player
        assert np.array_equal(shown.mover_board(), p.board), (line, p.board.tolist())
        if shown.player_on_roll:  # the same line as ours but for the FIBS-style fields
            ours = board_line(p.board, p.dice, "root", "gnubg").split(":")
            diff = {j for j, (a, c) in enumerate(zip(ours, line.split(":"), strict=True)) if a != c}
            assert diff <= {35, 36, 47, 48, 52}, diff
    print(
        f"gnubg showed {len(chosen)} positions as we write them: "
        f"{sum(p.on_bar or bool(p.board[OPP_BAR]) for p in chosen)} with checkers on a bar, "
        f"{sum(bool(p.board[OFF] or p.board[OPP_OFF]) for p in chosen)} with checkers off"
    )


# gnubg 1.07's lines to its external player in a cubeful money session (`set cube use on`)
_ASKED_TO_TAKE = (  # gnubg (on roll, before rolling) has doubled bgai: bgai must answer
    "board:bgai:gnubg:0:0:0:0:0:1:0:0:-2:6:0:1:0:0:0:-3:3:0:0:0:1:-5:-5:1:0:0:2:0:0:-1:0:0:0:0"
    ":1:1:1:1:1:-1:0:25:0:0:0:0:0:0:0:1"
)
_MAY_REDOUBLE = (  # bgai took: the cube is 2 and bgai's, and bgai is on roll before rolling
    "board:gnubg:bgai:0:0:0:0:0:1:0:0:-2:6:0:1:0:0:0:-3:3:0:0:0:1:-4:-3:-3:0:0:2:0:1:1:0:0:0:0"
    ":2:1:0:0:1:-1:0:25:0:0:0:0:0:0:0:1"
)


def test_cube_fields_of_gnubgs_lines() -> None:
    asked = parse_fibs(_ASKED_TO_TAKE)
    assert (asked.cube, asked.may_double, asked.doubled) == (1, (True, True), True)
    assert not asked.player_on_roll and asked.dice == (0, 0)  # the doubler is on roll
    assert asked.mover_may_double() == (True, True)
    # the FIBS player is the external player (bgai) in both lines, though gnubg swaps the names
    mine = parse_fibs(_MAY_REDOUBLE)
    assert (mine.cube, mine.doubled, mine.dice, mine.player_on_roll) == (2, False, (0, 0), True)
    assert mine.mover_may_double() == (True, False)  # bgai owns the cube


def test_a_cube_that_is_no_power_of_two_is_refused() -> None:
    fields = _MAY_REDOUBLE.split(":")
    fields[1 + 36] = "3"
    with pytest.raises(ValueError, match="power of 2"):
        parse_fibs(":".join(fields))
