"""`bgai`: the command line. Commands only build objects and call them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from bgai.cli.average import average_checkpoints_command, ensemble_checkpoints_command
from bgai.cli.common import config_option, load_for_compute, load_or_exit, set_option
from bgai.cli.cube import build_cubes, cube_bound
from bgai.cli.doctor import doctor
from bgai.cli.eval import eval_command
from bgai.cli.export import export_games
from bgai.cli.fleet import ROLE_COMMANDS, check_config, status
from bgai.cli.fleetbench import bench_fleet
from bgai.cli.join import JOIN_COMMANDS
from bgai.cli.play import gnubg_player
from bgai.cli.strength import bench_strength_command
from bgai.errors import BgaiError
from bgai.store.keys import Keys


@click.group()
@click.version_option(package_name="bgai")
def cli() -> None:
    """bgai: AlphaZero-style backgammon training (JAX self-play)."""


@cli.command("train-local")
@config_option
@set_option
@click.option(
    "--minutes", type=float, default=None, help="Wall-clock training time (default: local.minutes)."
)
@click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where checkpoints go (default: local.checkpoint_dir); an existing run there is resumed.",
)
@click.option("--eval-games", type=int, default=None, help="Games per opponent in the final eval (0: none).")
@click.option(
    "--games",
    type=click.IntRange(min=1),
    default=None,
    help="Also stop once the run has played this many self-play games (resumes included).",
)
def train_local(
    config: str | None,
    sets: tuple[str, ...],
    minutes: float | None,
    checkpoint_dir: str | None,
    eval_games: int | None,
    games: int | None,
) -> None:
    """Train in one process: self-play, train, checkpoint, then eval vs random and pubeval."""
    from bgai.core.train_step import loss_text
    from bgai.train.local import LocalRun, Report

    cfg = load_for_compute(config, sets)
    minutes = cfg.local.minutes if minutes is None else minutes
    eval_games = cfg.local.eval_games if eval_games is None else eval_games
    run = LocalRun(cfg, Path(checkpoint_dir or cfg.local.checkpoint_dir), log=click.echo)
    click.echo(
        f"bgai train-local: {minutes:g} min, mode {cfg.selfplay.mode}, batch {cfg.selfplay.batch_size}, "
        f"net {list(cfg.model.hidden)}; compiling (first batch takes ~1 min)..."
    )
    try:
        run.setup()
    except BgaiError as exc:
        raise click.UsageError(str(exc)) from exc

    def progress(rep: Report, elapsed: float) -> None:
        losses = (
            loss_text(rep.loss, rep.policy_loss, rep.value_loss)
            if rep.train_steps
            else f"filling the buffer ({run.replay.size}/{cfg.training.min_buffer_positions} positions)"
        )
        click.echo(
            f"[{elapsed / 60:5.1f} min] games {run.games:6d}  positions {run.positions:8d}  "
            f"pos/s {rep.positions / max(rep.selfplay_s, 1e-9):6.0f}  step {int(run.state.step):6d}  "
            f"version {run.model_version:4d}  {losses}"
        )
        sys.stdout.flush()

    run.run(minutes, cfg.local.log_every_s, progress, max_games=games)
    click.echo(f"checkpoint: {run.checkpoint()}")
    for opponent in cfg.eval.opponents if eval_games > 0 else ():
        if opponent.startswith("past_"):  # earlier versions: the fleet's eval workers play those
            continue
        t0 = time.perf_counter()
        res = run.evaluate(opponent, eval_games)
        click.echo(f"eval vs {opponent:8s}: {res.summary()}  ({time.perf_counter() - t0:.0f} s)")


@cli.group()
def bench() -> None:
    """Benchmarks: they print figures, the last line is one JSON object."""


@bench.command("selfplay")
@config_option
@set_option
@click.option("--mode", type=click.Choice(["afterstate", "mcts"]), default="afterstate")
@click.option("--batch", type=int, default=64)
@click.option("--sims", type=int, default=None, help="MCTS simulations per move.")
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--baseline/--no-baseline", default=True, help="mcts: also run the pgx + mctx baseline.")
@click.option(
    "--profile",
    is_flag=True,
    help="afterstate: seconds per stage of one chunk, and decisions/s against the network's ceiling.",
)
def bench_selfplay(
    config: str | None,
    sets: tuple[str, ...],
    mode: str,
    batch: int,
    sims: int | None,
    repeats: int,
    baseline: bool,
    profile: bool,
) -> None:
    """Decisions/s and games/s of self-play (median of repeats)."""
    from bgai.bench.selfplay import bench_selfplay as run_bench

    cfg = load_for_compute(config, sets)
    if profile:
        from bgai.bench.profile import profile_selfplay

        if mode != "afterstate":
            raise click.BadParameter("--profile profiles afterstate self-play", param_hint="--mode")
        click.echo(json.dumps(profile_selfplay(cfg, batch, repeats, log=click.echo)))
        return
    result = run_bench(
        cfg, mode=mode, batch=batch, sims=sims, repeats=repeats, baseline=baseline, log=click.echo
    )
    click.echo(json.dumps(result))


@bench.command("compile")
@config_option
@set_option
@click.option("--mode", type=click.Choice(["afterstate", "mcts"]), default="afterstate", show_default=True)
@click.option("--batch", type=int, default=128, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True)
def bench_compile(config: str | None, sets: tuple[str, ...], mode: str, batch: int, repeats: int) -> None:
    """Seconds to a worker's first self-play chunk: compiling vs loading the compilation cache."""
    from bgai.bench.compile import bench_compile as run_bench

    load_or_exit(config, sets)  # refuse a bad config here, not in every child
    args = [*(["--config", config] if config else []), *(x for s in sets for x in ("--set", s))]
    result = run_bench([*args, "--mode", mode, "--batch", str(batch)], repeats, log=click.echo)
    click.echo(json.dumps(result))


@bench.command("train")
@config_option
@set_option
@click.option("--batch", type=int, default=None)
@click.option("--repeats", type=int, default=5)
def bench_train(config: str | None, sets: tuple[str, ...], batch: int | None, repeats: int) -> None:
    """Samples/s of the jitted train step (median of repeats)."""
    from bgai.bench.train import bench_train as run_bench

    cfg = load_for_compute(config, sets)
    result = run_bench(cfg, batch=batch, repeats=repeats, log=click.echo)
    click.echo(json.dumps(result))


@bench.command("targets")
@config_option
@set_option
@click.option("--games", type=click.IntRange(min=1), default=64, show_default=True, help="Games labelled.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
def bench_targets(config: str | None, sets: tuple[str, ...], games: int, repeats: int) -> None:
    """Positions/s of value targets: TD(lambda) against exact 1-ply (medians, side by side)."""
    from bgai.bench.targets import bench_targets as run_bench

    cfg = load_for_compute(config, sets)
    result = run_bench(cfg, games=games, repeats=repeats, log=click.echo)
    click.echo(json.dumps(result))


@bench.command("device")
@config_option
@set_option
@click.option(
    "--sizes",
    type=click.Choice(["auto", "cpu", "gpu"]),
    default="auto",
    show_default=True,
    help="Batch sizes: the GPU's (1024, 4096) where JAX sees one, else small CPU ones.",
)
def bench_device(config: str | None, sets: tuple[str, ...], sizes: str) -> None:
    """What JAX runs on, and self-play, train and target speeds at its sizes (scripts/gpu-check)."""
    from bgai.bench.device import bench_device as run_bench

    cfg = load_for_compute(config, sets)
    result = run_bench(cfg, None if sizes == "auto" else sizes, log=click.echo)
    click.echo(json.dumps(result))


@bench.command("eval")
@config_option
@set_option
@click.option("--games", type=int, default=128, help="Games per opponent and repeat (even).")
@click.option("--pairs", type=int, default=16, help="Game pairs played at once.")
@click.option("--repeats", type=int, default=3)
@click.option(
    "--opponent",
    "opponents",
    multiple=True,
    default=("pubeval", "gnubg_0ply:external", "gnubg_0ply:nn"),
    show_default=True,
    help="NAME or NAME:BACKEND (gnubg: external or nn); repeatable.",
)
@click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True), default=None)
def bench_eval(
    config: str | None,
    sets: tuple[str, ...],
    games: int,
    pairs: int,
    repeats: int,
    opponents: tuple[str, ...],
    checkpoint: str | None,
) -> None:
    """Eval games/min of our greedy player against each opponent, side by side."""
    from bgai.bench.evalspeed import bench_eval as run_bench

    cfg = load_for_compute(config, sets)
    ops = [(o.partition(":")[0], o.partition(":")[2] or cfg.eval.gnubg_backend) for o in opponents]
    path = None if checkpoint is None else Path(checkpoint)
    try:
        result = run_bench(cfg, ops, games, pairs, repeats, path, log=click.echo)
    except BgaiError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(json.dumps(result))


@cli.command("acl")
@config_option
@set_option
@click.option(
    "--secrets", "secrets_file", type=click.Path(dir_okay=False), required=True, help="Secrets file (0600)."
)
@click.option(
    "--acl-file", type=click.Path(dir_okay=False), required=True, help="Redis ACL file to write (0600)."
)
@click.option(
    "--password-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write this host's password of each role alone to DIR/<role> (0600), for redis.password_file.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="A worker host to make game@HOST and eval@HOST users for (repeat; default: this host).",
)
def acl(
    config: str | None,
    sets: tuple[str, ...],
    secrets_file: str,
    acl_file: str,
    password_dir: str | None,
    hosts: tuple[str, ...],
) -> None:
    """Per-role Redis users (game and eval: one per worker host): random secrets (kept if the
    secrets file has them) and the ACL file."""
    from bgai.store.acl import ensure_secrets, host_passwords, local_host, write_password_files

    cfg = load_or_exit(config, sets)
    try:
        names = list(hosts) or [local_host()]
        passwords = ensure_secrets(Path(secrets_file), Path(acl_file), Keys(cfg.redis.prefix), names)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--host") from None
    if password_dir is not None:
        write_password_files(Path(password_dir), host_passwords(passwords, local_host()))
    users = ["coordinator", "training", *(f"{r}@{h}" for h in names for r in ("game", "eval")), "admin"]
    click.echo(f"Redis users {', '.join(users)}: passwords in {secrets_file}, ACL in {acl_file}")


@cli.command("redis-maxmemory")
@config_option
@set_option
def redis_maxmemory(config: str | None, sets: tuple[str, ...]) -> None:
    """Print the `maxmemory` (bytes) for the fleet's Redis: the most this config's buffer and
    weights can hold, plus headroom (bgai.store.budget); use it with `maxmemory-policy noeviction`."""
    from bgai.store.budget import redis_maxmemory as budget

    click.echo(budget(load_or_exit(config, sets)))


for _command in (
    *ROLE_COMMANDS,
    *JOIN_COMMANDS,
    check_config,
    status,
    doctor,
    eval_command,
    export_games,
    average_checkpoints_command,
    ensemble_checkpoints_command,
):
    cli.add_command(_command)


@bench.command("buffer")
@config_option
@set_option
@click.option("--positions", type=int, default=1_000_000, show_default=True, help="Buffer capacity to fill.")
@click.option("--sample", type=int, default=4096, show_default=True, help="Positions per sample.")
@click.option("--pushes", type=int, default=2000, show_default=True, help="Timed pushes at capacity.")
@click.option("--repeats", type=int, default=20, show_default=True, help="Timed samples.")
@click.option("--port", type=int, default=None, help="Use the Redis on this loopback port (flushed!).")
def bench_buffer(
    config: str | None,
    sets: tuple[str, ...],
    positions: int,
    sample: int,
    pushes: int,
    repeats: int,
    port: int | None,
) -> None:
    """The Redis replay buffer: push+evict per episode, sample latency, bytes per position."""
    from bgai.bench.buffer import bench_buffer as run_bench

    cfg = load_or_exit(config, sets)
    result = run_bench(cfg, positions, sample, pushes, repeats, port, log=click.echo)
    click.echo(json.dumps(result))


@bench.command("propagation")
@config_option
@set_option
@click.option("--workers", type=int, default=2, show_default=True, help="Game worker processes.")
@click.option("--repeats", type=int, default=5, show_default=True, help="Publishes timed.")
def bench_propagation(config: str | None, sets: tuple[str, ...], workers: int, repeats: int) -> None:
    """Seconds from a weights publish until every game worker plays the new version."""
    from bgai.bench.propagation import bench_propagation as run_bench

    cfg = load_or_exit(config, sets)
    if sets:
        raise click.UsageError("--set is not passed on to the worker processes: use --config")
    result = run_bench(cfg, config, workers, repeats, log=click.echo)
    click.echo(json.dumps(result))


@bench.command("curve")
@config_option
@set_option
@click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False, exists=True),
    required=True,
    help="A run's checkpoints (train-local's --checkpoint-dir, or the fleet's per-run directory).",
)
@click.option(
    "--games",
    type=click.IntRange(min=2),
    default=1000,
    show_default=True,
    help="Games against --opponent per checkpoint.",
)
@click.option(
    "--points", type=click.IntRange(min=1), default=8, show_default=True, help="Checkpoints measured."
)
@click.option("--decisions", type=click.IntRange(min=1), default=None, help="Use the set's first N only.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="PNG (default: DIR/curve.png).")
@click.option("--mlflow-run", default=None, help="Also log the PNG and the figures to this MLflow run.")
@click.option(
    "--opponent",
    default="pubeval",
    show_default=True,
    help="Whom each checkpoint plays: pubeval, random, or gnubg_0ply / gnubg_1ply / gnubg_2ply.",
)
@click.option("--cube", is_flag=True, help="Also each checkpoint's cube ER on the cube decision set.")
@click.option(
    "--cube-plies", type=click.IntRange(0, 2), default=0, help="--cube: the cube decisions' lookahead."
)
def bench_curve(
    config: str | None,
    sets: tuple[str, ...],
    checkpoint_dir: str,
    games: int,
    points: int,
    decisions: int | None,
    out: str | None,
    mlflow_run: str | None,
    opponent: str,
    cube: bool,
    cube_plies: int,
) -> None:
    """A run's learning curve: ER and win rate against an opponent by minutes and games (PNG)."""
    from bgai.bench.cubes import CubeSet
    from bgai.bench.curve import CubeCurve
    from bgai.bench.curve import bench_curve as run_bench
    from bgai.bench.decisions import DEFAULT_SET, DecisionSet

    cfg = load_for_compute(config, sets)
    if games % 2:
        raise click.UsageError("--games must be even (games come in pairs)")
    if mlflow_run and not cfg.mlflow.tracking_uri:
        raise click.UsageError("--mlflow-run needs mlflow.tracking_uri")
    dset = DecisionSet.load(DEFAULT_SET)
    if decisions is not None:
        dset = dset.head(decisions)
    png = Path(out) if out else Path(checkpoint_dir) / "curve.png"
    try:
        cubes = CubeCurve(CubeSet.load(), cube_plies) if cube else None
        result = run_bench(
            cfg, Path(checkpoint_dir), dset, games, points, png, log=click.echo, opponent=opponent, cube=cubes
        )
    except (BgaiError, FileNotFoundError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    if mlflow_run:
        from bgai.obs.tracking import Tracker, client_env

        client_env(cfg.mlflow)
        tracker = Tracker(cfg.mlflow.tracking_uri, cfg.mlflow.experiment)
        tracker.log_artifact(mlflow_run, png, "curves")
        now = int(time.time() * 1000)
        rows = [
            (key, float(p[key]), int(p["games"]), now)
            for p in result["points"]
            for key in ("er", "win_rate", "cube_er")
            if p[key] is not None
        ]
        tracker.log_rows(mlflow_run, [(f"curve_{k}_by_games", v, s, t) for k, v, s, t in rows])
        click.echo(f"logged {png.name} and {len(rows)} figures to MLflow run {mlflow_run}")
    click.echo(json.dumps(result))


@bench.command("bearoff")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the database here (default: a temporary directory).",
)
@click.option(
    "--gnubg",
    "gnubg_positions",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Random bear-off races to compare with Debian gnubg's 0-ply values (0: none).",
)
def bench_bearoff(directory: str | None, gnubg_positions: int) -> None:
    """Build the exact one-sided bear-off database (timed), write and read it back, and compare
    its race values with gnubg's."""
    from bgai.bench.bearoff import measure
    from bgai.opponents.gnubg import GnubgUnavailable

    try:
        report = measure(Path(directory) if directory else None, gnubg_positions)
    except GnubgUnavailable as exc:
        raise click.UsageError(f"{exc} (--gnubg 0 skips the comparison)") from exc
    for key, value in report.items():
        click.echo(f"{key:>24}  {value}")
    click.echo(json.dumps(report))


bench.add_command(build_cubes)
bench.add_command(cube_bound)
bench.add_command(bench_strength_command)
bench.add_command(bench_fleet)
cli.add_command(gnubg_player)


@bench.command("build-decisions")
@click.option("--contact", type=click.IntRange(min=0), default=2000, show_default=True)
@click.option("--race", type=click.IntRange(min=0), default=600, show_default=True)
@click.option("--bearoff", type=click.IntRange(min=0), default=600, show_default=True)
@click.option("--seed", type=int, default=20261217, show_default=True)
@click.option("--workers", type=click.IntRange(1, 8), default=2, show_default=True, help="gnubg processes.")
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="Where to write (default: the shipped set)."
)
def bench_build_decisions(
    contact: int, race: int, bearoff: int, seed: int, workers: int, out: str | None
) -> None:
    """Build the decision set of `bench strength`: gnubg 0-ply self-play positions, every legal
    play scored by Debian gnubg (2-ply move evaluation). Minutes; needs gnubg and gnubg-nn."""
    from bgai.bench.decisions import DEFAULT_SET
    from bgai.bench.decisions_build import BuildSpec, build_decision_set
    from bgai.opponents.gnubg import GnubgUnavailable

    spec = BuildSpec(contact=contact, race=race, bearoff=bearoff, seed=seed, workers=workers)
    if not any(spec.quotas):
        raise click.UsageError("every class quota is 0: nothing to build")
    try:
        dset, report = build_decision_set(spec, log=click.echo)
    except GnubgUnavailable as exc:
        raise click.UsageError(str(exc)) from exc
    path = Path(out) if out else DEFAULT_SET
    dset.save(path)
    click.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {report['decisions']} decisions, "
        f"{report['plays']} plays, {report['mismatches']} mismatches, {report['total_s']:.0f} s"
    )
    click.echo(json.dumps({**report, "file": str(path)}))


if __name__ == "__main__":  # pragma: no cover
    cli()
