"""Prometheus's web config (`--web.config.file`): TLS and basic-auth users.

A head that takes metrics from hosts it cannot reach (workers joined by token, behind NAT) runs
its Prometheus with `--web.enable-remote-write-receiver` and this file: the port then speaks only
TLS, and every request, a remote write or a query, needs a user of `basic_auth_users` (bcrypt
hashes). Prometheus reads the file again on every request, so users come and go with no
restart.

Two files: `web.base.yml` holds the TLS settings and the head's own users (the admin's, written
by deploy.yml or `bgai tls init`'s operator); the coordinator writes `web.yml` from it plus one
user per host joined by token (`bgai token create` keeps the bcrypt hash of the host's password
in Redis, `P:joined:{host}`), so a revoked host's metrics are refused at its next pass.

    tls_server_config: {cert_file: ..., key_file: ...}
    basic_auth_users: {admin: $2b$..., <joined host>: $2b$...}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def hash_password(password: str) -> str:
    import bcrypt  # the head extra: only the head writes this file

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()


def read(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a Prometheus web config (a mapping)")
    return data


def write_new(path: Path, cert_file: str, key_file: str, users: dict[str, str]) -> None:
    """A web config serving TLS with this certificate and key, for these users (name -> password)."""
    _write(path, new_config(cert_file, key_file, users))


def new_config(
    cert_file: str, key_file: str, users: dict[str, str], kept: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The web config `write_new` writes. bcrypt salts every hash anew: a user whose hash in
    `kept` (name -> hash, e.g. the file in place) still verifies its password keeps that hash, so
    writing it again changes nothing (deploy.yml's web.base.yml)."""
    import bcrypt

    def hashed(name: str, password: str) -> str:
        have = (kept or {}).get(name)
        try:
            if isinstance(have, str) and bcrypt.checkpw(password.encode(), have.encode()):
                return have
        except ValueError:  # not a bcrypt hash
            pass
        return hash_password(password)

    return {
        "tls_server_config": {"cert_file": cert_file, "key_file": key_file, "min_version": "TLS12"},
        "basic_auth_users": {name: hashed(name, pw) for name, pw in sorted(users.items())},
    }


def dumps(data: dict[str, Any]) -> str:
    """A web config's text, as this module writes it."""
    return str(yaml.safe_dump(data, sort_keys=True))


def base_path(path: Path) -> Path:
    """The base file beside the web config `path`: web.yml -> web.base.yml."""
    return path.with_name(f"{path.stem}.base{path.suffix}")


def compose(base: dict[str, Any], joined: dict[str, str]) -> dict[str, Any]:
    """The web config: `base` with the joined hosts' users (name -> bcrypt hash) added; a base
    user keeps its hash if a joined host has its name."""
    users = {**joined, **dict(base.get("basic_auth_users") or {})}
    return {**base, "basic_auth_users": dict(sorted(users.items()))}


def sync(path: Path, joined: dict[str, str]) -> bool:
    """Rewrite the web config at `path` from its base file and `joined` if that changes it;
    whether it did. A missing base file is an error (FileNotFoundError: the operator's)."""
    want = compose(read(base_path(path)), joined)
    if path.exists() and read(path) == want:
        return False
    _write(path, want)
    return True


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as f:
        f.write(dumps(data))
    os.replace(tmp, path)
