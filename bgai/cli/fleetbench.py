"""`bgai bench fleet`: the one-host fleet's rates beside one process's (`scripts/bench-fleet` runs both)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("fleet")
@click.option(
    "--local",
    "local_dir",
    type=click.Path(file_okay=False, exists=True),
    required=True,
    help="train-local's checkpoint directory.",
)
@click.option(
    "--fleet",
    "fleet_dir",
    type=click.Path(file_okay=False, exists=True),
    required=True,
    help="The fleet's training.checkpoint_dir (its run directories under it).",
)
@click.option(
    "--cpu",
    type=click.Path(dir_okay=False),
    default=None,
    help="Saved Prometheus answers for the roles' CPU seconds (scripts/bench-fleet writes them).",
)
def bench_fleet(local_dir: str, fleet_dir: str, cpu: str | None) -> None:
    """Self-play positions, games and train steps per second of the fleet against train-local,
    from their checkpoints (first to newest), and the fleet's CPU seconds per role."""
    from bgai.bench.fleet import compare, cpu_by_command, cpu_by_role, load_answers, rates, table

    try:
        local, fleet = rates(Path(local_dir)), rates(Path(fleet_dir))
    except (FileNotFoundError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    answers = load_answers(Path(cpu)) if cpu else None
    roles = cpu_by_role(answers) if answers else None
    figures = compare(local, fleet, roles, cpu_by_command(answers) if answers else None)
    for line in table(figures):
        click.echo(line)
    click.echo(json.dumps(figures))
