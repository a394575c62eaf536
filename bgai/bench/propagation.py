"""`bgai bench propagation`: from a weights publish to every game worker playing that version.

Starts a throwaway redis-server and `workers` real `bgai game-worker` processes (heartbeat every
0.1 s), publishes version 0 and waits until every worker plays it. Then, `repeats` times, it
publishes a new version and waits until every worker reports it. A worker swaps weights between
self-play batches, so the expected latency is up to one batch plus the fetch and checks; each
worker reports when it swapped (`model_loaded_at`) and how long its last batch took
(`last_unit_s`). Printed per publish: the slowest worker's latency and the batch time.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jax

from bgai.agent import net_of
from bgai.config import Config, config_hash, model_hash
from bgai.core.network import init_params
from bgai.store import registry, runstate, weights
from bgai.store.client import connect
from bgai.store.codec import encode_weights
from bgai.store.keys import Keys
from bgai.store.server import local_redis


def _wait(what: str, check: Callable[[], bool], timeout_s: float, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a game worker exited while waiting for {what}: {dead[0]!r}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)  # polling interval


def _all_on(records: Callable[[], list[dict[str, Any]]], version: int) -> bool:
    return all(x.get("model_version") == version for x in records())


def bench_propagation(
    cfg: Config, config_path: str | None, workers: int, repeats: int, log: Callable[[str], None] = print
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, local_redis(Path(tmp)) as port:
        r = connect(dataclasses.replace(cfg.redis, port=port))
        keys = Keys(cfg.redis.prefix)
        runstate.start_run(r, keys, "bench")
        params = init_params(net_of(cfg), jax.random.key(0))
        mh, ch = model_hash(cfg), config_hash(cfg)

        def publish(version: int) -> float:
            blob = encode_weights(params, version=version, step=version, model_hash=mh, config_hash=ch)
            t0 = time.time()
            weights.publish(r, keys, version, blob)
            return t0

        def records() -> list[dict[str, Any]]:
            live = registry.live_workers(r, keys)
            return [rec for rec in live.values() if rec.get("type") == "game"]

        env = {**os.environ, "BGAI_REDIS__PORT": str(port), "BGAI_HEAD__HEARTBEAT_EVERY_S": "0.1"}
        cmd = [sys.executable, "-m", "bgai.cli.main", "game-worker"]
        if config_path:
            cmd += ["--config", str(Path(config_path).resolve())]
        logs = [Path(tmp) / f"worker{i}.log" for i in range(workers)]
        procs = []
        for i, path in enumerate(logs):
            with path.open("wb") as out:  # the child keeps its own copy of the descriptor
                procs.append(
                    subprocess.Popen(
                        [*cmd, "--worker-id", f"bench:game:{i}"],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=tmp,
                    )
                )
        try:
            publish(0)
            t = time.perf_counter()
            _wait(
                "every worker to play version 0",
                lambda: (
                    len(recs := records()) == workers
                    and all(x.get("model_version") == 0 and x.get("last_unit_s") for x in recs)
                ),
                900,
                procs,
            )
            log(f"{workers} game workers running version 0 ({time.perf_counter() - t:.0f} s incl. compile)")
            latencies, batches = [], []
            for v in range(1, repeats + 1):
                t0 = publish(v)
                _wait(f"every worker on version {v}", partial(_all_on, records, v), 300, procs)
                recs = records()
                lat = max(float(x["model_loaded_at"]) - t0 for x in recs)
                batch = statistics.median(float(x["last_unit_s"]) for x in recs)
                latencies.append(lat)
                batches.append(batch)
                log(f"version {v}: every worker swapped {lat:.3f} s after publish (batch {batch:.3f} s)")
        except Exception:
            for path in logs:
                log(f"--- {path.name} (tail):\n" + path.read_text(errors="replace")[-2000:])
            raise
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(timeout=120)
            r.close()
    lat, batch = statistics.median(latencies), statistics.median(batches)
    log(
        f"median: {lat:.3f} s from publish to every worker on the new version; batch {batch:.3f} s; "
        f"latency - batch {lat - batch:+.3f} s"
    )
    return {
        "bench": "propagation",
        "workers": workers,
        "publishes": repeats,
        "latency_s_median": round(lat, 3),
        "latency_s_max": round(max(latencies), 3),
        "batch_s_median": round(batch, 3),
        "latency_minus_batch_s_median": round(lat - batch, 3),
    }
