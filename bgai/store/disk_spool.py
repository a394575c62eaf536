"""A game worker's spool on disk: the episodes Redis has not taken survive the process.

One directory per worker (`selfplay.spool_dir/{prefix}/{worker id}`), held by one process at a
time (an exclusive `flock` on its `lock` file, released by the kernel when the process dies, even
by kill -9). Inside:

    lock                          the flock target (empty)
    source                        this worker's dedup name in `buffer:sources` (`{worker id}/{hex}`),
                                  made once, so every process start of the worker reuses it
    {first:012d}-{last:012d}.spool   episodes first..last, of one source and one run
    *.bad                         files refused at load, set aside (kept, never read again)

A spool file (little-endian):

    magic "BGSPOOL1" | u32 crc32 of everything after it | u32 header length |
    header JSON {prefix, source, run, first, sizes: [bytes of each episode]} | the episodes

Written to `.{name}.tmp`, fsynced, renamed into place, and the directory fsynced: a crash leaves a
whole file or a temporary one, which the next start removes. A file is deleted once every episode
in it has left the spool (pushed, or dropped). This module only touches files; the pushes and
their dedup by (source, seq) are `bgai.store.spool`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import struct
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bgai.durable import fsync_dir, replace_durably
from bgai.errors import BgaiError, CorruptDataError
from bgai.store.codec import MAX_EPISODE_BYTES, expand_episode

log = logging.getLogger(__name__)

MAGIC = b"BGSPOOL1"
_HEAD = struct.Struct("<8sII")  # magic, crc32, header length
MAX_FILE_EPISODES = 256  # episodes per file (a persist writes several files if it needs more)
MAX_HEADER = 64 * 1024
MAX_SOURCE = 256
_NAME = re.compile(r"^(\d{12})-(\d{12})\.spool$")
_TMP = re.compile(r"^\..+\.tmp$")  # `_write_durably` leftovers (a spool file or `source`)
_KNOWN = ("lock", "source")


class SpoolDirError(BgaiError):
    """The spool directory cannot be used (in use by another process, not writable)."""


@dataclass
class Spooled:
    """One finished episode waiting for Redis; `file` is the spool file holding it (None: only
    in memory so far)."""

    source: str
    run: str
    seq: int
    blob: bytes
    file: str | None = None


def worker_dir(root: Path, prefix: str, worker_id: str) -> Path:
    """`root/prefix/worker`: the worker id with anything but [A-Za-z0-9_.-] as `_`."""
    return root / prefix / (re.sub(r"[^A-Za-z0-9_.-]", "_", worker_id) or "_")


def _write_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file (fsynced, renamed; the caller fsyncs the
    directory)."""
    replace_durably(path, data, path.with_name(f".{path.name}.tmp"), sync_dir=False)


def encode_file(prefix: str, items: list[Spooled]) -> bytes:
    """One spool file's bytes for `items` (consecutive seqs of one source and one run)."""
    header = json.dumps(
        {
            "prefix": prefix,
            "source": items[0].source,
            "run": items[0].run,
            "first": items[0].seq,
            "sizes": [len(it.blob) for it in items],
        }
    ).encode()
    rest = struct.pack("<I", len(header)) + header + b"".join(it.blob for it in items)
    return MAGIC + struct.pack("<I", zlib.crc32(rest)) + rest  # the crc covers all after it


def decode_file(name: str, data: bytes, prefix: str) -> list[Spooled]:
    """The episodes of one spool file; CorruptDataError saying why it is refused."""
    m = _NAME.match(name)
    if m is None:
        raise CorruptDataError("not a spool file name")
    if len(data) < _HEAD.size:
        raise CorruptDataError(f"{len(data)} bytes: truncated")
    magic, crc, hlen = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise CorruptDataError("bad magic (not a bgai spool file, or another format)")
    if zlib.crc32(data[12:]) != crc:
        raise CorruptDataError("checksum mismatch (truncated or damaged)")
    if hlen > MAX_HEADER or _HEAD.size + hlen > len(data):
        raise CorruptDataError(f"header of {hlen} bytes")
    head = _header(data[_HEAD.size : _HEAD.size + hlen])
    if head["prefix"] != prefix:
        raise CorruptDataError(f"episodes of prefix {head['prefix']!r}, not {prefix!r}")
    first, sizes = head["first"], head["sizes"]
    if (first, first + len(sizes) - 1) != (int(m[1]), int(m[2])):
        raise CorruptDataError("its name and its header disagree on the seqs")
    if _HEAD.size + hlen + sum(sizes) != len(data):
        raise CorruptDataError("episode sizes do not add up to the file")
    out, at = [], _HEAD.size + hlen
    for i, size in enumerate(sizes):
        blob = data[at : at + size]
        at += size
        expand_episode(blob)  # validated whole, as the trainer will: the buffer takes it
        out.append(Spooled(head["source"], head["run"], first + i, blob, name))
    return out


def _header(raw: bytes) -> dict[str, Any]:
    try:
        head = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptDataError("header is not JSON") from exc
    ok = (
        isinstance(head, dict)
        and all(isinstance(head.get(k), str) for k in ("prefix", "source", "run"))
        and 0 < len(head["source"]) <= MAX_SOURCE
        and isinstance(head.get("first"), int)
        and head["first"] >= 0
        and isinstance(head.get("sizes"), list)
        and 0 < len(head["sizes"]) <= MAX_FILE_EPISODES
        and all(isinstance(s, int) and 0 < s <= MAX_EPISODE_BYTES for s in head["sizes"])
    )
    if not ok:
        raise CorruptDataError("header fields missing or out of range")
    return head


class DiskSpool:
    """One worker's spool directory. The constructor does no I/O; `open` takes the lock."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.dir, self.prefix = directory, prefix
        self._lock_fd: int | None = None
        self.refused = 0  # files set aside as `.bad` by `open`

    def open(self, worker_id: str) -> tuple[str, list[Spooled]]:
        """Lock the directory; (the worker's source, the episodes kept, oldest first).

        SpoolDirError if another process holds it or it cannot be made. Leftover temporary files
        are removed; a file that fails its checks is logged and renamed `<name>.bad`."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolDirError(f"spool directory {self.dir}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise SpoolDirError(
                f"spool directory {self.dir} is in use by another process "
                "(two game workers with the same --worker-id on this host?)"
            ) from exc
        self._lock_fd = fd
        source = self._source(worker_id)
        items: list[Spooled] = []
        for path in sorted(self.dir.iterdir()):
            name = path.name
            if name in _KNOWN or name.endswith(".bad") or not path.is_file():
                continue
            if _TMP.match(name):
                path.unlink(missing_ok=True)  # a write a crash interrupted: never renamed in
                continue
            try:
                if path.stat().st_size > _HEAD.size + MAX_HEADER + MAX_FILE_EPISODES * MAX_EPISODE_BYTES:
                    raise CorruptDataError(f"{path.stat().st_size} bytes: larger than a spool file can be")
                items += decode_file(name, path.read_bytes(), self.prefix)
            except (CorruptDataError, OSError) as exc:
                self._set_aside(path, str(exc))
        fsync_dir(self.dir)
        items.sort(key=lambda it: it.seq)
        return source, items

    def _source(self, worker_id: str) -> str:
        path = self.dir / "source"
        try:
            text = path.read_text().strip() if path.exists() else ""
        except (OSError, UnicodeDecodeError):
            text = "\0"
        if text and len(text) <= MAX_SOURCE and text.isprintable() and text.startswith(f"{worker_id}/"):
            return text
        if text:
            self._set_aside(path, "not this worker's source name")
        source = f"{worker_id}/{uuid.uuid4().hex[:12]}"
        _write_durably(path, source.encode())
        fsync_dir(self.dir)
        return source

    def _set_aside(self, path: Path, why: str) -> None:
        self.refused += 1
        log.warning("spool file %s refused (%s): set aside as %s.bad", path, why, path.name)
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name(path.name + ".bad"))

    def write(self, items: list[Spooled]) -> None:
        """Store `items` (not yet on disk, oldest first) in as few files as their runs, sources
        and consecutive seqs allow; sets each item's `file`. OSError propagates (disk full...)."""
        groups: list[list[Spooled]] = []
        for it in items:
            g = groups[-1] if groups else None
            if (
                g is not None
                and len(g) < MAX_FILE_EPISODES
                and (it.source, it.run, it.seq) == (g[-1].source, g[-1].run, g[-1].seq + 1)
            ):
                g.append(it)
            else:
                groups.append([it])
        for g in groups:
            name = f"{g[0].seq:012d}-{g[-1].seq:012d}.spool"
            _write_durably(self.dir / name, encode_file(self.prefix, g))
            for it in g:
                it.file = name
        if groups:
            fsync_dir(self.dir)  # the renames survive a power loss

    def remove(self, names: Iterable[str]) -> None:
        """Delete spool files whose every episode has left the spool (no directory fsync: a file
        that comes back after a crash is pushed again and skipped as a duplicate)."""
        for name in names:
            try:
                (self.dir / name).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot remove spool file %s (%s)", self.dir / name, exc)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
