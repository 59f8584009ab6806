"""The public API is curated: pin it so changes are deliberate."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from types import ModuleType

import pytest

import flow_workbench
from flow_workbench.errors import FlowWorkbenchError

# --- the exact public surface: a name added or removed must show up here (and in CHANGELOG.md) ---

FLOW_WORKBENCH = [
    "Action",
    "ArtifactRef",
    "AuditEntry",
    "ConcurrentEditError",
    "CorruptStateError",
    "CycleError",
    "DAG",
    "DAGError",
    "DuplicateNodeError",
    "Event",
    "EventKind",
    "FlatBuffersStore",
    "FlowWorkbenchError",
    "GraphvizError",
    "GraphvizNotFoundError",
    "InMemoryStore",
    "InlineExecutor",
    "InputNameConflictError",
    "InvalidNodeNameError",
    "InvalidWorkflowIdError",
    "JSONFileStore",
    "LeaseHolder",
    "MissingDAGError",
    "Node",
    "NodeCancelledError",
    "NodeContext",
    "NodeFailure",
    "NodeHistory",
    "NodeRecord",
    "NodeStatus",
    "NodeTimeoutError",
    "Persistence",
    "RedisStore",
    "RunParameterError",
    "RunResult",
    "SerializationError",
    "StateFormat",
    "StateMismatchError",
    "StoreError",
    "StoreIOError",
    "StoreUnavailableError",
    "Transaction",
    "TransactionalStore",
    "UnknownDependencyError",
    "UnknownInputError",
    "UnknownNodeError",
    "UnknownOutputTypeError",
    "UnknownStatusError",
    "VersionConflictError",
    "Workflow",
    "WorkflowCancelledError",
    "WorkflowData",
    "WorkflowExecutionError",
    "WorkflowLockedError",
    "WorkflowNotFoundError",
    "WorkflowStore",
    "WorkflowSummary",
    "copy_workflow",
    "mark_nodes",
    "register_output_type",
    "reset_failed",
    "reset_nodes",
    "scan_folder",
    "validate_workflow_id",
]

NOTEBOOK = [
    "DAGView",
    "GraphSelect",
    "LiveView",
    "Picture",
    "RecordingDisplay",
    "RecoveryPanel",
    "StoreBrowser",
    "Timeline",
    "attempts_frame",
    "audit_frame",
    "data_frame",
    "live",
    "metrics_frame",
    "nodes_frame",
    "run_live",
    "runs_frame",
    "style_nodes",
    "style_workflows",
    "workflows_activity_frame",
    "workflows_frame",
]

STORES = [
    "FileStore",
    "FlatBuffersStore",
    "FolderEntry",
    "InMemoryStore",
    "JSONCodec",
    "JSONFileStore",
    "LeaseHolder",
    "OperationStats",
    "RedisStore",
    "StagedTransaction",
    "StateCodec",
    "StateFormat",
    "StoreMetrics",
    "Transaction",
    "TransactionalStore",
    "WorkflowStore",
    "WorkflowSummary",
    "check_stored_id",
    "copy_workflow",
    "scan_folder",
    "summary_from_data",
]

TESTING = [
    "INVALID_IDS",
    "RUN_END_CHANGES",
    "StoreContract",
    "StoreFactory",
    "VALUES",
    "node_by_node_run",
    "rich_state",
    "run_store_contract",
]

SURFACES = {
    "flow_workbench": FLOW_WORKBENCH,
    "flow_workbench.notebook": NOTEBOOK,
    "flow_workbench.stores": STORES,
    "flow_workbench.testing": TESTING,
}


@pytest.mark.parametrize("module", sorted(SURFACES))
def test_all_is_exactly_the_pinned_surface(module: str) -> None:
    assert importlib.import_module(module).__all__ == SURFACES[module]


@pytest.mark.parametrize("module", sorted(SURFACES))
def test_all_is_sorted_and_importable(module: str) -> None:
    imported = importlib.import_module(module)
    names = imported.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(imported, name), name


def test_core_names_are_exported() -> None:
    required = {
        "NodeStatus",
        "Node",
        "DAG",
        "WorkflowData",
        "WorkflowStore",
        "InMemoryStore",
        "Workflow",
        "WorkflowNotFoundError",
        "reset_nodes",
        "reset_failed",
        "mark_nodes",
        "Persistence",
        "TransactionalStore",
        "VersionConflictError",
        "CorruptStateError",
        "StoreError",
    }
    assert required <= set(flow_workbench.__all__)


def test_import_stays_free_of_notebook_dependencies() -> None:
    code = (
        "import sys, flow_workbench\n"
        "heavy = {'pandas', 'graphviz', 'ipywidgets', 'tqdm', 'IPython', 'redis', 'dask', 'pytest'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- one error hierarchy ---------------------------------------------------------------------------

#: An error of a public module its callers always turn into CorruptStateError naming the file.
#: (Private modules, ``_name``, are not walked: their errors never leave them either.)
INTERNAL_ERRORS = {"flow_workbench.validation.InvalidValue"}


def _modules() -> list[ModuleType]:
    names = [info.name for info in pkgutil.walk_packages(flow_workbench.__path__, "flow_workbench.")]
    public = [name for name in names if not any(part.startswith("_") for part in name.split("."))]
    return [importlib.import_module(name) for name in public]


def _error_classes() -> dict[str, type[BaseException]]:
    """Every exception class of flow_workbench's public modules, by qualified name."""
    found: dict[str, type[BaseException]] = {}
    for module in [flow_workbench, *_modules()]:
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_error_class_is_a_flow_workbench_error() -> None:
    errors = _error_classes()
    exported = {name for name in flow_workbench.__all__ if name.endswith("Error")}
    assert exported <= {error.__name__ for error in errors.values()}  # the walk sees the exported ones
    outside = sorted(
        name
        for name, error in errors.items()
        if not issubclass(error, FlowWorkbenchError) and name not in INTERNAL_ERRORS
    )
    assert outside == []


def test_errors_keep_the_builtin_they_mean() -> None:
    """Moving under the one base kept what callers catch them as."""
    from flow_workbench.executors import RemoteNodeError

    assert issubclass(flow_workbench.NodeTimeoutError, TimeoutError)
    assert issubclass(RemoteNodeError, RuntimeError)
    assert issubclass(flow_workbench.NodeCancelledError, Exception)
