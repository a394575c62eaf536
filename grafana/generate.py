"""Build grafana/dashboards/{cluster,training}.json with Grafana's typed builders.

    .venv/bin/python grafana/generate.py          # rewrite the JSON files
    .venv/bin/python grafana/generate.py --check  # exit 1 if they differ from what this builds

The builders come from `grafana-foundation-sdk` (Grafana's own schema, generated into Python), so
every field written here has the type and name the dashboard schema gives it. The JSON files are
what Grafana provisions (grafana/provisioning/dashboards/bgai.yaml); a test checks they are
exactly this script's output and runs every panel's PromQL against a live Prometheus.

Queries use no Grafana macros or template variables: each one runs as is in Prometheus. Metric
labels (worker_id, hostname, gpu_id, ...) come from the roles; `role` and `device` are the
scrape-target labels the coordinator writes into the file_sd file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="bgai-prometheus")
GPU_TAG = "gpu"  # panels whose series exist only on hosts with an NVIDIA GPU


def query(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant().format(PromQueryFormat.TABLE)
    return q


def series(
    title: str, unit: str, *targets: prometheus.Dataquery, w: int = 12, desc: str = ""
) -> timeseries.Panel:
    legend = (
        common.VizLegendOptions()
        .display_mode(common_model.LegendDisplayMode.LIST)
        .placement(common_model.LegendPlacement.BOTTOM)
        .show_legend(True)
    )
    p = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).height(8).span(w).legend(legend)
    if desc:
        p = p.description(desc)
    for t in targets:
        p = p.with_target(t)
    return p


def single(title: str, expr: str, unit: str = "none", w: int = 6, desc: str = "") -> stat.Panel:
    last = common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    p = stat.Panel().title(title).unit(unit).datasource(DATASOURCE).height(4).span(w).reduce_options(last)
    if desc:
        p = p.description(desc)
    return p.with_target(query(expr))


def gpu(expr: str) -> str:
    """A per-worker GPU metric per host: joined to the host through the worker's system metric."""
    host = "max by (worker_id, hostname) (bgai_system_memory_bytes)"
    return f"max by (hostname, gpu_id) ({expr} * on (worker_id) group_left (hostname) (0 * {host} + 1))"


def per_minute(counter: str, by: str = "") -> str:
    """A counter's rate over the last 5 minutes, per minute (roles export counts, not rates)."""
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}(rate({counter}[5m])) * 60"


def worker_table() -> table.Panel:
    """One row per live worker: id, type, device, host, model version, games/min, status."""
    p = (
        table.Panel()
        .title("Workers")
        .description("Every role that Prometheus scrapes, joined on worker_id.")
        .datasource(DATASOURCE)
        .height(9)
        .span(24)
        .show_header(True)
    )
    p = p.with_target(
        query(
            "max by (worker_id, role, device, hostname) (bgai_system_memory_bytes)", ref="info", instant=True
        )
    )
    p = p.with_target(query("max by (worker_id) (bgai_model_version)", ref="version", instant=True))
    p = p.with_target(query(per_minute("bgai_games_total", "worker_id"), ref="gpm", instant=True))
    p = p.with_target(
        query("max by (worker_id, status) (bgai_worker_status == 1)", ref="status", instant=True)
    )
    p = p.with_transformation(
        model.DataTransformerConfig(id_val="joinByField", options={"byField": "worker_id", "mode": "outer"})
    )
    p = p.with_transformation(
        model.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": {
                    "Time": True,
                    "Time 1": True,
                    "Time 2": True,
                    "Time 3": True,
                    "Time 4": True,
                    "Value #info": True,
                    "Value #status": True,
                },
                "indexByName": {
                    "worker_id": 0,
                    "role": 1,
                    "device": 2,
                    "hostname": 3,
                    "Value #version": 4,
                    "Value #gpm": 5,
                    "status": 6,
                },
                "renameByName": {
                    "role": "type",
                    "hostname": "host",
                    "Value #version": "model version",
                    "Value #gpm": "games/min",
                },
            },
        )
    )
    return p


def cluster() -> dash.Dashboard:
    d = (
        dash.Dashboard("bgai cluster")
        .uid("bgai-cluster")
        .tags(["bgai"])
        .description("Hosts and workers of the bgai fleet.")
        .refresh("10s")
        .time("now-1h", "now")
        .editable()
    )
    d = d.with_panel(single("Targets up", 'sum(up{job="bgai"})', w=6, desc="Roles Prometheus scrapes now."))
    d = d.with_panel(single("Game workers", 'count(up{job="bgai", role="game"} == 1)', w=6))
    d = d.with_panel(single("Eval workers", 'count(up{job="bgai", role="eval"} == 1)', w=6))
    d = d.with_panel(single("Model version", 'max(bgai_model_version{worker_type="training"})', w=6))
    d = d.with_panel(worker_table())
    d = d.with_panel(
        series(
            "CPU by host", "percentunit", query("max by (hostname) (bgai_system_cpu_ratio)", "{{hostname}}")
        )
    )
    d = d.with_panel(
        series(
            "Memory by host", "bytes", query("max by (hostname) (bgai_system_memory_bytes)", "{{hostname}}")
        )
    )
    for title, metric, unit in (
        ("GPU utilisation", "bgai_gpu_utilization_ratio", "percentunit"),
        ("GPU memory used", "bgai_gpu_memory_used_bytes", "bytes"),
        ("GPU memory total", "bgai_gpu_memory_total_bytes", "bytes"),
        ("GPU temperature", "bgai_gpu_temperature_celsius", "celsius"),
    ):
        d = d.with_panel(
            series(
                title,
                unit,
                query(gpu(metric), "{{hostname}} gpu {{gpu_id}}"),
                w=6,
                desc=f"[{GPU_TAG}] {metric}",
            )
        )
    d = d.with_panel(
        series(
            "Games per minute by worker",
            "none",
            query(per_minute("bgai_games_total", "worker_id"), "{{worker_id}}"),
            w=24,
        )
    )
    return d


def training() -> dash.Dashboard:
    mlflow = dash.TextBoxVariable("mlflow_url").label("MLflow URL").default_value("http://localhost:5000")
    d = (
        dash.Dashboard("bgai training")
        .uid("bgai-training")
        .tags(["bgai"])
        .description("Learning progress of the current bgai run.")
        .refresh("10s")
        .time("now-3h", "now")
        .editable()
        .with_variable(mlflow)
        .link(
            dash.DashboardLink("MLflow")
            .type(model.DashboardLinkType.LINK)
            .url("${mlflow_url}")
            .target_blank(True)
        )
    )
    run = (
        table.Panel()
        .title("Run")
        .description("The run the fleet works on; the link opens it in MLflow.")
        .datasource(DATASOURCE)
        .height(4)
        .span(12)
        .show_header(True)
        .with_target(query("max by (run_id, run_status) (bgai_run_info)", instant=True))
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"Time": True, "Value": True}}
            )
        )
        .override_by_name(
            "run_id",
            [
                model.DynamicConfigValue(
                    id_val="links",
                    value=[
                        {
                            "title": "Open the run in MLflow",
                            "url": "${mlflow_url}/#/runs/${__value.text}",
                            "targetBlank": True,
                        }
                    ],
                )
            ],
        )
    )
    d = d.with_panel(run)
    d = d.with_panel(single("Model version", 'max(bgai_model_version{worker_type="training"})', w=4))
    d = d.with_panel(single("Buffer positions", "max(bgai_buffer_positions)", w=4))
    d = d.with_panel(single("Games per minute", per_minute('bgai_games_total{role="game"}'), w=4))
    d = d.with_panel(series("Loss", "none", query("max by (kind) (bgai_training_loss)", "{{kind}}")))
    d = d.with_panel(
        series(
            "Model version",
            "none",
            query("max by (worker_type) (bgai_model_version)", "{{worker_type}}"),
            desc="The trainer's version and the version each kind of worker plays with.",
        )
    )
    d = d.with_panel(
        series("Games per minute", "none", query(per_minute("bgai_games_total", "role"), "{{role}}"), w=8)
    )
    d = d.with_panel(
        series(
            "Positions per second",
            "none",
            query("sum(rate(bgai_positions_total[1m]))", "self-play"),
            query("max(bgai_training_samples_per_second)", "trained", ref="B"),
            w=8,
        )
    )
    d = d.with_panel(
        series(
            "Search simulations per second",
            "none",
            query("sum(bgai_search_simulations_per_second)", "all game workers"),
            w=8,
        )
    )
    d = d.with_panel(
        series(
            "Replay buffer",
            "none",
            query("max(bgai_buffer_positions)", "positions"),
            query("max(bgai_buffer_episodes)", "episodes", ref="B"),
            query("max(rate(bgai_buffer_evicted_episodes_total[5m])) * 60", "evicted episodes/min", ref="C"),
        )
    )
    d = d.with_panel(
        series("Train steps per second", "none", query("max(bgai_training_steps_per_second)", "steps/s"))
    )
    d = d.with_panel(
        series(
            "Eval win rate by opponent",
            "percentunit",
            query("max by (opponent) (bgai_eval_win_rate)", "{{opponent}}"),
        )
    )
    d = d.with_panel(
        series(
            "Eval points per game by opponent",
            "none",
            query("max by (opponent) (bgai_eval_points_per_game)", "{{opponent}}"),
        )
    )
    d = d.with_panel(
        series(
            "Eval error rate on the decision set (lower is better; gnubg 0-ply 2.6, pubeval 29.6)",
            "none",
            query("max by (class) (bgai_eval_error_rate)", "{{class}}"),
        )
    )
    return d


def render() -> dict[str, str]:
    """File name -> JSON text, panels laid out by the builders, ids numbered in order."""
    out = {}
    for name, build in (("cluster.json", cluster), ("training.json", training)):
        data = json.loads(json.dumps(build().build(), cls=JSONEncoder))
        for i, panel in enumerate(data["panels"], 1):
            panel["id"] = i
        out[name] = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return out


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text() != text]
        if stale:
            print(f"out of date: {', '.join(stale)} (run grafana/generate.py)", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
