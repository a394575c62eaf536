"""`bgai-runs` and MLflow tracking against a real MLflow server and a real redis-server.

The roles are driven one `run_once` at a time (as in tests/roles); the commands run through
click's runner, in order: start, train and log, resume bit-exact (the checkpoint fetched back from
MLflow), refusals, pause/stop/list/delete, and an MLflow outage that training rides out.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from click.testing import CliRunner, Result
from mlflow_server import MlflowServer, mlflow_server
from prometheus_client import generate_latest
from redis_server import redis_server

from bgai.cli.runs import runs
from bgai.config import Config, config_hash, load_config, model_hash
from bgai.obs.metrics import RoleMetrics
from bgai.obs.tracking import Tracker, TrackingQueue, client_env
from bgai.roles.coordinator import Coordinator
from bgai.roles.eval_worker import EvalWorker
from bgai.roles.game_worker import GameWorker
from bgai.roles.identity import Identity
from bgai.roles.training_worker import TrainingWorker
from bgai.runs.manager import checkpoint_dir, run_params
from bgai.store import evals, runstate, weights
from bgai.store.client import connect
from bgai.store.codec import decode_weights
from bgai.store.keys import Keys
from bgai.store.replay import ReplayStore
from bgai.train.checkpoint import list_checkpoints, load_checkpoint

FLEET_YAML = Path(__file__).resolve().parents[1] / "fleet.yaml"


class Env:
    def __init__(self, cfg: Config, sets: list[str], server: MlflowServer, tmp: Path) -> None:
        self.cfg, self.sets, self.server, self.tmp = cfg, sets, server, tmp
        self.r = connect(cfg.redis)
        self.keys = Keys(cfg.redis.prefix)
        self.tracker = Tracker(cfg.mlflow.tracking_uri, cfg.mlflow.experiment)
        self.queue = TrackingQueue(self.tracker, backoff_s=(0.2, 2.0))
        self.game = GameWorker(cfg, self.r, self.keys, ident("game"))
        self.trainer = TrainingWorker(cfg, self.r, self.keys, ident("training"), tracking=self.queue)
        self.eval = EvalWorker(cfg, self.r, self.keys, ident("eval"), tracking=self.queue)
        for role in (self.game, self.trainer, self.eval):
            role.setup()
        self.state: dict[str, Any] = {}

    def cli(self, *args: str) -> Result:
        """`bgai-runs ARGS` with the fleet's config file and this test's Redis and MLflow."""
        config = [] if "--config" in args else ["--config", str(FLEET_YAML)]
        return CliRunner().invoke(runs, [*args, *config, *self.sets], catch_exceptions=False)


def ident(kind: str) -> Identity:
    return Identity(f"test:{kind}", kind, "127.0.0.1", "cpu", "test")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("runs")
    client_env()
    with redis_server(tmp / "redis") as port, mlflow_server(tmp / "mlflow") as server:
        overrides = {
            "redis.port": str(port),
            "training.checkpoint_dir": str(tmp / "ckpt"),
            "selfplay.spool_dir": str(tmp / "spool"),
            "mlflow.tracking_uri": server.uri,
            "mlflow.experiment": "bgai-test",
            "head.targets_file": str(tmp / "targets" / "bgai.json"),
        }
        # the CLI also reads the session's compilation cache from the environment (conftest)
        jax_env = {k: v for k, v in os.environ.items() if k.startswith("BGAI_JAX__")}
        cfg = load_config(FLEET_YAML, env=jax_env, overrides=overrides)
        sets = [x for k, v in overrides.items() for x in ("--set", f"{k}={v}")]
        e = Env(cfg, sets, server, tmp)
        yield e
        e.r.close()


def train_until(e: Env, checkpoints: int, max_units: int = 400) -> None:
    """Self-play and train, one unit each in turn, until the run has `checkpoints` checkpoints."""
    for _ in range(max_units):
        e.game.run_once()
        e.trainer.run_once()
        if len(list_checkpoints(e.trainer.dir)) >= checkpoints and e.trainer.run_id == current(e):
            return
    raise AssertionError(f"no {checkpoints} checkpoints after {max_units} units")


def current(e: Env) -> str | None:
    return runstate.get_run(e.r, e.keys)[0]


def test_start_creates_the_run_and_resets_redis(env: Env) -> None:
    e = env
    ReplayStore(e.r, e.keys, 100).clear()
    runstate.start_run(e.r, e.keys, "not-an-mlflow-run")
    out = e.cli("start")
    assert out.exit_code == 0, out.output
    run_id = re.search(r"started run (\w+)", out.output).group(1)  # type: ignore[union-attr]
    assert runstate.get_run(e.r, e.keys) == (run_id, "running")
    assert weights.current_version(e.r, e.keys) is None
    run = e.tracker.get_run(run_id)
    assert run is not None and run.status == "RUNNING"
    assert re.fullmatch(rf"{config_hash(e.cfg)}_\d{{8}}-\d{{6}}", run.name)
    # every resolved value that defines the run; no address, credential or path of a host
    assert run.params == run_params(e.cfg) and len(run.params) > 40
    assert not any(k.split(".")[0] in ("redis", "mlflow", "head", "local", "jax") for k in run.params)
    assert "training.checkpoint_dir" not in run.params and "selfplay.spool_dir" not in run.params
    assert run.tags["bgai.redis_prefix"] == e.cfg.redis.prefix and run.tags["bgai.version"]
    assert run.tags["bgai.model_hash"] == model_hash(e.cfg)
    assert "config.yaml" in e.tracker.list_artifacts(run_id)
    e.state["run1"] = run_id


def test_training_and_eval_are_logged(env: Env) -> None:
    e, run_id = env, env.state["run1"]
    train_until(e, 2)
    for _ in range(20):  # eval: a whole version, both opponents
        e.eval.run_once()
        if any(k.startswith("eval/") for k in pending_metric_keys(e, run_id)):
            break
    assert e.queue.flush(120), "tracking queue not drained"
    e.queue.curves(run_id)
    assert e.queue.flush(120)
    run = e.tracker.get_run(run_id)
    assert run is not None
    for key in ("loss", "policy_loss", "value_loss", "games_collected", "buffer_positions", "model_version"):
        assert key in run.metrics, key
    steps = [s for s, _ in e.tracker.history(run_id, "loss")]
    assert steps == sorted(steps) and steps[-1] == e.trainer.step
    for opp in e.cfg.eval.opponents:
        for key in (f"eval/{opp}/win_rate", f"eval/{opp}/ppg"):
            lo, mid, hi = (run.metrics[f"{key}_lo"], run.metrics[key], run.metrics[f"{key}_hi"])
            assert lo <= mid <= hi
        # evaluation is at step = model version; the trainer's metrics at step = train step
        steps = {s for s, _ in e.tracker.history(run_id, f"eval/{opp}/win_rate")}
        assert steps and steps <= set(evals.results(e.r, e.keys)), steps
    local = [p.name for p in list_checkpoints(e.trainer.dir)]
    remote = [Path(a).name for a in e.tracker.list_artifacts(run_id, "checkpoints")]
    # a checkpoint still queued when a newer one came is replaced by it (only the newest needs
    # uploading), so MLflow holds the newest and never one pruned locally
    assert remote and remote[-1] == local[-1] and set(remote) <= set(local), (remote, local)
    assert len(local) <= e.cfg.training.keep_checkpoints
    png = e.tracker.download(run_id, "curves/training_curves.png", e.tmp / "png")
    assert png.read_bytes().startswith(b"\x89PNG")


def pending_metric_keys(e: Env, run_id: str) -> set[str]:
    e.queue.flush(60)
    run = e.tracker.get_run(run_id)
    return set(run.metrics) if run else set()


def test_resume_restores_the_checkpoint_bit_exact(env: Env) -> None:
    e, run1 = env, env.state["run1"]
    path = e.trainer.checkpoint()  # the state to come back to, exactly
    saved, saved_rng, saved_version = (
        e.trainer.state,
        dict(e.trainer.rng.bit_generator.state),
        e.trainer.version,
    )
    assert e.queue.flush(120)
    out = e.cli("start")  # the fleet moves on to another run
    assert out.exit_code == 0, out.output
    e.trainer.run_once()
    assert e.trainer.run_id != run1 and e.trainer.step == 0  # fresh weights for the new run
    shutil.rmtree(checkpoint_dir(e.cfg, run1))  # only MLflow has run 1's checkpoints now
    out = e.cli("resume", "--run-id", run1)
    assert out.exit_code == 0, out.output
    assert f"from {path.name}" in out.output
    assert runstate.get_run(e.r, e.keys) == (run1, "running")
    assert weights.current_version(e.r, e.keys) == saved_version
    _, blob = weights.fetch(e.r, e.keys)
    params, _ = decode_weights(blob, saved.params, model_hash(e.cfg))  # type: ignore[arg-type]
    assert_same(params, saved.params)
    e.trainer.lock.release(e.r)  # the old trainer process is gone (its lock with it)
    fresh = TrainingWorker(e.cfg, e.r, e.keys, ident("training"), tracking=e.queue)
    fresh.setup()
    fresh.run_once()  # a new trainer process takes the run up from the checkpoint
    assert fresh.run_id == run1
    assert_same(fresh.state.params, saved.params)
    assert_same(fresh.state.opt_state, saved.opt_state)
    assert int(fresh.state.step) == int(saved.step) and fresh.version == saved_version
    assert fresh.rng.bit_generator.state == saved_rng
    restored, meta = load_checkpoint(
        path, {"params": saved.params, "opt_state": saved.opt_state, "step": saved.step}
    )
    assert meta["run_id"] == run1 and meta["config_hash"] == config_hash(e.cfg)
    e.trainer = fresh


def assert_same(a: Any, b: Any) -> None:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)


def test_bad_input_is_refused_with_exit_2(env: Env) -> None:
    e = env
    out = e.cli("resume", "--run-id", "0123456789abcdef0123456789abcdef")
    assert out.exit_code == 2 and "no run '0123456789abcdef0123456789abcdef'" in out.output
    out = e.cli("resume", "--run-id", e.state["run1"], "--set", "model.hidden=[32]")
    assert out.exit_code == 2 and "model hash" in out.output, out.output
    out = e.cli("delete", "--run-id", e.state["run1"])
    assert out.exit_code == 2 and "bgai-runs stop" in out.output  # it is the running run


def test_pause_stop_list_delete(env: Env) -> None:
    e, run1 = env, env.state["run1"]
    assert e.cli("pause").exit_code == 0
    assert e.game.run_once().idle_s > 0 and e.game.status == "paused"
    assert e.cli("stop").exit_code == 0
    assert e.game.run_once().done and e.trainer.run_once().done
    assert runstate.get_run(e.r, e.keys) == (run1, "stopped")
    run = e.tracker.get_run(run1)
    assert run is not None and run.status == "FINISHED"
    table = e.cli("list")
    assert table.exit_code == 0
    assert re.search(rf"{run1}\* .* stopped ", table.output), table.output
    assert "pubeval" in table.output  # last eval column
    out = e.cli("delete", "--run-id", run1, "--delete-checkpoints")
    assert out.exit_code == 0, out.output
    assert e.tracker.get_run(run1) is None and not checkpoint_dir(e.cfg, run1).exists()
    stored = [p for p in (e.server.root / "artifacts").rglob("*.bgai") if run1 in str(p)]
    # the checkpoints are gone; its champions stay, as the registered model's versions hold them
    assert all(p.parent.parent.name == "champion" for p in stored), stored
    assert not stored or "kept its champions" in out.output


def test_mlflow_outage_training_goes_on(env: Env) -> None:
    e = env
    out = e.cli("start")
    assert out.exit_code == 0, out.output
    run_id = current(e)
    assert run_id is not None
    e.trainer.run_once()
    e.server.stop()
    before = e.trainer.step
    try:
        train_until(e, 1)
        assert e.trainer.step > before and e.queue.pending() > 0  # trained; logging waits
        runstate.clear_run(e.r, e.keys)  # a fleet without a run: the coordinator must make one
        coordinator = Coordinator(e.cfg, e.r, e.keys, ident("coordinator"), clock_now(), tracker=e.tracker)
        coordinator.setup()
        assert coordinator.run_once().idle_s > 0 and current(e) is None  # waits, no crash
        runstate.start_run(e.r, e.keys, run_id)
    finally:
        e.server.start()
    assert e.queue.flush(120), "logging did not resume after the outage"
    steps = {s for s, _ in e.tracker.history(run_id, "loss")}
    assert e.trainer.step in steps


def clock_now() -> Any:
    from bgai.clock import SystemClock

    return SystemClock()


def test_an_emptied_redis_waits_for_bgai_runs_instead_of_starting_a_run(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    e = env
    assert e.cli("start").exit_code == 0
    run_id = current(e)
    assert run_id is not None
    train_until(e, 1)  # a run worth keeping: it has trained and has a checkpoint
    e.r.flushdb()  # Redis lost everything (its append-only file removed after a corruption)
    before = {x.run_id for x in e.tracker.runs()}
    metrics = RoleMetrics("test:coordinator", "coordinator", "127.0.0.1")
    coordinator = Coordinator(e.cfg, e.r, e.keys, ident("coordinator"), clock_now(), metrics, e.tracker)
    coordinator.setup()
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert coordinator.run_once().idle_s > 0
    assert current(e) is None and coordinator.info(0.0).status == "blocked"
    assert {x.run_id for x in e.tracker.runs()} == before  # no new MLflow run
    said = [m for m in caplog.messages if "Redis holds no run" in m]
    assert len(said) == 1 and f"bgai-runs resume --run-id {run_id}" in said[0], said
    text = generate_latest(metrics.registry).decode()
    assert f'bgai_run_info{{run_id="{run_id}",run_status="not_in_redis"}} 1.0' in text
    out = e.cli("resume", "--run-id", run_id)  # the operator decides: the run goes on
    assert out.exit_code == 0, out.output
    coordinator.run_once()
    assert coordinator.status == "running" and current(e) == run_id
    assert {x.run_id for x in e.tracker.runs()} == before
    # a fleet whose MLflow shows no run of its own RUNNING still gets one made for it
    other = dataclasses.replace(e.cfg, redis=dataclasses.replace(e.cfg.redis, prefix="bgai-other"))
    keys = Keys("bgai-other")
    fresh = Coordinator(other, e.r, keys, ident("coordinator"), clock_now(), tracker=e.tracker)
    fresh.setup()
    fresh.run_once()
    made = runstate.get_run(e.r, keys)[0]
    assert made is not None and made not in before and fresh.status == "running"


def test_no_secret_reaches_mlflow_whichever_way_it_is_given(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password given in the config file, in BGAI_* env, by --set or in a password file reaches
    MLflow masked: the run's params hold no redis key at all, its config.yaml (the resolved
    config, never the file as given) says `***`, and nothing the server stored (database,
    artifacts) holds a password."""
    import secrets as tokens

    import yaml

    e = env
    pw = {w: f"{w}-{tokens.token_urlsafe(12)}" for w in ("file", "env", "set", "password_file", "mlflow")}
    e.r.acl_setuser(
        "pwtest", enabled=True, passwords=[f"+{p}" for p in pw.values()], keys=["*"], categories=["+@all"]
    )
    config = e.tmp / "with-password.yaml"
    data = yaml.safe_load(FLEET_YAML.read_text())
    config.write_text(yaml.safe_dump({**data, "redis": {"username": "pwtest", "password": pw["file"]}}))
    (e.tmp / "password").write_text(pw["password_file"] + "\n")
    user = {"BGAI_REDIS__USERNAME": "pwtest"}
    ways = [
        ["--config", str(config)],
        {**user, "BGAI_REDIS__PASSWORD": pw["env"]},
        ["--set", f"redis.password={pw['set']}", "--set", "redis.username=pwtest"],
        {**user, "BGAI_REDIS__PASSWORD_FILE": str(e.tmp / "password"), "BGAI_MLFLOW__USERNAME": "bgai",
         "BGAI_MLFLOW__PASSWORD": pw["mlflow"]},
    ]  # fmt: skip
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):  # client_env sets them
        monkeypatch.setenv(name, "")
    started = []
    try:
        for way in ways:
            args, environ = (way, {}) if isinstance(way, list) else ([], way)
            args += [] if "--config" in args else ["--config", str(FLEET_YAML)]
            out = CliRunner().invoke(runs, ["start", *args, *e.sets], env=environ, catch_exceptions=False)
            assert out.exit_code == 0, out.output
            started.append(re.search(r"started run (\w+)", out.output).group(1))  # type: ignore[union-attr]
    finally:
        e.r.acl_deluser("pwtest")
    for run_id in started:
        run = e.tracker.get_run(run_id)
        assert run is not None and not [k for k in run.params if k.startswith("redis.")], run_id
        logged = yaml.safe_load(e.tracker.download(run_id, "config.yaml", e.tmp / run_id).read_text())
        assert logged["redis"]["password"] == "***" and logged["redis"]["username"] == "pwtest"
        assert logged["redis"]["port"] == e.cfg.redis.port  # the resolved values, --set included
    stored = [p for p in e.server.root.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in stored) and any(p.suffix == ".db" for p in stored)
    for path in stored:
        data_bytes = path.read_bytes()
        assert not [w for w, p in pw.items() if p.encode() in data_bytes], f"a password in {path}"
