"""Network input encoding of a board (mover's point of view).

Features (float32[196]):
    [0:96)    mover, 4 units per point idx 0..23: n>=1, n>=2, n>=3, (n-3)/2 if n>3
    [96:192)  opponent, the same 4 units per point (same point order)
    192 mover bar / 2, 193 opponent bar / 2, 194 mover off / 15, 195 opponent off / 15
This is Tesauro's truncated-unary scheme: it separates blots, points and
spares, which a plain count would blur, and costs one gather-free pass.

Input schemes (`model.inputs`, part of the model hash): `raw` is the above; `extended` appends
`features.extended_features` (pips, hitting shots, primes, anchors... of both sides); `escapes`
appends to those `features.escape_features` (back-checker escapes and containment of both sides).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bgai.core import features
from bgai.core.rules import BAR, NUM_CHECKERS, NUM_POINTS, OFF, OPP_BAR, OPP_OFF

NUM_FEATURES = 196  # the raw scheme's
INPUTS = ("raw", "extended", "escapes")
_EXTRA = {"raw": 0, "extended": features.NUM_EXTRA, "escapes": features.NUM_EXTRA + features.ESCAPE_FEATURES}


_AT_LEAST = jnp.asarray([1.0, 2.0, 3.0, 0.0])  # the first three units' thresholds (the fourth: spare)


def _units(n: jax.Array) -> jax.Array:
    """[..., m] counts -> [..., 4m] truncated unary units (a point's four side by side)."""
    n = n.astype(jnp.float32)[..., None]
    spare = jnp.maximum(n - 3.0, 0.0) / 2.0
    u = jnp.where(jnp.arange(4) < 3, (n >= _AT_LEAST).astype(jnp.float32), spare)
    return u.reshape(*n.shape[:-2], n.shape[-2] * 4)


def encode(board: jax.Array) -> jax.Array:
    """Board(s) [..., 28] int -> features [..., 196] float32."""
    pts = board[..., :NUM_POINTS]
    # both sides' units in one pass: the mover's 96, then the opponent's (measured 2x faster than
    # two passes joined, docs/results.md, stop 40)
    units = _units(jnp.concatenate([jnp.maximum(pts, 0), jnp.maximum(-pts, 0)], -1))
    extra = jnp.stack(
        [
            board[..., BAR] / 2.0,
            -board[..., OPP_BAR] / 2.0,
            board[..., OFF] / NUM_CHECKERS,
            -board[..., OPP_OFF] / NUM_CHECKERS,
        ],
        axis=-1,
    ).astype(jnp.float32)
    return jnp.concatenate([units, extra], axis=-1)


def num_inputs(inputs: str) -> int:
    """Width of the `inputs` scheme's features."""
    return NUM_FEATURES + _EXTRA[inputs]


def encode_as(inputs: str, board: jax.Array) -> jax.Array:
    """Board(s) [..., 28] int -> the `inputs` scheme's features [..., num_inputs(inputs)]."""
    if inputs == "raw":
        return encode(board)
    if inputs == "extended":
        return jnp.concatenate([encode(board), features.extended_features(board)], -1)
    if inputs == "escapes":
        more = (features.extended_features(board), features.escape_features(board))
        return jnp.concatenate([encode(board), *more], -1)
    raise ValueError(f"unknown input scheme {inputs!r} (one of {', '.join(INPUTS)})")
