"""`bgai bench buffer`: the Redis replay buffer at scale (push+evict, sample, bytes per position).

Against a real redis-server (a throwaway one on loopback unless --port names one; its data is
flushed). The episodes are real games: a pool of random-play self-play episodes from the move
generator, encoded once and pushed again and again under new ids, so sizes and play counts are
those of real positions. Steps:
1. fill the buffer to `capacity` positions (pipelined pushes), note Redis's used_memory;
2. time single pushes at capacity, each of which evicts (median and p90 ms per episode);
3. time samples of `sample` positions (draw + fetch + decode), median ms.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bgai.agent import movegen_of
from bgai.config import Config
from bgai.core.episodes import EpisodeAssembler
from bgai.core.players import random_decider
from bgai.core.selfplay import play_chunk, start_games
from bgai.store.client import connect
from bgai.store.codec import encode_episode, read_episode_header
from bgai.store.keys import NO_RUN, Keys
from bgai.store.replay import ReplayStore
from bgai.store.sampler import ReplayMirror
from bgai.store.server import local_redis


def episode_pool(cfg: Config, games: int, seed: int = 0) -> list[bytes]:
    """At least `games` encoded random-play episodes."""
    movegen = movegen_of(cfg)
    play = jax.jit(
        partial(play_chunk, random_decider(), length=64, max_turns=cfg.selfplay.max_turns, movegen=movegen)
    )
    key = jax.random.key(seed)
    slots = start_games(jax.random.fold_in(key, 0), 64)
    assembler = EpisodeAssembler()
    blobs: list[bytes] = []
    i = 0
    while len(blobs) < games:
        i += 1
        slots, chunk = play(None, slots, jax.random.fold_in(key, i))
        rng = np.random.default_rng(i)
        blobs += [encode_episode(ep, float(rng.random())) for ep in assembler.add(jax.device_get(chunk), 0)]
    return blobs


def _ms(xs: list[float]) -> float:
    return round(1000 * statistics.median(xs), 3)


def bench_buffer(
    cfg: Config,
    capacity: int,
    sample: int,
    pushes: int,
    repeats: int,
    port: int | None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    if port is not None:
        return _run(cfg, capacity, sample, pushes, repeats, port, log)
    with tempfile.TemporaryDirectory() as tmp, local_redis(Path(tmp)) as local_port:
        return _run(cfg, capacity, sample, pushes, repeats, local_port, log)


def _run(
    cfg: Config, capacity: int, sample: int, pushes: int, repeats: int, port: int, log: Callable[[str], None]
) -> dict[str, Any]:
    r = connect(dataclasses.replace(cfg.redis, port=port))
    r.flushdb()
    keys = Keys("bench")
    t0 = time.perf_counter()
    pool = episode_pool(cfg, 256)
    per_pos = sum(map(len, pool)) / sum(read_episode_header(b).rows for b in pool)
    log(
        f"pool: {len(pool)} random-play episodes, {per_pos:.0f} encoded bytes/position "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    store = ReplayStore(r, keys, capacity, run_id=NO_RUN)  # no run: one GET less per push
    mirror = ReplayMirror(store, cfg.movegen.max_plays)
    base_mem = int(r.info("memory")["used_memory"])
    t0 = time.perf_counter()
    i = 0
    while not store.stats().get("evicted_episodes"):  # full: pushes now evict
        store.push_many(pool[i % len(pool) : i % len(pool) + 64])
        i += 64
    st = store.stats()
    mem = int(r.info("memory")["used_memory"]) - base_mem
    log(f"filled: {st['size']} positions in {st['episodes']} episodes ({time.perf_counter() - t0:.0f} s)")
    log(f"redis memory: {mem / 2**20:.1f} MiB = {mem / st['size']:.0f} B/position (used_memory delta)")
    push_s = []
    for j in range(pushes):
        blob = pool[j % len(pool)]
        t = time.perf_counter()
        store.push(blob)
        push_s.append(time.perf_counter() - t)
    evicted = store.stats()["evicted_episodes"] - st["evicted_episodes"]
    log(
        f"push at capacity: median {_ms(push_s)} ms, p90 {1000 * np.percentile(push_s, 90):.3f} ms "
        f"per episode ({pushes} pushes, {evicted} evictions)"
    )
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    mirror.refresh()  # a trainer's first refresh: every live episode, once
    log(f"mirror: first refresh of {mirror.size} positions in {time.perf_counter() - t:.2f} s")
    sample_s, refresh_s = [], []
    per_sample = max(1, round(sample / (st["size"] / st["episodes"])))  # ~1 position pushed per sampled
    for k in range(repeats):
        store.push_many([pool[(k * per_sample + m) % len(pool)] for m in range(per_sample)])
        t = time.perf_counter()
        mirror.refresh()
        t1 = time.perf_counter()
        batch = mirror.sample(sample, rng, cfg.buffer.surprise_fraction)
        sample_s.append(time.perf_counter() - t)
        refresh_s.append(t1 - t)
    assert batch["boards"].shape[0] == sample
    log(
        f"sample {sample}: median {_ms(sample_s)} ms incl. catching up with {per_sample} new episodes "
        f"(refresh {_ms(refresh_s)} ms) over {repeats}"
    )
    r.flushdb()
    r.close()
    return {
        "bench": "buffer",
        "positions": st["size"],
        "episodes": st["episodes"],
        "push_ms_median": _ms(push_s),
        "push_ms_p90": round(1000 * float(np.percentile(push_s, 90)), 3),
        "sample": sample,
        "sample_ms_median": _ms(sample_s),
        "refresh_ms_median": _ms(refresh_s),
        "bytes_per_position": round(mem / st["size"], 1),
        "encoded_bytes_per_position": round(per_pos, 1),
    }
