"""`bgai doctor`: what a fleet host needs, checked one thing at a time and said in one line each.

A check is a function returning a `Check`: ok, warn (it works, but look) or FAIL (this host cannot
do its part until it is fixed), what it found and, unless ok, how to fix it. `checks` runs them in
order and yields each as it is done; none raises (an error a check did not foresee is its FAIL)
and none waits past its timeout: the network ones `timeout_s` per connection (3 s by default),
JAX's backend a child process given `jax_timeout_s`, so a dead server or a hung driver cannot
hang the doctor. Redis is read through `bgai.store` only.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import http.client
import importlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bgai.clock import Clock, SystemClock
from bgai.config import Config, MlflowConfig, RedisConfig, config_hash, model_hash
from bgai.obs.metrics import bgai_version
from bgai.store import head, runstate, weights
from bgai.store.client import REFUSED, Redis, connect, failure_hint, keys_for, ping, server_time
from bgai.store.keys import Keys


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


OK, WARN, FAIL = Status.OK, Status.WARN, Status.FAIL


@dataclass(frozen=True)
class Check:
    status: Status
    what: str  # the thing checked: config, redis, clock...
    found: str  # what the check saw
    fix: str = ""  # how to put it right (warn and FAIL)

    def line(self) -> str:
        fix = f"  -> {self.fix}" if self.fix and self.status is not OK else ""
        return f"{self.status.value:4s}  {self.what:10s} {self.found}{fix}"


@dataclass(frozen=True)
class Options:
    jax: bool = True  # check JAX's backend (a child process: seconds)
    timeout_s: float = 3.0  # each network check's connection
    jax_timeout_s: float = 120.0  # JAX's child process (a GPU's first start can take a while)
    min_free_bytes: int = 1 << 30  # wanted under training.checkpoint_dir
    env: Mapping[str, str] = field(default_factory=dict)  # MLFLOW_TRACKING_USERNAME / _PASSWORD
    clock: Clock = field(default_factory=SystemClock)  # this host's clock (tests set it)
    clock_warn_s: float = 1.0  # clock offset past this: warn (logs and MLflow disagree)...
    clock_fail_s: float = 300.0  # ...past this: FAIL (no time sync at all; TLS dates too)


def checks(cfg: Config, opts: Options, config_file: str | None) -> Iterator[Check]:
    """Every check, in screen order: config, Redis (TLS), versions, clock, MLflow, Prometheus,
    disk, GPU, JAX."""
    yield guard("config", check_config, cfg, config_file)
    if cfg.redis.tls:
        yield guard("tls", check_tls_files, cfg.redis)
    found, r = check_redis(cfg.redis, opts.timeout_s)
    yield found
    if r is None:
        yield Check(WARN, "version", "not compared: no Redis", "see the redis line")
        yield Check(WARN, "clock", "not compared: no Redis", "see the redis line")
    else:
        try:
            yield guard("version", check_version, r, cfg.redis, bgai_version())
            yield guard("clock", check_clock, r, cfg.redis, opts.clock, opts.clock_warn_s, opts.clock_fail_s)
        finally:
            r.close()
    yield guard("mlflow", check_mlflow, cfg.mlflow, opts.timeout_s, opts.env)
    yield guard("prometheus", check_prometheus, cfg.head.prometheus_url, opts.timeout_s, cfg.redis.ca_file)
    yield guard("disk", check_disk, cfg.training.checkpoint_dir, opts.min_free_bytes)
    yield guard("gpu", check_gpu, cfg.jax.accelerator)
    if opts.jax:
        yield guard("jax", check_jax, cfg.jax.accelerator, opts.jax_timeout_s)


def guard(what: str, check: Callable[..., Check], *args: Any) -> Check:
    """`check(*args)`, or its FAIL when it raised what it did not foresee."""
    try:
        return check(*args)
    except Exception as exc:
        return Check(FAIL, what, f"the check itself failed: {type(exc).__name__}: {_first(exc)}")


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


# ---------------------------------------------------------------------------------------------
# Config and Redis


def check_config(cfg: Config, config_file: str | None) -> Check:
    sums = f"config hash {config_hash(cfg)}, model hash {model_hash(cfg)}"
    if config_file is None:
        return Check(
            WARN,
            "config",
            f"no config file, the defaults (a local CPU run): {sums}",
            "give --config FILE or BGAI_CONFIG (a deployed host's: /opt/bgai/etc/bgai.yaml)",
        )
    return Check(OK, "config", f"{config_file} valid: {sums}")


def config_failed(message: str) -> Check:
    """The FAIL of a config that does not load (`message`: what `load_config` refused)."""
    return Check(FAIL, "config", message, "fix what it names (bgai check-config --config FILE)")


def check_tls_files(cfg: RedisConfig) -> Check:
    """TLS's files can be read (before any handshake, to name the one at fault)."""
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(cfg, name)
        if path and not os.access(Path(path).expanduser(), os.R_OK):
            return Check(
                FAIL,
                "tls",
                f"redis.{name} {path} cannot be read by this user",
                "copy it from the controller's build/tls/ (deploy.yml does), or fix its mode",
            )
    client = f"client certificate {cfg.cert_file}" if cfg.cert_file else "no client certificate"
    return Check(
        OK, "tls", f"Redis's certificate checked against {cfg.ca_file or 'the system CAs'}, {client}"
    )


def check_redis(cfg: RedisConfig, timeout_s: float) -> tuple[Check, Redis | None]:
    """PING with these credentials, then read the run and model version (keys every role's ACL
    user may read: a wrong `redis.prefix` shows here); the open client when that worked."""
    rc = dataclasses.replace(cfg, socket_timeout_s=min(cfg.socket_timeout_s, timeout_s))
    r, keys = connect(rc, retries=0), keys_for(cfg)
    user = cfg.username or "the default user"
    where = f"{cfg.host}:{cfg.port} db {cfg.db}{' over TLS' if cfg.tls else ''} as {user}"
    try:
        rtt = ping(r)
        run_id, status = runstate.get_run(r, keys)
        version = weights.current_version(r, keys)
    except Exception as exc:
        r.close()
        hint = failure_hint(exc, cfg)
        if hint is None:
            return Check(FAIL, "redis", f"{where}: {type(exc).__name__}: {_first(exc)}"), None
        return Check(FAIL, "redis", hint[0], hint[1]), None
    run = f"run {run_id} {status}" if run_id else "no run yet"
    shown = "-" if version is None else version
    return Check(OK, "redis", f"{where}: PING {rtt * 1000:.0f} ms, {run}, model version {shown}"), r


def _redis_failed(what: str, exc: Exception, cfg: RedisConfig) -> Check:
    hint = failure_hint(exc, cfg)
    if hint is None:
        raise exc
    return Check(FAIL, what, hint[0], hint[1])


def check_version(r: Redis, cfg: RedisConfig, mine: str) -> Check:
    """This host's bgai against the head's (`run:head`, set by its coordinator)."""
    try:
        info = head.read(r, Keys(cfg.prefix))
    except Exception as exc:
        return _redis_failed("version", exc, cfg)
    if info is None:
        return Check(
            WARN,
            "version",
            f"bgai {mine} here; the head's is not in Redis (no coordinator this past minute)",
            "start the coordinator on the head (supervisorctl start coordinator)",
        )
    if info.version != mine:
        return Check(
            FAIL,
            "version",
            f"bgai {mine} here, {info.version} on the head ({info.hostname})",
            "install the head's bgai here (ansible-playbook deploy.yml puts one wheel on every host)",
        )
    return Check(OK, "version", f"bgai {mine}, as on the head ({info.hostname})")


def check_clock(r: Redis, cfg: RedisConfig, clock: Clock, warn_s: float, fail_s: float) -> Check:
    """This host's clock against Redis's TIME, read halfway through the round trip."""
    try:
        t0, p0 = clock.now(), time.perf_counter()
        server = server_time(r)
        t1, rtt = clock.now(), time.perf_counter() - p0
    except REFUSED as exc:  # an ACL made before its users could run TIME
        return Check(
            WARN,
            "clock",
            f"Redis refused TIME to {cfg.username or 'the default user'}: {_first(exc)}",
            "make the ACL again (bgai acl, or ansible-playbook deploy.yml): its users may run TIME",
        )
    except Exception as exc:
        return _redis_failed("clock", exc, cfg)
    offset = (t0 + t1) / 2 - server  # > 0: this host is ahead
    side = "ahead of" if offset > 0 else "behind"
    found = f"{abs(offset):.3f} s {side} Redis's clock (+-{rtt / 2 * 1000:.0f} ms)"
    fix = "sync this host's clock (timedatectl set-ntp true, or chrony)"
    if abs(offset) > fail_s:
        return Check(FAIL, "clock", found, fix)
    if abs(offset) > warn_s:
        return Check(WARN, "clock", found, fix)
    return Check(OK, "clock", found)


# ---------------------------------------------------------------------------------------------
# MLflow, Prometheus


def http_get(
    url: str, timeout_s: float, auth: tuple[str, str] | None = None, ca_file: str = ""
) -> tuple[int, bytes]:
    """(HTTP status, the body's first 64 KB); OSError or HTTPException when nothing answered.
    https is verified against `ca_file` (else the system's CAs)."""
    headers = {"Accept": "application/json"}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, headers=headers)
    context = ssl.create_default_context(cafile=ca_file or None) if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as resp:
            return int(resp.status), resp.read(1 << 16)
    except urllib.error.HTTPError as exc:  # it answered, with an error status
        with exc:
            return int(exc.code), exc.read(1 << 16)


def _unreachable(exc: BaseException, timeout_s: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer in {timeout_s:g} s"
    return _first(reason) if isinstance(reason, BaseException) else str(reason)


def check_mlflow(cfg: MlflowConfig, timeout_s: float, env: Mapping[str, str]) -> Check:
    """The tracking server answers, and takes these credentials (it reads the experiment)."""
    uri = cfg.tracking_uri.rstrip("/")
    if not uri:
        return Check(
            WARN,
            "mlflow",
            "no tracking server (mlflow.tracking_uri is empty): runs are not recorded",
            "set mlflow.tracking_uri (BGAI_MLFLOW__TRACKING_URI), e.g. http://HEAD:5000",
        )
    if not uri.startswith(("http://", "https://")):
        return Check(OK, "mlflow", f"{uri}: a local store, not a server (not checked)")
    user = cfg.username or env.get("MLFLOW_TRACKING_USERNAME", "")
    password = cfg.password or env.get("MLFLOW_TRACKING_PASSWORD", "")
    query = urllib.parse.urlencode({"experiment_name": cfg.experiment})
    who = f" as {user}" if user else ""
    try:
        status, body = http_get(
            f"{uri}/api/2.0/mlflow/experiments/get-by-name?{query}",
            timeout_s,
            (user, password) if user else None,
        )
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Check(
            FAIL,
            "mlflow",
            f"{uri} is unreachable: {_unreachable(exc, timeout_s)}",
            "is MLflow's server running on the head? mlflow.tracking_uri",
        )
    if status == 200:
        return Check(OK, "mlflow", f"{uri}{who}: experiment {cfg.experiment} found")
    if status == 404 and b"RESOURCE_DOES_NOT_EXIST" in body:
        return Check(OK, "mlflow", f"{uri}{who}: answers (experiment {cfg.experiment} not made yet)")
    if status in (401, 403):
        return Check(
            FAIL,
            "mlflow",
            f"{uri} refused {user or 'a client without a user'} (HTTP {status})",
            "set mlflow.username and mlflow.password_file (or MLFLOW_TRACKING_USERNAME and _PASSWORD)",
        )
    return Check(
        FAIL,
        "mlflow",
        f"{uri} answered HTTP {status}",
        "is that MLflow's tracking server? mlflow.tracking_uri",
    )


def check_prometheus(url: str, timeout_s: float, ca_file: str = "") -> Check:
    """Prometheus answers /-/healthy. A head that takes remote writes from joined hosts serves
    https (its certificate from the fleet CA, `ca_file`) and wants a login for every request:
    a 401 there still says it is up."""
    url = url.rstrip("/")
    if not url:
        return Check(
            WARN,
            "prometheus",
            "not checked: head.prometheus_url is empty",
            "set head.prometheus_url (BGAI_HEAD__PROMETHEUS_URL), e.g. http://HEAD:9090",
        )
    try:
        status, _ = http_get(f"{url}/-/healthy", timeout_s, ca_file=ca_file)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Check(
            FAIL,
            "prometheus",
            f"{url} is unreachable: {_unreachable(exc, timeout_s)}",
            "is Prometheus running on the head? head.prometheus_url"
            + (" (https: its certificate must chain to redis.ca_file)" if url.startswith("https://") else ""),
        )
    if status == 401 and url.startswith("https://"):
        return Check(OK, "prometheus", f"{url}: answers over TLS (a login is needed to read it)")
    if status != 200:
        return Check(FAIL, "prometheus", f"{url}/-/healthy answered HTTP {status}", "see Prometheus's log")
    return Check(OK, "prometheus", f"{url}: healthy")


# ---------------------------------------------------------------------------------------------
# This host: disk, GPU, JAX


def check_disk(directory: str, min_free_bytes: int) -> Check:
    """Free space, and the right to write, where the trainer keeps its checkpoints."""
    path = Path(directory).expanduser().absolute()
    there = path
    while not there.exists():  # made on the first checkpoint: look at what it will be made in
        there = there.parent
    usage = shutil.disk_usage(there)
    later = "" if there == path else f" (made later, in {there})"
    found = f"{directory}{later}: {_gb(usage.free)} free of {_gb(usage.total)}"
    if not os.access(there, os.W_OK | os.X_OK):
        return Check(
            FAIL,
            "disk",
            f"{found}, not writable by this user",
            "fix its owner or mode, or training.checkpoint_dir",
        )
    if usage.free < min_free_bytes:
        return Check(
            FAIL,
            "disk",
            f"{found}, under the {_gb(min_free_bytes)} wanted",
            "free some space there, or point training.checkpoint_dir at a larger disk",
        )
    return Check(OK, "disk", found)


def check_gpu(expected: str, nvml: Any = None) -> Check:
    """The NVIDIA driver, through NVML (`nvml` replaces the pynvml module in tests)."""
    try:
        nvml = nvml or importlib.import_module("pynvml")
        nvml.nvmlInit()
    except Exception as exc:  # no library, no driver, no GPU
        if expected == "cuda":
            return Check(
                FAIL,
                "gpu",
                f"no NVIDIA driver answers ({_first(exc)})",
                "install the NVIDIA driver: nvidia-smi must list the GPU",
            )
        return Check(
            OK, "gpu", "no NVIDIA GPU or driver" + (f" (jax.accelerator: {expected})" if expected else "")
        )
    try:
        driver = nvml.nvmlSystemGetDriverVersion()
        cuda = int(nvml.nvmlSystemGetCudaDriverVersion())
        names = [
            nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i))
            for i in range(nvml.nvmlDeviceGetCount())
        ]
    finally:
        nvml.nvmlShutdown()
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    driver = driver.decode() if isinstance(driver, bytes) else str(driver)
    cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}"
    found = f"NVIDIA driver {driver} (CUDA {cuda_version}), {len(names)} GPU: {', '.join(names)}"
    if expected == "cuda" and not names:
        return Check(FAIL, "gpu", found, "the driver sees no GPU: nvidia-smi, dmesg")
    if expected == "cuda" and cuda < 12000:
        return Check(FAIL, "gpu", found, "JAX's CUDA 12 wheels need a driver for CUDA 12 or later: update it")
    if names and expected in ("cpu", "metal"):
        return Check(
            WARN,
            "gpu",
            f"{found}, but jax.accelerator is {expected}",
            "to compute on it: bgai_accelerator: cuda in the inventory (jax.accelerator: cuda)",
        )
    return Check(OK, "gpu", found)


# What puts JAX on each accelerator, in bgai's virtualenv (the Ansible bgai role installs it).
JAX_FIXES = {
    "cuda": "pip install 'jax[cuda12]' into bgai's virtualenv, and check the gpu line",
    "rocm": "install JAX's ROCm plugin into bgai's virtualenv",
    "metal": "pip install jax-metal into bgai's virtualenv",
    "cpu": "uninstall the accelerator plugin from bgai's virtualenv, or set jax.accelerator to what it uses",
}
_PROBE = "import json, jax; from bgai.devices import detect; print(json.dumps([*detect(), jax.__version__]))"


def check_jax(expected: str, timeout_s: float, python: str = sys.executable) -> Check:
    """What JAX computes on (`bgai.devices.detect`, in a child process) against
    `jax.accelerator`."""
    try:
        proc = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Check(
            FAIL,
            "jax",
            f"JAX did not start in {timeout_s:g} s",
            "a hung driver? try: python -c 'import jax; print(jax.devices())'",
        )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Check(FAIL, "jax", f"JAX did not start: {last}", JAX_FIXES.get(expected or "cpu", ""))
    device_type, device_name, version = json.loads(proc.stdout.strip().splitlines()[-1])
    found = f"JAX {version} computes on {device_type} ({device_name})"
    if expected and device_type != expected:
        why = [ln for ln in proc.stderr.splitlines() if "backend" in ln or "Falling back" in ln]
        because = f": {why[-1].strip()[:160]}" if why else ""
        return Check(FAIL, "jax", f"{found}, not {expected} (jax.accelerator){because}", JAX_FIXES[expected])
    return Check(OK, "jax", found if expected else f"{found} (jax.accelerator unset: not compared)")
