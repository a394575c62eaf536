"""Stochastic MCTS over the true game: decisions are whole plays, chance nodes are the 21 rolls.

Our own batched search, written for XLA's CPU backend. (Stops 1-15 drove
`mctx.stochastic_muzero_policy`; on CPU it spent most of its time copying and
`select`-ing whole trees, because its per-game while loops are vmapped and
its recurrent function runs the decision and the chance model for every game
on every simulation; see docs/results.md.) Here every loop runs over the batch
explicitly: a simulation reads and writes only the B nodes it touches, and
the large tables are written once per node, at its expansion.

The tree of each game has two tables:

    decision node d (side A to move, roll known)   value = A's equity
      plays, prior over them, child chance node per play
      -- play a -->
    chance node c (A's afterstate)                 value = A's equity after the play
      roll weights, child decision node per roll
      -- roll r: the opponent B to move -->
    decision node d'                               value = B's equity

so a value crossing a roll edge changes sign, and a play edge keeps it. A
decision node maximises over its plays with PUCT (AlphaZero's constants;
Q-values min-max normalised over the node's value and its visited children).
A chance node picks the roll whose visit share lags its probability most
(`p - n / (N + 1)`): with the whole dice distribution, all 21 rolls are
visited before any is revisited.

Terminal afterstates: a play that bears off the last checker is a chance node
whose value is the points won (`rules.win_points`, 1..3); it is never expanded
and every visit backs up exactly those points.

Network: one forward per new chance node, on the opponent's view of the
afterstate (the net sees no dice, encoding.py). It gives both the afterstate's
value and the step logits that become the priors of every decision node below
it. A new decision node costs nothing more: its plays are generated when a
simulation first enters it (`d_ready`), which most nodes never are, and only
for the games that need it (`rules.legal_plays_rows`). Illegal plays have
prior 0 and are masked at every node, not only the root.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from bgai.core import rules
from bgai.core.evaluator import ApplyFn, net_outputs
from bgai.core.network import NEG_INF, equity, play_logits

DICE_PROBS = np.asarray(rules.DICE_PROBS, np.float32)  # [21]
PB_C_INIT, PB_C_BASE = 1.25, 19652.0  # AlphaZero's exploration constants
TIE_NOISE = 1e-7  # random tie-break between equal scores
MOVEGEN_SHARE = 4  # move generation runs on sub-batches of B // 4 games (more rounds if more need it)


@struct.dataclass
class Tree:
    """B search trees: decision nodes [B, D, ...] (D = sims + 1, root 0) and chance nodes [B, C, ...]."""

    d_board: jax.Array  # [B, D, 28] int8 position, mover's view
    d_roll: jax.Array  # [B, D] int32 the roll to play
    d_ready: jax.Array  # [B, D] bool plays generated (on the first simulation that enters the node)
    d_steps: jax.Array  # [B, D, K, 4] uint8 steps of the legal plays (rules.apply_play)
    d_prior: jax.Array  # [B, D, K] float32 prior probabilities (0 on illegal plays)
    d_mask: jax.Array  # [B, D, K] bool legal plays
    d_child: jax.Array  # [B, D, K] int32 chance node of each play, NO_NODE if not expanded
    d_parent: jax.Array  # [B, D] int32 chance node above, NO_NODE at the root
    d_visits: jax.Array  # [B, D] float32 (the node's own evaluation counts as one)
    d_value_sum: jax.Array  # [B, D] float32 in the mover's view
    c_board: jax.Array  # [B, C, 28] int8 afterstate, view of the side that just moved
    c_logits: jax.Array  # [B, C, 150] float32 the opponent's step logits on flip(board)
    c_weights: jax.Array  # [B, C, 21] float32 roll probabilities (0: not a branch)
    c_points: jax.Array  # [B, C] float32 points won by this play (> 0: terminal)
    c_opp: jax.Array  # [B, C] float32 the opponent's pre-roll equity of flip(board)
    c_child: jax.Array  # [B, C, 21] int32 decision node of each roll, NO_NODE if not expanded
    c_parent: jax.Array  # [B, C] int32 decision node above
    c_visits: jax.Array  # [B, C] float32
    c_value_sum: jax.Array  # [B, C] float32 in the view of the side that played
    num_decision: jax.Array  # [B] int32 decision nodes in use
    num_chance: jax.Array  # [B] int32 chance nodes in use


@struct.dataclass
class SearchOutput:
    visit_counts: jax.Array  # [B, K] simulations through each root play
    qvalues: jax.Array  # [B, K] mean value of each root play (0 if unvisited)
    action_weights: jax.Array  # [B, K] root visit distribution (the policy target)
    value: jax.Array  # [B] the root's mean value
    tree: Tree


def _evaluate(apply_fn: ApplyFn, params: Any, boards: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Step logits [B, 150] and pre-roll equity [B] of the side to move in boards [B, 28]."""
    step_logits, value_logits = net_outputs(apply_fn, params, boards)
    return step_logits.astype(jnp.float32), equity(value_logits).astype(jnp.float32)


def _roll_weights(key: jax.Array, batch: int, samples: int) -> jax.Array:
    """Roll weights [B, 21] of new chance nodes: the dice distribution, or `samples` draws from it.

    With all 21 rolls a chance node revisits a roll (and the tree grows past
    one ply below it) only after every roll was visited once. Drawing a few
    rolls per afterstate (weights = their shares) lets small budgets look deeper.
    """
    probs = jnp.asarray(DICE_PROBS)
    if samples <= 0:
        return jnp.broadcast_to(probs, (batch, rules.NUM_ROLLS))
    draws = jax.random.categorical(key, jnp.log(probs), shape=(batch, samples))  # [B, S]
    return jnp.sum(jax.nn.one_hot(draws, rules.NUM_ROLLS), axis=1) / samples


def _noisy_prior(
    key: jax.Array, logits: jax.Array, mask: jax.Array, alpha: float, fraction: float
) -> jax.Array:
    """Root prior probabilities [B, K] mixed with Dirichlet(alpha) noise over the legal plays only."""
    probs = jax.nn.softmax(logits, axis=-1)  # masked slots are exactly 0
    if fraction <= 0:
        return probs
    noise = jnp.where(mask, jax.random.gamma(key, alpha, logits.shape), 0.0)
    noise = noise / jnp.maximum(jnp.sum(noise, axis=-1, keepdims=True), 1e-30)
    return jnp.where(mask, (1.0 - fraction) * probs + fraction * noise, 0.0)


def _tie_noise(seed: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform-ish [0, 1) noise of `shape` from a uint32 seed: an integer hash of the slot index.

    Only breaks ties between equal scores, so it needs no statistical quality, and
    it costs a few integer ops where `jax.random.uniform` cost ~8% of a search on CPU.
    """
    x = jax.lax.iota(jnp.uint32, int(np.prod(shape))).reshape(shape) * jnp.uint32(0x9E3779B1) + seed
    x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
    x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
    return (x >> 8).astype(jnp.float32) / float(1 << 24)


def _argmax(x: jax.Array) -> jax.Array:
    """`jnp.argmax` over the last axis (the first maximum) as two plain reductions.

    XLA's CPU backend runs argmax as a variadic (value, index) reduce that does
    not vectorise: it was the costliest op of a profiled search without move
    generation, and this form made whole searches ~3% faster.
    """
    best = jnp.max(x, axis=-1, keepdims=True)
    n = x.shape[-1]
    return jnp.min(jnp.where(x == best, jax.lax.iota(jnp.int32, n), n), axis=-1)


NO_NODE = -1  # a play or roll not expanded yet; the root's parent


def _row(table: jax.Array, node: jax.Array) -> jax.Array:
    """table[b, node[b]] for every game b: [B, N, ...] -> [B, ...] (NO_NODE reads row 0)."""
    return table[jnp.arange(table.shape[0]), jnp.clip(node, 0, table.shape[1] - 1)]


def _cell(table: jax.Array, node: jax.Array, edge: jax.Array) -> jax.Array:
    """table[b, node[b], edge[b]] for every game b: [B, N, A, ...] -> [B, ...]."""
    return table[jnp.arange(table.shape[0]), jnp.clip(node, 0, table.shape[1] - 1), edge]


def _put(table: jax.Array, node: jax.Array, value: jax.Array, where: jax.Array) -> jax.Array:
    """`table` with row node[b] of each game b set to value[b] where `where`[b] (else unchanged)."""
    b = jnp.arange(table.shape[0])
    return table.at[b, jnp.where(where, node, table.shape[1])].set(value, mode="drop")


def _put_cell(
    table: jax.Array, node: jax.Array, edge: jax.Array, value: jax.Array, where: jax.Array
) -> jax.Array:
    """`table` with cell (node[b], edge[b]) of each game b set to value[b] where `where`[b]."""
    b = jnp.arange(table.shape[0])
    return table.at[b, jnp.where(where, node, table.shape[1]), edge].set(value, mode="drop")


def _add(table: jax.Array, node: jax.Array, value: jax.Array | float, where: jax.Array) -> jax.Array:
    """`table` with `value` added to row node[b] of each game b where `where`[b]."""
    b = jnp.arange(table.shape[0])
    return table.at[b, jnp.where(where, node, table.shape[1])].add(value, mode="drop")


def _children_stats(visits: jax.Array, value_sum: jax.Array, child: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Visits and mean values [B, A] of the children child [B, A] (NO_NODE: 0 visits) in tables [B, N]."""
    safe = jnp.maximum(child, 0)
    n = jnp.where(child != NO_NODE, jnp.take_along_axis(visits, safe, 1), 0.0)
    w = jnp.where(child != NO_NODE, jnp.take_along_axis(value_sum, safe, 1), 0.0)
    return n, w / jnp.maximum(n, 1.0)


def _select_play(tree: Tree, d: jax.Array, noise: jax.Array) -> jax.Array:
    """PUCT's play [B] at decision nodes d [B]."""
    child, prior, mask = _row(tree.d_child, d), _row(tree.d_prior, d), _row(tree.d_mask, d)
    n_d = _row(tree.d_visits, d)
    v_d = _row(tree.d_value_sum, d) / jnp.maximum(n_d, 1.0)
    n, q = _children_stats(tree.c_visits, tree.c_value_sum, child)
    q = jnp.where(n > 0, q, v_d[:, None])  # unvisited plays: the node's own value
    lo = jnp.minimum(jnp.min(q, -1), v_d)[:, None]
    hi = jnp.maximum(jnp.max(q, -1), v_d)[:, None]
    q = (q - lo) / jnp.maximum(hi - lo, 1e-8)
    pb_c = PB_C_INIT + jnp.log((n_d + PB_C_BASE + 1.0) / PB_C_BASE)
    score = q + (pb_c * jnp.sqrt(n_d))[:, None] * prior / (n + 1.0) + TIE_NOISE * noise
    return _argmax(jnp.where(mask, score, NEG_INF))


def _select_roll(tree: Tree, c: jax.Array, noise: jax.Array) -> jax.Array:
    """The roll [B] whose visits lag its weight most at chance nodes c [B]."""
    weights, child = _row(tree.c_weights, c), _row(tree.c_child, c)
    n, _ = _children_stats(tree.d_visits, tree.d_value_sum, child)
    score = weights - n / (jnp.sum(n, -1, keepdims=True) + 1.0) + TIE_NOISE * noise
    return _argmax(jnp.where(weights > 0, score, NEG_INF))


# Leaf kinds of a simulation.
NEW_CHANCE, NEW_DECISION, TERMINAL, NEW_PLAYS = 0, 1, 2, 3


def _descend(tree: Tree, play_noise: jax.Array, roll_noise: jax.Array) -> tuple[jax.Array, ...]:
    """Walk every game's tree from its root to a leaf: (node [B], edge [B], kind [B]).

    NEW_CHANCE: play `edge` of decision node `node` has no chance node yet;
    NEW_DECISION: roll `edge` of chance node `node` has no decision node yet;
    TERMINAL: chance node `node` ends the game;
    NEW_PLAYS: decision node `node` has no plays yet (entered for the first time).
    """
    batch = tree.d_prior.shape[0]

    def cond(carry: tuple) -> jax.Array:
        return ~jnp.all(carry[2])

    def body(carry: tuple) -> tuple:
        node, is_dec, done, edge, kind = carry
        play = _select_play(tree, node, play_noise)
        roll = _select_roll(tree, node, roll_noise)
        term = ~is_dec & (_row(tree.c_points, node) > 0)
        unready = is_dec & ~_row(tree.d_ready, node)
        nxt = jnp.where(is_dec, _cell(tree.d_child, node, play), _cell(tree.c_child, node, roll))
        leaf = ~done & (term | unready | (nxt == NO_NODE))
        step = ~done & ~leaf
        edge = jnp.where(leaf, jnp.where(is_dec, play, roll), edge)
        new = jnp.where(is_dec, jnp.where(unready, NEW_PLAYS, NEW_CHANCE), NEW_DECISION)
        kind = jnp.where(leaf, jnp.where(term, TERMINAL, new), kind)
        return jnp.where(step, nxt, node), is_dec ^ step, done | leaf, edge, kind

    zeros = jnp.zeros(batch, jnp.int32)
    start = (zeros, jnp.ones(batch, bool), jnp.zeros(batch, bool), zeros, zeros)
    node, _, _, edge, kind = jax.lax.while_loop(cond, body, start)
    return node, edge, kind


def _add_plays(tree: Tree, node: jax.Array, need: jax.Array, movegen: rules.MoveGenConfig) -> Tree:
    """Decision nodes entered for the first time (`need`): their plays and priors, from one move
    generation for only the games that need one (none: no work at all)."""
    batch = tree.d_board.shape[0]

    def new_plays() -> tuple[jax.Array, jax.Array, jax.Array]:
        cap = max(1, batch // MOVEGEN_SHARE)
        plays = rules.legal_plays_rows(_row(tree.d_board, node), _row(tree.d_roll, node), need, cap, movegen)
        parent_logits = _row(tree.c_logits, _row(tree.d_parent, node))
        prior = jax.nn.softmax(play_logits(parent_logits, plays.steps, plays.mask), -1)
        return plays.steps.astype(jnp.uint8), prior, plays.mask

    def no_plays() -> tuple[jax.Array, jax.Array, jax.Array]:
        return (
            jnp.zeros(tree.d_steps.shape[:1] + tree.d_steps.shape[2:], jnp.uint8),
            jnp.zeros(tree.d_prior.shape[:1] + tree.d_prior.shape[2:]),
            jnp.zeros(tree.d_mask.shape[:1] + tree.d_mask.shape[2:], bool),
        )

    # about half the simulations enter no new decision node in any game: skip the work then
    steps, prior, mask = jax.lax.cond(jnp.any(need), new_plays, no_plays)
    return dataclasses.replace(
        tree,
        d_steps=_put(tree.d_steps, node, steps, need),
        d_prior=_put(tree.d_prior, node, prior, need),
        d_mask=_put(tree.d_mask, node, mask, need),
        d_ready=_put(tree.d_ready, node, jnp.ones_like(need), need),
    )


def _add_chance(
    apply_fn: ApplyFn,
    params: Any,
    key: jax.Array,
    tree: Tree,
    node: jax.Array,
    edge: jax.Array,
    new: jax.Array,
    chance_samples: int,
) -> tuple[Tree, jax.Array]:
    """New chance nodes (`new`): the afterstate of play `edge` of decision node `node`, valued by
    one network forward; returns the tree and that value (the points, if the play wins)."""
    batch = tree.d_board.shape[0]
    steps = _cell(tree.d_steps, node, jnp.clip(edge, 0, tree.d_steps.shape[2] - 1))
    after = jax.vmap(rules.apply_play)(_row(tree.d_board, node).astype(jnp.int32), steps)
    points = jax.vmap(rules.win_points)(after).astype(jnp.float32)
    step_logits, opp_value = _evaluate(apply_fn, params, rules.flip(after))
    value = jnp.where(points > 0, points, -opp_value)
    at = tree.num_chance
    row = {
        "c_board": after.astype(jnp.int8),
        "c_logits": step_logits,
        "c_weights": _roll_weights(key, batch, chance_samples),
        "c_points": points,
        "c_opp": opp_value,
        "c_parent": node,
        "c_visits": jnp.ones(batch),
        "c_value_sum": value,
    }
    changes = {f: _put(getattr(tree, f), at, v, new) for f, v in row.items()}
    changes["d_child"] = _put_cell(tree.d_child, node, edge, at, new)
    return dataclasses.replace(tree, **changes, num_chance=at + new), value


def _add_decision(tree: Tree, node: jax.Array, edge: jax.Array, new: jax.Array) -> tuple[Tree, jax.Array]:
    """New decision nodes (`new`): the opponent to move with roll `edge` after chance node
    `node`, valued by the forward that made its parent; its plays wait until a simulation
    enters it (most never are). Returns the tree and that value (the opponent's view)."""
    value = _row(tree.c_opp, node)
    at = tree.num_decision
    row = {
        "d_board": rules.flip(_row(tree.c_board, node).astype(jnp.int32)).astype(jnp.int8),
        "d_roll": edge,
        "d_parent": node,
        "d_visits": jnp.ones(node.shape[0]),
        "d_value_sum": value,
    }
    changes = {f: _put(getattr(tree, f), at, v, new) for f, v in row.items()}
    changes["c_child"] = _put_cell(tree.c_child, node, edge, at, new)
    return dataclasses.replace(tree, **changes, num_decision=at + new), value


def _expand(
    apply_fn: ApplyFn,
    params: Any,
    key: jax.Array,
    tree: Tree,
    node: jax.Array,
    edge: jax.Array,
    kind: jax.Array,
    play_noise: jax.Array,
    movegen: rules.MoveGenConfig,
    chance_samples: int,
) -> tuple[Tree, jax.Array, jax.Array, jax.Array]:
    """Add each game's new node; returns (tree, backup start node, is it a decision node, value there).

    A decision node entered for the first time gets its plays, then PUCT picks one of them and
    the simulation goes on as NEW_CHANCE."""
    need = kind == NEW_PLAYS
    tree = _add_plays(tree, node, need, movegen)
    edge = jnp.where(need, _select_play(tree, node, play_noise), edge)
    new_chance, new_decision = (kind == NEW_CHANCE) | need, kind == NEW_DECISION
    tree, c_value = _add_chance(apply_fn, params, key, tree, node, edge, new_chance, chance_samples)
    tree, d_value = _add_decision(tree, node, edge, new_decision)
    # the backup starts at the new node's parent (or the terminal node itself), in its mover's view
    value = jnp.where(new_chance, c_value, jnp.where(new_decision, -d_value, _row(tree.c_points, node)))
    return tree, node, new_chance, value


def _backup(tree: Tree, node: jax.Array, is_dec: jax.Array, value: jax.Array) -> Tree:
    """Add one visit and `value` (flipped across every roll edge) from `node` up to the root."""

    def cond(carry: tuple) -> jax.Array:
        return jnp.any(carry[1] != NO_NODE)

    def body(carry: tuple) -> tuple:
        (d_visits, d_value_sum, c_visits, c_value_sum), node, is_dec, value = carry
        live = node != NO_NODE
        at_d, at_c = live & is_dec, live & ~is_dec
        stats = (
            _add(d_visits, node, 1.0, at_d),
            _add(d_value_sum, node, value, at_d),
            _add(c_visits, node, 1.0, at_c),
            _add(c_value_sum, node, value, at_c),
        )
        parent = jnp.where(is_dec, _row(tree.d_parent, node), _row(tree.c_parent, node))
        value = jnp.where(is_dec, -value, value)  # up a roll edge the mover changes
        return stats, jnp.where(live, parent, NO_NODE), ~is_dec, value

    # only the statistics travel through the loop: carrying the whole tree would copy its tables
    stats = (tree.d_visits, tree.d_value_sum, tree.c_visits, tree.c_value_sum)
    d_visits, d_value_sum, c_visits, c_value_sum = jax.lax.while_loop(
        cond, body, (stats, node, is_dec, value)
    )[0]
    return dataclasses.replace(
        tree, d_visits=d_visits, d_value_sum=d_value_sum, c_visits=c_visits, c_value_sum=c_value_sum
    )


def _new_tree(boards: jax.Array, plays: rules.Plays, prior: jax.Array, value: jax.Array, sims: int) -> Tree:
    batch, k = plays.mask.shape
    dn, cn = sims + 1, max(sims, 1)

    def table(
        shape: tuple[int, ...], dtype: Any, root: jax.Array | None = None, fill: float = 0
    ) -> jax.Array:
        t = jnp.full((batch, *shape), fill, dtype)
        return t if root is None else t.at[:, 0].set(root.astype(dtype))

    return Tree(
        d_board=table((dn, rules.BOARD_SIZE), jnp.int8, boards),
        d_roll=table((dn,), jnp.int32),
        d_ready=table((dn,), bool, jnp.ones(batch, bool)),
        d_steps=table((dn, k, rules.MAX_STEPS_PER_PLAY), jnp.uint8, plays.steps),
        d_prior=table((dn, k), jnp.float32, prior),
        d_mask=table((dn, k), bool, plays.mask),
        d_child=table((dn, k), jnp.int32, fill=NO_NODE),
        d_parent=table((dn,), jnp.int32, fill=NO_NODE),
        d_visits=table((dn,), jnp.float32, jnp.ones(batch)),
        d_value_sum=table((dn,), jnp.float32, value),
        c_board=table((cn, rules.BOARD_SIZE), jnp.int8),
        c_logits=table((cn, rules.NUM_STEPS), jnp.float32),
        c_weights=table((cn, rules.NUM_ROLLS), jnp.float32),
        c_points=table((cn,), jnp.float32),
        c_opp=table((cn,), jnp.float32),
        c_child=table((cn, rules.NUM_ROLLS), jnp.int32, fill=NO_NODE),
        c_parent=table((cn,), jnp.int32, fill=NO_NODE),
        c_visits=table((cn,), jnp.float32),
        c_value_sum=table((cn,), jnp.float32),
        num_decision=jnp.ones(batch, jnp.int32),
        num_chance=jnp.zeros(batch, jnp.int32),
    )


def run_search(
    apply_fn: ApplyFn,
    params: Any,
    key: jax.Array,
    boards: jax.Array,
    plays: rules.Plays,
    num_simulations: int,
    movegen: rules.MoveGenConfig,
    dirichlet_alpha: float = 0.3,
    dirichlet_fraction: float = 0.25,
    chance_samples: int = 0,
) -> SearchOutput:
    """Search from positions boards [B, 28] (mover's view) with their plays [B, K]; consumes `key`.

    Runs exactly `num_simulations` simulations: the root ends with
    num_simulations + 1 visits (its own evaluation counts as one) and its plays
    with num_simulations between them. `plays` must come from `movegen` (same
    K), as new decision nodes generate theirs with it. `chance_samples` > 0
    replaces each afterstate's 21 rolls by that many draws (`_roll_weights`).
    """
    if plays.mask.shape[-1] != movegen.max_plays:
        raise ValueError(f"plays have K={plays.mask.shape[-1]} but movegen.max_plays={movegen.max_plays}")
    k_noise, k_search = jax.random.split(key)
    step_logits, value = _evaluate(apply_fn, params, boards)
    logits = play_logits(step_logits, plays.steps, plays.mask)
    prior = _noisy_prior(k_noise, logits, plays.mask, float(dirichlet_alpha), float(dirichlet_fraction))
    tree = _new_tree(boards, plays, prior, value, num_simulations)

    batch, k = plays.mask.shape

    k_seed, k_rolls = jax.random.split(k_search)
    seed = jax.random.bits(k_seed, (), jnp.uint32)

    def simulate(i: int, tree: Tree) -> Tree:
        s = seed + jnp.uint32(2) * jnp.asarray(i, jnp.uint32)
        play_noise = _tie_noise(s, (batch, k))
        node, edge, kind = _descend(tree, play_noise, _tie_noise(s + 1, (batch, rules.NUM_ROLLS)))
        tree, start, is_dec, leaf_value = _expand(
            apply_fn,
            params,
            jax.random.fold_in(k_rolls, i),
            tree,
            node,
            edge,
            kind,
            play_noise,
            movegen,
            chance_samples,
        )
        return _backup(tree, start, is_dec, leaf_value)

    tree = jax.lax.fori_loop(0, num_simulations, simulate, tree)
    visits, q = _children_stats(tree.c_visits, tree.c_value_sum, tree.d_child[:, 0])
    weights = visits / jnp.maximum(jnp.sum(visits, -1, keepdims=True), 1.0)
    return SearchOutput(
        visit_counts=visits,
        qvalues=q,
        action_weights=weights,
        value=tree.d_value_sum[:, 0] / tree.d_visits[:, 0],
        tree=tree,
    )


def select_play(
    key: jax.Array, visits: jax.Array, qvalues: jax.Array, mask: jax.Array, temperature: jax.Array
) -> jax.Array:
    """A play [B] from root visit counts [B, K]; consumes `key`.

    temperature [B] > 0: sample proportionally to visits^(1/T) (visited plays
    only); 0: the most visited play, ties broken by the higher Q-value [B, K].
    """
    t = jnp.maximum(temperature, 1e-6)[:, None]
    sample_logits = jnp.where(mask & (visits > 0), jnp.log(jnp.maximum(visits, 1e-30)) / t, NEG_INF)
    sampled = jax.random.categorical(key, sample_logits, axis=-1)
    # Q is within [-3, 3]: the tie-break term stays below one visit.
    greedy = jnp.argmax(jnp.where(mask, visits + 0.1 * (qvalues + 3.0) / 6.0, NEG_INF), axis=-1)
    return jnp.where(temperature > 0, sampled, greedy)
