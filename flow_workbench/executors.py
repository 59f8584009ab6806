"""Executors that run node actions elsewhere (a Dask cluster) while the engine keeps the bookkeeping."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .data import WorkflowData
from .errors import FlowWorkbenchError
from .node import Node, NodeContext

if TYPE_CHECKING:
    import distributed


def as_node_executor(executor: object) -> NodeExecutor | None:
    """The NodeExecutor for ``executor``: itself, a DaskExecutor for a distributed Client, or None."""
    if isinstance(executor, NodeExecutor):
        return executor
    if type(executor).__module__.startswith("distributed") and type(executor).__name__ == "Client":
        return DaskExecutor(executor)  # type: ignore[arg-type]
    return None


@runtime_checkable
class NodeExecutor(Protocol):
    """Runs one attempt of a node somewhere and returns a future of its output.

    The engine keeps statuses, retries, timeouts, events and persistence; an executor only runs
    actions. ``max_concurrency`` is enforced by the engine, not the executor.
    """

    def submit_node(
        self, node: Node, data: WorkflowData, ctx: NodeContext, upstream: Iterable[str]
    ) -> Future[Any]: ...


class RemoteNodeError(FlowWorkbenchError, RuntimeError):
    """An attempt could not run on the cluster (pickling, a worker that died); names the node."""


def _run_remote(
    node: Node, data: WorkflowData, attempt: int, max_attempts: int
) -> tuple[Any, dict[str, Any]]:
    """Runs on a worker: the action gets a private copy of the state; returns output and key-values."""
    import threading

    ctx = NodeContext(data.id, node.name, attempt, max_attempts, node.timeout, threading.Event())
    before = dict(data.items())
    output = node.run(data, ctx)
    after = dict(data.items())
    changed = {k: v for k, v in after.items() if k not in before or before[k] != v}
    removed = [k for k in before if k not in after]
    return output, {"set": changed, "delete": removed}


class DaskExecutor:
    """Runs node actions as tasks on a ``dask.distributed`` cluster.

    Each attempt ships the node (its action must pickle), the workflow's key-values and the
    outputs of every node upstream of it to a worker; the return value comes back as the
    node output and key-values the action set or deleted are merged into the run's state.
    A worker that dies mid-node fails the attempt (configure the scheduler with
    ``distributed.scheduler.allowed-failures: 0`` so that Dask does not silently rerun it on
    another worker; the node's own ``retries`` then decide). Timeouts are enforced by the engine:
    a timed-out task is cancelled on the cluster.
    """

    def __init__(self, client: distributed.Client) -> None:
        self.client = client

    def submit_node(
        self, node: Node, data: WorkflowData, ctx: NodeContext, upstream: Iterable[str]
    ) -> Future[Any]:
        result: Future[Any] = Future()
        shipped = WorkflowData(data.id, created_at=data.created_at)
        for key, value in data.items():
            shipped.set(key, value)
        for dependency in upstream:
            shipped.set_node_status(dependency, data.get_node_status(dependency) or "pending")
            if data.has_output(dependency):
                shipped.set_output(dependency, data.get_output(dependency))
        import cloudpickle  # ships with dask; pickles lambdas and closures like Dask itself does

        try:
            cloudpickle.dumps(node)  # fail here, naming the node, rather than deep inside Dask
        except Exception as error:
            result.set_exception(
                RemoteNodeError(f"action of node {node.name!r} cannot be sent to the cluster: {error}")
            )
            return result
        task = self.client.submit(
            _run_remote,
            node,
            shipped,
            ctx.attempt,
            ctx.max_attempts,
            pure=False,
            retries=0,
            key=f"{data.id}-{node.name}-{ctx.attempt}-{id(result):x}",
        )

        def done(task: distributed.Future[Any]) -> None:
            if result.done():
                return
            try:
                output, changes = task.result()
            except BaseException as error:  # KilledWorker, CancelledError, the action's own error
                if type(error).__name__ == "KilledWorker":
                    error = RemoteNodeError(f"the worker running node {node.name!r} died: {error}")
                result.set_exception(error)
                return
            for key, value in changes["set"].items():
                data.set(key, value)
            for key in changes["delete"]:
                data.delete(key)
            result.set_result(output)

        task.add_done_callback(done)
        # The engine cancels the future of an attempt it abandons (timeout): free the worker too.
        result.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)
        return result
