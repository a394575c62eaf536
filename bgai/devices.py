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


def detect() -> tuple[str, str]:
    """(device_type, device_name) of JAX's default device."""
    import jax

    dev = jax.devices()[0]
    plat = dev.platform.lower()
    if plat in ("gpu", "cuda", "rocm"):
        return "cuda" if plat != "rocm" else "rocm", str(dev.device_kind)
    if plat == "metal":
        return "metal", str(dev.device_kind)
    return "cpu", _cpu_name()
