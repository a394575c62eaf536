"""Self-play produces whole, internally consistent episodes."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgai.core import afterstate, network, players, rules, selfplay
from bgai.core.episodes import EpisodeAssembler

MG = rules.MoveGenConfig(max_plays=64, frontier2=48, frontier3=96)


@pytest.fixture(scope="module")
def net_params() -> tuple[network.BgNet, object]:
    net = network.BgNet((16,))
    return net, network.init_params(net, jax.random.key(0))


@pytest.fixture(scope="module")
def episodes(net_params: tuple) -> tuple[list, EpisodeAssembler]:
    net, params = net_params
    decide = players.afterstate_decider(net.apply, 0.5, 512, 0.2, eval_slots=16)
    run = jax.jit(partial(selfplay.play_chunk, decide, length=48, max_turns=400, movegen=MG))
    states = selfplay.start_games(jax.random.key(1), 8)
    asm = EpisodeAssembler()
    out = []
    for i in range(8):
        states, chunk = run(params, states, jax.random.key(10 + i))
        out += asm.add(jax.device_get(chunk), model_version=7)
    return out, asm


def test_packed_values_equal_dense(net_params: tuple) -> None:
    net, params = net_params
    st = selfplay.start_games(jax.random.key(3), 16)
    plays = jax.jit(rules.legal_plays_batch, static_argnums=2)(st.board, st.dice, MG)
    plays = jax.tree.map(jnp.asarray, plays)
    dense = afterstate.afterstate_values(net.apply, params, plays)
    packed = afterstate.afterstate_values(net.apply, params, plays, slots_per_position=24)
    assert np.allclose(dense, packed, atol=1e-5)
    tiny = afterstate.afterstate_values(net.apply, params, plays, slots_per_position=1)  # falls back
    assert np.allclose(dense, tiny, atol=1e-5)


def test_episodes_are_whole_games(episodes: tuple) -> None:
    eps, asm = episodes
    assert len(eps) >= 4
    # one call over all decisions of all episodes (a compile per episode length would be slow)
    all_boards = np.concatenate([ep.boards for ep in eps])
    all_dice = np.concatenate([ep.dice for ep in eps])
    every = jax.jit(rules.legal_plays_batch, static_argnums=2)(
        jnp.asarray(all_boards, jnp.int32), jnp.asarray(all_dice, jnp.int32), MG
    )
    every = jax.tree.map(np.asarray, every)
    start = 0
    for ep in eps:
        stop = start + len(ep)
        boards, mask = every.boards[start:stop], every.mask[start:stop]
        start = stop
        assert ep.model_version == 7 and ep.result in (1, 2, 3, -1, -2, -3)
        assert np.array_equal(ep.boards[0], np.asarray(rules.start_board())), "starts at the opening"
        assert ep.dice[0] in rules.OPENING_ROLLS
        assert np.all(ep.player[1:] != ep.player[:-1]), "sides alternate"
        nxt = np.asarray(rules.flip(jnp.asarray(boards)))  # [T, K, 28] next positions, next mover's view
        reach = np.all(nxt[:-1] == ep.boards[1:, None, :], -1) & mask[:-1]
        assert reach.any(-1).all(), "every position follows from a legal play of the previous one"
        assert np.array_equal(mask, ep.mask)
        assert np.allclose(ep.policy.sum(-1), 1.0, atol=1e-4) and np.all(ep.policy[~ep.mask] == 0)
        won = np.asarray(jax.vmap(rules.win_points)(jnp.asarray(boards[-1][mask[-1]])))
        sign = 1 if ep.player[-1] == 0 else -1
        assert sign * ep.result in set(won.tolist()), "the last decision can end the game as recorded"
        outcome = ep.outcome
        assert np.all((outcome[ep.player == ep.player[-1]] < 3) == (sign * ep.result > 0))


def test_assembler_stitches_across_chunks(episodes: tuple) -> None:
    eps, _ = episodes
    assert max(len(ep) for ep in eps) > 48, "some game spans more than one chunk"


def test_sample_index_follows_the_distribution() -> None:
    """Inverse-CDF sampling: frequencies match the probabilities; empty slots never come out."""
    probs = jnp.asarray([0.5, 0.0, 0.3, 0.2, 0.0, 0.0])
    keys = jax.random.split(jax.random.key(7), 20_000)
    idx = np.asarray(jax.vmap(afterstate.sample_index, in_axes=(0, None))(keys, probs))
    freq = np.bincount(idx, minlength=6) / len(idx)
    assert freq[1] == freq[4] == freq[5] == 0
    assert np.allclose(freq, np.asarray(probs), atol=0.015), freq
    # batched rows, unnormalised, one per game
    rows = jnp.asarray([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    assert np.array_equal(np.asarray(afterstate.sample_index(jax.random.key(1), rows)), [1, 0])


def test_choose_is_greedy_at_zero_temperature() -> None:
    values = jnp.asarray([[0.1, 0.9, 0.5], [0.3, -0.2, 0.8]])
    mask = jnp.asarray([[True, False, True], [True, True, True]])
    temps = jnp.asarray([0.0, 0.0])
    assert np.array_equal(np.asarray(afterstate.choose(jax.random.key(0), values, mask, temps)), [2, 2])
    hot = np.asarray(
        jax.vmap(lambda k: afterstate.choose(k, values, mask, jnp.asarray([50.0, 50.0])))(
            jax.random.split(jax.random.key(1), 2000)
        )
    )
    assert not np.any(hot[:, 0] == 1), "a masked play is never chosen"
    assert len(np.unique(hot[:, 1])) == 3, "a high temperature explores every legal play"
