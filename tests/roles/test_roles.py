"""The roles against a real redis-server, driven one `run_once` at a time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis_server import free_port, redis_server

from bgai.clock import FakeClock
from bgai.config import Config, load_config
from bgai.roles.base import RoleRunner, Unit
from bgai.roles.coordinator import Coordinator
from bgai.roles.eval_worker import EvalWorker
from bgai.roles.game_worker import GameWorker
from bgai.roles.identity import Identity
from bgai.roles.training_worker import TrainingWorker
from bgai.store import evals, registry, runstate, weights
from bgai.store.client import connect
from bgai.store.keys import Keys
from bgai.store.registry import WorkerInfo

FLEET_YAML = Path(__file__).resolve().parents[1] / "fleet.yaml"


def ident(kind: str, port: int = 0) -> Identity:
    return Identity(f"test:{kind}", kind, "127.0.0.1", "cpu", "test", port)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, redis.Redis, Keys, dict]]:
    tmp = tmp_path_factory.mktemp("fleet")
    with redis_server(tmp / "redis") as port:
        cfg = load_config(
            FLEET_YAML,
            env={},
            overrides={
                "redis.port": str(port),
                "training.checkpoint_dir": str(tmp / "ckpt"),
                "selfplay.spool_dir": str(tmp / "spool"),
                "head.targets_file": str(tmp / "targets.json"),
            },
        )
        r = connect(cfg.redis)
        keys = Keys(cfg.redis.prefix)
        clock = FakeClock()
        roles = {
            "coordinator": Coordinator(cfg, r, keys, ident("coordinator", 9101), clock),
            "training": TrainingWorker(cfg, r, keys, ident("training")),
            "game": GameWorker(cfg, r, keys, ident("game", 9102)),
            "eval": EvalWorker(cfg, r, keys, ident("eval")),
            "clock": clock,
        }
        for name in ("coordinator", "training", "game", "eval"):
            roles[name].setup()
        yield cfg, r, keys, roles
        r.close()


def test_one_training_cycle(fleet: tuple) -> None:
    cfg, r, keys, roles = fleet
    roles["coordinator"].run_once()
    run_id, status = runstate.get_run(r, keys)
    assert run_id and status == "running"
    assert roles["game"].run_once().idle_s > 0  # no weights yet: idles
    assert "initial weights" in roles["training"].run_once().summary
    assert weights.current_version(r, keys) == 0
    for _ in range(200):  # bounded: self-play until the trainer has published version 2
        roles["game"].run_once()
        roles["training"].run_once()
        if (weights.current_version(r, keys) or 0) >= 2:
            break
    assert weights.current_version(r, keys) >= 2
    st = json.loads(r.get(keys.buffer(run_id).stats))
    assert st["size"] <= cfg.buffer.capacity_positions and st["pushed_positions"] >= 200
    assert roles["game"].games > 0
    # the game worker picks up the newest version before its next chunk
    roles["game"].run_once()
    assert roles["game"].follower.version == weights.current_version(r, keys)
    assert list(Path(cfg.training.checkpoint_dir).glob("*/ckpt_*.bgai"))


def test_eval_slices_aggregate_per_version(fleet: tuple) -> None:
    cfg, r, keys, roles = fleet
    for _ in range(cfg.eval.games // cfg.eval.slice_games):
        assert "slice" in roles["eval"].run_once().summary
    target = evals.target(r, keys)
    assert target is not None
    res = evals.results(r, keys)[target["version"]]
    assert set(res) == {"random", "pubeval", evals.ER}
    assert all(res[o]["games"] == cfg.eval.games for o in ("random", "pubeval"))
    assert roles["eval"].run_once().idle_s > 0  # every slice claimed, no newer version yet


def test_paused_and_stopped(fleet: tuple) -> None:
    _, r, keys, roles = fleet
    runstate.set_status(r, keys, "paused")
    assert roles["game"].run_once().idle_s > 0 and roles["game"].status == "paused"
    assert roles["eval"].run_once().idle_s > 0
    runstate.set_status(r, keys, "stopped")
    for name in ("game", "training", "eval"):
        assert roles[name].run_once().done
    runstate.set_status(r, keys, "running")


def test_coordinator_reaps_and_writes_targets(fleet: tuple) -> None:
    cfg, r, keys, roles = fleet
    clock = roles["clock"]
    for name in ("game", "eval"):
        registry.heartbeat(r, keys, roles[name].info(clock.now()), cfg.head.heartbeat_ttl_s)
    roles["coordinator"].run_once()
    targets = json.loads(r.get(keys.metrics_targets))
    assert [t["port"] for t in targets] == [9102]  # only workers that serve /metrics
    sd = json.loads(Path(cfg.head.targets_file).read_text())
    assert sd == [{"targets": ["127.0.0.1:9102"], "labels": {"role": "game", "device": "cpu"}}]
    for name in ("game", "eval"):  # both die: Redis expires their keys (its clock, not ours)
        r.delete(keys.worker(roles[name].identity.worker_id))
    reaped = roles["coordinator"].reaped
    roles["coordinator"].run_once()
    assert registry.list_workers(r, keys) == {} and roles["coordinator"].reaped == reaped + 2
    assert json.loads(Path(cfg.head.targets_file).read_text()) == []


def test_second_trainer_stands_by(fleet: tuple) -> None:
    cfg, r, keys, roles = fleet
    roles["training"].run_once()  # holds the lock
    # a second trainer under the same worker id (another host with the same hostname): its own
    # owner token, so it cannot take the lock the first holds
    other = TrainingWorker(cfg, r, keys, ident("training"))
    other.setup()
    assert other.lock.owner == other.identity.owner != roles["training"].lock.owner
    assert other.run_once().idle_s > 0 and other.status == "standby"
    # the holder stops (checkpoint, lock released): the standby takes over from its checkpoint
    roles["training"].teardown()
    other.run_once()
    assert other.status != "standby" and other.step >= roles["training"].step  # continued, not restarted
    assert other.version >= roles["training"].version
    other.teardown()


class FlakyRole:
    """Fails with a connection error `failures` times, then stops the run."""

    def __init__(self, failures: int) -> None:
        self.identity = ident("game")
        self.failures = failures
        self.calls = 0
        self.torn_down = False

    def setup(self) -> None:
        pass

    def run_once(self) -> Unit:
        self.calls += 1
        if self.calls <= self.failures:
            raise redis.ConnectionError("server went away")
        return Unit("done", done=True)

    def info(self, now: float) -> WorkerInfo:
        return self.identity.info(now, "running")

    def teardown(self) -> None:
        self.torn_down = True


def test_loop_backs_off_on_unreachable_redis_then_carries_on(fleet: tuple) -> None:
    cfg, r, keys, _ = fleet
    role = FlakyRole(failures=3)
    runner = RoleRunner(role, "test:flaky", cfg, r, keys, FakeClock())
    assert runner.run(install_signals=False) == 0
    assert role.calls == 4 and role.torn_down


def _wait_alive(thread: threading.Thread, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Polls `check` while the role's thread must stay alive; fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        thread.join(0.05)
        assert thread.is_alive()
        assert time.monotonic() < deadline, "condition not reached"


def test_loop_waits_out_a_dead_server_and_carries_on(tmp_path: Path) -> None:
    port = free_port()
    cfg = load_config(
        FLEET_YAML,
        env={},
        overrides={
            "redis.port": str(port),
            "redis.backoff_max_s": "0.3",
            "head.targets_file": str(tmp_path / "t"),
        },
    )
    r, keys = connect(cfg.redis), Keys(cfg.redis.prefix)
    coordinator = Coordinator(cfg, r, keys, ident("coordinator"), FakeClock())
    runner = RoleRunner(coordinator, "test:coordinator", cfg, r, keys, FakeClock())
    thread = threading.Thread(target=runner.run, kwargs={"install_signals": False})
    thread.start()
    try:
        # nobody listens on the port: retrying, not exiting
        _wait_alive(thread, lambda: runner.backoff.failures >= 4)
        with redis_server(tmp_path / "redis", port=port):
            # the server is back: work resumes, and the backoff resets once the unit returns
            _wait_alive(thread, lambda: runstate.get_run(r, keys)[1] == "running")
            _wait_alive(thread, lambda: runner.backoff.failures == 0)
            runner.stop.set()
            thread.join(30)
            assert not thread.is_alive()
            assert registry.list_workers(r, keys) == {}  # deregistered on the way out
    finally:
        runner.stop.set()
        thread.join(30)
        r.close()


def test_targets_use_the_advertised_metrics_address() -> None:
    from bgai.roles.coordinator import targets_of

    workers = {
        "a": {"metrics_port": 9100, "hostname": "gpu1", "metrics_host": "10.0.0.5", "type": "game"},
        "b": {"metrics_port": 9101, "hostname": "cpu1", "metrics_host": "", "type": "eval"},
        "c": {"metrics_port": 0, "hostname": "cpu1", "type": "eval"},
    }
    assert [(t["host"], t["port"]) for t in targets_of(workers)] == [("10.0.0.5", 9100), ("cpu1", 9101)]
