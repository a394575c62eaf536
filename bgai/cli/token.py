"""`bgai token create|list|revoke`: join tokens for worker hosts outside the head's network,
made on the head with the admin's Redis login (bgai.join.token, bgai.store.joined)."""

from __future__ import annotations

import ipaddress
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bgai.cli.common import OperatorError, config_option, load_or_exit, redis_errors, set_option

if TYPE_CHECKING:
    from bgai.config import Config
    from bgai.store.client import Redis


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
    with redis_errors(cfg):
        users_file = _acl_file(r)
        try:
            passwords, lines = joined.add(r, keys, record, replace=replace)
        except joined.HostExistsError as exc:
            raise OperatorError(str(exc)) from None
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
    with redis_errors(cfg):
        found = joined.hosts(connect(cfg.redis), keys_for(cfg.redis))
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
    with redis_errors(cfg):
        users_file = _acl_file(r)
        gone = joined.revoke(r, keys_for(cfg.redis), host)
    if users_file is not None:
        acl.set_joined(users_file, host, [])
    if not gone:
        raise OperatorError(f"no joined host {host} (bgai token list)")
    click.echo(
        f"revoked {host}: {', '.join(gone)} removed; its metrics user goes at the coordinator's next pass"
    )
