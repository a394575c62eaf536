"""Options and config loading shared by every `bgai` command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from bgai import compile_cache
from bgai.config import Config, load_config
from bgai.errors import ConfigError


def load_or_exit(config: str | None, sets: tuple[str, ...]) -> Config:
    """The resolved config, or a UsageError (exit 2) naming the bad key."""
    overrides: dict[str, object] = {}
    for item in sets:
        if "=" not in item:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value
    try:
        return load_config(config, overrides=overrides)
    except ConfigError as exc:
        raise click.UsageError(f"bad configuration: {exc}") from exc


class OperatorError(click.ClickException):
    """A mistake or an outage the operator fixes (Redis down, wrong password): one line, exit 2."""

    exit_code = 2


def redis_failure(exc: BaseException, cfg: Config) -> OperatorError | None:
    """The one-line error for a Redis that is unreachable or refuses these credentials, else None."""
    from bgai.store.client import failure_hint

    hint = failure_hint(exc, cfg.redis)
    return None if hint is None else OperatorError(f"{hint[0]} ({hint[1]})")


@contextmanager
def redis_errors(cfg: Config) -> Iterator[None]:
    """Within: a Redis that is unreachable or refuses these credentials becomes `redis_failure`'s
    one line (exit 2); anything else passes through."""
    try:
        yield
    except Exception as exc:
        failure = redis_failure(exc, cfg)
        if failure is None:
            raise
        raise failure from None


def load_for_compute(config: str | None, sets: tuple[str, ...]) -> Config:
    """`load_or_exit` for commands that compile JAX programs: also turns on the compilation cache."""
    cfg = load_or_exit(config, sets)
    compile_cache.enable(cfg.jax)
    return cfg


config_option = click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="BGAI_CONFIG",
    show_envvar=True,
    help="YAML config file (defaults apply to anything it leaves out).",
)
set_option = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override one config value (repeatable).",
)


def registered_option(f: Any) -> Any:
    """`--model champion|models:/NAME@ALIAS|models:/NAME/N`: a model registered in MLflow."""
    return click.option(
        "--model",
        "registered",
        default=None,
        metavar="champion|models:/NAME@ALIAS|models:/NAME/N",
        help="A model registered in MLflow: `champion` is mlflow.model_name's champion alias.",
    )(f)
