"""The layout's rules, checked on the code: imports point down the layers of
docs/architecture.md, no import circle (imports inside functions count), no module over
400 lines. Read from the source with ``ast``: nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ash_core", "dashboard")
MAX_LINES = 400

#: (module prefix, layer): a module may import from its own layer or below. The longest
#: matching prefix decides; the order is docs/architecture.md's picture, bottom up.
LAYERS = (
    ("ash_core.errors", 0), ("ash_core.lazy", 0), ("ash_core.faults", 0), ("ash_core.params", 0),
    ("ash_core.device", 0), ("ash_core.maths", 0), ("ash_core.bundle", 0),
    ("ash_core.diskcache", 1),
    ("ash_core.features", 2), ("ash_core.models", 2),
    ("ash_core.methods", 3), ("ash_core.setting", 3),
    ("ash_core.engine", 4),
    ("ash_core.cube", 5),
    ("ash_core.policy", 6), ("ash_core.sweep", 6), ("ash_core.samples", 6),
    ("ash_core.layers", 6), ("ash_core.extract", 6),
    ("ash_core.search", 7), ("ash_core.reports", 7),
    ("ash_core.cli", 8), ("ash_core", 8), ("dashboard", 8),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """Every project module ``path`` imports, at any depth of the file (functions too);
    ``from package import module`` names the module itself."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # ash_core.x.Name -> ash_core.x
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def layer_of(module: str) -> int:
    best = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return dict(LAYERS)[best]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert len(graph) > 100
    assert "ash_core.methods._registry" in graph["ash_core.methods.ash"]
    # dashboard/cli.dashboard imports streamlit lazily; the project's own lazy imports count
    assert all(isinstance(v, set) for v in graph.values())


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_the_checker_finds_a_planted_circle():
    graph = {k: set(v) for k, v in import_graph().items()}
    graph["ash_core.maths.shaping"].add("ash_core.methods._registry")
    assert any("ash_core.maths.shaping" in c for c in cycles(graph))


def test_imports_point_down_the_layers():
    upward = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                    if layer_of(b) > layer_of(a))
    assert upward == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_over_400_lines(package):
    long = {str(p.relative_to(REPO)): n for p in sorted((REPO / package).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
