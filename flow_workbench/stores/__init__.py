"""Workflow stores: the ``WorkflowStore`` contract and its implementations."""

from __future__ import annotations

from .base import (
    StateFormat,
    Transaction,
    TransactionalStore,
    WorkflowStore,
    WorkflowSummary,
    copy_workflow,
    summary_from_data,
)
from .memory import InMemoryStore
from .metrics import OperationStats, StoreMetrics

__all__ = [
    "InMemoryStore",
    "OperationStats",
    "StateFormat",
    "StoreMetrics",
    "Transaction",
    "TransactionalStore",
    "WorkflowStore",
    "WorkflowSummary",
    "copy_workflow",
    "summary_from_data",
]
