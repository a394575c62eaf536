"""A role's /metrics over real HTTP: every declared family is exported once set."""

from __future__ import annotations

import urllib.request

from bgai.obs.metrics import RoleMetrics


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_served_metrics() -> None:
    now = [1000.0]
    m = RoleMetrics("h:game:0", "game", "h", clock=lambda: now[0])
    port = m.serve(0, addr="127.0.0.1")
    try:
        m.add_games(10)
        now[0] += 120
        m.add_games(20)
        m.set_model_version(7)
        m.set_status("running")
        m.training({"total": 2.5, "policy": 1.5, "value": 1.0}, 12.0, 3072.0)
        m.buffer({"size": 1000, "episodes": 12, "evicted_episodes": 3})
        m.eval_result("pubeval", 0.45, -0.1)
        text = scrape(port)
    finally:
        m.close()
    assert 'bgai_games_total{worker_id="h:game:0",worker_type="game"} 30.0' in text
    assert 'bgai_games_per_minute{worker_id="h:game:0"} 15.0' in text  # 30 games over 2 minutes
    assert 'bgai_model_version{worker_id="h:game:0",worker_type="game"} 7.0' in text
    assert 'bgai_worker_status{status="running",worker_id="h:game:0"} 1.0' in text
    assert 'bgai_worker_status{status="starting",worker_id="h:game:0"} 0.0' in text
    assert 'bgai_training_loss{kind="policy",worker_id="h:game:0"} 1.5' in text
    assert 'bgai_buffer_positions{worker_id="h:game:0"} 1000.0' in text
    assert 'bgai_eval_win_rate{opponent="pubeval",worker_id="h:game:0"} 0.45' in text
    assert 'bgai_build_info{version="' in text
    for name in ("bgai_system_cpu_percent", "bgai_system_memory_percent", "bgai_system_memory_bytes"):
        assert f'{name}{{hostname="h",worker_id="h:game:0"}}' in text
    # no GPU here: no GPU series, and no error either
    assert "bgai_gpu_" not in text or "bgai_gpu_utilization_percent{" in text
    assert 'role="' not in text and 'device="' not in text  # target labels stay the coordinator's
