"""`bgai average-checkpoints`: a run's last checkpoints averaged into one model (bgai/train/average.py);
`bgai ensemble-checkpoints`: stacked into one ensemble model (bgai/train/ensemble.py)."""

from __future__ import annotations

from pathlib import Path

import click

from bgai.cli.common import OperatorError, config_option, set_option
from bgai.errors import BgaiError


@click.command("average-checkpoints")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--last", type=click.IntRange(min=2), default=4, show_default=True, help="The newest N checkpoints."
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Directory of the average."
)
def average_checkpoints_command(run_dir: str, last: int, out_dir: str) -> None:
    """Average the params of RUN_DIR's newest checkpoints (train-local's or the fleet's) into a
    checkpoint in --out, which `bgai eval` and `bgai bench strength --checkpoint` read."""
    from bgai.train.average import average_checkpoints
    from bgai.train.checkpoint import list_checkpoints

    paths = list_checkpoints(Path(run_dir))[-last:]
    if len(paths) < last:
        raise OperatorError(f"{run_dir} holds {len(paths)} checkpoint(s), fewer than --last {last}")
    try:
        out = average_checkpoints(paths, Path(out_dir))
    except (BgaiError, ValueError, OSError) as exc:
        raise OperatorError(str(exc)) from exc
    click.echo(f"averaged {', '.join(p.name for p in paths)} -> {out}")


@click.command("ensemble-checkpoints")
@config_option
@set_option
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--members", type=click.IntRange(min=2), default=8, show_default=True, help="Nets in the ensemble."
)
@click.option(
    "--stride",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Take every Nth checkpoint back from the newest.",
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Directory of the ensemble."
)
def ensemble_checkpoints_command(
    config: str | None, sets: tuple[str, ...], run_dir: str, members: int, stride: int, out_dir: str
) -> None:
    """Stack RUN_DIR's newest checkpoints (every --stride-th) into one model that plays the mean
    of their outcome probabilities; `bgai eval` and `bgai bench strength` read it with
    --set model.ensemble=MEMBERS (bgai/train/ensemble.py)."""
    from dataclasses import replace

    from bgai.cli.common import load_or_exit
    from bgai.config import model_hash
    from bgai.train.checkpoint import list_checkpoints
    from bgai.train.ensemble import ensemble_checkpoints, pick_members

    cfg = load_or_exit(config, sets)
    if cfg.model.ensemble != 1:
        raise click.UsageError("give the members' config (model.ensemble 1): the ensemble's follows from it")
    single = model_hash(cfg)
    stacked = model_hash(replace(cfg, model=replace(cfg.model, ensemble=members)))
    try:
        paths = pick_members(list_checkpoints(Path(run_dir)), members, stride)
        out = ensemble_checkpoints(paths, Path(out_dir), single, stacked)
    except (BgaiError, ValueError, OSError) as exc:
        raise OperatorError(str(exc)) from exc
    click.echo(f"stacked {', '.join(p.name for p in paths)} -> {out}")
    click.echo(f"read it with --set model.ensemble={members}")
