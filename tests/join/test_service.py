"""How `bgai join` keeps the host's supervisord running: the systemd unit (user or system) and the
launchd agent it writes, and the commands it runs. systemd and launchd do not run here, so the
commands are stand-ins on PATH that record their arguments; the unit files are checked whole."""

from __future__ import annotations

import os
import plistlib
import stat
from pathlib import Path

import pytest

from bgai.join import service

BIN = Path("/opt/bgai-test/venv/bin")
CONF = Path("/home/u/bgai/supervisord.conf")


def recorder(bin_dir: Path, name: str, log: Path, code: int = 0) -> None:
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexit {code}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in ("systemctl", "loginctl", "launchctl"):
        recorder(bin_dir, name, log)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    return log


def test_a_systemd_user_unit_runs_supervisord_in_the_foreground_and_restarts_it() -> None:
    svc = service.Service("systemd-user", Path("/x.service"), (), ())
    text = service.unit_text(svc, BIN, CONF)
    assert f"ExecStart={BIN}/supervisord -n -c {CONF}\n" in text
    assert "Restart=on-failure" in text and "WantedBy=default.target" in text
    system = service.unit_text(service.Service("systemd-system", Path("/x"), (), ()), BIN, CONF)
    assert "WantedBy=multi-user.target" in system


def test_a_launchd_agent_keeps_supervisord_alive() -> None:
    svc = service.Service("launchd", Path("/x.plist"), (), ())
    plist = plistlib.loads(service.unit_text(svc, BIN, CONF).encode())
    assert plist == {
        "Label": service.LABEL,
        "ProgramArguments": [f"{BIN}/supervisord", "-n", "-c", str(CONF)],
        "RunAtLoad": True,
        "KeepAlive": True,
    }


def test_installing_a_user_unit_enables_it_starts_it_and_keeps_it_after_logout(
    stand_ins: Path, tmp_path: Path
) -> None:
    unit = tmp_path / "home" / ".config" / "systemd" / "user" / "bgai-worker.service"
    ctl = ("systemctl", "--user")
    svc = service.Service(
        "systemd-user",
        unit,
        ((*ctl, "daemon-reload"), (*ctl, "enable", service.UNIT), (*ctl, "restart", service.UNIT)),
        ((*ctl, "disable", "--now", service.UNIT),),
    )
    notes = service.install(svc, BIN, CONF)
    assert unit.read_text() == service.unit_text(svc, BIN, CONF)
    calls = stand_ins.read_text().splitlines()
    assert calls[:3] == [
        "systemctl --user daemon-reload",
        "systemctl --user enable bgai-worker",
        "systemctl --user restart bgai-worker",
    ]
    assert calls[3].startswith("loginctl enable-linger ") and notes == []


def test_lingering_refused_is_said_not_fatal(stand_ins: Path, tmp_path: Path) -> None:
    recorder(Path(os.environ["PATH"].split(":")[0]), "loginctl", stand_ins, code=1)
    svc = service.Service(
        "systemd-user", tmp_path / "u.service", (("systemctl", "--user", "daemon-reload"),), ()
    )
    notes = service.install(svc, BIN, CONF)
    assert len(notes) == 1 and "stop at logout" in notes[0]


def test_a_failed_start_raises(stand_ins: Path, tmp_path: Path) -> None:
    recorder(Path(os.environ["PATH"].split(":")[0]), "systemctl", stand_ins, code=1)
    svc = service.Service(
        "systemd-user", tmp_path / "u.service", (("systemctl", "--user", "restart", "x"),), ()
    )
    with pytest.raises(Exception, match="systemctl"):
        service.install(svc, BIN, CONF)


def test_without_systemd_or_launchd_there_is_no_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service.platform, "system", lambda: "Linux")
    monkeypatch.setattr(service.shutil, "which", lambda name: None)
    assert service.plan() is None
