"""`bgai gnubg-player`: the model (a checkpoint, a version of the current run, or a model
registered in MLflow: `--model champion`) as GNU Backgammon's external player, to play against
it or let gnubg analyse it in gnubg's own interface.

It listens on localhost:PORT; in gnubg, `set player 1 external localhost:PORT` connects (gnubg
keeps that one connection for all games) and player 1's moves, and with the cube in use its
double / take / drop answers, come from the model: its moves as `bgai eval` plays them
(`eval.player`, `eval.plies`), its cube decisions from Janowski's cubeful equity on its
probabilities (`--cube-plies`). When gnubg disconnects it listens again, until Ctrl-C.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import click

from bgai.cli.common import config_option, load_for_compute, registered_option, set_option


@click.command("gnubg-player")
@config_option
@set_option
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Checkpoint file.")
@click.option("--version", "version", type=int, default=None, help="Model version N of the current run.")
@registered_option
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="Port on localhost."
)
@click.option(
    "--plies", type=click.IntRange(0, 2), default=None, help="Lookahead of our moves (default: eval.plies)."
)
@click.option(
    "--cube-plies",
    type=click.IntRange(0, 1),
    default=0,
    show_default=True,
    help="Lookahead of our cube decisions.",
)
@click.option("--jacoby", is_flag=True, help="Cube decisions under the Jacoby rule (as gnubg is set).")
@click.option("--once", is_flag=True, help="Serve one gnubg connection, then exit.")
def gnubg_player(
    config: str | None,
    sets: tuple[str, ...],
    checkpoint: str | None,
    version: int | None,
    registered: str | None,
    port: int,
    plies: int | None,
    cube_plies: int,
    jacoby: bool,
    once: bool,
) -> None:
    """Serve the model as GNU Backgammon's external player (`set player 1 external localhost:PORT`)."""
    from dataclasses import replace

    from bgai.cli.eval import from_checkpoint, from_registry, from_version, load_model
    from bgai.opponents.players import ExternalAgent
    from bgai.opponents.referee import ExternalPlayer

    cfg = load_for_compute(config, sets)
    if (checkpoint is not None, version is not None, registered is not None).count(True) != 1:
        raise click.UsageError("give one of --checkpoint PATH, --version N or --model champion")
    if plies is not None:
        cfg = replace(cfg, eval=replace(cfg.eval, plies=plies))
    load: Any
    if checkpoint is not None:
        label, load = Path(checkpoint).name, partial(from_checkpoint, cfg, Path(checkpoint))
    elif registered is not None:
        label, load = registered, partial(from_registry, cfg, registered)
    else:
        assert version is not None
        label, load = f"version {version}", partial(from_version, cfg, version)
    agent = ExternalAgent(cfg, cube_plies=cube_plies, jacoby=jacoby).load(load_model(label, load))
    served = 0
    try:
        while True:
            player = ExternalPlayer(agent.choose, timeout=None, cube=agent.cube, port=port)
            try:
                player.start()
            except OSError as exc:
                raise click.ClickException(f"cannot listen on localhost:{port}: {exc}") from exc
            click.echo(
                f"{label} ({cfg.eval.plies}-ply moves, {cube_plies}-ply cube) listening on localhost:{port}: "
                f"in gnubg, `set player 1 external localhost:{port}`",
            )
            player.wait()
            moves, cubes = len(player.requests), len(player.cube_requests)
            try:
                player.close()
            except Exception as exc:  # gnubg sent something we could not answer: said, then serve again
                click.echo(f"the connection ended on an error: {type(exc).__name__}: {exc}", err=True)
            served += 1
            click.echo(f"gnubg disconnected after {moves} moves and {cubes} cube decisions")
            if once:
                return
    except KeyboardInterrupt:
        click.echo(f"stopped after {served} connection(s)")
