"""The join token: everything a worker host outside the head's network needs to join the fleet.

`bgai token create` makes one on the head; `bgai join TOKEN` reads it on the new host. It is a
secret (it holds the host's own Redis password and its metrics password, each made for this
token alone): whoever has it can run workers as that host until `bgai token revoke HOST`.

Format: `bgai1.` + base64url (no padding) of zlib-compressed JSON, no pickle:

    {"v": 1, "host": NAME, "roles": ["game", ...], "expires": epoch seconds (0: never),
     "created": epoch seconds,
     "redis": {"host", "port", "db", "prefix", "tls", "ca"},   ca: the CA certificate, PEM
     "users": {role: {"username", "password"}},               the host's own ACL users
     "metrics": {"url", "username", "password"} | null,       Prometheus remote write (HTTPS)
     "config": {section: {key: value}}}                        the fleet's config, secrets out

A token is checked whole when read: a damaged, foreign or expired one is refused with the reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from bgai.errors import BgaiError
from bgai.store.acl import check_host

PREFIX = "bgai1."
JOIN_ROLES = ("game", "eval")
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TokenError(BgaiError):
    """A join token that cannot be used: damaged, not a bgai token, expired or incomplete."""


def parse_duration(text: str) -> int:
    """Seconds in `7d`, `12h`, `30m`, `2w` or `90s`; `0` or `never` is 0 (no expiry)."""
    text = text.strip().lower()
    if text in ("0", "never"):
        return 0
    m = _DURATION.fullmatch(text)
    if m is None or int(m.group(1)) == 0:
        raise ValueError(f"not a duration: {text!r} (e.g. 7d, 12h, 30m, 2w; never)")
    return int(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class RedisAccess:
    host: str
    port: int
    prefix: str
    ca: str  # PEM of the CA that signed Redis's certificate ("" with tls off)
    tls: bool = True
    db: int = 0


@dataclass(frozen=True)
class MetricsAccess:
    """Where the host's Prometheus agent remote-writes, and its basic-auth login there."""

    url: str
    username: str
    password: str


@dataclass(frozen=True)
class JoinToken:
    host: str
    roles: tuple[str, ...]
    redis: RedisAccess
    passwords: dict[str, str]  # role -> the password of `role@host`
    config: dict[str, dict[str, Any]]
    created: int
    expires: int = 0  # epoch seconds; 0: never
    metrics: MetricsAccess | None = None
    usernames: dict[str, str] = field(default_factory=dict)  # role -> ACL user

    def expired(self, now: float) -> bool:
        return self.expires > 0 and now >= self.expires

    def encode(self) -> str:
        data = {
            "v": 1,
            "host": self.host,
            "roles": list(self.roles),
            "created": self.created,
            "expires": self.expires,
            "redis": vars(self.redis),
            "users": {r: {"username": self.usernames[r], "password": self.passwords[r]} for r in self.roles},
            "metrics": None if self.metrics is None else vars(self.metrics),
            "config": self.config,
        }
        raw = zlib.compress(json.dumps(data, sort_keys=True, separators=(",", ":")).encode(), 9)
        return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str, now: float) -> JoinToken:
    """The token `text` holds; TokenError naming what is wrong (damaged, foreign, expired)."""
    text = "".join(text.split())  # a token pasted across lines
    if not text.startswith(PREFIX):
        raise TokenError("not a bgai join token (it starts with 'bgai1.'; make one with `bgai token create`)")
    body = text[len(PREFIX) :]
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        data = json.loads(raw)
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise TokenError(f"the join token is damaged (copied whole?): {exc}") from None
    try:
        token = _from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenError(f"the join token is incomplete or of another version: {exc!r}") from None
    if token.expired(now):
        raise TokenError(
            f"the join token for {token.host} has expired: make a new one with `bgai token create`"
        )
    return token


def _from_dict(data: Any) -> JoinToken:
    if not isinstance(data, dict):
        raise TypeError(f"a token holds a JSON object, not {type(data).__name__}")
    if data.get("v") != 1:
        raise ValueError(f"token version {data.get('v')!r}, this bgai reads 1")
    roles = tuple(str(r) for r in data["roles"])
    if not roles or any(r not in JOIN_ROLES for r in roles):
        raise ValueError(f"roles {roles!r}")
    r = data["redis"]
    redis = RedisAccess(
        str(r["host"]), int(r["port"]), str(r["prefix"]), str(r["ca"]), bool(r["tls"]), int(r["db"])
    )
    m = data.get("metrics")
    metrics = None if m is None else MetricsAccess(str(m["url"]), str(m["username"]), str(m["password"]))
    users = data["users"]
    config = data["config"]
    if not isinstance(config, dict):
        raise ValueError("config")
    return JoinToken(
        host=check_host(str(data["host"])),
        roles=roles,
        redis=redis,
        passwords={role: str(users[role]["password"]) for role in roles},
        usernames={role: str(users[role]["username"]) for role in roles},
        config=config,
        created=int(data["created"]),
        expires=int(data["expires"]),
        metrics=metrics,
    )
