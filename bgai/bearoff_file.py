"""The bear-off database on disk: built once per host (`bgai.core.bearoff.build`, about 5 s on a
CPU core), kept as a checked file, read back in well under a second.

The file is a compressed `.npz` (numpy's zip of raw arrays; read with allow_pickle=False), with
`rolls`, `first` and `meta`: JSON with the format version, the arrays' shapes and the SHA-256 of
their bytes. A file that is missing, unreadable, of another version or shape, or whose bytes do
not hash to what it says, is logged with the reason and built again (then written atomically,
so a crash mid-write leaves the old file or none). Never the wrong numbers, never a crash.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from pathlib import Path

import numpy as np

from bgai.core import bearoff
from bgai.durable import replace_durably

log = logging.getLogger(__name__)

FORMAT = "bgai-bearoff-1"
FILE_NAME = "bearoff-os6-15.npz"


def _digest(rolls: np.ndarray, first: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (rolls, first):
        h.update(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return h.hexdigest()


def encode(rolls: np.ndarray, first: np.ndarray) -> bytes:
    meta = {"format": FORMAT, "shape": list(rolls.shape), "sha256": _digest(rolls, first)}
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        rolls=rolls.astype("<f4"),
        first=first.astype("<f4"),
        meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
    )
    return buf.getvalue()


class BearoffFileError(ValueError):
    """The file is not a bear-off database this code can trust."""


def decode(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            rolls, first = z["rolls"], z["first"]
    except Exception as exc:  # zip, npy or JSON damage: all the same to the caller
        raise BearoffFileError(f"unreadable ({type(exc).__name__}: {exc})") from exc
    want = [bearoff.NUM_POSITIONS, bearoff.MAX_ROLLS]
    if meta.get("format") != FORMAT:
        raise BearoffFileError(f"format {meta.get('format')!r}, not {FORMAT!r}")
    if list(rolls.shape) != want or list(first.shape) != want or meta.get("shape") != want:
        raise BearoffFileError(f"arrays of shape {list(rolls.shape)} / {list(first.shape)}, not {want}")
    if rolls.dtype != np.dtype("<f4") or first.dtype != np.dtype("<f4"):
        raise BearoffFileError(f"arrays of {rolls.dtype} / {first.dtype}, not float32")
    if _digest(rolls, first) != meta.get("sha256"):
        raise BearoffFileError("its arrays do not hash to the SHA-256 it records")
    return rolls, first


def load_or_build(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """(rolls, first) from `directory`'s file, else built and written there (best effort: an
    unwritable directory is logged and the built arrays returned)."""
    path = Path(directory).expanduser() / FILE_NAME
    try:
        return decode(path.read_bytes())
    except FileNotFoundError:
        log.info("bear-off database: none at %s, building it", path)
    except (OSError, BearoffFileError) as exc:
        log.warning("bear-off database: refusing %s (%s); building it again", path, exc)
    start = time.monotonic()
    rolls, first = bearoff.build()
    log.info("bear-off database: built in %.1f s", time.monotonic() - start)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_durably(path, encode(rolls, first))
    except OSError as exc:
        log.warning("bear-off database: cannot write %s (%s); using it from memory", path, exc)
    return rolls, first
