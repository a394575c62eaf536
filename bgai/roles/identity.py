"""Who a role process is, for the registry, the trainer lock and eval slices.

A worker id (`host:role[:n]`) names a slot and is re-used by its restarts; two hosts cloned from
one image may even share it. The `nonce`, random per process, tells those processes apart: the
`owner` token `<worker id>:<nonce>` is what the registry record, the trainer lock and an eval
slice's ownership hold, so no two processes can hold one of them at once.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field

from bgai.store.registry import WorkerInfo


@dataclass(frozen=True)
class Identity:
    worker_id: str
    type: str  # coordinator | game | training | eval
    hostname: str
    device_type: str
    device_name: str
    metrics_port: int = 0  # 0: serves no /metrics
    metrics_host: str = ""  # address to scrape /metrics at (empty: hostname)
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))  # this process's, hex (no ':')
    bgai_version: str = ""  # the code this process runs (bgai's package version)

    @property
    def owner(self) -> str:
        """`<worker id>:<nonce>`: this process, as the registry, the trainer lock and eval slices
        record their holder."""
        return f"{self.worker_id}:{self.nonce}"

    def info(
        self,
        now: float,
        status: str,
        games: int = 0,
        version: int | None = None,
        loaded_at: float | None = None,
        unit_s: float | None = None,
    ) -> WorkerInfo:
        return WorkerInfo(
            worker_id=self.worker_id,
            type=self.type,
            device_type=self.device_type,
            device_name=self.device_name,
            hostname=self.hostname,
            metrics_port=self.metrics_port,
            status=status,
            games_generated=games,
            model_version=version,
            last_heartbeat=now,
            model_loaded_at=loaded_at,
            last_unit_s=unit_s,
            metrics_host=self.metrics_host,
            owner=self.owner,
            bgai_version=self.bgai_version,
        )


def default_worker_id(kind: str) -> str:
    """`host:kind:pid`, unique on a host and readable in `bgai status`."""
    return f"{socket.gethostname()}:{kind}:{os.getpid()}"


def make_identity(
    kind: str,
    worker_id: str | None,
    metrics_port: int = 0,
    detect_device: bool = True,
    metrics_host: str = "",
) -> Identity:
    from bgai.devices import detect
    from bgai.obs.metrics import bgai_version

    device_type, device_name = detect() if detect_device else ("cpu", "")
    return Identity(
        worker_id or default_worker_id(kind),
        kind,
        socket.gethostname(),
        device_type,
        device_name,
        metrics_port,
        metrics_host,
        bgai_version=bgai_version(),
    )
