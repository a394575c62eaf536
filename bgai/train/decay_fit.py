"""The learning-rate decay fitted to the run's length.

A fixed `training.decay_steps` suits one run length on one machine: a longer run, or a faster
host, spends its last part at the floor rate, a shorter one stops with the rate still high.
With `training.decay_share` s > 0 and the run's length known (train-local's --minutes, the
fleet's `training.run_minutes`), the trainer measures its own train steps a second and sets the
cosine decay's length so that the rate reaches its floor after s of the run's time. It refits at
a few points early in the run (the rate barely moves there, so a refit changes it little) and
keeps the last fit for the rest of the run and in the checkpoints, which a resume continues.
"""

from __future__ import annotations

from bgai.config import TrainingConfig

# Shares of the run's time at which the decay is refitted.
FIT_POINTS = (0.05, 0.1, 0.2, 0.35, 0.5)


def decay_fitter(t: TrainingConfig, total_s: float) -> DecayFitter | None:
    """The fitter of a run of `total_s` seconds of training, or None where the decay stays
    `decay_steps` long (no share, no known length, or no cosine schedule)."""
    if t.decay_share == 0 or total_s <= 0 or t.lr_schedule != "cosine":
        return None
    return DecayFitter(t.decay_share, total_s, t.warmup_steps + 1)


def fitted_decay_steps(step: int, rate: float, elapsed_s: float, end_s: float, floor: int) -> int:
    """The step at which the decay should end: `step` plus what `rate` steps a second add
    between `elapsed_s` and `end_s` (never below `floor`)."""
    return max(int(step + rate * max(end_s - elapsed_s, 0.0)), floor)


class DecayFitter:
    """When to refit, and to what. `observe(elapsed_s, step)` after each unit of work returns a
    new decay length when a fit point has been passed (else None). The rate is measured from
    the first observation with training under way, so compiling and filling the buffer, or the
    time a resumed run had trained before, do not count."""

    def __init__(self, share: float, total_s: float, floor: int) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"decay share {share} is not in (0, 1]")
        self.end_s = share * total_s
        self.total_s = total_s
        self.floor = floor
        self._start: tuple[float, int] | None = None
        self._next = 0

    def observe(self, elapsed_s: float, step: int) -> int | None:
        if self._start is None:
            if step > 0:
                self._start = (elapsed_s, step)
                while self._due(elapsed_s):  # a resumed run: points already behind it are not refitted
                    self._next += 1
            return None
        fitted = None
        while self._due(elapsed_s):
            self._next += 1
            t0, s0 = self._start
            if elapsed_s > t0 and step > s0 and elapsed_s < self.end_s:
                rate = (step - s0) / (elapsed_s - t0)
                fitted = fitted_decay_steps(step, rate, elapsed_s, self.end_s, self.floor)
        return fitted

    def _due(self, elapsed_s: float) -> bool:
        return self._next < len(FIT_POINTS) and elapsed_s >= FIT_POINTS[self._next] * self.total_s
