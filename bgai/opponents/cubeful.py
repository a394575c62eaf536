"""Cubeful money sessions against GNU Backgammon: our moves and cube decisions as its external
player, gnubg as the opponent and the referee (`referee.play_session` with the cube in use).

The dice are gnubg's (its seeded generator, one session): the protocol has no way to replay a
game's dice with the sides swapped, so these games are not paired; the interval on points per
game is the plain normal one over games. Points are cube x result, as gnubg scores them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bgai.config import Config
from bgai.core.evaluate import MatchResult
from bgai.opponents.gnubg import DEFAULT_BINARY
from bgai.opponents.players import agent_choose, agent_cube
from bgai.opponents.referee import RefereeReport, check_games, play_session, session_points

_DOUBLES = re.compile(r"^(?P<name>\S+) doubles\.")
_TAKES = re.compile(r"^(?P<name>\S+) accepts the cube at (?P<cube>\d+)")
_DROPS = re.compile(r"^(?P<name>\S+) refuses the cube")


@dataclass(frozen=True)
class CubeActions:
    """One side's cube actions over a session."""

    doubles: int = 0
    takes: int = 0
    drops: int = 0


@dataclass(frozen=True)
class CubeSession:
    """Our results in a cubeful session: points per game, both sides' cube actions."""

    result: MatchResult
    ours: CubeActions
    theirs: CubeActions
    max_cube: int  # the largest cube taken (1: none)
    referee: RefereeReport


def tally(lines: Sequence[str], name: str = "bgai") -> tuple[CubeActions, CubeActions, int]:
    """Our and the opponent's cube actions, and the largest cube taken, from gnubg's output."""
    counts = {True: [0, 0, 0], False: [0, 0, 0]}
    max_cube = 1
    for line in lines:
        for k, regex in enumerate((_DOUBLES, _TAKES, _DROPS)):
            if m := regex.match(line):
                counts[m["name"] == name][k] += 1
                if k == 1:
                    max_cube = max(max_cube, int(m["cube"]))
    return CubeActions(*counts[True]), CubeActions(*counts[False]), max_cube


def play_cubeful(
    cfg: Config,
    params: Any,
    games: int,
    *,
    opponent_plies: int = 0,
    cube_plies: int = 0,
    seed: int = 1,
    jacoby: bool = False,
    binary: str = DEFAULT_BINARY,
    name: str = "bgai",
) -> CubeSession:
    """`games` cubeful money games of our model (moves: `eval.player` and `eval.plies`; cube
    decisions at `cube_plies`, 0 or 1) against gnubg at `opponent_plies`."""
    choose = agent_choose(cfg, params)
    cube = agent_cube(cfg, params, cube_plies, jacoby)
    requests, lines = play_session(
        choose,
        games,
        name=name,
        opponent_plies=opponent_plies,
        seed=seed,
        binary=binary,
        cube=cube,
        jacoby=jacoby,
    )
    ours, theirs, max_cube = tally(lines, name)
    result = MatchResult.of_points(session_points(lines, name))
    return CubeSession(result, ours, theirs, max_cube, check_games(requests, lines, name))
