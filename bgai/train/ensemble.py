"""A run's checkpoints stacked into one ensemble model (`model.ensemble: K`).

A net trained by self-play errs by its own per-position amounts, and late in a run, at the floor
learning rate, two checkpoints a few minutes apart err differently (stop 46: the cube ER of one
run's successive checkpoints moved between 4.4 and 5.9). The mean of several checkpoints'
outcome probabilities (`network.BgNet` with `ensemble` K) removes that part: measured at stop 47,
8 of a run's last checkpoints cut its 0-ply cube ER by 2.0 [0.6, 3.4] but left its 1- and 2-ply
cube ER and its checker-play ER within their intervals (docs/results.md), so it is a tool, not a
default. The mean of their weights (`bgai average-checkpoints`) is a different thing, one net.

`ensemble_checkpoints` stacks the params of K checkpoints of one model (each member's weights
as trained, under `members`) and writes them as a checkpoint of the ensemble model, whose model
hash is the config's with `model.ensemble` K: `bgai eval`, `bgai bench strength` and the cube
commands load it with `--set model.ensemble=K`. An ensemble is not trained: the checkpoint holds
params only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bgai.errors import IncompatibleError
from bgai.train.average import leafwise
from bgai.train.checkpoint import list_checkpoints, read_state, save_checkpoint


def pick_members(paths: list[Path], members: int, stride: int = 1) -> list[Path]:
    """Of a run's checkpoints `paths` (oldest first), every `stride`-th back from the newest,
    `members` of them, oldest first; ValueError if the run holds too few."""
    if members < 2 or stride < 1:
        raise ValueError(f"an ensemble needs at least 2 members and a stride >= 1, got {members}, {stride}")
    need = (members - 1) * stride + 1
    if len(paths) < need:
        raise ValueError(
            f"{members} members {stride} apart need {need} checkpoints; the run holds {len(paths)}"
        )
    return list(reversed(paths[::-1][:need:stride]))


def stack_params(trees: list[Any]) -> Any:
    """The member params (flax variables {"params": ...} of one structure) stacked leafwise
    under {"params": {"members": ...}}, as `BgNet(ensemble=len(trees))` holds them."""
    inner = [t.get("params") if isinstance(t, dict) and set(t) == {"params"} else None for t in trees]
    if any(not isinstance(i, dict) or "members" in i for i in inner):
        raise IncompatibleError("a checkpoint's params are not one net's (an ensemble cannot be a member)")
    return {"params": {"members": leafwise(inner, lambda *xs: np.stack([np.asarray(x) for x in xs]))}}


def ensemble_checkpoints(paths: list[Path], out_dir: Path, member_hash: str, ensemble_hash: str) -> Path:
    """Write the ensemble of `paths` (checkpoints of the model `member_hash`) to `out_dir` as a
    checkpoint of the model `ensemble_hash`, at the newest member's step; returns the file.
    Refuses fewer than two, corrupt or foreign checkpoints, and an `out_dir` holding one of them."""
    if len(paths) < 2:
        raise ValueError(f"an ensemble needs at least two checkpoints, got {len(paths)}")
    if any(p.parent.resolve() == out_dir.resolve() for p in paths):
        raise ValueError(f"{out_dir} holds the members: write the ensemble elsewhere")
    read = [read_state(p, member_hash) for p in sorted(paths)]
    _, meta = read[-1]
    keep = {k: v for k, v in meta.items() if k not in ("step", "sha256", "config_hash")}
    keep.update(model_hash=ensemble_hash, ensemble_steps=[int(m["step"]) for _, m in read])
    state = {"params": stack_params([s["params"] for s, _ in read])}
    return save_checkpoint(out_dir, int(meta["step"]), state, keep, keep=len(list_checkpoints(out_dir)) + 1)
