"""GNU Backgammon as a move engine: the Debian binary over its socket, or in-process gnubg_nn.

Both engines answer `best_afterstate(board, dice)`: the position (mover's view, not flipped)
after gnubg's best cubeless money play, so they can stand in for each other (`MoveEngine`).

`GnubgExternal` drives `gnubg -t -q` (GNU Backgammon 1.07 checked) with

    set jacoby off                                     # gammons count (cubeless money)
    set evaluation chequerplay evaluation cubeful off  # "... will use cubeless evaluation."
    set evaluation chequerplay evaluation plies N      # "... will use N ply evaluation."
    external localhost:PORT                            # "Waiting for a connection from ..."

then connects as gnubg's controller: each FIBS board line sent gets one reply line, gnubg's
move (`8/3 6/3 `; empty when there is none), found with those evaluation settings. The same
connection evaluates positions (`evaluate`: `evaluation fibsboard LINE plies N cube off` answers
the five cubeless probabilities of the side on roll, then gnubg's equity).
`GnubgProcess` is the subprocess itself: commands in, stdout lines collected by a thread
that callers wait on with deadlines.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType, TracebackType
from typing import Protocol

import numpy as np

from bgai.core.positionid import to_gnubg
from bgai.errors import BgaiError
from bgai.opponents.fibs import apply_hops, apply_move, board_line

DEFAULT_BINARY = "/usr/games/gnubg"
_MAX_LINE = 256  # gnubg's external reader keeps one line in a 256-byte buffer (CommandExternal)


class GnubgError(BgaiError, RuntimeError):
    """gnubg refused a command, died, or broke the connection."""


class GnubgUnavailable(GnubgError):  # noqa: N818 (the name callers import)
    """GNU Backgammon (the binary or the gnubg_nn module) is not installed."""


def money_equity(probs: np.ndarray) -> np.ndarray:
    """Cubeless money equity [...] of gnubg's five probabilities [..., 5] (gammons count)."""
    p = np.asarray(probs, dtype=np.float64)
    return 2.0 * p[..., 0] - 1.0 + p[..., 1] - p[..., 3] + p[..., 2] - p[..., 4]


class MoveEngine(Protocol):
    """Something that plays backgammon moves: started, asked, closed."""

    def start(self) -> None: ...

    def best_afterstate(self, board: np.ndarray, dice: tuple[int, int]) -> np.ndarray:
        """The board (mover's view, not flipped) after the engine's play of `dice`."""
        ...

    def close(self) -> None: ...


def _die_with_parent() -> list[str]:
    """A command prefix that makes gnubg get SIGKILL when its worker dies (a worker killed with
    SIGKILL would otherwise leave gnubg running, waiting on its socket): util-linux's setpriv
    where there is one (Linux). Not a preexec_fn: forking a multithreaded JAX process is unsafe."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def free_port() -> int:
    """A TCP port on localhost that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GnubgProcess:
    """A running `gnubg -t -q`: `send` commands, `wait_for` lines of its stdout (and stderr)."""

    def __init__(self, binary: str = DEFAULT_BINARY, clock: Callable[[], float] = time.monotonic) -> None:
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise GnubgUnavailable(f"GNU Backgammon not found at {binary} (apt install gnubg)")
        self._clock = clock
        self._proc = subprocess.Popen(
            [*_die_with_parent(), binary, "-t", "-q"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []  # guarded by _cond
        self._eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="gnubg-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        with contextlib.suppress(ValueError):  # the pipe closed under us (close() gave up joining)
            for line in self._proc.stdout:
                with self._cond:
                    self.lines.append(line.rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def send(self, *commands: str) -> None:
        if self._proc.stdin is None or self._proc.poll() is not None:
            raise GnubgError(f"gnubg has exited ({self._proc.returncode}): {self.tail()}")
        try:
            self._proc.stdin.write("".join(c + "\n" for c in commands))
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise GnubgError(f"gnubg closed its input: {self.tail()}") from exc

    def wait_for(self, pattern: str, start: int = 0, timeout: float = 30.0) -> int:
        """Index of the first line from `start` on matching the regex; GnubgError at the deadline."""
        regex = re.compile(pattern)
        deadline = self._clock() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    if regex.search(self.lines[i]):
                        return i
                    i += 1
                left = deadline - self._clock()
                if self._eof or left <= 0:
                    why = "exited" if self._eof else f"printed nothing like it in {timeout:g} s"
                    raise GnubgError(f"waiting for /{pattern}/: gnubg {why}: {self.tail()}")
                self._cond.wait(left)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end on its own; its exit status."""
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise GnubgError(f"gnubg still running after {timeout:g} s: {self.tail()}") from exc

    def tail(self, n: int = 8) -> str:
        with self._cond:
            return " | ".join(self.lines[-n:])

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):  # unflushed input to a dead process
                self._proc.stdin.close()
        # The process is dead, so its stdout reaches EOF: let the reader finish before the pipe
        # closes under it (closing first raced the reader: "I/O operation on closed file").
        self._reader.join(5.0)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


class GnubgExternal:
    """Debian's gnubg as a cubeless money move engine at `plies` (0, 1, 2), over a socket."""

    def __init__(
        self,
        plies: int = 0,
        binary: str = DEFAULT_BINARY,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if plies not in (0, 1, 2):
            raise ValueError(f"plies must be 0, 1 or 2, got {plies}")
        self.plies, self.binary, self.timeout, self._clock = plies, binary, timeout, clock
        self._gnubg: GnubgProcess | None = None
        self._sock: socket.socket | None = None
        self._buf = b""
        self._failure: str | None = None  # why the engine stopped working, once it has

    def start(self) -> None:
        """Spawn gnubg, set it up and connect; GnubgUnavailable without the binary."""
        self.close()
        self._gnubg = GnubgProcess(self.binary, self._clock)
        try:
            self._sock = self._listen_and_connect(self._gnubg)
        except BaseException:
            self.close()
            raise
        self._failure = None

    def _listen_and_connect(self, gnubg: GnubgProcess) -> socket.socket:
        gnubg.send(
            "set jacoby off",
            "set evaluation chequerplay evaluation cubeful off",
            f"set evaluation chequerplay evaluation plies {self.plies}",
        )
        i = gnubg.wait_for(r"Will not use the Jacoby rule", 0, self.timeout)
        i = gnubg.wait_for(r"chequerplay will use cubeless evaluation", i, self.timeout)
        i = gnubg.wait_for(rf"chequerplay will use {self.plies} ply evaluation", i, self.timeout)
        for _ in range(3):  # the free port may be taken before gnubg binds it
            port = free_port()
            gnubg.send(f"external localhost:{port}")
            i = gnubg.wait_for(rf"localhost:{port}", i + 1, self.timeout)
            if gnubg.lines[i].startswith("Waiting for a connection"):
                return self._connect(port)
        raise GnubgError(f"gnubg could not listen on a free port: {gnubg.tail()}")

    def _connect(self, port: int) -> socket.socket:
        """Connect to gnubg, which listens (it said so): a refusal is retried until the deadline."""
        deadline = self._clock() + self.timeout
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=self.timeout)
                break
            except OSError as exc:
                if self._clock() > deadline or self._gnubg is None or not self._gnubg.alive:
                    raise GnubgError(f"cannot connect to gnubg on port {port}: {exc}") from exc
                time.sleep(0.05)
        sock.settimeout(self.timeout)
        return sock

    @property
    def pid(self) -> int | None:
        """The gnubg process id while started."""
        return self._gnubg.pid if self._gnubg is not None else None

    def best_move(self, board: np.ndarray, dice: tuple[int, int]) -> str:
        """gnubg's move in its notation ('' when there is none)."""
        return self._request(board_line(board, dice)).strip()

    def evaluate(self, board: np.ndarray, plies: int) -> np.ndarray:
        """gnubg's cubeless probabilities [5] of the side to move in `board` (its view), before it
        rolls, at `plies` (0: the net; 1: the mean over the 21 rolls of its best 0-ply reply):
        win, win gammon or more, win backgammon, lose gammon or more, lose backgammon.

        The external socket's `evaluation fibsboard LINE plies N cube off` command; gammons count
        (`set jacoby off` at start). `money_equity` turns the five into cubeless money equity.
        """
        reply = self._request(f"evaluation fibsboard {board_line(board, None)} plies {int(plies)} cube off")
        fields = reply.split()
        if len(fields) != 6:  # the five probabilities, then gnubg's equity
            raise GnubgError(f"gnubg's evaluation is not six numbers: {reply!r}")
        return np.asarray([float(x) for x in fields[:5]])

    def evaluate_cubeful(
        self, board: np.ndarray, plies: int, cube: int = 1, may_double: tuple[bool, bool] = (True, True)
    ) -> tuple[np.ndarray, float]:
        """gnubg's cubeless probabilities [5] and its cubeful money equity (per unit cube) of the
        side to move before it rolls, with the cube `cube` that (it, the opponent) `may_double`:
        `evaluation fibsboard LINE plies N cube on`. The equity is after the side on roll's own
        best cube action (no double, or double and the opponent's best answer)."""
        line = board_line(board, None, cube=cube, may_double=may_double)
        fields = self._request(f"evaluation fibsboard {line} plies {int(plies)} cube on").split()
        if len(fields) != 6:
            raise GnubgError(f"gnubg's evaluation is not six numbers: {fields!r}")
        return np.asarray([float(x) for x in fields[:5]]), float(fields[5])

    def _request(self, line: str) -> str:
        """Send one line, return gnubg's one-line reply; GnubgError if it refuses or the link breaks."""
        if self._sock is None or self._gnubg is None:
            raise GnubgError(self._failure or "GnubgExternal is not started")
        if len(line) >= _MAX_LINE:
            raise GnubgError(f"gnubg reads at most {_MAX_LINE - 1} characters a line: {line!r}")
        try:
            self._sock.sendall((line + "\n").encode("ascii"))
            reply = self._readline()
        except (OSError, GnubgError) as exc:  # the conversation is out of step now: stop
            failure = f"lost the connection to gnubg ({exc}); its last words: {self._gnubg.tail()}"
            self.close()
            self._failure = failure
            raise GnubgError(failure) from exc
        if reply.startswith("Error"):
            raise GnubgError(f"gnubg refused {line!r}: {reply}")
        return reply

    def _readline(self) -> str:
        assert self._sock is not None and self._gnubg is not None
        while b"\n" not in self._buf:
            chunk = self._sock.recv(4096)
            if not chunk:
                raise GnubgError("gnubg closed it" + ("" if self._gnubg.alive else " and exited"))
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("ascii", "replace").strip("\0")

    def best_afterstate(self, board: np.ndarray, dice: tuple[int, int]) -> np.ndarray:
        return apply_move(board, self.best_move(board, dice))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._gnubg is not None:
            self._gnubg.close()
            self._gnubg = None

    def __enter__(self) -> GnubgExternal:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class GnubgNN:
    """The same engine in-process through the `gnubg_nn` bindings (pip install gnubg-nn)."""

    def __init__(self, plies: int = 0) -> None:
        if plies not in (0, 1, 2):
            raise ValueError(f"plies must be 0, 1 or 2, got {plies}")
        self.plies = plies
        self._nn: ModuleType | None = None

    def start(self) -> None:
        try:
            self._nn = importlib.import_module("gnubg_nn")
        except ImportError as exc:
            raise GnubgUnavailable("the gnubg_nn module is missing (pip install 'bgai[eval]')") from exc

    def best_hops(self, board: np.ndarray, dice: tuple[int, int]) -> tuple[tuple[int, int], ...]:
        """gnubg_nn's play as hops (from, to) in gnubg point numbers (25 = bar, 0 = off)."""
        if self._nn is None:
            raise GnubgError("GnubgNN is not started")
        hops = self._nn.best_move(to_gnubg(board), int(dice[0]), int(dice[1]), self.plies)
        return tuple((int(a), int(b)) for a, b in hops)

    def best_afterstate(self, board: np.ndarray, dice: tuple[int, int]) -> np.ndarray:
        return apply_hops(board, self.best_hops(board, dice))

    def close(self) -> None:
        self._nn = None

    def __enter__(self) -> GnubgNN:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
