"""A real Prometheus's HTTP API, for the end-to-end checks of targets, series and panels."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any


def has_gpu() -> bool:
    """True where NVML finds an NVIDIA GPU (then the GPU panels must have series too)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return bool(pynvml.nvmlDeviceGetCount())
    except Exception:
        return False


class PromAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query: its series (a malformed expression fails with Prometheus's error)."""
        try:
            data = self.get("query", query=expr)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"Prometheus refused {expr!r}: {e.read().decode()}") from e
        return list(data["result"])

    def ready(self) -> bool:
        try:
            return bool(self.get("status/buildinfo"))
        except OSError:
            return False

    def up_targets(self) -> dict[str, str]:
        """instance -> role of every bgai target scraped successfully."""
        try:
            series = self.query('up{job="bgai"} == 1')
        except OSError:
            return {}
        return {s["metric"]["instance"]: s["metric"].get("role", "") for s in series}

    def active_targets(self) -> set[str]:
        return {t["labels"]["instance"] for t in self.get("targets", state="active")["activeTargets"]}

    def firing(self, alertname: str) -> list[dict[str, str]]:
        """The labels (less alertname and severity) of each firing `alertname` alert."""
        return [
            {k: v for k, v in a["labels"].items() if k not in ("alertname", "severity")}
            for a in self.get("alerts")["alerts"]
            if a["labels"]["alertname"] == alertname and a["state"] == "firing"
        ]
