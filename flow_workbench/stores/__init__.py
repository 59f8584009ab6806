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
    "StateFormat",
    "StoreMetrics",
    "Transaction",
    "TransactionalStore",
    "WorkflowStore",
    "WorkflowSummary",
    "copy_workflow",
    "scan_folder",
    "summary_from_data",
]
