"""Opponent names, parsed in one place (config validation, the eval worker, `bgai eval`).

`random`, `pubeval`, `gnubg_{N}ply` (GNU Backgammon at N plies, 0..2), `gnubg_{N}ply_cube`
(the same with the doubling cube: cubeful money games through gnubg's external player, our cube
decisions by the model) and `past_{K}` (our own model K versions before the one evaluated).
The names are metric-safe: they become MLflow keys (`eval/{name}/win_rate`) and Prometheus
label values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_GNUBG_PLIES = 2


@dataclass(frozen=True)
class Opponent:
    name: str
    kind: str  # random | pubeval | gnubg | past
    plies: int = 0  # gnubg
    back: int = 0  # past: versions back
    cube: bool = False  # gnubg: cubeful money games


def parse_opponent(name: str) -> Opponent:
    """The opponent called `name`; ValueError (naming the known forms) if there is none."""
    if name in ("random", "pubeval"):
        return Opponent(name, name)
    if m := re.fullmatch(r"gnubg_(\d)ply(_cube)?", name):
        plies = int(m.group(1))
        if plies <= MAX_GNUBG_PLIES:
            return Opponent(name, "gnubg", plies=plies, cube=m.group(2) is not None)
    if (m := re.fullmatch(r"past_(\d+)", name)) and int(m.group(1)) > 0:
        return Opponent(name, "past", back=int(m.group(1)))
    raise ValueError(
        f"unknown opponent {name!r} (known: random, pubeval, gnubg_0ply..gnubg_{MAX_GNUBG_PLIES}ply, "
        f"gnubg_0ply_cube..gnubg_{MAX_GNUBG_PLIES}ply_cube, past_K with K > 0)"
    )
