"""Byte formats that cross the network: model weights and replay episodes. No pickle.

**Weights** `MAGIC_W | u32 header length | header JSON | body`. The body is flax's msgpack of the
params state dict (plain numbers and arrays, nothing executable). The header carries the format
version, the model version and training step, `model_hash` (what fixes the shapes),
`config_hash`, every leaf's shape and dtype and the body's sha256. `decode_weights` checks all of
them before anything is handed to a model: a corrupt blob raises `CorruptDataError`, a foreign
one (other format, model hash or shapes) `IncompatibleError`. Weights holding a NaN or an
infinity are neither encoded nor decoded (`NonFiniteWeightsError`).

**Episodes**: a 16-byte header in the clear, then the rest compressed (zstd level 3: ~5x
faster to expand than zlib for the same size, which matters to a trainer catching up):

    header (16 B)  magic "BGEP", u8 format, i8 result, u16 rows, u32 model version, f32 surprise
    offsets        u32[rows + 1], byte offset of each row in the expanded blob (last = its end)
    row            i8 board[28] | u8 outcome class | u8 0 | u16 n plays | u16 value[6]
                   | u8 steps[n][4] | u8 policy[n]

`value` is the row's value target (the mover's outcome distribution: a TD(lambda) return or a
1-ply expectation, `bgai.agent.EpisodeValues`) quantised to 1/65535; an episode written without
targets stores its final outcome (one-hot). Only legal plays are stored and the policy is
quantised to 1/255 (both renormalised when decoded): about 44 + 5n bytes per position before
compression, ~75 after, instead of ~1.2 KB for padded float
rows. The header stays readable without decompressing: Redis's eviction script reads the row
count from it. `expand_episode` gives the row-addressable expanded form; it never inflates a blob
past what its header's row count allows (`expanded_bound`), whatever the zstd frame declares.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard

from bgai.config_bounds import MAX_PLAYS
from bgai.core import layout as rules  # plain numbers: reading Redis never loads JAX
from bgai.core.episodes import Episode
from bgai.errors import CorruptDataError, IncompatibleError, NonFiniteWeightsError

WEIGHTS_FORMAT = 1
MAGIC_W = b"BGAIWTS\n"

EPISODE_FORMAT = 3  # 3: rows carry their value target
MAX_EXPANDED = 64 * 2**20  # refuse to inflate an episode past this (a corrupt or hostile blob)
MAX_ROW_PLAYS = MAX_PLAYS  # the most plays a row holds (movegen.max_plays is held below it)
MAX_EPISODE_BYTES = 4 * 2**20  # refuse to store a compressed episode past this (the push script too)
# The most compressed bytes per row an episode may average when stored (honest ones: ~70), plus
# a fixed slack for its header and zstd frame: the push script refuses anything larger, so the
# buffer's capacity in positions bounds its Redis memory (`bgai.store.budget`).
MAX_STORED_ROW_BYTES = 1024
STORED_EPISODE_SLACK = 256
MAGIC_E = b"BGEP"
_EP_HEADER = struct.Struct("<4sBbHIf")  # magic, format, result, rows, model version, surprise
EP_HEADER_SIZE = _EP_HEADER.size  # 16
ROW_FIXED = 44  # board 28, outcome 1, pad 1, n 2, value 12
_VALUE = slice(32, 44)  # the value target: u16[6]
VALUE_SCALE = 65535
NUM_OUTCOMES = 6  # outcome classes: win single / gammon / backgammon, lose the same (Episode.outcome)
RESULTS = (-3, -2, -1, 1, 2, 3)  # points won by player 0
MAX_CHECKERS = 15
MAX_SURPRISE = 1e30  # a stored surprise is finite, >= 0 and at most this (a float32)
_STEPS = rules.MAX_STEPS_PER_PLAY


# --------------------------------------------------------------------------------------------
# Weights


def _flat(tree: Any) -> dict[str, Any]:
    """A params tree's leaves by their "/"-joined paths. flax loads here, on first use: reading
    headers, episodes and Redis state (`bgai status`) never loads flax or JAX."""
    from flax import serialization
    from flax.traverse_util import flatten_dict

    return dict(flatten_dict(serialization.to_state_dict(tree), sep="/"))


def _leaves(tree: Any) -> dict[str, tuple[list[int], str]]:
    flat = _flat(tree)
    return {k: (list(np.shape(v)), str(np.asarray(v).dtype)) for k, v in sorted(flat.items())}


def non_finite_leaves(tree: Any) -> list[str]:
    """Paths of the float leaves of a params tree (or state dict) holding a NaN or an infinity."""
    flat = _flat(tree)
    return [
        k
        for k, v in sorted(flat.items())
        if np.issubdtype(np.asarray(v).dtype, np.inexact) and not np.isfinite(np.asarray(v)).all()
    ]


def check_finite(tree: Any, what: str) -> None:
    """NonFiniteWeightsError naming the first leaves of `tree` that hold a NaN or an infinity."""
    bad = non_finite_leaves(tree)
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise NonFiniteWeightsError(f"{what}: not finite in {', '.join(bad[:3])}{more}")


def encode_weights(params: Any, *, version: int, step: int, model_hash: str, config_hash: str) -> bytes:
    """The weights codec blob of `params`; NonFiniteWeightsError if any weight is NaN or infinite
    (a diverged network is never published)."""
    from flax import serialization

    check_finite(_to_numpy(params), f"weights of version {version}")
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
    from flax import serialization

    try:
        state = serialization.msgpack_restore(body)
        params = serialization.from_state_dict(template, state)
    except Exception as exc:  # msgpack/flax raise assorted types on malformed bodies
        raise CorruptDataError(f"weights blob: undecodable body ({type(exc).__name__}: {exc})") from None
    if _normal(_leaves(params)) != want:
        raise CorruptDataError("weights blob: body does not match its header")
    check_finite(params, "weights blob")
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
    value = np.asarray(ep.value_targets, np.float64)  # the final outcome if not labelled
    if value.shape != (rows, NUM_OUTCOMES) or not np.all(np.isfinite(value)):
        raise ValueError(f"episode value targets must be {rows} finite rows of {NUM_OUTCOMES}")
    quant_value = np.rint(np.clip(value, 0.0, 1.0) * VALUE_SCALE).astype("<u2")  # [T, 6]
    quant_value[quant_value.sum(-1) == 0] = VALUE_SCALE // NUM_OUTCOMES  # never an all-zero row
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
                quant_value[t].tobytes(),
                ep.steps[t, legal].astype(np.uint8).tobytes(),
                q.tobytes(),
            )
        )
        offsets[t] = pos
        pos += len(row)
        parts.append(row)
    offsets[rows] = pos
    # a diverged value head can give a NaN surprise: stored as 0, never as an episode readers refuse
    surprise = min(surprise, MAX_SURPRISE) if math.isfinite(surprise) and surprise > 0 else 0.0
    header = _EP_HEADER.pack(MAGIC_E, EPISODE_FORMAT, int(ep.result), rows, ep.model_version, surprise)
    # a content checksum in every frame: `expand_episode` requires and verifies it
    body = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(
        offsets.tobytes() + b"".join(parts)
    )
    return header + body


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
    return EpisodeHeader(result, rows, version, surprise)


def stored_bound(rows: int) -> int:
    """The most bytes an encoded episode of `rows` rows may take in the buffer."""
    return min(MAX_EPISODE_BYTES, STORED_EPISODE_SLACK + rows * MAX_STORED_ROW_BYTES)


_ZSTD = threading.local()  # one decompressor per thread (they are reusable, not thread-safe)


def _zstd() -> zstandard.ZstdDecompressor:
    if not hasattr(_ZSTD, "d"):
        _ZSTD.d = zstandard.ZstdDecompressor()
    return _ZSTD.d


def expanded_bound(rows: int) -> int:
    """The most bytes an episode of `rows` rows can expand to: header, offsets and rows of at most
    `MAX_ROW_PLAYS` plays each, and never past `MAX_EXPANDED`."""
    per_row = ROW_FIXED + (_STEPS + 1) * MAX_ROW_PLAYS
    return min(MAX_EXPANDED, EP_HEADER_SIZE + 4 * (rows + 1) + rows * per_row)


def _inflate(body: bytes, rows: int) -> bytes:
    """The zstd frame `body`, refused before it can expand past what `rows` rows allow.

    python-zstandard ignores `max_output_size` for a frame that declares its content size (and
    allocates that size up front), so the declared size is checked first; a frame that declares
    none is held to the bound by `max_output_size`. A frame must carry a content checksum (zstd
    verifies it), and extra bytes after it are refused.
    """
    bound = expanded_bound(rows)
    try:
        if not zstandard.get_frame_parameters(body).has_checksum:
            raise CorruptDataError("episode blob: its frame carries no content checksum")
        declared = zstandard.frame_content_size(body)
        if declared > bound:
            raise CorruptDataError(
                f"episode blob: its frame declares {declared} bytes, {rows} rows expand to at most {bound}"
            )
        return _zstd().decompress(body, max_output_size=bound, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CorruptDataError(f"episode blob: {exc}") from None
    except MemoryError:  # the bound is checked first; this is a host already short of memory
        raise CorruptDataError(f"episode blob: out of memory expanding {rows} rows") from None


def expand_episode(blob: bytes) -> bytes:
    """The row-addressable form: header + offsets + rows, checked whole (CorruptDataError if not):
    nothing read from it later (`decode_rows`, the sampler's surprise weights) can fail."""
    head = read_episode_header(blob)
    _check_header(head)
    raw = blob[:EP_HEADER_SIZE] + _inflate(blob[EP_HEADER_SIZE:], head.rows)
    _check_rows(raw, _check_offsets(raw, head.rows))
    return raw


# Validation of an arriving episode, one helper per part of the format (module docstring). A new
# per-row field gets its check in `_check_rows`, next to the row layout it extends.


def _check_header(head: EpisodeHeader) -> None:
    if head.rows < 1:
        raise CorruptDataError("episode blob: no rows")
    if head.result not in RESULTS:
        raise CorruptDataError(f"episode blob: result {head.result} is not one of {RESULTS}")
    if not (math.isfinite(head.surprise) and head.surprise >= 0):
        raise CorruptDataError(f"episode blob: surprise {head.surprise} is not finite and >= 0")


def _check_offsets(raw: bytes, rows: int) -> np.ndarray:
    """[rows + 1] int64 row offsets: the first right after the table, the last at the end,
    each row at least its fixed part long (so also increasing)."""
    table_end = EP_HEADER_SIZE + 4 * (rows + 1)
    if len(raw) < table_end:
        raise CorruptDataError("episode blob: truncated offsets")
    offsets = np.frombuffer(raw, np.uint32, rows + 1, EP_HEADER_SIZE).astype(np.int64)
    if offsets[0] != table_end or offsets[-1] != len(raw) or np.any(np.diff(offsets) < ROW_FIXED):
        raise CorruptDataError("episode blob: offsets do not match its length")
    return offsets


def _check_rows(raw: bytes, offsets: np.ndarray) -> None:
    """Every row as laid out: `44 + 5n` bytes for its own n <= MAX_ROW_PLAYS, a known outcome
    class, a value target that is not all zero, at most 15 checkers on any point, and each step
    byte a step index or NO_STEP."""
    buf = np.frombuffer(raw, np.uint8)
    starts = offsets[:-1]
    fixed = buf[starts[:, None] + np.arange(ROW_FIXED)]  # [R, 44]
    n = fixed[:, 30].astype(np.int64) | (fixed[:, 31].astype(np.int64) << 8)  # [R] plays
    if np.any(np.diff(offsets) != ROW_FIXED + (_STEPS + 1) * n):
        raise CorruptDataError("episode blob: a row's length does not match its play count")
    if np.any(n > MAX_ROW_PLAYS):
        raise CorruptDataError(f"episode blob: a row holds more than {MAX_ROW_PLAYS} plays")
    if np.any(fixed[:, 28] >= NUM_OUTCOMES):
        raise CorruptDataError("episode blob: outcome class out of range")
    if np.any(np.ascontiguousarray(fixed[:, _VALUE]).view("<u2").sum(-1, dtype=np.int64) == 0):
        raise CorruptDataError("episode blob: a row's value target is all zero")
    if np.any(np.abs(fixed[:, :28].view(np.int8).astype(np.int16)) > MAX_CHECKERS):
        raise CorruptDataError(f"episode blob: a board holds more than {MAX_CHECKERS} checkers on a point")
    # the step bytes of row r are [starts[r] + 32, + 4 n[r]): reduceat over (begin, end) pairs gives
    # each range's largest byte at the even places (rows without plays left out: empty ranges)
    begin = starts[n > 0] + ROW_FIXED
    edges = np.stack([begin, begin + _STEPS * n[n > 0]], 1).ravel()
    if len(edges) and np.any(np.maximum.reduceat(buf, edges)[::2] > rules.NO_STEP):
        raise CorruptDataError("episode blob: a step index out of range")


def episode_rows(blob: bytes) -> list[bytes]:
    """Every row of an episode blob (checked)."""
    raw = expand_episode(blob)
    offsets = np.frombuffer(raw, np.uint32, read_episode_header(raw).rows + 1, EP_HEADER_SIZE)
    return [raw[int(a) : int(b)] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def decode_rows(
    data: bytes | np.ndarray, starts: np.ndarray, max_plays: int, plays: bool = True
) -> dict[str, np.ndarray]:
    """Training arrays from rows laid end to end in `data`, row i beginning at `starts[i]`.

    Returns boards [N, 28] int8, steps [N, K, 4] uint8, mask [N, K] bool, policy [N, K] float32,
    value [N, 6] float32 (the value target, a distribution), outcome [N] int32 with K = max_plays
    (plays beyond K are dropped). Vectorised over the
    stored plays only (no per-row loop, no gather over the padding). With `plays` False, the
    rows' plays (steps, mask, policy) are checked for length but not decoded: a value-only train
    step reads none of them.
    """
    buf = np.frombuffer(data, np.uint8)
    starts = np.asarray(starts, np.int64)
    rows = len(starts)
    if rows and (starts.min() < 0 or starts.max() + ROW_FIXED > len(buf)):
        raise CorruptDataError("episode rows: truncated")
    windows = np.lib.stride_tricks.sliding_window_view(buf, ROW_FIXED)  # [len, 44] no copy
    fixed = windows[starts]  # [N, 44] board 28 | outcome | pad | n (u16) | value (u16[6])
    boards = fixed[:, :28].view(np.int8)
    outcome = fixed[:, 28].astype(np.int32)
    if np.any(outcome > 5):
        raise CorruptDataError("episode rows: outcome class out of range")
    quant_value = np.ascontiguousarray(fixed[:, _VALUE]).view("<u2").astype(np.float32)  # [N, 6]
    value_sum = quant_value.sum(-1, keepdims=True)
    if np.any(value_sum == 0):
        raise CorruptDataError("episode rows: a value target is all zero")
    n_stored = fixed[:, 30].astype(np.int64) | (fixed[:, 31].astype(np.int64) << 8)
    if rows and (starts + ROW_FIXED + n_stored * (_STEPS + 1)).max() > len(buf):
        raise CorruptDataError("episode rows: play data past the end")
    value = {"boards": boards, "value": quant_value / value_sum, "outcome": outcome}
    if not plays:
        return value
    n = np.minimum(n_stored, max_plays)
    row = np.repeat(np.arange(rows), n)  # [P] the row of each kept play
    j = np.arange(len(row)) - np.repeat(np.cumsum(n) - n, n)  # [P] its index within the row
    flat = row * max_plays + j  # [P] its cell in the [N, K] outputs
    base = starts[row] + ROW_FIXED
    # a play's 4 step bytes move as one uint32 (gathered through a 4-byte window view)
    steps = np.full(rows * max_plays, int.from_bytes(bytes([rules.NO_STEP] * _STEPS), "little"), "<u4")
    steps[flat] = np.lib.stride_tricks.sliding_window_view(buf, _STEPS)[base + j * _STEPS].view("<u4")[:, 0]
    quant = buf[base + n_stored[row] * _STEPS + j].astype(np.float32)  # [P]
    total = np.bincount(row, weights=quant, minlength=rows)[row]  # [P] the row's sum
    uniform = (1.0 / np.maximum(n, 1))[row]  # an all-zero row (quantised away) becomes uniform
    policy = np.zeros(rows * max_plays, np.float32)
    policy[flat] = np.where(total > 0, quant / np.maximum(total, 1e-9), uniform)
    mask = np.arange(max_plays)[None, :] < n[:, None]
    return {
        **value,
        "steps": steps.view(np.uint8).reshape(rows, max_plays, _STEPS),
        "mask": mask,
        "policy": policy.reshape(rows, max_plays),
    }
