"""DAG: nodes and dependencies, validation, topological levels, upstream/downstream queries."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload

from .errors import (
    DuplicateNodeError,
    InputNameConflictError,
    UnknownDependencyError,
    UnknownNodeError,
)
from .inputs import RESERVED, resolve_inputs
from .node import ActionLike, Node
from .numbered_graph import NumberedGraph

F = TypeVar("F", bound=Callable[..., Any])


class DAG:
    """A directed acyclic graph of nodes; ordering comes from ``graphlib``.

    ``params`` declares the run parameters the workflow needs (``Workflow.execute(params=...)``):
    actions added by name may take them as parameters, and ``execute`` refuses to start without them.
    """

    def __init__(self, name: str = "dag", *, params: Iterable[str] = ()) -> None:
        self.name = name
        self._params: tuple[str, ...] = tuple(dict.fromkeys(params))
        for param in self._params:
            if not isinstance(param, str) or not param.isidentifier() or param in RESERVED:
                raise ValueError(
                    f"run parameter names must be Python identifiers other than 'data' and 'ctx', "
                    f"not {param!r}"
                )
        #: optional parameter name (not a node when added) -> the first node taking it
        self._optional: dict[str, str] = {}
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
        if new.name in self._params:
            raise InputNameConflictError(new.name, "the DAG declares a run parameter of that name")
        if new.name in self._optional:
            raise InputNameConflictError(
                new.name,
                f"node {self._optional[new.name]!r}, added before, takes an optional parameter of that "
                "name, which would not receive this node's output; add this node first",
            )
        self._nodes[new.name] = new
        self._invalidate()
        return new

    def add(
        self,
        action: ActionLike,
        /,
        *,
        name: str | None = None,
        depends_on: Sequence[str] | str = (),
        **options: Any,
    ) -> Node:
        """Add ``action`` as a node whose inputs are bound by parameter name (Hamilton style).

        The node is named after the function unless ``name`` is given. A parameter named after a
        node added before receives that node's output (``data.get_output``) and makes it a
        dependency, also when it has a default (used when that node stored no output); ``data``
        and ``ctx`` receive the ``WorkflowData`` and the ``NodeContext``; any other parameter is a
        run parameter: declared in ``DAG(params=...)``, or optional with a default. Anything else
        raises ``UnknownInputError`` naming the parameter and the known nodes, so nodes are added
        after their inputs. ``depends_on`` adds order-only dependencies; ``options`` are ``Node``'s.
        ``async def`` functions are awaited (see ``Node``).

        Adding a function of the same module and qualified name as the node's action again (a
        notebook cell run a second time) replaces that node in place instead of raising
        ``DuplicateNodeError``; the new code makes the node stale (``Workflow.stale_nodes``).
        """
        function = action if callable(action) else getattr(action, "execute", None)
        if name is None:
            name = getattr(action, "__name__", None)  # an object's ``execute`` names nothing
            if not isinstance(name, str) or name == "<lambda>":
                raise TypeError(f"name the node of {action!r}: DAG.add(action, name='...')")
        if not callable(function):
            raise TypeError(
                f"node {name!r}: action must be callable or have an execute method, "
                f"not {type(action).__name__}"
            )
        if name in RESERVED:
            raise InputNameConflictError(
                name,
                f"a parameter named {name!r} receives the {'state' if name == 'data' else 'context'}, "
                "so no action could receive this node's output; choose another name",
            )
        deps = (depends_on,) if isinstance(depends_on, str) else tuple(depends_on)
        existing = self._nodes.get(name)
        if existing is not None and _same_definition(existing.action, action):
            return self._redefine(name, action, function, deps, options)
        inputs, optional = resolve_inputs(function, name, self._nodes, self._params)
        node = self.add_node(name, action, depends_on=deps, inputs=inputs, **options)
        for parameter in optional:
            self._optional.setdefault(parameter, name)
        return node

    def _redefine(
        self,
        name: str,
        action: ActionLike,
        function: Callable[..., Any],
        deps: tuple[str, ...],
        options: dict[str, Any],
    ) -> Node:
        """Replace node ``name`` by a new definition of the same function (a notebook cell run
        again): it keeps its place, so its inputs are the nodes added before it, and nodes
        taking its output keep their edge. Its code version changes, so runs see it as stale."""
        earlier = list(itertools.takewhile(lambda other: other != name, self._nodes))
        inputs, optional = resolve_inputs(function, name, earlier, self._params)
        node = Node(name, action, depends_on=deps, inputs=inputs, **options)
        self._nodes[name] = node  # an existing key keeps its position in the dict
        self._optional = {param: owner for param, owner in self._optional.items() if owner != name}
        for parameter in optional:
            self._optional.setdefault(parameter, name)
        self._invalidate()
        return node

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

    @property
    def params(self) -> tuple[str, ...]:
        """The run parameters the DAG declares (``DAG(params=...)``)."""
        return self._params

    @overload
    def node(self, name: str, /) -> Node: ...

    @overload
    def node(self, function: F, /) -> F: ...

    @overload
    def node(
        self, /, *, name: str | None = None, depends_on: Sequence[str] | str = (), **options: Any
    ) -> Callable[[F], F]: ...

    def node(self, target: str | F | None = None, /, **options: Any) -> Node | F | Callable[[F], F]:
        """``dag.node("name")``: the node of that name. As a decorator, ``@dag.node`` or
        ``@dag.node(name=..., retries=2, ...)``: add the function with ``add`` and return it as it is
        (it stays a plain function, callable in tests)."""
        if isinstance(target, str):
            if options:
                raise TypeError("dag.node(name) looks a node up; to name a node, use @dag.node(name=...)")
            try:
                return self._nodes[target]
            except KeyError:
                raise UnknownNodeError([target]) from None
        if target is None:

            def decorate(function: F) -> F:
                self.add(function, **options)
                return function

            return decorate
        if options:
            raise TypeError("pass options as @dag.node(**options), without the function")
        self.add(target)
        return target

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return f"<DAG {self.name!r}: {len(self._nodes)} nodes>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> Any:
        """Jupyter shows a DAG as its picture (every node pending), before any run."""
        try:
            # Loaded on first display only: `import flow_workbench` stays free of notebook packages.
            from .notebook import DAGView
        except ImportError as error:  # the notebook extra is not installed
            return {"text/plain": f"{self!r}\ncannot draw: {error}"}
        return DAGView(self)._repr_mimebundle_(include, exclude, **kwargs)

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
    within a level (no ``Node`` objects are built, so a stored structure of 64,000 nodes is
    ordered without constructing a DAG; graphlib orders a structure not listed in dependency order).

    Raises ``UnknownDependencyError`` or ``CycleError`` (with the cycle path).
    """
    graph = NumberedGraph(structure)
    return [graph.named(level) for level in graph.levels()]


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


def _same_definition(old: object, new: object) -> bool:
    """Whether ``new`` is a definition of the same named function as ``old`` (same module and
    qualified name): what running a notebook cell again, or re-importing a module, produces."""
    name = getattr(new, "__qualname__", None)
    return (
        callable(old)
        and callable(new)
        and isinstance(name, str)
        and name != "<lambda>"
        and getattr(old, "__qualname__", None) == name
        and getattr(old, "__module__", None) == getattr(new, "__module__", None)
    )
