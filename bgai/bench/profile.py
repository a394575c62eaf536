"""`bgai bench selfplay --profile`: where a chunk of afterstate self-play spends its time.

One chunk is played as the trainer plays it (`play_chunk`, compiled whole), then its positions
are replayed stage by stage, each stage compiled on its own and run once per turn of the chunk
on the same batch:

    movegen      `rules.legal_plays_batch`: every play of every position (afterstates included),
                 by the configured generator (`movegen.backend`: on a CPU, numba's)
    encoding     `encoding.encode_as` on the afterstates the network sees (the packed legal ones,
                 in the rows of the packing rung each turn takes)
    network      the network alone on those afterstates: its encoding, the MLP, the bear-off values
    values       `afterstate_values`: packing, encoding and network together, as self-play runs it
    selection    softmax policy target and the chosen play (`choose`)
    advance      applying the chosen plays and rolling the next dice
    assembly     stitching the chunk into episodes on the host (`EpisodeAssembler`)

The network's own throughput on these rows is the ceiling: decisions/s if nothing but the
network ran, = network rows/s / the mean number of afterstates evaluated per decision. The
report gives each stage's seconds per chunk (medians of repeats), its share of the whole
chunk's time, and the whole chunk's decisions/s against that ceiling.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgai.agent import movegen_of, net_of, playing, self_play_decider
from bgai.config import Config
from bgai.core import rules
from bgai.core.afterstate import afterstate_values, choose, packing_rungs, softmax_policy
from bgai.core.encoding import encode_as
from bgai.core.episodes import EpisodeAssembler
from bgai.core.evaluator import net_outputs
from bgai.core.game import advance
from bgai.core.network import init_params
from bgai.core.selfplay import play_chunk, start_games

STAGES = ("movegen", "encoding", "network", "values", "selection", "advance", "assembly")


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        jax.block_until_ready([x for x in jax.tree.leaves(out) if isinstance(x, jax.Array)])
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def profile_selfplay(
    cfg: Config, batch: int, repeats: int, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Seconds per stage of one afterstate self-play chunk of `batch` games (medians of `repeats`)."""
    cfg = dataclasses.replace(cfg, selfplay=dataclasses.replace(cfg.selfplay, mode="afterstate"))
    s, movegen, net = cfg.selfplay, movegen_of(cfg), net_of(cfg)
    variables = playing(cfg, init_params(net, jax.random.key(0)))
    length = s.chunk_turns
    run = jax.jit(
        partial(
            play_chunk, self_play_decider(cfg, net), length=length, max_turns=s.max_turns, movegen=movegen
        )
    )
    states = start_games(jax.random.key(1), batch)
    states, _ = run(variables, states, jax.random.key(2))  # past the openings: a typical chunk
    whole = _median_time(lambda: run(variables, states, jax.random.key(3))[1].dice, repeats)
    _, chunk = jax.device_get(run(variables, states, jax.random.key(3)))
    boards, dice = jnp.asarray(chunk.boards, jnp.int32), jnp.asarray(chunk.dice, jnp.int32)

    gen = jax.jit(lambda b, d: rules.legal_plays_batch(b, d, movegen))
    plays = [gen(boards[t], dice[t]) for t in range(length)]
    rungs = [batch * r for r in packing_rungs(s.eval_slots, movegen.max_plays)]

    def rows_of(p: rules.Plays) -> int:  # the rows `afterstate_values` hands the network this turn
        count = int(np.asarray(p.mask).sum())
        return next((r for r in rungs if count <= r), batch * movegen.max_plays)

    @partial(jax.jit, static_argnums=1)
    def packed(p: rules.Plays, rows: int) -> jax.Array:
        flat = p.boards.reshape(-1, rules.BOARD_SIZE)
        idx, _, _ = rules.compact_index(p.mask.reshape(-1), rows)
        return rules.flip(flat[idx])

    turn_rows = [rows_of(p) for p in plays]
    inputs = [packed(p, r) for p, r in zip(plays, turn_rows, strict=True)]
    rows = sum(turn_rows) / length  # per turn, on average
    encode = jax.jit(lambda b: encode_as(cfg.model.inputs, b))
    network = jax.jit(lambda v, b: net_outputs(net.apply, v, b)[1])
    values = jax.jit(lambda v, p: afterstate_values(net.apply, v, p, s.eval_slots))
    vals = [values(variables, p) for p in plays]

    @jax.jit
    def select(key: jax.Array, v: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        return choose(key, v, mask, s.temperature), softmax_policy(v, mask, s.policy_temperature)

    step = jax.jit(jax.vmap(advance))
    keys = jax.random.split(jax.random.key(4), batch)
    game = start_games(jax.random.key(5), batch)
    chosen = [p.boards[:, 0].astype(jnp.int32) for p in plays]

    def per_turn(fn: Callable[[int], Any]) -> Callable[[], Any]:
        return lambda: [fn(t) for t in range(length)]

    secs = {
        "movegen": _median_time(per_turn(lambda t: gen(boards[t], dice[t]).mask), repeats),
        "encoding": _median_time(per_turn(lambda t: encode(inputs[t])), repeats),
        "network": _median_time(per_turn(lambda t: network(variables, inputs[t])), repeats),
        "values": _median_time(per_turn(lambda t: values(variables, plays[t])), repeats),
        "selection": _median_time(per_turn(lambda t: select(keys[0], vals[t], plays[t].mask)), repeats),
        "advance": _median_time(per_turn(lambda t: step(game, chosen[t], keys).board), repeats),
        "assembly": _median_time(lambda: EpisodeAssembler().add(chunk, 0), repeats),
    }
    decisions = batch * length
    legal = float(np.mean([np.asarray(p.mask).sum(-1).mean() for p in plays]))
    net_rows_per_s = rows * length / secs["network"]
    ceiling = net_rows_per_s / legal  # the network on the legal plays alone
    at_slots = net_rows_per_s / (rows / batch)  # on the rows self-play hands it (slots per decision)
    achieved = decisions / whole
    log(
        f"profile of one afterstate self-play chunk: batch {batch}, {length} turns, "
        f"net {list(cfg.model.hidden)}"
    )
    log(f"{'stage':10s} {'s/chunk':>9s} {'share':>7s}")
    for name in STAGES:
        log(f"{name:10s} {secs[name]:9.4f} {secs[name] / whole:7.1%}")
    log(f"{'chunk':10s} {whole:9.4f} {1:7.1%}  (compiled whole: stages overlap and fuse)")
    log(
        f"network alone: {net_rows_per_s:,.0f} rows/s; {legal:.1f} legal plays a decision -> ceiling "
        f"{ceiling:,.0f} decisions/s; achieved {achieved:,.0f} decisions/s = {achieved / ceiling:.1%} of it"
    )
    log(
        f"(self-play evaluates {rows / batch:.1f} rows a decision, packed: the network alone at that "
        f"is {at_slots:,.0f} decisions/s, achieved {achieved / at_slots:.1%} of it)"
    )
    return {
        "bench": "selfplay-profile",
        "batch": batch,
        "turns": length,
        "hidden": list(cfg.model.hidden),
        "inputs": cfg.model.inputs,
        "seconds": {**secs, "chunk": whole},
        "share": {k: v / whole for k, v in secs.items()},
        "legal_plays_per_decision": legal,
        "network_rows_per_s": net_rows_per_s,
        "ceiling_decisions_per_s": ceiling,
        "network_at_slots_decisions_per_s": at_slots,
        "decisions_per_s": achieved,
        "ratio_to_ceiling": achieved / ceiling,
    }
