"""`bgai bench selfplay`: decisions/s and games/s of our self-play, side by side
with the pgx + mctx baseline for the mcts mode. Medians of `repeats` timed runs
after one compile run (ours and the baseline's interleaved); the last line
printed by the CLI is the JSON result.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax

from bgai.agent import movegen_of, net_of, playing, self_play_decider
from bgai.config import Config
from bgai.core.episodes import EpisodeAssembler
from bgai.core.network import init_params
from bgai.core.selfplay import play_chunk, start_games


def _rates(fn: Callable[[int], tuple[float, float]], i: int) -> tuple[float, float]:
    """fn(i) -> (decisions, games) of one run; returns (decisions/s, games/s) of that run."""
    t = time.perf_counter()
    decisions, games = fn(i)
    dt = time.perf_counter() - t
    return decisions / dt, games / dt


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
    net = net_of(cfg)
    params = playing(cfg, init_params(net, jax.random.key(0)))
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
    # With the baseline, its runs alternate with ours: this machine's load comes in bursts, and
    # timing one side after the other lets a burst land on one side only.
    base_once = _baseline(cfg, batch, sims, log) if mode == "mcts" and baseline else None
    ours_runs, base_runs = [], []
    for i in range(repeats):
        ours_runs.append(_rates(once, i))
        if base_once is not None:
            base_runs.append(base_once(i))
    ours = {
        "decisions_per_s": statistics.median(r[0] for r in ours_runs),
        "games_per_s": statistics.median(r[1] for r in ours_runs),
    }
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
        if base_runs:
            base = statistics.median(base_runs)
            result["baseline_decisions_per_s"] = base
            result["baseline_sims_per_s"] = base * sims
            result["ratio"] = result["sims_per_s"] / result["baseline_sims_per_s"]
            paired = [o[0] / b for o, b in zip(ours_runs, base_runs, strict=True)]
            result["ratio_paired_median"] = statistics.median(paired)
            log(
                f"pgx+mctx baseline: {base:.0f} decisions/s (single-checker moves), "
                f"{base * sims:.0f} sims/s; ratio ours/baseline {result['ratio']:.2f} "
                f"(median of the {repeats} interleaved pairs: {result['ratio_paired_median']:.2f})"
            )
    return result


def _baseline(cfg: Config, batch: int, sims: int, log: Callable[[str], None]) -> Callable[[int], float]:
    """A timed run of pgx + mctx stochastic MuZero with the same trunk, batch and sims: run(i) ->
    its decisions/s. Compiled here, before the timed runs."""
    from bgai.bench.baseline_pgx import make_baseline

    params, init_fn, step_fn = make_baseline(cfg.model.hidden, batch, sims)
    states = init_fn(jax.random.key(1))
    steps = 8
    t = time.perf_counter()
    states, _ = step_fn(params, states, jax.random.key(2))
    jax.block_until_ready(states)
    log(f"baseline compiled + first step in {time.perf_counter() - t:.1f} s")

    def run(r: int) -> float:
        nonlocal states
        t = time.perf_counter()
        for i in range(steps):
            states, _ = step_fn(params, states, jax.random.key(1000 * r + i))
        jax.block_until_ready(states)
        return steps * batch / (time.perf_counter() - t)

    return run
