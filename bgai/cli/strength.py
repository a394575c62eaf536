"""`bgai bench strength`: the ER of a player on the decision set, the anchors', and with
`--against` the paired difference of two checkpoints on the same decisions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bgai.cli.common import config_option, load_for_compute, set_option


@click.command("strength")
@config_option
@set_option
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="A checkpoint file.")
@click.option("--version", type=int, default=None, help="Model version N of the current run.")
@click.option(
    "--plies",
    type=click.IntRange(0, 3),
    default=0,
    show_default=True,
    help="Our player's lookahead, 0 to 2 (1, 2: eval.one_ply_candidates and eval.finalists filter"
    " the plays); with --cube, the cube decisions', 0 to 3 (3: ~21x 2-ply's time).",
)
@click.option("--decisions", type=click.IntRange(min=1), default=None, help="Use the set's first N only.")
@click.option(
    "--set-file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Decision set (default: the one bgai ships, bgai/bench/data/decisions.npz or cubes.npz).",
)
@click.option("--cube", is_flag=True, help="Cube decisions: the cube ER on the cube decision set.")
@click.option(
    "--against",
    type=click.Path(dir_okay=False),
    default=None,
    help="A second checkpoint: also the paired ER difference (ours minus its) on the same decisions"
    " (with --cube, of the cube decisions at the same --plies).",
)
@click.option(
    "--against-set",
    "against_sets",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="A config override for the --against checkpoint only, after --set's (repeatable): e.g."
    " model.ensemble=1 to pair an ensemble (--set model.ensemble=2) with one of its members.",
)
def bench_strength_command(
    config: str | None,
    sets: tuple[str, ...],
    checkpoint: str | None,
    version: int | None,
    plies: int,
    decisions: int | None,
    set_file: str | None,
    cube: bool,
    against: str | None,
    against_sets: tuple[str, ...],
) -> None:
    """Error rate on the decision set (equity lost per decision x1000, against gnubg 2-ply):
    our greedy player (a checkpoint, --version N, or an untrained net) and the anchors. With
    --against: the paired difference to a second checkpoint, with its 95% interval. With
    --cube: the cube ER of our cube decisions (--plies 0 to 3) against gnubg's 2-ply analysis."""
    from bgai.agent import net_of, playing
    from bgai.bench.decisions import DEFAULT_SET, DecisionSet
    from bgai.bench.strength import bench_strength, lookahead_scorer, network_scorer
    from bgai.cli.eval import model_params

    cfg = load_for_compute(config, sets)
    if checkpoint is not None and version is not None:
        raise click.UsageError("give --checkpoint PATH or --version N, not both")
    if against_sets and against is None:
        raise click.UsageError("--against-set needs --against")
    if plies > 2 and not cube:
        raise click.UsageError("checker play looks ahead 0, 1 or 2 plies (3 only with --cube)")
    path = Path(set_file) if set_file else DEFAULT_SET
    try:
        dset = None if cube else DecisionSet.load(path)
    except (OSError, ValueError, KeyError) as exc:
        raise click.UsageError(f"cannot read the decision set {path}: {exc}") from exc
    if dset is not None and decisions is not None:
        dset = dset.head(decisions)
    net = net_of(cfg)
    label, params = model_params(cfg, checkpoint, version)
    params = playing(cfg, params)
    other_model = None
    if against is not None:  # its own config where --against-set changes the model (an ensemble's member)
        cfg_other = load_for_compute(config, sets + against_sets) if against_sets else cfg
        name, theirs = model_params(cfg_other, against, None)
        if name == label:  # two runs' checkpoints of the same step: tell them apart by the path
            label, name = str(checkpoint), str(against)
        other_model = (name, cfg_other, net_of(cfg_other), playing(cfg_other, theirs))
    if cube:
        from bgai.cli.cube import cube_strength

        cube_strength(cfg, net, params, label, plies, decisions, set_file, against=other_model)
        return
    assert dset is not None

    def scorer_of(c: Any, n: Any, p: Any) -> Any:
        if plies == 0:
            return network_scorer(n.apply, p)
        from bgai.agent import movegen_of

        e = c.eval
        return lookahead_scorer(n.apply, p, movegen_of(c), plies, e.one_ply_candidates, e.finalists)

    suffix = f" {plies}-ply" if plies else ""
    other = None
    if other_model is not None:
        name, cfg_other, net_other, theirs = other_model
        other = (name + suffix, scorer_of(cfg_other, net_other, theirs))
    player = (label + suffix, scorer_of(cfg, net, params))
    result = bench_strength(dset, player, str(path), log=click.echo, plies=plies, against=other)
    click.echo(json.dumps(result))
