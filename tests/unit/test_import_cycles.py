"""No module of engine or api imports itself back, even through type-only or deferred imports.

grimp sees every import statement, those under `if TYPE_CHECKING:` and inside
functions too: a cycle hidden there still ties the modules together. actors is
built into the graph as well but not yet held to this (its cycles are being
untied apart); add it to `ACYCLIC` once it is clean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grimp
import pytest

PACKAGES = ("engine", "api", "actors")
ACYCLIC = ("engine", "api")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)  # a stale cache would hide a new cycle


def imports_within(graph: grimp.ImportGraph, package: str) -> dict[str, set[str]]:
    """Each module of `package` and the modules of `package` it imports directly."""
    modules = {m for m in graph.modules if m == package or m.startswith(package + ".")}
    return {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}


def cycles(imports: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (`a -> b -> ... -> a`) for each group of modules that import one another."""
    found: list[list[str]] = []
    for group in _strongly_connected(imports):
        if len(group) > 1 or any(m in imports[m] for m in group):
            found.append(_cycle_through(min(group), group, imports))
    return found


def _strongly_connected(imports: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative: the graph's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in sorted(imports):
        if root in index:
            continue
        work = [(root, iter(sorted(imports[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
            elif target not in index:
                index[target] = low[target] = len(index)
                stack.append(target)
                on_stack.add(target)
                work.append((target, iter(sorted(imports[target]))))
            elif target in on_stack:
                low[node] = min(low[node], index[target])
    return groups


def _cycle_through(start: str, group: set[str], imports: Mapping[str, Iterable[str]]) -> list[str]:
    """A shortest path from `start` back to itself inside its group (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(imports[node]):
                if target not in group or target in previous:
                    continue
                previous[target] = node
                if target == start:
                    path = [start]
                    while path[-1] != start or len(path) == 1:
                        path.append(previous[path[-1]])
                    return path[::-1]
                following.append(target)
        frontier = following
    raise AssertionError(f"{start} is in no cycle")


def test_the_cycle_finder_finds_a_cycle_and_only_that() -> None:
    imports = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}

    assert sorted(cycles(imports)) == [["a", "b", "c", "a"], ["e", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", ACYCLIC)
def test_no_module_of_the_package_imports_itself_back(
    graph: grimp.ImportGraph, package: str
) -> None:
    found = cycles(imports_within(graph, package))

    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)
