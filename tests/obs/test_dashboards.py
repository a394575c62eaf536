"""The Grafana dashboards and provisioning files: generated, schema-shaped, consistent.

A Grafana server cannot be installed here (DESIGN.md §4), so the dashboards are checked three ways:
they are exactly what grafana/generate.py builds with Grafana's typed builders; they survive a
round trip through the SDK's dashboard model (generated from Grafana's schema: an unknown or
misspelled field would be dropped, so the round trip would differ); and every panel's PromQL runs
against a live Prometheus in the end-to-end test (tests/e2e).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from dashboards import DASHBOARDS, GRAFANA, load, metric_names, panel_queries

from bgai.obs.metrics import declared_metrics


def test_committed_json_is_the_generators_output() -> None:
    out = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", DASHBOARDS)
def test_round_trip_through_grafana_schema_model(name: str) -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    data = load(name)
    back = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    assert back == data


@pytest.mark.parametrize("name", DASHBOARDS)
def test_layout_and_datasource(name: str) -> None:
    data = load(name)
    panels = data["panels"]
    assert [p["id"] for p in panels] == list(range(1, len(panels) + 1))
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        area = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
        assert not cells & area, f"{p['title']} overlaps another panel"
        cells |= area
        uids = {p["datasource"]["uid"]} | {t["datasource"]["uid"] for t in p["targets"]}
        assert uids == {provisioned_datasource()["uid"]}, p["title"]
        assert p["targets"], f"{p['title']} has no query"


def test_every_queried_metric_is_declared() -> None:
    declared = declared_metrics() | {"up"}
    for dashboard, title, expr, _ in panel_queries():
        names = metric_names(expr)
        assert names, f"{dashboard}/{title}: no metric in {expr!r}"
        assert names <= declared, f"{dashboard}/{title}: {names - declared} is not exported"


def test_the_panels_the_plan_asks_for() -> None:
    titles = {name: {p["title"] for p in load(name)["panels"]} for name in DASHBOARDS}
    assert {
        "CPU by host",
        "Memory by host",
        "GPU utilisation",
        "GPU memory used",
        "GPU temperature",
        "Workers",
    } <= titles["cluster.json"]
    assert {
        "Loss",
        "Games per minute",
        "Positions per second",
        "Replay buffer",
        "Model version",
        "Eval win rate by opponent",
        "Eval points per game by opponent",
        "Run",
    } <= titles["training.json"]
    table = next(p for p in load("cluster.json")["panels"] if p["title"] == "Workers")
    columns = next(t for t in table["transformations"] if t["id"] == "organize")["options"]
    shown = {columns["renameByName"].get(c, c) for c in columns["indexByName"]}
    assert shown == {"worker_id", "type", "device", "host", "model version", "games/min", "status"}
    training = load("training.json")
    run = next(p for p in training["panels"] if p["title"] == "Run")
    link = run["fieldConfig"]["overrides"][0]["properties"][0]["value"][0]["url"]
    assert link == "${mlflow_url}/#/runs/${__value.text}"
    assert [v["name"] for v in training["templating"]["list"]] == ["mlflow_url"]


def provisioned_datasource() -> dict:
    data = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "bgai.yaml").read_text())
    assert data["apiVersion"] == 1
    (source,) = data["datasources"]
    assert source["type"] == "prometheus"
    return dict(source)


def test_dashboard_provider() -> None:
    data = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "bgai.yaml").read_text())
    (provider,) = data["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    assert provisioned_datasource()["url"] == "${BGAI_PROMETHEUS_URL}"
