"""`bgai bench build-decisions`: make the decision set of `bgai bench strength` (seeded, minutes).

1. Games of GNU Backgammon 0-ply self-play (gnubg_nn in process), with `random_fraction` of the
   plays chosen uniformly among the legal ones instead, so the positions are not only gnubg's
   own lines. A turn with >= 2 legal plays becomes a decision with its class's probability
   `keep` until the class has its quota (contact / race / bear-off: `BuildSpec`); a (position,
   roll) taken before is skipped (the opening, mostly).
2. Every legal play by our rules (`legal_plays_batch`, exact capacities), compared with
   `gnubg_nn.moves()`: a decision whose plays differ is a mismatch (0 expected), left out.
3. Every afterstate evaluated by Debian's gnubg (/usr/games/gnubg) from the opponent's side,
   before its roll, over the external socket: at 1 ply (the reference: a 2-ply evaluation of
   the move) and at 0 ply (the gnubg 0-ply anchor), by `workers` gnubg processes in parallel.
   The mover's equity is minus the opponent's cubeless money equity; a play that bears off
   the last checker scores its points won.

The decisions are shuffled (seeded), so the first N of the set are a random sample of it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgai.bench.decisions import DecisionSet, classify
from bgai.core import rules
from bgai.core.positionid import from_gnubg, position_id, to_gnubg
from bgai.opponents.fibs import apply_hops, flip
from bgai.opponents.gnubg import DEFAULT_BINARY, GnubgExternal, GnubgUnavailable, money_equity

DICE_INDEX = {(int(a), int(b)): i for i, (a, b) in enumerate(rules.DICE)}
REFERENCE = "Debian gnubg: each afterstate at 1 ply from the opponent's side (a 2-ply move evaluation)"


@dataclass(frozen=True)
class BuildSpec:
    """How a decision set is made; stored in its meta.

    Self-play meets far more contact turns than race or bear-off ones (about 80 / 8 / 10% of
    the turns with a choice), so each class has its own quota, and its own chance `keep` that
    a turn of it is taken (rarer classes more often, so that every class spans many games).
    """

    contact: int = 2000
    race: int = 600
    bearoff: int = 600
    keep: tuple[float, float, float] = (0.1, 0.5, 0.5)  # contact, race, bear-off
    random_fraction: float = 0.15  # plays chosen at random instead of by gnubg 0-ply
    seed: int = 20261217
    workers: int = 2  # gnubg processes scoring in parallel

    @property
    def quotas(self) -> tuple[int, int, int]:
        return self.contact, self.race, self.bearoff


@dataclass(frozen=True)
class Candidates:
    """Decisions taken from the games, with gnubg's plays of each (as gnubg position keys)."""

    boards: np.ndarray  # [M, 28] int32, mover's view
    dice: np.ndarray  # [M, 2] int32, high die first
    classes: np.ndarray  # [M] int8
    keys: list[frozenset[str]]  # [M] gnubg_nn.moves()
    games: int
    turns: int


def _gnubg_nn() -> ModuleType:
    try:
        return importlib.import_module("gnubg_nn")
    except ImportError as exc:
        raise GnubgUnavailable("the gnubg_nn module is missing (pip install 'bgai[eval]')") from exc


def play_games(spec: BuildSpec, slack: int = 0) -> Candidates:
    """Self-play until every class has its quota (+ `slack`) of distinct decisions (seeded)."""
    nn = _gnubg_nn()
    rng = np.random.default_rng(spec.seed)
    probs = rules.DICE_PROBS.astype(np.float64) / rules.DICE_PROBS.sum(dtype=np.float64)
    start = np.asarray(rules.start_board())
    board, first, games, turns = start, True, 0, 0
    seen: set[tuple[str, int]] = set()
    boards, dice, classes, keys = [], [], [], []
    left = [q + slack if q else 0 for q in spec.quotas]
    while any(left):
        roll = rng.choice(rules.OPENING_ROLLS) if first else rng.choice(rules.NUM_ROLLS, p=probs)
        hi, lo = (int(x) for x in rules.DICE[roll])
        g = to_gnubg(board)
        plays = tuple(nn.moves(g, hi, lo))
        tag = (position_id(board), int(roll))
        if len(plays) >= 2 and tag not in seen:
            c = int(classify(board[None])[0])
            if left[c] and rng.random() < spec.keep[c]:
                seen.add(tag)
                left[c] -= 1
                boards.append(board)
                dice.append((hi, lo))
                classes.append(c)
                keys.append(frozenset(plays))
        if not plays:
            after = board
        elif rng.random() < spec.random_fraction:
            after = from_gnubg(nn.boardfromkey(plays[rng.integers(len(plays))]))
        else:
            after = apply_hops(board, [(int(a), int(b)) for a, b in nn.best_move(g, hi, lo, 0)])
        turns += 1
        first = bool(after[rules.OFF] == rules.NUM_CHECKERS)
        games += first
        board = start if first else flip(after)
    return Candidates(
        np.stack(boards), np.asarray(dice, np.int32), np.asarray(classes, np.int8), keys, games, turns
    )


# One position at a time: the smallest program to compile (the batched generator takes 2-3x as
# long to compile, on a busy CPU a minute), and ~5 ms a position at exact capacities.
_exact_plays = jax.jit(lambda b, d: rules.legal_plays(b, d, rules.EXACT_MOVEGEN))


def our_plays(boards: np.ndarray, dice: np.ndarray) -> list[np.ndarray]:
    """Every legal afterstate [K_i, 28] of each position by our rules (exact: no overflow)."""
    out: list[np.ndarray] = []
    for board, (hi, lo) in zip(boards, dice, strict=True):
        p = _exact_plays(jnp.asarray(board, jnp.int32), DICE_INDEX[(int(hi), int(lo))])
        if bool(p.overflow):
            raise RuntimeError(f"the exact move generator overflowed on {position_id(board)}")
        out.append(np.asarray(p.boards)[np.asarray(p.mask)])
    return out


def _key(nn: ModuleType, board: np.ndarray) -> str:
    return str(nn.key_of_board(to_gnubg(board)))


class _Scorer:
    """Evaluates afterstates [P, 28] (mover's view) with `workers` gnubg processes; counts progress."""

    def __init__(self, workers: int, binary: str, log: Callable[[str], None]) -> None:
        self.workers, self.binary, self.log = workers, binary, log
        self._done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()  # a shard failed: the others give up too

    def _shard(self, boards: np.ndarray) -> np.ndarray:
        out = np.zeros((len(boards), 2), np.float64)  # [n, (1 ply, 0 ply)] mover's equity
        with GnubgExternal(0, self.binary) as gnubg:
            for i, b in enumerate(boards):
                if self._stop.is_set():
                    break
                opp = flip(b)  # the opponent is on roll in the afterstate
                out[i] = [-money_equity(gnubg.evaluate(opp, 1)), -money_equity(gnubg.evaluate(opp, 0))]
                if i % 100 == 99:
                    with self._lock:
                        self._done += 100
        return out

    def score(self, afterstates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(reference, 0-ply) mover's equities [P]; terminal plays score their points won."""
        won = np.asarray(jax.vmap(rules.win_points)(jnp.asarray(afterstates, jnp.int32)), np.float64)
        todo = np.flatnonzero(won == 0)
        shards = np.array_split(todo, self.workers)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="gnubg-eval") as pool:
            futures = [pool.submit(self._shard, afterstates[s]) for s in shards]
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=15.0, return_when=FIRST_EXCEPTION)
                if any(f.done() and f.exception() for f in futures):
                    self._stop.set()
                    break
                self.log(f"  gnubg: {self._done} of {len(todo)} afterstates evaluated")
            parts = [f.result() for f in futures]  # raises a worker's error
        ref, zero = won.copy(), won.copy()
        for s, part in zip(shards, parts, strict=True):
            ref[s], zero[s] = part[:, 0], part[:, 1]
        return ref, zero


def gnubg_version(binary: str) -> str:
    """The first line of `gnubg --version` ("GNU Backgammon 1.07.001 20230103")."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60, check=False)
    return (out.stdout.strip().splitlines() or ["?"])[0]


def build_decision_set(
    spec: BuildSpec, binary: str = DEFAULT_BINARY, log: Callable[[str], None] = print
) -> tuple[DecisionSet, dict[str, Any]]:
    """The set and a report (counts, mismatches, seconds)."""
    nn = _gnubg_nn()
    t0 = time.perf_counter()
    cand = play_games(spec, slack=2)  # a little more than needed: a mismatch is left out
    t_games = time.perf_counter()
    log(f"{cand.games} games, {cand.turns} turns: {len(cand.boards)} candidate decisions")
    plays = our_plays(cand.boards, cand.dice)
    t_moves = time.perf_counter()
    ok = np.asarray(
        [len(p) == len(k) and {_key(nn, a) for a in p} == k for p, k in zip(plays, cand.keys, strict=True)]
    )
    mismatches = int(np.sum(~ok))
    log(f"our legal plays vs gnubg_nn.moves(): {mismatches} mismatches in {len(ok)} decisions")
    taken = [np.flatnonzero(ok & (cand.classes == c))[:q] for c, q in enumerate(spec.quotas)]
    order = np.random.default_rng(spec.seed + 1).permutation(np.concatenate(taken))
    boards, dice = cand.boards[order], cand.dice[order]
    after = [plays[i] for i in order]
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in after])]).astype(np.int32)
    afterstates = np.concatenate(after)
    log(f"scoring {len(afterstates)} afterstates of {len(order)} decisions with {spec.workers} gnubg")
    ref, zero = _Scorer(spec.workers, binary, log).score(afterstates)
    t_gnubg = time.perf_counter()
    meta = {
        "spec": asdict(spec),
        "reference": REFERENCE,
        "anchor_0ply": "Debian gnubg: each afterstate at 0 ply from the opponent's side",
        "gnubg": gnubg_version(binary),
        "gnubg_nn": importlib.metadata.version("gnubg-nn"),
        "games": cand.games,
        "mismatches": mismatches,
    }
    s = DecisionSet(
        boards.astype(np.int8),
        dice.astype(np.int8),
        cand.classes[order],
        offsets,
        afterstates.astype(np.int8),
        ref.astype(np.float32),
        zero.astype(np.float32),
        meta,
    )
    s.check()
    report = {
        "bench": "build-decisions",
        "decisions": s.size,
        "plays": len(afterstates),
        "classes": s.counts(),
        "games": cand.games,
        "mismatches": mismatches,
        "games_s": round(t_games - t0, 2),
        "movegen_s": round(t_moves - t_games, 2),
        "gnubg_s": round(t_gnubg - t_moves, 2),
        "total_s": round(t_gnubg - t0, 2),
    }
    return s, report
