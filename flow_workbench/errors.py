"""One hierarchy of errors; each subclasses the nearest builtin and carries its data as attributes."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stores.leases import LeaseHolder


class FlowWorkbenchError(Exception):
    """Base of every error raised by flow_workbench."""


# --- DAG structure -----------------------------------------------------------------------------


class DAGError(FlowWorkbenchError, ValueError):
    """The DAG is malformed."""


class CycleError(DAGError):
    """The dependencies form a cycle.

    ``cycle`` lists it in flow order (each node is a dependency of the next), first node repeated last.
    The message quotes each name with ``repr`` (escapes included), so a name read from a file
    cannot end the message early or forge its text.
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        path = " -> ".join(map(repr, self.cycle))
        super().__init__(f"dependency cycle (each node must run before the next): {path}")


class UnknownDependencyError(DAGError):
    """A node depends on a node that is not in the DAG."""

    def __init__(self, node: str, dependency: str) -> None:
        self.node = node
        self.dependency = dependency
        super().__init__(f"node {node!r} depends on {dependency!r}, which is not in the DAG")


class DuplicateNodeError(DAGError):
    """Two nodes share a name."""

    def __init__(self, node: str) -> None:
        self.node = node
        super().__init__(f"a node named {node!r} is already in the DAG")


class InvalidNodeNameError(DAGError):
    """A node name is empty, not a string, or contains a character that cannot be stored."""

    def __init__(self, name: object, reason: str) -> None:
        self.name = name
        super().__init__(f"invalid node name {name!r}: {reason}")


class UnknownInputError(DAGError):
    """A parameter of an action added by name (``DAG.add``) names no node added before it, is no
    declared run parameter and has no default."""

    def __init__(
        self,
        node: str,
        function: str,
        parameter: str,
        known_nodes: Sequence[str],
        run_parameters: Sequence[str] = (),
    ) -> None:
        self.node = node
        self.function = function
        self.parameter = parameter
        self.known_nodes = list(known_nodes)
        self.run_parameters = list(run_parameters)
        known = ", ".join(map(repr, self.known_nodes)) or "none"
        message = (
            f"parameter {parameter!r} of {function} (node {node!r}) names no node added before it; "
            f"known nodes: {known}"
        )
        if self.run_parameters:
            message += f"; run parameters: {', '.join(map(repr, self.run_parameters))}"
        message += (
            ". Add that node first, give the parameter a default, or declare a run parameter "
            f"with DAG(params=[{parameter!r}])"
        )
        super().__init__(message)


class InputNameConflictError(DAGError):
    """A name would mean both a node and a run parameter (declared, or an optional parameter of a
    node added before); ``reason`` says which."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"cannot add node {name!r}: {reason}")


class RunParameterError(FlowWorkbenchError, ValueError):
    """A run parameter (``Workflow.execute(params=...)``) is malformed, or one a node needs is missing."""

    def __init__(self, parameter: str, reason: str, workflow_id: str | None = None) -> None:
        self.parameter = parameter
        self.reason = reason
        self.workflow_id = workflow_id
        where = f" of workflow {workflow_id!r}" if workflow_id else ""
        super().__init__(f"run parameter {parameter!r}{where}: {reason}")


class UnknownNodeError(FlowWorkbenchError, LookupError):
    """One or more node names are not part of the workflow."""

    def __init__(
        self,
        nodes: Sequence[str],
        workflow_id: str | None = None,
        *,
        close_matches: Mapping[str, str] | None = None,
    ) -> None:
        self.nodes = list(nodes)
        self.workflow_id = workflow_id
        #: unknown name -> the known node name closest to it (only names that have one)
        self.close_matches = dict(close_matches or {})
        where = f" in workflow {workflow_id!r}" if workflow_id else ""
        names = ", ".join(
            f"{name!r} (did you mean {self.close_matches[name]!r}?)"
            if name in self.close_matches
            else repr(name)
            for name in self.nodes
        )
        super().__init__(f"unknown node(s){where}: {names}")

    @classmethod
    def naming(
        cls, nodes: Sequence[str], known: Iterable[str], workflow_id: str | None = None
    ) -> UnknownNodeError:
        """The error for ``nodes``, each with the closest of the ``known`` names if one is close."""
        candidates = list(known)
        matches = {}
        for name in nodes:
            close = difflib.get_close_matches(name, candidates, n=1)
            if close:
                matches[name] = close[0]
        return cls(nodes, workflow_id, close_matches=matches)

    def __str__(self) -> str:  # LookupError would repr() the message otherwise
        return str(self.args[0])


class StateMismatchError(FlowWorkbenchError, ValueError):
    """A stored state names nodes the DAG being executed does not have."""

    def __init__(self, workflow_id: str, unknown_nodes: Sequence[str]) -> None:
        self.workflow_id = workflow_id
        self.unknown_nodes = list(unknown_nodes)
        super().__init__(
            f"stored state of workflow {workflow_id!r} has node(s) the DAG does not define: "
            f"{', '.join(map(repr, self.unknown_nodes))}; refusing to run a different DAG over it"
        )


class UnknownStatusError(FlowWorkbenchError, ValueError):
    """A stored state holds status texts no library knows (kept from a Go JSON file).

    The engine does not guess what such a node means, so it refuses to run until the nodes are
    reset or marked. ``statuses``: node -> the status text as stored.
    """

    def __init__(self, workflow_id: str, statuses: Mapping[str, str]) -> None:
        self.workflow_id = workflow_id
        self.statuses = dict(statuses)
        shown = ", ".join(f"{node!r} = {text!r}" for node, text in list(self.statuses.items())[:5])
        more = f" and {len(self.statuses) - 5} more" if len(self.statuses) > 5 else ""
        super().__init__(
            f"stored state of workflow {workflow_id!r} has node(s) with unknown statuses: {shown}{more}; "
            "refusing to run it: reset or mark these nodes first (the state is left unchanged)"
        )


# --- execution ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeFailure:
    """Why one node failed: the exception type and message of its last attempt."""

    node: str
    error_type: str
    message: str
    attempts: int

    def __str__(self) -> str:
        return f"{self.node}: {self.error_type}: {self.message} (after {self.attempts} attempt(s))"


class WorkflowExecutionError(FlowWorkbenchError):
    """One or more nodes failed; ``failures`` maps each failed node to its cause."""

    def __init__(
        self,
        workflow_id: str,
        failures: Mapping[str, NodeFailure],
        save_error: BaseException | None = None,
    ) -> None:
        self.workflow_id = workflow_id
        self.failures = dict(failures)
        self.save_error = save_error
        lines = [f"workflow {workflow_id!r} failed: {len(self.failures)} node(s) failed"]
        lines += [f"  {failure}" for failure in self.failures.values()]
        if save_error is not None:
            lines.append(f"  and saving the failed state also failed: {save_error}")
        super().__init__("\n".join(lines))

    @property
    def failed_nodes(self) -> list[str]:
        return list(self.failures)


class WorkflowCancelledError(FlowWorkbenchError):
    """The run was cancelled; unreached nodes were left pending and the state was saved."""

    def __init__(self, workflow_id: str, pending: Sequence[str], save_error: BaseException | None = None):
        self.workflow_id = workflow_id
        self.pending = list(pending)
        self.save_error = save_error
        message = f"workflow {workflow_id!r} was cancelled; {len(self.pending)} node(s) left pending"
        if save_error is not None:
            message += f"; saving the state also failed: {save_error}"
        super().__init__(message)


# --- stores ------------------------------------------------------------------------------------


class StoreError(FlowWorkbenchError):
    """Base of every error raised by a ``WorkflowStore``."""


class WorkflowNotFoundError(StoreError, LookupError):
    """No stored state has this workflow id."""

    def __init__(self, workflow_id: str, where: str | None = None) -> None:
        self.workflow_id = workflow_id
        self.where = where
        suffix = f" in {where}" if where else ""
        super().__init__(f"workflow {workflow_id!r} not found{suffix}")

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidWorkflowIdError(StoreError, ValueError):
    """A workflow id is empty, a path, or uses characters outside the allow-list."""

    def __init__(self, workflow_id: object, reason: str) -> None:
        self.workflow_id = workflow_id
        self.reason = reason
        super().__init__(f"invalid workflow id {workflow_id!r}: {reason}")


class CorruptStateError(StoreError, ValueError):
    """A stored state cannot be decoded; ``source`` names the file or key, ``reason`` says why."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"corrupt workflow state {source}: {reason}")


class StoreIOError(StoreError, OSError):
    """The storage medium failed (permission, disk full, I/O error); the previous state is intact."""

    def __init__(self, operation: str, target: str, cause: BaseException) -> None:
        self.operation = operation
        self.target = target
        self.cause = cause
        errno = getattr(cause, "errno", None)
        super().__init__(errno, f"{operation} {target} failed: {cause}")

    def __str__(self) -> str:
        return str(self.args[1])


class VersionConflictError(StoreError):
    """The state was changed by someone else since it was loaded (compare-and-set failed)."""

    def __init__(self, workflow_id: str, expected: int, actual: int) -> None:
        self.workflow_id = workflow_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"version conflict on workflow {workflow_id!r}: this copy is version {expected}, "
            f"the store holds version {actual}; load it again and retry"
        )


class ConcurrentEditError(VersionConflictError):
    """A running execution could not save: someone saved the workflow while it was executing it.

    Raised by ``Workflow.execute`` in place of the store's ``VersionConflictError`` (``cause``).
    The other write came through a way that does not take the execution lease: a plain
    ``store.save``, an edit through a store object whose leases guard nothing, or a writer of
    another program. The run stopped without writing over it; its own state, with every node
    it finished, is kept in memory as ``Workflow.data``.
    """

    def __init__(self, conflict: VersionConflictError) -> None:
        super().__init__(conflict.workflow_id, conflict.expected, conflict.actual)
        self.cause = conflict
        self.args = (
            f"workflow {conflict.workflow_id!r} was changed by another writer while this run was "
            f"executing it (the run's copy is version {conflict.expected}, the store holds version "
            f"{conflict.actual}): a plain store.save, or an edit through a store object that does not "
            "take the execution lease. The run stopped without writing over that change; its state, "
            "with every node it finished, is kept as Workflow.data. Execute again to redo what the "
            "stored state lacks, or save Workflow.data over it (set its version to the stored one)",
        )


class SerializationError(StoreError, TypeError):
    """A value cannot be stored (not JSON-representable); ``field`` names where it sits."""

    def __init__(self, workflow_id: str, field: str, cause: BaseException) -> None:
        self.workflow_id = workflow_id
        self.field = field
        self.cause = cause
        super().__init__(f"cannot store {field} of workflow {workflow_id!r}: {cause}")


class StoreUnavailableError(StoreError, ConnectionError):
    """The storage server cannot be reached."""


class WorkflowLockedError(StoreError):
    """Another run or edit holds the execution lease of this workflow.

    ``holder`` (a ``LeaseHolder``: host, pid, since, purpose) names it when the store knows it;
    ``where`` names the lease (its file or key) and ``hint`` says how to wait instead.
    """

    def __init__(
        self,
        workflow_id: str,
        holder: LeaseHolder | None = None,
        *,
        where: str = "",
        hint: str = "wait for it to finish, or pass lease_wait=SECONDS to wait for the lease",
    ) -> None:
        self.workflow_id = workflow_id
        self.holder = holder
        self.where = where
        doing = holder.describe() if holder is not None else "being executed or edited elsewhere"
        #: The message without the hint, for callers that offer another way to wait (the CLI).
        self.situation = f"workflow {workflow_id!r} is {doing}{f' ({where})' if where else ''}"
        super().__init__(f"{self.situation}; {hint}")


# --- pictures ----------------------------------------------------------------------------------


class GraphvizError(FlowWorkbenchError, RuntimeError):
    """Graphviz ``dot`` failed to draw a picture; ``returncode`` and ``stderr`` say how."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(message)


class GraphvizNotFoundError(GraphvizError):
    """The Graphviz ``dot`` executable is not installed (or not on ``PATH``)."""

    def __init__(self, executable: str = "dot") -> None:
        self.executable = executable
        super().__init__(
            f"Graphviz {executable!r} executable not found on PATH; install Graphviz to draw workflows: "
            "`apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS), "
            "or run `./dev setup` from the repository root"
        )


# --- execution-lease fencing (appended here to keep merges of this shared file simple) ----------


class LeaseLostError(StoreError):
    """A write of an executor whose execution lease lapsed was refused (lease fencing).

    ``lease`` names the lease (e.g. the Redis key) and ``holder`` its current holder, or None
    when nobody holds it now. Nothing was written: the state is the new holder's, or unchanged.
    """

    def __init__(self, workflow_id: str, lease: str, holder: str | None) -> None:
        self.workflow_id = workflow_id
        self.lease = lease
        self.holder = holder
        now = f"it is now held by {holder!r}" if holder is not None else "nobody holds it now"
        super().__init__(
            f"write to workflow {workflow_id!r} refused: this executor's lease {lease} lapsed "
            f"(not renewed within its ttl) and {now}; another executor may be running the workflow, "
            "so this run stops without overwriting its state"
        )


# --- artifact outputs (appended here to keep merges of this shared file simple) ------------------


class UnknownOutputTypeError(StoreError, LookupError):
    """A stored artifact output is of a kind this process has not registered.

    Not damage: ``register_output_type(cls, kind, encode, decode)`` in this process makes the
    output readable (the kind is the name it was registered under where it was written).
    """

    def __init__(self, workflow_id: str, node: str, kind: str) -> None:
        self.workflow_id = workflow_id
        self.node = node
        self.kind = kind
        super().__init__(
            f"output of node {node!r} of workflow {workflow_id!r} is a {kind!r} artifact: call "
            f"flow_workbench.register_output_type(cls, {kind!r}, encode, decode) to read it"
        )
