"""Fixtures for the gnubg tests: random-play positions, and the gnubg binary (or a skip)."""

from __future__ import annotations

import os

import pytest
from random_positions import NUM_POSITIONS, SEED, Position, random_play

from bgai.opponents.gnubg import DEFAULT_BINARY


@pytest.fixture(scope="session")
def positions() -> list[Position]:
    return random_play(NUM_POSITIONS, SEED)


@pytest.fixture(scope="session")
def gnubg_binary() -> str:
    if not os.access(DEFAULT_BINARY, os.X_OK):
        pytest.skip(f"GNU Backgammon is not installed at {DEFAULT_BINARY} (apt install gnubg)")
    return DEFAULT_BINARY
