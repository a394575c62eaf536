"""`bgai bench strength`: error rate (ER) on the decision set, ours and the anchors'.

A player is a `Scorer`: a function from a decision set to a score for each of its plays [P]
(it would play, in each decision, the play it scores highest). `error_rate` turns scores into
the ER, the mean equity given up per decision against the reference's best play (gnubg's
2-ply move evaluation stored in the set), x1000, overall and per class. Ties count as broken
uniformly at random, in expectation: a decision's loss is the mean loss over the plays that
share its top score. So `random_scorer` (every play scores the same) is random play's exact
expectation, and a deterministic player whose top play is unique is scored on that play.

    ours        greedy 0-ply: argmax of the network's afterstate value (`score_afterstates`,
                the formula of bgai.core.afterstate: minus the opponent's equity of the
                flipped afterstate, or the points won when the play ends the game)
    pubeval     Tesauro's pubeval, race or contact weights chosen by the position before the
                play (as pubeval.c and gnubg's pub_best_move do)
    gnubg_0ply  the set's stored gnubg 0-ply equities
    random      every legal play alike

    ours n-ply  `lookahead_scorer`: the best `eval.one_ply_candidates` plays by 0-ply, each valued
                by an exact mean over the opponent's 21 rolls of its best 0-ply reply (1-ply);
                at 2-ply the best `eval.finalists` of those by 1-ply valued at gnubg's 2-ply
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgai.bench.decisions import CLASSES, DecisionSet
from bgai.core import rules
from bgai.core.afterstate import ApplyFn, _values_of
from bgai.core.pubeval import is_race, pubeval_score
from bgai.core.targets import afterstate_equity

Scorer = Callable[[DecisionSet], np.ndarray]  # a set -> the player's score of each play [P]
BATCH = 8192  # afterstates per network call


@dataclass(frozen=True)
class ErReport:
    """A player's error rates (mean equity lost per decision x 1000); None for an empty class."""

    decisions: int
    er: float
    er_contact: float | None
    er_race: float | None
    er_bearoff: float | None
    best: float  # share of decisions where it plays the reference's best play
    er_ci: float = 0.0  # half-width of ER's 95% interval over the set's decisions (normal)

    def as_dict(self) -> dict[str, Any]:
        """For JSON: figures rounded to 4 decimals (ER in thousandths of a point: ~1e-7 points)."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _in_batches(fn: Callable[..., jax.Array], arrays: tuple[np.ndarray, ...], batch: int) -> np.ndarray:
    """fn over rows of `arrays`, `batch` rows a call (the last padded: one compiled shape)."""
    n = len(arrays[0])
    size = max(1, min(batch, n))
    out = []
    for start in range(0, n, size):
        rows = np.resize(np.arange(start, min(start + size, n)), size)
        out.append(np.asarray(fn(*(jnp.asarray(a[rows]) for a in arrays)))[: min(size, n - start)])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def score_afterstates(apply_fn: ApplyFn, params: Any, boards: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """The network's value for the mover of each afterstate [P, 28] (mover's view): float32 [P]."""
    values = _jitted_values(apply_fn)
    return _in_batches(lambda b: values(params, b.astype(jnp.int32)), (boards,), batch)


@functools.cache
def _jitted_values(apply_fn: ApplyFn) -> Callable[..., jax.Array]:
    """One compiled afterstate-value program per net: the eval worker scores a part of the set
    every slice, and a new jit each call would trace and look up its program again."""
    return jax.jit(partial(_values_of, apply_fn))


def network_scorer(apply_fn: ApplyFn, params: Any) -> Scorer:
    """Our greedy 0-ply player."""
    return lambda s: score_afterstates(apply_fn, params, s.afterstates)


def _rank_within(s: DecisionSet, scores: np.ndarray) -> np.ndarray:
    """Each play's rank [P] among its decision's plays by `scores`, best first (0)."""
    order = np.lexsort((-scores, s.decision_of))  # plays by decision, best first
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - s.offsets[:-1][s.decision_of[order]]
    return rank


def lookahead_scorer(
    apply_fn: ApplyFn,
    params: Any,
    movegen: rules.MoveGenConfig,
    plies: int,
    candidates: int,
    finalists: int = 2,
) -> Scorer:
    """Our n-ply player (`players.lookahead_decider`, 1 or 2 plies): in each decision the
    `candidates` best plays by 0-ply get their 1-ply equity; at 2-ply the `finalists` best of
    those by 1-ply get their 2-ply equity. Plays left behind by the filter are never played."""

    @functools.cache
    def at_depth(depth: int) -> Callable[..., jax.Array]:
        return jax.jit(lambda v, after: afterstate_equity(apply_fn, v, after, movegen, depth))

    def score(s: DecisionSet) -> np.ndarray:
        scores = score_afterstates(apply_fn, params, s.afterstates)
        kept = np.arange(len(scores))
        for depth, keep in ((1, candidates), (2, finalists))[:plies]:
            kept = kept[_rank_within(s, scores)[kept] < keep]
            deeper = np.full(len(scores), -10.0, np.float32)  # below any equity: never played
            boards = (s.afterstates[kept].astype(np.int32),)
            deeper[kept] = _in_batches(partial(at_depth(depth), params), boards, 512 if depth == 1 else 64)
            scores = deeper
        return scores

    return score


_pubeval = jax.jit(jax.vmap(lambda after, before: pubeval_score(after, is_race(before))))


def pubeval_scorer(s: DecisionSet) -> np.ndarray:
    return _in_batches(
        _pubeval, (s.afterstates.astype(np.int32), s.boards[s.decision_of].astype(np.int32)), BATCH
    )


def gnubg_0ply_scorer(s: DecisionSet) -> np.ndarray:
    return s.equity_0ply


def random_scorer(s: DecisionSet) -> np.ndarray:
    return np.zeros(len(s.afterstates), np.float32)


ANCHORS: dict[str, Scorer] = {
    "pubeval": pubeval_scorer,
    "gnubg_0ply": gnubg_0ply_scorer,
    "random": random_scorer,
}


def decision_losses(s: DecisionSet, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(equity given up [N], share of the reference's best play [N]) in each decision by a player
    whose score of each play [P] is `scores` (it plays its top score; ties split evenly)."""
    scores = np.asarray(scores)
    if scores.shape != s.equity.shape or not np.all(np.isfinite(scores)):
        raise ValueError(f"need a finite score per play, shape {s.equity.shape}; got {scores.shape}")
    starts, dec = s.offsets[:-1], s.decision_of
    equity = s.equity.astype(np.float64)
    loss = np.maximum.reduceat(equity, starts)[dec] - equity  # [P] equity given up by each play
    top = scores == np.maximum.reduceat(scores, starts)[dec]  # [P] the plays the player picks among
    ties = np.add.reduceat(top.astype(np.float64), starts)
    lost = np.add.reduceat(np.where(top, loss, 0.0), starts) / ties  # [N]
    best = np.add.reduceat((top & (loss == 0)).astype(np.float64), starts) / ties
    return lost, best


def error_rate(s: DecisionSet, scores: np.ndarray) -> ErReport:
    """The ER of a player whose score of each play [P] is `scores` (it plays its top score)."""
    lost, best = decision_losses(s, scores)

    def mean(mask: np.ndarray) -> float | None:
        return float(1000 * lost[mask].mean()) if mask.any() else None

    if s.size == 0:
        raise ValueError("the decision set is empty")
    contact, race, bearoff = (mean(s.classes == c) for c in range(len(CLASSES)))
    ci = 1000 * half_width(lost)
    return ErReport(s.size, float(1000 * lost.mean()), contact, race, bearoff, float(best.mean()), ci)


def half_width(x: np.ndarray) -> float:
    """Half-width of the 95% interval (normal) of the mean of `x` (0 for fewer than 2 values)."""
    return 1.96 * float(x.std(ddof=1)) / float(np.sqrt(len(x))) if len(x) > 1 else 0.0


MICRO = 1_000_000  # ER sums are whole micro-points: they add up exactly in Redis (store/evals.py)


def er_sums(s: DecisionSet, scores: np.ndarray) -> dict[str, int]:
    """Whole-number sums of a player's losses on `s` (e.g. one eval slice's part of the set), per
    class and overall, that add up across parts: `er_of_sums` turns a total into ERs."""
    lost, best = decision_losses(s, scores)
    out = {"n": s.size, "loss": int(np.rint(lost * MICRO).sum()), "best": int(np.rint(best * MICRO).sum())}
    for c, name in enumerate(CLASSES):
        mask = s.classes == c
        out[f"n_{name}"] = int(mask.sum())
        out[f"loss_{name}"] = int(np.rint(lost[mask] * MICRO).sum())
    return out


def er_of_sums(sums: dict[str, int]) -> dict[str, float]:
    """{"er", "er_contact", "er_race", "er_bearoff", "best", "decisions"} from `er_sums` totals (a
    class with no decisions is left out)."""
    n = sums.get("n", 0)
    if n <= 0:
        return {}
    out = {
        "er": 1000 * sums.get("loss", 0) / MICRO / n,
        "best": sums.get("best", 0) / MICRO / n,
        "decisions": n,
    }
    for name in CLASSES:
        if sums.get(f"n_{name}", 0) > 0:
            out[f"er_{name}"] = 1000 * sums.get(f"loss_{name}", 0) / MICRO / sums[f"n_{name}"]
    return out


def paired_difference(s: DecisionSet, ours: np.ndarray, theirs: np.ndarray) -> dict[str, Any]:
    """The paired ER difference of two players on the same decisions, ours minus theirs (their
    scores of each play [P]; below 0: ours loses less): the mean of the per-decision differences,
    x1000, with its 95% interval (normal), overall and per class. It covers the sampling of the
    decisions, not the spread between training runs."""
    d = 1000 * (decision_losses(s, ours)[0] - decision_losses(s, theirs)[0])  # [N]

    def stats(x: np.ndarray) -> dict[str, float] | None:
        return {"diff": float(x.mean()), "ci": half_width(x), "decisions": len(x)} if len(x) else None

    out: dict[str, Any] = {"all": stats(d)}
    for c, name in enumerate(CLASSES):
        out[name] = stats(d[s.classes == c])
    return out


def evaluate_er(s: DecisionSet, scorer: Scorer) -> ErReport:
    return error_rate(s, scorer(s))


def _fmt(x: float | None) -> str:
    return f"{x:8.1f}" if x is not None else f"{'-':>8s}"


def bench_strength(
    s: DecisionSet,
    player: tuple[str, Scorer],
    set_name: str,
    log: Callable[[str], None] = print,
    plies: int = 0,
    against: tuple[str, Scorer] | None = None,
) -> dict[str, Any]:
    """ER of `player` (label, scorer; its lookahead `plies`) and of the anchors on `s`, and with
    `against` (a second player) the paired difference between the two; prints a table; the JSON
    dict."""
    counts = s.counts()
    log(
        f"decision set {set_name}: {s.size} decisions ("
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f"), {len(s.afterstates)} plays"
    )
    log(f"reference: {s.meta.get('reference', '?')}")
    label, scorer = player
    t0 = time.perf_counter()
    ours = scorer(s)
    reports = {label: error_rate(s, ours)}
    seconds = time.perf_counter() - t0  # compiling included: a few seconds
    rows = [(label, reports[label])]
    paired = None
    if against is not None:  # its row apart from `reports`: the two labels may be equal
        theirs = against[1](s)
        paired = paired_difference(s, ours, theirs)
        rows.append((against[0], error_rate(s, theirs)))
    reports |= {name: evaluate_er(s, f) for name, f in ANCHORS.items()}
    rows += [(name, r) for name, r in reports.items() if name != label]
    log(
        f"{'player':28s} {'ER':>8s} {'95% CI':>15s} "
        + " ".join(f"{c:>8s}" for c in CLASSES)
        + f" {'best %':>7s}"
    )
    for name, r in rows:
        ci = f"[{r.er - r.er_ci:5.1f}, {r.er + r.er_ci:5.1f}]"
        row = " ".join(_fmt(x) for x in (r.er_contact, r.er_race, r.er_bearoff))
        log(f"{name[:28]:28s} {_fmt(r.er)} {ci:>15s} {row} {100 * r.best:7.1f}")
    log(f"{label}: {s.size} decisions in {seconds:.1f} s ({s.size / seconds:.1f} decisions/s)")
    extra: dict[str, Any] = {}
    if against is not None and paired is not None:
        log(f"paired, {label} minus {against[0]} (below 0: {label} loses less):")
        for name, st in paired.items():
            if st is not None:
                lo, hi = st["diff"] - st["ci"], st["diff"] + st["ci"]
                log(f"  {name:8s} {st['diff']:+6.2f} [{lo:+6.2f}, {hi:+6.2f}] over {st['decisions']}")
        extra = {"against": against[0], "against_er": rows[1][1].as_dict(), "paired": paired}
    report = reports.pop(label)
    return {
        "bench": "strength",
        "player": label,
        "plies": plies,
        "seconds": round(seconds, 1),
        "decisions_per_s": round(s.size / seconds, 1),
        "set": set_name,
        "classes": counts,
        **report.as_dict(),
        "anchors": {name: r.as_dict() for name, r in reports.items()},
        **extra,
    }
