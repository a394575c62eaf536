"""Hosts joined by token: their Redis users, made and removed at run time (admin only).

`bgai token create` makes `game@{host}` / `eval@{host}` with a fresh password (in the token
only; Redis keeps its SHA-256) and records the host under `P:joined:{host}`; the CLI writes the
same users' lines into Redis's ACL file (`acl.set_joined`: a restart keeps them; the redis role
and `bgai acl` keep the lines marked `JOINED_MARK` when they rewrite the file). `bgai token
revoke` deletes the users, which closes their connections at once (Redis disconnects a deleted
user's clients): the host's workers then fail to log in again and exit with the reason.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass

from bgai.store import acl
from bgai.store.client import Redis
from bgai.store.keys import Keys


@dataclass(frozen=True)
class JoinedHost:
    host: str
    roles: tuple[str, ...]
    created: int
    expires: int  # 0: never (the token's expiry; the users last until revoked)
    metrics_hash: str = ""  # bcrypt hash of its Prometheus remote-write password ("": none)


class HostExistsError(ValueError):
    """A host of that name already has Redis users (an inventory host, or joined before)."""


def acl_file(r: Redis) -> str:
    """The path of the server's ACL file ("" where it has none)."""
    return str(r.config_get("aclfile").get("aclfile") or "")


def add(r: Redis, keys: Keys, joined: JoinedHost, replace: bool = False) -> tuple[dict[str, str], list[str]]:
    """Make the host's users: (role -> its new password, their ACL file lines). HostExistsError
    unless `replace`."""
    names = [acl.username(role, joined.host) for role in acl.HOST_ROLES]
    taken = [n for n in names if r.acl_getuser(n)]
    if taken and not replace:
        raise HostExistsError(f"Redis already has {', '.join(taken)}: revoke it, or pick another --host")
    if taken:  # a fresh token for the host: the old one stops working
        r.acl_deluser(*taken)
    passwords = {role: secrets.token_urlsafe(24) for role in joined.roles}
    lines = [acl.joined_line(keys, role, joined.host, pw) for role, pw in passwords.items()]
    for line in lines:
        r.execute_command("ACL", "SETUSER", line.split()[1], *acl.joined_rules(line))
    r.set(
        keys.joined(joined.host), json.dumps({**asdict(joined), "roles": list(joined.roles)}, sort_keys=True)
    )
    return passwords, lines


def revoke(r: Redis, keys: Keys, host: str) -> list[str]:
    """Delete the host's users (their connections close); the users that existed."""
    names = [acl.username(role, host) for role in acl.HOST_ROLES]
    gone = [n for n in names if r.acl_getuser(n)]
    if gone:
        r.acl_deluser(*gone)
    r.delete(keys.joined(host))
    return gone


def hosts(r: Redis, keys: Keys) -> list[JoinedHost]:
    """Every host joined by token (sorted by name)."""
    out = []
    for key in sorted(r.scan_iter(match=keys.joined_pattern, count=500)):
        raw = r.get(key)
        if raw is None:
            continue
        d = json.loads(raw)
        out.append(
            JoinedHost(
                str(d["host"]),
                tuple(d["roles"]),
                int(d["created"]),
                int(d["expires"]),
                str(d.get("metrics_hash", "")),
            )
        )
    return out


def metrics_users(r: Redis, keys: Keys) -> dict[str, str]:
    """host -> the bcrypt hash of its metrics password, for the joined hosts that have one (what
    the coordinator writes into Prometheus's web config)."""
    return {h.host: h.metrics_hash for h in hosts(r, keys) if h.metrics_hash}
