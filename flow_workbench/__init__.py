"""flow_workbench: durable DAG workflows whose state is saved and restored through a WorkflowStore."""

from __future__ import annotations

from .dag import DAG
from .data import AuditEntry, NodeHistory, NodeRecord, WorkflowData
from .engine import InlineExecutor, NodeTimeoutError, Persistence, RunResult, Workflow
from .errors import (
    CorruptStateError,
    CycleError,
    DAGError,
    DuplicateNodeError,
    FlowWorkbenchError,
    GraphvizError,
    GraphvizNotFoundError,
    InvalidNodeNameError,
    InvalidWorkflowIdError,
    NodeFailure,
    SerializationError,
    StateMismatchError,
    StoreError,
    StoreIOError,
    StoreUnavailableError,
    UnknownDependencyError,
    UnknownNodeError,
    VersionConflictError,
    WorkflowCancelledError,
    WorkflowExecutionError,
    WorkflowLockedError,
    WorkflowNotFoundError,
)
from .events import Event, EventKind
from .ids import validate_workflow_id
from .node import Action, Node, NodeCancelledError, NodeContext
from .recovery import MissingDAGError, mark_nodes, reset_failed, reset_nodes
from .status import NodeStatus
from .stores import (
    FlatBuffersStore,
    InMemoryStore,
    JSONFileStore,
    RedisStore,
    StateFormat,
    Transaction,
    TransactionalStore,
    WorkflowStore,
    WorkflowSummary,
    copy_workflow,
    scan_folder,
)

__version__ = "0.1.0"

__all__ = [
    "Action",
    "AuditEntry",
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
    "InvalidNodeNameError",
    "InvalidWorkflowIdError",
    "JSONFileStore",
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
    "UnknownNodeError",
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
    "reset_failed",
    "reset_nodes",
    "scan_folder",
    "validate_workflow_id",
]
