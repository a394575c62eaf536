"""`bgai eval`: a one-off match of a model against an opponent, with a progress bar and a table.

The model comes from a checkpoint file (the fleet's or train-local's) or, with `--version N`,
from the current run: its checkpoints on this host, else the weights Redis still holds for N.
Games come in pairs with the same dice (bgai.core.evaluate); the table has 95% intervals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from bgai.cli.common import config_option, load_for_compute, registered_option, set_option
from bgai.config import Config, model_hash
from bgai.errors import BgaiError

if TYPE_CHECKING:  # JAX loads only when a command computes: `bgai --help` stays quick
    from bgai.core.evaluate import MatchResult


@click.command("eval")
@config_option
@set_option
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Checkpoint file (repeatable: one row each).",
)
@click.option("--version", "version", type=int, default=None, help="Model version N of the current run.")
@registered_option
@click.option(
    "--opponent",
    default="pubeval",
    help="random, pubeval or gnubg (or an eval.opponents name: gnubg_1ply); with --cube also self.",
)
@click.option("--plies", type=click.IntRange(0, 2), default=0, help="gnubg's depth (--opponent gnubg).")
@click.option(
    "--backend",
    type=click.Choice(["external", "nn"]),
    default=None,
    help="gnubg: Debian's binary (external) or gnubg-nn (default: eval.gnubg_backend).",
)
@click.option("--games", type=int, default=None, help="Games, even: in pairs (default: eval.games).")
@click.option(
    "--player",
    type=click.Choice(["greedy", "search"]),
    default=None,
    help="How our model plays (default: eval.player).",
)
@click.option(
    "--player-plies",
    type=click.IntRange(0, 2),
    default=None,
    help="Our greedy player's lookahead: 0, 1 or 2 (default: eval.plies).",
)
@click.option("--simulations", type=int, default=None, help="Search simulations per move (--player search).")
@click.option("--seed", type=int, default=0)
@click.option(
    "--cube",
    is_flag=True,
    help="Cubeful money games: against gnubg through its external player (Debian's binary; its "
    "dice seeded per game), else in the compiled loop with paired dice (pubeval, random, self).",
)
@click.option(
    "--cube-plies", type=click.IntRange(0, 2), default=0, help="--cube: our cube decisions' lookahead."
)
@click.option("--jacoby", is_flag=True, help="--cube: the Jacoby rule.")
@click.option(
    "--cube-policy",
    type=click.Choice(["model", "naive", "both"]),
    default="model",
    help="--cube: our cube decisions from the model, or naive (never double, always take); both: "
    "against gnubg, a session of each on the same dice and their difference paired by game.",
)
@click.option(
    "--opponent-cube",
    type=click.Choice(["model", "naive"]),
    default="naive",
    help="--cube --opponent self: the opponent's cube policy (pubeval and random are naive).",
)
def eval_command(
    config: str | None,
    sets: tuple[str, ...],
    checkpoints: tuple[str, ...],
    version: int | None,
    registered: str | None,
    opponent: str,
    plies: int,
    backend: str | None,
    games: int | None,
    player: str | None,
    player_plies: int | None,
    simulations: int | None,
    seed: int,
    cube: bool,
    cube_plies: int,
    jacoby: bool,
    cube_policy: str,
    opponent_cube: str,
) -> None:
    """Play a model against an opponent; a table with win rate, points per game and 95% CIs.
    With --cube, cubeful money games against gnubg and both sides' cube actions."""
    from bgai.opponent_names import parse_opponent

    cfg = load_for_compute(config, sets)
    if (bool(checkpoints), version is not None, registered is not None).count(True) != 1:
        raise click.UsageError("give one of --checkpoint PATH (repeatable), --version N or --model champion")
    name = f"gnubg_{plies}ply" if opponent == "gnubg" else opponent
    if cube and opponent == "self":
        name = "pubeval"  # a stand-in: the opponent is our model (below)
    elif opponent == "self":
        raise click.BadParameter("self plays only with --cube", param_hint="--opponent")
    try:
        op = parse_opponent(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--opponent") from exc
    if op.kind == "past":
        raise click.BadParameter("past_K needs the fleet (eval workers)", param_hint="--opponent")
    if op.cube:  # gnubg_Nply_cube: --opponent gnubg --plies N --cube
        cube, plies = True, op.plies
    games = cfg.eval.games if games is None else games
    if games < 2 or games % 2:
        raise click.BadParameter(f"must be an even number >= 2, got {games}", param_hint="--games")
    ev = replace(
        cfg.eval,
        player=player or cfg.eval.player,
        plies=cfg.eval.plies if player_plies is None else player_plies,
        gnubg_backend=backend or cfg.eval.gnubg_backend,
    )
    search = cfg.search if simulations is None else replace(cfg.search, num_simulations=simulations)
    cfg = replace(cfg, eval=ev, search=search)
    depth = f" {cfg.eval.plies}-ply" if cfg.eval.player == "greedy" and cfg.eval.plies > 0 else ""
    models: list[tuple[str, Callable[[], Any]]] = [
        (Path(p).name + depth, partial(from_checkpoint, cfg, Path(p))) for p in checkpoints
    ]
    if version is not None:
        models = [(f"version {version}{depth}", partial(from_version, cfg, version))]
    if registered is not None:
        models = [(f"{registered}{depth}", partial(from_registry, cfg, registered))]
    if cube:
        naive = cube_policy == "naive"
        if op.kind == "gnubg":
            policies = (False, True) if cube_policy == "both" else (naive,)
            _eval_cubeful(cfg, models, games, plies, cube_plies, seed, jacoby, policies)
        elif cube_policy == "both":
            raise click.BadParameter("both plays against gnubg only", param_hint="--cube-policy")
        else:
            theirs = "self" if opponent == "self" else op.kind
            _eval_cubeful_in_graph(
                cfg, models, theirs, opponent_cube == "naive", games, cube_plies, seed, jacoby, naive
            )
        return
    rows = []
    with Evaluator(cfg, op) as ev_:
        for label, load in models:
            params = load_model(label, load)
            t0 = time.perf_counter()
            with click.progressbar(length=games, label=f"{label} vs {name}", show_eta=True) as bar:
                res = ev_.play(params, games, seed, bar.update)
            rows.append((label, res, time.perf_counter() - t0))
    click.echo(table(name, rows))


class Evaluator:
    """Our model (eval.player) against one opponent; an engine opponent lives while it is open."""

    def __init__(self, cfg: Config, op: Any) -> None:
        self.cfg, self.op = cfg, op

    def __enter__(self) -> Evaluator:
        import jax

        from bgai.agent import eval_decider, movegen_of, net_of
        from bgai.core.evaluate import paired_match
        from bgai.core.network import init_params
        from bgai.opponents.players import build_opponent

        cfg = self.cfg
        self.net = net_of(cfg)
        self.template = init_params(self.net, jax.random.key(0))
        ours = eval_decider(cfg, self.net)
        self.built = build_opponent(self.op, cfg.eval, ours)
        self.match = paired_match(ours, self.built.decide, 16, cfg.selfplay.max_turns, movegen_of(cfg))
        return self

    def __exit__(self, *exc: object) -> None:
        self.built.close()

    def play(self, params: Any, games: int, seed: int, progress: Any) -> MatchResult:
        import jax

        from bgai.agent import playing
        from bgai.core.evaluate import MatchResult, run_pairs

        key, ours = jax.random.key(seed), playing(self.cfg, params)
        pts = run_pairs(self.match, (ours, None), key, games, progress, max_rounds=10 * games)
        return MatchResult.of_points(pts)


def load_model(label: str, load: Callable[[], Any]) -> Any:
    """A model's params; an operator's error (a missing or foreign file) is one line."""
    try:
        return load()
    except (BgaiError, OSError) as exc:
        raise click.UsageError(f"cannot use {label}: {exc}") from exc


def _eval_cubeful(
    cfg: Config,
    models: list[tuple[str, Callable[[], Any]]],
    games: int,
    plies: int,
    cube_plies: int,
    seed: int,
    jacoby: bool,
    policies: tuple[bool, ...],
) -> None:
    """A cubeful session against gnubg per model and cube policy (naive or not), all on the
    dice of `seed`; with both policies, their difference paired by game."""
    from bgai.opponents.cubeful import paired_by_game, play_cubeful
    from bgai.opponents.players import ExternalAgent

    agent = ExternalAgent(cfg, cube_plies, jacoby)
    for label, load in models:
        agent.load(load_model(label, load))
        sessions = []
        for naive in policies:
            agent.naive_cube = naive
            t0 = time.perf_counter()
            s = play_cubeful(
                agent,
                games,
                opponent_plies=plies,
                seed=seed,
                jacoby=jacoby,
                binary=cfg.eval.gnubg_path,
            )
            _cube_report(f"{label} ({_policy(naive, cube_plies)})", f"gnubg {plies}-ply", s, jacoby, t0)
            assert s.referee is not None
            if s.referee.mismatches:
                raise click.ClickException(
                    f"gnubg did not play {len(s.referee.mismatches)} of our moves as sent"
                )
            click.echo(f"  refereed: {s.referee.checked} of our moves, all played as sent")
            sessions.append(s)
        if len(sessions) == 2:
            d = paired_by_game(*sessions)
            lo, hi = d.ppg_ci()
            click.echo(
                f"{label}: {_policy(False, cube_plies)} minus naive cube, paired by game (the same dice): "
                f"{d.ppg:+.3f} [{lo:+.3f}, {hi:+.3f}] ppg over {d.games} games"
            )


def _policy(naive: bool, plies: int) -> str:
    return "naive cube" if naive else f"{plies}-ply cube"


def _cube_report(ours: str, theirs: str, s: Any, jacoby: bool, t0: float) -> None:
    r, (lo, hi) = s.result, s.result.ppg_ci()
    rules = "Jacoby" if jacoby else "no Jacoby"
    click.echo(
        f"{ours} vs {theirs}, cubeful money ({rules}, no beavers): {r.games} games, "
        f"ppg {r.ppg:+.3f} [{lo:+.3f}, {hi:+.3f}], won {r.win_rate:.1%}, {time.perf_counter() - t0:.0f} s"
    )
    for who, a in (("ours", s.ours), ("theirs", s.theirs)):
        click.echo(f"  {who:8s} doubles {a.doubles}, takes {a.takes}, drops {a.drops}")
    click.echo(f"  largest cube taken: {s.max_cube}")


def _eval_cubeful_in_graph(
    cfg: Config,
    models: list[tuple[str, Callable[[], Any]]],
    theirs: str,
    their_naive: bool,
    games: int,
    cube_plies: int,
    seed: int,
    jacoby: bool,
    naive: bool,
) -> None:
    """Cubeful games in the compiled loop, paired dice: against pubeval or random (naive cube)
    or our own model (`self`, its cube policy model or naive)."""
    import jax

    from bgai.agent import eval_decider, net_of, playing
    from bgai.core.players import pubeval_decider, random_decider
    from bgai.opponents.cubeful import cube_policy, cubeful_match, run_cubeful

    if theirs == "self":
        decide, their_cube = eval_decider(cfg, net_of(cfg)), cube_policy(cfg, their_naive, cube_plies, jacoby)
        who = f"self ({_policy(their_naive, cube_plies)})"
    else:
        decide = pubeval_decider() if theirs == "pubeval" else random_decider()
        their_cube, who = cube_policy(cfg, naive=True), f"{theirs} (naive cube)"
    match = cubeful_match(cfg, decide, their_cube, min(16, games // 2), naive, cube_plies, jacoby)
    for label, load in models:
        ours = playing(cfg, load_model(label, load))
        t0 = time.perf_counter()
        with click.progressbar(length=games, label=f"{label} vs {who}", show_eta=True) as bar:
            s = run_cubeful(
                match, (ours, ours if theirs == "self" else None), jax.random.key(seed), games, bar.update
            )
        _cube_report(f"{label} ({_policy(naive, cube_plies)})", who + ", paired dice", s, jacoby, t0)


def _template(cfg: Config) -> Any:
    from bgai.agent import params_template

    return params_template(cfg)


def from_checkpoint(cfg: Config, path: Path) -> Any:
    from bgai.train.checkpoint import load_params

    return load_params(path, _template(cfg), model_hash(cfg))[0]


def model_params(cfg: Config, checkpoint: str | None, version: int | None) -> tuple[str, Any]:
    """(label, params) of a checkpoint, a version of the current run, or an untrained net; one that
    cannot be read is refused as a usage error (one line, exit 2)."""
    import jax

    from bgai.agent import net_of
    from bgai.core.network import init_params

    try:
        if checkpoint is not None:
            return Path(checkpoint).name, from_checkpoint(cfg, Path(checkpoint))
        if version is not None:
            return f"version {version}", from_version(cfg, version)
    except (BgaiError, OSError) as exc:
        raise click.UsageError(f"cannot use {checkpoint or f'version {version}'}: {exc}") from exc
    return "untrained (seed 0)", init_params(net_of(cfg), jax.random.key(0))


def registered_model(cfg: Config, spec: str) -> tuple[str, str]:
    """(model name, version number or alias) of `champion` or `models:/NAME@ALIAS|NAME/N`."""
    if spec == "champion":
        return cfg.mlflow.model_name, "champion"
    body = spec.removeprefix("models:/")
    name, at, alias = body.partition("@")
    if body != spec and at and name and alias:
        return name, alias
    name, slash, number = body.rpartition("/")
    if body != spec and slash and name and number.isdigit():
        return name, number
    raise BgaiError(f"{spec!r} is not champion, models:/NAME@ALIAS or models:/NAME/N")


def from_registry(cfg: Config, spec: str) -> Any:
    """A registered model's weights, downloaded from MLflow (`mlflow.tracking_uri`)."""
    import tempfile

    from mlflow.exceptions import MlflowException

    from bgai.obs.tracking import Tracker, client_env
    from bgai.roles.champion import WEIGHTS
    from bgai.store.codec import decode_weights

    if not cfg.mlflow.tracking_uri:
        raise BgaiError("--model needs MLflow: set mlflow.tracking_uri")
    name, which = registered_model(cfg, spec)
    client_env(cfg.mlflow)
    tracker = Tracker(cfg.mlflow.tracking_uri, cfg.mlflow.experiment)
    try:
        run_id, folder, tags = tracker.registered(name, which)
        with tempfile.TemporaryDirectory() as tmp:
            blob = tracker.download(run_id, f"{folder}/{WEIGHTS}", Path(tmp)).read_bytes()
    except MlflowException as exc:
        raise BgaiError(f"model {name} {which} in MLflow: {str(exc).splitlines()[0][:200]}") from None
    if tags.get("model_hash") not in (None, model_hash(cfg)):
        raise BgaiError(
            f"model {name} {which} has another model shape than this config (model hash "
            f"{tags.get('model_hash')}, here {model_hash(cfg)}): use its config, {folder}/config.yaml "
            f"of run {run_id}"
        )
    return decode_weights(blob, _template(cfg), model_hash(cfg))[0]


def from_version(cfg: Config, version: int) -> Any:
    """Version N of the current run: a checkpoint on this host, else the weights Redis holds."""
    from bgai.runs.manager import checkpoint_dir
    from bgai.store import evals, runstate, weights
    from bgai.store.client import connect
    from bgai.store.codec import decode_weights
    from bgai.store.keys import Keys
    from bgai.train.checkpoint import list_checkpoints, load_params, read_meta

    r, keys = connect(cfg.redis), Keys(cfg.redis.prefix)
    run_id, _ = runstate.get_run(r, keys)
    seen = []
    if run_id is not None:
        for path in list_checkpoints(checkpoint_dir(cfg, run_id)):
            v = read_meta(path).get("model_version")
            seen.append(v)
            if v == version:
                return load_params(path, _template(cfg), model_hash(cfg))[0]
    blob: bytes | None = None
    if weights.current_version(r, keys) == version:
        blob = cast(bytes | None, r.get(keys.model_weights))
    elif (past := evals.past_weights(r, keys, version)) is not None and past[0] == version:
        blob = past[1]
    if blob is None:
        raise BgaiError(
            f"version {version} of run {run_id} is neither in a checkpoint here (versions {seen}) "
            f"nor in Redis (current {weights.current_version(r, keys)})"
        )
    return decode_weights(blob, _template(cfg), model_hash(cfg))[0]


def table(opponent: str, rows: list[tuple[str, MatchResult, float]]) -> str:
    head = (
        f"{'model':28s} {'games':>6s} {'win %':>6s} {'95% CI':>15s} {'ppg':>7s} {'95% CI':>17s}"
        f" {'W1':>4s} {'W2':>4s} {'W3':>4s} {'L1':>4s} {'L2':>4s} {'L3':>4s} {'games/min':>9s}"
    )
    lines = [f"vs {opponent}", head]
    for label, res, secs in rows:
        lo, hi = res.win_rate_ci()
        plo, phi = res.ppg_ci()
        c = list(res.counts().values())
        lines.append(
            f"{label[:28]:28s} {res.games:6d} {res.win_rate:6.1%} [{lo:5.1%}, {hi:5.1%}] {res.ppg:+7.3f}"
            f" [{plo:+6.3f}, {phi:+6.3f}] "
            + " ".join(f"{x:4d}" for x in c)
            + f" {res.games / secs * 60:9.0f}"
        )
    return "\n".join(lines)
