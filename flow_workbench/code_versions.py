"""Code versions: a stable hash of each node's action and its inputs' versions, and stale nodes.

A node's **code version** is a hash of its own part and its dependencies' versions (in
``depends_on`` order), so changing a node's code changes the version of everything downstream.
Its own part is the node's ``version=`` when given (a user's promise that replaces the code hash),
else a fingerprint of its action:

- a function (``def``, ``lambda``, ``async def``): its code object — bytecode, constants (nested
  code objects recursively: inner functions, comprehensions), names and local variable names —
  plus its defaults, the values in its closure, and the globals it names that are plain scalars
  (``THRESHOLD = 3``) or functions defined in the same module (followed the same way), so editing
  a notebook helper makes the nodes that call it stale. File names, line numbers and ids are left
  out: the same source gives the same version in every process, wherever it sits in the file.
- a bound method or an object with ``execute`` (``Action``) or ``__call__``: that method's function
  and the class's qualified name; instance attributes are not hashed (give ``version=``).
- a ``functools.partial``: its function and its arguments.
- anything else with no code (builtins, C functions): its source if ``inspect`` finds one, else its
  module and qualified name.

Values that are not plain data (numbers, strings, bytes, None, and tuples/lists/sets/dicts of
those) are hashed by type name only, never by ``repr`` (which may hold an address). Different
Python versions compile different bytecode: an interpreter upgrade reads every node as stale
unless it has ``version=``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import types
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .dag import reachable
from .status import NodeStatus

if TYPE_CHECKING:
    from .dag import DAG
    from .data import WorkflowData
    from .node import Node

__all__ = ["action_fingerprint", "dag_code_versions", "stale_nodes"]

#: Characters of the hex digest kept: 80 bits, short enough to show, ample to tell edits apart.
VERSION_CHARS = 20
_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def action_fingerprint(action: object) -> str:
    """A hex digest of ``action``'s code, stable across processes (see the module docstring)."""
    hasher = hashlib.sha256()
    _Fingerprint(hasher.update).action(action)
    return hasher.hexdigest()[:VERSION_CHARS]


def dag_code_versions(dag: DAG) -> dict[str, str]:
    """Node -> its code version in ``dag`` as it is now (an action shared by many nodes is
    fingerprinted once).

    Every action is fingerprinted again on each call (a helper or a constant it reads may have
    changed since); only the chaining of those fingerprints along the edges, one hash per node,
    is reused from the previous call on the same DAG when every node's own part and dependencies
    are what they were then.
    """
    fingerprints: dict[int, str] = {}
    nodes = dag.nodes
    key = [(name, _own_part(node, fingerprints), node.depends_on) for name, node in nodes.items()]
    cached = _LAST_VERSIONS.get(dag)
    if cached is not None and cached[0] == key:
        return dict(cached[1])
    own = {name: part for name, part, _ in key}
    versions: dict[str, str] = {}
    for name in dag.topological_order():
        parts = [own[name]]
        parts.extend(f"{dependency}={versions[dependency]}" for dependency in nodes[name].depends_on)
        versions[name] = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[
            :VERSION_CHARS
        ]
    _LAST_VERSIONS[dag] = (key, versions)
    return dict(versions)


#: DAG -> (what its versions were computed from, the versions): the last call's result.
_LAST_VERSIONS: weakref.WeakKeyDictionary[
    DAG, tuple[list[tuple[str, str, tuple[str, ...]]], dict[str, str]]
] = weakref.WeakKeyDictionary()


def stale_nodes(dag: DAG, data: WorkflowData, versions: Mapping[str, str] | None = None) -> list[str]:
    """Completed nodes whose stored code version differs from ``dag``'s, and every node downstream
    of them that has a status other than pending, in topological order. A node without a stored
    version (never completed here, reset, or read from a Go or older file) is unknown: not stale
    by itself."""
    current = dag_code_versions(dag) if versions is None else versions
    stored = data.code_versions()
    statuses = data.node_statuses()
    changed = [
        name
        for name, version in stored.items()
        if statuses.get(name) is NodeStatus.COMPLETED and name in current and current[name] != version
    ]
    if not changed:
        return []
    dependents: dict[str, list[str]] = {}
    for node in dag:
        for dependency in node.depends_on:
            dependents.setdefault(dependency, []).append(node.name)
    affected = {*changed, *reachable(dependents, changed)}
    return [
        name
        for name in dag.topological_order()
        if name in affected and statuses.get(name, NodeStatus.PENDING) is not NodeStatus.PENDING
    ]


def _own_part(node: Node, fingerprints: dict[int, str]) -> str:
    if node.version is not None:
        return "version:" + node.version
    key = id(node.action)  # the action is alive (held by the node) for the whole call
    if key not in fingerprints:
        fingerprints[key] = action_fingerprint(node.action)
    return "code:" + fingerprints[key]


class _Fingerprint:
    """Feeds a stable description of code to ``write``; each function is described once."""

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self._write = write
        self._seen: dict[int, None] = {}
        self._keep: list[object] = []  # keeps objects alive so their ids stay unique

    def text(self, *parts: str) -> None:
        for part in parts:
            self._write(part.encode("utf-8", "surrogatepass") + b"\x00")

    def action(self, action: object) -> None:
        if action is None:
            self.text("none")
        elif isinstance(action, types.FunctionType):
            self.function(action)
        elif isinstance(action, types.MethodType):
            self.text("method", type(action.__self__).__qualname__)
            self.action(action.__func__)
        elif isinstance(action, functools.partial):
            self.text("partial")
            self.action(action.func)
            self.value(action.args)
            self.value(action.keywords)
        elif isinstance(method := _method_of(action), types.FunctionType):
            self.text("object", type(action).__qualname__)
            self.function(method)
        else:
            self.opaque(action)

    def function(self, function: types.FunctionType) -> None:
        if id(function) in self._seen:
            self.text("seen", function.__qualname__)  # recursion, or a helper used twice
            return
        self._seen[id(function)] = None
        self._keep.append(function)
        self.text("function")
        self.code(function.__code__)
        self.value(function.__defaults__)
        self.value(function.__kwdefaults__)
        for cell in function.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell (a name assigned later)
                contents = None
            self.member(contents)
        module = function.__module__
        for name in sorted(_global_names(function.__code__)):
            if name in function.__globals__:
                found = function.__globals__[name]
                if isinstance(found, _SCALARS):
                    self.text("global", name)
                    self.value(found)
                elif isinstance(found, types.FunctionType) and found.__module__ == module:
                    self.text("global", name)
                    self.function(found)

    def code(self, code: types.CodeType) -> None:
        self.text("code", *code.co_names, "|", *code.co_varnames, "|", *code.co_freevars)
        self._write(code.co_code)
        self.text(str(code.co_argcount), str(code.co_kwonlyargcount), str(code.co_flags))
        for constant in code.co_consts:
            if isinstance(constant, types.CodeType):
                self.code(constant)
            else:
                self.value(constant)

    def member(self, value: object) -> None:
        """A value a function refers to: functions by their code, anything else as ``value``."""
        if isinstance(value, types.FunctionType):
            self.function(value)
        else:
            self.value(value)

    def value(self, value: object) -> None:
        if isinstance(value, _SCALARS):
            self.text(type(value).__name__, repr(value))
        elif isinstance(value, tuple | list):
            self.text(type(value).__name__, str(len(value)))
            for item in value:
                self.member(item)
        elif isinstance(value, dict):
            self.text("dict", str(len(value)))
            for key in sorted(value, key=repr):
                self.value(key)
                self.member(value[key])
        elif isinstance(value, frozenset | set):
            # Set order follows str hashes, which differ between processes: sort.
            self.text(type(value).__name__, *sorted(map(repr, value)))
        elif isinstance(value, types.CodeType):
            self.code(value)
        else:
            self.text("object", type(value).__module__, type(value).__qualname__)

    def opaque(self, action: object) -> None:
        try:
            source = inspect.getsource(action)  # type: ignore[arg-type]
        except (OSError, TypeError):
            module = getattr(action, "__module__", None) or type(action).__module__
            name = getattr(action, "__qualname__", None) or type(action).__qualname__
            self.text("named", str(module), str(name))
        else:
            self.text("source", source)


def _global_names(code: types.CodeType) -> Iterable[str]:
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names.update(_global_names(constant))
    return names


def _method_of(action: object) -> object:
    """The function behind an ``Action`` object's ``execute`` or a callable object's ``__call__``."""
    if isinstance(action, type):  # a class: calling it builds an object; its name stands for it
        return None
    cls = type(action)
    return cls.__dict__.get("execute") or getattr(cls, "execute", None) or getattr(cls, "__call__", None)  # noqa: B004
