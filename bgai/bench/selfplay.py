"""`bgai bench selfplay`: decisions/s and games/s of our self-play, side by side
with the pgx + mctx baseline for the mcts mode. Medians of `repeats` timed runs
after one compile run; the last line printed by the CLI is the JSON result.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax

from bgai.config import Config
from bgai.core.episodes import EpisodeAssembler
from bgai.core.network import BgNet, init_params
from bgai.core.selfplay import play_chunk, start_games
from bgai.train.local import movegen_of, self_play_decider


def _median_rate(fn: Callable[[int], tuple[float, float]], repeats: int) -> dict[str, float]:
    """fn(i) -> (decisions, games) of one run; returns median rates over the repeats."""
    dec_rates, game_rates = [], []
    for i in range(repeats):
        t = time.perf_counter()
        decisions, games = fn(i)
        dt = time.perf_counter() - t
        dec_rates.append(decisions / dt)
        game_rates.append(games / dt)
    return {"decisions_per_s": statistics.median(dec_rates), "games_per_s": statistics.median(game_rates)}


def bench_selfplay(
    cfg: Config,
    mode: str,
    batch: int,
    sims: int | None,
    repeats: int,
    baseline: bool,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    sims = cfg.search.num_simulations if sims is None else sims
    net = BgNet(tuple(cfg.model.hidden))
    params = init_params(net, jax.random.key(0))
    cfg = dataclasses.replace(cfg, selfplay=dataclasses.replace(cfg.selfplay, mode=mode))
    decide = self_play_decider(cfg, net, sims)
    s = cfg.selfplay
    # A search decision costs ~sims network calls: time fewer turns per call in mcts mode.
    length = s.chunk_turns if mode == "afterstate" else min(s.chunk_turns, 4)
    run = jax.jit(partial(play_chunk, decide, length=length, max_turns=s.max_turns, movegen=movegen_of(cfg)))
    states = start_games(jax.random.key(1), batch)
    assembler = EpisodeAssembler()
    chunks = 4 if mode == "afterstate" else 1

    def once(i: int) -> tuple[float, float]:
        """`chunks` self-play calls exactly as the trainer makes them; games = episodes finished."""
        nonlocal states
        decisions, games = 0, 0
        for c in range(chunks):
            states, chunk = run(params, states, jax.random.key(1000 * (i + 2) + c))
            chunk = jax.device_get(chunk)
            decisions += chunk.dice.size
            games += len(assembler.add(chunk, 0))
        return float(decisions), float(games)

    t = time.perf_counter()
    once(-1)
    first_run_s = time.perf_counter() - t
    log(
        f"ours ({mode}, batch {batch}{f', {sims} sims' if mode == 'mcts' else ''}): "
        f"compiled + first run in {first_run_s:.1f} s"
    )
    ours = _median_rate(once, repeats)
    result: dict[str, Any] = {
        "mode": mode,
        "batch": batch,
        "hidden": list(cfg.model.hidden),
        "repeats": repeats,
        "first_run_s": first_run_s,
        **ours,
    }
    log(f"ours: {ours['decisions_per_s']:.0f} decisions/s, {ours['games_per_s']:.2f} games/s (median)")
    if mode == "mcts":
        result["sims"] = sims
        result["sims_per_s"] = ours["decisions_per_s"] * sims
        if baseline:
            base = _baseline(cfg, batch, sims, repeats, log)
            result["baseline_decisions_per_s"] = base
            result["baseline_sims_per_s"] = base * sims
            result["ratio"] = result["sims_per_s"] / result["baseline_sims_per_s"]
            log(
                f"pgx+mctx baseline: {base:.0f} decisions/s (single-checker moves), "
                f"{base * sims:.0f} sims/s; ratio ours/baseline {result['ratio']:.2f}"
            )
    return result


def _baseline(cfg: Config, batch: int, sims: int, repeats: int, log: Callable[[str], None]) -> float:
    """Decisions/s of pgx + mctx stochastic MuZero with the same trunk, batch and sims."""
    from bgai.bench.baseline_pgx import make_baseline

    params, init_fn, step_fn = make_baseline(cfg.model.hidden, batch, sims)
    states = init_fn(jax.random.key(1))
    steps = 8
    t = time.perf_counter()
    states, _ = step_fn(params, states, jax.random.key(2))
    jax.block_until_ready(states)
    log(f"baseline compiled + first step in {time.perf_counter() - t:.1f} s")
    rates = []
    for r in range(repeats):
        t = time.perf_counter()
        for i in range(steps):
            states, _ = step_fn(params, states, jax.random.key(1000 * r + i))
        jax.block_until_ready(states)
        rates.append(steps * batch / (time.perf_counter() - t))
    return statistics.median(rates)
