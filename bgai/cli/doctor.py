"""`bgai doctor`: checks this host's part in the fleet and explains, one line per check."""

from __future__ import annotations

import os
import sys

import click

from bgai.cli.common import config_option, load_or_exit, set_option

_COLOURS = {"ok": "green", "warn": "yellow", "FAIL": "red"}


@click.command("doctor")
@config_option
@set_option
@click.option(
    "--jax/--no-jax",
    "with_jax",
    default=True,
    show_default=True,
    help="Check what JAX computes on against jax.accelerator (a child process: seconds).",
)
@click.option(
    "--min-free-gb",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Free disk wanted under training.checkpoint_dir.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1, max=60),
    default=3.0,
    show_default=True,
    help="Seconds each network check may wait (Redis, MLflow, Prometheus).",
)
def doctor(
    config: str | None, sets: tuple[str, ...], with_jax: bool, min_free_gb: float, timeout_s: float
) -> None:
    """Check, from any host: the config; Redis with this config's credentials (and TLS); this
    bgai's version against the head's; the clock against Redis's; MLflow and Prometheus; free
    disk for checkpoints; the GPU driver; JAX's backend against jax.accelerator. Exit 0 when
    nothing FAILs (warnings allowed), 1 otherwise."""
    from bgai.obs.doctor import Options, Status, checks, config_failed

    try:
        cfg = load_or_exit(config, sets)
    except click.BadParameter:  # a malformed --set: the command line's mistake (exit 2)
        raise
    except click.UsageError as exc:
        click.secho(config_failed(exc.format_message()).line(), fg="red")
        sys.exit(1)
    opts = Options(jax=with_jax, timeout_s=timeout_s, min_free_bytes=int(min_free_gb * 1e9), env=os.environ)
    failed = 0
    for check in checks(cfg, opts, config):
        click.secho(check.line(), fg=_COLOURS[check.status.value])
        failed += check.status is Status.FAIL
    sys.exit(1 if failed else 0)
