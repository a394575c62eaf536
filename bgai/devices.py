"""Which accelerator this process computes on: `cuda`, `metal` or `cpu`, and its name."""

from __future__ import annotations

import platform
from pathlib import Path


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def classify(platform_name: str, device_kind: str, cpu_name: str) -> tuple[str, str]:
    """(device_type, device_name) from a JAX platform name and device kind."""
    plat = platform_name.lower()
    if plat in ("gpu", "cuda"):
        return "cuda", device_kind
    if plat == "rocm":
        return "rocm", device_kind
    if plat == "metal":
        return "metal", device_kind
    return "cpu", cpu_name


def detect() -> tuple[str, str]:
    """(device_type, device_name) of JAX's default device."""
    import jax

    dev = jax.devices()[0]
    return classify(dev.platform, str(dev.device_kind), _cpu_name())
