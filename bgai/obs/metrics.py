"""Prometheus metrics of one role process: declared once, on the role's own registry.

A role gets a `RoleMetrics` and calls its narrow setters; `serve()` exposes `/metrics` over HTTP
(port 0 picks a free port, which the role then reports in the registry so the coordinator can
list it as a scrape target). System and GPU figures are read at scrape time by collectors: GPU
metrics come from NVML (nvidia-ml-py) when a GPU is present and are simply absent otherwise.

Names follow Prometheus's conventions: a fraction is a 0-1 `_ratio`, a running count is a counter
(`_total`) that dashboards and rules turn into a rate with `rate()`/`increase()` (no per-minute
gauges), and a unit ends the name (`_bytes`, `_seconds`, `_celsius`).

Metric labels (`worker_id`, `worker_type`, `hostname`, `gpu_id`, `status`, `kind`, `opponent`)
never reuse the scrape-target labels the coordinator sets (`role`, `device`), so Prometheus
never renames one to `exported_*`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Info, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

STATUSES = (
    "starting",
    "running",
    "idle",
    "paused",
    "waiting",
    "training",
    "standby",
    "evaluating",
    "stopping",
    "offline",
    "stalled",  # the unit in progress ran past head.stall_after_s (hung)
    "blocked",  # coordinator: MLflow shows a run RUNNING that Redis lost; waits for bgai-runs
)


class SystemCollector(Collector):
    """CPU and memory of the host, read when scraped."""

    def __init__(self, worker_id: str, hostname: str) -> None:
        self.labels = [worker_id, hostname]
        psutil.cpu_percent(interval=None)  # prime: the next call measures since now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        names = ["worker_id", "hostname"]
        mem = psutil.virtual_memory()
        for name, doc, value in (
            (
                "bgai_system_cpu_ratio",
                "Host CPU use since the previous scrape, 0-1 (1: every core busy).",
                psutil.cpu_percent() / 100.0,
            ),
            ("bgai_system_memory_ratio", "Host memory in use, 0-1.", mem.percent / 100.0),
            ("bgai_system_memory_bytes", "Host memory in use, bytes.", float(mem.total - mem.available)),
        ):
            family = GaugeMetricFamily(name, doc, labels=names)
            family.add_metric(self.labels, value)
            yield family


GPU_METRICS = (
    "bgai_gpu_utilization_ratio",
    "bgai_gpu_memory_used_bytes",
    "bgai_gpu_memory_total_bytes",
    "bgai_gpu_temperature_celsius",
)


class GpuCollector(Collector):
    """NVIDIA GPUs through NVML, read when scraped; yields nothing without NVML or a GPU.

    `nvml` replaces the `pynvml` module (tests); by default it is imported on the first scrape.
    """

    def __init__(self, worker_id: str, nvml: Any = None) -> None:
        self.worker_id = worker_id
        self._nvml: Any = nvml
        self._tried = nvml is not None

    def _handle(self) -> Any:
        if not self._tried:
            self._tried = True
            try:
                import pynvml  # from the nvidia-ml-py package

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception:  # no library, no driver, no GPU: no GPU metrics
                self._nvml = None
        return self._nvml

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nvml = self._handle()
        if nvml is None:
            return
        names = ["worker_id", "gpu_id"]
        docs = (
            "GPU utilisation, 0-1 (time a kernel ran in NVML's last sample period).",
            "GPU memory in use, bytes.",
            "GPU memory, bytes.",
            "GPU temperature, Celsius.",
        )
        util, used, total, temp = (
            GaugeMetricFamily(name, doc, labels=names) for name, doc in zip(GPU_METRICS, docs, strict=True)
        )
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                h = nvml.nvmlDeviceGetHandleByIndex(i)
                mem = nvml.nvmlDeviceGetMemoryInfo(h)
                labels = [self.worker_id, str(i)]
                util.add_metric(labels, nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100.0)
                used.add_metric(labels, float(mem.used))
                total.add_metric(labels, float(mem.total))
                temp.add_metric(labels, float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)))
        except Exception:  # a GPU that went away mid-scrape: report what was read
            pass
        yield from (util, used, total, temp)


class StoredCounter(Collector):
    """A counter whose running total is kept elsewhere and read, not counted here.

    The replay buffer's evictions are counted by Redis (`buffer:{run}:stats`): exported as read, a
    restarted trainer goes on from the stored total rather than from 0, and a new run's total
    (back to 0) is a counter reset, which `rate()` and `increase()` handle.
    """

    def __init__(self, name: str, doc: str, labels: list[str]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self._values: dict[tuple[str, ...], float] = {}

    def set(self, labels: list[str], total: float) -> None:
        self._values[tuple(labels)] = total

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, total in list(self._values.items()):  # a copy: set() runs on the role's thread
            family.add_metric(list(labels), total)
        yield family


class RoleMetrics:
    """The metrics one role process exports, with setters for the roles."""

    def __init__(self, worker_id: str, worker_type: str, hostname: str) -> None:
        self.worker_id, self.worker_type = worker_id, worker_type
        r = self.registry = CollectorRegistry()
        # counters are named as exported, `_total` included (prometheus_client keeps the family
        # name without it: `exported_names`)
        wid, wt = ["worker_id"], ["worker_id", "worker_type"]
        # games per minute: rate(bgai_games_total[5m]) * 60 in the dashboards
        self._games = Counter("bgai_games_total", "Self-play or eval games finished.", wt, registry=r)
        self._positions = Counter(
            "bgai_positions_total", "Self-play positions pushed to the replay buffer.", wt, registry=r
        )
        self._sims = Gauge(
            "bgai_search_simulations_per_second",
            "Search leaf evaluations per second in the last self-play unit (mcts: simulations; "
            "afterstate: legal plays scored).",
            wid,
            registry=r,
        )
        self._version = Gauge("bgai_model_version", "Model version in use.", wt, registry=r)
        self._status = Gauge(
            "bgai_worker_status", "1 for the worker's current status.", ["worker_id", "status"], registry=r
        )
        self._loss = Gauge(
            "bgai_training_loss", "Last training loss by kind.", ["worker_id", "kind"], registry=r
        )
        self._steps = Gauge("bgai_training_steps_per_second", "Train steps per second.", wid, registry=r)
        self._samples = Gauge(
            "bgai_training_samples_per_second", "Samples trained per second.", wid, registry=r
        )
        self._buf_pos = Gauge("bgai_buffer_positions", "Positions in the replay buffer.", wid, registry=r)
        self._buf_eps = Gauge("bgai_buffer_episodes", "Episodes in the replay buffer.", wid, registry=r)
        self._buf_evict = StoredCounter(
            "bgai_buffer_evicted_episodes_total",
            "Episodes evicted from the replay buffer of the current run (its total in Redis).",
            wid,
        )
        r.register(self._buf_evict)
        self._win = Gauge(
            "bgai_eval_win_rate",
            "Win rate of the latest evaluated version, 0-1.",
            ["worker_id", "opponent"],
            registry=r,
        )
        self._er = Gauge(
            "bgai_eval_error_rate",
            "Error rate in millipoints (mean equity given up per decision x1000 against gnubg's"
            " 2-ply best play; not a 0-1 ratio) of the latest evaluated version on the decision set,"
            " overall and per class.",
            ["worker_id", "class"],
            registry=r,
        )
        self._ppg = Gauge(
            "bgai_eval_points_per_game",
            "Points per game of the latest evaluated version.",
            ["worker_id", "opponent"],
            registry=r,
        )
        self._spool = Gauge(
            "bgai_spool_episodes",
            "Finished episodes waiting in the local spool (Redis down).",
            wid,
            registry=r,
        )
        self._spool_dropped = Counter(
            "bgai_spool_dropped_episodes_total",
            "Episodes dropped because the local spool was full.",
            wid,
            registry=r,
        )
        self._spool_dropped.labels(worker_id)  # exported from the start, at 0: increase() sees a drop
        self._spool_dropped_seen = 0  # the spool's own count at the last `spool()` call
        self._run = Gauge(
            "bgai_run_info",
            "1 for the run the fleet works on (coordinator).",
            ["run_id", "run_status"],
            registry=r,
        )
        self._run_labels: tuple[str, str] | None = None
        self._unit_age = Gauge(
            "bgai_unit_age_seconds",
            "Seconds the unit of work in progress has run (0 between units); past "
            "head.stall_after_s the worker is stalled.",
            wid,
            registry=r,
        )
        self._stalled = Gauge(
            "bgai_stalled_workers",
            "Live workers whose unit in progress ran past head.stall_after_s (coordinator).",
            wid,
            registry=r,
        )
        self._expected = Gauge(
            "bgai_expected_workers",
            "Workers of this type the fleet should have up (head.expected_*_workers; coordinator).",
            ["worker_type"],
            registry=r,
        )
        self._expected.labels("game")  # exported from the start, at 0 (no expectation)
        self._oom = Counter(
            "bgai_redis_oom_errors_total",
            "Redis commands refused because Redis is out of memory (its maxmemory reached); the "
            "role backs off and retries, a game worker spools.",
            wid,
            registry=r,
        )
        self._oom.labels(worker_id)  # exported from the start, at 0
        build = Info("bgai_build", "The bgai build.", registry=r)
        build.info({"version": bgai_version()})
        r.register(SystemCollector(worker_id, hostname))
        # the standard process metrics (process_cpu_seconds_total, resident memory, start time...):
        # where a host's CPU goes, per role (`bgai bench fleet` reads them)
        ProcessCollector(registry=r)
        r.register(GpuCollector(worker_id))
        self._server: Any = None
        self.set_status("starting")

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics on a daemon thread (port 0: any free port; loopback unless `addr` says);
        returns the port."""
        self._server, _ = start_http_server(port, addr=addr, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def set_status(self, status: str) -> None:
        for s in {*STATUSES, status}:
            self._status.labels(self.worker_id, s).set(1.0 if s == status else 0.0)

    def add_games(self, n: int) -> None:
        self._games.labels(self.worker_id, self.worker_type).inc(n)

    def selfplay(self, positions: int, sims_per_s: float) -> None:
        self._positions.labels(self.worker_id, self.worker_type).inc(positions)
        self._sims.labels(self.worker_id).set(sims_per_s)

    def spool(self, waiting: int, dropped: int) -> None:
        """`dropped`: the spool's running count (`Spool.dropped`); the counter grows by its growth
        (a count lower than the last one is a new spool's, all of it new)."""
        self._spool.labels(self.worker_id).set(waiting)
        grown = dropped - self._spool_dropped_seen if dropped >= self._spool_dropped_seen else dropped
        self._spool_dropped.labels(self.worker_id).inc(grown)
        self._spool_dropped_seen = dropped

    def run(self, run_id: str, status: str) -> None:
        if self._run_labels != (run_id, status):
            if self._run_labels is not None:
                self._run.remove(*self._run_labels)
            self._run.labels(run_id, status).set(1.0)
            self._run_labels = (run_id, status)

    def unit_age(self, seconds: float | None) -> None:
        self._unit_age.labels(self.worker_id).set(seconds or 0.0)

    def stalled_workers(self, n: int) -> None:
        self._stalled.labels(self.worker_id).set(n)

    def expected_workers(self, worker_type: str, n: int) -> None:
        self._expected.labels(worker_type).set(n)

    def redis_oom(self) -> None:
        self._oom.labels(self.worker_id).inc()

    def set_model_version(self, version: int | None) -> None:
        if version is not None:
            self._version.labels(self.worker_id, self.worker_type).set(version)

    def training(self, losses: dict[str, float], steps_per_s: float, samples_per_s: float) -> None:
        for kind, value in losses.items():
            self._loss.labels(self.worker_id, kind).set(value)
        self._steps.labels(self.worker_id).set(steps_per_s)
        self._samples.labels(self.worker_id).set(samples_per_s)

    def buffer(self, stats: dict[str, Any]) -> None:
        self._buf_pos.labels(self.worker_id).set(float(stats.get("size", 0)))
        self._buf_eps.labels(self.worker_id).set(float(stats.get("episodes", 0)))
        self._buf_evict.set([self.worker_id], float(stats.get("evicted_episodes", 0)))

    def eval_result(self, opponent: str, win_rate: float, ppg: float) -> None:
        self._win.labels(self.worker_id, opponent).set(win_rate)
        self._ppg.labels(self.worker_id, opponent).set(ppg)

    def eval_error_rate(self, er: dict[str, float]) -> None:
        """`bench.strength.er_of_sums`' figures: class "all" for the overall ER."""
        for key, value in er.items():
            if key == "er" or key.startswith("er_"):
                self._er.labels(self.worker_id, key[3:] or "all").set(value)


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Sample names a registry declares (`bgai_games` -> `bgai_games_total`), set or not."""
    suffix = {"counter": "_total", "info": "_info"}
    return {f.name + suffix.get(f.type, "") for f in registry.collect()}


def declared_metrics() -> set[str]:
    """Every metric name a role can export (GPU ones only where NVML finds a GPU)."""
    return exported_names(RoleMetrics("declared", "declared", "declared").registry) | set(GPU_METRICS)


def bgai_version() -> str:
    """This bgai's package version (`bgai_build_info`; the head publishes its own, store/head.py)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bgai")
    except PackageNotFoundError:
        return "unknown"
