"""The package's layers: every import inside exporter/ points to the same layer or a lower one,
and no two modules import each other in a ring.

Layers, lowest first (docs/design.md):

0. `exporter` (the version), `vocabulary`, `logs`: words and tools every stage shares
1. `config`: the typed config
2. `upstream`: the Splashify API (query, client, errors, parse)
3. `pipeline`: buckets, snapshots, poller, scheduler, sharding
4. `serve`: the metrics table, collectors, rendering, HTTP
5. `app`, `backfill`, `demo`, `simulator`: wiring, the history command, the simulated API
6. `cli`, `__main__`: the command line
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "exporter"

LAYERS: dict[str, int] = {
    "exporter": 0,
    "exporter.vocabulary": 0,
    "exporter.logs": 0,
    "exporter.config": 1,
    "exporter.upstream": 2,
    "exporter.pipeline": 3,
    "exporter.serve": 4,
    "exporter.app": 5,
    "exporter.backfill": 5,
    "exporter.demo": 5,
    "exporter.simulator": 5,
    "exporter.cli": 6,
    "exporter.__main__": 6,
}


def module_name(path: Path) -> str:
    parts = ("exporter", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of the longest prefix of `module` that LAYERS names."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(module)


def imports(path: Path) -> set[str]:
    """Every exporter module that `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "exporter")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "exporter":
                continue
            found.add(node.module)
            # `from exporter.config import values` imports a module, not a name.
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists():
                    found.add(candidate)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)  # raises KeyError for a module outside the map


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    own = layer_of(module)
    upward = sorted(m for m in imports(MODULES[module]) if layer_of(m) > own)
    assert not upward, f"{module} (layer {own}) imports a later stage: {upward}"


def test_no_import_cycles() -> None:
    graph = {m: {i for i in imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}
    # A package's __init__ re-exporting its modules is not a cycle of the code's flow.
    for module in graph:
        graph[module] = {i for i in graph[module] if not module.startswith(i + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                ring = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(ring))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from exporter.serve.render import TEXT\n")
    assert "exporter.serve.render" in imports(probe)
    assert layer_of("exporter.serve.render") > layer_of("exporter.pipeline.poller")
