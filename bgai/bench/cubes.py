"""A cube decision set: positions before the roll, each with a cube, and GNU Backgammon's cubeful
money equities of its three cube actions; the cube error rate (`bgai bench strength --cube`).

`bgai bench build-cubes` (bgai.bench.cubes_build) makes the set once; the committed file
`bgai/bench/data/cubes.npz` is the reference afterwards. Per decision i (boards from the view of
the side on roll, before it rolls, bgai.core.rules layout):

    boards[i]         int8[28]    the position
    owned[i]          bool        the side on roll owns the cube (else it is centred)
    classes[i]        int8        0 contact, 1 race, 2 bear-off (`decisions.classify`)
    equities[i]       float32[3]  reference: no double, double/take, double/pass, the side on
                                  roll's cubeful money equities by Debian gnubg 1.07's 2-ply
                                  cube analysis (`hint`), in units of the cube before the action
    equities_0ply[i]  float32[3]  the same by its 0-ply analysis: the gnubg 0-ply anchor

Each position holds two decisions: the side on roll's (double or not) and its opponent's (take
or pass, as if doubled). A player's losses, by the reference equities (nd, dt, dp):

    double decision   max(nd, min(dt, dp)) - (min(dt, dp) if it doubles else nd)
    take decision     (dt if it takes else dp) - min(dt, dp)   (the doubler's equity)

and its cube ER is the mean loss over both decisions of every position, x1000 (per class too).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bgai.bench.decisions import CLASSES, load_arrays, save_arrays
from bgai.bench.strength import half_width

DEFAULT_CUBES = Path(__file__).parent / "data" / "cubes.npz"
ND, DT, DP = range(3)
_ARRAYS = ("boards", "owned", "classes", "equities", "equities_0ply")


@dataclass(frozen=True)
class CubeSet:
    boards: np.ndarray  # [N, 28] int8
    owned: np.ndarray  # [N] bool
    classes: np.ndarray  # [N] int8
    equities: np.ndarray  # [N, 3] float32
    equities_0ply: np.ndarray  # [N, 3] float32
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.boards)

    def head(self, n: int) -> CubeSet:
        """The first `n` decisions (the builder shuffles them: a random sample)."""
        return CubeSet(
            self.boards[:n],
            self.owned[:n],
            self.classes[:n],
            self.equities[:n],
            self.equities_0ply[:n],
            {**self.meta, "head": n},
        )

    def check(self) -> None:
        """ValueError unless the arrays fit together and hold what the docstring promises."""
        n = self.size
        for name, shape in (
            ("owned", (n,)),
            ("classes", (n,)),
            ("equities", (n, 3)),
            ("equities_0ply", (n, 3)),
        ):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, want {shape}")
        if self.boards.shape != (n, 28):
            raise ValueError(f"boards has shape {self.boards.shape}, want {(n, 28)}")
        for name in ("equities", "equities_0ply"):
            e = getattr(self, name)
            if not np.all(np.isfinite(e)) or np.any(np.abs(e) > 6):
                raise ValueError(f"{name} must be finite and within [-6, 6]")
            if not np.allclose(e[:, DP], 1.0):
                raise ValueError(f"{name}: double/pass is worth 1 cube")
        if not np.all(np.isin(self.classes, range(len(CLASSES)))):
            raise ValueError(f"classes must be 0..{len(CLASSES) - 1}")

    def save(self, path: Path) -> None:
        save_arrays(path, {name: getattr(self, name) for name in _ARRAYS}, self.meta)

    @staticmethod
    def load(path: Path = DEFAULT_CUBES) -> CubeSet:
        """Read a set written by `save` (no pickle) and `check` it."""
        arrays, meta = load_arrays(path, _ARRAYS)
        s = CubeSet(**arrays, meta=meta)
        s.check()
        return s


def cube_losses(equities: np.ndarray, double: np.ndarray, take: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The losses [N] of the double and of the take decisions `double`, `take` [N] bool, by
    `equities` [N, 3] (no double, double/take, double/pass: the doubler's)."""
    nd, dt, dp = equities[:, ND], equities[:, DT], equities[:, DP]
    doubled = np.minimum(dt, dp)
    lose_double = np.maximum(nd, doubled) - np.where(double, doubled, nd)
    lose_take = np.where(take, dt, dp) - doubled
    return lose_double, lose_take


def position_losses(s: CubeSet, double: np.ndarray, take: np.ndarray) -> np.ndarray:
    """Per position of `s`, the mean of its double and take decisions' losses x1000: its share
    of the cube ER (whose mean it is)."""
    ld, lt = cube_losses(s.equities, np.asarray(double, bool), np.asarray(take, bool))
    return 500.0 * (ld + lt)


def paired_cube_difference(
    s: CubeSet, ours: tuple[np.ndarray, np.ndarray], theirs: tuple[np.ndarray, np.ndarray]
) -> dict[str, float | int]:
    """The cube ER of the decisions `ours` (double, take) minus that of `theirs` on the same
    positions of `s`: the mean of the per-position differences and its 95% half-width."""
    d = position_losses(s, *ours) - position_losses(s, *theirs)
    return {"diff": float(d.mean()), "ci": half_width(d), "decisions": len(d)}


def gnubg_decisions(equities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decisions that `equities` [N, 3] call for: double when it gains, take when it pays."""
    nd, dt, dp = equities[:, ND], equities[:, DT], equities[:, DP]
    return np.minimum(dt, dp) > nd, dt <= dp


@dataclass(frozen=True)
class CubeErReport:
    decisions: int  # positions (each a double and a take decision)
    er: float  # mean loss over both decisions of every position, x1000
    er_double: float
    er_take: float
    by_class: dict[str, float | None]
    right: float  # share of the 2N decisions the reference agrees with


def cube_error_rate(s: CubeSet, double: np.ndarray, take: np.ndarray) -> CubeErReport:
    """A player's cube ER on `s` from its decisions `double`, `take` [N] bool."""
    ld, lt = cube_losses(s.equities, np.asarray(double, bool), np.asarray(take, bool))
    both = (ld + lt) / 2
    by_class = {
        name: (1000 * float(both[s.classes == c].mean()) if np.any(s.classes == c) else None)
        for c, name in enumerate(CLASSES)
    }
    right = float(np.mean(np.concatenate([ld <= 1e-9, lt <= 1e-9])))
    return CubeErReport(
        s.size, 1000 * float(both.mean()), 1000 * float(ld.mean()), 1000 * float(lt.mean()), by_class, right
    )


def model_decisions(
    apply_fn: Any, variables: Any, s: CubeSet, plies: int = 0, movegen: Any = None, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Our cube decisions (double, take) [N] on `s`: Janowski's cubeful equity from the net's
    probabilities (`bgai.core.cube`) at 0 to 3 plies (`movegen` needed from 1 on)."""
    import jax.numpy as jnp

    from bgai.core import cube

    decide = _jitted_decision(apply_fn, plies, movegen)
    state = np.where(s.owned, cube.OWNED, cube.CENTRED).astype(np.int32)
    double, take = np.zeros(s.size, bool), np.zeros(s.size, bool)
    for lo in range(0, s.size, batch):
        n = min(batch, s.size - lo)
        pad = np.concatenate([s.boards[lo : lo + n], np.repeat(s.boards[:1], batch - n, 0)]).astype(np.int32)
        st = np.concatenate([state[lo : lo + n], np.repeat(state[:1], batch - n)])
        d, t = decide(variables, jnp.asarray(pad), jnp.asarray(st))
        double[lo : lo + n], take[lo : lo + n] = np.asarray(d)[:n], np.asarray(t)[:n]
    return double, take


@functools.cache
def _jitted_decision(apply_fn: Any, plies: int, movegen: Any) -> Any:
    """One compiled cube-decision program per net, depth and move generator: `bench curve --cube`
    scores every checkpoint of a run with it, and a jit per call would compile it again each time."""
    import jax

    from bgai.core import cube

    def decide(v: Any, boards: Any, state: Any) -> tuple[Any, Any]:
        d = cube.model_decision(apply_fn, v, boards, state, plies, movegen)
        return d.double, d.take

    return jax.jit(decide)


def probabilities(apply_fn: Any, variables: Any, boards: np.ndarray) -> np.ndarray:
    """The net's five cubeless probabilities [N, 5] of the side on roll of `boards` [N, 28]
    before its roll (gnubg's order; exact in the bear-off database)."""
    import jax.numpy as jnp

    return np.asarray(_jitted_probabilities(apply_fn)(variables, jnp.asarray(boards, jnp.int32)))


@functools.cache
def _jitted_probabilities(apply_fn: Any) -> Any:
    import jax

    from bgai.core import cube

    return jax.jit(partial(cube.probabilities, apply_fn))


def janowski_decisions(s: CubeSet, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 0-ply cube decisions (double, take) [N] that Janowski's model (`bgai.core.cube`)
    makes from the probabilities `p` [N, 5] of `s`'s positions."""
    import jax.numpy as jnp

    from bgai.core import cube

    boards = jnp.asarray(s.boards, jnp.int32)
    state = jnp.asarray(np.where(s.owned, cube.OWNED, cube.CENTRED).astype(np.int32))
    d = cube.decide(jnp.asarray(p, jnp.float32), cube.cube_efficiency(boards), state)
    return np.asarray(d.double), np.asarray(d.take)


def probability_gap(s: CubeSet, ours: np.ndarray, reference: np.ndarray) -> dict[str, dict[str, float]]:
    """Per class, the mean absolute difference and the mean difference (ours - reference) of
    P(win) and of P(win gammon+)."""
    out = {}
    for c, name in enumerate(CLASSES):
        m = s.classes == c
        if np.any(m):
            d = ours[m] - reference[m]
            out[name] = {
                "win_abs": float(np.abs(d[:, 0]).mean()),
                "win_bias": float(d[:, 0].mean()),
                "gammon_abs": float(np.abs(d[:, 1]).mean()),
                "gammon_bias": float(d[:, 1].mean()),
            }
    return out


def bench_cube_strength(
    s: CubeSet,
    label: str,
    double: np.ndarray,
    take: np.ndarray,
    log: Any = print,
    extra: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Cube ER of a player (its decisions), of the gnubg 0-ply anchor and of the `extra` rows'
    decisions on `s`; a table; JSON."""
    rows = {
        label: cube_error_rate(s, double, take),
        "gnubg 0-ply": cube_error_rate(s, *gnubg_decisions(s.equities_0ply)),
    }
    rows.update({name: cube_error_rate(s, d, t) for name, (d, t) in (extra or {}).items()})
    counts = {name: int(np.sum(s.classes == c)) for c, name in enumerate(CLASSES)}
    shares = ", ".join(f"{k} {v}" for k, v in counts.items())
    log(f"cube decision set: {s.size} positions ({shares}), each a double and a take decision")
    log(f"reference: {s.meta.get('reference', '?')}")
    log(
        f"{'player':28s} {'cube ER':>8s} {'double':>8s} {'take':>8s} "
        + " ".join(f"{c:>8s}" for c in CLASSES)
        + f" {'right %':>8s}"
    )
    for name, r in rows.items():
        cls = " ".join(f"{v:8.1f}" if v is not None else f"{'-':>8s}" for v in r.by_class.values())
        log(f"{name[:28]:28s} {r.er:8.1f} {r.er_double:8.1f} {r.er_take:8.1f} {cls} {100 * r.right:8.1f}")
    ours, anchor = rows[label], rows["gnubg 0-ply"]
    more = {name: asdict(r) for name, r in rows.items() if name not in (label, "gnubg 0-ply")}
    return {
        "bench": "strength-cube",
        "player": label,
        **asdict(ours),
        "anchor_gnubg_0ply": asdict(anchor),
        **({"rows": more} if more else {}),
    }
