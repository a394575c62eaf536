"""`bgai bench build-cubes`: make the cube decision set of `bgai bench strength --cube` (seeded).

1. Positions from the games of `decisions_build.play_games` (gnubg 0-ply self-play with some
   random plays): each position before its roll, with a cube: centred, or (a share
   `owned_fraction`) a cube of 2 the side on roll owns.
2. Every candidate analysed by Debian gnubg's 0-ply cube analysis (`hint`, cubeful, no Jacoby,
   no beavers); a position is kept when its decision is close: doubling is within `close` of
   not doubling, or taking within `close` of passing (far from it, every player is right).
3. The kept ones analysed at 2 ply, up to `decisions`, split across `workers` gnubg processes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bgai.bench.cubes import DP, DT, ND, CubeSet
from bgai.bench.decisions_build import BuildSpec, gnubg_version, play_games
from bgai.core.positionid import position_id
from bgai.opponents.gnubg import DEFAULT_BINARY, GnubgError, GnubgProcess

_ACTION = re.compile(r"^\s*\d\. (No double|Double, take|Double, pass)\s+([+-]?\d+\.\d+)")
_COLUMN = {"No double": ND, "Double, take": DT, "Double, pass": DP}


@dataclass(frozen=True)
class CubeBuildSpec:
    decisions: int = 1000
    owned_fraction: float = 0.3
    close: float = 0.25  # kept when double vs no double, or take vs pass, is this close at 0 ply
    candidates: int = 6000  # positions analysed at 0 ply
    workers: int = 2
    seed: int = 20261205


class CubeAnalyst:
    """Debian gnubg's cube analysis of positions, through its text interface: `set board`,
    the cube, `hint`, and the three cubeful equities it prints."""

    def __init__(self, plies: int, binary: str = DEFAULT_BINARY, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._gnubg = GnubgProcess(binary)
        self._gnubg.send(
            "set jacoby off",
            "set beavers 0",
            "set player 1 name bgai",
            "new session",
            "set evaluation cubedecision evaluation cubeful on",
            f"set evaluation cubedecision evaluation plies {plies}",
        )
        self._at = self._gnubg.wait_for(rf"cube decisions will use {plies} ply evaluation", 0, timeout)

    def analyse(self, board: np.ndarray, owned: bool) -> np.ndarray:
        """No double, double/take, double/pass [3]: the equities of the side on roll of `board`
        (its view), before its roll, with a centred cube or a cube of 2 it owns."""
        cube = ("set cube value 2", "set cube owner gnubg") if owned else ("set cube centre",)
        self._gnubg.send("set turn gnubg", f"set board {position_id(board)}", *cube, "hint")
        end = self._gnubg.wait_for(
            r"^Proper cube action|^You cannot double|^Error", self._at + 1, self.timeout
        )
        out = np.full(3, np.nan)
        for line in self._gnubg.lines[self._at : end]:
            if m := _ACTION.match(line):
                out[_COLUMN[m[1]]] = float(m[2])
        self._at = end
        if np.isnan(out).any():
            raise GnubgError(f"no cube analysis for {position_id(board)}: {self._gnubg.tail()}")
        return out

    def close(self) -> None:
        self._gnubg.close()


def _analyse_all(boards: np.ndarray, owned: np.ndarray, plies: int, workers: int, binary: str) -> np.ndarray:
    def shard(idx: np.ndarray) -> np.ndarray:
        analyst = CubeAnalyst(plies, binary)
        try:
            return (
                np.stack([analyst.analyse(boards[i], bool(owned[i])) for i in idx])
                if len(idx)
                else np.zeros((0, 3))
            )
        finally:
            analyst.close()

    parts = np.array_split(np.arange(len(boards)), workers)
    with ThreadPoolExecutor(workers, thread_name_prefix="gnubg-cube") as pool:
        results = list(pool.map(shard, parts))
    return np.concatenate(results).astype(np.float32)


def build_cube_set(
    spec: CubeBuildSpec, binary: str = DEFAULT_BINARY, log: Callable[[str], None] = print
) -> tuple[CubeSet, dict[str, Any]]:
    """The set and a report (counts, seconds)."""
    t0 = time.perf_counter()
    per_class = spec.candidates // 3
    cand = play_games(BuildSpec(contact=per_class, race=per_class, bearoff=per_class, seed=spec.seed))
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(cand.boards))
    boards, classes = cand.boards[order], cand.classes[order]
    owned = rng.random(len(boards)) < spec.owned_fraction
    log(f"{cand.games} games: {len(boards)} candidate positions; gnubg 0-ply cube analysis of each")
    zero = _analyse_all(boards, owned, 0, spec.workers, binary)
    doubled = np.minimum(zero[:, DT], zero[:, DP])
    close = (np.abs(doubled - zero[:, ND]) < spec.close) | (np.abs(zero[:, DT] - zero[:, DP]) < spec.close)
    keep = np.flatnonzero(close)[: spec.decisions]
    log(f"{int(close.sum())} close decisions; {len(keep)} kept: gnubg 2-ply cube analysis of each")
    ref = _analyse_all(boards[keep], owned[keep], 2, spec.workers, binary)
    meta = {
        "spec": asdict(spec),
        "reference": "Debian gnubg: 2-ply cubeful cube analysis (hint), no Jacoby, no beavers",
        "anchor_0ply": "Debian gnubg: 0-ply cubeful cube analysis",
        "gnubg": gnubg_version(binary),
        "games": cand.games,
        "candidates": len(boards),
        "close": int(close.sum()),
    }
    s = CubeSet(boards[keep].astype(np.int8), owned[keep], classes[keep], ref, zero[keep], meta)
    s.check()
    report = {
        "bench": "build-cubes",
        "decisions": s.size,
        "close": int(close.sum()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return s, report
