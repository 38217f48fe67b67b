"""Imports flow one way: workers -> router; router (the library) imports nothing of workers."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_router_imports_nothing_from_workers_or_load_tests() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] in {"workers", "load_tests"}
        )
        for path in (ROOT / "router").rglob("*.py")
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_the_simulator_does_not_depend_on_the_router_it_referees() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] == "router" and m != "router.clock"
        )
        for path in (ROOT / "load_tests" / "amisim").rglob("*.py")
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}
