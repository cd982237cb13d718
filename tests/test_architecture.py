"""The layers point one way: every module's imports, read with ``ast``, go down or sideways.

    tradingsite (core) ← execution ← lifecycle ← risk ← analytics ← operations ← bots ← wiring

A module may import its own app and the layers below it, never one above; and no
import loop may join modules of different apps. Every import counts: module level,
inside functions, under ``TYPE_CHECKING``, relative ones. References that are not
imports — dotted paths in settings, ``"app.Model"`` strings of foreign keys, Celery task
names — are not checked here.

Exempt, because they exist to span the layers (and nothing imports them back):
- the tests (``*/tests/``, ``tests/``, ``conftest.py``) and the test support
  ``tradingsite.testing`` (factories of every app's models, a live server);
- ``bench/`` (benchmarks drive the whole platform).
Migrations are checked like any other module.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module belongs to the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("tradingsite",)),
    ("execution", ("execution",)),
    ("lifecycle", ("lifecycle",)),
    ("risk", ("risk",)),
    ("analytics", ("analytics",)),
    ("operations", ("operations",)),
    # Features on top of the platform: nothing below imports them (templates may use their tags).
    ("bots", ("bots",)),
    # The project's entry points: URL and websocket routing over every app's views.
    ("wiring", ("tradingsite.urls", "tradingsite.asgi", "tradingsite.routing",
                "tradingsite.wsgi")),
]
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}
PACKAGES = ("tradingsite", "execution", "lifecycle", "risk", "analytics", "operations", "bots")
EXEMPT_PREFIXES = ("tradingsite.testing",)


def layer_of(module: str) -> str | None:
    best, length = None, -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = name, len(prefix)
    return best


def app_of(module: str) -> str:
    return module.split(".", 1)[0]


def is_exempt(module: str, path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    return ("tests" in parts or path.name == "conftest.py"
            or any(module == p or module.startswith(p + ".") for p in EXEMPT_PREFIXES))


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, imported project module) for every import in the file, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if candidate in known else base))
    result = []
    for line, name in found:
        # the longest known module the name starts with (an attribute of it otherwise)
        target = name
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target:
            result.append((line, target))
    return sorted(set(result))


def import_graph() -> tuple[dict[str, list[tuple[int, str]]], dict[str, Path]]:
    modules = project_modules()
    known = set(modules)
    return {m: imports_of(m, p, known) for m, p in modules.items()}, modules


def test_every_import_points_down_or_sideways():
    graph, paths = import_graph()
    wrong = []
    for module, imports in graph.items():
        if is_exempt(module, paths[module]):
            continue
        own = RANK[layer_of(module)]
        for line, target in imports:
            if RANK[layer_of(target)] > own:
                wrong.append(f"{paths[module].relative_to(ROOT)}:{line}: {module} "
                             f"({layer_of(module)}) imports {target} ({layer_of(target)})")
    assert wrong == [], "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_loop_joins_two_apps():
    graph, _ = import_graph()
    edges = defaultdict(set)
    for module, imports in graph.items():
        edges[module].update(target for _, target in imports if target != module)
    loops = [sorted(component) for component in _strongly_connected(edges, list(graph))
             if len({app_of(m) for m in component}) > 1]
    assert loops == [], f"import loops across apps: {loops}"


def test_the_check_sees_function_local_and_relative_imports(tmp_path):
    """The parser itself: a nested import and a relative one are both found."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from lifecycle.services import position_open\n"
                      "from .models import Order\n")
    known = {"lifecycle.services", "execution.models", "execution.probe"}
    assert sorted(imports_of("execution.probe", source, known)) == [
        (2, "lifecycle.services"), (3, "execution.models")]


def test_every_project_module_has_a_layer():
    _, paths = import_graph()
    assert [m for m in paths if layer_of(m) is None] == []


def _strongly_connected(edges: dict[str, set[str]], nodes: list[str]) -> list[set[str]]:
    """Tarjan's algorithm, iterative; components of one module without a self-loop are left out."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return components
