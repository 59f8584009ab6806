"""Inputs by parameter name: what each parameter of an action receives, and run parameters."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

import orjson

from .data import JSON_OPTIONS, numpy_scalar
from .errors import RunParameterError, UnknownInputError

if TYPE_CHECKING:
    from .dag import DAG
    from .data import WorkflowData
    from .node import NodeContext

#: Parameters that keep their meaning whatever nodes exist: the state and the attempt's context.
RESERVED: Final = frozenset({"data", "ctx"})

_EMPTY: Final = inspect.Parameter.empty
_MISSING: Final = object()


class Source(Enum):
    """Where a parameter's value comes from."""

    DATA = "data"  #: the WorkflowData
    CTX = "ctx"  #: the NodeContext
    INPUT = "input"  #: the output of the node of that name (a dependency)
    RUN_PARAMETER = "run parameter"  #: the key-value of that name (run parameters are stored there)


@dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter of an action and where its value comes from."""

    name: str
    source: Source
    positional: bool  #: positional-only: passed by position, in order
    default: Any  #: ``inspect.Parameter.empty`` when there is none

    @property
    def required(self) -> bool:
        return self.default is _EMPTY


def parameters_of(function: Callable[..., Any], node: str) -> list[inspect.Parameter]:
    """The parameters of ``function`` (the action of ``node``); ``TypeError`` if it has none to read
    or takes ``*args``/``**kwargs`` (names are what bind inputs, so every one must be spelled out)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as error:
        raise TypeError(f"node {node!r}: cannot read the parameters of {function!r}: {error}") from None
    found = list(signature.parameters.values())
    for parameter in found:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            star = "*" if parameter.kind is parameter.VAR_POSITIONAL else "**"
            raise TypeError(
                f"node {node!r}: {describe(function)} takes {star}{parameter.name}; an action whose "
                "inputs are bound by name must name each parameter"
            )
    return found


def describe(function: Callable[..., Any]) -> str:
    """How an action is named in messages: ``function 'load'``."""
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    return f"function {name!r}" if name else repr(function)


def resolve_inputs(
    function: Callable[..., Any],
    node: str,
    known_nodes: Collection[str],
    run_parameters: Collection[str],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(inputs, optional run parameters) of an action added by name, given the nodes added so far.

    A parameter named after a known node is an input (even with a default); ``data`` and ``ctx``
    are the state and the context; any other parameter must be a declared run parameter or have
    a default (an optional run parameter), else ``UnknownInputError`` names it and the known nodes.
    """
    inputs: list[str] = []
    optional: list[str] = []
    for parameter in parameters_of(function, node):
        name = parameter.name
        if name in RESERVED:
            continue
        if name in known_nodes:
            inputs.append(name)
        elif name in run_parameters:
            continue
        elif parameter.default is not _EMPTY:
            optional.append(name)
        else:
            raise UnknownInputError(node, describe(function), name, list(known_nodes), list(run_parameters))
    return tuple(inputs), tuple(optional)


def plan(function: Callable[..., Any], node: str, inputs: Collection[str]) -> list[Parameter]:
    """Where each parameter of ``function`` gets its value, ``inputs`` naming the upstream nodes."""
    planned = []
    for parameter in parameters_of(function, node):
        name = parameter.name
        if name == "data":
            source = Source.DATA
        elif name == "ctx":
            source = Source.CTX
        elif name in inputs:
            source = Source.INPUT
        else:
            source = Source.RUN_PARAMETER
        positional = parameter.kind is parameter.POSITIONAL_ONLY
        planned.append(Parameter(name, source, positional, parameter.default))
    missing = [name for name in inputs if name not in {p.name for p in planned}]
    if missing:
        raise TypeError(f"node {node!r}: {describe(function)} has no parameter named {missing[0]!r}")
    return planned


def bind_by_name(
    function: Callable[..., Any], node: str, inputs: Collection[str]
) -> Callable[[WorkflowData, NodeContext], Any]:
    """A call of ``function`` that passes each parameter by its name (see ``plan``).

    An input receives the upstream node's output as stored (``data.get_output``), or the
    parameter's default when that node has none; a run parameter receives the key-value of its
    name, or its default, else the attempt fails with ``RunParameterError``.
    """
    planned = plan(function, node, inputs)

    def call(data: WorkflowData, ctx: NodeContext) -> Any:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for parameter in planned:
            source = parameter.source
            value: Any
            if source is Source.INPUT:
                value = data.get_output(parameter.name, None if parameter.required else parameter.default)
            elif source is Source.RUN_PARAMETER:
                value = data.get(parameter.name, _MISSING)
                if value is _MISSING:
                    if parameter.required:
                        raise RunParameterError(
                            parameter.name, f"node {node!r} needs it and it was not given", data.id
                        )
                    value = parameter.default
            else:
                value = data if source is Source.DATA else ctx
            if parameter.positional:
                args.append(value)
            else:
                kwargs[parameter.name] = value
        return function(*args, **kwargs)

    return call


def apply_run_parameters(dag: DAG, data: WorkflowData, params: Mapping[str, Any] | None) -> None:
    """Store ``params`` as key-values of ``data`` (replacing earlier values), then check that every
    run parameter ``dag`` declares has a value (given now or stored by an earlier run).

    Raises ``RunParameterError`` (before storing any) if a name is not a str, is ``data`` or
    ``ctx``, or names a node of the DAG, or a value has no JSON form; and (after) if a declared
    run parameter has no value.
    """
    given = dict(params or {})
    for name, value in given.items():
        if not isinstance(name, str):
            raise RunParameterError(repr(name), "run parameter names must be str", data.id)
        if name in RESERVED:
            raise RunParameterError(name, "the name is reserved for the state and the context", data.id)
        if name in dag:
            raise RunParameterError(
                name, "a node has that name; a parameter of that name receives the node's output", data.id
            )
        try:
            raw = orjson.dumps(value, option=JSON_OPTIONS, default=numpy_scalar)
        except TypeError as error:
            raise RunParameterError(name, f"the value cannot be stored: {error}", data.id) from None
        if raw == b"null" and value is not None:  # orjson writes NaN and infinities as null
            raise RunParameterError(name, f"the value cannot be stored: {value} has no JSON form", data.id)
    for name, value in given.items():
        data.set(name, value)
    missing = [name for name in dag.params if name not in data]
    if missing:
        raise RunParameterError(
            missing[0], "the DAG declares it and it was not given (execute(params={...}))", data.id
        )
