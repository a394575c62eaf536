"""Liveness and identity through the role loop, against a real redis-server: a worker whose clock
is 5 minutes off stays live, scraped and keeps its eval slice; a second process under a live
worker's id is refused (exit 2) while a restart takes over from a dead predecessor; a hung unit
marks its worker stalled until units progress again. Roles here are stubs (no model, no JAX):
the loop, the registry and the coordinator are real."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis_server import redis_server

from bgai.clock import Clock, FakeClock
from bgai.config import Config, load_config
from bgai.obs.metrics import RoleMetrics
from bgai.roles.base import RoleRunner, Unit
from bgai.roles.coordinator import Coordinator
from bgai.roles.identity import Identity
from bgai.store import evals, registry
from bgai.store.client import connect
from bgai.store.keys import Keys
from bgai.store.registry import WorkerInfo

FLEET_YAML = Path(__file__).resolve().parents[1] / "fleet.yaml"
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, redis.Redis, Keys]]:
    tmp = tmp_path_factory.mktemp("liveness")
    with redis_server(tmp / "redis") as port:
        cfg = load_config(
            FLEET_YAML,
            env={},
            overrides={
                "redis.port": str(port),
                "head.targets_file": str(tmp / "targets.json"),
                "head.heartbeat_every_s": "0.2",
                "head.stall_after_s": "30",
            },
        )
        r = connect(cfg.redis)
        yield cfg, r, Keys(cfg.redis.prefix)
        r.close()


class StubRole:
    """A role with no model: each unit waits until `go` is set (clear it to hang the next unit);
    done after `units` units."""

    def __init__(self, identity: Identity, units: int = 10**9) -> None:
        self.identity = identity
        self.left = units
        self.units = 0
        self.set_up = False
        self.entered = threading.Event()  # a unit is in progress
        self.go = threading.Event()
        self.go.set()

    def setup(self) -> None:
        self.set_up = True

    def run_once(self) -> Unit:
        self.entered.set()
        self.go.wait()
        self.units += 1
        self.left -= 1
        return Unit(idle_s=0.02, done=self.left <= 0)

    def info(self, now: float) -> WorkerInfo:
        return self.identity.info(now, "running")

    def teardown(self) -> None:
        pass


def worker(worker_id: str, kind: str = "game", port: int = 0) -> Identity:
    return Identity(worker_id, kind, worker_id.split(":")[0], "cpu", "stub", port)


def runner(env: tuple, role: StubRole, clock: Clock, metrics: RoleMetrics | None = None) -> RoleRunner:
    cfg, r, keys = env
    return RoleRunner(role, role.identity.worker_id, cfg, r, keys, clock, metrics)


def coordinator(env: tuple, metrics: RoleMetrics | None = None) -> Coordinator:
    cfg, r, keys = env
    c = Coordinator(cfg, r, keys, worker("head:coordinator", "coordinator"), FakeClock(T0), metrics)
    c.setup()
    return c


def in_thread(run: RoleRunner) -> tuple[threading.Thread, list[int]]:
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(run.run(install_signals=False)))
    thread.start()
    return thread, code


def wait_for(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def record(env: tuple, worker_id: str) -> dict | None:
    raw = env[1].get(env[2].worker(worker_id))
    return None if raw is None else json.loads(raw)


@pytest.mark.parametrize("skew_s", [-300.0, 300.0])
def test_a_worker_whose_clock_is_5_minutes_off_stays_live_scraped_and_keeps_its_slice(
    env: tuple, skew_s: float
) -> None:
    cfg, r, keys = env
    r.flushdb()
    head = coordinator(env)
    game, ev = worker("skewed:game:0", port=9102), worker("skewed:e0", "eval")
    runners = [runner(env, StubRole(i), FakeClock(T0 + skew_s)) for i in (game, ev)]
    for run in runners:
        assert run.register()
    head.run_once()  # makes a run (eval slices belong to one)
    r.set(keys.model_version, 3)
    r.set(keys.model_weights, b"weights-3")
    mine = evals.claim(r, keys, every=1, games=8, slice_games=4, have=None, owner=ev.owner)
    assert mine is not None and mine.slice_index == 0
    for _ in range(3):  # coordinator passes, with fresh heartbeats stamped by the skewed clock
        for run in runners:
            run.heartbeat()
        head.run_once()
        assert set(registry.live_workers(r, keys)) == {game.worker_id, ev.worker_id}
        assert head.reaped == 0
        targets = json.loads(r.get(keys.metrics_targets))
        assert [(t["host"], t["port"]) for t in targets] == [("skewed", 9102)]
    other = evals.claim(r, keys, every=1, games=8, slice_games=4, have=None, owner="other:e1:x")
    assert other is not None and other.slice_index == 1  # not the skewed worker's slice 0
    assert evals.reissued(r, keys, 3) == 0


def test_a_second_process_under_a_live_workers_id_is_refused_and_a_restart_takes_over(
    env: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, r, keys = env
    r.flushdb()
    first = StubRole(worker("twin:game:0"))
    a = runner(env, first, FakeClock(T0))
    thread_a, code_a = in_thread(a)
    try:
        wait_for(lambda: first.units > 0)
        # the same id from another process (another host with this hostname): refused, exit 2,
        # as soon as it sees the first one's record refreshed; it never set up nor worked
        twin = StubRole(worker("twin:game:0"), units=3)
        with caplog.at_level(logging.ERROR, logger="bgai.roles.base"):
            assert runner(env, twin, FakeClock(T0)).run(install_signals=False) == 2
        assert not twin.set_up and twin.units == 0
        refusals = [x.getMessage() for x in caplog.records if "refused" in x.getMessage()]
        assert len(refusals) == 1 and "\n" not in refusals[0], refusals
        assert "'twin:game:0' is in use" in refusals[0] and first.identity.owner in refusals[0]
        assert "--worker-id" in refusals[0]
        assert (record(env, "twin:game:0") or {}).get("owner") == first.identity.owner  # kept
        # a process that took the id over (it judged the first dead) makes the first stop, exit 2,
        # leaving the newcomer's record alone
        newcomer = worker("twin:game:0").info(T0, "running")
        ttl = cfg.head.heartbeat_ttl_s
        while (seen := registry.holder(r, keys, "twin:game:0")) is not None and registry.heartbeat(
            r, keys, newcomer, ttl, replace=seen.raw
        ):
            pass  # the first beat in between: replace the bytes it holds now
        thread_a.join(30)
        assert not thread_a.is_alive() and code_a == [2]
        assert (record(env, "twin:game:0") or {}).get("owner") == newcomer.owner
    finally:
        a.stop.set()
        thread_a.join(30)
    # kill -9: the dead one's record outlives it (until its TTL); the restart watches it go
    # unrefreshed for two heartbeats, takes the id over, works, and deregisters on its way out
    restarted = StubRole(worker("twin:game:0"), units=2)
    assert runner(env, restarted, FakeClock(T0)).run(install_signals=False) == 0
    assert restarted.units == 2 and record(env, "twin:game:0") is None


def test_a_hung_unit_marks_its_worker_stalled_until_units_progress_again(env: tuple) -> None:
    cfg, r, keys = env
    r.flushdb()
    clock = FakeClock(T0)
    role = StubRole(worker("hang:game:0"))
    role.go.clear()  # the first unit hangs (a JAX call, a gnubg read, a deadlock)
    mine = RoleMetrics("hang:game:0", "game", "hang")
    run = runner(env, role, clock, mine)
    head_metrics = RoleMetrics("head:coordinator", "coordinator", "head")
    head = coordinator(env, head_metrics)
    thread, code = in_thread(run)

    def stalled_gauge() -> float | None:
        return head_metrics.registry.get_sample_value(
            "bgai_stalled_workers", {"worker_id": "head:coordinator"}
        )

    try:
        role.entered.wait(30)
        run.heartbeat()
        rec = record(env, "hang:game:0")
        assert rec and rec["status"] == "running" and rec["unit_age_s"] == 0.0
        head.run_once()
        assert head.stalled == set() and stalled_gauge() == 0
        clock.advance(cfg.head.stall_after_s + 1)  # the heartbeat thread beats on; the unit does not end
        run.heartbeat()
        rec = record(env, "hang:game:0")
        assert rec and rec["status"] == "stalled" and rec["unit_age_s"] > cfg.head.stall_after_s
        assert mine.registry.get_sample_value(
            "bgai_worker_status", {"worker_id": "hang:game:0", "status": "stalled"}
        )
        assert mine.registry.get_sample_value("bgai_unit_age_seconds", {"worker_id": "hang:game:0"}) == 31
        head.run_once()
        assert head.stalled == {"hang:game:0"} and stalled_gauge() == 1
        assert "hang:game:0" in registry.live_workers(r, keys)  # hung, not dead: still a target
        role.go.set()  # the unit returns; the next ones progress
        wait_for(lambda: role.units >= 2)
        run.heartbeat()
        rec = record(env, "hang:game:0")
        assert rec and rec["status"] == "running"
        head.run_once()
        assert head.stalled == set() and stalled_gauge() == 0
    finally:
        role.go.set()
        run.stop.set()
        thread.join(30)
    assert code == [0]
