"""Opponents as deciders for the paired match loop (`bgai.core.evaluate.paired_match`).

random and pubeval run inside the compiled loop; GNU Backgammon runs outside it, one move per
active game and turn, through `host_decider` (a `jax.pure_callback`); `past_K` is our own
network with older weights (the caller supplies them as the opponent's params).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bgai.agent import eval_decider, movegen_of, net_of, playing
from bgai.config import Config, EvalConfig
from bgai.core import rules
from bgai.core.players import HostChoose, host_decider, pubeval_decider, random_decider
from bgai.core.positionid import position_id
from bgai.core.selfplay import Decide
from bgai.errors import ConfigError
from bgai.opponent_names import Opponent

if TYPE_CHECKING:
    from bgai.opponents.gnubg import MoveEngine


class IllegalMoveError(RuntimeError):
    """An engine chose a play that is not among our legal plays (a rules or protocol bug)."""


@dataclass
class Built:
    """An opponent ready to play: its decider, and the engine to close when done (if any)."""

    opponent: Opponent
    decide: Decide
    engine: MoveEngine | None = None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


def engine_choose(engine: MoveEngine) -> HostChoose:
    """The host side of an engine player: the engine's afterstate and its index in our plays.

    A play missing from our list is an error (a rules or protocol bug) unless the list overflowed
    (a capacity-limited move generator keeps `movegen.max_plays` plays): then the engine's
    afterstate is played as it is, with index -1.
    """

    def choose(
        boards: np.ndarray,
        dice: np.ndarray,
        play_boards: np.ndarray,
        mask: np.ndarray,
        overflow: np.ndarray,
        active: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        action = np.zeros(len(boards), np.int32)
        after = np.asarray(boards, np.int32).copy()
        for i in np.flatnonzero(active):
            hi, lo = (int(x) for x in rules.DICE[int(dice[i])])
            after[i] = engine.best_afterstate(np.asarray(boards[i]), (hi, lo))
            found = np.flatnonzero(mask[i] & (play_boards[i] == after[i]).all(axis=-1))
            if found.size:
                action[i] = found[0]
            elif overflow[i]:
                action[i] = -1
            else:
                raise IllegalMoveError(
                    f"the engine's play from {position_id(boards[i])} with {hi}-{lo} is not a legal play"
                )
        return action, after

    return choose


def make_engine(op: Opponent, cfg: EvalConfig) -> MoveEngine:
    from bgai.opponents.gnubg import GnubgExternal, GnubgNN

    if cfg.gnubg_backend == "nn":
        return GnubgNN(plies=op.plies)
    return GnubgExternal(plies=op.plies, binary=cfg.gnubg_path)


def build_opponent(op: Opponent, cfg: EvalConfig, ours: Decide) -> Built:
    """The decider of `op` (an engine is started here; `Built.close` ends it). `ours` is our
    model's player, which `past_K` reuses with older params."""
    if op.kind == "random":
        return Built(op, random_decider())
    if op.kind == "pubeval":
        return Built(op, pubeval_decider())
    if op.kind == "past":
        return Built(op, ours)
    if op.cube:
        raise ValueError(
            f"{op.name} plays cubeful games (bgai eval --cube, the fleet's eval workers), not moves"
        )
    from bgai.opponents.gnubg import GnubgUnavailable

    try:
        engine = make_engine(op, cfg)
        engine.start()
    except GnubgUnavailable as exc:  # a setup problem, not a crash: the role exits 2 and says so
        raise ConfigError("eval.opponents", f"{op.name}: {exc}") from exc
    return Built(op, host_decider(engine_choose(engine)), engine)


class ExternalAgent:
    """Our model as gnubg's external player (`referee.ExternalPlayer`), compiled once: `choose`
    answers a move (eval.player, the configured move generator) as (afterstate, gnubg move
    text); `cube` answers a `fibs.FibsPosition` before our roll with "double" or "roll", one
    where we are doubled with "take" or "drop": Janowski's cubeful equity from the net's
    probabilities (`bgai.core.cube`) at `cube_plies` 0, 1 or 2, or with `naive_cube` never double
    and always take. `load` swaps the weights (an argument of the compiled code, not a constant)."""

    def __init__(
        self, cfg: Config, cube_plies: int = 0, jacoby: bool = False, naive_cube: bool = False
    ) -> None:
        import jax
        import jax.numpy as jnp

        from bgai.core import cube
        from bgai.core.game import GameState

        self.cfg, self.naive_cube = cfg, naive_cube
        net, decide, movegen = net_of(cfg), eval_decider(cfg, net_of(cfg)), movegen_of(cfg)
        self._index = {(int(a), int(b)): i for i, (a, b) in enumerate(rules.DICE)}
        self.variables: Any = None

        @jax.jit
        def pick(
            variables: Any, board: jax.Array, dice: jax.Array, key: jax.Array
        ) -> tuple[jax.Array, jax.Array]:
            boards, dice_b = board[None], dice[None]
            plays = rules.legal_plays_batch(boards, dice_b, movegen)
            zero = jnp.zeros((1,), jnp.int32)
            states = GameState(boards, dice_b, zero, jnp.zeros((1,), bool), zero, zero)
            action = decide(variables, key, states, plays)[0][0]
            return plays.boards[0, action].astype(jnp.int32), plays.steps[0, action]

        @jax.jit
        def decision(variables: Any, board: jax.Array, state: jax.Array) -> tuple[jax.Array, jax.Array]:
            d = cube.model_decision(net.apply, variables, board[None], state, cube_plies, movegen, jacoby)
            return d.double[0], d.take[0]

        self._pick, self._decision = pick, decision

    def load(self, params: Any) -> ExternalAgent:
        self.variables = playing(self.cfg, params)
        return self

    def choose(self, board: np.ndarray, dice: tuple[int, int]) -> tuple[np.ndarray, str]:
        import jax
        import jax.numpy as jnp

        from bgai.opponents.fibs import format_play

        hi, lo = max(dice), min(dice)
        after, steps = self._pick(
            self.variables, jnp.asarray(board, jnp.int32), jnp.int32(self._index[hi, lo]), jax.random.key(0)
        )
        return np.asarray(after), format_play(np.asarray(steps))

    def cube(self, pos: Any) -> str:
        import jax.numpy as jnp

        from bgai.core import cube

        if self.naive_cube:
            return "take" if pos.doubled else "roll"
        mine, theirs = pos.mover_may_double()  # of the side on roll: the doubler when doubled
        state = cube.CENTRED if mine and theirs else cube.OWNED if mine else cube.UNAVAILABLE
        double, take = self._decision(
            self.variables, jnp.asarray(pos.mover_board(), jnp.int32), jnp.int32(state)
        )
        if pos.doubled:
            return "take" if bool(take) else "drop"
        return "double" if bool(double) else "roll"


def agent_choose(cfg: Config, params: Any) -> Callable[[np.ndarray, tuple[int, int]], tuple[np.ndarray, str]]:
    """Our model's moves for gnubg's external-player protocol (`ExternalAgent.choose`)."""
    return ExternalAgent(cfg).load(params).choose


def agent_cube(cfg: Config, params: Any, plies: int = 0, jacoby: bool = False) -> Callable[[Any], str]:
    """Our model's cube decisions for gnubg's external-player protocol (`ExternalAgent.cube`)."""
    return ExternalAgent(cfg, plies, jacoby).load(params).cube
