"""Chaos suite: the real local fleet (supervisord, redis-server with its append-only file and ACL
users, every role) is shot at while it trains, and must lose nothing.

In order, on one fleet (each step bounded in time, waiting on conditions):
1. kill -9, 4 rounds over the 5 roles (20 kills; in a round each role is killed while the ones
   before it are still coming back): supervisord brings each back, never FATAL; the trainer
   resumes from its newest checkpoint with params and optimizer state equal to it;
2. Redis restarted: every role heartbeats again within 10 s, and run, weights and buffer survive;
3. Redis unreachable for 60 s: game workers play on into their spool (10 episodes here) and push
   it on reconnect, each episode once; what the full spool dropped is counted and reported;
4. Redis out of memory (maxmemory, noeviction): writes refused, game workers spool, the others
   back off; once Redis has room the spool lands and training goes on, in the same processes;
5. two training workers: exactly one trains; when it hangs (SIGSTOP) the other, with a checkpoint
   directory of its own (as on another host), takes over within the lock TTL from the weights
   Redis holds, bit for bit; the hung one, resumed, cannot publish (fenced) and stands by.
Throughout, a monitor reads (version, weights) in one transaction every 50 ms: the version never
decreases and the weights are never missing or torn; at the end every episode in the buffer is
whole and none is there twice. `scripts/chaos` runs this file alone and prints the summary line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from supervised import BIN, KEYS, REPO, Fleet, supervised_fleet, wait_for

from bgai.config import load_config, model_hash
from bgai.runs.manager import train_template
from bgai.store import registry, runstate
from bgai.store.codec import decode_weights, expand_episode, read_episode_header, read_weights_header
from bgai.store.keys import BufferKeys
from bgai.store.lock import TrainerLock
from bgai.train.checkpoint import list_checkpoints, load_checkpoint, state_digest

ROLES = ["coordinator", "training-worker", "game-worker-0", "game-worker-1", "eval-worker-0"]
KILL_ROUNDS = 4
SPOOL = 10
OUTAGE_S = 60.0
LOCK_TTL_S = 6.0
OVERRIDES = {
    "BGAI_SELFPLAY__SPOOL_EPISODES": str(SPOOL),
    "BGAI_HEAD__TRAINER_LOCK_TTL_S": str(LOCK_TTL_S),
}


class Monitor(threading.Thread):
    """Reads (version, weights) atomically every 50 ms; counts decreases and torn reads."""

    def __init__(self, r: redis.Redis) -> None:
        super().__init__(daemon=True)
        self.r, self.stop = r, threading.Event()
        self.reads = self.torn = self.decreases = 0
        self.highest = -1
        self.problems: list[str] = []

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                with self.r.pipeline(transaction=True) as pipe:
                    raw, blob = pipe.get(KEYS.model_version).get(KEYS.model_weights).execute()
            except redis.RedisError:
                continue  # Redis is down on purpose at times
            if raw is None:
                continue
            v = int(raw)
            self.reads += 1
            try:
                stamped = read_weights_header(blob)["version"] if blob is not None else None
            except Exception as exc:
                stamped = f"unreadable ({exc})"
            if stamped != v:
                self.torn += 1
                self.problems.append(f"version {v} with weights stamped {stamped}")
            if v < self.highest:
                self.decreases += 1
                self.problems.append(f"version went from {self.highest} down to {v}")
            self.highest = max(self.highest, v)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Monitor]]:
    with supervised_fleet(tmp_path_factory.mktemp("chaos") / "run", OVERRIDES) as f:
        wait_for("the fleet to train (version >= 3)", lambda: f.version() >= 3, 300, poll_s=0.5)
        client = f.client()
        monitor = Monitor(client)
        monitor.start()
        yield f, monitor
        monitor.stop.set()
        monitor.join(5)
        client.close()


def no_fatal(f: Fleet) -> None:
    states = {p: s for p, (s, _) in f.status().items()}
    assert "FATAL" not in states.values() and "BACKOFF" not in states.values(), states


@dataclass
class Killed:
    program: str
    pid: int
    at: float  # time.monotonic() of the kill
    newest: Path | None  # the newest checkpoint when it died
    resumed_before: int  # its "resumed from" lines before


def kill9(f: Fleet, program: str, ckpt_dir: Path) -> Killed:
    """kill -9 `program` and wait until the process is gone (not until it is back)."""
    state, pid = f.status()[program]
    assert state == "RUNNING" and pid is not None, f.status()
    resumed_before = f.log(program).count("resumed from")
    at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for("the process to be gone", lambda: not _alive(pid), 10, poll_s=0.02)
    newest = max((p for d in ckpt_dir.glob("*") for p in list_checkpoints(d)), default=None, key=str)
    return Killed(program, pid, at, newest, resumed_before)


def back_running(f: Fleet, killed: list[Killed]) -> dict[str, float]:
    """Wait until supervisord has every killed program RUNNING again in a new process; program ->
    seconds from its kill until it was seen back."""
    back: dict[str, float] = {}

    def all_back() -> bool:
        status = f.status()
        for k in killed:
            state, pid = status.get(k.program, ("?", None))
            if k.program not in back and state == "RUNNING" and pid not in (None, k.pid):
                back[k.program] = time.monotonic() - k.at
        return len(back) == len(killed)

    wait_for(f"{[k.program for k in killed]} restarted by supervisord", all_back, 60, poll_s=0.1)
    no_fatal(f)
    return back


def check_resume(f: Fleet, newest: Path, before: int, template: dict) -> None:
    """The restarted trainer resumed from `newest`, with exactly its params, optimizer state, step."""
    wait_for("the trainer to resume", lambda: f.log("training-worker").count("resumed from") > before, 180)
    line = [x for x in f.log("training-worker").splitlines() if "resumed from" in x][-1]
    m = re.search(r"resumed from (\S+) at step (\d+), version (\d+), state (\w+)", line)
    assert m, line
    assert Path(m.group(1)) == newest, (m.group(1), newest)
    restored, _ = load_checkpoint(newest, template)
    assert m.group(4) == state_digest(restored)  # bit-exact


def test_kill9_every_role_20_times(fleet: tuple[Fleet, Monitor]) -> None:
    f, monitor = fleet
    template = train_template(load_config(REPO / "tests" / "fleet.yaml", env=f.env))
    ckpt_dir = Path(f.env["BGAI_TRAINING__CHECKPOINT_DIR"])
    kills, resumes, back_s = 0, 0, []
    for _ in range(KILL_ROUNDS):
        start_version = f.version()
        # every role killed in turn, each while the ones before it are still coming back
        killed = [kill9(f, program, ckpt_dir) for program in ROLES]
        kills += len(killed)
        back_s.extend(back_running(f, killed).values())
        trainer = next(k for k in killed if k.program == "training-worker")
        if trainer.newest is not None:
            check_resume(f, trainer.newest, trainer.resumed_before, template)
            resumes += 1
        wait_for(
            "training to go on after the round", lambda v=start_version: f.version() > v, 300, poll_s=0.5
        )
    assert kills >= 20 and resumes >= KILL_ROUNDS - 1
    assert monitor.reads > 100 and monitor.decreases == 0 and monitor.torn == 0, monitor.problems[:5]
    median = sorted(back_s)[len(back_s) // 2]
    print(
        f"chaos: {kills} kill -9, back RUNNING in median {median:.1f} s; {resumes} trainer resumes "
        f"bit-exact; {monitor.reads} atomic reads, 0 torn, 0 decreases"
    )


def test_redis_restart_loses_nothing(fleet: tuple[Fleet, Monitor]) -> None:
    f, monitor = fleet
    r = f.r
    run = (r.get(KEYS.run_id), r.get(KEYS.run_status))
    version, stats = f.version(), _stats(r)
    pids = {p: pid for p, (_, pid) in f.status().items() if p in ROLES}
    f.ctl("restart", "redis")
    wait_for("Redis to answer", lambda: _pings(r), 60)
    back = time.time()
    workers = _live_ids(r)

    def all_beat() -> bool:
        recs = [r.get(KEYS.worker(w)) for w in workers]
        return all(x is not None and json.loads(x)["last_heartbeat"] >= back for x in recs)

    took = wait_for("every role to heartbeat again", all_beat, 10.0, poll_s=0.1)
    assert (r.get(KEYS.run_id), r.get(KEYS.run_status)) == run
    assert f.version() >= version
    after = _stats(r)
    assert after["pushed_episodes"] >= stats["pushed_episodes"] and after["size"] > 0
    assert {p: pid for p, (_, pid) in f.status().items() if p in ROLES} == pids  # no role restarted
    no_fatal(f)
    print(f"chaos: Redis restarted; all {len(workers)} roles heartbeating again after {took:.1f} s")


def test_redis_unreachable_for_60_s(fleet: tuple[Fleet, Monitor]) -> None:
    f, _ = fleet
    games = ["game-worker-0", "game-worker-1"]
    # both game workers play (a worker restarted by the kills above may still be compiling)
    wait_for("both game workers to play", lambda: _playing(f.r) >= len(games), 300)
    pushed = _stats(f.r)["pushed_episodes"]
    pids = {p: pid for p, (_, pid) in f.status().items() if p in ROLES}
    backs = {g: f.log(g).count("Redis back after") for g in games}
    f.ctl("stop", "redis")
    t0 = time.monotonic()
    wait_for("the outage to last 60 s", lambda: time.monotonic() - t0 >= OUTAGE_S, OUTAGE_S + 10, poll_s=1)
    f.ctl("start", "redis")
    wait_for("Redis to answer", lambda: _pings(f.r), 60)
    wait_for(
        "every game worker to push its spool",
        lambda: all(f.log(g).count("Redis back after") > backs[g] for g in games),
        120,
    )
    landed = dropped = 0
    for g in games:
        line = [x for x in f.log(g).splitlines() if "Redis back after" in x][-1]
        m = re.search(r"pushed (\d+) spooled episodes \((\d+) duplicates skipped, (\d+) dropped", line)
        assert m, line
        n, dup, drop = (int(x) for x in m.groups())
        # a full spool landed, each episode once (plus the episodes of the unit in progress when
        # Redis came back, if that unit's own push was the first to get through)
        assert (SPOOL <= n + dup <= SPOOL + 64) if drop else n + dup <= SPOOL + 64, line
        landed, dropped = landed + n, dropped + drop
    assert dropped > 0  # 60 s of self-play overflows 10 episodes: counted and reported
    after = _stats(f.r)["pushed_episodes"]
    assert after >= pushed + landed
    assert {p: pid for p, (_, pid) in f.status().items() if p in ROLES} == pids  # nothing restarted
    no_fatal(f)
    print(
        f"chaos: 60 s without Redis: {landed} spooled episodes pushed on reconnect, "
        f"{dropped} dropped (counted)"
    )


def worker_of(owner: str | None) -> str:
    """The worker id of a lock holder's owner token (`<worker id>:<nonce>`)."""
    return (owner or "").rpartition(":")[0]


def test_redis_out_of_memory_is_ridden_out(fleet: tuple[Fleet, Monitor]) -> None:
    """Redis at its maxmemory (noeviction) refuses every write: the game workers spool, the other
    roles back off; once it has room again everything goes on, in the same processes, and the
    spooled episodes land."""
    f, _ = fleet
    games = ["game-worker-0", "game-worker-1"]
    limit = int(f.r.config_get("maxmemory")["maxmemory"])
    assert f.r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert limit == int(f.env["BGAI_MAXMEMORY"]) > 0  # the budget, as fleet-local sets it
    wait_for("both game workers to play", lambda: _playing(f.r) >= len(games), 300)
    pids = {p: pid for p, (_, pid) in f.status().items() if p in ROLES}
    full, backs = ({g: f.log(g).count(m) for g in games} for m in ("Redis out of memory", "Redis back after"))
    f.r.config_set("maxmemory", 1)  # below what Redis holds: every write that needs memory is refused
    pushed = _stats(f.r)["pushed_episodes"]  # (read after: a push that came before may have landed)
    try:
        wait_for(
            "every game worker to see a push refused for memory",
            lambda: all(f.log(g).count("Redis out of memory") > full[g] for g in games),
            120,
            poll_s=0.1,
        )
        assert _stats(f.r)["pushed_episodes"] == pushed  # nothing landed meanwhile
    finally:
        f.r.config_set("maxmemory", limit)
    wait_for(
        "every game worker to push its spool",
        lambda: all(f.log(g).count("Redis back after") > backs[g] for g in games),
        120,
    )
    landed = 0
    for g in games:
        line = [x for x in f.log(g).splitlines() if "Redis back after" in x][-1]
        m = re.search(r"pushed (\d+) spooled episodes", line)
        assert m, line
        landed += int(m.group(1))
    assert landed > 0 and _stats(f.r)["pushed_episodes"] >= pushed + landed
    v = f.version()
    wait_for("training to go on", lambda: f.version() > v, 300, poll_s=0.5)
    assert {p: pid for p, (_, pid) in f.status().items() if p in ROLES} == pids  # nothing restarted
    no_fatal(f)
    print(f"chaos: Redis out of memory: {landed} spooled episodes pushed once it had room, no restart")


def _trainer(f: Fleet, name: str, **env_overrides: str) -> tuple[subprocess.Popen, Any]:
    """An ad-hoc `bgai training-worker` as `chaos:<name>`, logging to `<name>.log` (`f.log`)."""
    env = {
        **f.env,
        "BGAI_REDIS__USERNAME": "training",
        "BGAI_REDIS__PASSWORD": f.env["BGAI_SECRET_TRAINING"],
        **env_overrides,
    }
    log = (f.run_dir / f"{name}.log").open("w")
    cmd = [
        str(BIN / "bgai"),
        "training-worker",
        "--config",
        f.env["BGAI_CONFIG"],
        "--worker-id",
        f"chaos:{name}",
    ]
    cmd += ["--metrics-port", "0", "--metrics-addr", "127.0.0.1"]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log


def _held_by(lock: TrainerLock, r: redis.Redis, worker_id: str) -> bool:
    """Whether the lock's holder is the process of `worker_id` (an owner token or a bare id)."""
    holder = lock.holder(r) or ""
    return worker_id in (holder, worker_of(holder))


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as fh:
        return "stopped" in next((x for x in fh if x.startswith("State:")), "")


def test_two_trainers_one_trains_the_other_takes_over(fleet: tuple[Fleet, Monitor]) -> None:
    """A (the fleet's checkpoint directory) trains while B stands by with its own, empty one and
    no MLflow, as on another host. A hangs (SIGSTOP) past the lock's TTL: B takes over from the
    weights Redis holds (bit for bit), trains and publishes; A resumed (SIGCONT) publishes
    nothing more and stands by (its publish is fenced by the lock)."""
    f, _ = fleet
    lock = TrainerLock(KEYS, "observer", LOCK_TTL_S)
    cfg = load_config(REPO / "tests" / "fleet.yaml", env=f.env)
    f.ctl("stop", "training-worker")  # warm: releases the lock
    a, log_a = _trainer(f, "trainer-a")
    b, log_b = None, None
    try:
        wait_for("trainer A to take the lock", lambda: _held_by(lock, f.r, "chaos:trainer-a"), 180)
        b, log_b = _trainer(
            f,
            "trainer-b",
            BGAI_TRAINING__CHECKPOINT_DIR=str(f.run_dir / "host-b-checkpoints"),
            BGAI_MLFLOW__TRACKING_URI="",
        )
        wait_for("trainer B to stand by", lambda: _status_of(f.r, "training", "standby"), 120)
        v = f.version()
        wait_for("A to train", lambda: f.version() > v, 120)
        # exactly one trains: A holds the lock and B still stands by
        assert _held_by(lock, f.r, "chaos:trainer-a") and _status_of(f.r, "training", "standby")
        os.kill(a.pid, signal.SIGSTOP)  # hung, alive: its lock runs out, nothing else of it moves
        wait_for("A to be stopped", lambda: _stopped(a.pid), 10, poll_s=0.02)
        with f.r.pipeline(transaction=True) as pipe:
            pipe.get(KEYS.model_version)
            pipe.get(KEYS.model_weights)
            raw_version, blob = pipe.execute()
        held = state_digest(decode_weights(blob, train_template(cfg)["params"], model_hash(cfg))[0])
        took = wait_for(
            "B to take over",
            lambda: _held_by(lock, f.r, "chaos:trainer-b"),
            LOCK_TTL_S + 10,
            poll_s=0.1,
        )
        assert took <= LOCK_TTL_S + 3.0, took  # the lock's TTL, plus B's standby poll (TTL / 3)
        adopted = re.compile(r"adopted weights of version (\d+) from Redis at step \d+, params (\w+)")
        wait_for("B to adopt Redis's weights", lambda: adopted.search(f.log("trainer-b")) is not None, 30)
        m = adopted.search(f.log("trainer-b"))
        assert m is not None and int(m.group(1)) == int(raw_version) and m.group(2) == held, (m, held)
        wait_for("B to publish", lambda: f.version() > int(raw_version), 180)
        os.kill(a.pid, signal.SIGCONT)
        wait_for("A to stand by", lambda: _status_of(f.r, "training", "standby"), 30)
        v = f.version()
        wait_for("B to publish again", lambda: f.version() > v, 180)
        assert _held_by(lock, f.r, "chaos:trainer-b")
        # fenced: nothing above what Redis held when A stopped (a line for a publish made just
        # before the stop may be written after it)
        by_a = [int(x) for x in re.findall(r"published version (\d+) \(step", f.log("trainer-a"))]
        assert max(by_a, default=-1) <= int(raw_version), (by_a, raw_version)
        fenced = "not publishing" in f.log("trainer-a")
        print(
            f"chaos: two trainers, one trained; the standby (its own checkpoint dir) took over "
            f"{took:.1f} s after the holder hung (TTL {LOCK_TTL_S:g} s) from Redis's version "
            f"{int(raw_version)}, bit for bit; the resumed holder published nothing "
            f"({'its publish refused by the lock' if fenced else 'it found the lock taken'})"
        )
    finally:
        for p, log in ((a, log_a), (b, log_b)):
            if p is not None and log is not None:
                p.kill()
                p.wait(10)
                log.close()
    f.ctl("start", "training-worker")
    trainer_id = f"{os.uname().nodename}:training"  # the fleet's: --worker-id %(host_node_name)s:training
    wait_for("the fleet's trainer to lead again", lambda: _held_by(lock, f.r, trainer_id), 60)
    no_fatal(f)


def _buffer_snapshot(r: redis.Redis, attempts: int = 100) -> tuple[dict, list[bytes | None]]:
    """The buffer's stats and the blobs of its live ids, read as of one moment.

    The fleet keeps pushing (and evicting) while this runs: WATCH the stats key, which every
    push rewrites in the same script, and read again when a push lands in between.
    """
    with r.pipeline() as pipe:
        for _ in range(attempts):
            try:
                bk = _buffer(r)
                pipe.watch(bk.stats)
                stats = json.loads(pipe.get(bk.stats))
                pipe.multi()
                pipe.mget([bk.episode(x) for x in range(stats["oldest"], stats["newest"] + 1)])
                return stats, pipe.execute()[0]
            except redis.WatchError:
                continue
    raise AssertionError(f"the buffer changed during each of {attempts} reads")


def test_buffer_has_no_partial_or_duplicate_episode(fleet: tuple[Fleet, Monitor]) -> None:
    f, monitor = fleet
    stats, blobs = _buffer_snapshot(f.r)
    seen: set[str] = set()
    rows = 0
    for blob in blobs:
        assert blob is not None  # live ids are exactly oldest..newest
        expand_episode(blob)  # whole: decompresses and checks every row offset
        rows += read_episode_header(blob).rows
        digest = hashlib.sha256(blob).hexdigest()
        assert digest not in seen, "an episode is in the buffer twice"
        seen.add(digest)
    assert len(seen) == stats["episodes"] and rows == stats["size"]
    assert monitor.decreases == 0 and monitor.torn == 0, monitor.problems[:5]
    print(f"chaos: buffer of {len(seen)} episodes ({rows} positions): none partial, none twice")


def _buffer(r: redis.Redis) -> BufferKeys:
    """The current run's buffer keys."""
    return KEYS.buffer(runstate.namespace(r, KEYS))


def _stats(r: redis.Redis) -> dict:
    return json.loads(r.get(_buffer(r).stats))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "zombie" not in next((x for x in fh if x.startswith("State:")), "").lower()
    except OSError:
        return False


def _pings(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.RedisError:
        return False


def _live_ids(r: redis.Redis) -> list[str]:
    return registry.registered(r, KEYS)


def _playing(r: redis.Redis) -> int:
    """Game workers that have a model and are playing."""
    n = 0
    for w in _live_ids(r):
        raw = r.get(KEYS.worker(w))
        rec = json.loads(raw) if raw else {}
        ready = rec.get("status") == "running" and rec.get("model_version") is not None
        n += rec.get("type") == "game" and ready
    return n


def _status_of(r: redis.Redis, kind: str, status: str) -> bool:
    for w in _live_ids(r):
        raw = r.get(KEYS.worker(w))
        rec = json.loads(raw) if raw else {}
        if rec.get("type") == kind and rec.get("status") == status:
            return True
    return False
