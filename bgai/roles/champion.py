"""A run's champion: its best evaluated version, registered in MLflow with the alias `champion`.

When an eval worker completes a version's evaluation, the version is measured by the yardstick:
its error rate on the part of `bgai bench strength`'s decision set the eval slices score (lower
is better), or where the fleet scores none (`eval.er_decisions: 0`), its win rate against the
strongest opponent it played (gnubg at the most plies, then pubeval, then random). A version
that beats the champion (store/evals.py `promote`, atomic: one winner among eval workers) is
logged to MLflow under `champion/v<N>/`: its weights blob (the codec's checked format), the
config (secrets masked) and its evaluation, and registered as a version of the model
`mlflow.model_name` with the alias `champion` moved to it, tagged with the host, the code
(bgai version and git commit) and the device kinds of the fleet. The registry keeps it whatever
the trainer prunes: `bgai eval --model champion` plays it.
"""

from __future__ import annotations

import json
import logging
import re
import socket

import yaml

from bgai.bench.strength import er_of_sums
from bgai.config import Config, config_to_dict, model_hash
from bgai.obs.metrics import bgai_version
from bgai.obs.tracking import TrackingQueue
from bgai.opponent_names import parse_opponent
from bgai.store import evals, registry
from bgai.store.client import Redis
from bgai.store.keys import Keys

log = logging.getLogger(__name__)

WEIGHTS, CONFIG, EVALUATION = "weights.bgai", "config.yaml", "eval.json"


def yardstick(totals: dict[str, dict[str, int]]) -> tuple[str, float] | None:
    """(metric, value: higher is better) of a version's evaluation totals, or None when it has
    nothing to be measured by: `er` (minus the error rate, in millipoints) where decisions were
    scored, else `win_rate_<opponent>` against the strongest opponent played."""
    er = er_of_sums(totals.get(evals.ER, {}))
    if er:
        return "er", -er["er"]
    ranked = []
    for name, t in totals.items():
        if name == evals.ER or not t.get("games"):
            continue
        try:
            op = parse_opponent(name)
        except ValueError:
            continue
        if op.cube or op.kind == "past":  # cubeful points and our own past: not a fixed yardstick
            continue
        strength = {"random": 0, "pubeval": 1}.get(op.kind, 2 + op.plies)
        ranked.append((strength, name, t["wins"] / t["games"]))
    if not ranked:
        return None
    _, name, rate = max(ranked)
    return f"win_rate_{name}", rate


def git_commit(version: str) -> str:
    """The commit in a setuptools-scm version (`0.1.1.dev3+g1a2b3c4...`), or ""."""
    m = re.search(r"\+g([0-9a-f]{7,40})", version)
    return m.group(1) if m else ""


def crown(
    cfg: Config,
    r: Redis,
    keys: Keys,
    tracking: TrackingQueue | None,
    run_id: str | None,
    run: str,
    version: int,
    totals: dict[str, dict[str, int]],
) -> bool:
    """Promote `version` (its evaluation complete, `totals`) if it beats the run's champion;
    then, with tracking on, log and register it in MLflow (queued). True if it was promoted."""
    measured = yardstick(totals)
    if measured is None:
        return False
    metric, value = measured
    if not evals.promote(r, keys, run, version, metric, value):
        return False
    log.info("version %d is the run's champion (%s %.4g)", version, metric, value)
    if tracking is None or run_id is None:
        return True
    blob = evals.kept_weights(r, keys, version, run)
    if blob is None:  # gone from Redis already (a long MLflow outage, many newer versions)
        log.warning("champion version %d: its weights are no longer in Redis; not registered", version)
        return True
    code = bgai_version()
    devices = sorted({str(w.get("device_type", "")) for w in registry.live_workers(r, keys).values()} - {""})
    evaluation = {"model_version": version, "metric": metric, "value": value, "totals": totals}
    files = {
        WEIGHTS: blob,
        CONFIG: yaml.safe_dump(config_to_dict(cfg, masked=True), sort_keys=False).encode(),
        EVALUATION: json.dumps(evaluation, indent=1, sort_keys=True).encode(),
    }
    tags = {
        "model_version": str(version),
        "metric": metric,
        "value": f"{value:.6g}",
        "model_hash": model_hash(cfg),
        "host": socket.gethostname(),
        "bgai_version": code,
        "git_commit": git_commit(code),
        "devices": ",".join(devices),
    }
    tracking.champion(run_id, files, f"champion/v{version}", cfg.mlflow.model_name, tags)
    return True
