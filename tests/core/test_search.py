"""Stochastic MCTS (bgai.core.search) on hand-built positions with a tiny analytic network.

The fake network has no parameters: its equity is tanh(pip lead / 20), read
back from the input features, and its step logits are zero (or a given
vector), so what the search does is predictable from the position alone.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgai.core import rules
from bgai.core.afterstate import afterstate_values
from bgai.core.encoding import encode
from bgai.core.game import GameState, new_game
from bgai.core.network import BgNet, init_params
from bgai.core.players import search_decider
from bgai.core.search import SearchOutput, Tree, run_search
from bgai.core.selfplay import play_batch

MOVEGEN = rules.MoveGenConfig(max_plays=32, frontier2=32, frontier3=64)
K = MOVEGEN.max_plays


def _pips_from_features(f: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mover, opponent) pip counts [N] from encoding.encode features [N, 196]."""

    def counts(units: jax.Array) -> jax.Array:  # [N, 96] -> [N, 24]
        u = units.reshape(-1, rules.NUM_POINTS, 4)
        return u[..., 0] + u[..., 1] + u[..., 2] + 2.0 * u[..., 3]

    pts = jnp.arange(1, rules.NUM_POINTS + 1, dtype=jnp.float32)
    mine = jnp.sum(counts(f[:, :96]) * pts, -1) + 25.0 * 2.0 * f[:, 192]
    theirs = jnp.sum(counts(f[:, 96:192]) * (25.0 - pts), -1) + 25.0 * 2.0 * f[:, 193]
    return mine, theirs


def fake_apply(step_bias: jax.Array | None = None) -> Any:
    """apply_fn(params, boards) -> (step logits [N, 150], value logits [N, 6]); params unused.

    Value logits (x, -30, -30, -x, -30, -30) with x = pip lead / 20 give equity
    tanh(x), strictly inside (-1, 1).
    """

    def apply(params: Any, boards: jax.Array) -> tuple[jax.Array, jax.Array]:
        del params
        features = encode(boards.astype(jnp.int32))  # what the net itself encodes
        mine, theirs = _pips_from_features(features)
        x = (theirs - mine) / 20.0
        low = jnp.full_like(x, -30.0)
        value_logits = jnp.stack([x, low, low, -x, low, low], axis=-1)
        bias = jnp.zeros(rules.NUM_STEPS) if step_bias is None else step_bias
        return jnp.broadcast_to(bias, (features.shape[0], rules.NUM_STEPS)), value_logits

    return apply


def roll(hi: int, lo: int) -> int:
    return int(np.flatnonzero((rules.DICE[:, 0] == hi) & (rules.DICE[:, 1] == lo))[0])


def board(mine: dict[int, int], theirs: dict[int, int], bar: int = 0) -> jax.Array:
    """A board from {idx: count} for each side; the rest of each side's 15 is borne off."""
    b = np.zeros(rules.BOARD_SIZE, np.int32)
    for i, n in mine.items():
        b[i] = n
    for i, n in theirs.items():
        b[i] = -n
    b[rules.BAR] = bar
    b[rules.OFF] = rules.NUM_CHECKERS - sum(mine.values()) - bar
    b[rules.OPP_OFF] = -(rules.NUM_CHECKERS - sum(theirs.values()))
    return jnp.asarray(b)


def states_of(boards: jax.Array, dice: list[int], turn: int = 0) -> GameState:
    n = boards.shape[0]
    return GameState(
        board=boards,
        dice=jnp.asarray(dice, jnp.int32),
        player=jnp.zeros(n, jnp.int32),
        done=jnp.zeros(n, bool),
        result=jnp.zeros(n, jnp.int32),
        turn=jnp.full(n, turn, jnp.int32),
    )


def plays_of(boards: jax.Array, dice: list[int]) -> rules.Plays:
    return rules.legal_plays_batch(boards, jnp.asarray(dice, jnp.int32), MOVEGEN)


# Compiled once per batch size and shared by the tests (compiling the search dominates their time).
FAKE = fake_apply()
SEARCH = jax.jit(
    run_search,
    static_argnames=(
        "apply_fn",
        "num_simulations",
        "movegen",
        "dirichlet_alpha",
        "dirichlet_fraction",
        "chance_samples",
    ),
)
# samples visits during turn 0, the most visited play afterwards
DECIDE = jax.jit(search_decider(FAKE, 16, 0.3, 0.25, 1.0, 1, MOVEGEN))


def search(
    apply_fn: Any, params: Any, boards: jax.Array, dice: list[int], sims: int, chance_samples: int = 0
) -> tuple[rules.Plays, SearchOutput]:
    plays = plays_of(boards, dice)
    out = SEARCH(
        apply_fn,
        params,
        jax.random.key(0),
        boards,
        plays,
        sims,
        MOVEGEN,
        dirichlet_fraction=0.0,
        chance_samples=chance_samples,
    )
    return plays, out


# Mover two checkers from home (points 4 and 3), the opponent none off: 4-3 wins a gammon.
GAMMON_WIN = board({3: 1, 2: 1}, {18: 5, 19: 5, 20: 5})
# Mover two on the bar, the opponent's points 19..23 closed: 6-1 enters one checker, nothing else.
FORCED = board({5: 13}, {18: 2, 19: 2, 20: 2, 21: 2, 22: 2, 10: 5}, bar=2)


@functools.cache
def deep_search() -> SearchOutput:
    """24 simulations, one drawn roll per afterstate, a real network's priors, on three positions.

    One compile shared by the tests below (compiling the search dominates their time).
    """
    net = BgNet(hidden=(16,))
    params = init_params(net, jax.random.key(2))
    boards = jnp.stack([rules.start_board(), GAMMON_WIN, FORCED])
    dice = [roll(2, 1), roll(4, 3), roll(6, 1)]
    return search(net.apply, params, boards, dice, DEEP_SIMS, chance_samples=1)[1]


DEEP_SIMS = 24


def decide(boards: list[jax.Array], dice: list[int], turn: int) -> tuple[jax.Array, jax.Array, rules.Plays]:
    """DECIDE on three games (one compiled shape for every test): (actions, policy targets, plays)."""
    stacked = jnp.stack(boards)
    plays = plays_of(stacked, dice)
    action, target = DECIDE(None, jax.random.key(turn), states_of(stacked, dice, turn=turn), plays)
    return action, target, plays


def test_runs_exactly_the_configured_simulations() -> None:
    out = deep_search()
    tree = out.tree
    # the root's own evaluation counts as a visit, then one per simulation
    assert np.all(np.asarray(tree.d_visits[:, 0]) == DEEP_SIMS + 1)
    assert np.all(np.asarray(out.visit_counts).sum(-1) == DEEP_SIMS)
    # no game ends within reach of the opening: every simulation expanded exactly one new node
    assert int(tree.num_decision[0] + tree.num_chance[0]) == DEEP_SIMS + 1


def test_search_finds_the_winning_play_and_values_it_exactly() -> None:
    plays, out = search(FAKE, None, GAMMON_WIN[None], [roll(4, 3)], 16)
    points = np.asarray(jax.vmap(rules.win_points)(plays.boards[0]))
    mask = np.asarray(plays.mask[0])
    assert mask.sum() == 2 and points[mask].tolist().count(2) == 1  # one winning play, one not
    win = int(np.argmax(points))
    visits = np.asarray(out.visit_counts[0])
    assert int(np.argmax(visits)) == win
    q = np.asarray(out.qvalues[0])
    # the winning play's Q is the gammon, exactly, however often it was visited
    assert q[win] == 2.0
    # Signs: the other play was searched below its rolls, whose decision nodes back up
    # the opponent's equity with its sign flipped, i.e. the afterstate value again.
    other = int(np.flatnonzero(mask & (points == 0))[0])
    assert visits[other] >= 2
    expected = np.asarray(afterstate_values(FAKE, None, plays))[0, other]
    assert 0.9 < expected < 1.0
    np.testing.assert_allclose(q[other], expected, rtol=1e-6)
    action, _, _ = decide([GAMMON_WIN, GAMMON_WIN, FORCED], [roll(4, 3), roll(4, 3), roll(6, 1)], turn=5)
    assert int(action[0]) == win


def test_single_legal_play_is_chosen() -> None:
    action, target, plays = decide([FORCED] * 3, [roll(6, 1)] * 3, turn=0)
    assert int(plays.mask[0].sum()) == 1
    assert int(action[0]) == 0
    np.testing.assert_array_equal(np.asarray(target[0]), np.eye(K)[0])


def test_policy_target_is_a_distribution_over_legal_plays() -> None:
    states = jax.vmap(new_game)(jax.random.split(jax.random.key(5), 3))
    boards = jnp.stack([states.board[0], GAMMON_WIN, FORCED])
    states = states.replace(board=boards, dice=jnp.asarray([int(states.dice[0]), roll(4, 3), roll(6, 1)]))
    plays = rules.legal_plays_batch(states.board, states.dice, MOVEGEN)
    action, target = DECIDE(None, jax.random.key(1), states, plays)
    target, mask = np.asarray(target), np.asarray(plays.mask)
    np.testing.assert_allclose(target.sum(-1), 1.0, rtol=1e-6)
    assert np.all(target[~mask] == 0) and np.all(target >= 0)
    assert np.all(mask[np.arange(3), np.asarray(action)])


def test_self_play_with_search_finishes_games() -> None:
    decide = search_decider(FAKE, 4, 0.3, 0.25, 1.0, 4, MOVEGEN)
    run = jax.jit(play_batch, static_argnums=(0, 3, 4, 5))
    traj = run(decide, None, jax.random.key(2), 2, 400, MOVEGEN)
    assert bool(np.all(np.asarray(traj.finished)))
    result = np.asarray(traj.result)
    assert np.all((np.abs(result) >= 1) & (np.abs(result) <= 3))
    valid = np.asarray(traj.valid)
    policy, mask = np.asarray(traj.policy)[valid], np.asarray(traj.mask)[valid]
    np.testing.assert_allclose(policy.sum(-1), 1.0, rtol=1e-6)
    assert np.all(policy[~mask] == 0)


def _check_tree(tree: Tree, game: int) -> int:
    """Walk one game's tree against a slow reference; returns how many inner decision nodes have plays.

    Every chance node is the afterstate of a legal play of its parent (regenerated
    here by `rules.legal_plays` for the roll that led to the parent), and every
    node's visits and value sum are its own evaluation plus its children's, with
    the sign flipped across each roll.
    """
    t = jax.tree.map(lambda x: np.asarray(x[game]), tree)
    nd, nc, entered = int(t.num_decision), int(t.num_chance), 0
    roll_of = {0: None}
    for c in range(nc):
        for r in np.flatnonzero(t.c_child[c] >= 0):
            roll_of[int(t.c_child[c, r])] = int(r)
    for d in range(nd):
        kids = t.d_child[d][t.d_child[d] >= 0]
        assert np.all(t.d_mask[d][t.d_child[d] >= 0])  # only legal plays were expanded
        own = t.d_value_sum[d] - t.c_value_sum[kids].sum()
        assert t.d_visits[d] == 1 + t.c_visits[kids].sum()
        if d == 0:
            continue
        np.testing.assert_allclose(own, t.c_opp[t.d_parent[d]], atol=1e-5)
        assert t.d_roll[d] == roll_of[d]
        if not t.d_ready[d]:  # never entered: no plays generated, nothing below
            assert len(kids) == 0 and not t.d_mask[d].any()
            continue
        legal = rules.legal_plays(jnp.asarray(t.d_board[d], jnp.int32), roll_of[d], MOVEGEN)
        assert np.array_equal(np.asarray(legal.mask), t.d_mask[d])
        np.testing.assert_array_equal(np.asarray(legal.steps)[t.d_mask[d]], t.d_steps[d][t.d_mask[d]])
        entered += 1
    for c in range(nc):
        d, kids = t.c_parent[c], t.c_child[c][t.c_child[c] >= 0]
        plays = np.flatnonzero(t.d_child[d] == c)
        assert len(plays) == 1
        after = rules.apply_play(jnp.asarray(t.d_board[d], jnp.int32), jnp.asarray(t.d_steps[d, plays[0]]))
        assert np.array_equal(np.asarray(after), t.c_board[c])
        if t.c_points[c] > 0:  # terminal: never expanded, every visit is worth the points
            assert len(kids) == 0 and t.c_value_sum[c] == t.c_points[c] * t.c_visits[c]
            continue
        assert t.c_visits[c] == 1 + t.d_visits[kids].sum()
        np.testing.assert_allclose(t.c_value_sum[c] + t.d_value_sum[kids].sum(), -t.c_opp[c], atol=1e-4)
    return entered


def test_tree_is_consistent_with_a_slow_reference() -> None:
    """Deep trees (one drawn roll per afterstate) on three positions, a real network's priors."""
    out = deep_search()
    depth2 = np.asarray(out.tree.c_parent) > 0  # chance nodes below a non-root decision node
    assert depth2.sum() > 0  # the search went past one ply
    assert sum(_check_tree(out.tree, g) for g in range(3)) > 0
