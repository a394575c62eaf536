"""train-local fits its learning-rate decay to the run's minutes: when it refits and to what,
that the rebuilt train step follows the new schedule, and that a checkpoint carries it."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from tiny_model import SETS

from bgai.agent import optimizer_of, train_step_of
from bgai.bench.train import synthetic_batch
from bgai.config import Config, load_config
from bgai.core.train_step import batch_fields, batch_of
from bgai.train.checkpoint import load_checkpoint
from bgai.train.decay_fit import DecayFitter, fitted_decay_steps
from bgai.train.local import LocalRun


def test_the_fit_ends_the_decay_at_its_share_of_the_run() -> None:
    fit = DecayFitter(0.85, 1000.0, floor=201)
    assert fit.observe(0.0, 0) is None  # compiling, filling the buffer
    assert fit.observe(10.0, 100) is None  # training under way: the rate counts from here
    assert fit.observe(49.0, 490) is None  # before the first fit point (5% of 1,000 s)
    assert fit.observe(50.0, 500) == 500 + 10 * (850 - 50)  # 400 steps in 40 s
    assert fit.observe(60.0, 600) is None  # between points
    assert fit.observe(100.0, 1900) == 1900 + 20 * (850 - 100)  # the rate from t=10 s: 1,800 / 90
    assert fit.observe(510.0, 10_100) == 10_100 + 20 * (850 - 510)  # 20%, 35%, 50%: one fit
    assert fit.observe(600.0, 11_900) is None  # past the last point: the last fit holds
    assert fitted_decay_steps(10, 5.0, 900.0, 850.0, floor=201) == 201


def test_a_resumed_run_refits_only_at_the_points_ahead_of_it() -> None:
    fit = DecayFitter(0.5, 1000.0, floor=1)
    assert fit.observe(300.0, 5000) is None  # resumed at 30%: 5%, 10% and 20% are behind it
    assert fit.observe(349.0, 5490) is None
    assert fit.observe(350.0, 5500) == 5500 + 10 * (500 - 350)  # the 35% point
    with pytest.raises(ValueError, match="share"):
        DecayFitter(0.0, 1000.0, floor=1)


def _cfg(**sets: object) -> Config:
    return load_config(
        None,
        env={},
        overrides={
            **SETS,
            "selfplay.batch_size": 8,
            "selfplay.chunk_turns": 50,
            "training.min_buffer_positions": 1,
            "training.batch_size": 16,
            "training.warmup_steps": 0,
            "training.policy_weight": 0,
            **sets,
        },
    )


def _run(tmp_path: Path, **sets: object) -> LocalRun:
    cfg = _cfg(**sets)
    run = LocalRun(cfg, tmp_path, log=lambda _: None)
    run.setup()
    return run


def test_the_refitted_step_follows_the_new_schedule_and_checkpoints_carry_it(tmp_path: Path) -> None:
    run = _run(tmp_path / "a", **{"training.decay_steps": 1000})
    full = synthetic_batch(16, run.movegen.max_plays)
    batch = batch_of({f: getattr(full, f) for f in batch_fields(0)})
    before = run.state
    for _ in range(3):
        before, _m = run.train_step(before, batch)
    run.fit_decay(5)  # the floor at step 5: a far smaller rate at step 3 than with 1,000
    after, _ = run.train_step(before, batch)
    want_cfg = _cfg(**{"training.decay_steps": 5})
    want, _ = train_step_of(want_cfg, run.net, optimizer_of(want_cfg))(before, batch)
    kept, _ = train_step_of(run.cfg, run.net, optimizer_of(run.cfg))(before, batch)
    leaves = jax.tree.leaves
    assert all(np.array_equal(a, b) for a, b in zip(leaves(after.params), leaves(want.params), strict=True))
    assert not all(
        np.array_equal(a, b) for a, b in zip(leaves(after.params), leaves(kept.params), strict=True)
    )

    run._state = after
    path = run.checkpoint()
    _, meta = load_checkpoint(path, run._checkpoint_template(), None)
    assert meta["decay_steps"] == 5
    resumed = _run(tmp_path / "a", **{"training.decay_steps": 1000})
    assert resumed.decay_steps == 5 and int(resumed.state.step) == 4


def test_the_timed_loop_fits_the_decay(tmp_path: Path) -> None:
    lines: list[str] = []
    run = _run(tmp_path / "b", **{"training.decay_steps": 123_456})
    run.log = lines.append
    ticks = iter(np.arange(0.0, 1e6, 5.0))  # each look at the clock: 5 s later
    run.run(1.0, 1e9, lambda *_: None, clock=lambda: float(next(ticks)))
    assert any("decay fitted" in line for line in lines), lines
    assert run.decay_steps != 123_456
    off = _run(tmp_path / "c", **{"training.decay_steps": 123_456, "training.decay_share": 0})
    ticks = iter(np.arange(0.0, 1e6, 5.0))
    off.run(1.0, 1e9, lambda *_: None, clock=lambda: float(next(ticks)))
    assert off.decay_steps == 123_456


def test_an_unchanged_decay_keeps_the_built_train_step(tmp_path: Path) -> None:
    run = _run(tmp_path / "d", **{"training.decay_steps": 1000})
    built = run.train_step
    run.fit_decay(1000)  # the schedule it is on: nothing rebuilt, nothing recompiled
    assert run.train_step is built
    path = run.checkpoint()
    run.restore(path)  # a resume on its own schedule
    assert run.train_step is built and run.decay_steps == 1000
    run.fit_decay(700)
    assert run.train_step is not built and run.decay_steps == 700
