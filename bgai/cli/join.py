"""`bgai token create|list|revoke` (on the head), `bgai join TOKEN` (on a new worker host) and
`bgai tls init` (the CA and certificates of a head set up by hand)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bgai.cli.common import OperatorError, config_option, load_or_exit, redis_failure, set_option

if TYPE_CHECKING:
    from bgai.config import Config
    from bgai.join.token import JoinToken
    from bgai.store.client import Redis

TLS_SCRIPT = Path(__file__).resolve().parent.parent / "join" / "tls-certs.sh"


@click.group("token")
def token() -> None:
    """Join tokens for worker hosts outside the head's network (run on the head, as admin)."""


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _shareable_config(cfg: Config) -> dict[str, dict[str, Any]]:
    """The fleet config for another host: no secret, no file of this host's."""
    from bgai.config import SECTIONS, config_to_dict
    from bgai.config_parse import secret_keys

    data = config_to_dict(cfg)
    for dotted in secret_keys(SECTIONS):
        section, _, key = dotted.partition(".")
        data[section][key] = ""
        if f"{key}_file" in data[section]:
            data[section][f"{key}_file"] = ""
    return data


@token.command("create")
@config_option
@set_option
@click.option(
    "--host", "host", required=True, help="The joining host's name (its Redis users: game@HOST, eval@HOST)."
)
@click.option(
    "--role", "roles", multiple=True, type=click.Choice(["game", "eval"]), default=("game",),
    show_default=True, help="What it may run (repeat for both).",
)  # fmt: skip
@click.option(
    "--expires",
    default="7d",
    show_default=True,
    help="How long the token can be used to join (never: no limit).",
)
@click.option(
    "--address", default=None, help="The head's address as the new host dials it (default: redis.host)."
)
@click.option(
    "--ca",
    "ca_file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="The CA certificate (default: redis.ca_file).",
)
@click.option(
    "--metrics-url", default=None,
    help="The head Prometheus's remote-write URL (default: head.prometheus_url's host and port if "
    "it is https, else https://ADDRESS:9090; path /api/v1/write).",
)  # fmt: skip
@click.option("--no-metrics", is_flag=True, help="Its metrics stay on the host (no Prometheus user).")
@click.option("--replace", is_flag=True, help="The host joined before: its old token stops working.")
def token_create(
    config: str | None,
    sets: tuple[str, ...],
    host: str,
    roles: tuple[str, ...],
    expires: str,
    address: str | None,
    ca_file: str | None,
    metrics_url: str | None,
    no_metrics: bool,
    replace: bool,
) -> None:
    """Make HOST's Redis users and print its join token (stdout; how to use it on stderr). Its
    metrics password's bcrypt hash goes to Redis, and the coordinator adds the user to the head
    Prometheus's web config (head.prometheus_web_config)."""
    import secrets

    from bgai.join.token import JoinToken, MetricsAccess, RedisAccess, parse_duration
    from bgai.obs import webconfig
    from bgai.store import acl, joined
    from bgai.store.client import connect, keys_for

    cfg = load_or_exit(config, sets)
    try:
        acl.check_host(host)
        lifetime = parse_duration(expires)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not cfg.redis.tls:
        raise OperatorError(
            "Redis here is not TLS (redis.tls): a host outside the fleet's network must not log in in clear"
        )
    if address is None and _loopback(cfg.redis.host):
        raise click.BadParameter(
            f"redis.host ({cfg.redis.host}) is this host's loopback: name the address the new host dials",
            param_hint="--address",
        )
    address = address or cfg.redis.host
    ca_path = ca_file or cfg.redis.ca_file
    if not ca_path:
        raise click.BadParameter(
            "the CA that signed Redis's certificate is needed (redis.ca_file)", param_hint="--ca"
        )
    now = int(time.time())
    metrics = None
    if not no_metrics:
        url = metrics_url or _remote_write_url(cfg.head.prometheus_url, address)
        metrics = MetricsAccess(url, host, secrets.token_urlsafe(24))
    record = joined.JoinedHost(
        host,
        tuple(dict.fromkeys(roles)),
        now,
        now + lifetime if lifetime else 0,
        "" if metrics is None else webconfig.hash_password(metrics.password),
    )
    r, keys = connect(cfg.redis), keys_for(cfg.redis)
    try:
        users_file = _acl_file(r)
        passwords, lines = joined.add(r, keys, record, replace=replace)
    except joined.HostExistsError as exc:
        raise OperatorError(str(exc)) from None
    except Exception as exc:
        failure = redis_failure(exc, cfg)
        if failure is None:
            raise
        raise failure from None
    if users_file is not None:
        acl.set_joined(users_file, host, lines)
    tok = JoinToken(
        host=host,
        roles=record.roles,
        redis=RedisAccess(
            address, cfg.redis.port, cfg.redis.prefix, Path(ca_path).read_text(), True, cfg.redis.db
        ),
        passwords=passwords,
        usernames={role: acl.username(role, host) for role in record.roles},
        config=_shareable_config(cfg),
        created=now,
        expires=record.expires,
        metrics=metrics,
    )
    click.echo(tok.encode())
    until = (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.expires)) if record.expires else "no expiry"
    )
    click.echo(
        f"token for {host} ({', '.join(record.roles)}; usable until {until}"
        f"{'' if metrics else '; its metrics stay there'}). On that host:\n"
        "  git clone <bgai repository> bgai && bgai/scripts/join 'TOKEN'\n"
        f"Revoke it with: bgai token revoke {host}",
        err=True,
    )


def _acl_file(r: Redis) -> Path | None:
    """Redis's ACL file, if it has one; an OperatorError if this process cannot write it (the
    joined users must be in it to outlive a restart: run `bgai token` on the head)."""
    from bgai.store import joined

    path = joined.acl_file(r)
    if not path:
        return None
    if not (os.path.isfile(path) and os.access(path, os.W_OK)):
        raise OperatorError(
            f"Redis's ACL file {path} is not writable here: run `bgai token` on the head, as a user "
            "that can write it (the joined host's users must be in it to outlive a restart)"
        )
    return Path(path)


def _remote_write_url(prometheus_url: str, address: str) -> str:
    """The head Prometheus's remote-write URL: head.prometheus_url's host if it is https."""
    from urllib.parse import urlsplit

    parts = urlsplit(prometheus_url)
    if parts.scheme == "https" and parts.netloc:
        return f"https://{parts.netloc}/api/v1/write"
    return f"https://{address}:9090/api/v1/write"


@token.command("list")
@config_option
@set_option
def token_list(config: str | None, sets: tuple[str, ...]) -> None:
    """Hosts joined by token."""
    from bgai.store import joined
    from bgai.store.client import connect, keys_for

    cfg = load_or_exit(config, sets)
    try:
        found = joined.hosts(connect(cfg.redis), keys_for(cfg.redis))
    except Exception as exc:
        failure = redis_failure(exc, cfg)
        if failure is None:
            raise
        raise failure from None
    for h in found:
        until = time.strftime("%Y-%m-%d %H:%M", time.gmtime(h.expires)) if h.expires else "never"
        click.echo(f"{h.host}\t{','.join(h.roles)}\tjoin until {until}")


@token.command("revoke")
@config_option
@set_option
@click.argument("host")
def token_revoke(config: str | None, sets: tuple[str, ...], host: str) -> None:
    """Delete HOST's Redis users (its workers are cut off at once and exit) and its metrics user
    (gone from Prometheus's web config at the coordinator's next pass)."""
    from bgai.store import acl, joined
    from bgai.store.client import connect, keys_for

    cfg = load_or_exit(config, sets)
    r = connect(cfg.redis)
    try:
        users_file = _acl_file(r)
        gone = joined.revoke(r, keys_for(cfg.redis), host)
    except Exception as exc:
        failure = redis_failure(exc, cfg)
        if failure is None:
            raise
        raise failure from None
    if users_file is not None:
        acl.set_joined(users_file, host, [])
    if not gone:
        raise OperatorError(f"no joined host {host} (bgai token list)")
    click.echo(
        f"revoked {host}: {', '.join(gone)} removed; its metrics user goes at the coordinator's next pass"
    )


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
