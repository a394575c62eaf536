"""`bgai bench curve`: a run's learning curve from its checkpoints.

For each of up to `points` checkpoints (evenly spaced, the newest always in), read its games
played and training minutes from its header, then measure our greedy 0-ply player: its error
rate on the decision set (`bench strength`) and a paired-dice match against an opponent
(pubeval, or any `eval.opponents` name but past_K: gnubg_0ply, ...); with a cube decision set,
also its cube ER at a lookahead of 0, 1 or 2 plies (`bench strength --cube`). Prints a table,
draws ER (and cube ER) and win rate against minutes and against games into one PNG (pubeval's
and gnubg 0-ply's ER as lines for scale) and, given an MLflow run, logs the PNG and the figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax

from bgai.agent import eval_decider, movegen_of, net_of, params_template, playing
from bgai.bench.cubes import CubeSet, cube_error_rate, gnubg_decisions, model_decisions
from bgai.bench.decisions import DecisionSet
from bgai.bench.strength import ANCHORS, evaluate_er, network_scorer
from bgai.config import Config, model_hash
from bgai.core.evaluate import play_match
from bgai.core.selfplay import Decide
from bgai.opponent_names import parse_opponent
from bgai.opponents.players import build_opponent
from bgai.train.checkpoint import list_checkpoints, load_params, read_meta


@dataclass(frozen=True)
class CurvePoint:
    checkpoint: str
    step: int
    games: int
    minutes: float
    er: float
    er_contact: float | None
    er_race: float | None
    win_rate: float
    win_lo: float
    win_hi: float
    ppg: float
    ppg_lo: float
    ppg_hi: float
    cube_er: float | None = None  # on the cube decision set, when one is given
    cube_er_contact: float | None = None


@dataclass(frozen=True)
class CubeCurve:
    """The cube decisions a curve scores at each checkpoint: `cubes` at `plies` lookahead."""

    cubes: CubeSet
    plies: int = 0


def pick(paths: Sequence[Path], points: int) -> list[Path]:
    """Up to `points` of `paths` (oldest first), evenly spaced, always with the newest."""
    if len(paths) <= points:
        return list(paths)
    idx = {round(i * (len(paths) - 1) / max(points - 1, 1)) for i in range(points)}
    return [paths[i] for i in sorted(idx)]


def measure(
    cfg: Config,
    path: Path,
    dset: DecisionSet,
    games: int,
    opponent: Decide,
    seed: int = 0,
    cube: CubeCurve | None = None,
) -> CurvePoint:
    """ER and the match against `opponent` of the checkpoint at `path`, and its cube ER."""
    net = net_of(cfg)
    params = playing(cfg, load_params(path, params_template(cfg), model_hash(cfg))[0])
    meta = read_meta(path)
    er = evaluate_er(dset, network_scorer(net.apply, params))
    res = play_match(
        eval_decider(cfg, net, plies=0),
        params,
        opponent,
        None,
        jax.random.key(seed),
        games,
        batch=min(64, games),
        max_turns=cfg.selfplay.max_turns,
        movegen=movegen_of(cfg),
    )
    (lo, hi), (plo, phi) = res.win_rate_ci(), res.ppg_ci()
    cube_er = None
    if cube is not None:
        decisions = model_decisions(net.apply, params, cube.cubes, cube.plies, movegen_of(cfg))
        cube_er = cube_error_rate(cube.cubes, *decisions)
    return CurvePoint(
        path.name,
        int(meta.get("step", 0)),
        int(meta.get("games", 0)),
        float(meta.get("elapsed_s", 0.0)) / 60.0,
        er.er,
        er.er_contact,
        er.er_race,
        res.win_rate,
        lo,
        hi,
        res.ppg,
        plo,
        phi,
        cube_er.er if cube_er else None,
        cube_er.by_class.get("contact") if cube_er else None,
    )


def plot(
    points: list[CurvePoint],
    anchors: dict[str, float],
    path: Path,
    opponent: str = "pubeval",
    cube_label: str = "cube ER",
) -> Path:
    """ER (and the cube ER where measured) and win rate against `opponent`, by minutes and by
    games, in one PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8), dpi=100)
    axes = fig.subplots(2, 2)
    for col, (x_name, xs) in enumerate(
        (("minutes of training", [p.minutes for p in points]), ("self-play games", [p.games for p in points]))
    ):
        ax_er, ax_win = axes[0][col], axes[1][col]
        ax_er.plot(xs, [p.er for p in points], marker="o", label="ours (0-ply)")
        if any(p.cube_er is not None for p in points):
            ax_er.plot(xs, [p.cube_er for p in points], marker="s", label=cube_label)
        for name, value in anchors.items():
            ax_er.axhline(value, linestyle="--", alpha=0.6, label=name)
        ax_er.set(title=f"Error rate vs {x_name}", xlabel=x_name, ylabel="ER (mequity / decision)")
        ax_win.errorbar(
            xs,
            [p.win_rate for p in points],
            yerr=[[p.win_rate - p.win_lo for p in points], [p.win_hi - p.win_rate for p in points]],
            marker="o",
            capsize=3,
        )
        ax_win.axhline(0.5, linestyle=":", alpha=0.6)
        ax_win.set(
            title=f"Win rate against {opponent} vs {x_name}", xlabel=x_name, ylabel="win rate", ylim=(0, 1)
        )
        for ax in (ax_er, ax_win):
            ax.grid(alpha=0.3)
        ax_er.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def bench_curve(
    cfg: Config,
    checkpoint_dir: Path,
    dset: DecisionSet,
    games: int,
    points: int,
    out: Path,
    log: Callable[[str], None] = print,
    opponent: str = "pubeval",
    cube: CubeCurve | None = None,
) -> dict[str, Any]:
    """The curve of the checkpoints in `checkpoint_dir` against `opponent` (and their cube ER on
    `cube`'s set): table, PNG at `out`, the JSON dict. Raises ValueError for an opponent name
    that is not one."""
    paths = pick(list_checkpoints(checkpoint_dir), points)
    if not paths:
        raise FileNotFoundError(f"no checkpoints in {checkpoint_dir}")
    op = parse_opponent(opponent)
    if op.kind == "past":
        raise ValueError(f"{opponent}: a curve measures each checkpoint against a fixed opponent")
    anchors = {f"{name} ER": evaluate_er(dset, f).er for name, f in ANCHORS.items() if name != "random"}
    log(f"{len(paths)} checkpoints of {checkpoint_dir}; {games} games vs {opponent} each")
    log(f"{dset.size} decisions")
    head = f"{'checkpoint':22s} {'min':>6s} {'games':>8s} {'ER':>7s} {'contact':>8s} {'race':>6s}"
    cube_label = f"cube ER ({cube.plies}-ply)" if cube else ""
    if cube:
        anchors["gnubg 0-ply cube ER"] = cube_error_rate(
            cube.cubes, *gnubg_decisions(cube.cubes.equities_0ply)
        ).er
        n, at = cube.cubes.size, anchors["gnubg 0-ply cube ER"]
        log(f"cube ER on {n} cube decisions at {cube.plies} plies (gnubg 0-ply's: {at:.1f})")
        head += f" {'cube ER':>8s} {'contact':>8s}"
    log(f"{head} win vs {opponent}")
    curve = []
    built = build_opponent(op, cfg.eval, eval_decider(cfg, net_of(cfg), plies=0))
    try:
        for path in paths:
            p = measure(cfg, path, dset, games, built.decide, cube=cube)
            curve.append(p)
            cubes = f" {p.cube_er:8.1f} {p.cube_er_contact or 0:8.1f}" if p.cube_er is not None else ""
            log(
                f"{p.checkpoint:22s} {p.minutes:6.1f} {p.games:8d} {p.er:7.1f} {p.er_contact or 0:8.1f} "
                f"{p.er_race or 0:6.1f}{cubes} {p.win_rate:.1%} [{p.win_lo:.1%}, {p.win_hi:.1%}] "
                f"ppg {p.ppg:+.3f}"
            )
    finally:
        built.close()
    plot(curve, anchors, out, opponent, cube_label)
    log(f"curve: {out}")
    return {
        "bench": "curve",
        "png": str(out),
        "games_per_point": games,
        "opponent": opponent,
        **({"cube_plies": cube.plies, "cube_decisions": cube.cubes.size} if cube else {}),
        "anchors": anchors,
        "points": [asdict(p) for p in curve],
    }
