"""Byte formats that cross the network: model weights and replay episodes. No pickle.

**Weights** `MAGIC_W | u32 header length | header JSON | body`. The body is flax's msgpack of the
params state dict (plain numbers and arrays, nothing executable). The header carries the format
version, the model version and training step, `model_hash` (what fixes the shapes),
`config_hash`, every leaf's shape and dtype and the body's sha256. `decode_weights` checks all of
them before anything is handed to a model: a corrupt blob raises `CorruptDataError`, a foreign
one (other format, model hash or shapes) `IncompatibleError`.

**Episodes** are row-addressable, so a sampler can read single positions with GETRANGE:

    header (16 B)  magic "BGEP", u8 format, i8 result, u16 rows, u32 model version, f32 surprise
    offsets        u32[rows + 1], byte offset of each row from the blob's start (last = end)
    row            i8 board[28] | u8 outcome class | u8 0 | u16 n plays | u8 steps[n][4] | u8 policy[n]

Only legal plays are stored and the policy is quantised to 1/255 (renormalised when decoded):
about 32 + 5n bytes per position instead of ~1.2 KB for padded float rows.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from flax import serialization
from flax.traverse_util import flatten_dict

from bgai.core import rules
from bgai.core.episodes import Episode
from bgai.errors import CorruptDataError, IncompatibleError

WEIGHTS_FORMAT = 1
MAGIC_W = b"BGAIWTS\n"

EPISODE_FORMAT = 1
MAGIC_E = b"BGEP"
_EP_HEADER = struct.Struct("<4sBbHIf")  # magic, format, result, rows, model version, surprise
EP_HEADER_SIZE = _EP_HEADER.size  # 16
ROW_FIXED = 32  # board 28, outcome 1, pad 1, n 2
_STEPS = rules.MAX_STEPS_PER_PLAY


# --------------------------------------------------------------------------------------------
# Weights


def _leaves(tree: Any) -> dict[str, tuple[list[int], str]]:
    flat = flatten_dict(serialization.to_state_dict(tree), sep="/")
    return {k: (list(np.shape(v)), str(np.asarray(v).dtype)) for k, v in sorted(flat.items())}


def encode_weights(params: Any, *, version: int, step: int, model_hash: str, config_hash: str) -> bytes:
    body = serialization.msgpack_serialize(serialization.to_state_dict(_to_numpy(params)), in_place=True)
    header = {
        "format": WEIGHTS_FORMAT,
        "version": version,
        "step": step,
        "model_hash": model_hash,
        "config_hash": config_hash,
        "leaves": _leaves(params),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    raw = json.dumps(header, sort_keys=True).encode()
    return MAGIC_W + struct.pack("<I", len(raw)) + raw + body


def _to_numpy(tree: Any) -> Any:
    import jax

    return jax.tree.map(np.asarray, tree)


def read_weights_header(blob: bytes) -> dict[str, Any]:
    """The header of a weights blob (checks the magic and JSON only)."""
    if not isinstance(blob, bytes | bytearray) or not blob.startswith(MAGIC_W):
        raise CorruptDataError("weights blob: bad magic (not bgai weights)")
    start = len(MAGIC_W) + 4
    if len(blob) < start:
        raise CorruptDataError("weights blob: truncated header")
    (n,) = struct.unpack_from("<I", blob, len(MAGIC_W))
    try:
        header = json.loads(bytes(blob[start : start + n]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptDataError(f"weights blob: unreadable header ({exc})") from None
    if not isinstance(header, dict):
        raise CorruptDataError("weights blob: header is not an object")
    return header


def decode_weights(blob: bytes, template: Any, model_hash: str) -> tuple[Any, dict[str, Any]]:
    """(params shaped like `template`, header) or CorruptDataError / IncompatibleError."""
    header = read_weights_header(blob)
    if header.get("format") != WEIGHTS_FORMAT:
        raise IncompatibleError(f"weights format {header.get('format')!r}, this bgai reads {WEIGHTS_FORMAT}")
    n = struct.unpack_from("<I", blob, len(MAGIC_W))[0]
    body = bytes(blob[len(MAGIC_W) + 4 + n :])
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise CorruptDataError("weights blob: checksum mismatch (truncated or corrupt)")
    if header.get("model_hash") != model_hash:
        raise IncompatibleError(
            f"weights are for model {header.get('model_hash')!r}, this worker runs {model_hash!r}"
        )
    want = _normal(_leaves(template))
    got = _normal(header.get("leaves"))
    if got != want:
        raise IncompatibleError(f"weights shapes differ from the model: {_diff(want, got)}")
    try:
        state = serialization.msgpack_restore(body)
        params = serialization.from_state_dict(template, state)
    except Exception as exc:  # msgpack/flax raise assorted types on malformed bodies
        raise CorruptDataError(f"weights blob: undecodable body ({type(exc).__name__}: {exc})") from None
    if _normal(_leaves(params)) != want:
        raise CorruptDataError("weights blob: body does not match its header")
    return params, header


def _normal(leaves: Any) -> dict[str, Any]:
    """{path: [shape list, dtype]} as JSON would give it back."""
    return json.loads(json.dumps(leaves if isinstance(leaves, dict) else {}))


def _diff(want: dict[str, Any], got: dict[str, Any]) -> str:
    names = sorted(set(want) | set(got))
    bad = [f"{k}: {got.get(k)} != {want.get(k)}" for k in names if want.get(k) != got.get(k)]
    return "; ".join(bad[:3]) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else "")


# --------------------------------------------------------------------------------------------
# Episodes


def encode_episode(ep: Episode, surprise: float = 0.0) -> bytes:
    """The episode codec (module docstring); raises ValueError on an unencodable episode."""
    rows = len(ep)
    if not 0 < rows < 2**16:
        raise ValueError(f"episode of {rows} decisions cannot be stored")
    outcome = ep.outcome
    parts: list[bytes] = []
    offsets = np.zeros(rows + 1, np.uint32)
    pos = EP_HEADER_SIZE + 4 * (rows + 1)
    for t in range(rows):
        legal = np.flatnonzero(ep.mask[t])
        n = len(legal)
        q = np.rint(np.clip(ep.policy[t, legal], 0.0, 1.0) * 255).astype(np.uint8)
        row = b"".join(
            (
                ep.boards[t].astype(np.int8).tobytes(),
                struct.pack("<BBH", int(outcome[t]), 0, n),
                ep.steps[t, legal].astype(np.uint8).tobytes(),
                q.tobytes(),
            )
        )
        offsets[t] = pos
        pos += len(row)
        parts.append(row)
    offsets[rows] = pos
    header = _EP_HEADER.pack(MAGIC_E, EPISODE_FORMAT, int(ep.result), rows, ep.model_version, surprise)
    return header + offsets.tobytes() + b"".join(parts)


@dataclass(frozen=True)
class EpisodeHeader:
    result: int
    rows: int
    model_version: int
    surprise: float


def read_episode_header(blob: bytes) -> EpisodeHeader:
    if len(blob) < EP_HEADER_SIZE:
        raise CorruptDataError("episode blob: truncated header")
    magic, fmt, result, rows, version, surprise = _EP_HEADER.unpack_from(blob)
    if magic != MAGIC_E:
        raise CorruptDataError("episode blob: bad magic")
    if fmt != EPISODE_FORMAT:
        raise IncompatibleError(f"episode format {fmt}, this bgai reads {EPISODE_FORMAT}")
    if len(blob) < EP_HEADER_SIZE + 4 * (rows + 1):
        raise CorruptDataError("episode blob: truncated offsets")
    return EpisodeHeader(result, rows, version, surprise)


def episode_rows(blob: bytes) -> list[bytes]:
    """Every row of an episode blob (checked)."""
    head = read_episode_header(blob)
    offsets = np.frombuffer(blob, np.uint32, head.rows + 1, EP_HEADER_SIZE)
    if offsets[-1] != len(blob) or np.any(np.diff(offsets.astype(np.int64)) < ROW_FIXED):
        raise CorruptDataError("episode blob: offsets do not match its length")
    return [blob[int(a) : int(b)] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def decode_rows(data: bytes, starts: np.ndarray, max_plays: int) -> dict[str, np.ndarray]:
    """Training arrays from rows laid end to end in `data`, row i beginning at `starts[i]`.

    Returns boards [N, 28] int8, steps [N, K, 4] uint8, mask [N, K] bool, policy [N, K] float32,
    outcome [N] int32 with K = max_plays (plays beyond K are dropped). Vectorised: no per-row loop.
    """
    buf = np.frombuffer(data, np.uint8)
    starts = np.asarray(starts, np.int64)
    n_rows = len(starts)
    if n_rows and (starts.max() + ROW_FIXED > len(buf)):
        raise CorruptDataError("episode rows: truncated")
    boards = buf[starts[:, None] + np.arange(28)].view(np.int8)
    outcome = buf[starts + 28].astype(np.int32)
    n = buf[starts + 30].astype(np.int64) | (buf[starts + 31].astype(np.int64) << 8)
    k = np.arange(max_plays)
    mask = k[None, :] < np.minimum(n, max_plays)[:, None]
    step_at = starts[:, None, None] + ROW_FIXED + k[None, :, None] * _STEPS + np.arange(_STEPS)
    pol_at = starts[:, None] + ROW_FIXED + n[:, None] * _STEPS + k[None, :]
    end = starts + ROW_FIXED + n * (_STEPS + 1)
    if n_rows and end.max() > len(buf):
        raise CorruptDataError("episode rows: play data past the end")
    steps = np.where(mask[:, :, None], buf[np.where(mask[:, :, None], step_at, 0)], rules.NO_STEP)
    quant = np.where(mask, buf[np.where(mask, pol_at, 0)], 0).astype(np.float32)
    total = quant.sum(axis=1, keepdims=True)
    policy = np.where(
        total > 0, quant / np.maximum(total, 1), mask / np.maximum(mask.sum(1, keepdims=True), 1)
    )
    if np.any(outcome > 5):
        raise CorruptDataError("episode rows: outcome class out of range")
    return {
        "boards": boards,
        "steps": steps.astype(np.uint8),
        "mask": mask,
        "policy": policy.astype(np.float32),
        "outcome": outcome,
    }
