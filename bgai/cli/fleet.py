"""`bgai coordinator | game-worker | training-worker | eval-worker | status`: the fleet's processes.

Each command only builds the role and hands it to the role loop (`bgai.roles.base`).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from bgai import compile_cache, cpu_threads
from bgai.cli.common import (
    OperatorError,
    config_option,
    load_or_exit,
    redis_errors,
    set_option,
)
from bgai.obs import ports

if TYPE_CHECKING:
    from bgai.config import Config
    from bgai.store.client import Redis
    from bgai.store.keys import Keys

worker_id_option = click.option("--worker-id", default=None, help="Registry id (default: host:role:pid).")
metrics_port_option = click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /metrics on this port plus --metrics-port-offset (0: any free port, reported in the "
    "registry). Default: none.",
)
# The supervisor programs pass their kind's base port (bgai.obs.ports) and their process number
metrics_port_offset_option = click.option(
    "--metrics-port-offset",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="Added to --metrics-port (this program's number among its kind's: game-worker-N's N); "
    "ignored when --metrics-port is 0.",
)
# Loopback unless told: /metrics is unauthenticated, so it listens only where it is asked to
# (the supervisor programs pass the host's fleet address, BGAI_METRICS_ADDR).
DEFAULT_METRICS_ADDR = "127.0.0.1"
metrics_addr_option = click.option(
    "--metrics-addr",
    default=DEFAULT_METRICS_ADDR,
    show_default=True,
    help="Address /metrics binds to (this host's fleet address, for a Prometheus on another host); "
    "unless 0.0.0.0, also the address Prometheus is told to scrape (0.0.0.0: every interface, "
    "scraped at this host's name).",
)

metrics_pushed_option = click.option(
    "--metrics-pushed",
    is_flag=True,
    help="A Prometheus agent on this host scrapes /metrics and pushes the series to the head "
    "(`bgai join`): register no scrape target.",
)


def _serve(
    kind: str,
    config: str | None,
    sets: tuple[str, ...],
    worker_id: str | None,
    metrics_port: int | None,
    metrics_addr: str = DEFAULT_METRICS_ADDR,
    metrics_pushed: bool = False,
) -> None:
    from bgai.clock import SystemClock
    from bgai.obs.metrics import RoleMetrics
    from bgai.roles.base import RoleRunner
    from bgai.roles.identity import default_worker_id, make_identity
    from bgai.store.client import connect, keys_for

    cfg = load_or_exit(config, sets)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    if kind != "coordinator":  # the coordinator compiles nothing
        threads = getattr(cfg.jax, f"{kind}_threads")
        logging.getLogger("bgai").info("%s", cpu_threads.limit(threads))  # before JAX's first use
        compile_cache.enable(cfg.jax)
    r, keys, clock = connect(cfg.redis), keys_for(cfg.redis), SystemClock()
    tracker, tracking = None, None
    if cfg.mlflow.tracking_uri:
        from bgai.obs.tracking import Tracker, TrackingQueue, client_env

        client_env(cfg.mlflow)
        tracker = Tracker(cfg.mlflow.tracking_uri, cfg.mlflow.experiment)
        tracking = TrackingQueue(tracker)
    worker_id = worker_id or default_worker_id(kind)
    metrics = RoleMetrics(worker_id, kind, socket.gethostname())
    port = 0 if metrics_port is None else metrics.serve(metrics_port, metrics_addr)
    advertised = "" if metrics_addr in ("0.0.0.0", "::") else metrics_addr
    # pushed: an agent on this host scrapes it and remote-writes (a host joined by token, which
    # the head cannot reach): no scrape target for the head's Prometheus
    identity = make_identity(kind, worker_id, 0 if metrics_pushed else port, metrics_host=advertised)
    role: Any
    if kind == "coordinator":
        from bgai.roles.coordinator import Coordinator

        role = Coordinator(cfg, r, keys, identity, clock, metrics, tracker)
    elif kind == "game":
        from bgai.roles.game_worker import GameWorker

        seed = zlib.crc32(identity.worker_id.encode()) ^ cfg.training.seed
        role = GameWorker(cfg, r, keys, identity, seed=seed, clock=clock, metrics=metrics)
    elif kind == "training":
        from bgai.roles.training_worker import TrainingWorker

        role = TrainingWorker(cfg, r, keys, identity, metrics, tracking)
    else:
        from bgai.roles.eval_worker import EvalWorker

        role = EvalWorker(cfg, r, keys, identity, metrics, tracking)
    logging.getLogger("bgai").info(
        "%s %s on %s (%s) -> redis %s:%d prefix %s",
        kind,
        identity.worker_id,
        identity.device_type,
        identity.device_name,
        cfg.redis.host,
        cfg.redis.port,
        cfg.redis.prefix,
    )
    sys.exit(RoleRunner(role, identity.worker_id, cfg, r, keys, clock, metrics).run())


def _role_command(name: str, kind: str, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @config_option
    @set_option
    @worker_id_option
    @metrics_port_option
    @metrics_port_offset_option
    @metrics_addr_option
    @metrics_pushed_option
    def command(
        config: str | None,
        sets: tuple[str, ...],
        worker_id: str | None,
        metrics_port: int | None,
        metrics_port_offset: int,
        metrics_addr: str,
        metrics_pushed: bool,
    ) -> None:
        if metrics_port is not None:
            try:
                metrics_port = ports.metrics_port(metrics_port, metrics_port_offset)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--metrics-port-offset") from None
        _serve(kind, config, sets, worker_id, metrics_port, metrics_addr, metrics_pushed)

    return command


ROLE_COMMANDS = [
    _role_command(
        "coordinator", "coordinator", "Run lifecycle, reaping of dead workers, Prometheus targets."
    ),
    _role_command("game-worker", "game", "Batched self-play with the newest weights; pushes whole episodes."),
    _role_command("training-worker", "training", "Train from the Redis buffer; publish weights; checkpoint."),
    _role_command("eval-worker", "eval", "Evaluate model versions against fixed opponents."),
]


@click.command("check-config")
@config_option
@set_option
def check_config(config: str | None, sets: tuple[str, ...]) -> None:
    """Validate the config (file, BGAI_* env, --set) and print its fingerprints; exit 2 if bad."""
    from bgai.config import config_hash, model_hash

    cfg = load_or_exit(config, sets)
    click.echo(f"config ok: config hash {config_hash(cfg)}, model hash {model_hash(cfg)}")


@click.command("status")
@config_option
@set_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of tables.")
@click.option(
    "--watch",
    "every_s",
    type=click.FloatRange(min=0.1),
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Redraw every SECONDS (2 if not given) until Ctrl-C.",
)
@click.option("--count", type=click.IntRange(min=1), default=None, hidden=True, help="--watch: stop after N.")
def status(
    config: str | None, sets: tuple[str, ...], as_json: bool, every_s: float | None, count: int | None
) -> None:
    """Run, model version, buffer, live workers and the latest eval results."""
    from bgai.store.client import connect, keys_for

    cfg = load_or_exit(config, sets)
    r, keys = connect(cfg.redis), keys_for(cfg.redis)
    try:
        if every_s is None:
            click.echo(_status_text(cfg, r, keys, as_json))
        else:
            _watch(lambda: _status_text(cfg, r, keys, as_json), every_s, count, header=not as_json)
    finally:
        r.close()


def _watch(draw: Callable[[], str], every_s: float, count: int | None, header: bool) -> None:
    """`draw()` every `every_s` seconds, `count` times (None: until Ctrl-C, which exits 0). A
    terminal is cleared before each; piped output gets the blocks one after another. While Redis
    is away or refuses, its one-line error takes the block's place and the watch goes on."""
    shown = 0
    try:
        while count is None or shown < count:
            if shown:
                time.sleep(every_s)
            try:
                text = draw()
            except OperatorError as exc:
                text = f"Error: {exc.format_message()}"
            click.clear()  # (only when stdout is a terminal)
            if header:
                click.echo(f"bgai status every {every_s:g} s, {time.strftime('%H:%M:%S')} (Ctrl-C stops)")
            click.echo(text)
            shown += 1
    except KeyboardInterrupt:
        pass


def _status_text(cfg: Config, r: Redis, keys: Keys, as_json: bool) -> str:
    """The status as text (tables, or one JSON object); OperatorError when Redis is away or refuses."""
    from bgai.store import evals, registry, runstate, weights
    from bgai.store.replay import ReplayStore

    with redis_errors(cfg):
        run_id, run_status = runstate.get_run(r, keys)
        version = weights.current_version(r, keys)
        buffer = ReplayStore(r, keys, cfg.buffer.capacity_positions).stats()
        workers = registry.live_workers(r, keys)
        ages = registry.heartbeat_ages(r, keys, sorted(workers), cfg.head.heartbeat_ttl_s)
        results = evals.results(r, keys, limit=5)
        champion = evals.champion(r, keys)
    if as_json:
        return json.dumps(
            {
                "run_id": run_id,
                "status": run_status,
                "model_version": version,
                "buffer": buffer,
                "workers": workers,
                "eval": {str(k): v for k, v in results.items()},
                "champion": champion,
                "bgai_versions": _versions(workers),
            },
            sort_keys=True,
        )
    shown = "-" if version is None else version
    out = [f"run {run_id or '-'}  status {run_status or '-'}  model version {shown}"]
    capacity = buffer.get("capacity", cfg.buffer.capacity_positions)
    out.append(
        f"buffer {buffer.get('size', 0)} positions in {buffer.get('episodes', 0)} games "
        f"(capacity {capacity}, pushed {buffer.get('pushed_positions', 0)})"
    )
    out.append(
        f"{'worker':36s} {'type':11s} {'device':8s} {'status':10s} {'games':>7s} {'version':>7s} {'age':>5s}"
    )
    for worker_id, rec in sorted(workers.items()):
        out.append(
            f"{worker_id:36s} {rec.get('type', ''):11s} {rec.get('device_type', ''):8s} "
            f"{rec.get('status', ''):10s} "
            f"{rec.get('games_generated', 0):7d} {str(rec.get('model_version')):>7s} "
            f"{_age(ages.get(worker_id))}"
        )
    versions = _versions(workers)
    if len(versions) > 1:
        mixed = "; ".join(f"{v} on {', '.join(hosts)}" for v, hosts in sorted(versions.items()))
        out.append(f"warning: the fleet runs {len(versions)} bgai versions: {mixed}")
    out.append(_champion(champion))
    for v, table in results.items():
        for opp, s in sorted(table.items()):
            if opp == evals.ER:
                out.append(f"eval version {v} error rate: {format_er(s)}")
            else:
                out.append(f"eval version {v} vs {opp}: {format_eval(s)}")
    return "\n".join(out)


def _versions(workers: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """{bgai version: the hosts running it} of the live workers (those that say)."""
    out: dict[str, set[str]] = {}
    for rec in workers.values():
        if rec.get("bgai_version"):
            out.setdefault(str(rec["bgai_version"]), set()).add(str(rec.get("hostname", "?")))
    return {v: sorted(hosts) for v, hosts in out.items()}


def _champion(champion: dict[str, Any] | None) -> str:
    """The run's champion (its best evaluated version, MLflow's `champion` alias)."""
    if champion is None:
        return "champion: none yet"
    metric, value = champion["metric"], float(champion["value"])
    shown = f"ER {-value:.1f}" if metric == "er" else f"{metric} {value:.1%}"
    return f"champion: version {champion['version']} ({shown})"


def _age(seconds: float | None) -> str:
    """Seconds since a worker's last heartbeat, by Redis's clock."""
    return "    -" if seconds is None else f"{seconds:4.0f}s"


def format_er(s: dict[str, int]) -> str:
    """A version's decision-set totals: ER overall and per class (lower is better)."""
    from bgai.bench.strength import er_of_sums

    er = er_of_sums(s)
    if not er:
        return "-"
    classes = ", ".join(f"{k[3:]} {v:.1f}" for k, v in er.items() if k.startswith("er_"))
    return f"ER {er['er']:.1f} ({classes}) on {er['decisions']} decisions, best play {100 * er['best']:.1f}%"


def format_eval(s: dict[str, int]) -> str:
    from bgai.core.evaluate import MatchResult

    res = MatchResult.of_sums(s)
    c = res.counts()
    wins = "/".join(str(c[f"win_{k}"]) for k in ("single", "gammon", "backgammon"))
    losses = "/".join(str(c[f"lose_{k}"]) for k in ("single", "gammon", "backgammon"))
    return f"{res.summary()}, won {wins}, lost {losses} (single/gammon/backgammon)"
