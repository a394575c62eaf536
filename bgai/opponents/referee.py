"""Our agent as a player inside GNU Backgammon, and a referee for the games it plays there.

gnubg's external player protocol (GNU Backgammon 1.07, found by experiment):

* `set player N external localhost:PORT` makes gnubg *connect* to PORT at once (the command
  fails if nothing listens) and keep that one connection for all games.
* On each of player N's turns gnubg rolls, then sends the FIBS board line from player N's
  view (`fibs.parse_board_line` reads it) with the roll, ended by "\\n" and a NUL byte, and
  reads one line back: the move in gnubg notation, or an empty line when there is none.
  A reply starting with "Error" stops play; resignations are answered by gnubg itself.
* gnubg does not say when it rejects a move: an illegal one forfeits the roll. So the
  referee (`check_games`) compares, for every move served, gnubg's next printed board
  (`set output rawboard on`) with the position the move should have made.
* With the cube in use (`set cube use on`) gnubg also sends, before the roll, the board with
  dice 0 0 when player N may double (reply `roll` or `double`), and the board with the
  "doubled" field set when player N is doubled (reply `take` or `drop`; `beaver` too, but
  gnubg 1.07 stops play after an external player's beaver is answered, and after its own
  beaver of an external player's double: cubeful sessions here play with `set beavers 0`).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from bgai.core.rules import NUM_CHECKERS, OFF
from bgai.opponents.fibs import FibsPosition, flip, parse_fibs
from bgai.opponents.gnubg import DEFAULT_BINARY, GnubgError, GnubgProcess

Choose = Callable[[np.ndarray, tuple[int, int]], tuple[np.ndarray, str]]
CubeChoose = Callable[[FibsPosition], str]  # a cube request -> "roll", "double", "take" or "drop"


@dataclass(frozen=True)
class CubeRequest:
    """One cube decision we made: the position gnubg sent and our answer."""

    position: FibsPosition
    answer: str


@dataclass(frozen=True)
class Request:
    """One move we served: the position (our view) and roll gnubg sent, and our answer."""

    board: np.ndarray  # [28] before the move, mover (us) positive
    dice: tuple[int, int]
    afterstate: np.ndarray  # [28] after our move, still our view
    move: str  # what we replied, gnubg notation


class ExternalPlayer:
    """A one-connection TCP server on localhost that plays gnubg's external player.

    `choose(board, dice) -> (afterstate, move_text)` picks each move; every request is kept
    in `requests`, in order. `cube(position)` answers the cube requests of a cubeful session
    (kept in `cube_requests`); without it we always roll and never get doubled. An exception
    in `choose` or `cube` or a malformed line stops the server, is kept in `error`, and is
    raised again by `close()`.
    """

    def __init__(
        self,
        choose: Choose,
        timeout: float | None = 60.0,
        cube: CubeChoose | None = None,
        port: int = 0,
    ) -> None:
        self._choose = choose
        self._cube = cube
        self._timeout = timeout  # for gnubg to connect, and for close(); None: no limit
        self._bind_port = port  # 0: any free port
        self.requests: list[Request] = []
        self.cube_requests: list[CubeRequest] = []
        self.error: BaseException | None = None
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("ExternalPlayer is not started")
        return int(self._listener.getsockname()[1])

    @property
    def address(self) -> str:
        """What to give gnubg: `set player N external <address>`."""
        return f"localhost:{self.port}"

    def start(self) -> int:
        """Listen on localhost (the port given, or a free one; returned) and serve the first
        connection in a thread."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a fixed port, served again
        listener.bind(("127.0.0.1", self._bind_port))
        listener.listen(1)
        listener.settimeout(self._timeout)
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, name="gnubg-external-player", daemon=True)
        self._thread.start()
        return self.port

    def _serve(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
            self._conn = conn
            conn.settimeout(None)  # gnubg's own moves between requests take any time
            buf = b""
            while True:
                while b"\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return  # gnubg closed the connection
                    buf += chunk
                raw, _, buf = buf.partition(b"\n")
                line = raw.decode("ascii", "replace").replace("\0", "").strip()
                if line:
                    conn.sendall((self._answer(line) + "\n").encode("ascii"))
        except OSError as exc:
            if not self._closing:  # not our own shutdown: gnubg never came, or the socket broke
                self.error = exc
        except Exception as exc:  # a bug in choose or a bad line: tell gnubg (it stops), keep it
            self.error = exc
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.sendall(f"Error: {type(exc).__name__}: {exc}\n".encode("ascii", "replace"))

    def _answer(self, line: str) -> str:
        pos = parse_fibs(line)
        if pos.doubled or pos.dice == (0, 0):  # a cube decision (only when the cube is in use)
            if self._cube is None:
                if pos.doubled:
                    raise ValueError("doubled, but this player has no cube decisions")
                return "roll"
            answer = self._cube(pos)
            if answer not in (("take", "drop") if pos.doubled else ("roll", "double")):
                raise ValueError(f"cube answer {answer!r} does not fit {line!r}")
            self.cube_requests.append(CubeRequest(pos, answer))
            return answer
        board, dice = pos.mover_board(), pos.dice
        afterstate, move = self._choose(board, dice)
        self.requests.append(Request(board, dice, np.asarray(afterstate, dtype=np.int32).copy(), move))
        return move

    def wait(self) -> None:
        """Return once the connection has ended (gnubg closed it or play stopped on an error)."""
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        """Stop serving; raises the error the server met, if any."""
        self._closing = True
        for sock in (self._conn, self._listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        if self._thread is not None:
            self._thread.join(self._timeout)
        self._conn = self._listener = self._thread = None
        error, self.error = self.error, None
        if error is not None:
            raise error

    def __enter__(self) -> ExternalPlayer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def play_session(
    choose: Choose | None,
    games: int,
    *,
    name: str = "bgai",
    opponent_plies: int = 0,
    seed: int = 1,
    binary: str = DEFAULT_BINARY,
    timeout: float = 120.0,
    cube: CubeChoose | None = None,
    jacoby: bool = False,
    address: str | None = None,
    cubeful: bool | None = None,
) -> tuple[list[Request], list[str]]:
    """Play `games` money games in gnubg: `choose` as player 1, gnubg as player 0.

    Game g's dice come from gnubg's generator seeded `game_seed(seed, g)` just before it starts,
    so they depend on (seed, g) alone: two sessions with the same seed roll the same dice in
    their g-th games, turn for turn, whatever either side decided in the games before (how two
    cube policies are compared on the same dice, `bgai eval --cube-policy both`).

    Cubeless, or with the cube when `cube` answers our cube decisions (gnubg then plays
    cubefully at `opponent_plies`, beavers off; the Jacoby rule if `jacoby`): the player's
    `cube_requests` are lost here, `session_points` reads the points from gnubg's output.
    Returns the requests served and gnubg's output (raw boards included) for `check_games`.
    `timeout` bounds each game. With `address` (`host:port`), player 1 is an external player
    already listening there (`bgai gnubg-player`): no requests come back, `cubeful` says
    whether the cube is in use.
    """
    player = None
    if address is None:
        assert choose is not None
        player = ExternalPlayer(choose, timeout, cube)
        player.start()
        address = player.address
    gnubg: GnubgProcess | None = None
    try:
        gnubg = GnubgProcess(binary)
        cubeful = cube is not None if cubeful is None else cubeful
        gnubg.send(
            f"set jacoby {'on' if jacoby else 'off'}",
            f"set cube use {'on' if cubeful else 'off'}",
            "set beavers 0",
            "set automatic game off",  # one game per `new game`: play stops after each
            "set player 0 gnubg",
            f"set player 0 chequerplay evaluation plies {opponent_plies}",
            f"set player 0 chequerplay evaluation cubeful {'on' if cubeful else 'off'}",
            f"set player 0 cubedecision evaluation plies {opponent_plies}",
            f"set player 1 name {name}",
            f"set player 1 external {address}",  # gnubg connects here and now
            "set output rawboard on",
        )
        i = 0
        for ack in _setup_acks(jacoby, cubeful):
            i = gnubg.wait_for(ack, i, timeout)
        starts: list[str] = []
        for g in range(games):
            starts += [f"set seed {game_seed(seed, g)}", "new session" if g == 0 else "new game"]
        gnubg.send(*starts)
        for _ in range(games):
            i = gnubg.wait_for(rf"{_WIN.pattern}|^Error", i + 1, timeout)
            if gnubg.lines[i].startswith("Error"):  # our player's reply: play stopped
                raise GnubgError(f"gnubg stopped: {gnubg.lines[i]}")
        return ([] if player is None else player.requests), list(gnubg.lines)
    finally:
        if gnubg is not None:
            gnubg.close()
        if player is not None:
            player.close()


def game_seed(seed: int, game: int) -> int:
    """gnubg's seed for game `game` of a session seeded `seed` (31 bits of a hash of both: the
    sessions of different seeds share no game's dice, as consecutive integers would)."""
    digest = hashlib.blake2b(f"bgai:{seed}:{game}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def _setup_acks(jacoby: bool, cubeful: bool) -> tuple[str, ...]:
    """What gnubg 1.07 says to the commands of `play_session`, in order."""
    return (
        r"Will use the Jacoby rule" if jacoby else r"Will not use the Jacoby rule",
        r"Use of the doubling cube is permitted" if cubeful else r"Use of the doubling cube is disabled",
        r"No beavers allowed",
        r"Will not automatically start games",
        r"will use cubeful evaluation" if cubeful else r"will use cubeless evaluation",
        r"Player 1 is now known as",
        r"TTY boards will be given in raw format",
    )


_WIN = re.compile(r"^(?P<name>\S+) wins a (single game|gammon|backgammon)(?: and (?P<points>\d+) points?)?")


def session_points(lines: Sequence[str], name: str = "bgai") -> list[int]:
    """The points `name` won (+) or lost (-) in each game of a session, from gnubg's output."""
    return [
        int(m["points"] or 1) * (1 if m["name"] == name else -1) for line in lines if (m := _WIN.match(line))
    ]


@dataclass(frozen=True)
class _Shown:
    """A board gnubg printed, from our view."""

    board: np.ndarray
    ours: bool  # our turn
    dice: tuple[int, int]  # sorted, (0, 0) before the roll


@dataclass(frozen=True)
class RefereeReport:
    games: int  # games gnubg finished
    checked: int  # our moves whose outcome was compared
    mismatches: tuple[str, ...]  # empty when gnubg took every move as we made it


def _events(lines: Sequence[str], name: str) -> list[_Shown | str]:
    """gnubg's printed boards (our view) and game ends (the winner's name), in order."""
    events: list[_Shown | str] = []
    for line in lines:
        if line.startswith("board:"):
            pos = parse_fibs(line)
            if name not in (pos.name, pos.opponent):
                raise ValueError(f"{name!r} does not play in {line!r}")
            ours = pos.name == name
            board = pos.board if ours else flip(pos.board)
            dice = (min(pos.dice), max(pos.dice))
            events.append(_Shown(board, pos.player_on_roll == ours, dice))
        elif m := _WIN.match(line):
            events.append(m["name"])
    return events


def check_games(requests: Sequence[Request], lines: Sequence[str], name: str = "bgai") -> RefereeReport:
    """Did gnubg play every move we served as we meant it?

    For each request, in order, find the board gnubg showed us (our turn, that roll); the
    next different thing gnubg printed must be our afterstate with the opponent to move,
    or, when the move bore off our last checker, our win. gnubg forfeits an illegal move
    silently, which shows here as the old board with the opponent to move. Every rolled
    position of ours gnubg showed must also have been served.
    """
    events = _events(lines, name)
    mismatches: list[str] = []
    cursor = checked = 0
    for n, r in enumerate(requests):
        dice = (min(r.dice), max(r.dice))
        j = next((i for i in range(cursor, len(events)) if _shows(events[i], r.board, dice)), None)
        if j is None:
            mismatches.append(f"move {n} ({r.move!r}, {r.dice}): gnubg never showed us {r.board.tolist()}")
            continue
        k = j + 1
        while k < len(events) and isinstance(e := events[k], _Shown) and e.ours and _same(e.board, r.board):
            k += 1  # the same position printed again
        nxt = events[k] if k < len(events) else None
        if r.afterstate[OFF] == NUM_CHECKERS:
            ok = nxt == name
        else:
            ok = isinstance(nxt, _Shown) and not nxt.ours and _same(nxt.board, r.afterstate)
        if not ok:
            got = nxt.board.tolist() if isinstance(nxt, _Shown) else nxt
            mismatches.append(
                f"move {n} ({r.move!r}, {r.dice}) from {r.board.tolist()}: "
                f"gnubg went on with {got}, not {r.afterstate.tolist()}"
            )
        checked += 1
        cursor = k
    rolled = sum(isinstance(e, _Shown) and e.ours and e.dice != (0, 0) for e in _dedup(events))
    if rolled != len(requests):
        mismatches.append(f"gnubg showed us {rolled} rolled positions but asked {len(requests)} times")
    return RefereeReport(sum(isinstance(e, str) for e in events), checked, tuple(mismatches))


def _dedup(events: list[_Shown | str]) -> list[_Shown | str]:
    out: list[_Shown | str] = []
    for e in events:
        prev = out[-1] if out else None
        if not (
            isinstance(e, _Shown)
            and isinstance(prev, _Shown)
            and (e.ours, e.dice) == (prev.ours, prev.dice)
            and _same(e.board, prev.board)
        ):
            out.append(e)
    return out


def _shows(e: _Shown | str, board: np.ndarray, dice: tuple[int, int]) -> bool:
    """Is `e` `board` shown to us on roll with `dice` (sorted)?"""
    return isinstance(e, _Shown) and e.ours and e.dice == dice and _same(e.board, board)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b))
