"""Whole games inside Debian's gnubg with our player as its external player, refereed.

gnubg forfeits an illegal external move without a word, so `check_games` compares each move
we served with the board gnubg printed next. The same checker must catch an illegal move
in a real game and in a doctored record, or its silence would prove nothing.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from random_positions import legal

from bgai.core import rules
from bgai.core.rules import BAR, NUM_CHECKERS, OFF
from bgai.opponents.fibs import FibsPosition, apply_hops, apply_move, board_line, format_play
from bgai.opponents.gnubg import GnubgNN
from bgai.opponents.referee import (
    Choose,
    ExternalPlayer,
    Request,
    check_games,
    game_seed,
    play_session,
    session_points,
)

GAMES = 10


def random_player(seed: int) -> Choose:
    """Picks a random legal play (seeded): legality is the point, not strength."""
    rng = np.random.default_rng(seed)

    def choose(board: np.ndarray, dice: tuple[int, int]) -> tuple[np.ndarray, str]:
        boards, steps = legal(board, dice)
        k = int(rng.integers(len(boards)))
        return boards[k], format_play(steps[k])

    return choose


def cheat_once(choose: Choose, after: int) -> Choose:
    """`choose`, but the first two-hop move after `after` calls plays only its first hop: illegal."""
    calls, cheated = [0], [False]

    def cheat(board: np.ndarray, dice: tuple[int, int]) -> tuple[np.ndarray, str]:
        afterstate, move = choose(board, dice)
        calls[0] += 1
        if calls[0] > after and not cheated[0] and len(move.split()) >= 2:
            cheated[0] = True
            first = move.split()[0]
            return apply_move(board, first), first
        return afterstate, move

    return cheat


def served_stats(requests: list[Request]) -> str:
    bar = sum(r.board[BAR] > 0 for r in requests)
    off = sum(r.afterstate[OFF] > r.board[OFF] for r in requests)
    none = sum(r.move == "" for r in requests)
    return f"{bar} from the bar, {off} bearing off, {none} without a move"


@pytest.fixture(scope="module")
def random_games(gnubg_binary: str) -> tuple[list[Request], list[str]]:
    return play_session(random_player(1), GAMES, seed=11, binary=gnubg_binary)


def test_random_player_never_plays_illegally(random_games: tuple[list[Request], list[str]]) -> None:
    requests, lines = random_games
    report = check_games(requests, lines)
    print(f"{report.games} games, {report.checked} of our moves checked ({served_stats(requests)})")
    assert report.mismatches == ()
    assert report.games == GAMES and report.checked == len(requests) >= 10 * GAMES


def test_gnubg_nn_player_wins_some_and_is_refereed(gnubg_binary: str) -> None:
    """A strong player of ours, so games also end with our last checker borne off."""
    pytest.importorskip("gnubg_nn")
    with GnubgNN(0) as nn:

        def choose(board: np.ndarray, dice: tuple[int, int]) -> tuple[np.ndarray, str]:
            hops = nn.best_hops(board, dice)
            return apply_hops(board, hops), " ".join(f"{a}/{b}" for a, b in hops)  # gnubg numbers

        requests, lines = play_session(choose, 4, seed=5, binary=gnubg_binary)
    report = check_games(requests, lines)
    won = sum(r.afterstate[OFF] == NUM_CHECKERS for r in requests)
    print(f"{report.games} games, {won} won by our last checker off, {report.checked} moves checked")
    print(served_stats(requests))
    assert report.mismatches == () and report.games == 4 and report.checked == len(requests)
    assert won >= 1


def test_our_agent_never_plays_illegally(gnubg_binary: str) -> None:
    """Our model's greedy player (the local config's network and move generator), as gnubg's
    external player: every move it served is the one gnubg played."""
    import jax

    from bgai.agent import net_of
    from bgai.config import load_config
    from bgai.core.network import init_params
    from bgai.opponents.players import agent_choose

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "local.yaml", env={})
    params = init_params(net_of(cfg), jax.random.key(7))
    requests, lines = play_session(agent_choose(cfg, params), 4, seed=21, binary=gnubg_binary)
    report = check_games(requests, lines)
    print(f"our agent: {report.games} games, {report.checked} moves checked ({served_stats(requests)})")
    assert report.mismatches == () and report.games == 4 and report.checked == len(requests) >= 40


def test_a_cubeful_session_with_our_cube_decisions(gnubg_binary: str) -> None:
    """The cube in use: gnubg asks us before our rolls and when it doubles us, and acts on each
    answer (a double, a take, a drop); moves are still refereed; the points are cube x result."""

    answers: list[tuple[FibsPosition, str]] = []

    def cube(pos: FibsPosition) -> str:  # double whenever we may; take every other double
        answer = ("take" if len(answers) % 2 else "drop") if pos.doubled else "double"
        answers.append((pos, answer))
        return answer

    requests, lines = play_session(random_player(4), 6, seed=13, binary=gnubg_binary, cube=cube)
    report = check_games(requests, lines)
    assert report.mismatches == () and report.games == 6 and report.checked == len(requests)
    said = [a for _, a in answers]
    text = "\n".join(lines)
    assert said.count("double") == len(re.findall(r"^bgai doubles", text, re.M)) >= 1
    assert said.count("take") == len(re.findall(r"^bgai accepts", text, re.M))
    assert said.count("drop") == len(re.findall(r"^bgai refuses", text, re.M))
    # a double is offered on a cube we may use; after our take the cube is ours and bigger
    for pos, answer in answers:
        if answer == "double":
            assert pos.mover_may_double()[0] and pos.dice == (0, 0)
    points = session_points(lines)
    assert len(points) == 6 and all(p != 0 for p in points)
    assert any(abs(p) >= 2 for p in points)  # we doubled in every game we could: cubes were turned


def _openings(lines: list[str]) -> list[tuple[str, ...]]:
    """Each game's opening rolls, ties included: a run of gnubg's "X rolls a, Y rolls b." lines."""
    rolls = re.compile(r"^\S+ rolls \d, \S+ rolls \d\.")
    games: list[list[str]] = []
    before = ""
    for line in lines:
        if rolls.match(line):
            if not rolls.match(before):
                games.append([])
            games[-1].append(line)
        before = line
    return [tuple(g) for g in games]


def test_a_session_rolls_each_game_from_its_own_seed(gnubg_binary: str) -> None:
    """Two sessions with one seed and opposite cube answers (one drops every double and never
    doubles, the other doubles whenever it may and takes): their games end at different times,
    yet game g of each has the same opening: its dice come from (seed, g) alone."""

    def passive(pos: FibsPosition) -> str:
        return "drop" if pos.doubled else "roll"

    def active(pos: FibsPosition) -> str:
        return "take" if pos.doubled else "double"

    runs = [
        play_session(random_player(4), 6, seed=9, binary=gnubg_binary, cube=c)[1] for c in (passive, active)
    ]
    assert session_points(runs[0]) != session_points(runs[1])
    first, second = (_openings(r) for r in runs)
    assert len(first) == 6 and first == second
    assert len(set(first)) > 1  # each game its own dice
    other = _openings(play_session(random_player(4), 2, seed=10, binary=gnubg_binary, cube=passive)[1])
    assert other != first[:2]


def test_game_seeds_are_per_session_and_game() -> None:
    seeds = {game_seed(s, g) for s in range(20) for g in range(50)}
    assert len(seeds) == 1000 and all(0 <= x < 2**31 for x in seeds)
    assert game_seed(3, 4) == game_seed(3, 4)


def test_our_agent_plays_with_the_cube(gnubg_binary: str) -> None:
    """Our model's moves and cube decisions (0-ply Janowski) in a cubeful session: refereed, and
    every cube answer one that fits the request."""
    import jax

    from bgai.agent import net_of
    from bgai.config import load_config
    from bgai.core.network import init_params
    from bgai.opponents.players import agent_choose, agent_cube

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "local.yaml", env={})
    params = init_params(net_of(cfg), jax.random.key(7))
    decide = agent_cube(cfg, params)
    seen: list[str] = []

    def cube(pos: object) -> str:
        seen.append(decide(pos))
        return seen[-1]

    requests, lines = play_session(agent_choose(cfg, params), 2, seed=21, binary=gnubg_binary, cube=cube)
    report = check_games(requests, lines)
    assert report.mismatches == () and report.games == 2 and report.checked == len(requests)
    assert seen and set(seen) <= {"roll", "double", "take", "drop"}
    assert len(session_points(lines)) == 2


def test_a_real_illegal_move_is_caught(gnubg_binary: str) -> None:
    requests, lines = play_session(cheat_once(random_player(2), after=2), 1, seed=3, binary=gnubg_binary)
    report = check_games(requests, lines)
    print(report.mismatches)
    assert len(report.mismatches) == 1 and "gnubg went on with" in report.mismatches[0]


def test_a_doctored_record_is_caught(random_games: tuple[list[Request], list[str]]) -> None:
    requests, lines = random_games
    n = next(i for i, r in enumerate(requests) if len(legal(r.board, r.dice)[0]) > 1)
    other = next(
        b
        for b in legal(requests[n].board, requests[n].dice)[0]
        if not np.array_equal(b, requests[n].afterstate)
    )
    doctored = list(requests)
    doctored[n] = dataclasses.replace(requests[n], afterstate=other)
    report = check_games(doctored, lines)
    assert len(report.mismatches) == 1 and report.mismatches[0].startswith(f"move {n} ")
    forfeited = list(requests)
    forfeited[n] = dataclasses.replace(requests[n], afterstate=requests[n].board)
    assert len(check_games(forfeited, lines).mismatches) == 1
    assert any("asked" in m for m in check_games(requests[:n] + requests[n + 1 :], lines).mismatches)


def test_a_failing_player_stops_the_session(gnubg_binary: str) -> None:
    def broken(board: np.ndarray, dice: tuple[int, int]) -> tuple[np.ndarray, str]:
        raise RuntimeError("no idea")

    with pytest.raises(RuntimeError, match="no idea"):
        play_session(broken, 2, binary=gnubg_binary, timeout=60)


def test_external_player_protocol_without_gnubg() -> None:
    """gnubg's side by hand: one connection, board lines ended by newline and NUL, one reply each."""
    start = np.asarray(rules.start_board())
    with (
        ExternalPlayer(random_player(0)) as player,
        socket.create_connection(("127.0.0.1", player.port)) as conn,
    ):
        f = conn.makefile("rwb")
        for dice in ((5, 3), (6, 6)):
            f.write((board_line(start, dice) + "\n\0").encode())
            f.flush()
            reply = f.readline().decode().strip()
            assert np.array_equal(apply_move(start, reply), player.requests[-1].afterstate)
        assert [r.dice for r in player.requests] == [(5, 3), (6, 6)]


def test_external_player_answers_a_bad_line_with_error_and_close_reraises() -> None:
    player = ExternalPlayer(random_player(0))
    player.start()
    with socket.create_connection(("127.0.0.1", player.port)) as conn:
        conn.sendall(b"board:nonsense\n")
        assert conn.makefile("rb").readline().startswith(b"Error: ValueError")
    with pytest.raises(ValueError, match="board:"):
        player.close()
    assert player.error is None
