"""`bgai join TOKEN` (on a new worker host) and `bgai tls init` (the CA and certificates of a
head set up by hand); the tokens are `bgai token`'s (cli/token.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bgai.cli.common import OperatorError
from bgai.cli.token import token

if TYPE_CHECKING:
    from bgai.join.token import JoinToken

TLS_SCRIPT = Path(__file__).resolve().parent.parent / "join" / "tls-certs.sh"


@click.command("join")
@click.argument("token_text", metavar="TOKEN", required=False)
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default="~/bgai",
    show_default=True,
    help="Where the host's files go.",
)
@click.option(
    "--game-workers",
    type=click.IntRange(0, 40),
    default=None,
    help="Game worker processes (default: 1 with the game role).",
)
@click.option(
    "--eval-workers",
    type=click.IntRange(0, 40),
    default=None,
    help="Eval worker processes (default: 1 with the eval role).",
)
@click.option(
    "--foreground",
    is_flag=True,
    help="Run supervisord in the foreground (a container, a notebook): no service.",
)
@click.option("--no-start", is_flag=True, help="Write the files only.")
def join(
    token_text: str | None,
    home: str,
    game_workers: int | None,
    eval_workers: int | None,
    foreground: bool,
    no_start: bool,
) -> None:
    """Join the fleet with a token from `bgai token create` (or $BGAI_JOIN_TOKEN): write this
    host's config, secrets and supervisord, then run its workers and the metrics agent."""
    from bgai.join import host as hostfiles
    from bgai.join import service
    from bgai.join.token import TokenError, decode

    text = token_text or os.environ.get("BGAI_JOIN_TOKEN", "")
    if text == "-":
        text = sys.stdin.read()
    if not text:
        raise click.UsageError("give the join token (an argument, or BGAI_JOIN_TOKEN)")
    try:
        tok = decode(text, time.time())
    except TokenError as exc:
        raise OperatorError(str(exc)) from None
    home_dir = Path(home).expanduser().resolve()
    counts = {
        "game": game_workers if game_workers is not None else int("game" in tok.roles),
        "eval": eval_workers if eval_workers is not None else int("eval" in tok.roles),
    }
    for role, n in counts.items():
        if n and role not in tok.roles:
            raise click.BadParameter(f"the token allows {', '.join(tok.roles)}, not {role}")
    _check_redis(tok, home_dir)
    device = _device()
    prometheus = hostfiles.find_prometheus() if tok.metrics is not None else None
    plan = hostfiles.HostPlan(
        tok, home_dir, Path(sys.executable).parent, counts["game"], counts["eval"], device, prometheus
    )
    hostfiles.write_files(plan)
    click.echo(
        f"{tok.host}: {counts['game']} game, {counts['eval']} eval workers on {device}; files in {home_dir}"
    )
    if tok.metrics is not None and prometheus is None:
        click.echo(
            "no `prometheus` here (2.32 or later, for agent mode): metrics stay on this host", err=True
        )
    if no_start:
        return
    args = service.supervisord_command(plan.bin_dir, plan.supervisord_conf)
    svc = None if foreground else service.plan()
    if svc is None:
        if not foreground:
            click.echo("neither systemd nor launchd runs here: running in the foreground", err=True)
        os.execv(args[0], args)
    try:
        notes = service.install(svc, plan.bin_dir, plan.supervisord_conf)
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or "").strip().splitlines()
        raise OperatorError(
            f"`{' '.join(exc.cmd)}` failed{': ' + said[-1] if said else ''} (or run with --foreground)"
        ) from None
    for note in notes:
        click.echo(note, err=True)
    click.echo(f"started ({svc.kind}: {svc.path}); logs in {home_dir / 'log'}")


def _check_redis(tok: JoinToken, home_dir: Path) -> None:
    """Log in to the head's Redis as each of the token's users (TLS, the token's CA): one clear
    line if the head is unreachable, its certificate wrong or the token revoked."""
    import tempfile

    from bgai.config import config_from_dict
    from bgai.join.host import fleet_config
    from bgai.store.client import connect, failure_hint

    with tempfile.TemporaryDirectory() as tmp:
        ca = Path(tmp) / "ca.crt"
        ca.write_text(tok.redis.ca)
        data = fleet_config(tok, home_dir)
        data["redis"]["ca_file"] = str(ca)
        for role in tok.roles:
            data["redis"].update(username=tok.usernames[role], password=tok.passwords[role])
            cfg = config_from_dict(data, "the join token")
            try:
                connect(cfg.redis).ping()
            except Exception as exc:
                hint = failure_hint(exc, cfg.redis)
                if hint is None:
                    raise
                raise OperatorError(
                    f"{hint[0]} ({hint[1]}; a revoked or replaced token is refused)"
                ) from None


def _device() -> str:
    """This host's JAX device type, said plainly (JAX on the CPU where no GPU backend loads)."""
    from bgai.devices import detect

    kind, name = detect()
    click.echo(f"JAX computes on {kind}{f' ({name})' if name else ''}")
    return kind


@click.group("tls")
def tls() -> None:
    """TLS for a head set up by hand (deploy.yml makes the same itself)."""


@tls.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--san", required=True, help="The head's names: IP:10.0.0.1,DNS:head.example (what clients dial)."
)
@click.option(
    "--server",
    "servers",
    multiple=True,
    default=("redis",),
    show_default=True,
    help="Server certificate names (repeat).",
)
@click.option("--client", "clients", multiple=True, help="A client certificate to make (repeat).")
def tls_init(directory: str, san: str, servers: tuple[str, ...], clients: tuple[str, ...]) -> None:
    """A private CA (kept) and server certificates for exactly --san in DIRECTORY."""
    for server in servers:
        argv = ["bash", str(TLS_SCRIPT), directory, "--server", server, "--san", san]
        for c in clients:
            argv += ["--client", c]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise OperatorError(
                done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "tls-certs failed"
            )
        click.echo(done.stdout, nl=False)
    click.echo(f"CA: {directory}/ca.crt (its key, ca.key, stays here); servers: {', '.join(servers)}")


JOIN_COMMANDS = (token, join, tls)
