"""Checkpoints: params, optimizer state, step, model version, RNG and config hash.

Stored as msgpack (flax.serialization), never pickle, behind a small JSON
header; written to a temporary file, fsynced, renamed, and the directory fsynced, so a crash
or a power loss leaves either the old or the new file. Only the newest `keep` are kept, and a
state holding a NaN or an infinity is never written. `load_newest` restores the newest file
that passes its checks: a corrupt one is renamed `<name>.bad` (kept for a post-mortem, never
listed again) and the next older one tried; temporary files a crash left behind are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization

from bgai.durable import fsync_dir, replace_durably
from bgai.errors import CorruptDataError, IncompatibleError
from bgai.store.codec import check_finite

log = logging.getLogger(__name__)

MAGIC = b"BGAICKPT1\n"
_NAME = re.compile(r"^ckpt_(\d{9})\.bgai$")
_TMP = re.compile(r"^ckpt_(\d{9})\.tmp$")


def save_checkpoint(
    directory: Path, step: int, state: dict[str, Any], meta: dict[str, Any], keep: int = 3
) -> Path:
    """Write `state` (a pytree of arrays) and JSON-able `meta`; prune to the newest `keep`.
    NonFiniteWeightsError (nothing written) if a float in `state` is NaN or infinite."""
    directory.mkdir(parents=True, exist_ok=True)
    check_finite(state, f"checkpoint at step {step}")
    body = serialization.msgpack_serialize(serialization.to_state_dict(state))
    header = json.dumps({**meta, "step": step, "sha256": hashlib.sha256(body).hexdigest()}).encode()
    path = directory / f"ckpt_{step:09d}.bgai"
    replace_durably(path, MAGIC + len(header).to_bytes(4, "big") + header + body, path.with_suffix(".tmp"))
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    remove_stale_tmp(directory, below=step)
    return path


def write_durably(path: Path, data: bytes) -> None:
    """Replace `path` with `data` as a save does: temporary file, fsync, rename, directory fsync
    (a crash or a power loss leaves the old content or the new, never a mix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_durably(path, data)


def remove_stale_tmp(directory: Path, below: int | None = None) -> list[Path]:
    """Delete the temporary files of saves that never finished (all, or those of steps < `below`:
    steps only grow, so an older one is a crash's leftover, never a save in progress)."""
    if not directory.is_dir():
        return []
    stale = [
        p for p in directory.iterdir() if (m := _TMP.match(p.name)) and (below is None or int(m[1]) < below)
    ]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def quarantine(path: Path) -> Path:
    """Rename a checkpoint that failed its checks to `<name>.bad`: out of every listing, kept."""
    bad = path.with_name(path.name + ".bad")
    os.replace(path, bad)
    fsync_dir(path.parent)
    return bad


def load_newest(
    directory: Path, template: dict[str, Any], model_hash: str | None = None
) -> tuple[dict, dict, Path] | None:
    """(state, meta, path) of the newest checkpoint in `directory` that passes its checks, or None.

    A corrupt file (truncated, bad checksum, not a checkpoint, a NaN state) is logged, renamed
    `.bad` and skipped for the next older one. A file of another model (IncompatibleError) is
    raised: the config is what is wrong, and older files of the run would not fit either.
    Temporary files a crash left behind are removed first (one writer per directory: the
    trainer lock).
    """
    for tmp in remove_stale_tmp(directory):
        log.warning("removed %s, left by a save that never finished", tmp)
    for path in reversed(list_checkpoints(directory)):
        try:
            state, meta = load_checkpoint(path, template, model_hash)
            check_finite(state, str(path))  # written before saves refused NaN: as bad
        except CorruptDataError as exc:
            log.error(
                "checkpoint %s refused (%s): renamed %s; trying an older one",
                path,
                exc,
                quarantine(path).name,
            )
            continue
        return state, meta, path
    return None


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def state_digest(state: Any) -> str:
    """SHA-256 of a state pytree's values (device or host arrays alike): equal digests, equal
    params, optimizer state and step, bit for bit."""
    import jax

    host = jax.tree.map(np.asarray, jax.device_get(state))
    return hashlib.sha256(serialization.msgpack_serialize(serialization.to_state_dict(host))).hexdigest()[:16]


def read_meta(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON header (model_version, step, ...) without reading its body."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC) + 4)
        if not head.startswith(MAGIC):
            raise CorruptDataError(f"{path}: not a bgai checkpoint")
        try:
            return dict(json.loads(f.read(int.from_bytes(head[len(MAGIC) :], "big"))))
        except ValueError as exc:
            raise CorruptDataError(f"{path}: unreadable header") from exc


def _read(path: Path, model_hash: str | None) -> tuple[Any, dict]:
    """(the raw state dict, meta) of a checkpoint file; refuses corrupt or foreign files."""
    raw = path.read_bytes()
    if not raw.startswith(MAGIC):
        raise CorruptDataError(f"{path}: not a bgai checkpoint")
    n = int.from_bytes(raw[len(MAGIC) : len(MAGIC) + 4], "big")
    start = len(MAGIC) + 4
    try:
        meta = json.loads(raw[start : start + n])
    except ValueError as exc:
        raise CorruptDataError(f"{path}: unreadable header") from exc
    body = raw[start + n :]
    if hashlib.sha256(body).hexdigest() != meta.get("sha256"):
        raise CorruptDataError(f"{path}: checksum mismatch (truncated or corrupt)")
    if model_hash is not None and meta.get("model_hash") != model_hash:
        members = len(meta.get("ensemble_steps", ()))
        hint = f" (an ensemble of {members} nets: --set model.ensemble={members})" if members else ""
        raise IncompatibleError(
            f"{path}: model hash {meta.get('model_hash')} differs from the configured {model_hash}{hint}"
        )
    return serialization.msgpack_restore(body), meta


def read_state(path: Path, model_hash: str | None = None) -> tuple[Any, dict]:
    """(the raw state dict, meta) of a checkpoint, checked as a load checks it, without a template
    (`bgai average-checkpoints` reads any run's checkpoints this way)."""
    return _read(path, model_hash)


def load_checkpoint(path: Path, template: dict[str, Any], model_hash: str | None = None) -> tuple[dict, dict]:
    """(state restored into `template`'s structure, meta). Refuses corrupt or foreign files."""
    loaded, meta = _read(path, model_hash)
    _check_shapes(serialization.to_state_dict(template), loaded, str(path))
    return serialization.from_state_dict(template, loaded), meta


def load_params(path: Path, params_template: Any, model_hash: str | None = None) -> tuple[Any, dict]:
    """(params, meta) of any bgai checkpoint (the fleet's or train-local's: only params are read)."""
    loaded, meta = _read(path, model_hash)
    if not isinstance(loaded, dict) or "params" not in loaded:
        raise IncompatibleError(f"{path}: no params in the checkpoint")
    _check_shapes(serialization.to_state_dict(params_template), loaded["params"], f"{path}/params")
    return serialization.from_state_dict(params_template, loaded["params"]), meta


def _check_shapes(want: Any, got: Any, where: str) -> None:
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(want) != set(got):
            raise IncompatibleError(f"{where}: structure differs from the model")
        for k in want:
            _check_shapes(want[k], got[k], f"{where}/{k}")
    elif hasattr(want, "shape") and np.shape(want) != np.shape(got):
        raise IncompatibleError(f"{where}: shape {np.shape(got)} != {np.shape(want)}")
