"""`bgai bench fleet`: the one-host fleet beside one process, from checkpoints and the fleet's metrics.

`scripts/bench-fleet` runs `scripts/train-local` and then `scripts/fleet-local` for the same
minutes on this host, each keeping its checkpoints, and saves the fleet's Prometheus answers for
every role's CPU seconds while the fleet runs. This module turns that into figures:

- steady rates from the checkpoints' headers: self-play positions, games and train steps per
  second of training time between the first and the newest checkpoint, so compiles and start-up
  are left out of both sides the same way;
- the fleet's ratio to the single process (the issue's target: >= 0.85 of its positions/s);
- CPU seconds per role (`process_cpu_seconds_total`, every role exports it), and the cores each
  used on average over its life.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bgai.train.checkpoint import list_checkpoints, read_meta


@dataclass(frozen=True)
class Rates:
    checkpoints: int
    first: str
    last: str
    games: int  # at the newest checkpoint
    positions: int
    steps: int
    seconds: float  # training time between the first and the newest checkpoint
    positions_per_s: float
    games_per_s: float
    steps_per_s: float


def checkpoint_dir(root: Path) -> Path:
    """The directory under `root` holding checkpoints: `root` itself (train-local), or the newest
    run's `root/RUN_ID/` (the training worker writes there)."""
    if list_checkpoints(root):
        return root
    runs = [d for d in root.iterdir() if d.is_dir() and list_checkpoints(d)] if root.is_dir() else []
    if not runs:
        raise FileNotFoundError(f"{root}: no checkpoints (ckpt_*.bgai) in it or in a run directory under it")
    return max(runs, key=lambda d: list_checkpoints(d)[-1].stat().st_mtime)


def rates(root: Path) -> Rates:
    """Steady rates between the first and the newest checkpoint under `root`."""
    paths = list_checkpoints(checkpoint_dir(root))
    if len(paths) < 2:
        raise ValueError(f"{root}: {len(paths)} checkpoint(s); the rates need two")
    a, b = read_meta(paths[0]), read_meta(paths[-1])
    seconds = float(b["elapsed_s"]) - float(a["elapsed_s"])
    if seconds <= 0:
        raise ValueError(f"{root}: no training time between {paths[0].name} and {paths[-1].name}")

    def per_s(key: str) -> float:
        return (int(b[key]) - int(a[key])) / seconds

    return Rates(
        checkpoints=len(paths),
        first=paths[0].name,
        last=str(paths[-1]),
        games=int(b["games"]),
        positions=int(b["positions"]),
        steps=int(b["step"]),
        seconds=seconds,
        positions_per_s=per_s("positions"),
        games_per_s=per_s("games"),
        steps_per_s=per_s("step"),
    )


def cpu_by_role(answers: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{role: {processes, cpu_s, cores}} from `answers["series"]`: per process (its Prometheus
    instance), its role, its last `process_cpu_seconds_total` seen, its
    `process_start_time_seconds` and the time of that query. Roles with several processes (game
    workers) are summed; `cores` is CPU seconds per second of each process's life."""
    out: dict[str, dict[str, float]] = {}
    for s in answers["series"].values():
        life = max(float(s["time"]) - float(s["start"]), 1e-9)
        got = out.setdefault(str(s["role"]), {"processes": 0, "cpu_s": 0.0, "cores": 0.0})
        got["processes"] += 1
        got["cpu_s"] += float(s["cpu_s"])
        got["cores"] += float(s["cpu_s"]) / life
    return out


def cpu_by_command(answers: dict[str, Any], top: int = 8) -> dict[str, float]:
    """CPU seconds of the host's processes by command name while the fleet ran
    (`answers["procs"]`: pid -> {comm, first, cpu_s}, its CPU seconds when first and last seen),
    the `top` largest: where the rest of the host went (Redis, MLflow, Prometheus...). Processes
    shorter than a poll's interval are missed."""
    out: dict[str, float] = {}
    for p in answers.get("procs", {}).values():
        used = float(p["cpu_s"]) - float(p.get("first", 0.0))
        out[str(p["comm"])] = out.get(str(p["comm"]), 0.0) + used
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:top])


def compare(
    local: Rates,
    fleet: Rates,
    cpu: dict[str, dict[str, float]] | None,
    commands: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The figures `bgai bench fleet` prints (one JSON object)."""
    return {
        "local": asdict(local),
        "fleet": asdict(fleet),
        "positions_ratio": fleet.positions_per_s / local.positions_per_s,
        "games_ratio": fleet.games_per_s / local.games_per_s,
        "steps_ratio": fleet.steps_per_s / local.steps_per_s,
        "fleet_cpu": cpu or {},
        "host_cpu_by_command": commands or {},
    }


def table(figures: dict[str, Any]) -> list[str]:
    """Readable lines for `figures` (from `compare`)."""
    lo, fl = figures["local"], figures["fleet"]
    lines = [
        f"{'':12} {'positions/s':>12} {'games/s':>9} {'steps/s':>9} {'seconds':>8} {'checkpoints':>11}",
    ]
    for name, r in (("train-local", lo), ("fleet", fl)):
        lines.append(
            f"{name:12} {r['positions_per_s']:12.0f} {r['games_per_s']:9.1f} {r['steps_per_s']:9.1f} "
            f"{r['seconds']:8.0f} {r['checkpoints']:11d}"
        )
    lines.append(
        f"{'fleet/local':12} {figures['positions_ratio']:12.2f} {figures['games_ratio']:9.2f} "
        f"{figures['steps_ratio']:9.2f}"
    )
    for role, c in sorted(figures["fleet_cpu"].items()):
        lines.append(
            f"fleet CPU {role:11}: {c['cpu_s']:7.0f} s over {int(c['processes'])} process(es), "
            f"{c['cores']:.2f} cores on average"
        )
    if figures.get("host_cpu_by_command"):
        lines.append(
            "host CPU s by command: "
            + ", ".join(f"{k} {v:.0f}" for k, v in figures["host_cpu_by_command"].items())
        )
    return lines


def load_answers(path: Path) -> dict[str, Any] | None:
    """The saved Prometheus answers, or None when the file is absent."""
    return dict(json.loads(path.read_text())) if path.is_file() else None
