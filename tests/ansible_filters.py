"""The deployment's Ansible filter plugin (ansible/filter_plugins/bgai.py), loaded as a module
for the tests that call its filters directly."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

PLUGIN = Path(__file__).resolve().parents[1] / "ansible" / "filter_plugins" / "bgai.py"


def plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bgai_filters", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def filters() -> dict[str, Any]:
    """Filter name -> function, as Ansible sees them."""
    return dict(plugin().FilterModule().filters())
