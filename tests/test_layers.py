"""The import graph of medclf/, read from the source: no cycle between subpackages, nothing upward.

Layer order (docs/architecture.md), bottom first; a module may import its own layer's units and those
below, never above, and the units must not form a cycle:

0. settings: ``medclf.config`` (package), ``medclf.errors``, the root ``medclf`` (``__version__`` only);
   storage: ``medclf.reporting.files`` and ``medclf.reporting.run_lock`` (atomic writers and the run lock,
   which every layer writing a file uses; they import only ``errors``)
1. ``data``, ``model``, ``metrics``
2. ``engine``
3. ``reporting`` (the rest of it)
4. ``workflows``
5. commands: ``medclf/<command>.py``, ``medclf/cli.py``

Every ``import`` counts, at module level or inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "medclf"

LAYERS: dict[str, int] = {
    "settings": 0,
    "storage": 0,
    "data": 1,
    "model": 1,
    "metrics": 1,
    "engine": 2,
    "reporting": 3,
    "workflows": 4,
    "commands": 5,
}
_STORAGE = {"medclf.reporting.files", "medclf.reporting.run_lock"}
_SETTINGS = {"medclf", "medclf.errors"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit(module: str) -> str:
    """The layer unit a medclf module belongs to."""
    if module in _SETTINGS or module == "medclf.config" or module.startswith("medclf.config."):
        return "settings"
    if module in _STORAGE:
        return "storage"
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] in LAYERS:
        return parts[1]
    if len(parts) == 2 and parts[1] in LAYERS:  # a subpackage's __init__
        return parts[1]
    return "commands"


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(source: str, known: set[str]) -> list[tuple[str, int, str]]:
    """(imported medclf module, line, imported name or "") for every import statement in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, "") for a in node.names if a.name.split(".")[0] == "medclf"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "medclf":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub, node.lineno, "") if sub in known else (node.module, node.lineno, alias.name))
    return found


def edges() -> list[tuple[str, str, int, str]]:
    """(importing module, imported module, line, name) over all of medclf/."""
    modules = _modules()
    known = set(modules)
    return [
        (name, target, line, imported)
        for name, path in modules.items()
        for target, line, imported in imports_of(path.read_text(encoding="utf-8"), known)
    ]


def upward(graph: list[tuple[str, str, int, str]]) -> list[str]:
    """Imports against the layer order, and names taken from the root package other than __version__."""
    wrong = []
    for src, dst, line, name in graph:
        if LAYERS[unit(dst)] > LAYERS[unit(src)]:
            wrong.append(f"{src}:{line} ({unit(src)}) imports {dst} ({unit(dst)})")
        if dst == "medclf" and name != "__version__":
            wrong.append(f"{src}:{line} imports {name} from the package root; import it from its module")
    return wrong


def unit_cycles(graph: list[tuple[str, str, int, str]]) -> list[list[str]]:
    """Groups of two or more units that import each other, directly or through others (Tarjan's SCC)."""
    succ: dict[str, set[str]] = {}
    for src, dst, _, _ in graph:
        if unit(src) != unit(dst):
            succ.setdefault(unit(src), set()).add(unit(dst))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in succ.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return groups


def test_every_module_has_a_layer() -> None:
    assert set(map(unit, _modules())) <= set(LAYERS)
    assert unit("medclf.train") == "commands" and unit("medclf.cli") == "commands"
    assert unit("medclf.config.commands") == "settings" and unit("medclf.reporting.files") == "storage"


def test_no_import_against_the_layer_order() -> None:
    assert upward(edges()) == []


def test_no_cycle_between_subpackages() -> None:
    graph = edges()
    cycles = unit_cycles(graph)
    shown = [
        f"{' <-> '.join(c)}: " + ", ".join(f"{s}:{n} -> {d}" for s, d, n, _ in graph if {unit(s), unit(d)} <= set(c))
        for c in cycles
    ]
    assert not cycles, shown


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from medclf.engine.seeding import generator\n", "imports medclf.engine.seeding (engine)"),
        ("def f():\n    import medclf.workflows.train\n", "imports medclf.workflows.train (workflows)"),
        ("from medclf import evaluate\n", "imports evaluate from the package root"),
    ],
)
def test_the_checks_catch_an_upward_import(source: str, expected: str) -> None:
    """A lazy import inside a function counts as much as one at the top of the module."""
    known = set(_modules())
    graph = [("medclf.data.loaders", dst, line, name) for dst, line, name in imports_of(source, known)]
    assert any(expected in w for w in upward(graph)), upward(graph)


def test_the_checks_catch_a_cycle() -> None:
    graph = [
        ("medclf.data.loaders", "medclf.model.networks", 1, ""),
        ("medclf.model.networks", "medclf.metrics.auroc", 1, ""),
        ("medclf.metrics.auroc", "medclf.data.manifest", 1, ""),
        ("medclf.engine.loops", "medclf.data.manifest", 1, ""),
    ]
    assert unit_cycles(graph) == [["data", "metrics", "model"]]
    assert unit_cycles(graph[1:]) == []
