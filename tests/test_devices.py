"""Device detection: the type reported in the registry."""

from __future__ import annotations

from bgai.devices import classify, detect


def test_classify() -> None:
    assert classify("gpu", "NVIDIA H200", "x") == ("cuda", "NVIDIA H200")
    assert classify("cuda", "NVIDIA A100", "x") == ("cuda", "NVIDIA A100")
    assert classify("METAL", "Apple M2", "x") == ("metal", "Apple M2")
    assert classify("cpu", "cpu", "Intel Xeon") == ("cpu", "Intel Xeon")


def test_detect_here() -> None:
    kind, name = detect()
    assert kind in ("cpu", "cuda", "metal") and name
