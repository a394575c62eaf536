"""Redis ACL users, one per role, each allowed only the keys its role needs.

| user        | reads                         | writes                                   |
|-------------|-------------------------------|------------------------------------------|
| game        | model, run                    | buffer (push, evict), its heartbeat      |
| eval        | model, run, heartbeats        | eval (claims, results), its heartbeat    |
| training    | buffer, run, eval             | model (publish), trainer lock, heartbeat |
| coordinator | model, buffer, eval, workers  | run, metrics targets, workers (reaping)  |
| admin       | everything                    | everything (`bgai-runs`, `bgai status`)  |

Game and eval workers cannot write the weights, change the run state, or touch keys outside
their own (a test proves a game worker cannot SET the weights key). Commands: reads, writes,
scripts and transactions on those keys; nothing `@dangerous` (no KEYS, FLUSHALL, CONFIG,
DEBUG, ACL...) except for admin. The default user is the admin under another name (Redis 7.0
replays its append-only file as the default user, which therefore needs every permission), so
Redis never answers without a password. Passwords are stored as SHA-256 (`#hex`), never in clear.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

from bgai.store.keys import Keys

ROLES = ("coordinator", "training", "game", "eval", "admin")
_COMMANDS = "-@all +@read +@write +@keyspace +@scripting +@transaction +@connection -@dangerous"


def key_rules(keys: Keys) -> dict[str, str]:
    """Per user: its key patterns (`%R~` read-only, `~` read and write)."""
    p = keys.prefix

    def ro(*parts: str) -> str:
        return " ".join(f"%R~{p}:{x}:*" for x in parts)

    def rw(*parts: str) -> str:
        return " ".join(f"~{p}:{x}:*" for x in parts)

    return {
        "game": f"{ro('model', 'run')} {rw('buffer', 'workers')}",
        "eval": f"{ro('model', 'run')} {rw('eval', 'workers')}",
        "training": f"{ro('buffer', 'run', 'eval')} {rw('model', 'trainer', 'workers')}",
        "coordinator": f"{ro('model', 'buffer', 'eval', 'trainer')} {rw('run', 'metrics', 'workers')}",
        "admin": "~*",
    }


def acl_lines(keys: Keys, passwords: dict[str, str]) -> list[str]:
    """The ACL file's lines (users.acl) for these passwords."""
    rules = key_rules(keys)
    # Redis 7.0 replays its append-only file as the default user: a default user without every
    # permission loses every MULTI/EXEC on restart (NOPERM). So it keeps them, behind the admin
    # password; without a password nothing is answered.
    admin = hashlib.sha256(passwords["admin"].encode()).hexdigest()
    lines = [f"user default on #{admin} resetkeys ~* resetchannels &* +@all"]
    for role in ROLES:
        digest = hashlib.sha256(passwords[role].encode()).hexdigest()
        commands = "+@all" if role == "admin" else _COMMANDS
        lines.append(f"user {role} on #{digest} resetkeys {rules[role]} resetchannels {commands}")
    return lines


def env_name(role: str) -> str:
    """The environment variable holding `role`'s password (a secrets file sets it)."""
    return f"BGAI_SECRET_{role.upper()}"


def read_secrets(path: Path) -> dict[str, str]:
    """role -> password from a secrets file of `export BGAI_SECRET_ROLE=...` lines."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"(?:export )?BGAI_SECRET_([A-Z]+)=([A-Za-z0-9_\-]+)", line.strip())
        if m:
            found[m.group(1).lower()] = m.group(2)
    return found


def ensure_secrets(secrets_file: Path, acl_file: Path, keys: Keys) -> dict[str, str]:
    """Make (or keep) one random password per role in `secrets_file` (mode 0600) and write the
    matching `acl_file`; returns role -> password. Existing passwords are kept."""
    have = read_secrets(secrets_file) if secrets_file.exists() else {}
    passwords = {role: have.get(role) or secrets.token_urlsafe(24) for role in ROLES}
    if passwords != have:
        _write_private(secrets_file, "".join(f"export {env_name(r)}={pw}\n" for r, pw in passwords.items()))
    _write_private(acl_file, "\n".join(acl_lines(keys, passwords)) + "\n")
    return passwords


def write_password_files(directory: Path, passwords: dict[str, str]) -> None:
    """One file per role holding its password alone (`directory/<role>`, mode 0600, the
    directory 0700): what each supervised program's `redis.password_file` names, so that no
    password sits in supervisord's environment, which every program inherits."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    for role, password in passwords.items():
        _write_private(directory / role, password + "\n")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
