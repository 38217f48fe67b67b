"""Imports flow one way: load_tests (the lab) -> workers -> router, and never in a circle.

``router`` is the library and imports nothing of ours; ``workers`` (the production
processes and CLI) never imports the lab, which plugs its commands in through entry points
(workers/plugins.py); and no module of the three reaches itself again through its imports.
Imports inside functions count, and so do those under ``if TYPE_CHECKING:``: a circle
through type hints is still a circle in the design (name what is needed in a Protocol).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("router", "workers", "load_tests")
# What each top-level package may import of the others.
ALLOWED = {"router": set(), "workers": {"router"}, "load_tests": {"router", "workers"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_names(path: Path, name: str) -> Iterator[str]:
    """Every dotted name an import statement of the module names (``from a import b``: a.b and a)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The project module an imported name lands in (the longest prefix that is one)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {resolve(imported, modules) for imported in imported_names(path, name)}
        graph[name] = {target for target in targets if target is not None and target != name}
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import circle as a path (first module repeated at the end), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start not in done and (cycle := _cycle_from(start, graph, done)):
            return cycle
    return None


def _cycle_from(start: str, graph: Mapping[str, set[str]], done: set[str]) -> list[str] | None:
    path, on_path = [start], {start}
    stack = [iter(sorted(graph[start]))]
    while stack:
        target = next(stack[-1], None)
        if target is None:
            node = path.pop()
            on_path.discard(node)
            done.add(node)
            stack.pop()
            continue
        if target in on_path:
            return [*path[path.index(target) :], target]
        if target not in done:
            path.append(target)
            on_path.add(target)
            stack.append(iter(sorted(graph[target])))
    return None


def test_packages_import_only_what_their_layer_allows() -> None:
    offenders = {}
    for module, targets in import_graph().items():
        own = module.split(".")[0]
        offenders[module] = sorted(t for t in targets if t.split(".")[0] not in ALLOWED[own] | {own})
    assert {module: bad for module, bad in offenders.items() if bad} == {}


def test_no_import_cycles_between_modules() -> None:
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    assert "load_tests.demo" in graph["load_tests.cli"]
    assert "workers.staffing" in graph["workers.cli"]  # imported inside build_parser


def test_the_simulator_does_not_depend_on_the_router_it_referees() -> None:
    offenders = {
        module: sorted(t for t in targets if t.startswith("router") and t != "router.clock")
        for module, targets in import_graph().items()
        if module.startswith("load_tests.amisim")
    }
    assert {module: bad for module, bad in offenders.items() if bad} == {}
