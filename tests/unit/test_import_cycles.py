"""No import cycles: a module of engine, api or actors never imports, however indirectly, itself.

The graph is grimp's (function-local and `TYPE_CHECKING` imports count), plus an
edge to every package whose `__init__` an import runs. Run this file as a
script (`python -m tests.unit.test_import_cycles`) to print every cycle among
`engine`, `api` and `actors`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

import grimp

PACKAGES = ("engine", "api", "actors")


def import_graph(packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Each module of the packages, and the modules of the packages that importing it runs."""
    graph = grimp.build_graph(*packages)
    modules = set(graph.modules)
    edges: dict[str, set[str]] = {}
    for module in modules:
        targets = set()
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in modules:
                continue
            targets.add(imported)
            parts = imported.split(".")
            for depth in range(1, len(parts)):
                package = ".".join(parts[:depth])
                # A package that is, or contains, the importer already runs its `__init__`.
                if package in modules and not (module + ".").startswith(package + "."):
                    targets.add(package)
        edges[module] = targets
    return edges


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), or self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(edges.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1 or module in edges.get(module, ()):
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for module in sorted(edges):
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_the_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}

    assert sorted(cycles(edges)) == [["a", "b", "c"], ["e"]]


def test_no_module_of_engine_api_or_actors_is_in_an_import_cycle() -> None:
    assert cycles(import_graph()) == []


if __name__ == "__main__":
    for component in cycles(import_graph()):
        print(" -> ".join(component))
