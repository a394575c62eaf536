"""`bgai doctor`: one line per check, against a real redis-server, stub HTTP servers and fakes."""

from __future__ import annotations

import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import redis
from click.testing import CliRunner, Result
from redis_server import free_port, redis_server

from bgai.cli.main import cli
from bgai.clock import FakeClock
from bgai.config import MlflowConfig, RedisConfig, load_config
from bgai.obs import doctor
from bgai.obs.doctor import FAIL, OK, WARN, check_clock, check_disk, check_gpu, check_jax, check_mlflow
from bgai.obs.metrics import bgai_version
from bgai.store import acl, head
from bgai.store.client import connect, server_time
from bgai.store.keys import Keys

FAST = ["--no-jax", "--min-free-gb", "0.000001"]  # no JAX child process; any disk will do


def write_config(tmp_path: Path, port: int, extra: str = "") -> Path:
    path = tmp_path / "bgai.yaml"
    path.write_text(f"redis:\n  port: {port}\ntraining:\n  checkpoint_dir: {tmp_path / 'ckpt'}\n{extra}")
    return path


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    out = CliRunner().invoke(cli, ["doctor", *args], env=env)
    assert out.exception is None or isinstance(out.exception, SystemExit), out.output
    assert "Traceback" not in out.output, out.output
    return out


def line(output: str, what: str) -> str:
    """The one line of `output` about `what` (exactly one)."""
    found = [ln for ln in output.splitlines() if ln[6:].split(" ", 1)[0] == what]
    assert len(found) == 1, output
    return found[0]


@contextmanager
def http_stub(routes: dict[str, tuple[int, bytes]], auth: str | None = None) -> Iterator[str]:
    """An HTTP server on loopback answering GET `path` (query left out) with `routes[path]`;
    with `auth`, 401 unless the request's Authorization header is exactly it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            code, body = routes.get(self.path.split("?")[0], (404, b"{}"))
            if auth is not None and self.headers.get("Authorization") != auth:
                code, body = 401, b"You are not authenticated."
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def silent_server() -> Iterator[str]:
    """A port that takes connections and never answers (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_all_is_well_with_a_live_redis_and_the_heads_version(tmp_path: Path) -> None:
    """Redis answers, the head published this bgai's version, the clock agrees: exit 0; what was
    not configured (MLflow, Prometheus) is a warning, which does not fail."""
    with redis_server(tmp_path / "redis") as port:
        r = redis.Redis(port=port)
        head.publish(r, Keys(), head.HeadInfo(bgai_version(), "the-head"), ttl_s=60)
        out = invoke("--config", str(write_config(tmp_path, port)), *FAST)
        r.close()
    assert out.exit_code == 0, out.output
    assert line(out.output, "config").startswith("ok")
    assert re.match(
        rf"ok +redis +127.0.0.1:{port} db 0 as the default user: PING \d+ ms, no run yet",
        line(out.output, "redis"),
    )
    assert line(out.output, "version").startswith("ok") and "the-head" in out.output
    clock = line(out.output, "clock")
    assert re.match(r"ok +clock +\d+\.\d{3} s (ahead of|behind) Redis's clock", clock), clock
    assert line(out.output, "mlflow").startswith("warn") and "mlflow.tracking_uri" in out.output
    assert line(out.output, "prometheus").startswith("warn") and "head.prometheus_url" in out.output
    assert line(out.output, "disk").startswith("ok") and "made later" in line(out.output, "disk")
    assert "jax" not in [ln[6:].split(" ", 1)[0] for ln in out.output.splitlines()]  # --no-jax


def test_the_clock_offset_is_this_hosts_clock_against_redis_time(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as port:
        cfg = RedisConfig(port=port)
        r = connect(cfg)
        ahead = check_clock(r, cfg, FakeClock(server_time(r) + 10.0), 1.0, 300.0)
        behind = check_clock(r, cfg, FakeClock(server_time(r) - 1000.0), 1.0, 300.0)
        r.close()
    got = re.match(r"(\d+\.\d+) s ahead of", ahead.found)
    assert ahead.status is WARN and got and abs(float(got[1]) - 10.0) < 0.5, ahead
    assert "timedatectl" in ahead.fix
    assert behind.status is FAIL and "behind" in behind.found


def test_redis_down_is_one_fail_line_with_its_fix_and_exit_1(tmp_path: Path) -> None:
    port = free_port()  # nobody listens
    t0 = time.monotonic()
    out = invoke("--config", str(write_config(tmp_path, port)), *FAST)
    assert out.exit_code == 1 and "Traceback" not in out.output, out.output
    assert time.monotonic() - t0 < 10
    redis_line = line(out.output, "redis")
    assert redis_line.startswith("FAIL") and f"Redis at 127.0.0.1:{port} is unreachable" in redis_line
    assert "-> is it running? redis.host, redis.port" in redis_line
    assert line(out.output, "clock").startswith("warn")  # not compared, said so


def test_checks_under_a_roles_own_acl_user(tmp_path: Path) -> None:
    """A game worker host's user may read the run, the head's version and TIME (its ACL says so);
    with another prefix its reads are refused, and the line says what to check."""
    keys = Keys()
    pw = acl.ensure_secrets(tmp_path / "secrets.env", tmp_path / "users.acl", keys, ["w1"])
    mine = acl.host_passwords(pw, "w1")
    with redis_server(tmp_path / "redis", extra=("--aclfile", str(tmp_path / "users.acl"))) as port:
        coordinator = connect(RedisConfig(port=port, username="coordinator", password=pw["coordinator"]))
        head.publish(coordinator, keys, head.HeadInfo(bgai_version(), "the-head"), ttl_s=60)
        coordinator.close()
        env = {"BGAI_REDIS__USERNAME": "game@w1", "BGAI_REDIS__PASSWORD": mine["game"]}
        cfg = write_config(tmp_path, port)
        out = invoke("--config", str(cfg), *FAST, env=env)
        assert out.exit_code == 0, out.output
        assert "as game@w1: PING" in line(out.output, "redis")
        assert line(out.output, "version").startswith("ok") and line(out.output, "clock").startswith("ok")
        other = invoke("--config", str(cfg), *FAST, env={**env, "BGAI_REDIS__PREFIX": "other"})
        wrong = invoke("--config", str(cfg), *FAST, env={**env, "BGAI_REDIS__PASSWORD": "wrong"})
    assert other.exit_code == 1 and "refused game@w1 this command" in line(other.output, "redis")
    assert "redis.prefix (other) must be the fleet's" in other.output
    assert wrong.exit_code == 1 and "refused game@w1" in line(wrong.output, "redis")
    assert "BGAI_REDIS__PASSWORD_FILE" in line(wrong.output, "redis")


def test_another_bgai_on_the_head_fails_and_no_head_warns(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as port:
        cfg = str(write_config(tmp_path, port))
        none = invoke("--config", cfg, *FAST)
        r = redis.Redis(port=port)
        head.publish(r, Keys(), head.HeadInfo("0.0.0-older", "the-head"), ttl_s=60)
        r.close()
        older = invoke("--config", cfg, *FAST)
    assert none.exit_code == 0 and line(none.output, "version").startswith("warn"), none.output
    assert "supervisorctl start coordinator" in none.output
    assert older.exit_code == 1, older.output
    assert f"bgai {bgai_version()} here, 0.0.0-older on the head (the-head)" in line(older.output, "version")


def test_a_bad_config_is_a_fail_line_not_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("redis:\n  prot: 1\n")
    out = invoke("--config", str(bad), *FAST)
    assert out.exit_code == 1 and out.output.count("\n") == 1, out.output
    assert (
        out.output.startswith("FAIL  config") and "redis.prot" in out.output and "check-config" in out.output
    )


def test_a_closed_mlflow_port_fails_at_once_and_a_silent_one_within_the_timeout(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as port:
        cfg = str(write_config(tmp_path, port))
        t0 = time.monotonic()
        closed = invoke(
            "--config", cfg, *FAST, env={"BGAI_MLFLOW__TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
        )
        closed_s = time.monotonic() - t0
        with silent_server() as url:
            t0 = time.monotonic()
            silent = invoke(
                "--config", cfg, *FAST, "--timeout", "0.5", env={"BGAI_MLFLOW__TRACKING_URI": url}
            )
            silent_s = time.monotonic() - t0
    assert closed.exit_code == 1 and closed_s < 3, (closed_s, closed.output)
    assert re.match(
        r"FAIL +mlflow +http://127.0.0.1:\d+ is unreachable: .*refused", line(closed.output, "mlflow")
    )
    assert "-> is MLflow's server running on the head?" in closed.output
    assert silent.exit_code == 1 and silent_s < 3, (silent_s, silent.output)
    assert "is unreachable: no answer in 0.5 s" in line(silent.output, "mlflow")


def test_mlflow_and_prometheus_that_answer() -> None:
    found = b'{"experiment": {"name": "bgai"}}'
    routes = {"/api/2.0/mlflow/experiments/get-by-name": (200, found), "/-/healthy": (200, b"Healthy.")}
    with http_stub(routes, auth="Basic Ym9iOnB3") as url:  # bob:pw
        good = check_mlflow(MlflowConfig(tracking_uri=url, username="bob", password="pw"), 3.0, {})
        by_env = check_mlflow(
            MlflowConfig(tracking_uri=url),
            3.0,
            {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": "pw"},
        )
        wrong = check_mlflow(MlflowConfig(tracking_uri=url, username="bob", password="no"), 3.0, {})
    with http_stub(routes) as url:
        prometheus = doctor.check_prometheus(url, 3.0)
    with http_stub(
        {"/api/2.0/mlflow/experiments/get-by-name": (404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}')}
    ) as url:
        fresh = check_mlflow(MlflowConfig(tracking_uri=url), 3.0, {})
        not_prometheus = doctor.check_prometheus(url, 3.0)
    assert good.status is OK and "as bob: experiment bgai found" in good.found
    assert by_env.status is OK
    assert (
        wrong.status is FAIL
        and "refused bob (HTTP 401)" in wrong.found
        and "mlflow.password_file" in wrong.fix
    )
    assert fresh.status is OK and "not made yet" in fresh.found
    assert prometheus.status is OK and not_prometheus.status is FAIL and "HTTP 404" in not_prometheus.found


def test_disk_below_the_threshold_fails(tmp_path: Path) -> None:
    ok = check_disk(str(tmp_path / "ckpt" / "run"), 1)
    full = check_disk(str(tmp_path), 10**18)
    assert ok.status is OK and f"made later, in {tmp_path}" in ok.found
    assert (
        full.status is FAIL
        and "under the 1000000000.0 GB wanted" in full.found
        and "checkpoint_dir" in full.fix
    )
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        readonly = check_disk(str(locked / "ckpt"), 1)
    finally:
        locked.chmod(stat.S_IRWXU)
    if os.geteuid() != 0:  # (root writes anywhere)
        assert readonly.status is FAIL and readonly.found.endswith("not writable by this user"), readonly


def test_gpu_driver_through_nvml_fakes() -> None:
    def nvml(cuda: int, names: tuple[str, ...]) -> SimpleNamespace:
        return SimpleNamespace(
            nvmlInit=lambda: None,
            nvmlShutdown=lambda: None,
            nvmlSystemGetDriverVersion=lambda: "550.54",
            nvmlSystemGetCudaDriverVersion=lambda: cuda,
            nvmlDeviceGetCount=lambda: len(names),
            nvmlDeviceGetHandleByIndex=lambda i: i,
            nvmlDeviceGetName=lambda h: names[h],
        )

    class NoDriver:
        @staticmethod
        def nvmlInit() -> None:  # noqa: N802 (NVML's name)
            raise OSError("NVML Shared Library Not Found")

    h100 = check_gpu("cuda", nvml(12040, ("NVIDIA H100",)))
    old = check_gpu("cuda", nvml(11080, ("NVIDIA T4",)))
    unused = check_gpu("cpu", nvml(12040, ("NVIDIA H100",)))
    assert h100.status is OK and h100.found == "NVIDIA driver 550.54 (CUDA 12.4), 1 GPU: NVIDIA H100"
    assert old.status is FAIL and "CUDA 12 or later" in old.fix
    assert unused.status is WARN and "jax.accelerator is cpu" in unused.found
    assert check_gpu("cuda", NoDriver()).status is FAIL and "nvidia-smi" in check_gpu("cuda", NoDriver()).fix
    assert check_gpu("", NoDriver()).status is OK


def test_jax_backend_against_the_accelerator(tmp_path: Path) -> None:
    """One real JAX child process (what this host computes on), then a fake one that fell back
    to the CPU on a host meant for CUDA."""
    real = check_jax("", 120.0)
    assert real.status is OK and re.match(r"JAX \S+ computes on (cpu|cuda|rocm|metal) ", real.found), real
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\necho 'An NVIDIA GPU may be present on this machine, but a CUDA-enabled jaxlib is not "
        'installed. Falling back to cpu.\' >&2\necho \'["cpu", "Some CPU", "0.4.30"]\'\n'
    )
    fake.chmod(0o755)
    fell_back = check_jax("cuda", 30.0, python=str(fake))
    assert fell_back.status is FAIL and "computes on cpu (Some CPU), not cuda" in fell_back.found
    assert "Falling back to cpu" in fell_back.found and "jax[cuda12]" in fell_back.fix
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho 'ImportError: no jaxlib' >&2\nexit 1\n")
    broken.chmod(0o755)
    assert check_jax("cpu", 30.0, python=str(broken)).found == "JAX did not start: ImportError: no jaxlib"


def test_unreadable_tls_files_are_named() -> None:
    cfg = RedisConfig(tls=True, ca_file="/nonexistent/ca.crt")
    check = doctor.check_tls_files(cfg)
    assert check.status is FAIL and "redis.ca_file /nonexistent/ca.crt cannot be read" in check.found
    assert doctor.check_tls_files(RedisConfig(tls=True)).status is OK


def test_the_checks_come_in_screen_order_and_jax_by_default(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, free_port()), env={})
    names = [c.what for c in doctor.checks(cfg, doctor.Options(jax=False, timeout_s=0.5), None)]
    assert names == ["config", "redis", "version", "clock", "mlflow", "prometheus", "disk", "gpu"]
    assert doctor.Options().jax
