"""A DAG structure with its nodes numbered, so that recovery walks 64,000 nodes on integers."""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping, Sequence

from ._gc_pause import cyclic_gc_paused
from .errors import CycleError, UnknownDependencyError


class NumberedGraph:
    """A structure (node -> dependencies) with every node numbered in listed order.

    Each name is looked up once, when the graph is built; walks then index lists by number.
    Keyed by names, the same walks grew faster than the nodes once 64,000 names no longer fit
    the CPU caches (each edge's far end is its own string object, hashed and compared anew).

    Raises ``UnknownDependencyError`` for a dependency the structure does not list (a stored
    structure comes from a file); ``levels`` (and everything ordered by it) raises
    ``CycleError`` with the cycle's names.
    """

    __slots__ = ("_dependents", "_order", "dependencies", "names", "numbers")

    def __init__(self, structure: Mapping[str, Sequence[str]]) -> None:
        self.names: list[str] = list(structure)
        self.numbers: dict[str, int] = {name: number for number, name in enumerate(self.names)}
        numbers = self.numbers
        try:
            with cyclic_gc_paused():  # one list per node, no cycles: see _gc_pause
                self.dependencies: list[list[int]] = [
                    [numbers[dep] for dep in deps] for deps in structure.values()
                ]
        except KeyError:
            _raise_unknown_dependency(structure, numbers)
            raise
        self._dependents: list[list[int]] | None = None
        self._order: list[int] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def numbered(self, names: Iterable[str]) -> list[int]:
        """The numbers of those ``names`` the graph has (others are left out)."""
        numbers = self.numbers
        return [number for number in map(numbers.get, names) if number is not None]

    def named(self, numbers: Iterable[int]) -> list[str]:
        names = self.names
        return [names[number] for number in numbers]

    def dependents(self) -> list[list[int]]:
        """Number -> the numbers of the nodes depending on it directly (built once)."""
        if self._dependents is None:
            with cyclic_gc_paused():  # one list per node, no cycles: see _gc_pause
                dependents: list[list[int]] = [[] for _ in self.names]
                for node, deps in enumerate(self.dependencies):
                    for dep in deps:
                        dependents[dep].append(node)
            self._dependents = dependents
        return self._dependents

    def downstream(self, starts: Iterable[int]) -> list[int]:
        """Every node depending on one of ``starts``, directly or transitively, in the order first
        reached; one walk for all starts (a start is included only if another start reaches it)."""
        dependents = self.dependents()
        seen = bytearray(len(self.names))
        reached: list[int] = []
        stack = [node for start in starts for node in dependents[start]]
        while stack:
            current = stack.pop()
            if not seen[current]:
                seen[current] = 1
                reached.append(current)
                stack.extend(dependents[current])
        return reached

    def levels(self) -> list[list[int]]:
        """Nodes grouped so that each level depends only on earlier levels, as listed within a
        level (what ``dag.topological_levels`` names). Raises ``CycleError``."""
        with cyclic_gc_paused():  # lists of numbers: see _gc_pause
            levels = self._levels_in_listed_order()
            return self._levels_by_graphlib() if levels is None else levels

    def order(self) -> list[int]:
        """Every node in topological order: by level, then as listed (computed once)."""
        if self._order is None:
            self._order = [node for level in self.levels() for node in level]
        return self._order

    def ordered(self, numbers: Iterable[int]) -> list[str]:
        """The names of ``numbers``, without repeats, in topological order."""
        wanted = bytearray(len(self.names))
        for number in numbers:
            wanted[number] = 1
        names = self.names
        return [names[node] for node in self.order() if wanted[node]]

    def sort(self, names: Iterable[str]) -> list[str]:
        """``names`` without repeats in topological order; names the graph lacks go last, as given."""
        numbers = self.numbers
        known: list[int] = []
        missing: dict[str, None] = {}
        for name in names:
            number = numbers.get(name)
            if number is None:
                missing[name] = None
            else:
                known.append(number)
        return self.ordered(known) + list(missing)

    def _levels_in_listed_order(self) -> list[list[int]] | None:
        """One pass when every node is listed after its dependencies (what adding nodes after their
        inputs gives): a node's level is one more than its deepest dependency's. None when a node
        depends on one listed later (which any cycle does), for graphlib to order it."""
        depth = [0] * len(self.names)
        levels: list[list[int]] = []
        for node, deps in enumerate(self.dependencies):
            level = 0
            for dep in deps:
                if dep >= node:
                    return None
                if depth[dep] >= level:
                    level = depth[dep] + 1
            depth[node] = level
            if level == len(levels):
                levels.append([node])
            else:
                levels[level].append(node)
        return levels

    def _levels_by_graphlib(self) -> list[list[int]]:
        graph = dict(enumerate(self.dependencies))
        sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter(graph)
        try:
            sorter.prepare()
        except graphlib.CycleError as error:
            # graphlib gives [a, b, ..., a] where each node is a dependency of the next one.
            raise CycleError(self.named(error.args[1])) from None
        levels: list[list[int]] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())  # numbers are listed order
            levels.append(ready)
            sorter.done(*ready)
        return levels


def _raise_unknown_dependency(structure: Mapping[str, Sequence[str]], numbers: Mapping[str, int]) -> None:
    for name, deps in structure.items():
        for dep in deps:
            if dep not in numbers:
                raise UnknownDependencyError(name, dep)
