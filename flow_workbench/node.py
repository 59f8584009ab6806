"""Nodes: a named action with dependencies, retry policy, timeout and error handling options."""

from __future__ import annotations

import inspect
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import CoroutineType
from typing import Any, Protocol, runtime_checkable

from .data import WorkflowData
from .errors import FlowWorkbenchError, InvalidNodeNameError
from .inputs import bind_by_name


@dataclass(slots=True)
class NodeContext:
    """What an action may want besides the data: which attempt this is and whether to stop early.

    Actions opt in by accepting a second positional parameter: ``def action(data, ctx): ...``.
    """

    workflow_id: str
    node: str
    #: This attempt's number within the current run (1-based); every run starts again at 1, while
    #: the stored history (``NodeHistory.attempts``) counts every attempt ever made.
    attempt: int
    max_attempts: int
    timeout: float | None
    _cancel_event: threading.Event = field(repr=False)

    @property
    def cancelled(self) -> bool:
        """True once the run is cancelled or this attempt timed out; long actions should return early."""
        return self._cancel_event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on cancellation; returns True if cancelled."""
        return self._cancel_event.wait(seconds)

    def raise_if_cancelled(self) -> None:
        if self._cancel_event.is_set():
            raise NodeCancelledError(f"node {self.node!r} attempt {self.attempt} was cancelled")


class NodeCancelledError(FlowWorkbenchError):
    """Raised by ``NodeContext.raise_if_cancelled`` inside an action."""


@runtime_checkable
class Action(Protocol):
    """The design doc's Action interface: an object with ``execute(data)`` or ``execute(data, ctx)``."""

    def execute(self, data: WorkflowData, /, *args: Any) -> Any: ...


class NamedInputsAction(Protocol):
    """An object whose ``execute`` takes node outputs by parameter name (``DAG.add``)."""

    def execute(self, *args: Any, **kwargs: Any) -> Any: ...


ActionLike = Callable[..., Any] | Action | NamedInputsAction


def _wants_context(function: Callable[..., Any]) -> bool:
    """Whether ``function`` takes a second positional argument (the NodeContext)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # builtins without a signature get the data only
        return False
    positional = 0
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


def validate_node_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidNodeNameError(name, f"must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidNodeNameError(name, "must not be empty")
    if "\x00" in name:
        raise InvalidNodeNameError(name, "must not contain NUL")
    return name


@dataclass(eq=False)
class Node:
    """One unit of work in a DAG.

    ``action`` is a callable taking the ``WorkflowData`` (and optionally a ``NodeContext``), or an
    object with such an ``execute`` method, or with ``inputs`` set, one whose parameters are bound
    by name; its return value becomes the node output (None: none), and an ``async def`` action's
    coroutine is run to its end first (cancelled on timeout or ``cancel()``).
    In every run, a failed attempt is retried up to ``retries`` times, after
    ``retry_delay * backoff_factor**(n-1)`` seconds (capped by ``max_retry_delay``, optionally with
    full jitter). ``timeout`` bounds each
    attempt. With ``continue_on_error`` a failure does not stop the run nor skip dependents.
    """

    name: str
    action: ActionLike | None = None
    depends_on: tuple[str, ...] = ()
    retries: int = 0
    retry_delay: float = 0.05
    backoff_factor: float = 2.0
    max_retry_delay: float = 30.0
    jitter: bool = False
    timeout: float | None = None
    continue_on_error: bool = False
    description: str = ""
    #: None: the action takes the data (and a context second). Otherwise its parameters are bound
    #: by name: these receive the outputs of the nodes of their names (added to ``depends_on``),
    #: ``data`` and ``ctx`` the state and the context, any other the run parameter (key-value) of
    #: its name or its default. ``DAG.add`` and ``@DAG.node`` work this out from the signature.
    inputs: tuple[str, ...] | None = None
    #: Replaces the hash of the action's code in the node's code version (``code_versions``):
    #: change it to make the node stale, keep it to keep the node current across edits.
    version: str | None = None
    _call: Callable[[WorkflowData, NodeContext], Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        validate_node_name(self.name)
        if self.inputs is not None:
            self.inputs = tuple(dict.fromkeys(self.inputs))
            self.depends_on = (*self.inputs, *self.depends_on)
        self.depends_on = tuple(dict.fromkeys(self.depends_on))
        for dependency in self.depends_on:
            validate_node_name(dependency)
        if self.version is not None and not isinstance(self.version, str):
            raise TypeError(f"node {self.name!r}: version must be a str, not {type(self.version).__name__}")
        if self.retries < 0:
            raise ValueError(f"node {self.name!r}: retries must be >= 0, got {self.retries}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"node {self.name!r}: timeout must be positive, got {self.timeout}")
        if self.retry_delay < 0 or self.backoff_factor < 1 or self.max_retry_delay < 0:
            raise ValueError(f"node {self.name!r}: retry delays must be >= 0 and backoff_factor >= 1")
        self._call = self._bind(self.action)

    def _bind(self, action: ActionLike | None) -> Callable[[WorkflowData, NodeContext], Any]:
        if action is None:
            return lambda data, ctx: None
        function: Callable[..., Any]
        if callable(action):
            function = action
        elif isinstance(action, Action):
            function = action.execute
        else:
            raise TypeError(
                f"node {self.name!r}: action must be callable or have an execute method, "
                f"not {type(action).__name__}"
            )
        if self.inputs is not None:
            return bind_by_name(function, self.name, self.inputs)
        if _wants_context(function):
            return function
        return lambda data, ctx: function(data)

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def run(self, data: WorkflowData, ctx: NodeContext) -> Any:
        """Run one attempt of the action; a coroutine it returns (``async def``) is run to its end."""
        result = self._call(data, ctx)
        if isinstance(result, CoroutineType):  # inspect.iscoroutine, without a call per node
            from .coroutines import run_coroutine  # asyncio is loaded by the first async action only

            return run_coroutine(result, ctx)
        return result

    def delay_before_retry(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) before the next one."""
        delay = min(self.retry_delay * self.backoff_factor ** (failed_attempt - 1), self.max_retry_delay)
        if self.jitter:
            delay = (rng or random).uniform(0, delay)
        return delay

    def with_dependencies(self, extra: Iterable[str]) -> None:
        self.depends_on = tuple(dict.fromkeys((*self.depends_on, *map(validate_node_name, extra))))
