"""`bgai bench targets`: the cost of a position's value target, TD(lambda) against exact 1-ply.

Both label the same self-play positions with the same (fresh) network, side by side in one run:
TD(lambda) needs one forward pass per position (plus the numpy recursion), a 1-ply target 21
move generations and ~21 x (plays + 1) network rows. Rates are positions/s, medians of repeats.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import numpy as np

from bgai.agent import EpisodeValues, movegen_of, net_of, params_template, playing, self_play_decider
from bgai.config import Config
from bgai.core.episodes import Episode, EpisodeAssembler
from bgai.core.selfplay import play_chunk, start_games
from bgai.core.targets import td_lambda_targets


def _positions(cfg: Config, params: Any, games: int) -> list[Episode]:
    """Whole self-play episodes (at least `games`) to label."""
    play = jax.jit(
        partial(
            play_chunk,
            self_play_decider(cfg, net_of(cfg)),
            length=cfg.selfplay.chunk_turns,
            max_turns=cfg.selfplay.max_turns,
            movegen=movegen_of(cfg),
        )
    )
    slots = start_games(jax.random.key(1), min(64, games))
    asm, out = EpisodeAssembler(), list[Episode]()
    key = jax.random.key(2)
    while len(out) < games:
        key, k = jax.random.split(key)
        slots, chunk = play(playing(cfg, params), slots, k)
        out += asm.add(jax.device_get(chunk), 0)
    return out


def bench_targets(
    cfg: Config, games: int, repeats: int, log: Callable[[str], None] = print
) -> dict[str, Any]:
    params = params_template(cfg)
    episodes = _positions(cfg, params, games)
    values = EpisodeValues(cfg, net_of(cfg))
    boards = np.concatenate([ep.boards for ep in episodes])
    n = len(boards)
    cuts = np.cumsum([len(ep) for ep in episodes])[:-1]
    last = [int(ep.outcome[-1]) for ep in episodes]

    def td() -> None:
        td_lambda_targets(np.split(values.values(params, boards), cuts), last, cfg.training.td_lambda)

    def one_ply() -> None:
        values.one_ply(params, boards)

    rates: dict[str, list[float]] = {"td": [], "one_ply": []}
    td()  # compile both
    one_ply()
    for _ in range(repeats):  # interleaved: a noisy neighbour hits both alike
        for name, fn in (("td", td), ("one_ply", one_ply)):
            t0 = time.perf_counter()
            fn()
            rates[name].append(n / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    log(
        f"value targets for {n} self-play positions ({len(episodes)} games), net {list(cfg.model.hidden)}: "
        f"TD(lambda) {med['td']:,.0f} positions/s, exact 1-ply {med['one_ply']:,.0f} positions/s "
        f"({med['td'] / med['one_ply']:.0f}x the cost), medians of {repeats}"
    )
    return {
        "bench": "targets",
        "positions": n,
        "td_positions_per_s": round(med["td"], 1),
        "one_ply_positions_per_s": round(med["one_ply"], 1),
        "one_ply_cost_ratio": round(med["td"] / med["one_ply"], 2),
    }
