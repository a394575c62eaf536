"""`bgai bench build-cubes` and `bgai bench strength --cube`: the cube decision set and the cube ER."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from bgai.cli.common import config_option, load_for_compute, set_option
from bgai.config import Config


@click.command("build-cubes")
@click.option("--decisions", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--candidates",
    type=click.IntRange(min=3),
    default=6000,
    show_default=True,
    help="Positions analysed at 0 ply.",
)
@click.option("--seed", type=int, default=20261205, show_default=True)
@click.option("--workers", type=click.IntRange(1, 8), default=2, show_default=True, help="gnubg processes.")
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="Where to write (default: the shipped set)."
)
def build_cubes(decisions: int, candidates: int, seed: int, workers: int, out: str | None) -> None:
    """Build the cube decision set of `bench strength --cube`: gnubg self-play positions with a
    centred or owned cube, the close ones analysed by Debian gnubg at 2 ply. Needs gnubg and gnubg-nn."""
    from bgai.bench.cubes import DEFAULT_CUBES
    from bgai.bench.cubes_build import CubeBuildSpec, build_cube_set
    from bgai.opponents.gnubg import GnubgUnavailable

    spec = CubeBuildSpec(decisions=decisions, candidates=candidates, seed=seed, workers=workers)
    try:
        s, report = build_cube_set(spec, log=click.echo)
    except GnubgUnavailable as exc:
        raise click.UsageError(str(exc)) from exc
    path = Path(out) if out else DEFAULT_CUBES
    s.save(path)
    click.echo(
        f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB): {s.size} decisions, {report['seconds']:.0f} s"
    )
    click.echo(json.dumps({**report, "file": str(path)}))


def cube_strength(
    cfg: Config,
    net: Any,
    params: Any,
    label: str,
    plies: int,
    decisions: int | None,
    set_file: str | None,
    against: tuple[str, Config, Any, Any] | None = None,
) -> None:
    """`bench strength --cube`: our cube decisions' ER and gnubg 0-ply's on the cube set; with
    `against` (name, config, net, params), also a second model's and the paired difference."""
    from bgai.agent import movegen_of
    from bgai.bench.cubes import (
        DEFAULT_CUBES,
        CubeSet,
        bench_cube_strength,
        model_decisions,
        paired_cube_difference,
    )

    path = Path(set_file) if set_file else DEFAULT_CUBES
    try:
        s = CubeSet.load(path)
    except (OSError, ValueError, KeyError) as exc:
        raise click.UsageError(f"cannot read the cube decision set {path}: {exc}") from exc
    if decisions is not None:
        s = s.head(decisions)
    double, take = model_decisions(net.apply, params, s, plies, movegen_of(cfg))
    # from 1 ply on, the shallower depths too, and what the lookahead gains on each decision
    shallower = {k: model_decisions(net.apply, params, s, k, movegen_of(cfg)) for k in range(plies)}
    paired = {k: paired_cube_difference(s, (double, take), dt) for k, dt in shallower.items()}
    extra, gap = _against_gnubgs_probabilities(cfg, net, params, s)
    extra = {**{f"{label} {k}-ply": dt for k, dt in shallower.items()}, **extra}
    versus: dict[str, Any] = {}  # with `against`: its name and the paired difference
    if against is not None:
        name, cfg_other, net_other, theirs = against
        extra[f"{name} {plies}-ply"] = dt_other = model_decisions(
            net_other.apply, theirs, s, plies, movegen_of(cfg_other)
        )
        versus = {"against": name, "paired_vs_against": paired_cube_difference(s, (double, take), dt_other)}
    result = bench_cube_strength(s, f"{label} {plies}-ply", double, take, log=click.echo, extra=extra)
    lines = [(f"{plies}-ply minus {k}-ply", p) for k, p in paired.items()]
    lines += [(f"ours minus {versus['against']}", versus["paired_vs_against"])] if versus else []
    for title, p in lines:
        lo, hi = p["diff"] - p["ci"], p["diff"] + p["ci"]
        click.echo(f"  {title}, paired by position: {p['diff']:+.2f} [{lo:+.2f}, {hi:+.2f}]")
    for name, g in gap.items():
        click.echo(
            f"  {name}: our 0-ply P(win) - gnubg 0-ply's: mean |d| {g['win_abs']:.3f}, "
            f"mean {g['win_bias']:+.3f}; P(gammon): {g['gammon_abs']:.3f}, {g['gammon_bias']:+.3f}"
        )
    more = {"paired_vs_shallower": {str(k): p for k, p in paired.items()}} if paired else {}
    click.echo(
        json.dumps({**result, "set": str(path), "plies": plies, "probability_gap": gap, **more, **versus})
    )


def gnubg_probabilities(cfg: Config, boards: Any) -> Any:
    """Debian gnubg 0-ply's cubeless probabilities [N, 5] of `boards` [N, 28] (GnubgUnavailable
    where it does not run)."""
    import numpy as np

    from bgai.opponents.gnubg import GnubgExternal

    with GnubgExternal(binary=cfg.eval.gnubg_path) as gnubg:
        return np.stack([gnubg.evaluate(b.astype(np.int32), 0) for b in boards])


def _against_gnubgs_probabilities(cfg: Config, net: Any, params: Any, s: Any) -> tuple[dict, dict]:
    """Where Debian's gnubg runs: the row of Janowski's model (our code) on gnubg 0-ply's own
    cubeless probabilities, which should score gnubg 0-ply's cube ER (the gap to our row is the
    net's, not the cube logic's), and the gap between our probabilities and gnubg's per class."""
    from bgai.bench.cubes import janowski_decisions, probabilities, probability_gap
    from bgai.opponents.gnubg import GnubgUnavailable

    try:
        theirs = gnubg_probabilities(cfg, s.boards)
    except GnubgUnavailable as exc:
        click.echo(f"(no row on gnubg's probabilities: {exc})")
        return {}, {}
    ours = probabilities(net.apply, params, s.boards)
    rows = {"ours on gnubg 0-ply probs": janowski_decisions(s, theirs)}
    return rows, probability_gap(s, ours, theirs)


@click.command("cube-bound")
@config_option
@set_option
@click.option(
    "--checkpoint",
    "checkpoints",
    type=click.Path(dir_okay=False, exists=True),
    multiple=True,
    required=True,
    help="A checkpoint (repeat it: each one's error and cube ER; the tables use the last).",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=5, show_default=True, help="Noise draws per sigma."
)
@click.option("--decisions", type=click.IntRange(min=1), default=None, help="Use the set's first N only.")
def cube_bound(
    config: str | None, sets: tuple[str, ...], checkpoints: tuple[str, ...], seeds: int, decisions: int | None
) -> None:
    """How small the net's probability error must be for the cube ER target (1.5x gnubg 0-ply's):
    the 0-ply cube ER of gnubg 0-ply's probabilities with a share of our net's error added, and
    with random logit noise, against the contact P(win) error. Needs Debian's gnubg."""
    from bgai.agent import net_of, playing
    from bgai.bench import cube_bound as cb
    from bgai.bench.cubes import CubeSet, cube_error_rate, gnubg_decisions, probabilities
    from bgai.cli.eval import model_params
    from bgai.opponents.gnubg import GnubgUnavailable

    cfg = load_for_compute(config, sets)
    loaded = [model_params(cfg, path, None) for path in checkpoints]  # first: a bad one fails at once
    s = CubeSet.load()
    s = s.head(decisions) if decisions else s
    try:
        reference = gnubg_probabilities(cfg, s.boards)
    except GnubgUnavailable as exc:
        raise click.UsageError(str(exc)) from exc
    anchor = cube_error_rate(s, *gnubg_decisions(s.equities_0ply)).er
    target = 1.5 * anchor
    net = net_of(cfg)
    click.echo(
        f"cube decision set: {s.size} positions; gnubg 0-ply cube ER {anchor:.2f}, target {target:.2f}"
    )
    checkpoint_rows = []
    for label, params in loaded:
        ours = probabilities(net.apply, playing(cfg, params), s.boards)
        checkpoint_rows.append(cb.row(s, label, reference, ours))
    # the tables use the last checkpoint's error (`ours`, `label`: the loop's last; one is required)
    shrink, noise = cb.shrink_rows(s, reference, ours), cb.noise_rows(s, reference, seeds=seeds)
    tables = {
        "checkpoints": checkpoint_rows,
        f"our error shrunk ({label})": shrink,
        "random logit noise": noise,
    }
    for title, rows in tables.items():
        click.echo(f"{title}:\n  {'':24s} {'|dP(win)| contact':>17s} {'cube ER':>8s} {'contact':>8s}")
        for r in rows:
            click.echo(f"  {r.label[:24]:24s} {r.win_abs:17.4f} {r.cube_er:8.2f} {r.cube_er_contact:8.2f}")
    cross = {name: cb.crossing(rows, target) for name, rows in (("shrunk", shrink), ("noise", noise))}
    for name, x in cross.items():
        at = f"{x:.4f}" if x is not None else "outside the rows"
        click.echo(f"  {name}: the cube ER reaches the target at a contact |dP(win)| of {at}")
    click.echo(
        json.dumps(
            {
                "bench": "cube-bound",
                "anchor_gnubg_0ply": anchor,
                "target": target,
                **{
                    k: [asdict(r) for r in v]
                    for k, v in (("checkpoints", checkpoint_rows), ("shrunk", shrink), ("noise", noise))
                },
                "crossing": cross,
            }
        )
    )
