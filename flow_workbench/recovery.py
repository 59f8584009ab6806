"""Recovery: reset nodes (optionally with everything downstream), reset failed nodes, mark nodes.

Each function takes the workflow's execution lease, loads the state, changes it, appends an
audit entry and saves it with the store's version check, then releases the lease. While a run
(or another edit) holds the lease the edit is refused with ``WorkflowLockedError`` naming the
holder, or waits up to ``lease_wait`` seconds for it; and no run can start in the middle of an
edit. ``dry_run`` reports what would change and changes nothing (it reads without the lease).
Each returns the affected nodes in DAG order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence

from .dag import DAG
from .data import NodeRecord, WorkflowData
from .errors import FlowWorkbenchError, UnknownNodeError
from .numbered_graph import NumberedGraph
from .status import FAILED_STATUSES, SATISFIED_STATUSES, TERMINAL_STATUSES, UPSTREAM_SKIP, NodeStatus
from .stores.base import WorkflowStore

MARKABLE_STATUSES = (NodeStatus.COMPLETED, NodeStatus.SKIPPED)


class MissingDAGError(FlowWorkbenchError, ValueError):
    """A recovery step needs the DAG structure but the stored state has none (e.g. a Go file)."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"workflow {workflow_id!r} was stored without its DAG structure (e.g. written by the Go "
            "library), so its downstream nodes are unknown; pass dag=... or reset without downstream"
        )


def reset_nodes(
    store: WorkflowStore,
    workflow_id: str,
    nodes: Iterable[str],
    *,
    downstream: bool = False,
    dry_run: bool = False,
    dag: DAG | None = None,
    lease_wait: float | None = None,
) -> list[str]:
    """Set ``nodes`` (and, with ``downstream``, every node depending on them) back to pending."""
    with _editing(store, workflow_id, "reset_nodes", dry_run, lease_wait):
        data = store.load(workflow_id)
        requested = _checked(data, nodes, dag)
        targets = list(requested)
        graph = _graph(data, dag, required=downstream)
        if downstream:
            targets += graph.named(graph.downstream(graph.numbered(requested)))
        needed = [n for n in dict.fromkeys(targets) if _needs_reset(data, n)]
        affected = _in_order(data, graph, needed)
        action = "reset_downstream" if downstream else "reset"
        return _commit(store, data, affected, dry_run, action, apply_reset)


def reset_failed(
    store: WorkflowStore,
    workflow_id: str,
    *,
    dry_run: bool = False,
    dag: DAG | None = None,
    lease_wait: float | None = None,
) -> list[str]:
    """Set every failed node, and every node skipped because of one, back to pending."""
    with _editing(store, workflow_id, "reset_failed", dry_run, lease_wait):
        data = store.load(workflow_id)
        statuses = data.node_statuses()
        failed = [name for name, status in statuses.items() if status in FAILED_STATUSES]
        # Without a DAG (a Go file) the skip causes are unknown, so only the failed nodes are reset.
        graph = _graph(data, dag, required=False)
        affected = failed  # in the order the state lists them, without a DAG
        if len(graph):
            # One walk from all failed nodes, on numbers: linear in the DAG, however many failed.
            names, starts = graph.names, graph.numbered(failed)
            skipped = [n for n in graph.downstream(starts) if statuses.get(names[n]) is NodeStatus.SKIPPED]
            affected = graph.ordered([*starts, *skipped]) + [n for n in failed if n not in graph.numbers]
        return _commit(store, data, affected, dry_run, "reset_failed", apply_reset)


def mark_nodes(
    store: WorkflowStore,
    workflow_id: str,
    nodes: Iterable[str],
    status: NodeStatus | str,
    *,
    dry_run: bool = False,
    dag: DAG | None = None,
    lease_wait: float | None = None,
) -> list[str]:
    """Mark ``nodes`` completed or skipped by hand, and re-evaluate the nodes skipped because of
    them: a node the engine skipped for an upstream node (``UPSTREAM_SKIP`` in its history)
    below a marked one becomes pending again when none of its dependencies still stops it
    (failed, or skipped and staying so). Marking a failed node completed therefore lets the
    next run execute what it had skipped; marking it skipped leaves them skipped, as the next
    run would. Returns the marked and the re-pended nodes, in DAG order (``dry_run``: would).
    Without the DAG structure (a Go file) no skipped node is re-evaluated.
    """
    target = NodeStatus.parse(status)
    if target not in MARKABLE_STATUSES:
        allowed = " or ".join(s.value for s in MARKABLE_STATUSES)
        raise ValueError(f"nodes can only be marked {allowed}, not {target.value!r}")
    with _editing(store, workflow_id, "mark_nodes", dry_run, lease_wait):
        data = store.load(workflow_id)
        requested = _checked(data, nodes, dag)
        # A node already in ``target`` still changes if it holds an error: marking an engine-skipped
        # node skipped makes its skip a choice (cleared error), which no later mark undoes.
        marked = [n for n in requested if data.get_node_status(n) is not target or data.node_history(n).error]
        graph = _graph(data, dag, required=False)
        repended = _released_by(data, dag, graph, requested, target)
        affected = _in_order(data, graph, [*marked, *repended])

        def apply(state: WorkflowData, names: Sequence[str]) -> None:
            apply_reset(state, repended)
            for name in marked:
                state.set_node_status(name, target)
                state.set_node_error(name, None)

        detail = f"back to pending, skipped because of them: {', '.join(repended)}" if repended else ""
        return _commit(store, data, affected, dry_run, f"mark_{target.value}", apply, detail)


def apply_reset(data: WorkflowData, nodes: Sequence[str]) -> None:
    """Put ``nodes`` back to pending in memory: status, output and last error are cleared; the
    attempt count is kept, so the history still shows how often a node ran overall."""
    for name in nodes:
        attempts = data.node_history(name).attempts
        data.apply_node_record(NodeRecord(node=name, status=NodeStatus.PENDING, attempts=attempts))


# --- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _editing(
    store: WorkflowStore, workflow_id: str, edit: str, dry_run: bool, lease_wait: float | None
) -> Iterator[None]:
    """Hold the workflow's execution lease for an edit's load-modify-save (not for a dry run,
    which writes nothing). An unknown workflow is reported before any lease is taken, so no
    lease file is left behind for it."""
    if dry_run:
        yield
        return
    if not store.exists(workflow_id):
        store.load(workflow_id)  # the store's own WorkflowNotFoundError
    with store.execution_lease(workflow_id, wait=lease_wait, purpose=edit):
        yield


def _commit(
    store: WorkflowStore,
    data: WorkflowData,
    affected: list[str],
    dry_run: bool,
    action: str,
    apply: Callable[[WorkflowData, Sequence[str]], None],
    detail: str = "",
) -> list[str]:
    if dry_run or not affected:
        return affected
    apply(data, affected)
    data.add_audit(action, affected, detail)
    store.save(data)
    return affected


def _checked(data: WorkflowData, nodes: Iterable[str], dag: DAG | None) -> list[str]:
    if isinstance(nodes, str):
        nodes = [nodes]
    requested = list(dict.fromkeys(nodes))
    known = set(data.node_statuses())
    structure = data.dag_structure
    if structure is not None:
        known.update(structure)
    if dag is not None:
        known.update(node.name for node in dag)
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise UnknownNodeError.naming(unknown, known, data.id)
    return requested


def _graph(data: WorkflowData, dag: DAG | None, *, required: bool = True) -> NumberedGraph:
    """The DAG's structure, else the stored one, numbered; empty (or MissingDAGError if
    required) without. The stored one is read, not copied: a state replaces its DAG dict whole
    and never mutates it (``StateColumns.dag``), so reading it after the lock is released is safe."""
    if dag is not None:
        return NumberedGraph(dag.structure())
    with data.read_columns() as columns:
        structure = columns.dag
    if structure is None:
        if required:
            raise MissingDAGError(data.id)
        return NumberedGraph({})
    return NumberedGraph(structure)


def _released_by(
    data: WorkflowData,
    dag: DAG | None,
    graph: NumberedGraph,
    marked: Sequence[str],
    target: NodeStatus,
) -> list[str]:
    """The nodes below ``marked`` that the engine skipped for an upstream node and that may run
    once ``marked`` have status ``target``: every dependency completed, or still to run, or
    itself released here. Decided in topological order, so a chain is released as a whole."""
    if not len(graph):
        return []
    statuses = data.node_statuses()
    after: dict[str, NodeStatus | None] = {name: target for name in marked}
    below = graph.named(graph.downstream(graph.numbered(marked)))
    released: list[str] = []
    for name in graph.sort(n for n in below if n not in after):
        if (
            statuses.get(name) is not NodeStatus.SKIPPED
            or data.node_history(name).error_type != UPSTREAM_SKIP
        ):
            continue  # not skipped, or skipped by hand: a choice this edit must not undo
        dependencies = graph.named(graph.dependencies[graph.numbers[name]])
        if all(_lets_run(dep, after.get(dep, statuses.get(dep)), dag) for dep in dependencies):
            after[name] = NodeStatus.PENDING
            released.append(name)
    return released


def _lets_run(dependency: str, status: NodeStatus | None, dag: DAG | None) -> bool:
    """Whether a dependency in ``status`` lets its dependents run (as the engine decides)."""
    if status is None or status in SATISFIED_STATUSES or status not in TERMINAL_STATUSES:
        return True  # done, or runs first in the next execution
    return (
        status is NodeStatus.FAILED
        and dag is not None
        and dependency in dag
        and dag.node(dependency).continue_on_error
    )


def _needs_reset(data: WorkflowData, name: str) -> bool:
    return data.get_node_status(name) is not NodeStatus.PENDING or data.has_output(name)


def _in_order(data: WorkflowData, graph: NumberedGraph, names: list[str]) -> list[str]:
    """``names`` without repeats, by DAG order when the DAG is known, else by the order the
    state lists nodes. A filter of the order, not a sort by position: linear in the DAG."""
    if len(graph):
        return graph.sort(names)
    wanted = dict.fromkeys(names)
    ordered = [name for name in data.node_statuses() if name in wanted]
    if len(ordered) < len(wanted):  # names the state lacks go last, as given
        listed = set(ordered)
        ordered += [name for name in wanted if name not in listed]
    return ordered
