"""deploy.yml without hosts: syntax check, ansible-lint (offline), what is committed, and the
Redis ACL the redis role writes (bgai's own rules, through the filter plugin)."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bgai.store.acl import ROLES, acl_lines
from bgai.store.keys import Keys

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")


def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [str(c) for c in cmd]
    return subprocess.run(argv, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)


def test_syntax_check() -> None:
    out = run(BIN / "ansible-playbook", "--syntax-check", "deploy.yml")
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
    text = (REPO / "inventory.yml").read_text()
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
    plugin = REPO / "ansible" / "filter_plugins" / "bgai.py"
    spec = importlib.util.spec_from_file_location("bgai_filters", plugin)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
