"""`bgai export-games`: MAT notation on hand-built boards; games recorded against pubeval and
random that GNU Backgammon imports move for move (every position it reaches is ours) and
analyses; a wrong move is caught; a missing checkpoint is one line and exit 2."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_model import ARGS, SETS

from bgai.cli.eval import from_checkpoint
from bgai.cli.main import cli
from bgai.config import load_config, model_hash
from bgai.core.layout import BAR, NO_STEP, NUM_CHECKERS, OFF, OPP_BAR
from bgai.core.rules import DICE, start_board
from bgai.opponent_names import parse_opponent
from bgai.opponents.fibs import apply_move, flip
from bgai.opponents.mat import GameRecord, Turn, mat_text, play, replay
from bgai.opponents.record import GameRecorder, Played, games_of
from bgai.runs.manager import train_template
from bgai.train.checkpoint import save_checkpoint

GNUBG = "/usr/games/gnubg"
needs_gnubg = pytest.mark.skipif(not os.access(GNUBG, os.X_OK), reason="needs Debian's gnubg")
START = np.asarray(start_board())


def step(point: int, die: int) -> int:
    """Our step index of a hop from `point` (1..24, 25 the bar) by `die`."""
    return (BAR if point == 25 else point - 1) * 6 + die - 1


def board_of(mine: dict[int, int], theirs: dict[int, int] | None = None) -> np.ndarray:
    """A mover's-view board: {point: checkers} for each side (25: the bar); the rest borne off."""
    b = np.zeros(28, np.int32)
    for point, n in mine.items():
        b[BAR if point == 25 else point - 1] += n
    for point, n in (theirs or {}).items():
        b[25 if point == 25 else point - 1] -= n
    b[OFF] = NUM_CHECKERS - sum(mine.values())
    b[27] = -(NUM_CHECKERS - sum((theirs or {}).values()))
    return b


def test_a_hop_onto_a_blot_is_marked_as_a_hit() -> None:
    board = START.copy()
    board[[17, 18]] = [-1, -4]  # one of their checkers alone on our 18 point
    text, after = play(board, Turn(0, (6, 4), (step(24, 6), step(13, 4))))
    assert text == "64: 24/18* 13/9"
    assert after[17] == 1 and after[OPP_BAR] == -1


def test_a_checker_enters_from_the_bar_as_25() -> None:
    board = board_of({25: 1, 6: 5, 8: 3, 13: 5, 24: 1}, {1: 2, 12: 5, 17: 3, 19: 5})
    text, after = play(board, Turn(1, (3, 1), (step(25, 3), step(6, 1))))
    assert text == "31: 25/22 6/5"
    assert after[BAR] == 0 and after[21] == 1


def test_bearing_off_is_to_0_and_a_larger_die_bears_off_the_highest() -> None:
    board = board_of({6: 1, 3: 1}, {20: 15})
    text, after = play(board, Turn(0, (6, 5), (step(6, 6), step(3, 5))))
    assert text == "65: 6/0 3/0"
    assert after[OFF] == NUM_CHECKERS


def test_a_dance_is_the_roll_alone_and_doubles_are_four_hops() -> None:
    assert play(START, Turn(0, (6, 6), ()))[0] == "66:"
    text, after = play(START, Turn(0, (3, 3), (step(8, 3), step(8, 3), step(6, 3), step(6, 3))))
    assert text == "33: 8/5 8/5 6/3 6/3"
    assert after[4] == 2 and after[2] == 2


def test_an_impossible_step_is_refused() -> None:
    with pytest.raises(ValueError, match="no checker"):
        play(START, Turn(0, (2, 1), (step(10, 2),)))
    with pytest.raises(ValueError, match="held by the opponent"):
        play(START, Turn(0, (5, 1), (step(6, 5),)))  # onto our 1 point, where they have 2
    with pytest.raises(ValueError, match="does not end"):
        replay(GameRecord((Turn(0, (3, 1), (step(8, 3), step(6, 1))),), 1))


# --- games played by a tiny model, written, and read back by GNU Backgammon ---


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(None, env={}, overrides=SETS)
    meta = {"model_hash": model_hash(cfg), "model_version": 3}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), 5, train_template(cfg), meta).parent


def export(out: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["export-games", "--out", str(out), *args, *ARGS])
    return res.exit_code, res.output


@dataclass
class MatGame:
    names: tuple[str, str]
    moves: list[tuple[int, str, str]]  # (column 0 or 1, roll "63", the hops as written)
    winner: int
    points: int


def parse_mat(text: str) -> list[MatGame]:
    """The games of a MAT file as gnubg writes them (its own export) or as we do."""
    games: list[MatGame] = []
    for line in text.splitlines():
        if line.startswith(" Game "):
            games.append(MatGame(("", ""), [], -1, 0))
        elif games and not games[-1].names[0] and ":" in line:
            m = re.fullmatch(r" (.+?) : \d+ +(.+?) : \d+", line)
            assert m, line
            games[-1].names = (m[1], m[2])
        elif m := re.match(r" *\d+\)", line):
            rolls = list(re.finditer(r"([1-6][1-6]):", line))
            for i, r in enumerate(rolls):
                end = rolls[i + 1].start() if i + 1 < len(rolls) else len(line)
                games[-1].moves.append((int(r.start() > 5), r[1], line[r.end() : end].strip()))
        elif m := re.fullmatch(r"( *)Wins (\d) points?", line):
            games[-1].winner, games[-1].points = int(len(m[1]) > 20), int(m[2])
    return games


def positions(game: MatGame) -> list[np.ndarray]:
    """The position after each move (its mover's view), replayed from the start."""
    board, out = START.copy(), []
    for _, _, hops in game.moves:
        board = apply_move(board, hops)
        out.append(board)
        board = flip(board)
    return out


@dataclass
class GnubgReport:
    output: str
    games: list[MatGame]  # gnubg's own export of what it imported
    total_moves: tuple[int, int]
    error_rates: tuple[float, float]  # chequerplay, mEMG


def gnubg_reads(mat: Path) -> GnubgReport:
    """gnubg imports `mat` (money, no cube, no Jacoby: gammons count as played), analyses it at
    0-ply, prints its statistics and exports the match again in its own MAT."""
    back = mat.with_suffix(".gnubg.mat")
    script = mat.with_suffix(".gnubg")
    script.write_text(
        "set cube use off\nset jacoby off\n"
        "set analysis chequerplay evaluation plies 0\nset analysis cubedecision evaluation plies 0\n"
        f"import mat {mat}\nanalyse match\nshow statistics match\nexport match mat {back}\n"
    )
    proc = subprocess.run(
        [GNUBG, "-t", "-q", "-c", str(script)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    moves = re.search(r"^Total moves +(\d+) +(\d+)", out, re.M)
    rates = re.search(r"^Error rate mEMG \(Points\) +(-?[\d.]+) +\(.*?\) +(-?[\d.]+) +\(", out, re.M)
    assert moves and rates, out
    return GnubgReport(
        out,
        parse_mat(back.read_text()) if back.exists() else [],
        (int(moves[1]), int(moves[2])),
        (float(rates[1]), float(rates[2])),
    )


def disagreements(report: GnubgReport, games: list[GameRecord]) -> list[str]:
    """Where what gnubg imported differs from the games as played (empty: every move, every
    position and every result the same)."""
    bad = [
        line for line in report.output.splitlines() if re.search(r"warning|invalid|illegal|unrec", line, re.I)
    ]
    ours = tuple(sum(t.player == p for g in games for t in g.turns) for p in (0, 1))
    if report.total_moves != ours:
        bad.append(f"gnubg counts {report.total_moves} moves, we played {ours}")
    if len(report.games) != len(games):
        bad.append(f"gnubg exports {len(report.games)} games of {len(games)}")
    for i, (theirs, game) in enumerate(zip(report.games, games, strict=False), start=1):
        rolls = [(c, f"{hi}{lo}") for c, (hi, lo) in ((t.player, t.dice) for t in game.turns)]
        if [(c, r) for c, r, _ in theirs.moves] != rolls:
            bad.append(f"game {i}: other rolls or movers")
        elif not all(np.array_equal(a, b) for a, b in zip(positions(theirs), replay(game)[1], strict=True)):
            bad.append(f"game {i}: gnubg reaches other positions")
        if (theirs.winner, theirs.points) != (int(game.points < 0), abs(game.points)):
            bad.append(f"game {i}: gnubg scores {theirs.points} for {theirs.winner}, we {game.points:+d}")
    return bad


@pytest.fixture(scope="module")
def pubeval_games(
    ckpt_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[GameRecord], str]:
    """Three games against pubeval by the CLI, and the same games recorded again (same seed)."""
    out = tmp_path_factory.mktemp("export") / "pubeval.mat"
    code, text = export(
        out, "--checkpoint", str(ckpt_dir), "--opponent", "pubeval", "--games", "3", "--seed", "1"
    )
    assert code == 0, text
    cfg = load_config(None, env={}, overrides=SETS)
    params = from_checkpoint(cfg, next(ckpt_dir.iterdir()))
    with GameRecorder(cfg, parse_opponent("pubeval")) as rec:
        games = rec.play(params, 3, seed=1)
    return out, games, text


def test_the_file_holds_the_games_as_played(pubeval_games: tuple[Path, list[GameRecord], str]) -> None:
    out, games, text = pubeval_games
    assert f"wrote {out}: 3 games" in text
    written = parse_mat(out.read_text())
    assert [g.names for g in written] == [("bgai-v3", "pubeval")] * 3
    assert [[hops for _, _, hops in g.moves] for g in written] == [
        [t.split(":")[1].strip() for t in replay(g)[0]] for g in games
    ]
    assert out.read_text() == mat_text(games, ("bgai-v3", "pubeval"), "bgai-v3 vs pubeval, money, no cube")
    # running money scores before each game; the first row's left cell is empty when pubeval opens
    lines = out.read_text().splitlines()
    heads = [line for line in lines if line.startswith(" bgai-v3 : ")]
    before = np.cumsum([[0, 0]] + [[max(g.points, 0), max(-g.points, 0)] for g in games[:-1]], axis=0)
    assert heads == [f" {'bgai-v3 : ' + str(a):<31s}pubeval : {b}" for a, b in before]
    firsts = [line for line in lines if line.startswith("  1)")]
    assert [line.startswith("  1)" + " " * 29) for line in firsts] == [g.turns[0].player == 1 for g in games]


def played_of(games: list[GameRecord]) -> Played:
    """The host arrays a paired batch of `games` would give (odd games: our model as player 1)."""
    t, b = max(len(g.turns) for g in games), len(games)
    boards, dice = np.zeros((t, b, 28), np.int8), np.zeros((t, b), np.int8)
    player, valid = np.zeros((t, b), np.int8), np.zeros((t, b), bool)
    steps = np.full((t, b, 4), NO_STEP, np.uint8)
    for j, g in enumerate(games):
        after = replay(g)[1]
        for i, turn in enumerate(g.turns):
            boards[i, j] = START if i == 0 else flip(after[i - 1])
            dice[i, j] = [tuple(d) for d in DICE.tolist()].index(turn.dice)
            player[i, j], valid[i, j] = turn.player ^ (j % 2), True
            steps[i, j, : len(turn.steps)] = turn.steps
    result = np.array([g.points * (-1 if j % 2 else 1) for j, g in enumerate(games)], np.int32)
    return Played(boards, dice, player, valid, steps, valid.copy(), result, np.ones(b, bool))


def test_recorded_plays_are_checked_against_the_positions_that_followed(
    pubeval_games: tuple[Path, list[GameRecord], str],
) -> None:
    games = pubeval_games[1]
    assert games_of(played_of(games), paired=True) == games
    p = played_of(games)
    t = next(
        i for i, turn in enumerate(games[0].turns) if len(turn.steps) == 2 and i < len(games[0].turns) - 1
    )
    p.steps[t, 0, 1] = NO_STEP  # one die left unplayed
    with pytest.raises(RuntimeError, match="game 0: the plays recorded"):
        games_of(p, paired=True)
    p = played_of(games)
    p.known[3, 1] = False  # gnubg's play, missing from a capacity-limited move list
    with pytest.raises(RuntimeError, match="outside our move list"):
        games_of(p, paired=True)


@needs_gnubg
def test_gnubg_imports_every_move_and_analyses_both_players(
    pubeval_games: tuple[Path, list[GameRecord], str],
) -> None:
    out, games, _ = pubeval_games
    report = gnubg_reads(out)
    assert disagreements(report, games) == []
    assert all(r <= 0 for r in report.error_rates)  # mEMG per move: 0 or a loss
    assert report.error_rates[0] < 0  # an untrained net errs


@needs_gnubg
def test_a_wrong_move_is_caught(pubeval_games: tuple[Path, list[GameRecord], str], tmp_path: Path) -> None:
    """gnubg's import checks only that each hop can be made: a move that drops a die is taken,
    and it is the positions compared with the games as played that catch it."""
    out, games, _ = pubeval_games
    text = out.read_text()
    move = next(m for m in re.findall(r"\d\d: \d+/\d+\*? \d+/\d+\*?", text) if "*" not in m)
    wrong = tmp_path / "wrong.mat"
    wrong.write_text(text.replace(move, move.rsplit(" ", 1)[0], 1))
    assert disagreements(gnubg_reads(wrong), games) != []


@needs_gnubg
@pytest.mark.parametrize(("opponent", "name"), [("random", "random"), ("gnubg", "gnubg-0ply")])
def test_games_against_random_and_gnubg_import_too(
    ckpt_dir: Path, tmp_path: Path, opponent: str, name: str
) -> None:
    """gnubg's own plays come through its external engine, outside our compiled player: gnubg's
    analysis at the same depth finds (almost) no error in them."""
    out = tmp_path / f"{opponent}.mat"
    code, text = export(out, "--checkpoint", str(ckpt_dir), "--opponent", opponent, "--games", "2")
    assert code == 0, text
    written = parse_mat(out.read_text())
    assert [g.names for g in written] == [("bgai-v3", name)] * 2
    report = gnubg_reads(out)
    assert report.total_moves == tuple(sum(c == p for g in written for c, _, _ in g.moves) for p in (0, 1))
    assert [[(c, r) for c, r, _ in g.moves] for g in report.games] == [
        [(c, r) for c, r, _ in g.moves] for g in written
    ]
    assert all(
        np.array_equal(a, b) for t, w in zip(report.games, written, strict=True)
        for a, b in zip(positions(t), positions(w), strict=True)
    )  # fmt: skip
    if opponent == "gnubg":  # its own (cubeless 0-ply) moves, nearly all the best at 0-ply
        assert report.error_rates[0] < 4 * report.error_rates[1] <= 0, report.output


def test_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, text = export(tmp_path / "x.mat", "--checkpoint", str(tmp_path / "nowhere.bgai"))
    assert code == 2 and text.count("\n") == 1 and "cannot use" in text and "nowhere.bgai" in text, text
    code, text = export(tmp_path / "x.mat", "--checkpoint", str(tmp_path))
    assert code == 2 and "no checkpoint" in text and text.count("\n") == 1, text
    assert export(tmp_path / "x.mat", "--checkpoint", str(tmp_path), "--opponent", "past_1")[0] == 2
