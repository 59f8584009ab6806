"""DAG: nodes and dependencies, validation, topological levels, upstream/downstream queries."""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .errors import CycleError, DuplicateNodeError, UnknownDependencyError, UnknownNodeError
from .node import ActionLike, Node


class DAG:
    """A directed acyclic graph of nodes; ordering comes from ``graphlib``."""

    def __init__(self, name: str = "dag") -> None:
        self.name = name
        self._nodes: dict[str, Node] = {}
        self._levels: list[list[str]] | None = None
        self._dependents: dict[str, list[str]] | None = None
        self._dependencies: dict[str, list[str]] | None = None
        self._positions: dict[str, int] | None = None
        self._upstream: dict[str, list[str]] = {}

    # --- building ------------------------------------------------------------------------------

    def add_node(
        self,
        node: Node | str,
        action: ActionLike | None = None,
        *,
        depends_on: Sequence[str] | str = (),
        **options: Any,
    ) -> Node:
        """Add a ``Node``, or build one from a name, an action and options (see ``Node``).

        Dependencies may name nodes added later; ``validate`` (run before execution) checks them.
        """
        if isinstance(node, Node):
            if action is not None or depends_on or options:
                raise TypeError("pass either a Node or a name with action/options, not both")
            new = node
        else:
            deps = (depends_on,) if isinstance(depends_on, str) else tuple(depends_on)
            new = Node(node, action, depends_on=deps, **options)
        if new.name in self._nodes:
            raise DuplicateNodeError(new.name)
        self._nodes[new.name] = new
        self._invalidate()
        return new

    def add_dependency(self, upstream: str, downstream: str) -> None:
        """Make ``downstream`` depend on ``upstream``."""
        if downstream not in self._nodes:
            raise UnknownNodeError([downstream])
        if upstream not in self._nodes:
            raise UnknownDependencyError(downstream, upstream)
        self._nodes[downstream].with_dependencies([upstream])
        self._invalidate()

    @classmethod
    def from_structure(cls, structure: Mapping[str, Sequence[str]], name: str = "dag") -> DAG:
        """A DAG of no-op nodes with the given dependencies (e.g. a stored state's structure)."""
        dag = cls(name)
        for node, deps in structure.items():
            dag.add_node(node, depends_on=tuple(deps))
        return dag

    # --- queries -------------------------------------------------------------------------------

    @property
    def nodes(self) -> dict[str, Node]:
        return dict(self._nodes)

    def node(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise UnknownNodeError([name]) from None

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return f"<DAG {self.name!r}: {len(self._nodes)} nodes>"

    def dependencies(self, name: str) -> list[str]:
        """Direct dependencies of ``name``."""
        return list(self.node(name).depends_on)

    def dependents(self, name: str) -> list[str]:
        """Nodes that depend directly on ``name``."""
        self.node(name)
        return list(self._dependents_map().get(name, ()))

    def structure(self) -> dict[str, list[str]]:
        """Node -> dependencies, in insertion order; what a stored state keeps of the DAG."""
        return {name: list(node.depends_on) for name, node in self._nodes.items()}

    def validate(self) -> None:
        """Raise ``UnknownDependencyError`` or ``CycleError`` (with the cycle path) if malformed."""
        self.levels()

    def levels(self) -> list[list[str]]:
        """Nodes grouped so that each level depends only on earlier levels (copies; cached)."""
        if self._levels is None:
            self._levels = self._compute_levels()
        return [list(level) for level in self._levels]

    def topological_order(self) -> list[str]:
        return [name for level in self.levels() for name in level]

    def downstream(self, name: str) -> list[str]:
        """Every node that depends on ``name``, directly or transitively, in topological order."""
        return self._reachable(name, self._dependents_map())

    def upstream(self, name: str) -> list[str]:
        """Every node ``name`` depends on, directly or transitively, in topological order (cached)."""
        cached = self._upstream.get(name)
        if cached is None:
            cached = self._upstream[name] = self._reachable(name, self._dependencies_map())
        return list(cached)

    # --- internals -----------------------------------------------------------------------------

    def _invalidate(self) -> None:
        self._levels = None
        self._dependents = None
        self._dependencies = None
        self._positions = None
        self._upstream = {}

    def _compute_levels(self) -> list[list[str]]:
        return topological_levels(self._dependencies_map())

    def _dependencies_map(self) -> dict[str, list[str]]:
        if self._dependencies is None:
            self._dependencies = self.structure()
        return self._dependencies

    def _dependents_map(self) -> dict[str, list[str]]:
        if self._dependents is None:
            self._dependents = dependents_map(self._dependencies_map())
        return self._dependents

    def _reachable(self, start: str, graph: Mapping[str, Sequence[str]]) -> list[str]:
        """Nodes reached from ``start`` in topological order; sorting only those (by a cached
        position) keeps a query proportional to its answer, not to the DAG (the engine asks once
        per failed node)."""
        self.node(start)
        if self._positions is None:
            self._positions = {name: index for index, name in enumerate(self.topological_order())}
        seen = reachable(graph, [start])
        seen.pop(start, None)
        return sorted(seen, key=self._positions.__getitem__)


def topological_levels(structure: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Nodes grouped so that each level depends only on earlier levels, in the structure's order
    within a level (graphlib orders; no ``Node`` objects are built, so a stored structure of
    64,000 nodes is ordered without constructing a DAG).

    Raises ``UnknownDependencyError`` or ``CycleError`` (with the cycle path).
    """
    for name, dependencies in structure.items():
        for dependency in dependencies:
            if dependency not in structure:
                raise UnknownDependencyError(name, dependency)
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter(structure)
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        # graphlib gives [a, b, ..., a] where each node is a dependency of the next one.
        raise CycleError(list(error.args[1])) from None
    order = {name: index for index, name in enumerate(structure)}
    levels: list[list[str]] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=order.__getitem__)
        levels.append(ready)
        sorter.done(*ready)
    return levels


def dependents_map(structure: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Node -> the nodes depending on it directly: the structure's edges reversed."""
    dependents: dict[str, list[str]] = {}
    for name, dependencies in structure.items():
        for dependency in dependencies:
            dependents.setdefault(dependency, []).append(name)
    return dependents


def reachable(graph: Mapping[str, Sequence[str]], starts: Iterable[str]) -> dict[str, None]:
    """Every node reached from ``starts`` along ``graph``'s edges, in the order first reached.

    One walk for all starts, each node visited once: linear in the edges, however many starts
    (a start is included only if another start reaches it).
    """
    seen: dict[str, None] = {}
    stack = [reached for start in starts for reached in graph.get(start, ())]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen[current] = None
            stack.extend(graph.get(current, ()))
    return seen
