"""Conformance sweep: our legal plays against gnubg's move generator.

Positions come from seeded gnubg random play. For each position and roll the
set of distinct afterstates we generate must equal gnubg's (as gnubg position
keys); the steps we attach to each play must replay, rule-abidingly, to it.
"""

from __future__ import annotations

import random
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bgai.core import rules
from bgai.core.positionid import from_gnubg, position_id, to_gnubg
from bgai.core.rules import BAR, NO_STEP, NUM_POINTS, OFF, OPP_BAR

gnubg_nn = pytest.importorskip("gnubg_nn")

NUM_POSITIONS = 20_480
SEED = 20261128
CHUNK = 256
EXACT_CHUNK = 8
START_ID = "4HPwATDgc/ABMA"
DICE_INDEX = {(int(a), int(b)): i for i, (a, b) in enumerate(rules.DICE)}
_LETTERS = ord("A")


def random_play(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, ...]], int]:
    """`n` positions of seeded gnubg random play with the roll and gnubg's plays.

    Returns boards [n, 28], dice indices [n], for each the sorted gnubg keys of
    the legal afterstates ({the unchanged board} when no move), and the number
    of no-move positions.
    """
    rng = random.Random(seed)
    boards, dice, expected = [], [], []
    no_move = 0
    b = [list(x) for x in gnubg_nn.board_from_position_id(START_ID)]
    while len(boards) < n:
        d1, d2 = rng.randint(1, 6), rng.randint(1, 6)
        ms = gnubg_nn.moves(b, d1, d2)
        boards.append(from_gnubg(b))
        dice.append(DICE_INDEX[(max(d1, d2), min(d1, d2))])
        if ms:
            expected.append(tuple(sorted(ms)))
            nb = [list(x) for x in gnubg_nn.boardfromkey(rng.choice(ms))]
        else:
            no_move += 1
            expected.append((gnubg_nn.key_of_board(b),))
            nb = b
        if sum(nb[1]) == 0:  # the mover bore off its last checker: new game
            b = [list(x) for x in gnubg_nn.board_from_position_id(START_ID)]
        else:
            b = [nb[1], nb[0]]
    return np.stack(boards), np.asarray(dice, np.int32), expected, no_move


def gnubg_keys(boards: np.ndarray) -> list[str]:
    """gnubg position keys of our boards [M, 28], vectorised.

    The key is the 10-byte position key (each side's 25 counts in unary,
    opponent first, little-endian bits) written as 20 letters 'A' + nibble,
    high nibble first.
    """
    b = boards.astype(np.int64)
    me = np.concatenate([np.maximum(b[:, :NUM_POINTS], 0), b[:, BAR : BAR + 1]], 1)
    opp = np.concatenate([np.maximum(-b[:, NUM_POINTS - 1 :: -1], 0), -b[:, OPP_BAR : OPP_BAR + 1]], 1)
    counts = np.concatenate([opp, me], 1)  # [M, 50]
    zeros = np.cumsum(counts, 1) + np.arange(50)  # bit index of the 0 closing each count
    bits = np.arange(80)[None, :] < zeros[:, -1:]
    np.put_along_axis(bits, zeros, False, axis=1)
    key = np.packbits(bits, axis=1, bitorder="little")  # [M, 10]
    letters = np.stack([key >> 4, key & 15], -1).reshape(len(b), 20).astype("<u4") + _LETTERS
    return np.ascontiguousarray(letters).view("<U20").ravel().tolist()


def check_steps(inp: np.ndarray, dice: np.ndarray, p: dict[str, np.ndarray]) -> list[str]:
    """Replay every play's steps under the rules; return descriptions of failures."""
    C, K = p["mask"].shape
    errors: list[str] = []
    mask = p["mask"].reshape(-1)
    steps = p["steps"].reshape(-1, 4)
    pos = np.repeat(np.arange(C), K)
    rb = inp[pos].astype(np.int64)
    rows = np.arange(len(rb))

    def where(row: int) -> str:
        i = pos[row]
        return f"{position_id(inp[i])} roll {'-'.join(map(str, rules.DICE[dice[i]]))} play {row % K}"

    n_steps = ((steps != NO_STEP) & mask[:, None]).sum(1)
    for j in range(4):
        s = steps[:, j]
        a = mask & (s != NO_STEP)
        r, src = rows[a], s[a] // 6
        die = s[a] % 6 + 1
        dest = src - die
        mine = np.maximum(rb[r, :25], 0)
        bad = (rb[r, src] <= 0) | ((rb[r, BAR] > 0) & (src != BAR))
        on = dest >= 0
        bad |= on & (rb[r, np.clip(dest, 0, NUM_POINTS - 1)] < -1)
        outside = mine[:, 6:].sum(1) > 0
        above = np.cumsum(mine[:, ::-1], 1)[:, ::-1]  # checkers on idx >= i
        above_src = above[np.arange(len(r)), np.minimum(src + 1, 24)]
        bad |= ~on & (outside | ((dest < -1) & (above_src > 0)))
        hi, lo = rules.DICE[dice[pos[r]]].T
        bad |= (die != hi) & (die != lo)
        if bad.any():
            errors += [f"illegal step {int(s[a][i])} in {where(r[i])}" for i in np.flatnonzero(bad)[:5]]
            return errors
        rb[r, src] -= 1
        rr, dd = r[on], dest[on]
        hit = rb[rr, dd] == -1
        rb[rr[hit], dd[hit]] = 0
        rb[rr[hit], OPP_BAR] -= 1
        rb[rr, dd] += 1
        rb[r[~on], OFF] += 1
    boards = p["boards"].reshape(-1, rules.BOARD_SIZE)
    wrong = mask & (rb != boards).any(1)
    errors += [f"steps do not make the board in {where(i)}" for i in np.flatnonzero(wrong)[:5]]
    # non-doubles with two steps use each die once; all plays of a position use as many dice
    hi, lo = rules.DICE[dice[pos]].T
    two = mask & (n_steps == 2) & (hi != lo)
    d = steps[:, :2] % 6 + 1
    errors += [f"one die used twice in {where(i)}" for i in np.flatnonzero(two & (d[:, 0] == d[:, 1]))[:5]]
    n = n_steps.reshape(C, K)
    m = p["mask"]
    uneven = np.flatnonzero(np.where(m, n, 0).max(1) != np.where(m, n, 99).min(1))
    errors += [f"plays use different numbers of dice in {where(i * K)}" for i in uneven[:5]]
    return errors


@pytest.mark.slow
def test_legal_plays_match_gnubg(capsys):
    boards, dice, expected, no_move = random_play(NUM_POSITIONS, SEED)
    n = len(boards)
    gen = jax.jit(jax.vmap(lambda b, d: rules.legal_plays(b, d, rules.MoveGenConfig())))
    exact = jax.jit(jax.vmap(lambda b, d: rules.legal_plays(b, d, rules.EXACT_MOVEGEN)))

    def run(fn, idx: np.ndarray, size: int) -> dict[str, np.ndarray]:
        pad = np.resize(idx, size)  # pad to a fixed shape by repeating positions
        out = fn(jnp.asarray(boards[pad]), jnp.asarray(dice[pad]))
        return {k: np.asarray(v)[: len(idx)] for k, v in out._asdict().items()}

    mismatches: list[int] = []
    step_errors: list[str] = []
    counts = {"bar": 0, "bearoff": 0, "hit": 0, "doubles": 0}
    max_plays = 0

    def verify(idx: np.ndarray, p: dict[str, np.ndarray]) -> None:
        nonlocal max_plays
        if len(idx) == 0:
            return
        assert not p["overflow"].any()
        m, inp = p["mask"], boards[idx]
        assert (p["num_plays"] == m.sum(1)).all()
        keys = gnubg_keys(p["boards"][m])
        ends = np.cumsum(m.sum(1))
        for i, lo, hi in zip(idx, np.r_[0, ends[:-1]], ends, strict=True):
            if sorted(keys[lo:hi]) != list(expected[i]):
                mismatches.append(int(i))
        step_errors.extend(check_steps(inp, dice[idx], p))
        counts["bar"] += int((inp[:, BAR] > 0).sum())
        counts["bearoff"] += int((m & (p["boards"][..., OFF] > inp[:, None, OFF])).any(1).sum())
        counts["hit"] += int((m & (p["boards"][..., OPP_BAR] < inp[:, None, OPP_BAR])).any(1).sum())
        counts["doubles"] += int((rules.DICE[dice[idx], 0] == rules.DICE[dice[idx], 1]).sum())
        max_plays = max(max_plays, int(p["num_plays"].max()))

    # the vectorised keys are gnubg's own
    first = run(gen, np.arange(CHUNK), CHUNK)
    sample = first["boards"][first["mask"]][:300]
    assert gnubg_keys(sample) == [gnubg_nn.key_of_board(to_gnubg(x)) for x in sample]

    over: list[int] = []
    for start in range(0, n, CHUNK):
        idx = np.arange(start, min(start + CHUNK, n))
        p = run(gen, idx, CHUNK)
        ok = ~p["overflow"]
        over.extend(idx[~ok].tolist())
        verify(idx[ok], {k: v[ok] for k, v in p.items()})
    for k in range(0, len(over), EXACT_CHUNK):
        sub = np.asarray(over[k : k + EXACT_CHUNK])
        verify(sub, run(exact, sub, EXACT_CHUNK))

    summary = (
        f"rules oracle: {n} positions, {counts['bar']} on bar, {counts['bearoff']} with bear-off plays, "
        f"{counts['hit']} with hits, {counts['doubles']} doubles, {no_move} no-move, "
        f"max plays {max_plays}, {len(over)} exact re-runs, {len(mismatches)} mismatches"
    )
    with capsys.disabled():
        sys.stdout.write("\n" + summary + "\n")
    detail = [
        f"{position_id(boards[i])} roll {'-'.join(map(str, rules.DICE[dice[i]]))}" for i in mismatches[:5]
    ]
    assert not mismatches, summary + "\nfirst mismatches: " + ", ".join(detail)
    assert not step_errors, "\n".join(step_errors[:10])
    assert n >= 20_000
    assert min(counts.values()) > 0 and no_move > 0 and max_plays > 0, summary
