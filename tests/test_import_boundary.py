"""Architecture checks read from the source: the pure core stays pure, and nothing uses pickle.

`bgai/core/` is pure JAX: no Redis, MLflow, Prometheus or click, no other bgai layer above it
(store, roles, obs, cli, config), and no environment reads. Weights and episodes cross machines,
so pickle (code execution on load) is banned everywhere.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "bgai" / "core"

THIRD_PARTY_BANNED = ("redis", "mlflow", "prometheus_client", "click")
CORE_BANNED = (*THIRD_PARTY_BANNED, "bgai.store", "bgai.roles", "bgai.obs", "bgai.cli", "bgai.config")
ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
PICKLE_BANNED = ("pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "jsonpickle")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def imported_names(path: Path, module: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in `path`, relative ones resolved.

    `module` is the file's dotted name (default: from its place in the repo). `from a import b`
    yields both `a` and `a.b` (b may be a submodule). Calls of `__import__` and
    `importlib.import_module` with a constant name count as imports too.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = (module or module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = ".".join(package[: len(package) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            if base:
                yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if base else alias.name
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in {"__import__", "import_module"} and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def matches(name: str, banned: tuple[str, ...]) -> bool:
    return any(name == b or name.startswith(b + ".") for b in banned)


def test_core_exists() -> None:
    assert (CORE / "rules.py").is_file()


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_core_imports_stay_inside_the_boundary(path: Path) -> None:
    bad = [
        f"{path.name}:{line} imports {name}"
        for line, name in imported_names(path)
        if matches(name, CORE_BANNED)
    ]
    assert not bad


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_core_reads_no_environment(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ENV_NAMES:
            bad.append(f"{path.name}:{node.lineno} uses .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            bad += [
                f"{path.name}:{node.lineno} imports os.{a.name}" for a in node.names if a.name in ENV_NAMES
            ]
    assert not bad


def test_importing_core_loads_no_service_client() -> None:
    modules = [module_name(p) for p in core_files()]
    code = (
        f"import {', '.join(modules)}\n"
        "import sys\n"
        f"banned = {THIRD_PARTY_BANNED!r}\n"
        f"layers = {CORE_BANNED[len(THIRD_PARTY_BANNED) :]!r}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in banned\n"
        "             or any(m == b or m.startswith(b + '.') for b in layers))\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def python_files() -> list[Path]:
    return sorted(p for root in ("bgai", "tests") for p in (REPO / root).rglob("*.py"))


def test_no_pickle_anywhere() -> None:
    bad = []
    for path in python_files():
        where = path.relative_to(REPO)
        bad += [
            f"{where}:{line} imports {name}"
            for line, name in imported_names(path)
            if matches(name, PICKLE_BANNED)
        ]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Name | ast.Attribute):
                ident = node.id if isinstance(node, ast.Name) else node.attr
                if ident in PICKLE_BANNED:
                    bad.append(f"{where}:{node.lineno} uses {ident}")
            elif (
                isinstance(node, ast.keyword)
                and node.arg == "allow_pickle"
                and not (isinstance(node.value, ast.Constant) and node.value.value is False)
            ):
                bad.append(f"{where}:{node.value.lineno} passes allow_pickle")
    assert not bad


def test_the_scans_catch_what_they_look_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import " + "pickle\nfrom dill import loads\nimport numpy\n"
        "from .. import config\nfrom ..store import keys\nfrom . import rules\n",
        encoding="utf-8",
    )
    names = [name for _, name in imported_names(sample, module="bgai.core.sample")]
    assert matches(names[0], PICKLE_BANNED) and matches(names[1], PICKLE_BANNED)
    assert not any(matches(n, PICKLE_BANNED) for n in names[3:])
    # relative imports resolve: `from .. import config` inside bgai/core is bgai.config
    assert {"bgai.config", "bgai.store", "bgai.store.keys", "bgai.core.rules"} <= set(names)
    assert matches("bgai.store.keys", CORE_BANNED) and not matches("bgai.core.rules", CORE_BANNED)


STORE = REPO / "bgai" / "store"
KEYS_MODULE = STORE / "keys.py"
REDIS_CLIENTS = ("redis", "fakeredis", "hiredis")
# A key spelled out: any prefix (or none, in an f-string's middle) followed by a schema namespace.
KEY_SPELLING = re.compile(r"(^|[^\w.-])[\w.-]*:(model|run|workers|buffer|metrics|trainer|eval):")


def bgai_files() -> list[Path]:
    return sorted((REPO / "bgai").rglob("*.py"))


@pytest.mark.parametrize("path", bgai_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_only_the_store_imports_redis(path: Path) -> None:
    if STORE in path.parents:
        return
    bad = [
        f"{path.name}:{line} imports {name}"
        for line, name in imported_names(path)
        if matches(name, REDIS_CLIENTS)
    ]
    assert not bad


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (they may describe keys; code may not spell them)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def spelled_keys(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = docstrings(tree)
    return [
        f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skip
        and KEY_SPELLING.search(node.value)
    ]


def test_no_module_but_keys_spells_a_key() -> None:
    scanner = Path(__file__).resolve()
    bad = [hit for path in python_files() if path not in (KEYS_MODULE, scanner) for hit in spelled_keys(path)]
    assert not bad


def test_the_key_scan_catches_a_spelled_key(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text(
        'a = "bgai:model:version"\nb = f"{p}:buffer:episode:{i}"\nc = "x:workers:w"\nd = "ok: fine"\n'
    )
    assert len(spelled_keys_at(sample)) == 3
    assert spelled_keys(KEYS_MODULE) == []  # keys.py builds keys from parts, never whole strings


def spelled_keys_at(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        repr(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and KEY_SPELLING.search(node.value)
    ]


# Layers, lowest first: a module may import its own layer or lower ones, never a higher one
# (function-level imports included: one that hides a circle is still a circle).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("bgai.core", "bgai.errors", "bgai.clock", "bgai.durable", "bgai.opponent_names", "bgai.config_bounds"),
    ("bgai._version",),  # written by setuptools-scm at install and build time
    ("bgai.config_parse", "bgai.config_section", "bgai.config_deploy", "bgai.config"),
    ("bgai.agent", "bgai.devices", "bgai.compile_cache", "bgai.cpu_threads", "bgai.bearoff_file"),
    ("bgai.store", "bgai.obs", "bgai.opponents", "bgai.train"),
    ("bgai.runs", "bgai.roles", "bgai.bench", "bgai.join"),
    ("bgai.cli",),
)


def layer_of(module: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if matches(module, layer):
            return i
    return None


def import_graph() -> dict[str, set[str]]:
    """bgai module -> the bgai modules it imports anywhere in its body (submodules resolved)."""
    modules = {module_name(p): p for p in bgai_files()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {
            target
            for _, target in imported_names(path)
            if target in modules and target != name and not name.startswith(target + ".")
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_bgai_imports_have_no_circle() -> None:
    assert cycles(import_graph()) == []


def test_imports_run_down_the_layers() -> None:
    graph = import_graph()
    unplaced = sorted(m for m in graph if layer_of(m) is None and m != "bgai")
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"
    bad = [
        f"{src} (layer {layer_of(src)}) imports {dst} (layer {layer_of(dst)})"
        for src, targets in sorted(graph.items())
        for dst in sorted(targets)
        if src != "bgai" and dst != "bgai" and (layer_of(dst) or 0) > (layer_of(src) or 0)
    ]
    assert not bad


def test_the_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_command_line_and_reading_redis_load_no_jax() -> None:
    """`bgai --help` and `bgai status` (every 20 s in scripts/fleet-local) answer without loading
    JAX or flax (seconds of CPU each): commands import what computes when they run."""
    code = (
        "import sys, bgai.cli.main, bgai.cli.fleet\n"
        "from bgai.store import evals, registry, runstate, weights, replay, codec\n"
        "print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
