"""`bgai export-games`: games of a model against an opponent as a MAT file for GNU Backgammon.

The model plays as `bgai eval` plays it (eval.player, --player-plies; cubeless money games in
pairs with the same dice, the sides swapping who opens) and always sits in the left column.
In gnubg, `import mat FILE` reads them (after `set jacoby off`, so that gammons count as they
were played) and `analyse match` analyses them. Self-play games are not exported: a stored
episode keeps neither its rolls (a dance is not recorded) nor its last play.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bgai.cli.common import OperatorError, config_option, load_for_compute, redis_failure, set_option
from bgai.config import Config
from bgai.errors import BgaiError

if TYPE_CHECKING:  # JAX loads only when the command runs
    from bgai.opponent_names import Opponent
    from bgai.opponents.mat import GameRecord


@click.command("export-games")
@config_option
@set_option
@click.option(
    "--checkpoint",
    type=click.Path(),
    default=None,
    help="Checkpoint file, or a directory of them (its newest).",
)
@click.option("--version", "version", type=int, default=None, help="Model version N of the current run.")
@click.option("--opponent", default="pubeval", show_default=True, help="random, pubeval or gnubg.")
@click.option("--plies", type=click.IntRange(0, 2), default=0, help="gnubg's depth (--opponent gnubg).")
@click.option("--games", type=click.IntRange(min=1), default=10, show_default=True, help="Finished games.")
@click.option(
    "--player-plies",
    type=click.IntRange(0, 2),
    default=None,
    help="Our greedy player's lookahead: 0, 1 or 2 (default: eval.plies).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--name", default=None, help="Our player's name in the file (default: bgai-vN).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The MAT file to write.")
def export_games(
    config: str | None,
    sets: tuple[str, ...],
    checkpoint: str | None,
    version: int | None,
    opponent: str,
    plies: int,
    games: int,
    player_plies: int | None,
    seed: int,
    name: str | None,
    out: str,
) -> None:
    """Play a model against an opponent and write the games, every move, as a MAT file that GNU
    Backgammon imports (`import mat FILE`) and analyses (`analyse match`)."""
    from bgai.opponent_names import parse_opponent
    from bgai.opponents.mat import mat_text

    cfg = load_for_compute(config, sets)
    if (checkpoint is None) == (version is None):
        raise click.UsageError("give either --checkpoint PATH or --version N")
    if player_plies is not None:
        cfg = replace(cfg, eval=replace(cfg.eval, plies=player_plies))
    try:
        op = parse_opponent(f"gnubg_{plies}ply" if opponent == "gnubg" else opponent)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--opponent") from exc
    if op.kind not in ("random", "pubeval", "gnubg") or op.cube:
        raise click.BadParameter(f"{op.name}: only random, pubeval or gnubg", param_hint="--opponent")
    if not Path(out).absolute().parent.is_dir():
        raise OperatorError(f"cannot write {out}: no directory {Path(out).absolute().parent}")
    params, ours = _model(cfg, checkpoint, version)
    names = (name or ours, f"gnubg-{op.plies}ply" if op.kind == "gnubg" else op.name)
    recorded = _play(cfg, op, params, games, seed, f"{names[0]} vs {names[1]}")
    path = Path(out)
    try:
        path.write_text(mat_text(recorded, names, f"{names[0]} vs {names[1]}, money, no cube"))
    except OSError as exc:
        raise OperatorError(f"cannot write {path}: {exc}") from exc
    won = sum(g.points > 0 for g in recorded)
    points = sum(g.points for g in recorded)
    click.echo(
        f"wrote {path}: {len(recorded)} games, {names[0]} won {won}, {points:+d} points "
        f"({sum(len(g.turns) for g in recorded)} moves); in gnubg: import mat {path}"
    )


def _model(cfg: Config, checkpoint: str | None, version: int | None) -> tuple[Any, str]:
    """(params, our default name): a checkpoint file or a directory's newest, else version N of
    the current run. A missing or foreign model, or Redis away, is one line and exit 2."""
    from bgai.cli.eval import from_checkpoint, from_version
    from bgai.train.checkpoint import list_checkpoints, read_meta

    label = checkpoint if checkpoint is not None else f"version {version}"
    try:
        if checkpoint is None:
            assert version is not None
            return from_version(cfg, version), f"bgai-v{version}"
        path = Path(checkpoint)
        if path.is_dir():
            found = list_checkpoints(path)
            if not found:
                raise OperatorError(f"cannot use {checkpoint}: no checkpoint (ckpt_*.bgai) in it")
            path = found[-1]
        meta_version = read_meta(path).get("model_version")
        return from_checkpoint(cfg, path), f"bgai-v{meta_version}" if meta_version is not None else path.stem
    except OperatorError:
        raise
    except (BgaiError, OSError) as exc:
        raise OperatorError(f"cannot use {label}: {exc}") from exc
    except Exception as exc:
        failure = redis_failure(exc, cfg)
        if failure is not None:
            raise failure from None
        raise


def _play(cfg: Config, op: Opponent, params: Any, games: int, seed: int, label: str) -> list[GameRecord]:
    from bgai.opponents.record import GameRecorder

    t0 = time.perf_counter()
    try:
        with (
            GameRecorder(cfg, op) as recorder,
            click.progressbar(length=games, label=label, show_eta=True) as bar,
        ):
            recorded = recorder.play(params, games, seed, bar.update)
    except BgaiError as exc:  # gnubg missing (ConfigError from build_opponent)
        raise OperatorError(str(exc)) from exc
    click.echo(f"{games} games in {time.perf_counter() - t0:.0f} s")
    return recorded
