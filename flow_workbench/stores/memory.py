"""InMemoryStore: states kept as private copies in a dict; fast, not durable."""

from __future__ import annotations

import threading
import time

from ..data import WorkflowData
from ..errors import VersionConflictError, WorkflowNotFoundError
from ..ids import validate_workflow_id
from ._artifacts import MemoryArtifacts, attach, saving
from .base import StagedTransaction, StateFormat, Transaction, TransactionalStore


class InMemoryStore(TransactionalStore):
    """Keeps a private copy of each saved state, so mutating a loaded object never changes the store."""

    lease_holder_sees_every_process = True  # one process holds every state

    def __init__(self) -> None:
        self._states: dict[str, WorkflowData] = {}
        self._lock = threading.RLock()
        self._artifacts = MemoryArtifacts()

    @property
    def format(self) -> StateFormat:
        return StateFormat.MEMORY

    def save(self, data: WorkflowData) -> None:
        with self.metrics.measure("save"):
            validate_workflow_id(data.id)
            with self._lock, saving(self._artifacts, [data]):
                self._check_version(data)
                self._put(data, data.copy())

    def save_node(self, data: WorkflowData, node: str) -> None:
        """O(1) when the stored copy is the one ``data`` came from; a full save otherwise.

        ``save_nodes`` (the engine's per-node persistence) is the base class's: one ``save_node``
        per node, so a subclass that overrides ``save_node`` sees every node the engine writes.
        """
        with self.metrics.measure("record"):
            validate_workflow_id(data.id)
            with self._lock, saving(self._artifacts, [data], [node]):
                stored = self._states.get(data.id)
                if stored is None or stored.version != data.version:
                    self._check_version(data)
                    self._put(data, data.copy())
                    return
                # The record carries the output as stored (immutable), so nothing is shared that
                # the caller could mutate.
                stored.apply_node_record(data.node_record(node))
                self._stamp(data, stored, stored.version + 1)

    def load(self, workflow_id: str) -> WorkflowData:
        with self.metrics.measure("load"):
            validate_workflow_id(workflow_id)
            with self._lock:
                stored = self._states.get(workflow_id)
                if stored is None:
                    raise WorkflowNotFoundError(workflow_id, "memory")
                return stored.copy()

    def list_workflows(self) -> list[str]:
        with self.metrics.measure("list"), self._lock:
            return sorted(self._states)

    def delete(self, workflow_id: str) -> None:
        with self.metrics.measure("delete"):
            validate_workflow_id(workflow_id)
            with self._lock:
                if self._states.pop(workflow_id, None) is None:
                    raise WorkflowNotFoundError(workflow_id, "memory")
                self._artifacts.remove_all(workflow_id)

    def exists(self, workflow_id: str) -> bool:
        validate_workflow_id(workflow_id)
        with self._lock:
            return workflow_id in self._states

    def begin_transaction(self) -> Transaction:
        return _MemoryTransaction(self)

    # --- internals ----------------------------------------------------------------------------

    def _check_version(self, data: WorkflowData) -> None:
        stored = self._states.get(data.id)
        if stored is not None and data.version < stored.version:
            raise VersionConflictError(data.id, expected=data.version, actual=stored.version)

    def _put(self, data: WorkflowData, snapshot: WorkflowData) -> None:
        attach(self._artifacts, snapshot).artifact_stash.held = {}  # its artifacts are stored
        self._states[data.id] = snapshot
        self._stamp(data, snapshot, data.version + 1)

    @staticmethod
    def _stamp(data: WorkflowData, stored: WorkflowData, version: int) -> None:
        now = time.time()
        for target in (stored, data):
            target.version = version
            target.updated_at = now


class _MemoryTransaction(StagedTransaction):
    def __init__(self, store: InMemoryStore) -> None:
        super().__init__()
        self._store = store

    def _commit_staged(self, staged: dict[str, tuple[WorkflowData, WorkflowData]]) -> None:
        store = self._store
        snapshots = [snapshot for _, snapshot in staged.values()]
        with store.metrics.measure("commit"), store._lock, saving(store._artifacts, snapshots):
            for original, snapshot in staged.values():
                stored = store._states.get(original.id)
                if stored is not None and snapshot.version < stored.version:
                    raise VersionConflictError(original.id, snapshot.version, stored.version)
            for original, snapshot in staged.values():
                store._states[original.id] = snapshot
                store._stamp(original, snapshot, snapshot.version + 1)
