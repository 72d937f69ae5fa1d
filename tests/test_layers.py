"""The package's layers hold: no module imports a layer above its own, `io` and `stages` do not
import each other, `core` needs neither Kafka nor Bytewax nor Prometheus, and there is no
import circle."""

import ast
from pathlib import Path
from typing import Dict, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clickstream"
# What each layer may import from the package, besides itself.
ALLOWED = {
    "core": set(),
    "runtime": {"core"},
    "io": {"core", "runtime"},
    "stages": {"core", "runtime"},
    "tools": {"core", "runtime", "io"},
}
SHIMS = {"generate", "cluster", "topics"}  # command paths kept for users: clickstream.<name>
OUTSIDE_CORE = ("confluent_kafka", "bytewax", "prometheus_client")


def _modules() -> Dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p
            for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> Set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else parts[-1]


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_module_imports_a_layer_above_its_own(module):
    layer = _layer(module)
    if module == "clickstream.__init__" or layer in SHIMS:
        return
    assert layer in ALLOWED, f"{module} is in no layer"
    for name in _imports(_modules()[module]):
        if name.startswith("clickstream."):
            used = name.split(".")[1]
            assert used == layer or used in ALLOWED[layer], f"{module} imports {name}"
        if layer == "core":
            assert not name.startswith(OUTSIDE_CORE), f"{module} (core) imports {name}"


def test_there_is_no_import_circle():
    modules = _modules()
    graph = {m: {n for n in _imports(p) if n in modules and n != m} for m, p in modules.items()}
    done: Set[str] = set()

    def visit(module, path):
        assert module not in path, "import circle: " + " -> ".join(path + [module])
        if module in done:
            return
        for used in graph[module]:
            visit(used, path + [module])
        done.add(module)

    for module in graph:
        visit(module, [])
