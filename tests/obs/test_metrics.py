"""A role's /metrics over real HTTP: every declared family is exported once set."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from bgai.obs.metrics import RoleMetrics, declared_metrics


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_served_metrics() -> None:
    m = RoleMetrics("h:game:0", "game", "h")
    port = m.serve(0, addr="127.0.0.1")
    try:
        m.add_games(10)
        m.add_games(20)
        m.set_model_version(7)
        m.set_status("running")
        m.training({"total": 2.5, "policy": 1.5, "value": 1.0}, 12.0, 3072.0)
        m.buffer({"size": 1000, "episodes": 12, "evicted_episodes": 3})
        m.buffer({"size": 1000, "episodes": 12, "evicted_episodes": 5})  # Redis's total, as read
        m.eval_result("pubeval", 0.45, -0.1)
        m.eval_error_rate({"er": 13.5, "er_contact": 18.75, "best": 0.6, "decisions": 800})
        text = scrape(port)
    finally:
        m.close()
    assert 'bgai_games_total{worker_id="h:game:0",worker_type="game"} 30.0' in text
    assert 'bgai_buffer_evicted_episodes_total{worker_id="h:game:0"} 5.0' in text
    assert "# TYPE bgai_buffer_evicted_episodes_total counter" in text
    assert 'bgai_model_version{worker_id="h:game:0",worker_type="game"} 7.0' in text
    assert 'bgai_worker_status{status="running",worker_id="h:game:0"} 1.0' in text
    assert 'bgai_worker_status{status="starting",worker_id="h:game:0"} 0.0' in text
    assert 'bgai_training_loss{kind="policy",worker_id="h:game:0"} 1.5' in text
    assert 'bgai_buffer_positions{worker_id="h:game:0"} 1000.0' in text
    assert 'bgai_eval_win_rate{opponent="pubeval",worker_id="h:game:0"} 0.45' in text
    assert 'bgai_eval_error_rate{class="all",worker_id="h:game:0"} 13.5' in text
    assert 'bgai_eval_error_rate{class="contact",worker_id="h:game:0"} 18.75' in text
    assert 'bgai_build_info{version="' in text
    for name in ("bgai_system_cpu_ratio", "bgai_system_memory_ratio", "bgai_system_memory_bytes"):
        assert f'{name}{{hostname="h",worker_id="h:game:0"}}' in text
    for name in ("bgai_system_cpu_ratio", "bgai_system_memory_ratio"):
        (line,) = [x for x in text.splitlines() if x.startswith(name + "{")]
        assert 0.0 <= float(line.split()[-1]) <= 1.0, line
    # no GPU here: no GPU series, and no error either
    assert "bgai_gpu_" not in text or "bgai_gpu_utilization_ratio{" in text
    assert 'role="' not in text and 'device="' not in text  # target labels stay the coordinator's


def test_selfplay_and_run_info() -> None:
    m = RoleMetrics("h:coordinator", "coordinator", "h")
    port = m.serve(0, addr="127.0.0.1")
    try:
        m.selfplay(120, 5000.0)
        m.run("abc", "running")
        m.run("abc", "paused")  # one series: the old status is removed, not left at 1
        text = scrape(port)
    finally:
        m.close()
    assert 'bgai_positions_total{worker_id="h:coordinator",worker_type="coordinator"} 120.0' in text
    assert 'bgai_search_simulations_per_second{worker_id="h:coordinator"} 5000.0' in text
    assert 'bgai_run_info{run_id="abc",run_status="paused"} 1.0' in text
    assert 'run_status="running"' not in text


def test_spool_drops_count_up_from_the_spools_running_count() -> None:
    from prometheus_client import generate_latest

    m = RoleMetrics("h:game:0", "game", "h")
    dropped = 'bgai_spool_dropped_episodes_total{worker_id="h:game:0"}'
    assert f"{dropped} 0.0" in generate_latest(m.registry).decode()  # before any drop
    m.spool(5, 0)
    m.spool(5, 3)
    m.spool(5, 3)  # no new drop
    m.spool(5, 4)
    assert f"{dropped} 4.0" in generate_latest(m.registry).decode()
    m.spool(5, 2)  # a new spool's count: all of it new
    assert f"{dropped} 6.0" in generate_latest(m.registry).decode()


class FakeNvml:
    """The slice of the pynvml API GpuCollector reads: two GPUs."""

    NVML_TEMPERATURE_GPU = 0

    class Mem:
        used, total = 3 * 2**30, 80 * 2**30

    class Util:
        gpu = 42

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802 (NVML's spelling)
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        return i

    def nvmlDeviceGetMemoryInfo(self, h: int) -> type:  # noqa: N802
        return self.Mem

    def nvmlDeviceGetUtilizationRates(self, h: int) -> type:  # noqa: N802
        return self.Util

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:  # noqa: N802
        return 60 + h


def test_gpu_metrics_from_nvml() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from bgai.obs.metrics import GPU_METRICS, GpuCollector

    reg = CollectorRegistry()
    reg.register(GpuCollector("h:game:0", nvml=FakeNvml()))
    text = generate_latest(reg).decode()
    for gpu_id in ("0", "1"):
        for name in GPU_METRICS:
            assert f'{name}{{gpu_id="{gpu_id}",worker_id="h:game:0"}}' in text
    assert 'bgai_gpu_temperature_celsius{gpu_id="1",worker_id="h:game:0"} 61.0' in text
    assert 'bgai_gpu_utilization_ratio{gpu_id="0",worker_id="h:game:0"} 0.42' in text
    assert 'bgai_gpu_memory_total_bytes{gpu_id="0",worker_id="h:game:0"} 8.589934592e+10' in text


def test_declared_metrics_pass_promtool(tmp_path: Path) -> None:
    """Every family, once set, passes `promtool check metrics` (Prometheus's naming lint)."""
    from prometheus_client import generate_latest

    from bgai.obs.metrics import GpuCollector

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/install installs Debian's prometheus package")
    m = RoleMetrics("h:game:0", "game", "h")
    m.add_games(1)
    m.selfplay(10, 1.0)
    m.set_model_version(1)
    m.training({"total": 1.0}, 1.0, 1.0)
    m.buffer({"size": 1})
    m.eval_result("pubeval", 0.5, 0.0)
    m.eval_error_rate({"er": 10.0})
    m.run("abc", "running")
    m.spool(2, 1)
    m.unit_age(1.5)
    m.stalled_workers(0)
    m.registry.register(GpuCollector("h:game:0#fake", nvml=FakeNvml()))
    text = generate_latest(m.registry)
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    # the lint saw a sample of every declared metric (a new one must be set above to be linted)
    sampled = {line.split("{")[0].split(" ")[0] for line in text.decode().splitlines() if line[:1] != "#"}
    assert declared_metrics() <= sampled, declared_metrics() - sampled


def test_the_alerting_rules_pass_promtool_and_name_declared_metrics() -> None:
    """configs/rules/bgai.yml: `promtool check rules` passes, and every metric a rule reads is one
    a role declares (or Prometheus's own `up`): a renamed metric cannot leave a rule that never fires."""
    import re

    import yaml

    rules = Path(__file__).resolve().parents[2] / "configs" / "rules" / "bgai.yml"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/install installs Debian's prometheus package")
    out = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    exprs = [r["expr"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\b(bgai_\w+|up)\b", e)}
    assert used - declared_metrics() <= {"up"}, used - declared_metrics()
    assert {"Watchdog", "BgaiTrainerMissing", "BgaiSelfPlayStopped"} <= {
        r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]
    }
