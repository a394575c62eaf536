"""deploy.yml without hosts: syntax check, ansible-lint (offline), what is committed, and the
Redis ACL the redis role writes (bgai's own rules, through the filter plugin)."""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from pathlib import Path

import ansible_filters
import pytest
import yaml
from ansible_run import BIN, ENV, EXAMPLE_INVENTORY, MINIMAL, REPO, results, run

from bgai.store.acl import ROLES, acl_lines
from bgai.store.keys import Keys


def test_syntax_check() -> None:
    out = run(BIN / "ansible-playbook", "-i", EXAMPLE_INVENTORY, "--syntax-check", "deploy.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ansible_lint_is_clean() -> None:
    out = run(BIN / "ansible-lint", "--offline", "deploy.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 failure(s), 0 warning(s)" in out.stdout + out.stderr


def test_collection_is_installed_offline() -> None:
    manifest = REPO / ".collections" / "ansible_collections" / "community" / "general" / "MANIFEST.json"
    assert manifest.exists(), "scripts/install extracts community.general from the ansible wheel"
    out = run(BIN / "ansible-doc", "-t", "module", "community.general.homebrew")
    assert out.returncode == 0 and "homebrew" in out.stdout.lower(), out.stderr


def test_inventory_commits_no_address_or_secret() -> None:
    """The example inventory is committed, the real one (a copy of it) git-ignored."""
    assert run("git", "check-ignore", "-q", "inventory.yml").returncode == 0, "inventory.yml: not ignored"
    assert run("git", "ls-files", "--error-unmatch", "inventory.example.yml").returncode == 0
    text = EXAMPLE_INVENTORY.read_text()
    for found in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text):
        assert ipaddress.ip_address(found).is_loopback, found
    inv = yaml.safe_load(text)
    flat = yaml.safe_dump(inv)
    assert "password" not in flat.lower() and "secret" not in flat.lower()
    ignored = run("git", "check-ignore", "ansible/vault.yml")
    assert ignored.returncode == 0, "the Vault file must be git-ignored"
    # every secret is looked up (Vault or environment), never written down
    secrets = yaml.safe_load((REPO / "ansible" / "secrets.yml").read_text())["bgai_secrets"]
    assert set(ROLES) <= set(secrets)
    assert all("lookup('ansible.builtin.env'" in v and "vault_bgai_secrets" in v for v in secrets.values())


def test_acl_filter_is_bgai_acl() -> None:
    module = ansible_filters.plugin()
    passwords = {role: f"pw-{role}-0123456789abcdef" for role in ROLES}
    lines = module.FilterModule().filters()["bgai_acl_lines"](passwords, "bgai")
    assert lines == acl_lines(Keys("bgai"), passwords)
    assert not any(pw in "\n".join(lines) for pw in passwords.values())  # hashes only
    with pytest.raises(ValueError, match="no Redis password for game"):
        module.bgai_acl_lines({**passwords, "game": ""})


def test_secrets_come_from_the_vault_else_the_environment(tmp_path: Path) -> None:
    """ansible/secrets.yml: a Vault file's value wins; without one, the environment's is used."""
    (tmp_path / "pw").write_text("test vault password\n")
    vault = tmp_path / "vault.yml"
    vault.write_text(yaml.safe_dump({"vault_bgai_secrets": {"game": "from-the-vault-0123456789"}}))
    out = run(BIN / "ansible-vault", "encrypt", "--vault-password-file", tmp_path / "pw", vault)
    assert out.returncode == 0, out.stderr
    assert vault.read_text().startswith("$ANSIBLE_VAULT;")

    def game_password(*extra: str | Path) -> str:
        ENV["BGAI_SECRET_GAME"] = "from-the-environment-0123"
        try:
            out = run(
                BIN / "ansible", "localhost", "-i", "localhost,", "-c", "local",
                "-m", "ansible.builtin.debug", "-a", "msg={{ bgai_secrets.game }}",
                "-e", "@ansible/secrets.yml", "-e", "@ansible/no-vault.yml", *extra,
            )  # fmt: skip
        finally:
            del ENV["BGAI_SECRET_GAME"]
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout.split("=>", 1)[1])["msg"]

    assert game_password() == "from-the-environment-0123"
    vaulted = game_password("-e", f"@{vault}", "--vault-password-file", tmp_path / "pw")
    assert vaulted == "from-the-vault-0123456789"


def test_redis_maxmemory_filter_is_bgai_budget() -> None:
    """The redis role's maxmemory default is bgai's own budget for the fleet config."""
    from bgai.config import load_config
    from bgai.store.budget import redis_maxmemory

    module = ansible_filters.plugin()
    config = REPO / "configs" / "distributed.yaml"
    got = module.FilterModule().filters()["bgai_redis_maxmemory"](str(config))
    assert got == redis_maxmemory(load_config(config, env={})) > 0
    defaults = yaml.safe_load((REPO / "ansible" / "roles" / "redis" / "defaults" / "main.yml").read_text())
    assert defaults["redis_maxmemory_policy"] == "noeviction"
    assert "bgai_redis_maxmemory" in defaults["redis_maxmemory"]


def render_templates(tmp: Path) -> dict[str, str]:
    """The templates deploy.yml writes, from the roles' own defaults and vars, and bgai's program
    files with a host's values written in (bgai_program_conf), for the head (h0), a worker host
    (w1: game only) and a host with TLS and MLflow's auth off (x0): {"h0/bgai-head.conf": text, ...}."""
    secrets = {role: f"pw-{role}-0123456789abcdef" for role in (*ROLES, "mlflow_password", "grafana_admin")}
    roles = REPO / "ansible" / "roles"
    templates = {
        "redis.conf": roles / "redis" / "templates" / "redis.conf.j2",
        "mlflow.conf": roles / "mlflow" / "templates" / "program.conf.j2",
        "basic_auth.ini": roles / "mlflow" / "templates" / "basic_auth.ini.j2",
        "grafana.conf": roles / "grafana" / "templates" / "program.conf.j2",
    }
    role_vars = [
        roles / r / d / "main.yml"
        for r in ("supervisor", "bgai", "redis", "mlflow", "grafana")
        for d in ("defaults", "vars")
        if (roles / r / d / "main.yml").exists()
    ]
    programs = {
        f"bgai-{n}.conf": REPO / "supervisor" / f"{n}.conf" for n in ("head", "game-workers", "eval-workers")
    }
    off = {"bgai_redis_tls": False, "bgai_mlflow_auth": False}
    # (set_fact: above the included defaults, as an inventory's host vars are above a role's defaults)
    gpu = {
        "bgai_settings": {"selfplay.batch_size": 4096, "selfplay.mode": "mcts"},
        "bgai_jax_memory_fraction": 0.45,
        "bgai_jax_preallocate": False,
    }
    rendered = {n: f"{{{{ lookup('ansible.builtin.template', '{t}') }}}}" for n, t in templates.items()}
    program_conf = "bgai_program_conf(bgai_program_expansions, bgai_program_env)"  # (as bgai_head's task)
    rendered |= {
        n: f"{{{{ lookup('ansible.builtin.file', '{f}') | {program_conf} }}}}" for n, f in programs.items()
    }
    play = [{
        "hosts": "all", "gather_facts": True, "gather_subset": ["min"],  # (the OS's own values)
        "tasks": [
            *({"ansible.builtin.include_vars": str(v)} for v in role_vars),
            {"ansible.builtin.set_fact": off, "when": "inventory_hostname == 'x0'"},
            {"ansible.builtin.set_fact": gpu, "when": "inventory_hostname == 'w1'"},
            {"ansible.builtin.debug": {"msg": rendered}},  # (no module runs: a few seconds)
        ],
    }]  # fmt: skip
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "play.yml").write_text(yaml.safe_dump(play))
    # extra vars: above the included defaults (a fixed maxmemory: its filter imports JAX, slowly)
    extra = {"bgai_secrets": secrets, "redis_maxmemory": 1 << 30}
    (tmp / "vars.json").write_text(json.dumps(extra))
    (tmp / "hosts.yml").write_text(yaml.safe_dump({"all": {"vars": {"ansible_connection": "local",
        "ansible_python_interpreter": sys.executable, "bgai_home": str(tmp / "home")},
        "hosts": {"x0": {"bgai_address": "10.9.0.3"}}, "children": {
        "head": {"hosts": {"h0": {"bgai_address": "10.9.0.1"}}},
        "workers": {"hosts": {"w1": {"bgai_address": "10.9.0.2", "bgai_game_workers": 1}}}}}}))  # fmt: skip
    play_file, vars_file = tmp / "play.yml", tmp / "vars.json"
    out = run(
        BIN / "ansible-playbook", "-i", tmp / "hosts.yml", "-e", f"@{vars_file}", play_file, env=MINIMAL
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    rendered = {}
    for host, result in results(out.stdout):
        rendered.update({f"{host}/{n}": t for n, t in result.get("msg", {}).items()})
    rendered["secrets"] = "\n".join(secrets.values())
    return rendered


def test_no_secret_in_any_environment_and_tls_and_auth_on(tmp_path: Path) -> None:
    """What deploy.yml writes: bgai's programs' environment names where each secret is (a file),
    never a secret, and is their own (no program but bgai's gets it); Redis speaks only TLS and
    asks every client for a certificate; MLflow runs its basic-auth app and Grafana reads its
    admin password from a file; off, TLS leaves a plain port."""
    got = render_templates(tmp_path)
    secrets = got.pop("secrets").splitlines()
    for name, text in got.items():
        if not name.endswith("basic_auth.ini"):  # (MLflow's own settings: 0600, the admin's password)
            assert not [s for s in secrets if s in text], f"a secret in {name}"
    head = got["h0/bgai-head.conf"]
    home = tmp_path / "home"
    assert f'BGAI_REDIS__PASSWORD_FILE="{home}/etc/secrets/coordinator"' in head
    assert "BGAI_SECRET_" not in head
    assert f'BGAI_MLFLOW__PASSWORD_FILE="{home}/etc/secrets/mlflow"' in head
    assert f"{home}/venv/bin/bgai coordinator --config {home}/etc/bgai.yaml" in head
    for name in ("bgai-head.conf", "bgai-game-workers.conf", "bgai-eval-workers.conf"):
        # every name the repository's files expand is one the bgai role gives them
        assert "%(ENV_" not in got[f"w1/{name}"], name
    # w1 runs no eval worker, so talks to no MLflow: no password file for one
    assert 'BGAI_MLFLOW__PASSWORD_FILE=""' in got["w1/bgai-eval-workers.conf"]
    # a host's own settings and JAX's GPU memory, in its programs' environment only
    w1 = got["w1/bgai-game-workers.conf"]
    assert "numprocs=1" in w1 and f'BGAI_REDIS__PASSWORD_FILE="{home}/etc/secrets/game"' in w1
    assert 'BGAI_SELFPLAY__BATCH_SIZE="4096"' in w1 and 'BGAI_SELFPLAY__MODE="mcts"' in w1
    assert 'XLA_PYTHON_CLIENT_MEM_FRACTION="0.45"' in w1 and 'XLA_PYTHON_CLIENT_PREALLOCATE="false"' in w1
    assert "BGAI_SELFPLAY__BATCH_SIZE" not in head and "XLA_PYTHON_CLIENT" not in head
    assert 'BGAI_REDIS__TLS="true"' in head and f'BGAI_REDIS__CA_FILE="{home}/etc/tls/ca.crt"' in head
    assert 'BGAI_REDIS__HOST="10.9.0.1"' in w1 and "--metrics-addr 10.9.0.2 " in w1
    # /metrics on fixed ports (bgai_metrics_ports): the kind's base plus the process number
    assert "--metrics-port 9320 --metrics-port-offset %(process_num)d " in w1
    assert "--metrics-port 9310 " in head and "--metrics-port 9311 " in head
    redis_conf = got["h0/redis.conf"].splitlines()
    assert {"port 0", "tls-port 6379", "tls-auth-clients yes"} <= set(redis_conf)
    assert (
        "--app-name basic-auth" in got["h0/mlflow.conf"]
        and "MLFLOW_AUTH_CONFIG_PATH" in got["h0/mlflow.conf"]
    )
    assert "admin_password = pw-mlflow_password-0123456789abcdef" in got["h0/basic_auth.ini"]
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" in got["h0/grafana.conf"]
    off = {name: text for name, text in got.items() if name.startswith("x0/")}
    assert "port 6379" in off["x0/redis.conf"].splitlines() and "tls-port" not in off["x0/redis.conf"]
    assert "BGAI_REDIS__TLS" not in off["x0/bgai-head.conf"] and "basic-auth" not in off["x0/mlflow.conf"]


def test_worker_hosts_get_users_and_passwords_of_their_own() -> None:
    """The redis role lists game@HOST / eval@HOST for each worker host; the bgai role gives each
    host only its own password (derived from the role's secret), as `bgai acl` does locally."""
    from bgai.store.acl import host_passwords

    module = ansible_filters.plugin()
    filters = module.FilterModule().filters()
    passwords = {role: f"pw-{role}-0123456789abcdef" for role in ROLES}
    lines = filters["bgai_acl_lines"](passwords, "bgai", ["w1", "w2"])
    assert lines == acl_lines(Keys("bgai"), passwords, ["w1", "w2"])
    assert {line.split()[1] for line in lines} >= {"game@w1", "eval@w1", "game@w2", "eval@w2"}
    for role in ROLES:
        got = filters["bgai_host_password"](passwords[role], role, "w1")
        assert got == host_passwords(passwords, "w1")[role]
        assert (got != passwords[role]) == (role in ("game", "eval"))
    tasks = (REPO / "ansible" / "roles" / "redis" / "tasks" / "main.yml").read_text()
    assert "bgai_acl_lines(redis_prefix, redis_worker_nodes, redis_acl_text)" in tasks
    assert (
        "bgai_host_password(item, ansible_facts.nodename)"
        in (REPO / "ansible" / "roles" / "bgai" / "tasks" / "main.yml").read_text()
    )


def test_web_base_filter_keeps_a_hash_that_verifies(tmp_path: Path) -> None:
    """Prometheus's web.base.yml (remote workers): bgai.obs.webconfig's form; a second run
    writes the same file (the hash in place is kept while it verifies: bcrypt salts each one
    anew); a new password or certificate path changes it."""
    import bcrypt

    from bgai.obs import webconfig

    module = ansible_filters.plugin()
    web_base = module.FilterModule().filters()["bgai_web_base"]
    password = "pw-prometheus-0123456789"
    first = web_base("", "/p/tls/prometheus.crt", "/p/tls/prometheus.key", {"admin": password})
    (tmp_path / "web.base.yml").write_text(first)
    data = webconfig.read(tmp_path / "web.base.yml")
    assert data["tls_server_config"] == {
        "cert_file": "/p/tls/prometheus.crt",
        "key_file": "/p/tls/prometheus.key",
        "min_version": "TLS12",
    }
    assert bcrypt.checkpw(password.encode(), data["basic_auth_users"]["admin"].encode())
    assert password not in first
    assert web_base(first, "/p/tls/prometheus.crt", "/p/tls/prometheus.key", {"admin": password}) == first
    changed = web_base(first, "/p/tls/prometheus.crt", "/p/tls/prometheus.key", {"admin": password + "x"})
    assert changed != first
    moved = web_base(first, "/q/prometheus.crt", "/q/prometheus.key", {"admin": password})
    assert yaml.safe_load(moved)["basic_auth_users"] == data["basic_auth_users"]
    assert web_base("not: [yaml", "/c", "/k", {"admin": password}).startswith("basic_auth_users:")
