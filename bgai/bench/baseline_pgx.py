"""Speed baseline: pgx 2.6 backgammon driven by mctx's stochastic MuZero search.

pgx rolls the dice inside `step`, so a chance node is emulated: the decision
function steps the env with a fixed key, and the chance function overwrites
the freshly rolled dice with the searched outcome when the turn changed (and
is a one-outcome node when the same player moves again). pgx plays one
checker per action and does not enforce the full-use-of-dice rules: this is a
speed reference only, never a rules reference. Network: the same MLP trunk as
ours, on pgx's 34-int observation, 156 action logits and a scalar value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bgai.core import rules
from bgai.core.network import mlp_trunk

_PGX_DICE = jnp.asarray(rules.DICE - 1)  # [21, 2] 0-based faces
_LOG_PROBS = jnp.log(jnp.asarray(rules.DICE_PROBS))


class PgxNet(nn.Module):
    hidden: Sequence[int] = (128, 128)

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = mlp_trunk(x, self.hidden)  # the same trunk as ours
        return nn.Dense(156)(x), jnp.tanh(nn.Dense(1)(x))[..., 0]


def make_baseline(hidden: Sequence[int], batch: int, num_simulations: int) -> tuple[Any, Any, Any]:
    """(params, init_fn(key) -> states, step_fn(params, states, key) -> (states, decisions))."""
    import mctx
    import pgx.backgammon as bg

    env = bg.Backgammon()
    net = PgxNet(tuple(hidden))
    params = net.init(jax.random.key(0), jnp.zeros((1, 34), jnp.float32))

    def evaluate(params: Any, states: Any) -> tuple[jax.Array, Any]:
        logits, value = net.apply(params, states.observation.astype(jnp.float32))
        return jnp.where(states.legal_action_mask, logits, -1e9), value

    def decision_fn(params: Any, key: jax.Array, action: jax.Array, states: Any) -> tuple:
        del key
        nxt = jax.vmap(env.step)(states, action, jax.random.split(jax.random.key(0), action.shape[0]))
        _, value = evaluate(params, nxt)
        changed = (nxt.current_player != states.current_player) | nxt.terminated
        certain = jnp.full((rules.NUM_ROLLS,), -1e9).at[0].set(0.0)
        chance = jnp.where(changed[:, None], _LOG_PROBS[None], certain[None])
        value = jnp.where(changed, -value, value)
        return mctx.DecisionRecurrentFnOutput(chance_logits=chance, afterstate_value=value), (nxt, changed)

    def chance_fn(params: Any, key: jax.Array, outcome: jax.Array, after: Any) -> tuple:
        del key
        states, changed = after
        dice = _PGX_DICE[outcome]

        def set_dice(s: Any, d: jax.Array, ch: jax.Array) -> Any:
            playable = bg._set_playable_dice(d)
            new = s.replace(
                _dice=d, _playable_dice=playable, legal_action_mask=bg._legal_action_mask(s._board, d)
            )
            return jax.tree.map(lambda a, b: jnp.where(ch & ~s.terminated, a, b), new, s)

        states = jax.vmap(set_dice)(states, dice, changed)
        logits, value = evaluate(params, states)
        reward = states.rewards[jnp.arange(outcome.shape[0]), states.current_player]
        out = mctx.ChanceRecurrentFnOutput(
            action_logits=logits,
            value=jnp.where(states.terminated, 0.0, value),
            reward=jnp.where(changed, -reward, reward),
            discount=jnp.where(states.terminated, 0.0, jnp.where(changed, -1.0, 1.0)),
        )
        return out, states

    def init_fn(key: jax.Array) -> Any:
        return jax.vmap(env.init)(jax.random.split(key, batch))

    @jax.jit
    def step_fn(params: Any, states: Any, key: jax.Array) -> tuple[Any, jax.Array]:
        k_search, k_step, k_reset = jax.random.split(key, 3)
        logits, value = evaluate(params, states)
        root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=states)
        out = mctx.stochastic_muzero_policy(
            params,
            k_search,
            root,
            decision_fn,
            chance_fn,
            num_simulations,
            invalid_actions=~states.legal_action_mask,
        )
        nxt = jax.vmap(env.step)(states, out.action, jax.random.split(k_step, batch))
        fresh = jax.vmap(env.init)(jax.random.split(k_reset, batch))
        nxt = jax.tree.map(lambda a, b: jnp.where(_bcast(nxt.terminated, a), b, a), nxt, fresh)
        return nxt, jnp.asarray(batch)

    return params, init_fn, step_fn


def _bcast(flag: jax.Array, like: jax.Array) -> jax.Array:
    return flag.reshape(flag.shape + (1,) * (np.ndim(like) - 1))
