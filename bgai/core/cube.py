"""Cubeful money equity from cubeless probabilities (Janowski's model), batched and jit-able.

The outcome head gives gnubg's five cubeless probabilities of the side on roll (before it rolls):
P(win), P(win gammon+), P(win backgammon), P(lose gammon+), P(lose backgammon) - cumulative, as
`network.gnubg_probabilities` returns them. From them:

- the *dead-cube* equity: the cubeless equity, what the game is worth when nobody can double;
- the *live-cube* equity, Janowski's piecewise-linear model of a cube that is turned at exactly
  the right moment: with W and L the average value of a win and of a loss (gammons included),

      take point   TP = (L - 1/2) / (W + L + 1/2)   the opponent's last take, as our P(win)
      cash point   CP = (L + 1) / (W + L + 1/2)     where we double them out

  the equity is linear in P(win) between the points where the cube changes hands: for a
  centred cube (0, -L) -> (TP, -1) -> (CP, +1) -> (1, W); for a cube we own (0, -L) -> (CP, +1)
  -> (1, W); for a cube the opponent owns (0, -L) -> (TP, -1) -> (1, W). With the Jacoby rule a
  centred cube's gammons do not count: its outer segments are flat at -1 and +1.
- the cubeful equity: dead x (1 - x) + live x x, where x, the cube efficiency, says how much of
  the cube's leverage a real game delivers: gnubg's defaults are 0.68 in contact positions and,
  in races, 0.55 + 0.00125 x the pips of the side on roll, clamped to [0.6, 0.7].

Equities are per unit of the cube's value (multiply by the cube for points). The cube is seen
from the side on roll: `CENTRED`, `OWNED` (it may redouble) or `UNAVAILABLE` (the opponent owns
it). `decide` gives the cube actions of the side on roll and of its opponent from probabilities;
`model_decision` from the net at 0 to 3 plies (n plies: the 21 rolls, the best play to each,
the opponent's own cube action at n - 1 plies at the leaves).

Match play (a match equity table, score-dependent gammon values, Crawford) needs the same
shape with other take and cash points; nothing here assumes money beyond the formulas.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bgai.core import rules
from bgai.core.afterstate import afterstate_values
from bgai.core.evaluator import ApplyFn, net_outputs
from bgai.core.network import gnubg_probabilities
from bgai.core.pubeval import is_race

CENTRED, OWNED, UNAVAILABLE = 0, 1, 2

CONTACT_EFFICIENCY = 0.68
RACE_EFFICIENCY = (0.55, 0.00125)  # a + b x pips of the side on roll
RACE_EFFICIENCY_RANGE = (0.6, 0.7)
_EPS = 1e-7


def dead_equity(p: jax.Array) -> jax.Array:
    """The cubeless equity [...] of the five probabilities [..., 5]."""
    return 2.0 * p[..., 0] - 1.0 + p[..., 1] + p[..., 2] - p[..., 3] - p[..., 4]


def win_loss_values(p: jax.Array) -> tuple[jax.Array, jax.Array]:
    """W and L [...]: the average points of a win and of a loss (1 where there is none)."""
    win, lose = p[..., 0], 1.0 - p[..., 0]
    w = jnp.where(win > _EPS, 1.0 + (p[..., 1] + p[..., 2]) / jnp.maximum(win, _EPS), 1.0)
    lo = jnp.where(lose > _EPS, 1.0 + (p[..., 3] + p[..., 4]) / jnp.maximum(lose, _EPS), 1.0)
    return w, lo


def take_point(w: jax.Array, lo: jax.Array) -> jax.Array:
    """The opponent's live-cube take point, as the doubler's P(win): above it the opponent passes."""
    return (lo - 0.5) / (w + lo + 0.5)


def cash_point(w: jax.Array, lo: jax.Array) -> jax.Array:
    """The live-cube cash point: the P(win) from which the side that can double cashes."""
    return (lo + 1.0) / (w + lo + 0.5)


def _line(p: jax.Array, x0: jax.Array, y0: jax.Array, x1: jax.Array, y1: jax.Array) -> jax.Array:
    return y0 + (y1 - y0) * (p - x0) / jnp.maximum(x1 - x0, _EPS)


def live_equity(p: jax.Array, cube: jax.Array | int, jacoby: bool = False) -> jax.Array:
    """Janowski's live-cube equity [...] of the five probabilities [..., 5] with the cube `cube`
    (CENTRED, OWNED or UNAVAILABLE, [...] or one for all) from the side on roll."""
    w, lo = win_loss_values(p)
    tp, cp = take_point(w, lo), cash_point(w, lo)
    win = p[..., 0]
    zero, one = jnp.zeros_like(win), jnp.ones_like(win)
    bottom = -one if jacoby else -lo  # a centred cube under the Jacoby rule: gammons do not count
    top = one if jacoby else w
    centred = jnp.where(
        win < tp,
        _line(win, zero, bottom, tp, -one),
        jnp.where(win < cp, _line(win, tp, -one, cp, one), _line(win, cp, one, one, top)),
    )
    owned = jnp.where(win < cp, _line(win, zero, -lo, cp, one), _line(win, cp, one, one, w))
    unavailable = jnp.where(win < tp, _line(win, zero, -lo, tp, -one), _line(win, tp, -one, one, w))
    cube = jnp.asarray(cube)
    return jnp.where(cube == CENTRED, centred, jnp.where(cube == OWNED, owned, unavailable))


def cube_efficiency(boards: jax.Array) -> jax.Array:
    """gnubg's cube efficiency x [...] of boards [..., 28] (side on roll's view)."""
    b = boards.astype(jnp.int32)
    flat = b.reshape(-1, rules.BOARD_SIZE)
    race = jax.vmap(is_race)(flat).reshape(b.shape[:-1])
    mine = jnp.maximum(b[..., : rules.NUM_POINTS], 0)
    pips = jnp.sum(mine * jnp.arange(1, rules.NUM_POINTS + 1), -1) + 25 * b[..., rules.BAR]
    a, per_pip = RACE_EFFICIENCY
    in_race = jnp.clip(a + per_pip * pips, *RACE_EFFICIENCY_RANGE)
    return jnp.where(race, in_race, CONTACT_EFFICIENCY).astype(jnp.float32)


def cubeful_equity(
    p: jax.Array, efficiency: jax.Array | float, cube: jax.Array | int, jacoby: bool = False
) -> jax.Array:
    """The cubeful equity [...] per unit cube: the dead and live equities blended by `efficiency`."""
    x = jnp.asarray(efficiency)
    return (1.0 - x) * dead_equity(p) + x * live_equity(p, cube, jacoby)


class CubeDecision(NamedTuple):
    """The side on roll's cube decision, equities per unit of the cube before the decision."""

    no_double: jax.Array  # [...] the cube stays where it is
    double_take: jax.Array  # [...] doubled and taken (and beavered, where beavers are on and it pays)
    double_pass: jax.Array  # [...] 1: the opponent passes
    double: jax.Array  # [...] bool: the side on roll doubles (can, and it gains)
    take: jax.Array  # [...] bool: the opponent takes a double
    beaver: jax.Array  # [...] bool: the opponent takes and redoubles at once (beavers on)

    @property
    def equity(self) -> jax.Array:
        """The side on roll's equity after both sides decide right."""
        doubled = jnp.minimum(self.double_take, self.double_pass)
        return jnp.where(self.double, doubled, self.no_double)


def _decision(no_double: jax.Array, taken: jax.Array, cube: jax.Array | int, beavers: bool) -> CubeDecision:
    """The decisions from the equity of not doubling and of doubled-and-taken (both per unit of
    the cube before the double): a favourite taker beavers (the cube to 4, still its own)."""
    beaver = beavers & (taken < 0.0)
    double_take = jnp.where(beaver, 2.0 * taken, taken)
    take = double_take <= 1.0
    can = jnp.asarray(cube) != UNAVAILABLE
    double = can & (jnp.minimum(double_take, 1.0) > no_double)
    return CubeDecision(no_double, double_take, jnp.ones_like(no_double), double, take, beaver & take)


def decide(
    p: jax.Array,
    efficiency: jax.Array | float,
    cube: jax.Array | int = CENTRED,
    jacoby: bool = False,
    beavers: bool = False,
) -> CubeDecision:
    """The cube decisions of the side on roll (may it double: `cube` CENTRED or OWNED) and of its
    opponent (take, pass or beaver), from the five probabilities [..., 5] before the roll.
    `jacoby` and `beavers` are options of the game (static under jit)."""
    no_double = cubeful_equity(p, efficiency, cube, jacoby)
    taken = 2.0 * cubeful_equity(p, efficiency, UNAVAILABLE)  # the opponent owns a cube of 2
    return _decision(no_double, taken, cube, beavers)


def probabilities(apply_fn: ApplyFn, params: Any, boards: jax.Array) -> jax.Array:
    """gnubg's five probabilities [N, 5] of boards [N, 28] (exact in the bear-off database)."""
    _, logits = net_outputs(apply_fn, params, boards)
    return gnubg_probabilities(jax.nn.softmax(logits, axis=-1))


MAX_PLIES = 3  # the deepest cube lookahead: 21x the time per ply (3 plies: 9 minutes for the set on 2 cores)

# The opponent's cube after we roll without doubling, by ours (CENTRED, OWNED, UNAVAILABLE): a
# centred cube stays centred, ours is out of its reach, its own it may redouble.
_KEPT = (CENTRED, UNAVAILABLE, OWNED)
_STATES = (CENTRED, OWNED, UNAVAILABLE)


def _no_double_equities(
    apply_fn: ApplyFn,
    params: Any,
    boards: jax.Array,
    plies: int,
    movegen: rules.MoveGenConfig | None,
    jacoby: bool,
    beavers: bool,
    eval_slots: int | None,
) -> jax.Array:
    """[N, 3]: the equity per unit cube of the side on roll of each board [N, 28] if it does not
    double, with the cube CENTRED, OWNED and UNAVAILABLE (the columns, in that order). At 0-ply
    Janowski's from the net's probabilities; at n plies the 21 rolls, the best play to each by
    0-ply cubeless equity, then the opponent's best cube action at n - 1 plies with the cube as
    ours leaves it (the points where our play bore off the last checker), weighted by the rolls.
    The three cube states share the move generation and the network rows, the bulk of the cost."""
    if plies == 0:
        p = probabilities(apply_fn, params, boards)
        x = cube_efficiency(boards)
        return jnp.stack([cubeful_equity(p, x, c, jacoby) for c in _STATES], -1)
    assert movegen is not None

    def after_roll(roll: jax.Array) -> jax.Array:  # [N, 3]
        plays = rules.legal_plays_batch(boards, jnp.full(boards.shape[0], roll, jnp.int32), movegen)
        values = afterstate_values(apply_fn, params, plays, eval_slots)
        after = rules.play_boards(plays, jnp.argmax(values, axis=-1))
        theirs = _no_double_equities(
            apply_fn, params, rules.flip(after), plies - 1, movegen, jacoby, beavers, eval_slots
        )
        taken = 2.0 * theirs[:, UNAVAILABLE]
        best = jnp.stack([_decision(theirs[:, c], taken, c, beavers).equity for c in _KEPT], -1)
        won = jax.vmap(rules.win_points)(after).astype(jnp.float32)[:, None]
        return jnp.where(won > 0, won, -best)

    eq = jax.lax.map(after_roll, jnp.arange(rules.NUM_ROLLS, dtype=jnp.int32))  # [21, N, 3]
    return jnp.einsum("rnk,r->nk", eq, jnp.asarray(rules.DICE_PROBS))


def model_decision(
    apply_fn: ApplyFn,
    params: Any,
    boards: jax.Array,
    cube: jax.Array | int,
    plies: int,
    movegen: rules.MoveGenConfig | None = None,
    jacoby: bool = False,
    beavers: bool = False,
    eval_slots: int | None = 32,
) -> CubeDecision:
    """The cube decision of the side on roll of each board [N, 28], its cube `cube` (one state or
    one per board), looking ahead `plies` (0 to 3; a move generator from 1 on). 1-ply costs 21
    move generations and about 21 x (plays + 1) network rows per board; each ply more 21 times
    that (3-ply: ~9,700 move generations a board, for the benchmark rather than for play)."""
    if plies not in range(MAX_PLIES + 1) or (plies > 0 and movegen is None):
        raise ValueError(
            f"cube decisions look ahead 0 to {MAX_PLIES} plies (from 1 on with a move generator), got {plies}"
        )
    boards = boards.astype(jnp.int32)
    nd = _no_double_equities(apply_fn, params, boards, plies, movegen, jacoby, beavers, eval_slots)
    state = jnp.broadcast_to(jnp.asarray(cube, jnp.int32), nd.shape[:1])
    mine = jnp.take_along_axis(nd, state[:, None], -1)[:, 0]
    return _decision(mine, 2.0 * nd[:, UNAVAILABLE], state, beavers)
