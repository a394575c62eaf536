"""The board's layout and the step encoding: plain numbers, no JAX, so the byte formats
(`store/codec.py`) and the command line read them without loading JAX.

A board is 28 counts from the mover's view (rules.py): points 0..23 (the mover's checkers positive),
the mover's bar (24), the opponent's bar (25), the mover's borne-off checkers (26) and the
opponent's (27). A single-checker step is `source * 6 + (die - 1)`.
"""

from __future__ import annotations

NUM_POINTS = 24
BAR = 24
OPP_BAR = 25
OFF = 26
OPP_OFF = 27
BOARD_SIZE = 28
NUM_CHECKERS = 15
MAX_FIRST = NUM_CHECKERS  # legal first steps with one die: one per occupied source, at most 15
NUM_SOURCES = 25  # points 0..23 and the bar (24)
NUM_STEPS = NUM_SOURCES * 6  # a single-checker step: source * 6 + (die - 1)
NO_STEP = NUM_STEPS  # padding step index; policies give it logit 0
MAX_STEPS_PER_PLAY = 4
