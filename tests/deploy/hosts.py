"""Worker "hosts" for the deployment test: each a Debian rootfs of its own, in its own network,
PID, mount and UTS namespaces, running sshd on an address of a bridge this module makes.

The rootfs is built once with debootstrap (about a minute) and cached as a tarball under
runs/cache/ (deploy_cache.py); every host unpacks a fresh copy. It carries only what a bare
Debian server would, plus what the roles install with apt (the namespaces have no route to the
internet, so those packages must already be there: the apt tasks then find them installed):
openssh-server, python3, python3-venv, python3-apt, prometheus-node-exporter, and prometheus
(the metrics agent of a host joined by token, test_deploy.py's r1). Python packages
reach the hosts through the deployment's own wheelhouse option (`bgai_wheelhouse`).

Only addresses this module creates are used: a bridge on 10.231.0.1/24, hosts at .11, .12, ...
Everything goes when the host's namespace process is killed (PID namespace), then the
netns and the bridge are deleted.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy_cache import rootfs_tarball, sh

BRIDGE = "bgaibr0"
NET = "10.231.0"
HEAD_ADDRESS = f"{NET}.1"


@dataclass
class Host:
    name: str
    address: str
    root: Path
    netns: str
    proc: subprocess.Popen[bytes] | None = None

    def ssh_up(self) -> bool:
        try:
            with socket.create_connection((self.address, 22), timeout=1) as s:
                return s.recv(4).startswith(b"SSH")
        except OSError:
            return False


@dataclass
class Hosts:
    """A bridge and the hosts on it; `close()` removes everything."""

    workdir: Path
    pubkey: str
    hosts: list[Host] = field(default_factory=list)

    def open(self) -> None:
        sh("ip", "link", "del", BRIDGE, check=False)
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{HEAD_ADDRESS}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")

    def add(self, name: str) -> Host:
        index = len(self.hosts) + 1
        host = Host(name, f"{NET}.{10 + index}", self.workdir / name, f"bgai-{name}")
        self.hosts.append(host)
        host.root.mkdir(parents=True)
        sh("tar", "-C", host.root, "-xf", rootfs_tarball())
        ssh_dir = host.root / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(self.pubkey)
        (host.root / "etc" / "hostname").write_text(name + "\n")
        (host.root / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n{host.address} {name}\n")
        sh("ip", "netns", "del", host.netns, check=False)
        sh("ip", "netns", "add", host.netns)
        veth = f"vb{index}{name[:8]}"
        sh("ip", "link", "del", veth, check=False)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        sh("ip", "link", "set", veth, "master", BRIDGE, "up")
        sh("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        sh("ip", "-n", host.netns, "link", "set", "eth0", "up")
        sh("ip", "-n", host.netns, "link", "set", "lo", "up")
        r = host.root
        boot = (
            f"mount --rbind /dev {r}/dev && mount -t proc proc {r}/proc && mount -t sysfs sysfs {r}/sys"
            f" && mount -t tmpfs tmpfs {r}/run && mkdir -p {r}/run/sshd"
            f" && exec chroot {r} /bin/sh -c 'hostname {name} && exec /usr/sbin/sshd -D -e'"
        )
        with (self.workdir / f"{name}.sshd.log").open("wb") as log:
            host.proc = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, "unshare", "--pid", "--fork", "--kill-child",
                 "--mount", "--uts", "sh", "-c", boot],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return host

    def wait_ssh(self, timeout_s: float = 30.0) -> None:
        start = time.monotonic()
        for host in self.hosts:
            while not host.ssh_up():
                assert host.proc is not None and host.proc.poll() is None, f"{host.name}: sshd exited"
                assert time.monotonic() - start < timeout_s, f"{host.name}: sshd not up"
                time.sleep(0.2)  # polling a condition

    def close(self) -> None:
        for host in self.hosts:
            if host.proc is not None and host.proc.poll() is None:
                host.proc.kill()  # --kill-child: the namespace's PID 1 and so everything in it
                host.proc.wait(timeout=30)
            sh("ip", "netns", "del", host.netns, check=False)
        sh("ip", "link", "del", BRIDGE, check=False)
        for host in self.hosts:
            shutil.rmtree(host.root, ignore_errors=True)
