"""Hand-crafted input features of a board (the `extended` inputs), batched JAX.

Tesauro's raw units say where the checkers are; a small net learns slowly what follows from that
(how many rolls hit a blot, how long a prime is). gnubg feeds about 25 such features per side;
Higgins' TD nets gained most of their strength over raw inputs from prime and hitting-shot
inputs. These are computed for each side by the same function on its own view of the board
(`rules.flip` for the opponent), so they are symmetric by construction.

Per side S (the side whose checkers count positive on its view), `side_features`:

    0  pips       S's pip count / 100 (a checker on the bar counts 25)
    1  shots      the share of the 36 rolls with which the other side can hit a blot of S: a
                  checker at distance d of a blot hits it with a die of d, or with a combination
                  of both dice (a double: up to four steps) whose intermediate landing points are
                  not blocked by S (2+ checkers); while the other side has checkers on the bar,
                  only shots from the bar count
    2  prime      S's longest run of consecutive made points (2+ checkers) / 6, capped at 1
    3  anchors    S's made points in the other side's home board / 2, capped at 1
    4  back       S's checkers in the other side's home board or on the bar / 5, capped at 1
    5  home       S's made points in its own home board / 6
    6  blots      S's blots (single checkers on a point) / 5, capped at 1

and two common ones, from the mover's view: the pip difference (mover - opponent) / 50 and
the contact flag (1 while a hit is still possible: `pubeval.is_race` is false).

`tests/core/test_features.py` holds a slow, readable Python reference of every feature and a
golden file of random positions both must match. Changing a feature changes `VERSION`, which is
part of the model hash (the `model.inputs` setting names it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bgai.core import rules
from bgai.core.pubeval import is_race

VERSION = 1
SIDE_FEATURES = 7
NUM_EXTRA = 2 * SIDE_FEATURES + 2

# For each of the 21 rolls: its up-to-four step distances (cumulative pips of a path) as two
# paths (die a first, die b first); a double has one path of four steps. -1 pads.
_PATHS = np.full((rules.NUM_ROLLS, 2, 4), -1, np.int32)
for _r, (_a, _b) in enumerate(rules.DICE.tolist()):
    if _a == _b:
        _PATHS[_r, 0] = [_a, 2 * _a, 3 * _a, 4 * _a]
        _PATHS[_r, 1] = [_a, 2 * _a, 3 * _a, 4 * _a]
    else:
        _PATHS[_r, 0, :2] = [_a, _a + _b]
        _PATHS[_r, 1, :2] = [_b, _a + _b]
_ROLL_WEIGHT = np.where(rules.DICE[:, 0] == rules.DICE[:, 1], 1.0, 2.0).astype(np.float32)


def _shots(board: jax.Array) -> jax.Array:
    """Rolls (of 36) with which the opponent hits a blot of the side to move: [...] float32.

    The opponent moves up the board (idx 0 -> 23) and enters from its bar as from idx -1."""
    pts = board[..., : rules.NUM_POINTS]
    blot = pts == 1
    open_ = pts < 2  # a point the opponent may land on
    opp_on_bar = board[..., rules.OPP_BAR] < 0
    # sources q = -1 (bar) .. 23, as index q + 1 into [25]
    sources = jnp.concatenate([opp_on_bar[..., None], pts < 0], -1)
    sources = jnp.where(opp_on_bar[..., None], jnp.arange(25) == 0, sources)
    # pad so that q + k for k up to 24 indexes safely: landing idx q + k, valid when <= 23
    pad = jnp.zeros((*pts.shape[:-1], 25), bool)
    blot_p = jnp.concatenate([blot, pad], -1)  # [..., 49], idx = point
    open_p = jnp.concatenate([open_, pad], -1)
    q = jnp.arange(25) - 1  # [25]
    paths = jnp.asarray(_PATHS)  # [21, 2, 4]
    land = q[None, None, None, :] + paths[..., None]  # [21, 2, 4, 25] landing idx (may be > 23)
    land_c = jnp.clip(land, 0, 48)
    valid = (paths[..., None] > 0) & (land >= 0) & (land <= 23)
    is_blot = blot_p[..., land_c] & valid  # [..., 21, 2, 4, 25]
    is_open = open_p[..., land_c] & valid
    # a step is reachable when every earlier step's landing point of its path is open
    reach = jnp.cumprod(jnp.concatenate([jnp.ones_like(is_open[..., :1, :]), is_open[..., :-1, :]], -2), -2)
    hit = jnp.any(reach.astype(bool) & is_blot, axis=(-3, -2))  # [..., 21, 25]
    hits_roll = jnp.any(hit & sources[..., None, :], -1)  # [..., 21]
    return jnp.sum(hits_roll * jnp.asarray(_ROLL_WEIGHT), -1)


def _longest_run(made: jax.Array) -> jax.Array:
    """The longest run of True along the last axis [..., 24] -> [...] int32."""

    def step(run: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        run = jnp.where(x, run + 1, 0)
        return run, run

    _, runs = jax.lax.scan(step, jnp.zeros(made.shape[:-1], jnp.int32), jnp.moveaxis(made, -1, 0))
    return jnp.max(runs, 0)


def side_features(board: jax.Array) -> jax.Array:
    """The side to move's seven features [..., 7] float32 (see the module's table)."""
    b = board.astype(jnp.int32)
    pts = b[..., : rules.NUM_POINTS]
    mine = jnp.maximum(pts, 0)
    made = mine >= 2
    pips = jnp.sum(mine * jnp.arange(1, 25), -1) + 25 * b[..., rules.BAR]
    # the opponent's view: its shots at our blots are `_shots` of our board as it is
    shots = _shots(b) / 36.0
    prime = jnp.minimum(_longest_run(made), 6) / 6.0
    anchors = jnp.minimum(jnp.sum(made[..., 18:24], -1), 2) / 2.0
    back = jnp.minimum(jnp.sum(mine[..., 18:24], -1) + b[..., rules.BAR], 5) / 5.0
    home = jnp.sum(made[..., :6], -1) / 6.0
    blots = jnp.minimum(jnp.sum(mine == 1, -1), 5) / 5.0
    return jnp.stack([pips / 100.0, shots, prime, anchors, back, home, blots], -1).astype(jnp.float32)


def extended_features(board: jax.Array) -> jax.Array:
    """[..., NUM_EXTRA] float32: the mover's seven, the opponent's seven, pip difference, contact."""
    b = board.astype(jnp.int32)
    mine, theirs = side_features(b), side_features(rules.flip(b))
    flat = b.reshape(-1, rules.BOARD_SIZE)
    contact = (~jax.vmap(is_race)(flat)).reshape(b.shape[:-1]).astype(jnp.float32)
    diff = (mine[..., 0] - theirs[..., 0]) * 2.0  # pips / 100 each: the difference / 50
    return jnp.concatenate([mine, theirs, diff[..., None], contact[..., None]], -1)
