"""Jinja filters that reuse bgai's own code, so the deployment and the fleet agree by construction.

- `bgai_acl_lines`: the Redis ACL file's lines for the per-role passwords and the worker hosts,
  from bgai.store.acl (the same rules `bgai acl` writes for the local fleet);
- `bgai_host_password`: the password a worker host's game or eval programs use (their own,
  derived from the role's secret);
- `bgai_redis_maxmemory`: Redis's memory limit for the fleet config (bgai.store.budget, as
  `bgai redis-maxmemory` prints it).
Ansible runs from bgai's virtualenv; if bgai is not importable there, the repository this file
lives in is put on the path.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def _acl() -> Any:
    try:
        from bgai.store import acl
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from bgai.store import acl
    return acl


def bgai_acl_lines(
    passwords: dict[str, str], prefix: str = "bgai", hosts: list[str] | None = None
) -> list[str]:
    """The head's users.acl: every role, and game@HOST / eval@HOST for each worker host."""
    acl = _acl()
    from bgai.store.keys import Keys

    missing = [role for role in acl.ROLES if not passwords.get(role)]
    if missing:
        raise ValueError(f"no Redis password for {', '.join(missing)} (bgai_secrets)")
    return list(acl.acl_lines(Keys(prefix), passwords, hosts or []))


def bgai_host_password(secret: str, role: str, host: str) -> str:
    """What `host`'s programs of `role` log in with: their own password for game and eval
    (derived from the role's secret, which stays off the worker hosts), else the secret."""
    acl = _acl()
    return acl.host_passwords({role: secret}, host)[role]


def bgai_redis_maxmemory(config_file: str) -> int:
    """Redis's `maxmemory` in bytes for the fleet config at `config_file` (bgai.store.budget)."""
    _acl()  # bgai importable
    from bgai.config import load_config
    from bgai.store.budget import redis_maxmemory

    return redis_maxmemory(load_config(Path(config_file), env={}))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "bgai_acl_lines": bgai_acl_lines,
            "bgai_host_password": bgai_host_password,
            "bgai_redis_maxmemory": bgai_redis_maxmemory,
        }
