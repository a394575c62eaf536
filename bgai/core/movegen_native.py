"""The legal-move generator compiled for the CPU by numba, called from JAX (`jax.pure_callback`).

`rules.legal_plays_batch` is written for XLA: every game of a batch computes every candidate slot
of a fixed-shape cascade, and on a CPU that costs most of an afterstate self-play chunk (61% at
batch 256, docs/results.md). A sequential generator does only the work a position needs: it
enumerates the same candidates in the same order, drops the same duplicates and truncates at the
same capacities, so its `Plays` equal `legal_plays_batch`'s array for array, the padding of the
unused slots included (`tests/core/test_movegen_native.py` compares them on self-play positions
and on capacities small enough to overflow).

What it reproduces, for capacities K = max_plays, F2 = frontier2, F3 = frontier3:
- a non-double: the two-step plays, high die first (by first source, then second source), then
  low die first; the high die alone when no two-step play exists, the low die alone when neither
  two steps nor the high die can be played, the unchanged board when nothing moves. The first 2K
  candidates are kept, their first occurrences of each board are the plays, the first K of those
  are returned; overflow when more than 2K candidates or more than K plays.
- a double: steps of non-increasing sources, level by level, each level truncated to its capacity
  (15, F2, F3, K); the deepest non-empty level is the plays; overflow when any level was cut.
- the unused slots: filled as the JAX cascade leaves them. A row that fits the small `fast_tier`
  capacities repeats play 0 (a double: the unchanged board, no steps) up to the fast K, then holds
  zeros and NO_STEP; a row that needed `cfg`'s capacities repeats it up to K.

CPU only: on an accelerator the callback would copy every batch to the host and back, so
`backend="auto"` keeps the JAX generator there (`bgai.agent.movegen_of`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgai.core.layout import BOARD_SIZE, MAX_FIRST, MAX_STEPS_PER_PLAY, NO_STEP, NUM_SOURCES

numba: Any
try:  # numba is a dependency on the platforms it has wheels for; elsewhere the JAX generator runs
    import numba
except ImportError:  # pragma: no cover - exercised only where numba has no wheel
    numba = None


def available() -> bool:
    """Whether the native generator can run here (numba imports)."""
    return numba is not None


def _legal(board: np.ndarray, die: int, last: int, out: np.ndarray) -> None:
    """out[s] = may a checker step `die` pips from source s <= last (24 = bar)."""
    all_home = board[24] <= 0
    if all_home:
        for i in range(6, 24):
            if board[i] > 0:
                all_home = False
                break
    for s in range(NUM_SOURCES):
        ok = s <= last and board[s] > 0 and (board[24] == 0 or s == 24)
        if ok:
            dest = s - die
            if dest >= 0:
                ok = board[dest] >= -1
            elif not all_home:
                ok = False
            elif dest < -1:  # overshoot: only from the highest occupied home point
                for j in range(s + 1, 6):
                    if board[j] > 0:
                        ok = False
                        break
        out[s] = ok


def _apply(board: np.ndarray, src: int, die: int, out: np.ndarray) -> None:
    """out = the board after one checker steps `die` pips from `src` (legality not checked)."""
    out[:] = board
    dest = src - die
    out[src] -= 1
    if dest >= 0:
        if board[dest] == -1:
            out[dest] = 1
            out[25] -= 1
        else:
            out[dest] += 1
    else:
        out[26] += 1


def _hash(board: np.ndarray) -> int:
    h = 0
    for i in range(BOARD_SIZE):
        h = h * 1000003 + board[i] + 16
    return h


def _push(
    cand: np.ndarray,
    csteps: np.ndarray,
    chash: np.ndarray,
    first: np.ndarray,
    counts: np.ndarray,
    board: np.ndarray,
    s0: int,
    s1: int,
) -> None:
    """Candidate `board` (steps s0, s1): kept while fewer than cand's capacity were, and a play
    when no earlier kept candidate holds the same board. counts = [candidates, plays]."""
    n = counts[0]
    counts[0] += 1
    if n >= cand.shape[0]:
        return
    h = _hash(board)
    new = True
    for u in range(counts[1]):
        c = first[u]
        if chash[c] == h:
            new = False
            for i in range(BOARD_SIZE):
                if cand[c, i] != board[i]:
                    new = True
                    break
            if not new:
                break
    if new:
        first[counts[1]] = n
        counts[1] += 1
    cand[n] = board
    chash[n] = h
    csteps[n, 0] = s0
    csteps[n, 1] = s1


def _non_double(board: np.ndarray, hi: int, lo: int, caps: np.ndarray, out: tuple, scratch: tuple) -> tuple:
    """The plays of one non-double into out = (boards [K, 28], steps [K, 4], mask [K]);
    (count, overflow). `scratch`: `_scratch`'s."""
    out_b, out_s, out_m = out
    legal, first_b, first_src, n_first, cand, csteps, chash, first, counts, tmp = scratch[:10]
    k, fast_k = caps[0], caps[3]
    cap = 2 * k
    cand_k = cand[:cap]
    n_first[:] = 0
    counts[:] = 0
    dice = (hi, lo)
    for o in range(2):
        _legal(board, dice[o], 24, legal)
        for s in range(NUM_SOURCES):
            if legal[s]:
                _apply(board, s, dice[o], first_b[o, n_first[o]])
                first_src[o, n_first[o]] = s
                n_first[o] += 1
    for o in range(2):  # two steps: the high die first, then the low die first
        d1, d2 = dice[o], dice[1 - o]
        for i in range(n_first[o]):
            _legal(first_b[o, i], d2, 24, legal)
            for s in range(NUM_SOURCES):
                if legal[s]:
                    if counts[0] < cap:
                        _apply(first_b[o, i], s, d2, tmp)
                    s0 = first_src[o, i] * 6 + d1 - 1
                    _push(cand_k, csteps, chash, first, counts, tmp, s0, s * 6 + d2 - 1)
    if counts[0] == 0:  # one die only: the high one if it can be played, else the low one
        o = 0 if n_first[0] > 0 else 1
        for i in range(n_first[o]):
            s0 = first_src[o, i] * 6 + dice[o] - 1
            _push(cand_k, csteps, chash, first, counts, first_b[o, i], s0, NO_STEP)
    if counts[0] == 0:  # nothing moves: the unchanged board
        _push(cand_k, csteps, chash, first, counts, board, NO_STEP, NO_STEP)
    n_valid, count = counts[0], counts[1]
    fits = n_valid <= 2 * fast_k and count <= fast_k
    pad = fast_k if fits else k
    for j in range(pad):
        c = first[j] if j < count else 0
        out_b[j] = cand[c]
        out_s[j, 0] = csteps[c, 0]
        out_s[j, 1] = csteps[c, 1]
        out_m[j] = j < count
    return count, n_valid > cap or count > k


def _double(board: np.ndarray, die: int, caps: np.ndarray, out: tuple, scratch: tuple) -> tuple:
    """The plays of one double into out (as `_non_double`'s); (count, overflow)."""
    out_b, out_s, out_m = out
    legal = scratch[0]
    lb, ls, llast = scratch[10], scratch[11], scratch[12]  # two levels' rows: [2, width, ...]
    k, f2, f3 = caps[0], caps[1], caps[2]
    fk, ff2, ff3 = caps[3], caps[4], caps[5]
    level_caps = (MAX_FIRST, f2, f3, k)
    fast_caps = (MAX_FIRST, ff2, ff3, fk)
    lb[0, 0] = board
    ls[0, 0] = NO_STEP
    llast[0, 0] = NUM_SOURCES - 1
    cur, n_cur = 0, 1
    overflow = False
    fits = True
    for depth in range(MAX_STEPS_PER_PLAY):
        cap = level_caps[depth]
        nxt = 1 - cur
        n = 0
        for r in range(n_cur):
            _legal(lb[cur, r], die, llast[cur, r], legal)
            for s in range(NUM_SOURCES):
                if legal[s]:
                    if n < cap:
                        _apply(lb[cur, r], s, die, lb[nxt, n])
                        ls[nxt, n] = ls[cur, r]
                        ls[nxt, n, depth] = s * 6 + die - 1
                        llast[nxt, n] = s
                    n += 1
        overflow = overflow or n > cap
        fits = fits and n <= fast_caps[depth]
        if n == 0:
            break
        n_cur = min(n, cap)
        cur = nxt
    count = n_cur  # the deepest level reached (the unchanged board when nothing moves)
    fits = fits and count <= fk
    pad = fk if fits else k
    for j in range(pad):
        if j < count:
            out_b[j] = lb[cur, j]
            out_s[j] = ls[cur, j]
            out_m[j] = True
        else:  # the JAX cascade's unused slots hold level 0: the board, no steps
            out_b[j] = board
    return count, overflow or count > k


def _scratch(caps: np.ndarray) -> tuple:
    """Work arrays for `_non_double` and `_double` at these capacities (one set per batch)."""
    cap = 2 * caps[0]
    width = max(MAX_FIRST, caps[4], caps[5], caps[6])
    return (
        np.empty(NUM_SOURCES, np.bool_),  # legal
        np.empty((2, MAX_FIRST, BOARD_SIZE), np.int32),  # first_b
        np.empty((2, MAX_FIRST), np.int64),  # first_src
        np.empty(2, np.int64),  # n_first
        np.empty((cap, BOARD_SIZE), np.int32),  # cand
        np.empty((cap, 2), np.int64),  # csteps
        np.empty(cap, np.int64),  # chash
        np.empty(cap, np.int64),  # first
        np.empty(2, np.int64),  # counts
        np.empty(BOARD_SIZE, np.int32),  # tmp
        np.empty((2, width, BOARD_SIZE), np.int32),  # a double's levels
        np.empty((2, width, MAX_STEPS_PER_PLAY), np.int64),
        np.empty((2, width), np.int64),
    )


def _batch(
    boards: np.ndarray,
    dice: np.ndarray,
    select: np.ndarray,
    caps: np.ndarray,
    out_b: np.ndarray,
    out_s: np.ndarray,
    out_m: np.ndarray,
    out_n: np.ndarray,
    out_o: np.ndarray,
) -> None:
    scratch = _scratch(caps)
    for g in range(boards.shape[0]):  # one thread; `_in_threads` splits a batch between several
        if not select[g]:  # no plays: the outputs keep their zeros and NO_STEP
            continue
        hi, lo = dice[g, 0], dice[g, 1]
        out = (out_b[g], out_s[g], out_m[g])
        if hi == lo:
            n, o = _double(boards[g], hi, caps[4:], out, scratch)
        else:
            n, o = _non_double(boards[g], hi, lo, caps[:4], out, scratch)
        out_n[g] = n
        out_o[g] = o


if numba is not None:
    _jit = numba.njit(cache=True, nogil=True)
    _legal = _jit(_legal)
    _apply = _jit(_apply)
    _hash = _jit(_hash)
    _push = _jit(_push)
    _non_double = _jit(_non_double)
    _double = _jit(_double)
    _scratch = _jit(_scratch)
    _batch = _jit(_batch)


# XLA's threads wait while the generator runs (it is a callback in the middle of a step), so it
# may use every core the process has: `_batch` releases the GIL, and a batch is cut into one part
# per core, each generated by a thread of its own (the generator 1.75x at batch 256 on 2 cores,
# a whole self-play chunk 1.06x: docs/results.md). Parts of fewer rows than this are not worth a thread.
_MIN_ROWS_PER_THREAD = 32
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (the process that made it, its threads, the pool)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _in_threads(arrays: tuple[np.ndarray, ...], caps: np.ndarray) -> None:
    """`_batch(boards, dice, select, caps, *outputs)` for `arrays` = (boards, dice, select, and the
    five outputs), every array cut by rows into a part per core."""
    global _pool
    rows = len(arrays[0])
    parts = max(1, min(_cores(), rows // _MIN_ROWS_PER_THREAD))
    cuts = [rows * i // parts for i in range(parts + 1)]

    def part(i: int) -> None:
        b, d, sel, out_b, out_s, out_m, out_n, out_o = (a[cuts[i] : cuts[i + 1]] for a in arrays)
        _batch(b, d, sel, caps, out_b, out_s, out_m, out_n, out_o)

    if parts == 1:
        part(0)
        return
    if _pool is None or _pool[0] != os.getpid() or _pool[1] < parts - 1:  # a fork has no threads
        _pool = (os.getpid(), parts - 1, ThreadPoolExecutor(parts - 1, thread_name_prefix="bgai-movegen"))
    others = [_pool[2].submit(part, i) for i in range(1, parts)]
    part(0)
    for f in others:
        f.result()


def generate(
    boards: np.ndarray, dice: np.ndarray, select: np.ndarray, caps: tuple[int, ...]
) -> tuple[np.ndarray, ...]:
    """The plays of boards [..., 28] for dice [..., 2] (high die first), selected rows only, as numpy arrays
    (boards, steps, mask, num_plays, overflow). `caps`: see `legal_plays_batch`. The three are
    broadcast to one batch: under vmap an unbatched one arrives with a leading 1."""
    lead = np.broadcast_shapes(boards.shape[:-1], dice.shape[:-1], np.shape(select))
    b = np.ascontiguousarray(np.broadcast_to(boards, (*lead, BOARD_SIZE)).reshape(-1, BOARD_SIZE), np.int8)
    d = np.ascontiguousarray(np.broadcast_to(dice, (*lead, 2)).reshape(-1, 2), np.int64)
    sel = np.ascontiguousarray(np.broadcast_to(select, lead).reshape(-1), np.bool_)
    k = caps[0]
    out_b = np.zeros((len(b), k, BOARD_SIZE), np.int8)  # narrow: the copies to and from XLA
    out_s = np.full((len(b), k, MAX_STEPS_PER_PLAY), NO_STEP, np.uint8)  # cost as much as the plays
    out_m = np.zeros((len(b), k), np.bool_)
    out_n = np.zeros(len(b), np.int32)
    out_o = np.zeros(len(b), np.bool_)
    _in_threads((b, d, sel, out_b, out_s, out_m, out_n, out_o), np.asarray(caps, np.int64))
    return (
        out_b.reshape(*lead, k, BOARD_SIZE),
        out_s.reshape(*lead, k, MAX_STEPS_PER_PLAY),
        out_m.reshape(*lead, k),
        out_n.reshape(lead),
        out_o.reshape(lead),
    )


def legal_plays_batch(
    boards: jax.Array, dice: jax.Array, select: jax.Array, caps: tuple[int, ...]
) -> tuple[jax.Array, ...]:
    """`rules.legal_plays_batch`'s arrays for boards [..., 28], dice [..., 2] (high first), the rows to
    generate [...] (the others get no plays), computed on the host.

    caps: (K, 0, 0, fast K) of a non-double, then (K, F2, F3, fast K, fast F2, fast F3) of a
    double, the fast ones those of `rules.fast_tier`.
    """
    if numba is None:
        raise RuntimeError("the native move generator needs numba (movegen.backend: jax works anywhere)")
    lead = boards.shape[:-1]
    k = caps[0]
    shapes = (
        jax.ShapeDtypeStruct((*lead, k, BOARD_SIZE), jnp.int8),
        jax.ShapeDtypeStruct((*lead, k, MAX_STEPS_PER_PLAY), jnp.uint8),
        jax.ShapeDtypeStruct((*lead, k), jnp.bool_),
        jax.ShapeDtypeStruct(lead, jnp.int32),
        jax.ShapeDtypeStruct(lead, jnp.bool_),
    )
    out = jax.pure_callback(
        lambda b, d, s: generate(np.asarray(b), np.asarray(d), np.asarray(s), caps),
        shapes,
        boards.astype(jnp.int8),
        dice.astype(jnp.int8),
        jnp.broadcast_to(select, lead),
        vmap_method="expand_dims",
    )
    return (out[0], out[1].astype(jnp.int32), *out[2:])  # boards stay int8 (`rules.Plays`)
