"""Ceilings of the configuration: the largest size, count and duration each field may take.

A value past its ceiling is a typo or a hostile file (`capacity_positions: 1e23`), never a real
setting, and would fail later and worse (an out-of-memory when a role builds its model, an
OverflowError in every heartbeat). The byte formats lean on these too: the episode codec bounds
a row by `MAX_PLAYS`, the plays a decision can keep.
"""

from __future__ import annotations

# movegen.max_plays: distinct plays kept per decision (the exact generator keeps 1,024), and so
# the most plays an episode row can hold.
MAX_PLAYS = 4096
