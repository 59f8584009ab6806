"""Recovery: reset nodes (optionally with everything downstream), reset failed nodes, mark nodes.

Each function loads the state, changes it, appends an audit entry and saves it with the store's
version check, so an edit never silently overwrites a run that saved in between. ``dry_run``
reports what would change and changes nothing. Each returns the affected nodes in DAG order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from .dag import DAG, dependents_map, reachable, topological_levels
from .data import NodeRecord, WorkflowData
from .errors import FlowWorkbenchError, UnknownNodeError
from .status import FAILED_STATUSES, NodeStatus
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
) -> list[str]:
    """Set ``nodes`` (and, with ``downstream``, every node depending on them) back to pending."""
    data = store.load(workflow_id)
    requested = _checked(data, nodes, dag)
    targets = list(requested)
    if downstream:
        graph = _structure(data, dag)
        targets += reachable(dependents_map(graph), requested)
    needed = [n for n in dict.fromkeys(targets) if _needs_reset(data, n)]
    affected = _in_order(data, dag, needed, graph if downstream else None)
    return _commit(store, data, affected, dry_run, "reset_downstream" if downstream else "reset", apply_reset)


def reset_failed(
    store: WorkflowStore, workflow_id: str, *, dry_run: bool = False, dag: DAG | None = None
) -> list[str]:
    """Set every failed node, and every node skipped because of one, back to pending."""
    data = store.load(workflow_id)
    statuses = data.node_statuses()
    failed = [name for name, status in statuses.items() if status in FAILED_STATUSES]
    # Without a DAG (a Go file) the skip causes are unknown, so only the failed nodes are reset.
    graph = _structure(data, dag, required=False)
    # One walk from all failed nodes over a dependents map built once: linear in the DAG.
    downstream = reachable(dependents_map(graph), failed)
    skipped = [name for name in downstream if statuses.get(name) is NodeStatus.SKIPPED]
    affected = _in_order(data, dag, list(dict.fromkeys([*failed, *skipped])), graph)
    return _commit(store, data, affected, dry_run, "reset_failed", apply_reset)


def mark_nodes(
    store: WorkflowStore,
    workflow_id: str,
    nodes: Iterable[str],
    status: NodeStatus | str,
    *,
    dry_run: bool = False,
    dag: DAG | None = None,
) -> list[str]:
    """Mark ``nodes`` completed or skipped by hand (downstream nodes are left as they are)."""
    target = NodeStatus.parse(status)
    if target not in MARKABLE_STATUSES:
        allowed = " or ".join(s.value for s in MARKABLE_STATUSES)
        raise ValueError(f"nodes can only be marked {allowed}, not {target.value!r}")
    data = store.load(workflow_id)
    requested = _checked(data, nodes, dag)
    affected = _in_order(data, dag, [n for n in requested if data.get_node_status(n) is not target])

    def apply(state: WorkflowData, names: Sequence[str]) -> None:
        for name in names:
            state.set_node_status(name, target)
            state.set_node_error(name, None)

    return _commit(store, data, affected, dry_run, f"mark_{target.value}", apply)


def apply_reset(data: WorkflowData, nodes: Sequence[str]) -> None:
    """Put ``nodes`` back to pending in memory: status, output and last error are cleared; the
    attempt count is kept, so the history still shows how often a node ran overall."""
    for name in nodes:
        attempts = data.node_history(name).attempts
        data.apply_node_record(NodeRecord(node=name, status=NodeStatus.PENDING, attempts=attempts))


# --- helpers -----------------------------------------------------------------------------------


def _commit(
    store: WorkflowStore,
    data: WorkflowData,
    affected: list[str],
    dry_run: bool,
    action: str,
    apply: Callable[[WorkflowData, Sequence[str]], None],
) -> list[str]:
    if dry_run or not affected:
        return affected
    apply(data, affected)
    data.add_audit(action, affected)
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
        raise UnknownNodeError(unknown, data.id)
    return requested


def _structure(data: WorkflowData, dag: DAG | None, *, required: bool = True) -> dict[str, list[str]]:
    """The DAG's structure, else the stored one; empty (or MissingDAGError if required) without."""
    if dag is not None:
        return dag.structure()
    structure = data.dag_structure
    if structure is None:
        if required:
            raise MissingDAGError(data.id)
        return {}
    return structure


def _needs_reset(data: WorkflowData, name: str) -> bool:
    return data.get_node_status(name) is not NodeStatus.PENDING or data.has_output(name)


def _in_order(
    data: WorkflowData,
    dag: DAG | None,
    names: list[str],
    structure: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Sort names by DAG order when a DAG is known (``dag``, else ``structure`` or the stored
    one, passed in to save copying it again), else by the order the state lists nodes."""
    if dag is not None:
        order = {name: index for index, name in enumerate(dag.topological_order())}
    else:
        if structure is None:
            structure = data.dag_structure
        source = (
            [name for level in topological_levels(structure) for name in level]
            if structure
            else data.node_statuses()
        )
        order = {name: index for index, name in enumerate(source)}
    return sorted(names, key=lambda name: order.get(name, len(order)))
