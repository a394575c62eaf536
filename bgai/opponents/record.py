"""Games of our model against an opponent, recorded move by move (`bgai export-games`).

The compiled game loop (`bgai.core.selfplay.play_batch`) keeps every position, roll and legal
play of a game but not which play was made, and a match (`bgai.core.evaluate`) keeps only the
points. `recording` wraps a decider so that its policy target is the play it chose, one-hot (as
pubeval's and the lookahead player's targets already are): the trajectory then holds each
game's moves, and `games_of` reads them back as `bgai.opponents.mat.GameRecord`s, each play
checked against the position that followed it. Matches that do not record are unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bgai.agent import eval_decider, movegen_of, net_of, playing
from bgai.config import Config
from bgai.core import rules
from bgai.core.game import GameState
from bgai.core.selfplay import Decide, Trajectory, decided, paired_sides, play_batch
from bgai.opponent_names import Opponent
from bgai.opponents.fibs import flip
from bgai.opponents.mat import GameRecord, replay, turn_of
from bgai.opponents.players import Built, build_opponent


def recording(decide: Decide) -> Decide:
    """`decide` with the one-hot of the play it chose as its policy target (all zeros for a play
    outside our move list: GNU Backgammon's, where a capacity-limited list dropped it)."""

    def rec(params: Any, key: jax.Array, states: GameState, plays: rules.Plays) -> tuple:
        action, _, after = decided(decide(params, key, states, plays), plays)
        return action, jax.nn.one_hot(action, plays.mask.shape[-1]), after

    return rec


class Played(NamedTuple):
    """A batch of B recorded games, T decisions each at most (host or device arrays)."""

    boards: Any  # [T, B, 28] int8 position before each decision, mover's view
    dice: Any  # [T, B] int8 roll index (rules.DICE)
    player: Any  # [T, B] int8 side to move
    valid: Any  # [T, B] bool the game was still on
    steps: Any  # [T, B, 4] uint8 steps of the play chosen (rules.NO_STEP padded)
    known: Any  # [T, B] bool the play chosen is in our move list (its steps are known)
    result: Any  # [B] int32 points won by player 0
    finished: Any  # [B] bool the game ended within max_turns


def played(traj: Trajectory) -> Played:
    """The moves of a trajectory played with `recording`: its policy rows are one-hot."""
    action = jnp.argmax(traj.policy, axis=-1)  # [T, B]
    steps = jnp.take_along_axis(traj.steps, action[..., None, None], axis=2)[:, :, 0]
    known = jnp.max(traj.policy, axis=-1) > 0.5
    return Played(traj.boards, traj.dice, traj.player, traj.valid, steps, known, traj.result, traj.finished)


def games_of(p: Played, paired: bool = False) -> list[GameRecord]:
    """The finished games of a batch (host arrays), in batch order, player A (the first decider)
    as player 0: with `paired` (`paired_sides`), A is player 1 of the odd games, whose sides are
    swapped here. RuntimeError if a play is unknown or does not lead to the position recorded
    after it."""
    start = np.asarray(rules.start_board())
    out = []
    for b in np.flatnonzero(p.finished):
        n = int(np.sum(p.valid[:, b]))
        if not p.known[:n, b].all():
            raise RuntimeError(
                f"game {b}: a play outside our move list (movegen.max_plays dropped it): raise it"
            )
        swap = int(paired and b % 2 == 1)
        turns = tuple(turn_of(p.player[t, b] ^ swap, p.dice[t, b], p.steps[t, b]) for t in range(n))
        game = GameRecord(turns, int(p.result[b]) * (-1 if swap else 1))
        try:
            _, after = replay(game)
        except ValueError as exc:
            raise RuntimeError(f"game {b}: the plays recorded are not the game played: {exc}") from exc
        seen = [start, *(flip(a) for a in after[:-1])]
        for t in range(n):
            if not np.array_equal(seen[t], p.boards[t, b]):
                raise RuntimeError(f"game {b}: the plays recorded do not lead to position {t + 1}")
        out.append(game)
    return out


class GameRecorder:
    """Our model (eval.player) against one opponent as `bgai eval` plays it: in pairs of games
    with the same dice, the sides swapping seats (`paired_sides`), in batches of up to `batch`
    games. Our model is player 0 of every `GameRecord`. An engine opponent (gnubg) lives while
    the recorder is open."""

    def __init__(self, cfg: Config, op: Opponent, batch: int = 16) -> None:
        if op.kind == "gnubg":
            # gnubg may make a play that a list of movegen.max_plays dropped, and a play missing
            # from the list has no steps to write: against gnubg every list holds every play
            exact = rules.EXACT_MOVEGEN._asdict()
            del exact["backend"]  # the capacities only: the host's generator stays
            cfg = dataclasses.replace(cfg, movegen=dataclasses.replace(cfg.movegen, **exact))
        self.cfg, self.op, self.batch = cfg, op, batch

    def __enter__(self) -> GameRecorder:
        cfg = self.cfg
        ours = eval_decider(cfg, net_of(cfg))
        self.built: Built = build_opponent(self.op, cfg.eval, ours)
        self._decide = recording(paired_sides(ours, self.built.decide))
        return self

    def __exit__(self, *exc: object) -> None:
        self.built.close()

    def _match(self, batch: int) -> Callable[[Any, jax.Array], Played]:
        run = partial(
            play_batch,
            self._decide,
            batch=batch,
            max_turns=self.cfg.selfplay.max_turns,
            movegen=movegen_of(self.cfg),
            paired=True,
        )
        return jax.jit(lambda params, key: played(run(params, key)))

    def play(
        self, params: Any, games: int, seed: int, progress: Callable[[int], None] | None = None
    ) -> list[GameRecord]:
        """The first `games` finished games with `params` (a game past selfplay.max_turns is
        dropped); round i uses `fold_in(key(seed), i)`: the same seed, the same games.
        `progress(n)` after each round."""
        batch = min(games + games % 2, self.batch - self.batch % 2)
        match, key, variables = self._match(batch), jax.random.key(seed), playing(self.cfg, params)
        out: list[GameRecord] = []
        for i in range(10 * math.ceil(games / batch)):
            got = games_of(jax.device_get(match((variables, None), jax.random.fold_in(key, i))), paired=True)
            got = got[: games - len(out)]
            out += got
            if progress is not None:
                progress(len(got))
            if len(out) == games:
                return out
        raise RuntimeError(f"{len(out)} of {games} games ended: raise selfplay.max_turns")
