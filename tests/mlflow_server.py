"""A real MLflow tracking server for tests: sqlite backend and an artifact directory, free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bgai.store.server import free_port

MLFLOW = Path(sys.executable).parent / "mlflow"


def healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def server_command(root: Path, port: int) -> list[str]:
    return [
        str(MLFLOW),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def server_env() -> dict[str, str]:
    """The server's environment: MLflow's job runner off (bgai submits no jobs; it forks seven
    huey consumers, each importing mlflow, which on a 2-core machine costs more than the test)."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServer:
    """`mlflow server` in its own process group; `stop()` and `start()` again on the same port
    and store simulate an outage."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root, self.port = root, port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                server_command(self.root, self.port),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=server_env(),
            )
        deadline = time.monotonic() + timeout_s
        while not healthy(self.uri):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"mlflow server did not come up: {(self.root / 'server.log').read_text()[-2000:]}"
                )
            time.sleep(0.3)  # polling interval of a condition wait
        return self.uri

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server, uvicorn and the job runner
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.proc = None


@contextmanager
def mlflow_server(root: Path, port: int | None = None) -> Iterator[MlflowServer]:
    server = MlflowServer(root, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
