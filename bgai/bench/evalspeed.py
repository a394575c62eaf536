"""`bgai bench eval`: eval games per minute of our greedy player against each opponent.

Side by side on the same model (random init unless a checkpoint is given) and the same paired
seeds: pubeval and random inside the compiled loop, GNU Backgammon 0-ply through Debian's
binary (socket) and through gnubg-nn (in process), one move per active game and turn.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from bgai.agent import eval_decider, movegen_of, net_of, playing
from bgai.config import Config, model_hash
from bgai.core.evaluate import paired_match, run_pairs
from bgai.core.network import init_params
from bgai.opponent_names import parse_opponent
from bgai.opponents.players import build_opponent
from bgai.train.checkpoint import load_params


def bench_eval(
    cfg: Config,
    opponents: list[tuple[str, str]],
    games: int,
    pairs: int,
    repeats: int,
    checkpoint: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """`opponents`: (opponent name, gnubg backend) pairs; games/min medians over `repeats`."""
    from dataclasses import replace

    net = net_of(cfg)
    params = init_params(net, jax.random.key(0))
    if checkpoint is not None:
        params = load_params(checkpoint, params, model_hash(cfg))[0]
    params = playing(cfg, params)
    ours = eval_decider(cfg, net)
    out: dict[str, Any] = {
        "games": games,
        "pairs_per_batch": pairs,
        "repeats": repeats,
        "player": cfg.eval.player,
    }
    for name, backend in opponents:
        ev = replace(cfg.eval, gnubg_backend=backend)
        built = build_opponent(parse_opponent(name), ev, ours)
        label = name if built.engine is None else f"{name}_{backend}"
        try:
            match = paired_match(ours, built.decide, pairs, cfg.selfplay.max_turns, movegen_of(cfg))
            run_pairs(match, (params, None), jax.random.key(99), 2 * pairs)  # compile
            rates, wins = [], []
            for i in range(repeats):
                t0 = time.perf_counter()
                pts = run_pairs(match, (params, None), jax.random.key(i), games)
                rates.append(len(pts) / (time.perf_counter() - t0) * 60)
                wins.append(float((pts > 0).mean()))
        finally:
            built.close()
        med = statistics.median(rates)
        runs = ", ".join(f"{r:.0f}" for r in rates)
        log(f"vs {label:22s} {med:8.0f} games/min (median of {repeats}; runs {runs})")
        out[label] = {"games_per_min": med, "runs": rates, "win_rate": statistics.mean(wins)}
    return out
