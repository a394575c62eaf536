"""Keeping a joined host's supervisord running: a systemd unit (a user unit with lingering, so
it survives logout; a system unit when run as root), a launchd agent on macOS, or nothing (the
foreground mode of a container or a notebook: `bgai join --foreground`)."""

from __future__ import annotations

import getpass
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

UNIT = "bgai-worker"
LABEL = "org.bgai.worker"


@dataclass(frozen=True)
class Service:
    kind: str  # systemd-user | systemd-system | launchd
    path: Path  # the unit or plist
    start: tuple[tuple[str, ...], ...]  # the commands that (re)start it
    stop: tuple[tuple[str, ...], ...]


def supervisord_command(bin_dir: Path, conf: Path) -> list[str]:
    return [str(bin_dir / "supervisord"), "-n", "-c", str(conf)]


def plan() -> Service | None:
    """How this host keeps supervisord running; None where neither systemd nor launchd runs."""
    if platform.system() == "Darwin":
        path = Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        domain = f"gui/{os.getuid()}"
        return Service(
            "launchd",
            path,
            (("launchctl", "bootout", f"{domain}/{LABEL}"), ("launchctl", "bootstrap", domain, str(path))),
            (("launchctl", "bootout", f"{domain}/{LABEL}"),),
        )
    if shutil.which("systemctl") is None or not Path("/run/systemd/system").is_dir():
        return None
    if os.geteuid() == 0:
        path = Path("/etc/systemd/system") / f"{UNIT}.service"
        ctl: tuple[str, ...] = ("systemctl",)
    else:
        path = Path.home() / ".config" / "systemd" / "user" / f"{UNIT}.service"
        ctl = ("systemctl", "--user")
    return Service(
        "systemd-system" if os.geteuid() == 0 else "systemd-user",
        path,
        ((*ctl, "daemon-reload"), (*ctl, "enable", UNIT), (*ctl, "restart", UNIT)),
        ((*ctl, "disable", "--now", UNIT),),
    )


def unit_text(service: Service, bin_dir: Path, conf: Path) -> str:
    args = supervisord_command(bin_dir, conf)
    if service.kind == "launchd":
        items = "".join(f"<string>{a}</string>" for a in args)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
            f'<plist version="1.0"><dict><key>Label</key><string>{LABEL}</string>'
            f"<key>ProgramArguments</key><array>{items}</array>"
            "<key>RunAtLoad</key><true/><key>KeepAlive</key><true/></dict></plist>\n"
        )
    wanted = "multi-user.target" if service.kind == "systemd-system" else "default.target"
    return (
        "# written by `bgai join`\n[Unit]\nDescription=bgai worker host (supervisord)\n"
        "After=network-online.target\n\n"
        f"[Service]\nExecStart={' '.join(args)}\nRestart=on-failure\nRestartSec=5\n\n"
        f"[Install]\nWantedBy={wanted}\n"
    )


def install(service: Service, bin_dir: Path, conf: Path) -> list[str]:
    """Write the unit, (re)start it; the notes worth telling the user."""
    service.path.parent.mkdir(parents=True, exist_ok=True)
    service.path.write_text(unit_text(service, bin_dir, conf))
    notes = []
    for i, cmd in enumerate(service.start):
        check = not (service.kind == "launchd" and i == 0)  # bootout of an agent not loaded fails
        subprocess.run(cmd, check=check, capture_output=True, text=True)
    if service.kind == "systemd-user" and shutil.which("loginctl"):
        done = subprocess.run(
            ["loginctl", "enable-linger", getpass.getuser()], capture_output=True, text=True
        )
        if done.returncode != 0:
            notes.append(
                "could not enable lingering (`loginctl enable-linger`): the workers stop at logout "
                f"until an administrator runs it ({done.stderr.strip()[:120]})"
            )
    if service.kind == "launchd":
        notes.append("a launchd agent runs while this user is logged in (a LaunchDaemon, as root, would not)")
    return notes
