"""gnubg position IDs: encoding, decoding, and agreement with gnubg itself."""

from __future__ import annotations

import base64
import random

import numpy as np
import pytest

from bgai.core import rules
from bgai.core.positionid import from_gnubg, from_position_id, position_id, to_gnubg

gnubg_nn = pytest.importorskip("gnubg_nn")

START_ID = "4HPwATDgc/ABMA"


def random_play_positions(n: int, seed: int) -> list[np.ndarray]:
    """`n` positions (side to move's view) met in seeded gnubg random play."""
    rng = random.Random(seed)
    out: list[np.ndarray] = []
    b = [list(x) for x in gnubg_nn.board_from_position_id(START_ID)]
    while len(out) < n:
        d1, d2 = rng.randint(1, 6), rng.randint(1, 6)
        out.append(from_gnubg(b))
        ms = gnubg_nn.moves(b, d1, d2)
        nb = b if not ms else [list(x) for x in gnubg_nn.boardfromkey(rng.choice(ms))]
        b = (
            [list(x) for x in gnubg_nn.board_from_position_id(START_ID)]
            if sum(nb[1]) == 0
            else [nb[1], nb[0]]
        )
    return out


def _id_from_bits(bits: list[int]) -> str:
    key = bytearray(10)
    for i, bit in enumerate(bits):
        if bit:
            key[i // 8] |= 1 << (i % 8)
    return base64.b64encode(bytes(key)).decode("ascii").rstrip("=")


def _unary(rows: list[list[int]]) -> list[int]:
    bits: list[int] = []
    for row in rows:
        for n in row:
            bits += [1] * n + [0]
    return bits + [0] * (80 - len(bits))


def test_start_position_id():
    start = np.asarray(rules.start_board())
    assert position_id(start) == START_ID
    assert np.array_equal(from_position_id(START_ID), start)
    assert gnubg_nn.position_id(to_gnubg(start)) == START_ID


def test_round_trip_and_agreement_with_gnubg():
    boards = random_play_positions(2_000, seed=7)
    assert any(b[rules.BAR] > 0 for b in boards) and any(b[rules.OFF] > 0 for b in boards)
    for b in boards:
        pid = position_id(b)
        assert len(pid) == 14
        assert pid == gnubg_nn.position_id(to_gnubg(b))
        assert np.array_equal(from_position_id(pid), b), pid
        assert np.array_equal(from_gnubg(to_gnubg(b)), b)
        assert [list(r) for r in gnubg_nn.board_from_position_id(pid)] == to_gnubg(b)


def test_flip_matches_gnubg_swap():
    for b in random_play_positions(200, seed=8):
        opp, me = to_gnubg(b)
        assert np.array_equal(from_gnubg([me, opp]), np.asarray(rules.flip(b)))


@pytest.mark.parametrize(
    "pid",
    [
        "",
        "4HPwATDgc/ABM",  # too short
        "4HPwATDgc/ABMAA",  # too long
        "4HPwATDgc/AB!A",  # not base64
        "4HPwATDgc/AB=A",  # padding inside
        "//////////////",  # all ones: more than 15 checkers
        _id_from_bits(_unary([[16] + [0] * 24, [0] * 25])),  # 16 checkers for one side
        _id_from_bits(_unary([[1] + [0] * 24, [0] * 23 + [1, 0]])),  # both sides on one point
        _id_from_bits(_unary([[14] + [0] * 24, [14] + [0] * 24])[:78] + [1, 1]),  # bits past the end
    ],
)
def test_malformed_ids_raise(pid):
    with pytest.raises(ValueError):
        from_position_id(pid)
