"""Reading the Grafana dashboards the repo provisions (shared by the dashboard tests)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

GRAFANA = Path(__file__).resolve().parents[1] / "grafana"
DASHBOARDS = ("cluster.json", "training.json")
GPU_TAG = "[gpu]"  # in a panel's description: its series exist only where NVML finds a GPU


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((GRAFANA / "dashboards" / name).read_text()))


def panel_queries() -> list[tuple[str, str, str, bool]]:
    """(dashboard, panel title, PromQL, needs a GPU) for every target of every panel."""
    out = []
    for name in DASHBOARDS:
        for panel in load(name)["panels"]:
            gpu = GPU_TAG in panel.get("description", "")
            out += [(name, panel["title"], t["expr"], gpu) for t in panel.get("targets", [])]
    return out


def metric_names(expr: str) -> set[str]:
    """The bgai_* metric names (and `up`) an expression reads."""
    names = set(re.findall(r"\b(bgai_[a-z_]+)\b", expr))
    return names | ({"up"} if re.search(r"\bup\{", expr) else set())
