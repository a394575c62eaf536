"""`bgai average-checkpoints`: a run's last checkpoints averaged into one model (bgai/train/average.py)."""

from __future__ import annotations

from pathlib import Path

import click

from bgai.cli.common import OperatorError
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
