"""GNU Backgammon position IDs and board conversion (plain numpy, no JAX).

gnubg's board is two rows of 25 counts, ``[opponent, player on roll]``; in each
row index 0..23 is that player's own point 1..24 and index 24 its bar. The
position ID packs, row by row, each count in unary (``n`` ones then a zero),
little-endian into 10 bytes, base64-encoded without padding (14 characters).
"""

from __future__ import annotations

import base64

import numpy as np

from bgai.core.rules import BAR, BOARD_SIZE, NUM_CHECKERS, NUM_POINTS, OFF, OPP_BAR, OPP_OFF

GnubgBoard = list[list[int]]


def to_gnubg(board: np.ndarray) -> GnubgBoard:
    """Our board (mover's view, int[28]) as gnubg's ``[opponent, mover]`` rows."""
    b = np.asarray(board, dtype=np.int64)
    me = [int(max(b[i], 0)) for i in range(NUM_POINTS)] + [int(b[BAR])]
    opp = [int(max(-b[NUM_POINTS - 1 - j], 0)) for j in range(NUM_POINTS)] + [int(-b[OPP_BAR])]
    return [opp, me]


def from_gnubg(rows: GnubgBoard) -> np.ndarray:
    """gnubg's ``[opponent, mover]`` rows as our board (checkers off derived)."""
    opp, me = (list(r) for r in rows)
    b = np.zeros(BOARD_SIZE, dtype=np.int32)
    for i in range(NUM_POINTS):
        b[i] += me[i]
        b[NUM_POINTS - 1 - i] -= opp[i]
    b[BAR] = me[24]
    b[OPP_BAR] = -opp[24]
    b[OFF] = NUM_CHECKERS - sum(me)
    b[OPP_OFF] = -(NUM_CHECKERS - sum(opp))
    return b


def position_id(board: np.ndarray) -> str:
    """The gnubg position ID of `board` (side to move = player on roll)."""
    bits: list[int] = []
    for row in to_gnubg(board):
        for n in row:
            bits.extend([1] * n + [0])
    key = bytearray(10)
    for i, bit in enumerate(bits):
        if bit:
            key[i // 8] |= 1 << (i % 8)
    return base64.b64encode(bytes(key)).decode("ascii").rstrip("=")


def from_position_id(pid: str) -> np.ndarray:
    """Decode a gnubg position ID; raises ValueError if it is not one."""
    if len(pid) != 14:
        raise ValueError(f"a position ID has 14 characters, got {len(pid)}: {pid!r}")
    try:
        key = base64.b64decode(pid + "==", validate=True)
    except ValueError as exc:
        raise ValueError(f"not base64: {pid!r}") from exc
    bits = [(key[i // 8] >> (i % 8)) & 1 for i in range(80)]
    rows: GnubgBoard = [[0] * 25, [0] * 25]
    side, point = 0, 0
    for i, bit in enumerate(bits):
        if side > 1:
            if any(bits[i:]):
                raise ValueError(f"checkers past the last point in {pid!r}")
            break
        if bit:
            rows[side][point] += 1
        else:
            point += 1
            if point == 25:
                side, point = side + 1, 0
    if any(sum(r) > NUM_CHECKERS for r in rows):
        raise ValueError(f"more than 15 checkers in {pid!r}")
    if any(rows[0][NUM_POINTS - 1 - i] and rows[1][i] for i in range(NUM_POINTS)):
        raise ValueError(f"both sides on one point in {pid!r}")
    return from_gnubg(rows)
