"""Workflow stores: the ``WorkflowStore`` contract and its implementations."""

from __future__ import annotations

from .base import (
    StagedTransaction,
    StateFormat,
    Transaction,
    TransactionalStore,
    WorkflowStore,
    WorkflowSummary,
    check_stored_id,
    copy_workflow,
    summary_from_data,
)
from .codec import StateCodec
from .files import FileStore
from .flatbuffers import FlatBuffersStore
from .folder import FolderEntry, scan_folder
from .json_codec import JSONCodec
from .json_file import JSONFileStore
from .leases import LeaseHolder
from .memory import InMemoryStore
from .metrics import OperationStats, StoreMetrics
from .redis import RedisStore

__all__ = [
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
