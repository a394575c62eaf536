"""`bgai-runs start`/`resume` under a busy fleet (a real redis-server, real pushes and eval slices
from threads): the run switch is atomic. Nothing of a run the fleet left lands in the next one,
the old run's keys are all gone right after the switch, and the buffer's stats agree with its
list and its episodes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import redis
from synthetic_episodes import make_episode

from bgai.store import evals, runstate
from bgai.store.codec import encode_episode, read_episode_header
from bgai.store.keys import Keys
from bgai.store.replay import ReplayStore

KEYS = Keys("t5")
RUNS = [f"run-{i}" for i in range(4)]
CAPACITY = 400
PUSHERS = 3
EVAL_GAMES = 4  # one game per slice: four slices per run
MARK = [1, 2, 3, -1]  # the points each run's eval games score, to find strays later


def wait_for(what: str, check: Callable[[], bool], failures: list, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert not failures, failures  # a thread died: say why
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)  # the poll of a condition wait


def stats_agree_with_list(r: redis.Redis, run: str) -> int:
    """Read a run's stats and list in one transaction (pushes go on meanwhile): they agree;
    returns the episode count."""
    bk = KEYS.buffer(run)
    with r.pipeline(transaction=True) as pipe:
        raw, listed = pipe.get(bk.stats).lrange(bk.episodes, 0, -1).execute()
    st = json.loads(raw) if raw else {"episodes": 0}
    ids = [int(x) for x in listed]
    assert len(ids) == st["episodes"], (st, ids)
    assert not ids or ids == list(range(st["oldest"], st["newest"] + 1)), (st, ids)
    return len(ids)


def keys_of(r: redis.Redis, run: str) -> list[bytes]:
    return [*r.scan_iter(match=KEYS.buffer(run).pattern), *r.scan_iter(match=KEYS.eval(run).root + "*")]


def test_a_run_switch_is_atomic_under_pushes_and_evals(real_redis_port: int) -> None:
    r = redis.Redis(port=real_redis_port)
    r.flushall()
    # episodes stamped with their run's index (as model version), to find strays later
    pools = {
        i: [encode_episode(make_episode(10 + 7 * j, 100 * i + j, version=i)) for j in range(8)]
        for i in range(4)
    }
    r.set(KEYS.model_version, 5)
    r.set(KEYS.model_weights, b"weights")
    r.set(KEYS.worker("ev"), json.dumps({"owner": "ev:1"}))  # the eval thread's heartbeat
    runstate.start_run(r, KEYS, RUNS[0])
    stop = threading.Event()
    failures: list[BaseException] = []

    def pusher(w: int) -> None:
        c = redis.Redis(port=real_redis_port)
        store = ReplayStore(c, KEYS, CAPACITY)
        seq = 0
        try:
            while not stop.is_set():
                run = runstate.namespace(c, KEYS)  # what a game worker reads, then pushes for
                blobs = pools[RUNS.index(run)][seq % 8 : seq % 8 + 3]
                store.push_many(blobs, source=f"w{w}", seqs=list(range(seq, seq + len(blobs))), run_id=run)
                seq += len(blobs)
        except Exception as exc:  # reported by the test
            failures.append(exc)

    def evaluator() -> None:
        c = redis.Redis(port=real_redis_port)
        try:
            while not stop.is_set():
                got = evals.claim(c, KEYS, every=1, games=EVAL_GAMES, slice_games=1, have=None, owner="ev:1")
                if got is None:
                    stop.wait(0.002)
                    continue
                evals.add_slice(c, KEYS, got, {"pubeval": [MARK[RUNS.index(got.run)]]})  # 1 game
        except Exception as exc:  # reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=pusher, args=(w,)) for w in range(PUSHERS)]
    threads.append(threading.Thread(target=evaluator))
    for t in threads:
        t.start()
    store = ReplayStore(r, KEYS, CAPACITY)
    try:
        for i in range(1, len(RUNS)):
            old = RUNS[i - 1]
            wait_for(f"{old} to fill", lambda o=old: store.read_stats(o)[1].evicted_episodes > 5, failures)
            wait_for(f"{old}'s eval", lambda o=old: bool(evals.results(r, KEYS, run=o)), failures)
            runstate.switch_run(r, KEYS, RUNS[i])  # while every thread keeps writing
            assert keys_of(r, old) == [], f"{old} left keys behind"
            wait_for(
                f"{RUNS[i]}'s first episodes", lambda n=RUNS[i]: stats_agree_with_list(r, n) >= 3, failures
            )
        last = RUNS[-1]
        wait_for("the last run to fill", lambda: store.read_stats(last)[1].evicted_episodes > 5, failures)
        wait_for(
            "the last run's eval",
            lambda: evals.target(r, KEYS) is not None and not r.zcard(KEYS.eval(last).open),
            failures,
        )
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures
    for run in RUNS[:-1]:
        assert keys_of(r, run) == []
    _, st = store.read_stats(last)
    ids = [int(x) for x in r.lrange(KEYS.buffer(last).episodes, 0, -1)]
    assert ids == list(range(st.oldest, st.newest + 1)) and len(ids) == st.episodes
    heads = [read_episode_header(b) for b in store.episodes(ids, last) if b is not None]
    assert len(heads) == st.episodes and sum(h.rows for h in heads) == st.size <= CAPACITY
    assert {h.model_version for h in heads} == {len(RUNS) - 1}  # only the last run's episodes
    res = evals.results_of(r, KEYS, 5, last)["pubeval"]
    assert res["games"] == EVAL_GAMES and res["points"] == EVAL_GAMES * MARK[-1]  # only its slices
    r.close()
