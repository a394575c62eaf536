"""Debian's gnubg as a move engine over its external socket, against our rules and gnubg_nn.

Measured (gnubg 1.07, gnubg-nn 1.1.0a11): 0-ply agrees with gnubg_nn 0-ply on ~98% of
random-play positions, not 100%: gnubg_nn ships its own weights (gnubg.weights) and a
two-sided bear-off database that Debian's gnubg.wd / gnubg_os0.bd lack; the misses are in
contact and race positions alike.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest
from random_positions import Position

from bgai.core import rules
from bgai.opponents.fibs import apply_move
from bgai.opponents.gnubg import GnubgError, GnubgExternal, GnubgNN, GnubgUnavailable

NUM_0PLY = 600
NUM_1PLY = 150


def timed(engine: GnubgExternal | GnubgNN, positions: list[Position]) -> tuple[list[np.ndarray], float]:
    t = time.perf_counter()
    out = [engine.best_afterstate(p.board, p.dice) for p in positions]
    return out, len(positions) / (time.perf_counter() - t)


def test_0ply_plays_legally_and_like_gnubg_nn(gnubg_binary: str, positions: list[Position]) -> None:
    sample = positions[:NUM_0PLY]
    with GnubgExternal(0, gnubg_binary) as gnubg:
        ours, rate = timed(gnubg, sample)
    assert all(p.is_legal(a) for p, a in zip(sample, ours, strict=True))
    bar = sum(p.on_bar for p in sample)
    off = sum(p.bears_off for p in sample)
    print(f"GnubgExternal 0-ply: {len(sample)} legal plays ({bar} from the bar, {off} bearing off)")
    print(f"GnubgExternal 0-ply: {rate:.0f} moves/s")
    pytest.importorskip("gnubg_nn")
    with GnubgNN(0) as nn:
        theirs, nn_rate = timed(nn, sample)
    agree = np.mean([np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True)])
    print(f"GnubgNN 0-ply {nn_rate:.0f} moves/s; agreement with GnubgExternal 0-ply {agree:.1%}")
    assert agree >= 0.95


def test_1ply_answers_and_differs_from_0ply(gnubg_binary: str, positions: list[Position]) -> None:
    sample = positions[NUM_0PLY : NUM_0PLY + NUM_1PLY]
    with GnubgExternal(1, gnubg_binary) as gnubg:
        one, rate = timed(gnubg, sample)
    with GnubgExternal(0, gnubg_binary) as gnubg:
        zero, _ = timed(gnubg, sample)
    assert all(p.is_legal(a) for p, a in zip(sample, one, strict=True))
    differ = sum(not np.array_equal(a, b) for a, b in zip(one, zero, strict=True))
    print(f"GnubgExternal 1-ply: {rate:.0f} moves/s; differs from 0-ply on {differ} of {len(sample)}")
    assert differ > 0  # the plies setting took effect


def test_missing_binary_is_unavailable(tmp_path: os.PathLike[str]) -> None:
    missing = os.path.join(tmp_path, "gnubg")
    with pytest.raises(GnubgUnavailable, match="apt install gnubg") as info:
        GnubgExternal(0, missing).start()
    assert missing in str(info.value) and isinstance(info.value, RuntimeError)


def test_bad_plies_refused() -> None:
    with pytest.raises(ValueError, match="plies"):
        GnubgExternal(3)


def test_dead_gnubg_is_a_clear_error(gnubg_binary: str) -> None:
    start = np.asarray(rules.start_board())
    gnubg = GnubgExternal(0, gnubg_binary)
    with pytest.raises(GnubgError, match="not started"):
        gnubg.best_afterstate(start, (3, 1))
    gnubg.start()
    try:
        assert gnubg.pid is not None
        os.kill(gnubg.pid, signal.SIGKILL)
        for _ in range(2):  # and it stays broken, saying why
            with pytest.raises(GnubgError, match="lost the connection to gnubg"):
                gnubg.best_afterstate(start, (3, 1))
    finally:
        gnubg.close()
    assert gnubg.pid is None
    with gnubg:  # a restart works
        assert np.array_equal(gnubg.best_afterstate(start, (3, 1)), apply_move(start, "8/5 6/5"))


def test_gnubg_nn_missing_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gnubg_nn", None)  # import gnubg_nn raises ImportError
    with pytest.raises(GnubgUnavailable, match="gnubg_nn"):
        GnubgNN(0).start()


def test_gnubg_dies_with_a_worker_killed_by_sigkill(gnubg_binary: str) -> None:
    """A worker killed with SIGKILL (no teardown) leaves no gnubg behind (Linux: PDEATHSIG)."""
    import subprocess

    code = (
        "import sys, time\n"
        "from bgai.opponents.gnubg import GnubgExternal\n"
        f"g = GnubgExternal(0, {gnubg_binary!r}); g.start()\n"
        "print(g.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        pid = int(worker.stdout.readline())
        os.kill(pid, 0)  # gnubg runs
        worker.kill()
        worker.wait(10)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and "zombie" not in _state(pid):
            assert time.monotonic() < deadline, "gnubg outlived its worker"
            time.sleep(0.05)  # polling interval of a condition wait
    finally:
        worker.kill()
        worker.wait(10)
        if worker.stdout is not None:
            worker.stdout.close()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((line for line in f if line.startswith("State:")), "").lower()
    except OSError:
        return "zombie"


def test_close_ends_the_reader_before_its_pipe(tmp_path: os.PathLike[str]) -> None:
    """close() closed stdout while the reader thread still drained it, and the thread died with
    "I/O operation on closed file" (CI, stop 44). A stand-in that prints 20,000 lines and exits
    leaves the reader draining the pipe when close() comes: about one close in twenty hit the
    race, so a hundred rounds all but always did. No thread may die, and the reader is gone."""
    import threading

    from bgai.opponents.gnubg import GnubgProcess

    stand_in = os.path.join(os.fspath(tmp_path), "prints-and-exits")
    with open(stand_in, "w") as f:
        f.write("#!/bin/sh\nseq 1 20000\n")
    os.chmod(stand_in, 0o755)
    died: list[str] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: died.append(f"{args.thread}: {args.exc_value!r}")
    try:
        for _ in range(100):
            proc = GnubgProcess(stand_in)
            proc.wait_exit(30.0)
            proc.close()
            assert not proc._reader.is_alive()
    finally:
        threading.excepthook = previous
    assert died == []
