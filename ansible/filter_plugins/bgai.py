"""Jinja filters that reuse bgai's own code, so the deployment and the fleet agree by construction.

`bgai_acl_lines`: the Redis ACL file's lines for the per-role passwords, from bgai.store.acl (the
same rules `bgai acl` writes for the local fleet). Ansible runs from bgai's virtualenv; if bgai is
not importable there, the repository this file lives in is put on the path.
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


def bgai_acl_lines(passwords: dict[str, str], prefix: str = "bgai") -> list[str]:
    acl = _acl()
    from bgai.store.keys import Keys

    missing = [role for role in acl.ROLES if not passwords.get(role)]
    if missing:
        raise ValueError(f"no Redis password for {', '.join(missing)} (bgai_secrets)")
    return list(acl.acl_lines(Keys(prefix), passwords))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"bgai_acl_lines": bgai_acl_lines}
