"""A run's champion: the yardstick, the atomic promotion in Redis, and the MLflow model with the
`champion` alias that an eval worker registers and `bgai eval --model champion` plays (a real
redis-server and a real MLflow server)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from click.testing import CliRunner
from mlflow_server import mlflow_server
from redis_server import redis_server

from bgai.agent import net_of
from bgai.bench.strength import er_of_sums
from bgai.cli.eval import from_registry, registered_model
from bgai.cli.main import cli
from bgai.config import config_hash, load_config, model_hash
from bgai.core.network import init_params
from bgai.errors import BgaiError
from bgai.obs.tracking import Tracker, TrackingQueue
from bgai.roles.champion import CONFIG, EVALUATION, git_commit, yardstick
from bgai.roles.eval_worker import EvalWorker
from bgai.roles.identity import Identity
from bgai.store import evals, registry, runstate, weights
from bgai.store.client import connect
from bgai.store.codec import encode_weights
from bgai.store.keys import Keys

FLEET_YAML = Path(__file__).resolve().parents[1] / "fleet.yaml"


def sums(games: int, wins: int) -> dict[str, int]:
    return {"games": games, "wins": wins, "points": 2 * wins - games}


def test_the_yardstick_is_the_error_rate_else_the_strongest_opponent() -> None:
    er = {"n": 10, "loss": 2_000_000, "best": 5_000_000}  # 0.2 points lost per decision in all
    assert yardstick({"pubeval": sums(8, 6), evals.ER: er}) == ("er", pytest.approx(-er_of_sums(er)["er"]))
    totals = {"random": sums(8, 8), "pubeval": sums(8, 5), "gnubg_1ply": sums(8, 2), "gnubg_0ply": sums(8, 3)}
    assert yardstick(totals) == ("win_rate_gnubg_1ply", 0.25)
    # cubeful points and our own past versions are no fixed yardstick; nothing played is None
    assert yardstick({"past_2": sums(8, 8), "gnubg_0ply_cube": sums(8, 8), "pubeval": sums(8, 4)}) == (
        "win_rate_pubeval",
        0.5,
    )
    assert yardstick({"pubeval": sums(0, 0)}) is None and yardstick({}) is None
    assert git_commit("0.1.1.dev151+ge1d90a799.d20261205") == "e1d90a799" and git_commit("0.1.0") == ""


def test_promotion_is_by_the_same_yardstick_and_only_in_the_current_run(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as port:
        cfg = load_config(FLEET_YAML, env={}, overrides={"redis.port": str(port)})
        r, keys = connect(cfg.redis), Keys(cfg.redis.prefix)
        runstate.start_run(r, keys, "run-a")
        assert evals.champion(r, keys) is None
        assert evals.promote(r, keys, "run-a", 3, "er", -40.0)
        assert not evals.promote(r, keys, "run-a", 4, "er", -41.5)  # worse
        assert not evals.promote(r, keys, "run-a", 5, "er", -40.0)  # no better
        assert evals.champion(r, keys) == {"version": 3, "metric": "er", "value": -40.0}
        assert evals.promote(r, keys, "run-a", 6, "er", -12.25)
        # another yardstick (the config changed): the new measure starts over
        assert evals.promote(r, keys, "run-a", 7, "win_rate_pubeval", 0.1)
        assert evals.champion(r, keys) == {"version": 7, "metric": "win_rate_pubeval", "value": 0.1}
        # a slice finished for a run that is no longer the fleet's promotes nothing
        runstate.start_run(r, keys, "run-b")
        assert not evals.promote(r, keys, "run-a", 8, "win_rate_pubeval", 0.9)
        assert evals.champion(r, keys, run="run-a")["version"] == 7 and evals.champion(r, keys) is None
        r.close()


def publish(cfg, r, keys, version: int) -> None:  # noqa: ANN001
    params = init_params(net_of(cfg), jax.random.key(version))
    blob = encode_weights(
        params, version=version, step=version, model_hash=model_hash(cfg), config_hash=config_hash(cfg)
    )
    weights.publish(r, keys, version, blob)


def test_the_best_evaluated_version_is_registered_as_the_champion(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as port, mlflow_server(tmp_path / "mlflow") as server:
        cfg = load_config(
            FLEET_YAML,
            env={},
            overrides={
                "redis.port": str(port),
                "mlflow.tracking_uri": server.uri,
                "eval.opponents": "[pubeval]",
                "eval.er_decisions": "40",
            },
        )
        r, keys = connect(cfg.redis), Keys(cfg.redis.prefix)
        tracker = Tracker(server.uri, "bgai")
        run_id = tracker.create_run("champion-test", {})
        runstate.start_run(r, keys, run_id)
        queue = TrackingQueue(tracker)
        worker = EvalWorker(cfg, r, keys, Identity("test:e1", "eval", "h1", "cpu", "test"), tracking=queue)
        worker.setup()
        registry.heartbeat(r, keys, worker.info(0.0), cfg.head.heartbeat_ttl_s)
        best: tuple[float, int] | None = None
        for v in range(3):
            publish(cfg, r, keys, v)
            slices = cfg.eval.games // cfg.eval.slice_games
            summaries = [worker.run_once().summary for _ in range(slices)]
            assert all(f"version {v} slice" in s for s in summaries), summaries
            metric, value = yardstick(evals.results_of(r, keys, v))
            assert metric == "er"
            promoted = best is None or value > best[0]
            assert ("now the run's champion" in summaries[-1]) == promoted, summaries
            best = (value, v) if promoted else best
            assert queue.flush(120.0)
            assert evals.champion(r, keys) == {"version": best[1], "metric": "er", "value": best[0]}
            # MLflow's alias follows: the registered version holds that model version's files
            got_run, folder, tags = tracker.registered("bgai", "champion")
            assert got_run == run_id and folder == f"champion/v{best[1]}"
            assert tags["model_version"] == str(best[1]) and tags["host"] and tags["devices"] == "cpu"
            assert tags["bgai_version"] and tags["model_hash"] == model_hash(cfg)
        registered = tracker.client.search_model_versions("name='bgai'")
        assert len(registered) == len({int(t.tags["model_version"]) for t in registered})  # one per champion
        # its evaluation and config are logged beside the weights
        local = tracker.download(run_id, f"champion/v{best[1]}", tmp_path / "dl")
        assert json.loads((local / EVALUATION).read_text())["model_version"] == best[1]
        assert "tracking_uri" in (local / CONFIG).read_text()
        # `bgai eval --model champion` loads exactly the champion's weights (and models:/bgai/N)
        number = next(str(m.version) for m in registered if m.tags["model_version"] == str(best[1]))
        want = jax.tree.leaves(init_params(net_of(cfg), jax.random.key(best[1])))
        for spec in ("champion", "models:/bgai@champion", f"models:/bgai/{number}"):
            got = jax.tree.leaves(from_registry(cfg, spec))
            assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
        with pytest.raises(BgaiError, match="another model shape"):
            from_registry(
                load_config(
                    FLEET_YAML, env={}, overrides={"model.hidden": "[8]", "mlflow.tracking_uri": server.uri}
                ),
                "champion",
            )
        with pytest.raises(BgaiError, match="in MLflow"):
            from_registry(cfg, "models:/nosuch@champion")
        # the command lines: `bgai eval --model champion` plays it; gnubg-player takes it too
        sets = ["--set", f"redis.port={port}", "--set", f"mlflow.tracking_uri={server.uri}"]
        base = ["--config", str(FLEET_YAML), *sets]
        out = CliRunner().invoke(
            cli, ["eval", *base, "--model", "champion", "--opponent", "random", "--games", "2"]
        )
        assert out.exit_code == 0 and "champion" in out.output and "vs random" in out.output, out.output
        out = CliRunner().invoke(cli, ["eval", *base, "--model", "models:/nosuch@champion", "--games", "2"])
        assert out.exit_code == 2 and "cannot use models:/nosuch@champion" in out.output, out.output
        out = CliRunner().invoke(cli, ["gnubg-player", *base, "--model", "champion", "--version", "1"])
        assert out.exit_code == 2 and "give one of" in out.output, out.output
        worker.teardown()
        r.close()


@pytest.mark.parametrize("spec", ["models:/", "models:/x", "models:/@a", "champions", "models:/x/y"])
def test_a_malformed_model_name_is_refused(spec: str) -> None:
    cfg = load_config(FLEET_YAML, env={})
    with pytest.raises(BgaiError, match="is not champion"):
        registered_model(cfg, spec)
