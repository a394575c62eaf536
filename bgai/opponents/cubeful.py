"""Cubeful money games of our model: against GNU Backgammon through its external player, or
against an in-graph opponent (pubeval, random, or our own model) in the compiled cubeful loop.

Against gnubg (`play_cubeful`): our moves and cube decisions answer gnubg's external-player
protocol, gnubg is the opponent and the referee (`referee.play_session` with the cube in use).
The dice are gnubg's, its generator seeded per game (`referee.game_seed`): the protocol has no
way to replay a game's dice with the sides swapped, so a session's games are not paired and the
interval on its points per game is the plain normal one over games; but two sessions of one
seed roll the same dice game by game, so two cube policies of ours compare paired by game
(`paired_by_game`). Points are cube x result, as gnubg scores them.

In-graph (`cubeful_match`, `run_cubeful`): `bgai.core.cubegame.play_cubeful`, paired dice; the
opponent's cube policy is naive (never double, always take) unless it is our model's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from bgai.agent import eval_decider, movegen_of, net_of
from bgai.config import Config
from bgai.core.evaluate import MatchResult, finished_pairs
from bgai.core.selfplay import Decide
from bgai.opponents.gnubg import DEFAULT_BINARY
from bgai.opponents.players import ExternalAgent
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
    referee: RefereeReport | None = None  # against gnubg: our moves as gnubg played them


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
    agent: ExternalAgent,
    games: int,
    *,
    opponent_plies: int = 0,
    seed: int = 1,
    jacoby: bool = False,
    binary: str = DEFAULT_BINARY,
    name: str = "bgai",
) -> CubeSession:
    """`games` cubeful money games of our model (`agent`, its weights loaded: moves by
    `eval.player` and `eval.plies`, cube decisions by its policy) against gnubg at
    `opponent_plies`."""
    requests, lines = play_session(
        agent.choose,
        games,
        name=name,
        opponent_plies=opponent_plies,
        seed=seed,
        binary=binary,
        cube=agent.cube,
        jacoby=jacoby,
    )
    ours, theirs, max_cube = tally(lines, name)
    result = MatchResult.of_points(session_points(lines, name))
    return CubeSession(result, ours, theirs, max_cube, check_games(requests, lines, name))


def paired_by_game(a: CubeSession, b: CubeSession) -> MatchResult:
    """Session `a`'s points minus `b`'s, game by game: two sessions of one seed against gnubg
    (the same dice in their g-th games); its ppg and `ppg_ci` are the paired difference."""
    pa, pb = a.result.points, b.result.points
    if pa is None or pb is None or len(pa) != len(pb):
        raise ValueError("paired sessions need the points of as many games each")
    return MatchResult.of_points(pa - pb)


def cube_policy(cfg: Config, naive: bool = False, plies: int = 0, jacoby: bool = False) -> Any:
    """Our model's `cubegame.CubePolicy` at `plies` (0, 1 or 2), or the naive one."""
    from bgai.core.cubegame import model_cube_policy, naive_cube_policy

    if naive:
        return naive_cube_policy()
    return model_cube_policy(net_of(cfg).apply, plies, movegen_of(cfg), jacoby)


def cubeful_match(
    cfg: Config,
    theirs: Decide,
    their_cube: Any,
    pairs: int,
    ours_naive: bool = False,
    plies: int = 0,
    jacoby: bool = False,
) -> Any:
    """A jitted `(our params, their params), key -> CubefulGames`: our model (`eval.player`,
    cube decisions at `plies` or naive) against the decider `theirs` with `their_cube`."""
    import jax

    from bgai.core.cubegame import play_cubeful as play_in_graph

    ours = eval_decider(cfg, net_of(cfg))
    return jax.jit(
        partial(
            play_in_graph,
            ours,
            theirs,
            cube_policy(cfg, ours_naive, plies, jacoby),
            their_cube,
            pairs=pairs,
            max_turns=cfg.selfplay.max_turns,
            movegen=movegen_of(cfg),
            jacoby=jacoby,
        )
    )


def run_cubeful(
    match: Any, params: tuple[Any, Any], key: Any, games: int, progress: Callable[[int], None] | None = None
) -> CubeSession:
    """`games` (whole pairs) of a `cubeful_match`; round i uses `fold_in(key, i)`."""
    import jax

    want, got, have = games + games % 2, [], 0
    for i in range(100 * games):
        if have >= want:
            break
        g = jax.device_get(match(params, jax.random.fold_in(key, i)))
        both = np.asarray(g.finished).reshape(-1, 2).all(axis=1).repeat(2)
        got.append(
            (
                finished_pairs(g.points, g.finished),
                g.doubles[both],
                g.takes[both],
                g.drops[both],
                g.cube[both],
            )
        )
        have += len(got[-1][0])
        if progress is not None:
            progress(min(len(got[-1][0]), want - (have - len(got[-1][0]))))
    else:
        raise RuntimeError(f"{have} of {want} cubeful games ended: raise selfplay.max_turns")
    points, doubles, takes, drops, cubes = (np.concatenate(x)[:want] for x in zip(*got, strict=True))
    actions = [
        CubeActions(int(doubles[:, k].sum()), int(takes[:, k].sum()), int(drops[:, k].sum())) for k in (0, 1)
    ]
    return CubeSession(MatchResult.of_points(points), actions[0], actions[1], int(cubes.max(initial=1)))
