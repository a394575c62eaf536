"""Redis ACL users, one per role (and per worker host for game and eval workers), each allowed
only the keys its role needs.

| user          | reads                         | writes                                   |
|---------------|-------------------------------|------------------------------------------|
| game@{host}   | model, run                    | buffer (push, evict), `workers:{host}:*` |
| eval@{host}   | model, run, heartbeats        | eval (claims, results), `workers:{host}:*`|
| training      | buffer, run, eval             | model (publish), trainer lock, heartbeat |
| coordinator   | model, buffer, eval, workers, | run, metrics targets, workers (reaping)  |
|               | joined hosts                  |                                          |
| admin         | everything                    | everything (`bgai-runs`, `bgai status`)  |

A game or eval worker host has users of its own, `game@{host}` and `eval@{host}`, whose only
registry keys are `workers:{host}:*`: its worker ids are `{host}:{role}:{n}` (supervisord's
`%(host_node_name)s`, the same string in the user name), so it cannot overwrite, delete or
forge another host's record, nor any index. Their passwords are derived from the role's secret
and the user name (HMAC-SHA256): the head's ACL lists every host's user, and each host is given
only its own password, never the role's secret (`host_passwords`).

Game and eval workers cannot write the weights, change the run state, or touch keys outside
their own (a test proves a game worker cannot SET the weights key). Commands: reads, writes and
transactions on those keys, EVAL / EVALSHA / SCRIPT LOAD / SCRIPT EXISTS for the scripts; no
SCRIPT FLUSH or KILL, no FUNCTION (nothing another role's scripts depend on can be removed or
replaced, nor a library persisted in the append-only file), nothing `@dangerous` (no KEYS,
FLUSHALL, CONFIG, DEBUG, ACL...) except for admin. What ACLs cannot do: Redis checks a script's
commands against its caller's rights, so a user that may run the push script may also write the
buffer keys it writes; the push script repairs stats that disagree with its list, the trainer's
mirror skips impossible ones, and `maxmemory` bounds what junk can cost (store/replay.py,
store/sampler.py, store/budget.py). The default user is the admin under another name (Redis 7.0
replays its append-only file as the default user, which therefore needs every permission), so
Redis never answers without a password. Passwords are stored as SHA-256 (`#hex`), never in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import platform
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from bgai.store.keys import Keys

ROLES = ("coordinator", "training", "game", "eval", "admin")
HOST_ROLES = ("game", "eval")  # one user per worker host: `game@{host}`, `eval@{host}`
_COMMANDS = (
    "-@all +@read +@write +@keyspace +@transaction +@connection -@dangerous"
    " +eval +evalsha +script|load +script|exists -function"
    " +time"  # Redis's clock, which `bgai doctor` compares with the host's (in no category but @fast)
)
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# A host joined by token (`bgai token create`) has game@/eval@ users that Redis alone knows
# (`ACL SETUSER`, `ACL SAVE`), their passwords in the token only. This channel pattern marks
# them (no role may use pub/sub, so it grants nothing): whoever rewrites the ACL file from the
# inventory (`bgai acl`, the redis role) keeps the marked lines, and `bgai token revoke` is what
# removes one.
JOINED_MARK = "&bgai-joined"


def check_host(host: str) -> str:
    """`host` if it can name a Redis user and a key pattern (a hostname); ValueError if not."""
    if not isinstance(host, str) or not _HOST.fullmatch(host):
        raise ValueError(f"invalid worker host name {str(host)[:40]!r} (letters, digits, _ . - only)")
    return host


def local_host() -> str:
    """This host's name as supervisord's `%(host_node_name)s` gives it (its worker ids' prefix)."""
    return check_host(platform.node())


def username(role: str, host: str | None = None) -> str:
    """The Redis user of `role` (on `host`, for the per-host roles)."""
    if role not in HOST_ROLES:
        return role
    if host is None:
        raise ValueError(f"the {role} user is per host: name the host")
    return f"{role}@{check_host(host)}"


def host_password(secret: str, role: str, host: str) -> str:
    """The password of `role@host`, derived from the role's secret (HMAC-SHA256 of the user name)."""
    mac = hmac.new(secret.encode(), username(role, host).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def host_passwords(passwords: dict[str, str], host: str) -> dict[str, str]:
    """role -> the password `host`'s programs use: its own for game and eval, else the role's."""
    return {
        role: host_password(pw, role, host) if role in HOST_ROLES else pw for role, pw in passwords.items()
    }


def key_rules(keys: Keys, host: str | None = None) -> dict[str, str]:
    """Per user: its key patterns (`%R~` read-only, `~` read and write); game and eval for
    `host` (without one: their rules are left out)."""
    p = keys.prefix

    def ro(*parts: str) -> str:
        return " ".join(f"%R~{p}:{x}:*" for x in parts)

    def rw(*parts: str) -> str:
        return " ".join(f"~{p}:{x}:*" for x in parts)

    own = f"~{keys.worker(check_host(host) + ':')}*" if host is not None else ""  # workers:{host}:*
    per_host = {
        "game": f"{ro('model', 'run')} {rw('buffer')} {own}",
        "eval": f"{ro('model', 'run', 'workers')} {rw('eval')} {own}",
    }
    return {
        **(per_host if host is not None else {}),
        "training": f"{ro('buffer', 'run', 'eval')} {rw('model', 'trainer', 'workers')}",
        "coordinator": (
            f"{ro('model', 'buffer', 'eval', 'trainer', 'joined')} {rw('run', 'metrics', 'workers')}"
        ),
        "admin": "~*",
    }


def acl_lines(keys: Keys, passwords: dict[str, str], hosts: Iterable[str] = ()) -> list[str]:
    """The ACL file's lines (users.acl) for these passwords, with game and eval users for each
    worker host in `hosts`."""
    rules = key_rules(keys)
    # Redis 7.0 replays its append-only file as the default user: a default user without every
    # permission loses every MULTI/EXEC on restart (NOPERM). So it keeps them, behind the admin
    # password; without a password nothing is answered.
    admin = hashlib.sha256(passwords["admin"].encode()).hexdigest()
    lines = [f"user default on #{admin} resetkeys ~* resetchannels &* +@all"]
    for role in ROLES:
        if role in HOST_ROLES:
            for host in sorted(set(hosts)):
                pw = host_password(passwords[role], role, host)
                lines.append(_user(username(role, host), pw, key_rules(keys, host)[role], _COMMANDS))
            continue
        commands = "+@all" if role == "admin" else _COMMANDS
        lines.append(_user(role, passwords[role], rules[role], commands))
    return lines


def joined_line(keys: Keys, role: str, host: str, password: str) -> str:
    """The ACL file line of `role@host` for a host joined by token: the per-host user's keys and
    commands, marked as joined (JOINED_MARK)."""
    if role not in HOST_ROLES:
        raise ValueError(f"a joined host runs game or eval workers, not {role!r}")
    line = _user(username(role, host), password, key_rules(keys, host)[role], _COMMANDS)
    return line.replace(" resetchannels ", f" resetchannels {JOINED_MARK} ", 1)


def joined_rules(line: str) -> list[str]:
    """`ACL SETUSER NAME ...`'s rules for an ACL file line (`user NAME rules...`)."""
    return ["reset", *line.split()[2:]]


def joined_lines(acl_text: str) -> list[str]:
    """The lines of an ACL file that belong to hosts joined by token."""
    return [
        ln.strip() for ln in acl_text.splitlines() if ln.startswith("user ") and JOINED_MARK in ln.split()
    ]


def set_joined(acl_file: Path, host: str, lines: list[str]) -> None:
    """Replace the joined lines of `host`'s users in the ACL file with `lines` (none: remove
    them), keeping every other line as it is: Redis reads the file when it starts, so a joined
    host outlives a restart, and the file stays byte for byte what `bgai acl` or the redis role
    wrote (it is never `ACL SAVE`d, which would rewrite every line in Redis's own form)."""
    names = {username(role, host) for role in HOST_ROLES}
    kept = [
        ln
        for ln in acl_file.read_text().splitlines()
        if not (ln.startswith("user ") and ln.split()[1] in names and JOINED_MARK in ln.split())
    ]
    _write_private(acl_file, "\n".join([*kept, *lines]) + "\n")


def _user(name: str, password: str, key_patterns: str, commands: str) -> str:
    digest = hashlib.sha256(password.encode()).hexdigest()
    return f"user {name} on #{digest} resetkeys {key_patterns} resetchannels {commands}"


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


def ensure_secrets(
    secrets_file: Path, acl_file: Path, keys: Keys, hosts: Iterable[str] | None = None
) -> dict[str, str]:
    """Make (or keep) one random secret per role in `secrets_file` (mode 0600) and write the
    matching `acl_file`, with game and eval users for `hosts` (default: this host); returns
    role -> secret (a host's own passwords: `host_passwords`). Existing secrets are kept."""
    hosts = [local_host()] if hosts is None else list(hosts)
    have = read_secrets(secrets_file) if secrets_file.exists() else {}
    passwords = {role: have.get(role) or secrets.token_urlsafe(24) for role in ROLES}
    if passwords != have:
        _write_private(secrets_file, "".join(f"export {env_name(r)}={pw}\n" for r, pw in passwords.items()))
    joined = joined_lines(acl_file.read_text()) if acl_file.exists() else []
    _write_private(acl_file, "\n".join([*acl_lines(keys, passwords, hosts), *joined]) + "\n")
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
