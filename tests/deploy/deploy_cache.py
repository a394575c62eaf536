"""What the deployment test downloads before it can start: the worker hosts' Debian rootfs (built
with debootstrap) and the wheelhouse the hosts install bgai's dependencies from. Both are cached
under runs/cache/ (keyed by what they hold), so they are made once per checkout.

Making them is mostly waiting on the network (Debian's archive, PyPI), so `scripts/test` starts
`python tests/deploy/deploy_cache.py` in the background while the other fleet tests run; the
test's fixture calls the same functions, which take the same lock and so wait for a preparation in
progress, then find its result (or make it themselves if it failed).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "runs" / "cache"
BIN = Path(sys.executable).parent
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# prometheus: the agent that sends the metrics of a host joined by token (test_deploy.py's r1)
PACKAGES = "openssh-server,python3,python3-venv,python3-apt,prometheus-node-exporter,procps,prometheus"
PY3112 = ["async-timeout>=4.0.3"]  # (supervisor comes with bgai's own dependencies)


def sh(*cmd: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], check=check, capture_output=True, text=True)


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """One maker at a time per cached thing (another process waits here, then finds it made)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def rootfs_tarball() -> Path:
    """The cached rootfs tarball (built with debootstrap when missing)."""
    tarball = CACHE / f"rootfs-{SUITE}-{hashlib.sha256(PACKAGES.encode()).hexdigest()[:10]}.tar"
    with _locked("rootfs"):
        if tarball.exists():
            return tarball
        build = CACHE / "rootfs.build"
        shutil.rmtree(build, ignore_errors=True)
        sh("debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, build, MIRROR)
        sh("tar", "-C", build, "-cf", f"{tarball}.tmp", ".")
        Path(f"{tarball}.tmp").rename(tarball)
        shutil.rmtree(build, ignore_errors=True)
    return tarball


def wheelhouse() -> Path:
    """Every wheel the hosts need (bgai's dependencies, with the head and worker extras, at the
    versions constraints.txt pins), cached per pyproject.toml and constraints.txt; bgai itself is
    not among them (deploy.yml builds and ships it)."""
    pins = (REPO / "pyproject.toml").read_bytes() + (REPO / "constraints.txt").read_bytes()
    key = hashlib.sha256(pins + " ".join(PY3112).encode())
    wheels = CACHE / f"wheels-{key.hexdigest()[:12]}"
    with _locked("wheels"):
        if wheels.is_dir():
            return wheels
        partial = Path(f"{wheels}.tmp")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(
            [BIN / "python", "-m", "pip", "download", "-q", "-d", partial, "-c", REPO / "constraints.txt",
             f"{REPO}[head,worker]", *PY3112],
            check=True, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        for sdist in partial.glob("bgai-*"):
            sdist.unlink()
        partial.rename(wheels)
    return wheels


if __name__ == "__main__":  # scripts/test: prepare in the background
    print(rootfs_tarball(), wheelhouse(), flush=True)
