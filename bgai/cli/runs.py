"""`bgai-runs`: list, start, resume, pause, stop and delete training runs (MLflow + Redis).

Every command reads the same config as the fleet (`--config`, `--set`, `BGAI_*`) for the Redis
address and the MLflow tracking URI. A refused command (unknown run, a running run to delete, a
checkpoint of another model shape, no tracking URI) prints why and exits 2.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from bgai.cli.common import config_option, load_or_exit, redis_failure, set_option
from bgai.config import Config
from bgai.errors import BgaiError

run_id_option = click.option("--run-id", required=True, help="The MLflow run id (see `bgai-runs list`).")


@contextmanager
def _manager(config: str | None, sets: tuple[str, ...]) -> Iterator[Any]:
    from bgai.obs.tracking import Tracker, client_env
    from bgai.runs.manager import RunManager
    from bgai.store.client import connect, keys_for

    cfg: Config = load_or_exit(config, sets)
    if not cfg.mlflow.tracking_uri:
        raise click.UsageError("mlflow.tracking_uri is not set (config, or BGAI_MLFLOW__TRACKING_URI)")
    client_env(cfg.mlflow)
    r = connect(cfg.redis)
    try:
        yield RunManager(cfg, r, keys_for(cfg.redis), Tracker(cfg.mlflow.tracking_uri, cfg.mlflow.experiment))
    except BgaiError as exc:
        raise click.UsageError(str(exc)) from exc
    except Exception as exc:
        failure = redis_failure(exc, cfg)
        if failure is not None:
            raise failure from None
        if type(exc).__name__ == "MlflowException" or "mlflow" in type(exc).__module__:
            raise click.ClickException(
                f"MLflow at {cfg.mlflow.tracking_uri}: {str(exc).splitlines()[0]}"
            ) from exc
        raise
    finally:
        r.close()


@click.group()
@click.version_option(package_name="bgai")
def runs() -> None:
    """Training runs: tracked in MLflow, the current one held in Redis."""


@runs.command("list")
@config_option
@set_option
def list_runs(config: str | None, sets: tuple[str, ...]) -> None:
    """A table of the experiment's runs, newest first."""
    with _manager(config, sets) as m:
        current, status = m.current()
        rows = m.tracker.runs()
    click.echo(
        f"{'run id':32s}  {'name':28s}  {'status':9s}  {'started (UTC)':19s}  {'version':>7s}  "
        f"{'games':>8s}  last eval"
    )
    for run in rows:
        state = status if run.run_id == current and status else run.status.lower()
        mark = "*" if run.run_id == current else " "
        met = run.metrics
        version = int(met["model_version"]) if "model_version" in met else "-"
        games = int(met["games_collected"]) if "games_collected" in met else "-"
        click.echo(
            f"{run.run_id:32s}{mark} {run.name[:28]:28s}  {state:9s}  "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(run.start_time))}  {version!s:>7s}  "
            f"{games!s:>8s}  {last_eval(met)}"
        )
    if not rows:
        click.echo("(no runs yet: `bgai-runs start --config FILE`)")


def last_eval(metrics: dict[str, float]) -> str:
    from bgai.obs.tracking import win_rate_keys

    rates = {opp: metrics[k] for opp, k in win_rate_keys(metrics).items()}
    return ", ".join(f"{opp} {v:.0%}" for opp, v in sorted(rates.items())) or "-"


@runs.command("start")
@click.option("--config", "-c", "config", type=click.Path(exists=True, dir_okay=False), required=True)
@set_option
def start(config: str, sets: tuple[str, ...]) -> None:
    """Start a new run: MLflow run, Redis reset, status running."""
    with _manager(config, sets) as m:
        run_id = m.start(Path(config))
    click.echo(f"started run {run_id} (running); the fleet's trainer begins from fresh weights")


@runs.command("resume")
@run_id_option
@config_option
@set_option
def resume(run_id: str, config: str | None, sets: tuple[str, ...]) -> None:
    """Continue a run from its newest checkpoint (weights, optimizer state and step)."""
    with _manager(config, sets) as m:
        got = m.resume(run_id)
    click.echo(
        f"resumed run {got.run_id} from {got.checkpoint.name}: step {got.step}, model version "
        f"{got.model_version} (running)"
    )


def _status_command(name: str, status: str, doc: str) -> click.Command:
    @runs.command(name, help=doc)
    @config_option
    @set_option
    def command(config: str | None, sets: tuple[str, ...]) -> None:
        with _manager(config, sets) as m:
            run_id = m.set_status(status)
        click.echo(f"run {run_id}: {status}")

    return command


pause: Callable[..., Any] = _status_command("pause", "paused", "Pause the current run (workers idle).")
stop: Callable[..., Any] = _status_command(
    "stop", "stopped", "Stop the current run (workers finish their unit and exit; MLflow: FINISHED)."
)


@runs.command("delete")
@run_id_option
@click.option(
    "--delete-checkpoints", is_flag=True, help="Also remove its checkpoints, locally and in MLflow."
)
@config_option
@set_option
def delete(run_id: str, delete_checkpoints: bool, config: str | None, sets: tuple[str, ...]) -> None:
    """Delete a run from MLflow (refused while it is the fleet's current, unstopped run)."""
    with _manager(config, sets) as m:
        for line in m.delete(run_id, delete_checkpoints):
            click.echo(line)
