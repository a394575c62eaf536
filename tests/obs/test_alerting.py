"""Alertmanager's configuration (bgai.obs.alerting), checked by Debian's amtool."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bgai.obs.alerting import alertmanager_config

AMTOOL = shutil.which("amtool")


def write(tmp_path: Path, webhook: str) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "alertmanager.yml"
    cmd = [sys.executable, "-m", "bgai.obs.alerting", "--webhook", webhook, "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.mark.skipif(AMTOOL is None, reason="amtool (prometheus-alertmanager) is not installed")
@pytest.mark.parametrize("webhook", ["http://127.0.0.1:9/alerts", ""])
def test_the_config_is_valid_for_alertmanager(tmp_path: Path, webhook: str) -> None:
    assert write(tmp_path, webhook).returncode == 0
    check = subprocess.run(
        [AMTOOL, "check-config", tmp_path / "alertmanager.yml"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    receiver = config["receivers"][0]
    assert config["route"]["receiver"] == receiver["name"]
    if webhook:  # firing and resolved alerts both go to the webhook
        assert receiver["webhook_configs"] == [{"url": webhook, "send_resolved": True}]
    else:
        assert "webhook_configs" not in receiver


@pytest.mark.parametrize("webhook", ["ftp://host/x", "localhost:9000", "http://"])
def test_a_bad_webhook_is_one_line_and_exit_2(tmp_path: Path, webhook: str) -> None:
    out = write(tmp_path, webhook)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and webhook in out.stderr
    assert not (tmp_path / "alertmanager.yml").exists()
    with pytest.raises(ValueError):
        alertmanager_config(webhook)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (prometheus) is not installed")
def test_the_rules_fire_on_the_series_a_failing_fleet_exports() -> None:
    """`promtool test rules`: a trainer gone, fewer game (or eval) workers than expected, self-play
    stopped, the Watchdog; and the same rules quiet where the fleet is whole."""
    tests = Path(__file__).parent / "data" / "rules_test.yml"
    out = subprocess.run(["promtool", "test", "rules", tests], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
