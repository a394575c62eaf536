"""Jinja filters that reuse bgai's own code, so the deployment and the fleet agree by construction.

- `bgai_acl_lines`: the Redis ACL file's lines for the per-role passwords and the worker hosts,
  from bgai.store.acl (the same rules `bgai acl` writes for the local fleet);
- `bgai_host_password`: the password a worker host's game or eval programs use (their own,
  derived from the role's secret);
- `bgai_redis_maxmemory`: Redis's memory limit for the fleet config (bgai.store.budget, as
  `bgai redis-maxmemory` prints it);
- `bgai_settings_env`: a host's `bgai_settings` ("section.key": value) as the environment
  variables bgai's config reads (BGAI_SECTION__KEY);
- `bgai_program_conf`: one of the repository's program files (supervisor/*.conf) for one host,
  with the host's values in the programs' own sections (see its docstring);
- `bgai_web_base`: Prometheus's web.base.yml (TLS, the admin's basic-auth user) as
  bgai.obs.webconfig writes it, keeping the hashes of the file in place that still verify.
Ansible runs from bgai's virtualenv; if bgai is not importable there, the repository this file
lives in is put on the path.
"""

from __future__ import annotations

import json
import re
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
    passwords: dict[str, str], prefix: str = "bgai", hosts: list[str] | None = None, current: str = ""
) -> list[str]:
    """The head's users.acl: every role, and game@HOST / eval@HOST for each worker host, and
    the users of hosts joined by token that the `current` file holds (`bgai token`: Redis's
    own, removed by `bgai token revoke` alone)."""
    acl = _acl()
    from bgai.store.keys import Keys

    missing = [role for role in acl.ROLES if not passwords.get(role)]
    if missing:
        raise ValueError(f"no Redis password for {', '.join(missing)} (bgai_secrets)")
    return [*acl.acl_lines(Keys(prefix), passwords, hosts or []), *acl.joined_lines(current)]


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


def bgai_settings_env(settings: dict[str, Any]) -> dict[str, str]:
    """{"selfplay.batch_size": 4096} -> {"BGAI_SELFPLAY__BATCH_SIZE": "4096"} (non-strings as JSON)."""
    return {
        "BGAI_" + key.upper().replace(".", "__"): value if isinstance(value, str) else json.dumps(value)
        for key, value in settings.items()
    }


_ENV_REF = re.compile(r"%\(ENV_(\w+)\)s")
_SECTION = re.compile(r"^\[([^]]+)\]")
_ENVIRONMENT = re.compile(r"^environment\s*[=:]\s*")


def _literal(value: Any) -> str:
    """A value as supervisord reads it back: % doubled (it expands every value), no quotes."""
    return str(value).replace("%", "%%").replace('"', "")


def bgai_program_conf(text: str, expansions: dict[str, Any], environment: dict[str, Any]) -> str:
    """A program file of the repository (supervisor/head.conf, game-workers.conf,
    eval-workers.conf) as one host runs it: each `%(ENV_NAME)s` whose NAME is in `expansions`
    written in as that value, and `environment` put first in every [program:x]'s environment=
    (the program's own keys, after it, win).

    The host's values then live in its bgai programs' own sections, not in supervisord's shared
    environment, which every program inherits: a change reaches only the files it concerns, and
    `supervisorctl update` restarts only their programs (never Redis, MLflow, Prometheus or
    Grafana). The same files run unchanged under scripts/fleet-local, which sets the names in
    supervisord's environment instead."""
    env = ",".join(f'{key}="{_literal(value)}"' for key, value in environment.items())

    def expand(line: str) -> str:
        return _ENV_REF.sub(lambda m: _literal(expansions[m[1]]) if m[1] in expansions else m[0], line)

    out: list[str] = []
    section, has_env = "", True
    for line in text.splitlines():
        header = _SECTION.match(line)
        if header:
            if not has_env and env:  # the previous program had no environment= of its own
                out.insert(len(out) - _trailing_blank(out), f"environment={env}")
            section = header[1]
            has_env = not section.startswith("program:")
        elif section.startswith("program:") and (key := _ENVIRONMENT.match(line)):
            has_env = True
            own = expand(line[key.end() :]).strip()
            line = "environment=" + ",".join(part for part in (env, own) if part)
            out.append(line)
            continue
        out.append(expand(line))
    if not has_env and env:
        out.insert(len(out) - _trailing_blank(out), f"environment={env}")
    return "\n".join(out) + "\n"


def bgai_web_base(current: str, cert_file: str, key_file: str, users: dict[str, str]) -> str:
    """Prometheus's web.base.yml as bgai.obs.webconfig writes it: TLS from `cert_file` and
    `key_file`, a basic-auth user per name -> password of `users`. A user whose hash in `current`
    (the file in place) still verifies keeps it (bcrypt salts every hash anew): a second run
    writes the same file."""
    import yaml

    _acl()  # bgai importable
    from bgai.obs import webconfig

    try:
        old = yaml.safe_load(str(current)) or {}
    except yaml.YAMLError:
        old = {}
    kept = old.get("basic_auth_users") if isinstance(old, dict) else None
    # (plain str: Ansible's own string types are nothing yaml.safe_dump can write)
    plain = {str(name): str(password) for name, password in users.items()}
    return webconfig.dumps(
        webconfig.new_config(str(cert_file), str(key_file), plain, kept if isinstance(kept, dict) else None)
    )


def _trailing_blank(lines: list[str]) -> int:
    """How many blank or comment lines end `lines` (a section's own lines come before them)."""
    n = 0
    for line in reversed(lines):
        if line.strip() and not line.lstrip().startswith((";", "#")):
            break
        n += 1
    return n


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "bgai_acl_lines": bgai_acl_lines,
            "bgai_host_password": bgai_host_password,
            "bgai_redis_maxmemory": bgai_redis_maxmemory,
            "bgai_settings_env": bgai_settings_env,
            "bgai_program_conf": bgai_program_conf,
            "bgai_web_base": bgai_web_base,
        }
