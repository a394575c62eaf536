"""Files that survive a crash or a power loss (checkpoints, the publish record, spool files):
written whole to a temporary file beside the target, fsynced, renamed over it, and the directory
fsynced, so the target holds the old content or the new, never a mix, and the rename itself is
on disk. Standard library only: any layer may use it."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make the renames and unlinks done in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(path: Path, data: bytes, tmp: Path | None = None, *, sync_dir: bool = True) -> None:
    """Replace `path` with `data` through `tmp` (default `<path>.part`). With `sync_dir=False` the
    caller fsyncs the directory once for several files."""
    tmp = path.with_name(path.name + ".part") if tmp is None else tmp
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(path.parent)
